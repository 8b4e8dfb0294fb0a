"""The fuzzing property: optimizing a valid model keeps it valid and computing the same function.

For each level, `optimizer.api.optimize(..., verify=True)` must not raise and must drop no pass (a
dropped pass is one whose rewrite the built-in verification caught changing the outputs: a bug the
fuzzer found), unless the drop is onnxruntime's doing: the rewrite is right, but onnxruntime's own
graph optimizer, under which verification runs candidates, rejects or miscomputes the result
(`_blamed_on_onnxruntime`). Independently of that verification, the original and the optimized model run in
onnxruntime (CPU, graph optimizations off for both, so onnxruntime's own fusions hide nothing) on
inputs of another seed, and every output must agree; the optimized model must pass `onnx.checker`.

Tolerance: `max|a - b| <= atol + rtol * max|a|` per output with rtol 1e-4, atol 1e-5, the
optimizer's own default (DESIGN.md, "Verification"). Lossless rewrites only reassociate float32
arithmetic (BatchNorm/affine folding into weights, a fused LayerNormalization kernel, Gemm for
MatMul + Add): their error is a few float32 ulps (1.2e-7 each) of the magnitudes summed, well under
1e-4 of the output's scale even with the 8-64-term sums and the Exp/Div/Sqrt chains the generator
builds (their operands are bounded or shifted away from 0, so they do not amplify rounding), while a
wrong rewrite (a wrong axis, constant or shape) is off by O(1) of that scale. Scaling by the
output's maximum rather than elementwise keeps cancellation (values near 0 computed from large
ones) from reading as an error. NaN/Inf must appear in the same places.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from optimizer.graph.matching import is_default_domain

__all__ = [
    "RTOL", "ATOL", "KnownIssue", "KNOWN_ISSUES", "Outcome", "run_model", "random_feeds", "assert_valid", "assert_close",
    "assert_optimizes_equivalently", "assert_optimized_output_matches",
]

RTOL = 1e-4
ATOL = 1e-5
LEVELS = ("O2", "O3")


class KnownIssue(Exception):
    """The example hit a known, reported problem (see KNOWN_ISSUES); the fuzz test rejects it so the
    search goes on. Also raised when onnxruntime's own optimizer rejects or miscomputes the original: not
    the passes' doing (verification then checks with it off, tested in tests/test_fuzz_regressions.py)."""


KNOWN_ISSUES: dict[str, str] = {
    # Signature in a dropped pass's reason -> the problem, while a reported problem awaits its fix. Empty:
    # value names clashing across a graph and its If branch are fixed (optimizer.pipeline).
}
"""Known problems, by a signature of the reason verification gives for dropping a pass."""


def _onnxruntime_optimizer_agrees(model: onnx.ModelProto, path: Path) -> bool:
    """Whether onnxruntime with all its graph optimizations loads the model and computes what it computes
    without them, on our inputs and on those the optimizer's verification generates.

    onnxruntime 1.31's own optimizer fails to load some valid graphs (e.g. gamma * (x * (1 / Sqrt(
    ReduceMean(x^2) + eps))) on a 1-D x) or computes them wrongly (the same with a [1, 1, 1] eps that
    broadcasts x up: the result loses that dim; a zero Pad fused into MaxPool).
    """
    from optimizer import io
    from optimizer.verify import Verifier

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for feeds in (random_feeds(model, seed=2), Verifier(path, io.load(path)).feeds):
            for e, a in zip(run_model(model, feeds), session.run(None, feeds)):
                assert_close(e, a, "onnxruntime-optimized original")
    except Exception:  # noqa: BLE001
        return False
    return True


