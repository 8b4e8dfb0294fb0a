"""Lossy variants under an error budget: which to try, whether each keeps the answers, whether it pays.

The transforms themselves are onnxruntime's (`optimizer.lossy.quantization`) plus opt-in magnitude pruning
(`passes.pruning`); this module is the judgement around them:
  plan       what to try: the method asked for, or for `auto` what suits the graph (dynamic int8 where
             MatMul/attention carry the work, static int8 when calibration data are given, fp16 only where
             an execution provider has fast float16 kernels)
  budget     each variant runs on the verification inputs and is compared with the original per output
             (`optimizer.error_budget`); NaN/Inf is a failure; over budget, nodes are ranked by how much
             error they add (intermediate outputs against the float model) and the worst are excluded,
             in growing steps, until the budget holds or a bound is reached
  speed      the lossless model, a control copy of it and the variants within budget are timed in rotated
             blocks (`optimizer.measure`); a variant is kept only when both its median and its minimum
             beat the lossless model's by more than the noise; the fastest kept variant ships
Every variant tried or skipped carries a one-line reason for the report.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir

from optimizer import decision, io
from optimizer.errors import UserError, mention
from optimizer.error_budget import DEFAULT_BUDGET, ErrorBudget, OutputError, measure_errors
from optimizer.providers import CPU, OPENVINO, ProviderSetting, precision_settings, profiled_placement
from optimizer.measure import Deadline, LatencyStats, Progress, time_blocks
from optimizer.verify import QUANTIZED_OPS, Verifier, first_line

__all__ = ["QUANTIZE_CHOICES", "LossyOptions", "load_calibration_samples", "LossyVariant", "LossyResult", "LossyInputError", "run_lossy"]

logger = logging.getLogger(__name__)

QUANTIZE_CHOICES = ("none", "dynamic", "static", "fp16", "auto")
PRECISION_CHOICES = ("fp32", "bf16")
"""Execution precisions: fp32 (lossless); bf16 runs the lossless model with a provider's bf16 kernels (lossy)."""
LABELS = {
    "dynamic": "dynamic int8", "static": "static int8", "fp16": "fp16", "prune": "magnitude pruning", "bf16": "bf16 (OpenVINO)",
    "static-openvino": "static int8 (OpenVINO)",
}
ON_OPENVINO = {"static": "static-openvino"}
"""Variants whose graph OpenVINO's provider runs with its own kernels (QDQ int8): also checked and timed there."""
MATMUL_OPS = {"MatMul", "Gemm", "Attention", "EmbedLayerNormalization", "LSTM"}
"""The ops dynamic int8 quantizes (Gemm after `optimizer.lossy.quantization.prepare` makes it MatMul + Add)."""
CONV_OPS = {"Conv", "ConvTranspose"}
STATIC_SKIPPED_OPS = ("Gather", "GatherElements")
"""Static int8 leaves embedding lookups float: quantizing them saves memory but no time, and costs accuracy."""
FP16_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider", "ROCMExecutionProvider")
DYNAMIC_MIN_MATMUL_SHARE = 0.3
"""`auto` tries dynamic int8 when MatMul-like ops carry at least this share of the FLOPs."""
EXCLUSION_STEPS = (1, 2, 4, 8, 16, 32)
SPEED_ROUNDS = 12
SPEED_BLOCK_SECONDS = 0.1
"""Blocks of about 0.1 s (one run for slow models): more paired rounds in the same time, which the interval needs."""
SPEED_LABEL = "timing lossy variants"


class LossyInputError(UserError, ValueError):
    """A lossy option that cannot work (e.g. static quantization without calibration data)."""


