"""Export the benchmark suite: seven `transformers` architectures with RANDOM weights, to ONNX.

    .venv-bench/bin/python bench/build_transformers_suite.py --out bench/data/suite
    .venv-bench/bin/python bench/build_transformers_suite.py --out bench/data/suite --models bert_base,resnet50

Models are constructed from their config classes (default configs: BERT-base, DistilBERT-base,
GPT-2 small, ViT-base/16, ResNet-50, MobileNetV2 1.0, ConvNeXt-T), never downloaded from the hub,
with `torch.manual_seed(seed)` before construction, so a rebuild gives the same weights. Batch 1;
text models at sequence length 128, vision models at 224x224. Exported with the TorchScript
exporter (`torch.onnx.export(..., dynamo=False)`; the dynamo exporter needs onnxscript) at opset 17,
static shapes unless `--dynamic` (then batch and sequence axes are symbolic). Attention is exported
in its "eager" form (MatMul/Softmax), the pattern most ONNX tooling knows; `--attn sdpa` for the other.

Needs torch and transformers: use a separate venv (see bench/README.md), never the project's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SEQ_LEN = 128
IMAGE = 224


def _text_inputs(names, vocab_limit=100):
    import torch

    generator = torch.Generator().manual_seed(1)
    tensors = []
    for name in names:
        if name == "input_ids":
            tensors.append(torch.randint(0, vocab_limit, (1, SEQ_LEN), generator=generator, dtype=torch.int64))
        elif name == "attention_mask":
            tensors.append(torch.ones((1, SEQ_LEN), dtype=torch.int64))
        elif name == "token_type_ids":
            tensors.append(torch.zeros((1, SEQ_LEN), dtype=torch.int64))
        else:
            raise ValueError(name)
    return tuple(tensors)


def _image_inputs():
    import torch

    return (torch.randn(1, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1)),)


def _spec(name: str):
    """(model class, config, input names, output names, kind) for a suite entry."""
    import transformers as T

    specs = {
        "bert_base": (T.BertModel, T.BertConfig(), ["input_ids", "attention_mask", "token_type_ids"], ["last_hidden_state", "pooler_output"], "text"),
        "distilbert": (T.DistilBertModel, T.DistilBertConfig(), ["input_ids", "attention_mask"], ["last_hidden_state"], "text"),
        "gpt2": (T.GPT2Model, T.GPT2Config(use_cache=False), ["input_ids", "attention_mask"], ["last_hidden_state"], "text"),
        "vit_base": (T.ViTForImageClassification, T.ViTConfig(num_labels=1000), ["pixel_values"], ["logits"], "image"),
        "resnet50": (T.ResNetForImageClassification, T.ResNetConfig(num_labels=1000), ["pixel_values"], ["logits"], "image"),
        "mobilenet_v2": (T.MobileNetV2ForImageClassification, T.MobileNetV2Config(num_labels=1000), ["pixel_values"], ["logits"], "image"),
        "convnext_tiny": (T.ConvNextForImageClassification, T.ConvNextConfig(num_labels=1000), ["pixel_values"], ["logits"], "image"),
    }
    return specs[name]


MODELS = ["bert_base", "distilbert", "gpt2", "vit_base", "resnet50", "mobilenet_v2", "convnext_tiny"]


def _perturb_exact_parameters(model, seed: int, scale: float = 0.02) -> int:
    """Add N(0, scale) noise to parameters that init leaves exact (zero biases, unit norm weights).

    `transformers` initialises biases to 0 and LayerNorm/BatchNorm weights to 1: trained models have
    neither, and an optimizer would delete `x + 0` / `x * 1` nodes that a real model keeps. Returns
    the number of tensors changed.
    """
    import torch

    generator = torch.Generator().manual_seed(seed + 12345)
    changed = 0
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if not tensor.is_floating_point() or tensor.numel() == 0:
                continue
            first = tensor.reshape(-1)[0]
            if bool(torch.all(tensor == first)) and float(first) in (0.0, 1.0):
                noise = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * scale
                tensor.add_(noise)
                changed += 1
        # BatchNorm running variance must stay positive
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_var is not None:
                module.running_var.abs_().add_(1e-3)
    return changed


def export(name: str, out_dir: Path, *, seed: int, opset: int, dynamic: bool, attn: str, perturb: bool = False) -> dict:
    import torch

    model_cls, config, input_names, output_names, kind = _spec(name)
    torch.manual_seed(seed)
    kwargs = {"attn_implementation": attn} if kind == "text" or name == "vit_base" else {}
    try:
        model = model_cls._from_config(config, **kwargs)
    except (TypeError, ValueError):
        model = model_cls._from_config(config)
    model.eval()
    if perturb:
        _perturb_exact_parameters(model, seed)

    class Wrapped(torch.nn.Module):
        """Positional inputs in, a tuple of the named outputs out (no ModelOutput dicts in the trace)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            outputs = self.inner(**dict(zip(input_names, args)), return_dict=True)
            return tuple(outputs[key] for key in output_names)

    args = _text_inputs(input_names) if kind == "text" else _image_inputs()
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {}
        for input_name in input_names:
            dynamic_axes[input_name] = {0: "batch", 1: "sequence"} if kind == "text" else {0: "batch"}
        for output_name in output_names:
            dynamic_axes[output_name] = {0: "batch", 1: "sequence"} if output_name == "last_hidden_state" else {0: "batch"}
    path = out_dir / f"{name}.onnx"
    start = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(
            Wrapped(model),
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            opset_version=opset,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            dynamo=False,
        )
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    return {
        "model": name,
        "path": str(path),
        "class": model_cls.__name__,
        "parameters": params,
        "file_bytes": path.stat().st_size,
        "inputs": {n: list(a.shape) for n, a in zip(input_names, args)},
        "outputs": output_names,
        "opset": opset,
        "dynamic": dynamic,
        "attn_implementation": kwargs.get("attn_implementation"),
        "seed": seed,
        "perturbed": perturb,
        "export_seconds": seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/data/suite", help="output directory")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of: {', '.join(MODELS)}")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dynamic", action="store_true", help="symbolic batch (and sequence) axes instead of static shapes")
    parser.add_argument("--attn", choices=["eager", "sdpa"], default="eager", help="attention implementation for text/ViT models")
    parser.add_argument("--perturb", action="store_true", help="add small noise to exactly-0/1 parameters (zero biases, unit norms) so no x+0 / x*1 remain, as in trained weights")
    parser.add_argument("--skip-existing", action="store_true", help="leave models whose .onnx already exists")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {MODELS}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    import torch
    import transformers

    torch.set_num_threads(max(1, torch.get_num_threads()))
    manifest_path = out_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest["torch"] = torch.__version__
    manifest["transformers"] = transformers.__version__
    manifest.setdefault("models", {})
    failures = 0
    for name in names:
        if args.skip_existing and (out_dir / f"{name}.onnx").exists():
            print(f"{name}: exists, skipped", file=sys.stderr)
            continue
        print(f"{name}: exporting...", file=sys.stderr, flush=True)
        try:
            entry = export(name, out_dir, seed=args.seed, opset=args.opset, dynamic=args.dynamic, attn=args.attn, perturb=args.perturb)
        except Exception as error:  # noqa: BLE001 - one failed export should not stop the rest
            failures += 1
            print(f"{name}: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        manifest["models"][name] = entry
        manifest_path.write_text(json.dumps(manifest, indent=1))
        print(f"{name}: {entry['file_bytes'] / 2**20:.0f} MiB, {entry['parameters'] / 1e6:.1f} M params, {entry['export_seconds']:.1f} s", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