def _blamed_on_onnxruntime(source: Path, level: str, target_opset: int | None, scratch: Path, skip_passes: Sequence[str] = ()) -> bool:
    """Whether a drop is onnxruntime's doing: the unverified optimized model is right (the original's
    outputs, with onnxruntime's optimizations off) but onnxruntime with its optimizations on rejects or
    miscomputes it. Verification runs candidates as they will be deployed, so it rightly keeps such a
    rewrite out (e.g. CSE leaves a Div with one reader, and onnxruntime's RMSNorm-like fusion then takes a
    pattern whose eps broadcasts the result up a rank and loses that dim;
    tests/test_fuzz_regressions.py::test_a_rewrite_that_onnxruntime_then_miscomputes_is_dropped)."""
    from optimizer.api import optimize

    unverified = scratch / f"unverified-{level}-{target_opset}.onnx"
    optimize(source, unverified, level=level, tune=False, verify=False, target_opset=target_opset, force=True, skip_passes=skip_passes)
    original, candidate = onnx.load(source), onnx.load(unverified)
    try:
        for feeds in (random_feeds(original, seed=3), random_feeds(original, seed=4)):
            for e, a in zip(run_model(original, feeds), run_model(candidate, feeds)):
                assert_close(e, a, "unverified candidate")
    except AssertionError:
        return False
    return not _onnxruntime_optimizer_agrees(candidate, unverified)


@dataclasses.dataclass
class Outcome:
    """What one level did to one model (for coverage statistics)."""

    level: str
    changes: dict[str, int]
    ops_before: dict[str, int]
    ops_after: dict[str, int]