@dataclasses.dataclass(frozen=True)
class LossyOptions:
    quantize: str = "none"
    calibration: Path | None = None
    budget: ErrorBudget = DEFAULT_BUDGET
    per_channel: bool = True
    """Per-channel int8 weights: on BERT-base, dynamic int8 then needed 1 node left float instead of 32 to stay within rel=0.05."""
    quant_format: str = "qdq"
    exclude_nodes: tuple[str, ...] = ()
    op_types: tuple[str, ...] | None = None
    prune_weights: float | None = None
    max_exclusion_rounds: int = len(EXCLUSION_STEPS)
    time_budget_s: float | None = 60.0
    precision: str = "fp32"
    """"bf16": also try bf16 execution (a provider setting, not a new graph), held to the budget like quantization."""

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_CHOICES:
            raise LossyInputError(f"{mention('quantize')} {self.quantize!r}: choose one of {', '.join(QUANTIZE_CHOICES)}", option="quantize")
        if self.quantize == "static" and self.calibration is None:
            raise LossyInputError(f"{mention('quantize')} static needs calibration data: pass {mention('calibration')} FILE.npz or a folder of .npz samples", option="calibration")
        if self.quant_format not in ("qdq", "qoperator"):
            raise LossyInputError(f"{mention('quant_format')} {self.quant_format!r}: choose qdq or qoperator", option="quant_format")
        if self.precision not in PRECISION_CHOICES:
            raise LossyInputError(f"{mention('precision')} {self.precision!r}: choose one of {', '.join(PRECISION_CHOICES)}", option="precision")
        if self.prune_weights is not None and not 0 < self.prune_weights < 1:
            raise LossyInputError(f"{mention('prune_weights')} magnitude:{self.prune_weights}: the ratio must be between 0 and 1", option="prune_weights")

    @property
    def requested(self) -> bool:
        return self.quantize != "none" or self.prune_weights is not None or self.precision != "fp32"


def load_calibration_samples(options: LossyOptions, model: ir.Model) -> list[dict[str, np.ndarray]] | None:
    """The calibration samples static int8 needs, refused before the pipeline runs when unusable (LossyInputError)."""
    if options.calibration is None or options.quantize not in ("static", "auto"):
        return None
    from optimizer.lossy.quantization.calibration import input_dtypes, load_calibration

    try:
        return load_calibration(options.calibration, input_dtypes(model))
    except ValueError as error:
        raise LossyInputError(f"{mention('calibration')}: {error}", option="calibration") from None


@dataclasses.dataclass
class NodeSensitivity:
    name: str
    op_type: str
    sensitivity: float
    """Relative L2 error the node adds over its inputs' when quantized (higher is worse)."""


@dataclasses.dataclass
class LossyVariant:
    method: str
    status: str  # "kept", "discarded", "failed", "skipped"
    reason: str
    path: Path | None = None
    errors: list[OutputError] = dataclasses.field(default_factory=list)
    excluded: list[NodeSensitivity] = dataclasses.field(default_factory=list)
    attempts: int = 0
    weight_bytes: dict[str, int] = dataclasses.field(default_factory=dict)
    speedup: float | None = None
    """Lossless median / variant median (>1 is faster)."""
    speedup_min: float | None = None
    latency: LatencyStats | None = None
    seconds: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)
    setting: ProviderSetting | None = None
    """Where the variant runs when not on the CPU provider (a precision variant: the lossless graph under this setting)."""
    verdict: decision.Verdict | None = None
    """The speed gate's paired verdict against the fastest lossless baseline."""

    @property
    def label(self) -> str:
        return LABELS.get(self.method, self.method)

    @property
    def summary(self) -> str:
        """One line, e.g. "dynamic int8: 3.7x slower than lossless"."""
        return f"{self.label}: {self.reason or self.status}"

    def to_dict(self) -> dict:
        """The variant for the JSON report (keys in a fixed order)."""
        return {
            **{key: getattr(self, key) for key in ("method", "label", "status", "reason", "summary")},
            "errors": [e.to_dict() for e in self.errors],
            "excluded_nodes": [dataclasses.asdict(n) for n in self.excluded],
            "attempts": self.attempts,
            "weight_bytes_by_dtype": self.weight_bytes,
            "speedup_vs_lossless": self.speedup,
            "speedup_vs_lossless_min": self.speedup_min,
            "latency_ms": dataclasses.asdict(self.latency) if self.latency else None,
            "seconds": self.seconds,
            "notes": self.notes,
            "provider": self.setting.provider if self.setting else CPU,
            "provider_options": self.setting.options_dict() if self.setting else {},
            "precision": self.setting.precision if self.setting else None,
            "verdict": self.verdict.to_dict() if self.verdict else None,
        }


@dataclasses.dataclass
class LossyResult:
    budget: ErrorBudget
    variants: list[LossyVariant]
    chosen: LossyVariant | None
    lossless_latency: LatencyStats | None = None
    noise: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "budget": str(self.budget),
            "chosen": self.chosen.method if self.chosen else None,
            "variants": [v.to_dict() for v in self.variants],
            "lossless_latency_ms": dataclasses.asdict(self.lossless_latency) if self.lossless_latency else None,
            "noise": self.noise,
            "notes": self.notes,
        }


