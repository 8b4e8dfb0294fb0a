"""Lossy variants: planning, the error budget with sensitivity-driven exclusion, the speed judgement,
and optimize() shipping a variant only when it is within budget and faster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from optimizer import io
from optimizer.api import optimize
from optimizer.error_budget import ErrorBudget, measure_errors
from optimizer import decision
from optimizer.lossy import LossyInputError, LossyOptions, judge_verdict, plan, rank_sensitivity, run_lossy
from optimizer.verify import Verifier
from optimizer.lossy.quantization.calibration import CalibrationError, load_calibration

pytestmark = pytest.mark.providers  # also run on the OpenVINO flavour in CI (make test-providers RUNTIME=openvino)

RNG = np.random.default_rng(0)


def _save(nodes, inputs, outputs, inits, path: Path) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), path)
    return path


def outlier_mlp(path: Path) -> Path:
    """x -> Mul(scale) -> MatMul 'mm_outlier' -> Relu -> MatMul 'mm_plain' -> y.

    One input channel is scaled by 1000 but its weights are tiny: per-tensor activation quantization of
    mm_outlier's input then rounds every other channel to zero, so mm_outlier alone carries the error.
    """
    scale = np.ones(64, dtype=np.float32)
    scale[0] = 1000.0
    w1 = RNG.standard_normal((64, 64)).astype(np.float32) / 8
    w1[0, :] = 1e-4
    w2 = RNG.standard_normal((64, 64)).astype(np.float32) / 8
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["scaled"], name="scale"),
        helper.make_node("MatMul", ["scaled", "w1"], ["h"], name="mm_outlier"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm_plain"),
    ]
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 64])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 64])],
                 {"scale": scale, "w1": w1, "w2": w2}, path)


def plain_mlp(path: Path) -> Path:
    w1 = RNG.standard_normal((64, 256)).astype(np.float32) / 8
    w2 = RNG.standard_normal((256, 32)).astype(np.float32) / 16
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2"),
    ]
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 64])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 32])],
                 {"w1": w1, "w2": w2}, path)


def small_cnn(path: Path) -> Path:
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    inits = {
        "w1": RNG.standard_normal((16, 3, 3, 3)).astype(np.float32) / 4, "b1": RNG.standard_normal(16).astype(np.float32) / 10,
        "w2": RNG.standard_normal((8, 16, 3, 3)).astype(np.float32) / 8, "b2": RNG.standard_normal(8).astype(np.float32) / 10,
    }
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], inits, path)


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(path).graph.node]


def _outputs(path: Path, feeds) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _run(path: Path, tmp_path: Path, **options) -> tuple:
    verifier = Verifier(path, io.load(path))
    result = run_lossy(path, verifier, LossyOptions(**options), tmp_path / "work", providers_available=["CPUExecutionProvider"])
    return result, verifier


# -- options and planning -------------------------------------------------------------------------


@pytest.mark.parametrize("options, words", [
    (dict(quantize="int4"), "choose one of"),
    (dict(quantize="static"), "needs calibration data"),
    (dict(quantize="dynamic", quant_format="onnx"), "qdq or qoperator"),
    (dict(prune_weights=1.5), "between 0 and 1"),
    (dict(precision="int4"), "fp32, bf16"),
])
def test_options_refuse_what_cannot_work(options, words):
    with pytest.raises(LossyInputError, match=words):
        LossyOptions(**options)


def test_auto_plans_dynamic_for_matmul_graphs_and_skips_it_for_convolutions(tmp_path):
    mlp = io.load(plain_mlp(tmp_path / "mlp.onnx"))
    cnn = io.load(small_cnn(tmp_path / "cnn.onnx"))
    methods, skipped = plan(LossyOptions(quantize="auto"), mlp, ["CPUExecutionProvider"])
    assert methods == ["dynamic"]
    assert {v.method: v.reason.split(":")[0] for v in skipped} == {"static": "not tried", "fp16": "not tried", "bf16": "not tried"}
    assert "onnxruntime-openvino" in next(v.reason for v in skipped if v.method == "bf16")
    methods, skipped = plan(LossyOptions(quantize="auto", calibration=tmp_path), cnn, ["CPUExecutionProvider"])
    assert methods == ["static"]
    assert "(MatMul, Gemm, Attention) carry 0%" in next(v.reason for v in skipped if v.method == "dynamic")
    methods, _ = plan(LossyOptions(quantize="auto"), mlp, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert methods == ["dynamic", "fp16"]
    assert plan(LossyOptions(quantize="fp16", prune_weights=0.5), cnn, ["CPUExecutionProvider"])[0] == ["fp16", "prune"]


def test_already_quantized_models_are_not_quantized_again(tmp_path):
    from optimizer.lossy.quantization import quantize_dynamic_int8

    quantize_dynamic_int8(plain_mlp(tmp_path / "mlp.onnx"), tmp_path / "q.onnx")
    methods, skipped = plan(LossyOptions(quantize="auto"), io.load(tmp_path / "q.onnx"), ["CUDAExecutionProvider"])
    assert methods == [] and {v.method for v in skipped} == {"dynamic", "static", "fp16"}
    assert all("already quantized (DynamicQuantizeLinear" in v.reason for v in skipped)


def _verdict(variant_minimums, lossless_minimums, margin=0.03):
    return decision.compare("v", dict(enumerate(variant_minimums)), "lossless", dict(enumerate(lossless_minimums)), margin=margin)


LOSSLESS_MS = [3.0, 3.05, 2.95, 3.0, 3.1, 2.9, 3.0, 3.0, 2.95]


@pytest.mark.parametrize("factor, rounds, status, words", [
    (1 / 3, 9, "kept", "faster than lossless"),
    (3.0, 9, "discarded", "slower than lossless"),
    (1.0, 9, "discarded", "not measurably faster than lossless"),
    (1 / 3, 3, "discarded", "inconclusive"),
])
def test_a_variant_is_kept_only_on_a_paired_win(factor, rounds, status, words):
    jitter = [1.0, 0.99, 1.01, 1.0, 0.98, 1.02, 1.0, 1.01, 0.99]
    variant = [ms * factor * j for ms, j in zip(LOSSLESS_MS, jitter)][:rounds]
    got_status, reason = judge_verdict(_verdict(variant, LOSSLESS_MS[:rounds]))
    assert got_status == status and words in reason


# -- the error budget ------------------------------------------------------------------------------


def test_dynamic_within_budget_needs_no_exclusion(tmp_path):
    model = plain_mlp(tmp_path / "mlp.onnx")
    result, verifier = _run(model, tmp_path, quantize="dynamic", budget=ErrorBudget.parse(["rel=0.05"]))
    (variant,) = result.variants
    assert variant.attempts == 1 and variant.excluded == []
    assert variant.status in ("kept", "discarded") and "error" not in variant.reason
    assert "MatMulInteger" in _ops(variant.path) or "DynamicQuantizeMatMul" in _ops(variant.path)
    assert 64 * 256 + 256 * 32 <= variant.weight_bytes.get("int8", 0) <= 64 * 256 + 256 * 32 + 256 + 32  # weights + per-channel zero points
    independent = measure_errors(verifier.output_names, verifier.expected, _outputs(variant.path, verifier.feeds))
    assert independent[0].rel == pytest.approx(variant.errors[0].rel) and independent[0].rel <= 0.05
    assert variant.speedup is not None and variant.latency is not None


def test_sensitivity_ranks_the_outlier_matmul_first(tmp_path):
    model = outlier_mlp(tmp_path / "outlier.onnx")
    verifier = Verifier(model, io.load(model))
    from optimizer.lossy.quantization import quantize_dynamic_int8

    quantize_dynamic_int8(model, tmp_path / "q.onnx")
    nodes = [n for n in io.load(model).graph if n.op_type == "MatMul"]
    ranked = rank_sensitivity(model, tmp_path / "q.onnx", verifier.feeds, nodes, tmp_path)
    assert [n.name for n in ranked] == ["mm_outlier", "mm_plain"]
    assert ranked[0].sensitivity > 10 * ranked[1].sensitivity


def test_over_budget_excludes_the_most_sensitive_node_until_it_holds(tmp_path):
    model = outlier_mlp(tmp_path / "outlier.onnx")
    result, verifier = _run(model, tmp_path, quantize="dynamic", budget=ErrorBudget.parse(["rel=0.05"]))
    (variant,) = result.variants
    assert [n.name for n in variant.excluded] == ["mm_outlier"]
    assert variant.attempts == 2
    assert ErrorBudget.parse(["rel=0.05"]).violations(variant.errors) == []
    quantized = [n for n in onnx.load(variant.path).graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    assert len(quantized) == 1  # mm_plain only
    assert "mm_outlier" in [n.name for n in onnx.load(variant.path).graph.node if n.op_type == "MatMul"]


def test_over_budget_without_exclusion_rounds_is_discarded_with_the_error(tmp_path):
    model = outlier_mlp(tmp_path / "outlier.onnx")
    result, _ = _run(model, tmp_path, quantize="dynamic", budget=ErrorBudget.parse(["rel=0.05"]), max_exclusion_rounds=0)
    (variant,) = result.variants
    assert variant.status == "discarded" and result.chosen is None
    assert variant.reason.startswith("rel error ") and "> 0.05 on 'y'" in variant.reason
    assert variant.speedup is None  # never timed


def test_user_excluded_nodes_stay_float(tmp_path):
    model = plain_mlp(tmp_path / "mlp.onnx")
    result, _ = _run(model, tmp_path, quantize="dynamic", exclude_nodes=("mm1",))
    (variant,) = result.variants
    assert "mm1" in [n.name for n in onnx.load(variant.path).graph.node if n.op_type == "MatMul"]


# -- static int8 and calibration ------------------------------------------------------------------


def _calibration(folder: Path, count: int = 4) -> Path:
    folder.mkdir()
    for index in range(count):
        np.savez(folder / f"sample{index}.npz", x=RNG.standard_normal((1, 3, 16, 16)).astype(np.float32))
    return folder


def test_static_qdq_per_channel_with_calibration_folder(tmp_path):
    model = small_cnn(tmp_path / "cnn.onnx")
    folder = _calibration(tmp_path / "calib")
    result, verifier = _run(model, tmp_path, quantize="static", calibration=folder, budget=ErrorBudget.parse(["rel=0.2"]))
    (variant,) = result.variants
    assert variant.status in ("kept", "discarded") and "failed" not in variant.reason, variant.reason
    ops = _ops(variant.path)
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    scales = [numpy_helper.to_array(t) for t in onnx.load(variant.path).graph.initializer if t.name.startswith("w1") and "scale" in t.name]
    assert scales and scales[0].shape == (16,)  # per-channel weight scales
    assert result.notes and "generated" in result.notes[0]


def test_calibration_errors_are_one_line(tmp_path):
    inputs = {"x": np.dtype(np.float32)}
    with pytest.raises(CalibrationError, match="no such file"):
        load_calibration(tmp_path / "missing", inputs)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="holds no .npz"):
        load_calibration(tmp_path / "empty", inputs)
    np.savez(tmp_path / "wrong.npz", y=np.zeros(3, dtype=np.float32))
    with pytest.raises(CalibrationError, match="lacks arrays for the model inputs x"):
        load_calibration(tmp_path / "wrong.npz", inputs)
    np.savez(tmp_path / "dtype.npz", x=np.zeros(3, dtype=np.float64))
    with pytest.raises(CalibrationError, match="'x' is float64, the model expects float32"):
        load_calibration(tmp_path / "dtype.npz", inputs)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(CalibrationError, match="not a readable .npz"):
        load_calibration(tmp_path / "text.npz", inputs)


def test_inputs_that_are_a_calibration_sample_are_flagged(tmp_path):
    model = small_cnn(tmp_path / "cnn.onnx")
    folder = _calibration(tmp_path / "calib", count=2)
    sample = dict(np.load(folder / "sample0.npz"))
    verifier = Verifier(model, io.load(model), inputs=sample)
    result = run_lossy(model, verifier, LossyOptions(quantize="static", calibration=folder, budget=ErrorBudget.parse(["rel=0.5"])), tmp_path / "w", providers_available=[])
    assert any("also a calibration sample" in note for note in result.notes)


# -- pruning --------------------------------------------------------------------------------------


def test_magnitude_pruning_is_a_variant_with_its_compressed_size(tmp_path):
    model = plain_mlp(tmp_path / "mlp.onnx")
    result, _ = _run(model, tmp_path, prune_weights=0.5, budget=ErrorBudget.parse(["rel=10"]))
    (variant,) = result.variants
    assert variant.method == "prune"
    assert any("zlib-compressed weights" in note and "saves no time on dense kernels" in note for note in variant.notes)
    weights = [numpy_helper.to_array(t) for t in onnx.load(variant.path).graph.initializer]
    assert all(np.count_nonzero(w == 0) == w.size // 2 for w in weights)


# -- optimize() -----------------------------------------------------------------------------------


def test_optimize_ships_a_lossy_variant_only_within_budget_and_faster(tmp_path):
    model = outlier_mlp(tmp_path / "outlier.onnx")
    out = tmp_path / "out.onnx"
    result = optimize(model, out, lossy=LossyOptions(quantize="dynamic", budget=ErrorBudget.parse(["rel=0.05"])))
    assert result.lossy is not None
    feeds = {"x": RNG.standard_normal((8, 64)).astype(np.float32)}
    expected = _outputs(model, feeds)
    shipped_ops = _ops(out)
    if result.lossy.chosen is not None:
        assert result.shipped_variant == "O2+dynamic"
        assert result.lossy.chosen.status == "kept" and result.lossy.chosen.speedup > 1
        assert any(op in shipped_ops for op in ("MatMulInteger", "DynamicQuantizeMatMul"))
        assert measure_errors(["y"], expected, _outputs(out, feeds))[0].rel <= 0.05
        assert result.after.weight_bytes_by_dtype.get("int8", 0) > 0
    else:
        assert result.shipped_variant == "O2"
        assert not any(op in shipped_ops for op in ("MatMulInteger", "DynamicQuantizeMatMul"))
        assert np.allclose(_outputs(out, feeds)[0], expected[0], rtol=1e-4, atol=1e-4)
    summary = result.to_dict()["lossy"]
    assert summary["budget"] == "rel=0.05" and summary["variants"][0]["method"] == "dynamic"


def test_optimize_refuses_lossy_without_verification(tmp_path):
    with pytest.raises(LossyInputError, match="drop verify=False") as error:
        optimize(plain_mlp(tmp_path / "m.onnx"), tmp_path / "o.onnx", verify=False, lossy=LossyOptions(quantize="dynamic"))
    assert error.value.option == "verify" and "--" not in str(error.value)
    assert error.value.render({"no_verify": "--no-verify"}).endswith("drop --no-verify")
    assert not (tmp_path / "o.onnx").exists()


def test_prune_outputs_keeps_only_the_named_outputs(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Sigmoid", ["x"], ["b"], name="sigmoid"),
        helper.make_node("Neg", ["b"], ["c"], name="neg"),
    ]
    model = _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                  [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]), helper.make_tensor_value_info("c", TensorProto.FLOAT, [2, 3])], {}, tmp_path / "two.onnx")
    out = tmp_path / "one.onnx"
    result = optimize(model, out, prune_outputs=["a"])
    kept = ir.load(out)
    assert [v.name for v in kept.graph.outputs] == ["a"]
    assert [n.op_type for n in kept.graph] == ["Relu"]
    assert result.pruned_outputs["outputs_removed"] == 1 and result.pruned_outputs["nodes_removed"] == 2
    assert result.verified
    with pytest.raises(io.ModelInputError, match="^prune_outputs: ") as error:
        optimize(model, tmp_path / "bad.onnx", prune_outputs=["nope"])
    assert error.value.option == "prune_outputs"
    assert not (tmp_path / "bad.onnx").exists()


def gemm_mlp(path: Path) -> Path:
    """2-D MatMul + bias Adds: O2 fuses them into Gemm, which dynamic int8 cannot quantize."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
        helper.make_node("Add", ["m1", "b1"], ["h"], name="add1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["m2"], name="mm2"),
        helper.make_node("Add", ["m2", "b2"], ["y"], name="add2"),
    ]
    inits = {"w1": RNG.standard_normal((64, 64)).astype(np.float32), "b1": np.ones(64, np.float32),
             "w2": RNG.standard_normal((64, 8)).astype(np.float32), "b2": np.ones(8, np.float32)}
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], inits, path)