def run_model(model: onnx.ModelProto | str | os.PathLike, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def random_feeds(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    """Standard normal float32 inputs for the graph's float inputs, integers in [0, 100) for int64 ones
    (token ids, as the optimizer's verification generates them); a symbolic dim is bound to 1."""
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim]
        if value.type.tensor_type.elem_type == onnx.TensorProto.INT64:
            feeds[value.name] = rng.integers(0, 100, shape).astype(np.int64)
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def assert_valid(model: onnx.ModelProto) -> list[np.ndarray]:
    """The generator's own contract: the model passes the full checker and runs, with finite outputs."""
    onnx.checker.check_model(model, full_check=True)
    outputs = run_model(model, random_feeds(model))
    for info, array in zip(model.graph.output, outputs):
        declared = tuple(d.dim_value for d in info.type.tensor_type.shape.dim)
        assert array.shape == declared, f"generator: output {info.name} is {array.shape}, declared {declared}"
        assert array.dtype.kind != "f" or np.all(np.isfinite(array)), f"generator: output {info.name} is not finite"
    return outputs


def assert_close(expected: np.ndarray, actual: np.ndarray, name: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    if expected.dtype.kind != "f":
        assert np.array_equal(expected, actual), f"{name}: {int(np.sum(expected != actual))} elements differ"
        return
    finite = np.isfinite(expected)
    assert np.array_equal(finite, np.isfinite(actual)), f"{name}: NaN/Inf in other places"
    if not finite.any():
        return
    e, a = expected[finite].astype(np.float64), actual[finite].astype(np.float64)
    max_abs = float(np.max(np.abs(e - a)))
    scale = float(np.max(np.abs(e)))
    assert max_abs <= atol + rtol * scale, f"{name}: max |error| {max_abs:.3g} > {atol:g} + {rtol:g} * {scale:.3g}"


def _op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        key = node.op_type if is_default_domain(node.domain) else f"{node.domain}:{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _all_nodes(graph: onnx.GraphProto):
    """The graph's nodes and those of its subgraphs (If/Loop/Scan bodies), recursively."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _all_nodes(subgraph)


def _check_optimized(model: onnx.ModelProto, level: str) -> None:
    opset = next((o.version for o in model.opset_import if is_default_domain(o.domain)), 1)
    default_layer_norm = any(n.op_type == "LayerNormalization" and is_default_domain(n.domain) for n in _all_nodes(model.graph))
    if level == "O3" and opset < 17 and default_layer_norm:
        # Documented: O3 fuses LayerNormalization into the default domain below opset 17 (onnxruntime
        # runs it; onnx.checker rejects it), so such a model is only held to running equivalently.
        return
    onnx.checker.check_model(model, full_check=True)


def assert_optimizes_equivalently(
    model: onnx.ModelProto, levels: Sequence[str] = LEVELS, seed: int = 1, known_issues: bool = True, skip_passes: Sequence[str] = ()
) -> list[Outcome]:
    """The property (module docstring); returns what each level changed. A level may name an opset
    upgrade too, "O2>20": `--level O2 --target-opset 20` (skipped for models of that opset or newer).
    `skip_passes` leaves passes out (`--skip-passes`): a pass must not rely on another having run.
    With `known_issues`, an example that hits a problem listed in KNOWN_ISSUES raises `KnownIssue`
    instead of failing an assertion."""
    from optimizer.api import optimize

    assert_valid(model)
    feeds = random_feeds(model, seed=seed + 1)
    expected = run_model(model, feeds)
    names = [o.name for o in model.graph.output]
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="fuzz-") as scratch:
        source = Path(scratch) / "model.onnx"
        onnx.save(model, source)
        opset = next((o.version for o in model.opset_import if is_default_domain(o.domain)), 1)
        for level in levels:
            level, _, upgrade = level.partition(">")
            target_opset = int(upgrade) if upgrade else None
            if target_opset is not None and target_opset <= opset:
                continue
            level_name = level + (f" (target opset {target_opset})" if target_opset else "")
            target = Path(scratch) / f"optimized-{level}-{target_opset}.onnx"
            result = optimize(source, target, level=level, tune=False, verify=True, target_opset=target_opset, skip_passes=skip_passes)
            known = [d for d in result.dropped if any(signature in d.reason for signature in KNOWN_ISSUES)]
            if known_issues and known and len(known) == len(result.dropped):
                raise KnownIssue(f"{level_name}: {known[0].name}: {known[0].reason}")
            if result.dropped and not _blamed_on_onnxruntime(source, level, target_opset, Path(scratch), skip_passes):
                raise AssertionError(f"{level_name}: passes dropped by verification: {[(d.name, d.reason) for d in result.dropped]}")
            assert result.verification is not None and result.verification.status == "passed", (
                f"{level_name}: verification {result.verification.status if result.verification else None}: "
                f"{result.verification.reason if result.verification else ''}"
            )
            optimized = onnx.load(target)
            assert [o.name for o in optimized.graph.output] == names, f"{level_name}: outputs changed"
            _check_optimized(optimized, level)
            actual = run_model(optimized, feeds)
            for name, e, a in zip(names, expected, actual):
                assert_close(e, a, f"{level_name} output {name}")
            changes: dict[str, int] = {}
            for entry in result.pass_summary():
                total = sum(entry["changes"].values())
                if total:
                    changes[entry["name"]] = total
            outcomes.append(Outcome(level_name, changes, _op_counts(model), _op_counts(optimized)))
    return outcomes


def assert_optimized_output_matches(model: onnx.ModelProto, levels: Sequence[str] = LEVELS, seed: int = 1) -> None:
    """The independent half of the property, without the optimizer's own verification (which runs the
    candidate with onnxruntime's optimizations on): the optimized model checks and computes the same."""
    from optimizer.api import optimize

    feeds = random_feeds(model, seed=seed + 1)
    expected = run_model(model, feeds)
    with tempfile.TemporaryDirectory(prefix="fuzz-") as scratch:
        source = Path(scratch) / "model.onnx"
        onnx.save(model, source)
        for level in levels:
            target = Path(scratch) / f"optimized-{level}.onnx"
            optimize(source, target, level=level, tune=False, verify=False)
            optimized = onnx.load(target)
            _check_optimized(optimized, level)
            for output, e, a in zip(model.graph.output, expected, run_model(optimized, feeds)):
                assert_close(e, a, f"{level} output {output.name}")