# -- planning -----------------------------------------------------------------------------------


def _flops_share(model: ir.Model, ops: set[str]) -> float:
    """Share of the graph's FLOPs in `ops` (the analysis' cost model; node counts when it fails)."""
    try:
        from optimizer.analysis import analyze

        by_type = analyze(model).by_op_type
        total = sum(stats["flops"] for stats in by_type.values())
        if total > 0:
            return sum(stats["flops"] for op, stats in by_type.items() if op in ops) / total
    except Exception as error:  # noqa: BLE001 - the analysis is advice
        logger.info("graph analysis failed (%s); counting nodes instead", error)
    nodes = [n.op_type for n in model.graph]
    return sum(op in ops for op in nodes) / max(1, len(nodes))


def plan(options: LossyOptions, model: ir.Model, providers_available: Sequence[str]) -> tuple[list[str], list[LossyVariant]]:
    """The methods to try, in order, and those left out with the reason."""
    skipped: list[LossyVariant] = []
    quantized = sorted({n.op_type for n in ir.traversal.RecursiveGraphIterator(model.graph)} & QUANTIZED_OPS)
    precision, precision_skipped = _plan_precision(options, providers_available)
    if quantized and (options.quantize != "none" or precision):
        methods = (["dynamic", "static", "fp16"] if options.quantize == "auto" else [options.quantize] if options.quantize != "none" else []) + precision
        skipped = [LossyVariant(m, "skipped", f"not tried: the model is already quantized ({', '.join(quantized[:3])})") for m in methods]
        return (["prune"] if options.prune_weights is not None else []), skipped
    if options.quantize == "auto":
        methods = []
        matmul_share = _flops_share(model, MATMUL_OPS)
        if matmul_share >= DYNAMIC_MIN_MATMUL_SHARE:
            methods.append("dynamic")
        else:
            skipped.append(LossyVariant("dynamic", "skipped", f"not tried: the ops dynamic int8 quantizes (MatMul, Gemm, Attention) carry {matmul_share:.0%} of the FLOPs (it slows convolutions down)"))
        if options.calibration is not None:
            methods.append("static")
        else:
            skipped.append(LossyVariant("static", "skipped", "not tried: no --calibration data"))
        fast_fp16 = [p for p in providers_available if p in FP16_PROVIDERS]
        if fast_fp16:
            methods.append("fp16")
        else:
            skipped.append(LossyVariant("fp16", "skipped", "not tried: no installed execution provider has fast float16 kernels (CPU converts back and forth)"))
    elif options.quantize != "none":
        methods = [options.quantize]
    else:
        methods = []
    methods += [m for m in precision if m not in methods]
    skipped += precision_skipped
    if options.prune_weights is not None:
        methods.append("prune")
    return methods, skipped


def _plan_precision(options: LossyOptions, providers_available: Sequence[str]) -> tuple[list[str], list[LossyVariant]]:
    """bf16 execution when asked for (`precision`) or under `auto`, where a provider and the CPU support it.

    Asked for explicitly and impossible here: LossyInputError naming what is missing."""
    wanted = options.precision == "bf16" or options.quantize == "auto"
    if not wanted:
        return [], []
    if precision_settings(providers_available):
        return ["bf16"], []
    if OPENVINO not in providers_available:
        why = "no installed execution provider runs bf16 on this CPU (onnxruntime-openvino's does: make setup RUNTIME=openvino)"
    else:
        why = "this CPU has no native bf16 (AVX512_BF16 or AMX), so bf16 would be emulated and slower"
    if options.precision == "bf16":
        raise LossyInputError(f"{mention('precision')} bf16: {why}", option="precision")
    return [], [LossyVariant("bf16", "skipped", f"not tried: {why}")]


# -- evaluation ---------------------------------------------------------------------------------


def _session(path: Path, providers: Sequence[str] = (CPU,), setting: ProviderSetting | None = None):
    """An onnxruntime session of `path` on `providers`, or under a provider `setting` (no silent fallback to the CPU)."""
    if setting is not None:
        return setting.runtime_config().create_session(path)
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=list(providers))


def _run_outputs(path: Path, feeds: Mapping[str, np.ndarray], names: Sequence[str], providers: Sequence[str] = (CPU,), setting: ProviderSetting | None = None) -> list:
    return _session(path, providers, setting).run(list(names), dict(feeds))