def test_gemm_becomes_matmul_add_for_dynamic_int8(tmp_path):
    from optimizer.lossy.quantization.prepare import gemm_to_matmul_add

    lossless = tmp_path / "o.onnx"
    optimize(gemm_mlp(tmp_path / "g.onnx"), lossless)
    assert _ops(lossless) == ["Gemm", "Relu", "Gemm"]
    model = io.load(lossless)
    assert gemm_to_matmul_add(model) == 2
    assert [n.op_type for n in model.graph] == ["MatMul", "Add", "Relu", "MatMul", "Add"]
    assert [n.name for n in model.graph if n.op_type == "MatMul"] == [n.name for n in onnx.load(lossless).graph.node if n.op_type == "Gemm"]
    io.save(model, tmp_path / "unfused.onnx")
    feeds = {"x": RNG.standard_normal((4, 64)).astype(np.float32)}
    np.testing.assert_allclose(_outputs(tmp_path / "unfused.onnx", feeds)[0], _outputs(lossless, feeds)[0], rtol=1e-5, atol=1e-4)
    result, _ = _run(lossless, tmp_path, quantize="dynamic", budget=ErrorBudget.parse(["rel=0.5"]))
    (variant,) = result.variants
    assert variant.status != "failed", variant.reason
    assert any(op in _ops(variant.path) for op in ("MatMulInteger", "DynamicQuantizeMatMul"))


