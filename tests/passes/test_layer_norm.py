"""fuse-layer-norm (TVM style): exporters' variants fuse, equivalence holds, each decline is named."""

import numpy as np
import pytest

from passes.fusion.layer_norm import FuseLayerNormAnyOpsetPass, FuseLayerNormPass
from tests.helpers import assert_equivalent, assert_unchanged, from_text, model_text, ops, random_feeds, run_pass, verify, verify_declines

GAMMA = "{" + ", ".join(f"{v:.2f}" for v in np.linspace(0.5, 1.5, 8)) + "}"
BETA = "{" + ", ".join(f"{v:.2f}" for v in np.linspace(-0.3, 0.3, 8)) + "}"


def _text(body: str, opset: int = 17, extra_outputs: str = "") -> str:
    return model_text(body, "float[2, 3, 8] x", f"float[2, 3, 8] y{extra_outputs}", f"""int64[1] axes = {{-1}}, int64[1] axes1 = {{1}}, float two = {{2.0}}, float three = {{3.0}}, float eps = {{1e-5}},
   float[8] gamma = {GAMMA}, float[8] beta = {BETA}""", opset=opset)


POW_FORM = """m = ReduceMean<axes=[-1]>(x)
  d = Sub(x, m)
  p = Pow(d, two)
  v = ReduceMean<axes=[-1]>(p)
  ve = Add(v, eps)
  s = Sqrt(ve)
  n = Div(d, s)
  t = Mul(n, gamma)
  y = Add(t, beta)"""

MUL_RECIPROCAL_FORM = """m = ReduceMean<axes=[-1]>(x)
  d = Sub(x, m)
  p = Mul(d, d)
  v = ReduceMean<axes=[-1]>(p)
  ve = Add(eps, v)
  s = Sqrt(ve)
  r = Reciprocal(s)
  n = Mul(d, r)
  t = Mul(gamma, n)
  y = Add(t, beta)"""

NO_AFFINE_FORM = POW_FORM.replace("  t = Mul(n, gamma)\n  y = Add(t, beta)", "  y = Identity(n)")
AXES_INPUT_FORM = POW_FORM.replace("ReduceMean<axes=[-1]>(x)", "ReduceMean(x, axes)").replace("ReduceMean<axes=[-1]>(p)", "ReduceMean(p, axes)")


@pytest.mark.parametrize(
    "body, opset",
    [(POW_FORM, 17), (MUL_RECIPROCAL_FORM, 17), (NO_AFFINE_FORM, 17), (AXES_INPUT_FORM, 18)],
    ids=["pow-div", "mul-reciprocal", "no-affine", "opset18-axes-input"],
)
def test_fuses_layer_norm_variants(body, opset):
    text = _text(body, opset)
    model = from_text(text)
    applied = run_pass(FuseLayerNormPass, model)
    assert applied.stats == {"layernorm": 1}
    assert [op for op in ops(model) if op != "Identity"] == ["LayerNormalization"]
    assert_equivalent(text, model, random_feeds(x=(2, 3, 8)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "body, opset, reason, extra",
    [
        (POW_FORM, 16, "opset below 17 (use --target-opset 17 or --level O3)", ""),
        (POW_FORM.replace("axes=[-1]", "axes=[1]"), 17, "reduction is not over the trailing axes", ""),
        (POW_FORM.replace("Pow(d, two)", "Pow(d, three)"), 17, "Pow exponent is not 2", ""),
        (POW_FORM + "\n  z = Relu(d)", 17, "centered input is used elsewhere", ", float[2, 3, 8] z"),
    ],
    ids=["old-opset", "middle-axis", "cube", "shared-centered"],
)
def test_declines(body, opset, reason, extra):
    text = _text(body, opset, extra)
    verify_declines(FuseLayerNormPass, text, {f"layernorm: {reason}": 1})


def test_target_opset_lets_old_models_fuse(tmp_path):
    import onnx

    from optimizer.api import optimize

    text = _text(POW_FORM, opset=13)
    onnx.save(onnx.parser.parse_model(text), tmp_path / "old.onnx")
    plain = optimize(tmp_path / "old.onnx", tmp_path / "a.onnx")
    assert "LayerNormalization" not in plain.after.op_counts
    upgraded = optimize(tmp_path / "old.onnx", tmp_path / "b.onnx", target_opset=17)
    assert upgraded.verification.passed and upgraded.dropped == []
    assert upgraded.after.op_counts == {"LayerNormalization": 1}
    assert onnx.load(tmp_path / "b.onnx").opset_import[0].version == 17
    assert upgraded.pass_summary()[0]["changes"] == {"opset 13 -> 17": 1}


def test_target_opset_refuses_downgrade(tmp_path):
    import onnx
    import pytest as _pytest

    from optimizer.api import optimize
    from optimizer.io import ModelInputError

    onnx.save(onnx.parser.parse_model(_text(POW_FORM, opset=17)), tmp_path / "m.onnx")
    with _pytest.raises(ModelInputError, match="only upgrades"):
        optimize(tmp_path / "m.onnx", tmp_path / "o.onnx", target_opset=13)


@pytest.mark.parametrize("body, opset", [(POW_FORM, 11), (MUL_RECIPROCAL_FORM, 13), (POW_FORM, 16)], ids=["tf2onnx-opset11", "opset13", "opset16"])
def test_onnxruntime_variant_fuses_below_opset_17(body, opset):
    text = _text(body, opset)
    model, _ = verify(FuseLayerNormAnyOpsetPass, text, ["LayerNormalization"], None, stats={"layernorm (opset < 17, onnxruntime)": 1})
    assert model.graph.node(0).domain == ""
    assert_equivalent(text, model, random_feeds(x=(2, 3, 8)), rtol=1e-4, atol=1e-5)


def test_onnxruntime_variant_leaves_opset_17_to_the_standard_pass():
    text = _text(POW_FORM, 17)
    model = from_text(text)
    applied = run_pass(FuseLayerNormAnyOpsetPass, model)
    assert applied.declined == {"layernorm (opset < 17, onnxruntime): opset 17 or later: the standard fusion applies": 1}
    assert_unchanged(text, model)


def test_declines_reduction_over_all_axes():
    body = AXES_INPUT_FORM.replace("ReduceMean(x, axes)", "ReduceMean(x, none)").replace("ReduceMean(p, axes)", "ReduceMean(p, none)")
    text = _text(body, 18).replace("int64[1] axes = {-1},", "int64[1] axes = {-1}, int64[0] none = {},")
    model = from_text(text)
    applied = run_pass(FuseLayerNormPass, model)
    assert applied.declined == {"layernorm: reduction is not over the trailing axes": 1}
    assert_unchanged(text, model)