def _with_outputs(source: Path, names: Sequence[str], target: Path) -> list[str]:
    """Save a copy of `source` whose graph also outputs the typed values named; returns the names it outputs."""
    model = io.load(source, validate=False)
    if any(o.type is None for node in model.graph for o in node.outputs):
        from optimizer.graph.shapes import infer_shapes

        try:
            infer_shapes(model)
        except Exception as error:  # noqa: BLE001 - untyped values are then skipped
            logger.info("shape inference failed on %s: %s", source, error)
    values = {v.name: v for v in model.graph.inputs}
    for node in model.graph:
        for output in node.outputs:
            values[output.name] = output
    present = {v.name for v in model.graph.outputs}
    added = []
    for name in names:
        value = values.get(name)
        if name in present:
            added.append(name)
            continue
        if value is None or value.type is None or value.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16):
            continue
        model.graph.outputs.append(value)
        added.append(name)
    io.save(model, target)
    return added


def _relative_l2(expected: np.ndarray, actual: np.ndarray) -> float:
    a = np.asarray(expected, dtype=np.float64)
    b = np.asarray(actual, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    norm = float(np.linalg.norm(a))
    diff = float(np.linalg.norm(a - b))
    return diff / norm if norm > 0 else (0.0 if diff == 0 else math.inf)


def rank_sensitivity(float_path: Path, variant_path: Path, feeds: Mapping[str, np.ndarray], nodes: Sequence[ir.Node], workdir: Path) -> list[NodeSensitivity]:
    """Nodes ranked by the error they add: their output's relative L2 error (against the float model on the
    same inputs) minus the largest of their float inputs'. Worst first."""
    names: list[str] = []
    for node in nodes:
        for value in [*node.inputs, node.outputs[0]]:
            if value is not None and value.const_value is None and value.name not in names:
                names.append(value.name)
    float_probe, variant_probe = workdir / "probe-float.onnx", workdir / "probe-variant.onnx"
    try:
        added = _with_outputs(float_path, names, float_probe)
        added = _with_outputs(variant_path, added, variant_probe)
        expected = dict(zip(added, _run_outputs(float_probe, feeds, added)))
        actual = dict(zip(added, _run_outputs(variant_probe, feeds, added)))
    finally:
        float_probe.unlink(missing_ok=True)
        variant_probe.unlink(missing_ok=True)
    inherited: dict[str, float] = {name: _relative_l2(expected[name], actual[name]) for name in added}
    ranked = []
    for node in nodes:
        out = node.outputs[0].name
        if out not in inherited:
            continue
        upstream = [inherited.get(v.name, 0.0) for v in node.inputs if v is not None and v.const_value is None]
        ranked.append(NodeSensitivity(node.name, node.op_type, max(0.0, inherited[out] - max(upstream, default=0.0))))
    ranked.sort(key=lambda n: -n.sensitivity)
    return ranked


# -- the search ---------------------------------------------------------------------------------


class _Search:
    def __init__(self, lossless_path: Path, verifier: Verifier, options: LossyOptions, workdir: Path, on_stage: Callable[[str], None]):
        self.lossless_path = lossless_path
        self.verifier = verifier
        self.options = options
        self.workdir = workdir
        self.stage = on_stage
        self.model = io.load(lossless_path, validate=False)
        self.external_data = sum(io.weight_bytes_by_dtype(self.model).values()) > io.EXTERNAL_DATA_THRESHOLD * 3 // 4
        self.deadline = None if options.time_budget_s is None else time.perf_counter() + options.time_budget_s
        self.samples: list[dict[str, np.ndarray]] | None = None
        self.prepared: dict[str, tuple[Path, ir.Model]] = {}
        self.providers: list[str] = ["CPUExecutionProvider"]
        """Where variants run and are timed: a provider with fast float16 kernels first when fp16 is tried."""

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def calibration(self) -> list[dict[str, np.ndarray]]:
        if self.samples is None:
            from optimizer.lossy.quantization.calibration import input_dtypes, load_calibration

            self.samples = load_calibration(self.options.calibration, input_dtypes(self.model))
        return self.samples

    def source(self, method: str) -> tuple[Path, ir.Model]:
        """The float model a method starts from: for dynamic int8, a copy whose Gemms are MatMul + Add."""
        if method != "dynamic" or not any(n.op_type == "Gemm" for n in self.model.graph):
            return self.lossless_path, self.model
        if method not in self.prepared:
            from optimizer.lossy.quantization.prepare import gemm_to_matmul_add

            model = io.load(self.lossless_path, validate=False)
            path = self.lossless_path
            if gemm_to_matmul_add(model):
                path = self.workdir / "dynamic-source.onnx"
                io.save(model, path, external_data=self.external_data)
            self.prepared[method] = (path, model)
        return self.prepared[method]

    def op_types(self, method: str) -> set[str]:
        """Op types the method changes."""
        if method == "dynamic":
            from optimizer.lossy.quantization.int8 import DYNAMIC_OP_TYPES

            ops = set(self.options.op_types or DYNAMIC_OP_TYPES)
        elif method == "static":
            from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

            registry = QDQRegistry if self.options.quant_format == "qdq" else QLinearOpsRegistry
            ops = set(self.options.op_types or (set(registry) - set(STATIC_SKIPPED_OPS)))
        elif method == "fp16":
            from optimizer.lossy.quantization.fp16 import FP16_BLOCKED_OPS

            ops = {n.op_type for n in self.model.graph} - set(FP16_BLOCKED_OPS)
        else:
            ops = set()
        return ops

    def candidates(self, method: str) -> list[ir.Node]:
        """Nodes the method may change that exclusion can take back (they need a name)."""
        ops = self.op_types(method)
        _, model = self.source(method)
        return [n for n in model.graph if n.op_type in ops and n.name and n.name not in self.options.exclude_nodes]

    def produce(self, method: str, exclude: Sequence[str], target: Path) -> list[str]:
        """Write the method's variant of the lossless model to `target`; onnxruntime's notes."""
        from optimizer.lossy.quantization import convert_fp16, quantize_dynamic_int8, quantize_static_int8

        exclude = [*self.options.exclude_nodes, *exclude]
        if method == "dynamic":
            return quantize_dynamic_int8(
                self.source("dynamic")[0], target, op_types=self.options.op_types, per_channel=self.options.per_channel,
                exclude=exclude, external_data=self.external_data,
            )
        if method == "static":
            op_types = sorted(self.op_types("static") & {n.op_type for n in self.model.graph})
            if not op_types:
                raise ValueError("the graph has no op that static int8 quantizes")
            return quantize_static_int8(
                self.lossless_path, target, self.calibration(), quant_format=self.options.quant_format,
                per_channel=self.options.per_channel, op_types=op_types, exclude=exclude, external_data=self.external_data,
            )
        if method == "fp16":
            return convert_fp16(self.lossless_path, target, exclude=exclude, external_data=self.external_data)
        if method == "prune":
            from optimizer.lossy.magnitude import compressed_weight_bytes, prune_weights_by_magnitude

            model = io.load(self.lossless_path, validate=False)
            before = compressed_weight_bytes(model)
            stats = prune_weights_by_magnitude(model, self.options.prune_weights)
            after = compressed_weight_bytes(model)
            io.save(model, target, external_data=self.external_data)
            return [
                f"{stats.get('tensors_pruned', 0)} weight tensors pruned to {self.options.prune_weights:.0%} zeros; "
                f"zlib-compressed weights {_mb(before)} -> {_mb(after)} (unstructured sparsity saves no time on dense kernels)"
            ]
        raise ValueError(f"unknown lossy method {method!r}")

    def errors(self, path: Path, setting: ProviderSetting | None = None) -> list[OutputError]:
        actual = _run_outputs(path, self.verifier.feeds, self.verifier.output_names, self.providers, setting)
        return measure_errors(self.verifier.output_names, self.verifier.expected, actual)

    def on_openvino(self, variant: LossyVariant, method: str) -> LossyVariant:
        """The same variant graph run by OpenVINO's provider (its int8 kernels for a QDQ graph), checked there."""
        setting = ProviderSetting(OPENVINO, (("device_type", "CPU"), ("precision", "FP32")))
        sibling = LossyVariant(method, "discarded", "", path=variant.path, setting=setting, attempts=1, excluded=list(variant.excluded))
        self.stage(f"{sibling.label}: checking on {OPENVINO}")
        return self._check_on(sibling, variant.path, setting)

    def _check_on(self, variant: LossyVariant, path: Path, setting: ProviderSetting) -> LossyVariant:
        """The variant's errors when `path` runs under `setting`, judged by the budget; a provider that fails fails it."""
        started = time.perf_counter()
        try:
            variant.errors = self.errors(path, setting)
            where = profiled_placement(path, setting.runtime_config(), self.verifier.feeds)
        except Exception as error:  # noqa: BLE001 - a provider that cannot take the model fails the variant, not the run
            variant.status, variant.reason = "failed", f"failed on {setting.provider}: {first_line(error)}"
            variant.seconds = time.perf_counter() - started
            return variant
        if where.falls_back(setting.provider):
            variant.notes.append(f"{setting.provider} did not take the whole graph: {where.describe()} (profiled kernels)")
        violations = self.options.budget.violations(variant.errors)
        if violations:
            more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
            variant.reason = f"{violations[0]}{more}"
        else:
            variant.status = "within budget"
            variant.weight_bytes = io.weight_bytes_by_dtype(io.load(path, validate=False))
        variant.seconds = time.perf_counter() - started
        return variant

    def attempt_precision(self, method: str, available: Sequence[str]) -> LossyVariant:
        """The lossless graph run at a lower precision on its provider: its error against the original's fp32 outputs.

        No node can be kept at fp32 (the provider's precision hint applies to the whole graph), so over
        budget the variant is discarded; nodes the provider hands back to the CPU are reported.
        """
        (setting,) = [s for s in precision_settings(available) if s.precision == method]
        variant = LossyVariant(method, "discarded", "", path=self.lossless_path, setting=setting, attempts=1)
        self.stage(f"{variant.label}: checking on {setting.provider}")
        return self._check_on(variant, self.lossless_path, setting)

    def attempt(self, method: str) -> LossyVariant:
        """Produce the variant, measure its error, exclude sensitive nodes while over budget."""
        started = time.perf_counter()
        variant = LossyVariant(method, "discarded", "")
        budget = self.options.budget
        excluded: list[NodeSensitivity] = []
        ranking: list[NodeSensitivity] | None = None
        steps = [0, *EXCLUSION_STEPS[: self.options.max_exclusion_rounds]] if method != "prune" else [0]
        candidates = self.candidates(method)
        for step in steps:
            if step and not ranking:
                variant.notes.append("no node could be ranked by sensitivity, so none was left float")
                break
            if step and step > max(1, len(ranking) // 2):
                variant.notes.append(f"stopped at {len(excluded)} node(s) left float: more than half of the {len(ranking)} quantized nodes would defeat the purpose")
                break
            if step and self.out_of_time():
                variant.notes.append("the --budget ran out before the error budget held")
                break
            excluded = ranking[:step] if step else []
            target = self.workdir / f"{method}-{variant.attempts}.onnx"
            self.stage(f"{variant.label}: {'building' if not step else f'excluding {step} sensitive node(s)'}")
            try:
                variant.notes += self.produce(method, [n.name for n in excluded], target)
                variant.attempts += 1
                _check_interface(self.model, target)
                errors = self.errors(target)
            except Exception as error:  # noqa: BLE001 - the tools raise many kinds; the variant fails, the run goes on
                variant.status, variant.reason = "failed", f"failed: {first_line(error)}"
                break
            if variant.path is not None:
                _remove_model(variant.path)  # superseded by this attempt
            variant.path, variant.errors, variant.excluded = target, errors, list(excluded)
            violations = budget.violations(errors)
            if not violations:
                variant.status, variant.reason = "within budget", ""
                break
            more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
            after = f" with the {len(excluded)} most sensitive node(s) left float" if excluded else ""
            variant.reason = f"{violations[0]}{more}{after}"
            if ranking is None and candidates and method != "prune":
                try:
                    self.stage(f"{variant.label}: ranking nodes by sensitivity")
                    ranking = rank_sensitivity(self.source(method)[0], target, self.verifier.feeds, candidates, self.workdir)
                except Exception as error:  # noqa: BLE001
                    variant.notes.append(f"could not rank nodes by sensitivity: {first_line(error)}")
                    break
        if variant.status == "within budget" and variant.path is not None:
            variant.weight_bytes = io.weight_bytes_by_dtype(io.load(variant.path, validate=False))
        variant.seconds = time.perf_counter() - started
        return variant


def _check_interface(lossless: ir.Model, path: Path) -> None:
    """The variant keeps the model's input and output names and element types (ValueError otherwise)."""
    variant = io.load(path, validate=False)
    for kind, theirs, ours in (("inputs", variant.graph.inputs, lossless.graph.inputs), ("outputs", variant.graph.outputs, lossless.graph.outputs)):
        got = [(v.name, v.dtype) for v in theirs if v.name not in variant.graph.initializers]
        want = [(v.name, v.dtype) for v in ours if v.name not in lossless.graph.initializers]
        if got != want:
            raise ValueError(f"the variant changed the model's {kind}: {want} -> {got}")


def _remove_model(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".data").unlink(missing_ok=True)


def _mb(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def _lossless_baselines(variants: Sequence[LossyVariant]) -> dict[str, ProviderSetting | None]:
    """What a lossy variant must beat: the lossless model on the CPU provider, and on each provider a variant runs on."""
    baselines: dict[str, ProviderSetting | None] = {"lossless": None}
    for variant in variants:
        if variant.setting is not None and variant.setting.provider != CPU:
            lossless = ProviderSetting(variant.setting.provider, (("device_type", "CPU"), ("precision", "FP32")))
            baselines.setdefault(f"lossless on {lossless.label()}", lossless)
    return baselines


def _speed_gate(
    lossless_path: Path, variants: Sequence[LossyVariant], feeds, deadline: Deadline, budget_s: float | None, providers: Sequence[str],
    on_progress: Callable[[str, float], None] | None, on_status: Callable[[Progress], None] | None,
) -> tuple[LatencyStats, float]:
    """Time the lossless model (on the CPU and on each provider a variant uses), a control copy and the variants
    in paired rotated blocks by `deadline` (rounds stop after `budget_s`); a variant is kept only when its
    paired interval beats every lossless baseline beyond the noise measured on the control."""

    def runner(path: Path, setting: ProviderSetting | None = None):
        session = _session(path, providers, setting)
        return lambda: session.run(None, feeds)

    def on_round(done: int, total: int) -> None:
        if on_progress:
            on_progress(SPEED_LABEL, done / total)
        if on_status:
            on_status(deadline.progress(SPEED_LABEL))

    baselines = _lossless_baselines(variants)
    runners = {name: runner(lossless_path, setting) for name, setting in baselines.items()}
    runners["control"] = runner(lossless_path)
    for variant in variants:
        runners[variant.method] = runner(variant.path, variant.setting)
    times = time_blocks(
        runners, rounds=SPEED_ROUNDS, budget_s=budget_s, deadline=deadline, on_round=on_round, block_seconds=SPEED_BLOCK_SECONDS, min_block_runs=1,
    )
    margin = decision.noise_margin(times.minimums("control"), times.minimums("lossless"))
    base = times.stats("lossless")
    for variant in variants:
        variant.latency = times.stats(variant.method)
        variant.speedup = base.median_ms / variant.latency.median_ms
        variant.speedup_min = base.min_ms / variant.latency.min_ms
        verdicts = [decision.compare(variant.label, times.minimums(variant.method), name, times.minimums(name), margin=margin) for name in baselines]
        variant.verdict = max(verdicts, key=lambda v: v.high)  # against the fastest lossless baseline: the hardest to beat
        variant.status, variant.reason = judge_verdict(variant.verdict)
        if variant.status == "kept":
            variant.reason += f", within {_worst(variant)}"
    return base, margin


def judge_verdict(verdict: decision.Verdict) -> tuple[str, str]:
    """Kept only on a win: the whole paired interval of its time over the lossless model's below 1 - noise."""
    if verdict.outcome == decision.WIN:
        return "kept", f"{verdict.speedup:.2f}x faster than {verdict.reference} (interval {verdict.low:.2f}-{verdict.high:.2f} of its time)"
    if verdict.outcome == decision.LOSS:
        return "discarded", f"{verdict.ratio:.1f}x slower than {verdict.reference}"
    if verdict.outcome == decision.TIE:
        return "discarded", f"not measurably faster than {verdict.reference} ({verdict.speedup:.2f}x, within the noise of {verdict.margin:.0%})"
    return "discarded", f"not measurably faster: {verdict.sentence}"


def _worst(variant: LossyVariant) -> str:
    """The budget use of the worst output, e.g. "budget (rel 0.031 on 'logits')"."""
    if not variant.errors:
        return "budget"
    worst = max(variant.errors, key=lambda e: e.rel)
    return f"budget (rel {worst.rel:.3g}, cos {worst.cos:.4f} on '{worst.name}')"


def run_lossy(
    lossless_path: Path,
    verifier: Verifier,
    options: LossyOptions,
    workdir: Path,
    *,
    providers_available: Sequence[str],
    calibration_samples: list[dict[str, np.ndarray]] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Callable[[str, float], None] | None = None,
    on_status: Callable[[Progress], None] | None = None,
    measuring: Callable[[], Deadline] | None = None,
) -> LossyResult:
    """Try the lossy variants `options` asks for on the lossless model; the fastest one within budget, if any.

    `calibration_samples`, when the caller already loaded `options.calibration`, saves reading it again.
    `measuring` gives the run's one measuring deadline (shared with tuning): the speed gate times by it
    and takes at most a third of what is left; without it the gate gets what is left of `time_budget_s`.
    """
    stage = on_stage or (lambda _: None)
    workdir.mkdir(parents=True, exist_ok=True)
    search = _Search(lossless_path, verifier, options, workdir, stage)
    search.samples = calibration_samples
    methods, variants = plan(options, search.model, providers_available)
    fast_fp16 = [p for p in FP16_PROVIDERS if p in providers_available]
    if "fp16" in methods and fast_fp16:
        search.providers = [fast_fp16[0], "CPUExecutionProvider"]
    result = LossyResult(options.budget, variants, None)
    if methods and verifier.inputs_source != "--inputs":
        result.notes.append(f"lossy errors were measured on {verifier.inputs_source} inputs; pass --inputs with a real sample (not a calibration one) for errors that mean something")
    if "static" in methods:
        try:
            samples = search.calibration()
        except ValueError as error:
            raise LossyInputError(str(error)) from None
        if verifier.inputs_source == "--inputs" and any(all(np.array_equal(s[k], verifier.feeds[k]) for k in verifier.feeds if k in s) for s in samples):
            result.notes.append("the --inputs sample is also a calibration sample: the error is measured on data the quantizer saw; use a held-out sample")
    tried: list[LossyVariant] = []
    for method in methods:
        if search.out_of_time() and tried:
            variants.append(LossyVariant(method, "skipped", f"not tried: the --budget of {options.time_budget_s:g} s was spent"))
            continue
        variant = search.attempt_precision(method, providers_available) if method in PRECISION_CHOICES else search.attempt(method)
        variants.append(variant)
        if variant.status == "within budget":
            tried.append(variant)
            if method in ON_OPENVINO and OPENVINO in providers_available:
                sibling = search.on_openvino(variant, ON_OPENVINO[method])
                variants.append(sibling)
                if sibling.status == "within budget":
                    tried.append(sibling)
    if tried:
        stage("timing lossy variants against the lossless model")
        if measuring is not None:
            deadline = measuring()
            budget_s = None if deadline.budget_s is None else deadline.remaining() / 3
        else:
            deadline = Deadline(None if search.deadline is None else max(5.0, search.deadline - time.perf_counter()))
            budget_s = deadline.budget_s
        result.lossless_latency, result.noise = _speed_gate(lossless_path, tried, verifier.feeds, deadline, budget_s, search.providers, on_progress, on_status)
        if search.providers[0] != "CPUExecutionProvider":
            result.notes.append(f"lossy variants were checked and timed on {search.providers[0]}")
        if measuring is not None:
            _defer_to_the_tuner(tried)
        kept = [v for v in tried if v.status == "kept"]
        if kept:
            result.chosen = min(kept, key=lambda v: v.verdict.ratio if v.verdict is not None else 1 / v.speedup_min)
            for variant in kept:
                if variant is not result.chosen:
                    variant.status = "discarded"
                    variant.reason = f"{variant.speedup:.2f}x faster, but {result.chosen.label} is faster"
    return result


def _defer_to_the_tuner(tried: Sequence[LossyVariant]) -> None:
    """With tuning on, the tuner times the lossy variant against the lossless graph again in its final run: a
    variant the speed check could not decide on (too few rounds, too much noise) goes on to it instead of
    being discarded; a settled tie or loss is not worth the tuner's budget."""
    for variant in tried:
        if variant.status != "kept" and variant.verdict is not None and variant.verdict.outcome == decision.INCONCLUSIVE:
            variant.status = "kept"
            variant.reason = f"undecided by the speed check ({variant.verdict.speedup:.2f}x over {variant.verdict.rounds} paired rounds): the tuner decides"