def test_gemm_with_alpha_or_transa_is_left_alone():
    from optimizer.lossy.quantization.prepare import gemm_to_matmul_add

    model = ir.from_onnx_text("""
        <ir_version: 10, opset_import: ["" : 17]>
        g (float[2, 4] x) => (float[2, 3] y) <float[4, 3] w = {1,2,3,4,5,6,7,8,9,10,11,12}> {
            y = Gemm <alpha: float = 2.0> (x, w)
        }
    """)
    assert gemm_to_matmul_add(model) == 0 and [n.op_type for n in model.graph] == ["Gemm"]


def test_static_without_a_quantizable_op_fails_with_a_reason(tmp_path):
    model = _save([helper.make_node("Sigmoid", ["x"], ["y"], name="s")], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], {}, tmp_path / "s.onnx")
    folder = _calibration(tmp_path / "calib", count=1)
    np.savez(folder / "sample0.npz", x=RNG.standard_normal((1, 3, 4, 4)).astype(np.float32))
    result, _ = _run(model, tmp_path, quantize="static", calibration=folder)
    (variant,) = result.variants
    assert variant.status == "failed" and "no op that static int8 quantizes" in variant.reason
    assert result.chosen is None


def test_bad_calibration_is_refused_before_the_pipeline_runs(tmp_path):
    model = small_cnn(tmp_path / "cnn.onnx")
    np.savez(tmp_path / "wrong.npz", image=np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(LossyInputError, match="^calibration: .*lacks arrays for the model inputs x"):
        optimize(model, tmp_path / "o.onnx", lossy=LossyOptions(quantize="static", calibration=tmp_path / "wrong.npz"))
    assert not (tmp_path / "o.onnx").exists()


def test_with_tuning_a_lossy_graph_ships_only_when_it_beats_the_lossless_one(tmp_path):
    out = tmp_path / "o.onnx"
    result = optimize(plain_mlp(tmp_path / "mlp.onnx"), out, tune=True, tune_budget=8, lossy=LossyOptions(quantize="dynamic", budget=ErrorBudget.parse(["rel=0.05"])))
    assert result.tuning is not None and result.shipped_variant == result.tuning.chosen.variant
    (variant,) = result.lossy.variants
    if result.lossy.chosen is not None:
        assert result.shipped_variant == "O2+dynamic" and variant.status == "kept"
        assert any(op in _ops(out) for op in ("MatMulInteger", "DynamicQuantizeMatMul"))
    else:
        assert not any(op in _ops(out) for op in ("MatMulInteger", "DynamicQuantizeMatMul"))
        assert variant.status in ("discarded", "failed")
        if "under the tuned settings" in variant.reason:
            assert any("not shipped: under the tuned settings" in w for w in result.warnings)
    assert (tmp_path / "o.onnx.json").is_file()


def test_a_shipped_lossy_variant_quotes_its_own_error(tmp_path, monkeypatch):
    monkeypatch.setattr("optimizer.lossy.stage.judge_verdict", lambda verdict: ("kept", "faster than lossless (forced by the test)"))
    result = optimize(plain_mlp(tmp_path / "mlp.onnx"), tmp_path / "o.onnx", lossy=LossyOptions(quantize="dynamic", budget=ErrorBudget.parse(["rel=0.05"])))
    assert result.shipped_variant == "O2+dynamic"
    (error,) = result.lossy.chosen.errors
    (headline,) = result.verification.outputs
    assert headline.max_rel == error.rel and headline.max_rel > 1e-4  # the int8 model's error, not the lossless one's
    assert result.optimized.verification.outputs[0].max_rel < 1e-4 and result.optimized.variant == "O2"
    assert "held to the error budget" in result.to_dict()["verification"]["of"]
    assert "forced by the test" in result.shipped_reason


def test_with_tuning_the_speed_gate_shares_the_one_deadline(tmp_path):
    budget = 4.0
    result = optimize(plain_mlp(tmp_path / "mlp.onnx"), tmp_path / "o.onnx", tune=True, tune_budget=budget, lossy=LossyOptions(quantize="dynamic", budget=ErrorBudget.parse(["rel=0.05"])))
    slowest = max((r.stats.max_ms for r in result.tuning.records if r.stats is not None), default=0.0) / 1e3
    assert result.tuning.budget_s == budget  # the budget given, not what was left of it
    assert result.tuning.seconds <= 1.1 * budget + slowest + 0.5  # lossy speed gate and tuning together


def test_with_tuning_an_undecided_variant_goes_on_to_the_tuner_and_a_tie_does_not():
    from optimizer.lossy.stage import LossyVariant, _defer_to_the_tuner

    undecided = LossyVariant("bf16", "discarded", "x", verdict=_verdict([1.0, 1.0, 1.0], LOSSLESS_MS[:3]))
    tie = LossyVariant("dynamic", "discarded", "x", verdict=_verdict(LOSSLESS_MS, LOSSLESS_MS))
    assert undecided.verdict.outcome == decision.INCONCLUSIVE and tie.verdict.outcome == decision.TIE
    _defer_to_the_tuner([undecided, tie])
    assert undecided.status == "kept" and "the tuner decides" in undecided.reason
    assert tie.status == "discarded" and tie.reason == "x"
