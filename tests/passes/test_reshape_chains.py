"""fuse-reshape-chains (TVM style): exporters' Reshape/Squeeze/Unsqueeze/Slice/Cast chains collapse,
equivalence holds in onnxruntime, and each decline is named.

The first op of a chain is looked at too and counted as declined ("input is not a ..."), so a
decline test expects that entry next to the one it is about.
"""

import numpy as np
import pytest

from passes.fusion.reshape_chains import FuseReshapeChainsPass
from tests.helpers import assert_equivalent, from_text, run_pass, verify, verify_declines


def _text(signature: str, body: str, opset: int = 17, inits: str = "") -> str:
    initializers = f" <{inits}>" if inits else ""
    return f"""<ir_version: 10, opset_import: ["" : {opset}, "custom" : 1]>
g {signature}{initializers} {{
  {body}
}}"""


def _feeds(**specs: tuple[tuple[int, ...], str]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for name, (shape, dtype) in specs.items():
        if dtype == "bool":
            feeds[name] = rng.integers(0, 2, shape).astype(bool)
        elif np.dtype(dtype).kind in "iu":
            info = np.iinfo(dtype)
            feeds[name] = rng.integers(max(info.min, -1000), min(info.max, 1000), shape).astype(dtype)
        else:
            feeds[name] = (rng.standard_normal(shape) * 100).astype(dtype)
    return feeds


def _f32(*shape: int) -> tuple[tuple[int, ...], str]:
    return shape, "float32"


FUSES = {
    # Reshape chains: PyTorch view().view(), flatten().view(), unsqueeze().view().
    "reshape-view-view": (
        "(float[2, 3, 4] x) => (float[2, 12] y)",
        "a = Reshape(x, s1)\n  b = Reshape(a, s2)\n  y = Relu(b)",
        17, "int64[2] s1 = {6, 4}, int64[2] s2 = {2, 12}",
        {"x": _f32(2, 3, 4)}, {"reshape chain": 1}, ["Reshape", "Relu"],
    ),
    "reshape-view-flat": (
        "(float[2, 3, 4] x) => (float[24] y)",
        "a = Reshape(x, s1)\n  b = Reshape(a, s2)\n  y = Relu(b)",
        17, "int64[2] s1 = {6, 4}, int64[1] s2 = {-1}",
        {"x": _f32(2, 3, 4)}, {"reshape chain": 1}, ["Reshape", "Relu"],
    ),
    "reshape-zero-from-first-shape": (
        "(float[2, 3, 4] x) => (float[2, 3, 4] y)",
        "a = Reshape(x, s1)\n  b = Reshape(a, s2)\n  y = Relu(b)",
        17, "int64[2] s1 = {2, 12}, int64[3] s2 = {0, 3, 4}",
        {"x": _f32(2, 3, 4)}, {"reshape chain": 1}, ["Reshape", "Relu"],
    ),
    "reshape-zero-copied-through": (
        "(float[N, 3, 4] x) => (float[N, 2, 6] y)",
        "a = Reshape(x, s1)\n  b = Reshape(a, s2)\n  y = Relu(b)",
        17, "int64[2] s1 = {0, 12}, int64[3] s2 = {0, 2, 6}",
        {"x": _f32(5, 3, 4)}, {"reshape chain": 1}, ["Reshape", "Relu"],
    ),
    "reshape-allowzero": (
        "(float[2, 3, 4] x) => (float[4, 6] y)",
        "a = Reshape(x, s1)\n  b = Reshape<allowzero=1>(a, s2)\n  y = Relu(b)",
        14, "int64[2] s1 = {6, 4}, int64[2] s2 = {4, 6}",
        {"x": _f32(2, 3, 4)}, {"reshape chain": 1}, ["Reshape", "Relu"],
    ),
    "flatten-view-zero-from-inferred-shape": (
        "(float[2, 3, 4] x) => (float[2, 3, 4] y)",
        "a = Flatten<axis=1>(x)\n  b = Reshape(a, s2)\n  y = Relu(b)",
        17, "int64[3] s2 = {0, 3, -1}",
        {"x": _f32(2, 3, 4)}, {"reshape chain": 1}, ["Reshape", "Relu"],
    ),
    "unsqueeze-view": (
        "(float[2, 3, 4] x) => (float[6, 4] y)",
        "a = Unsqueeze(x, zero)\n  b = Reshape(a, s2)\n  y = Relu(b)",
        17, "int64[1] zero = {0}, int64[2] s2 = {6, 4}",
        {"x": _f32(2, 3, 4)}, {"reshape chain": 1}, ["Reshape", "Relu"],
    ),
    # Squeeze/Unsqueeze: opset 11 attributes, opset 13+ inputs; cancelling pairs and merges.
    "unsqueeze-squeeze-cancel-opset11": (
        "(float[2, 3] x) => (float[2, 3] y)",
        "a = Unsqueeze<axes=[1]>(x)\n  b = Squeeze<axes=[1]>(a)\n  y = Relu(b)",
        11, "", {"x": _f32(2, 3)}, {"squeeze chain": 1}, ["Relu"],
    ),
    "unsqueeze-squeeze-cancel-negative": (
        "(float[2, 3] x) => (float[2, 3] y)",
        "a = Unsqueeze(x, last)\n  b = Squeeze(a, last)\n  y = Relu(b)",
        17, "int64[1] last = {-1}", {"x": _f32(2, 3)}, {"squeeze chain": 1}, ["Relu"],
    ),
    "unsqueeze-squeeze-cancel-mixed-signs": (
        "(float[2, 3] x) => (float[2, 3] y)",
        "a = Unsqueeze(x, last)\n  b = Squeeze(a, two)\n  y = Relu(b)",
        17, "int64[1] last = {-1}, int64[1] two = {2}", {"x": _f32(2, 3)}, {"squeeze chain": 1}, ["Relu"],
    ),
    "squeeze-unsqueeze-cancel": (
        "(float[2, 1, 3] x) => (float[2, 1, 3] y)",
        "a = Squeeze(x, one)\n  b = Unsqueeze(a, one)\n  y = Relu(b)",
        13, "int64[1] one = {1}", {"x": _f32(2, 1, 3)}, {"unsqueeze chain": 1}, ["Relu"],
    ),
    "squeeze-unsqueeze-cancel-into-graph-output": (
        "(float[2, 1, 3] x) => (float[2, 1, 3] y)",
        "a = Relu(x)\n  b = Squeeze(a, one)\n  y = Unsqueeze(b, one)",
        13, "int64[1] one = {1}", {"x": _f32(2, 1, 3)}, {"unsqueeze chain": 1}, ["Relu"],
    ),
    # PyTorch mask[:, None, None, :]: two Unsqueezes become one.
    "unsqueeze-unsqueeze-merge": (
        "(float[2, 5] x) => (float[2, 1, 1, 5] y)",
        "a = Unsqueeze(x, one)\n  b = Unsqueeze(a, two)\n  y = Relu(b)",
        17, "int64[1] one = {1}, int64[1] two = {2}", {"x": _f32(2, 5)}, {"unsqueeze chain": 1}, ["Unsqueeze", "Relu"],
    ),
    "unsqueeze-unsqueeze-merge-opset11": (
        "(float[2, 5] x) => (float[1, 2, 5, 1] y)",
        "a = Unsqueeze<axes=[-1]>(x)\n  b = Unsqueeze<axes=[0]>(a)\n  y = Relu(b)",
        11, "", {"x": _f32(2, 5)}, {"unsqueeze chain": 1}, ["Unsqueeze", "Relu"],
    ),
    "squeeze-squeeze-merge": (
        "(float[1, 2, 1, 3] x) => (float[2, 3] y)",
        "a = Squeeze(x, zero)\n  b = Squeeze(a, one)\n  y = Relu(b)",
        17, "int64[1] zero = {0}, int64[1] one = {1}", {"x": _f32(1, 2, 1, 3)}, {"squeeze chain": 1}, ["Squeeze", "Relu"],
    ),
    "squeeze-squeeze-merge-opset11": (
        "(float[1, 2, 1, 3, 1] x) => (float[2, 3] y)",
        "a = Squeeze<axes=[-1, 0]>(x)\n  b = Squeeze<axes=[1]>(a)\n  y = Relu(b)",
        11, "", {"x": _f32(1, 2, 1, 3, 1)}, {"squeeze chain": 1}, ["Squeeze", "Relu"],
    ),
    # Slices of disjoint axes (PyTorch x[1:3][:, 2:5], tf2onnx strided slices).
    "slice-two-axes": (
        "(float[4, 6] x) => (float[2, 3] y)",
        "a = Slice(x, st0, en0, ax0)\n  b = Slice(a, st1, en1, ax1)\n  y = Relu(b)",
        17, "int64[1] st0 = {1}, int64[1] en0 = {3}, int64[1] ax0 = {0}, int64[1] st1 = {2}, int64[1] en1 = {5}, int64[1] ax1 = {1}",
        {"x": _f32(4, 6)}, {"slice chain": 1}, ["Slice", "Relu"],
    ),
    "slice-steps-negative-axes-defaults": (
        "(float[4, 6, 5] x) => (float[2, 6, 2] y)",
        "a = Slice(x, st0, en0)\n  b = Slice(a, st1, en1, ax1, step)\n  y = Relu(b)",
        17, "int32[1] st0 = {-3}, int32[1] en0 = {-1}, int32[1] st1 = {4}, int32[1] en1 = {0}, int32[1] ax1 = {-1}, int32[1] step = {-2}",
        {"x": _f32(4, 6, 5)}, {"slice chain": 1}, ["Slice", "Relu"],
    ),
    "slice-attributes-opset9": (
        "(float[4, 6] x) => (float[2, 3] y)",
        "a = Slice<starts=[1], ends=[3]>(x)\n  b = Slice<starts=[2], ends=[5], axes=[1]>(a)\n  y = Relu(b)",
        9, "", {"x": _f32(4, 6)}, {"slice chain": 1}, ["Slice", "Relu"],
    ),
    # Exact Cast chains: PyTorch .long().float(), masks cast twice, autocast round trips, tf2onnx int32/int64.
    "cast-float16-float32-float64": (
        "(float16[2, 3] x) => (double[2, 3] y)",
        "a = Cast<to=1>(x)\n  b = Cast<to=11>(a)\n  y = Neg(b)",
        17, "", {"x": ((2, 3), "float16")}, {"cast chain": 1}, ["Cast", "Neg"],
    ),
    "cast-int32-int64-float": (
        "(int32[2, 3] x) => (float[2, 3] y)",
        "a = Cast<to=7>(x)\n  b = Cast<to=1>(a)\n  y = Neg(b)",
        17, "", {"x": ((2, 3), "int32")}, {"cast chain": 1}, ["Cast", "Neg"],
    ),
    "cast-bool-int64-float": (
        "(bool[2, 3] x) => (float[2, 3] y)",
        "a = Cast<to=7>(x)\n  b = Cast<to=1>(a)\n  y = Neg(b)",
        17, "", {"x": ((2, 3), "bool")}, {"cast chain": 1}, ["Cast", "Neg"],
    ),
    "cast-uint8-int16-float": (
        "(uint8[2, 3] x) => (float[2, 3] y)",
        "a = Cast<to=5>(x)\n  b = Cast<to=1>(a)\n  y = Neg(b)",
        17, "", {"x": ((2, 3), "uint8")}, {"cast chain": 1}, ["Cast", "Neg"],
    ),
    "cast-int8-float-int32": (
        "(int8[2, 3] x) => (int32[2, 3] y)",
        "a = Cast<to=1>(x)\n  b = Cast<to=6>(a)\n  y = Identity(b)",
        17, "", {"x": ((2, 3), "int8")}, {"cast chain": 1}, ["Cast", "Identity"],
    ),
    "cast-float16-round-trip": (
        "(float16[2, 3] x) => (float16[2, 3] y)",
        "a = Cast<to=1>(x)\n  b = Cast<to=10>(a)\n  y = Identity(b)",
        17, "", {"x": ((2, 3), "float16")}, {"cast chain": 1}, ["Identity"],
    ),
    "cast-int32-int64-int32-into-graph-output": (
        "(int32[2, 3] x) => (int32[2, 3] y)",
        "n = Neg(x)\n  a = Cast<to=7>(n)\n  y = Cast<to=6>(a)",
        17, "", {"x": ((2, 3), "int32")}, {"cast chain": 1}, ["Neg"],
    ),
}


@pytest.mark.parametrize("case", sorted(FUSES))
def test_collapses_chain(case):
    signature, body, opset, inits, feeds, stats, after = FUSES[case]
    text = _text(signature, body, opset, inits)
    model, _ = verify(FuseReshapeChainsPass, text, after, None, stats=stats)
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert_equivalent(text, model, _feeds(**feeds))
    assert run_pass(FuseReshapeChainsPass, model).stats == {}


def test_merged_axes():
    text = _text("(float[2, 5] x) => (float[1, 2, 5, 1] y)", "a = Unsqueeze<axes=[-1]>(x)\n  y = Unsqueeze<axes=[0]>(a)", 11)
    model = from_text(text)
    run_pass(FuseReshapeChainsPass, model)
    (unsqueeze,) = model.graph
    assert list(unsqueeze.attributes["axes"].as_ints()) == [0, 3]


NOT_RESHAPE = "reshape chain: input is not a Reshape, Flatten, Squeeze or Unsqueeze"
NOT_SQUEEZE = "squeeze chain: input is not a Squeeze or Unsqueeze"
NOT_UNSQUEEZE = "unsqueeze chain: input is not a Squeeze or Unsqueeze"
NOT_SLICE = "slice chain: input is not a Slice"
NOT_CAST = "cast chain: input is not a Cast"

DECLINES = {
    "reshape-alone": (
        "(float[2, 3, 4] x) => (float[6, 4] y)", "y = Reshape(x, s1)", 17, "int64[2] s1 = {6, 4}",
        {NOT_RESHAPE: 1},
    ),
    "reshape-shared": (
        "(float[2, 3, 4] x) => (float[2, 12] y, float[6, 4] z)", "a = Reshape(x, s1)\n  y = Reshape(a, s2)\n  z = Relu(a)",
        17, "int64[2] s1 = {6, 4}, int64[2] s2 = {2, 12}",
        {NOT_RESHAPE: 1, "reshape chain: first Reshape output is used elsewhere": 1},
    ),
    # PyTorch legacy view(x.size(0), -1): the shape is computed at run time.
    "reshape-dynamic-shape": (
        "(float[2, 3, 4] x, int64[2] s2) => (float[2, 12] y)", "a = Reshape(x, s1)\n  y = Reshape(a, s2)",
        17, "int64[2] s1 = {6, 4}",
        {NOT_RESHAPE: 1, "reshape chain: second shape is not a constant": 1},
    ),
    "reshape-zero-of-unknown-dim": (
        "(float[N, 12] x) => (float[N, 12] y)", "a = Reshape(x, s1)\n  y = Reshape(a, s2)",
        17, "int64[3] s1 = {-1, 3, 4}, int64[2] s2 = {0, 12}",
        {NOT_RESHAPE: 1, "reshape chain: 0 in the second shape copies an intermediate dim that is not known": 1},
    ),
    "squeeze-alone": (
        "(float[2, 1] x) => (float[2] y)", "y = Squeeze(x, one)", 17, "int64[1] one = {1}",
        {NOT_SQUEEZE: 1},
    ),
    "squeeze-shared": (
        "(float[2, 3] x) => (float[2, 3] y, float[2, 1, 3] z)", "a = Unsqueeze(x, one)\n  b = Squeeze(a, one)\n  y = Relu(b)\n  z = Relu(a)",
        17, "int64[1] one = {1}",
        {NOT_UNSQUEEZE: 1, "squeeze chain: first Unsqueeze output is used elsewhere": 1},
    ),
    "squeeze-dynamic-axes": (
        "(float[2, 3] x, int64[1] axes) => (float[2, 3] y)", "a = Unsqueeze(x, one)\n  b = Squeeze(a, axes)\n  y = Relu(b)",
        17, "int64[1] one = {1}",
        {NOT_UNSQUEEZE: 1, "squeeze chain: axes are not constant": 1},
    ),
    "squeeze-without-axes": (
        "(float[2, 3] x) => (float[2, 3] y)", "a = Unsqueeze(x, one)\n  b = Squeeze(a)\n  y = Relu(b)",
        17, "int64[1] one = {1}",
        {NOT_UNSQUEEZE: 1, "squeeze chain: Squeeze without axes": 1},
    ),
    "squeeze-unknown-rank": (
        "(float[] x) => (float[] y)", "a = Unsqueeze(x, zero)\n  b = Squeeze(a, last)\n  y = Relu(b)",
        17, "int64[1] zero = {0}, int64[1] last = {-1}",
        {NOT_UNSQUEEZE: 1, "squeeze chain: negative axes on an input of unknown rank": 1},
    ),
    "squeeze-axes-differ": (
        "(float[2, 1] x) => (float[1, 2] y)", "a = Unsqueeze(x, zero)\n  b = Squeeze(a, two)\n  y = Relu(b)",
        17, "int64[1] zero = {0}, int64[1] two = {2}",
        {NOT_UNSQUEEZE: 1, "squeeze chain: axes do not cancel": 1},
    ),
    "squeeze-input-to-output": (
        "(float[2, 3] x) => (float[2, 3] y)", "a = Unsqueeze(x, one)\n  y = Squeeze(a, one)",
        17, "int64[1] one = {1}",
        {NOT_UNSQUEEZE: 1, "squeeze chain: result is a graph output that cannot be renamed": 1},
    ),
    "unsqueeze-alone": (
        "(float[2] x) => (float[2, 1] y)", "y = Unsqueeze<axes=[1]>(x)", 11, "",
        {NOT_UNSQUEEZE: 1},
    ),
    "unsqueeze-shared": (
        "(float[2, 1, 3] x) => (float[2, 1, 3] y, float[2, 3] z)", "a = Squeeze<axes=[1]>(x)\n  b = Unsqueeze<axes=[1]>(a)\n  y = Relu(b)\n  z = Relu(a)",
        11, "",
        {NOT_SQUEEZE: 1, "unsqueeze chain: first Squeeze output is used elsewhere": 1},
    ),
    "unsqueeze-after-squeeze-without-axes": (
        "(float[2, 1, 3] x) => (float[2, 1, 3] y)", "a = Squeeze(x)\n  b = Unsqueeze(a, one)\n  y = Relu(b)",
        13, "int64[1] one = {1}",
        {NOT_SQUEEZE: 1, "unsqueeze chain: Squeeze without axes": 1},
    ),
    "unsqueeze-axes-differ": (
        "(float[2, 1, 3] x) => (float[2, 3, 1] y)", "a = Squeeze(x, one)\n  b = Unsqueeze(a, two)\n  y = Relu(b)",
        13, "int64[1] one = {1}, int64[1] two = {2}",
        {NOT_SQUEEZE: 1, "unsqueeze chain: axes do not cancel": 1},
    ),
    "unsqueeze-input-to-output": (
        "(float[2, 1, 3] x) => (float[2, 1, 3] y)", "a = Squeeze(x, one)\n  y = Unsqueeze(a, one)",
        13, "int64[1] one = {1}",
        {NOT_SQUEEZE: 1, "unsqueeze chain: result is a graph output that cannot be renamed": 1},
    ),
    "slice-alone": (
        "(float[4, 6] x) => (float[2, 6] y)", "y = Slice(x, st0, en0)", 17, "int64[1] st0 = {1}, int64[1] en0 = {3}",
        {NOT_SLICE: 1},
    ),
    "slice-shared": (
        "(float[4, 6] x) => (float[2, 3] y, float[2, 6] z)", "a = Slice(x, st0, en0, ax0)\n  y = Slice(a, st1, en1, ax1)\n  z = Relu(a)",
        17, "int64[1] st0 = {1}, int64[1] en0 = {3}, int64[1] ax0 = {0}, int64[1] st1 = {2}, int64[1] en1 = {5}, int64[1] ax1 = {1}",
        {NOT_SLICE: 1, "slice chain: first Slice output is used elsewhere": 1},
    ),
    "slice-dynamic-bounds": (
        "(float[4, 6] x, int64[1] st1) => (float[2, 3] y)", "a = Slice(x, st0, en0, ax0)\n  y = Slice(a, st1, en1, ax1)",
        17, "int64[1] st0 = {1}, int64[1] en0 = {3}, int64[1] ax0 = {0}, int64[1] en1 = {5}, int64[1] ax1 = {1}",
        {NOT_SLICE: 1, "slice chain: slice parameters are not constants": 1},
    ),
    "slice-unknown-rank": (
        "(float[] x) => (float[] y)", "a = Slice(x, st0, en0, last)\n  y = Slice(a, st0, en0, ax0)",
        17, "int64[1] st0 = {1}, int64[1] en0 = {3}, int64[1] ax0 = {0}, int64[1] last = {-1}",
        {NOT_SLICE: 1, "slice chain: negative axes on an input of unknown rank": 1},
    ),
    # PyTorch x[1:5][1:3]: both on axis 0.
    "slice-same-axis": (
        "(float[6, 4] x) => (float[2, 4] y)", "a = Slice(x, st0, en0)\n  y = Slice(a, st0, en1)",
        17, "int64[1] st0 = {1}, int64[1] en0 = {5}, int64[1] en1 = {3}",
        {NOT_SLICE: 1, "slice chain: Slice axes overlap": 1},
    ),
    "cast-alone": (
        "(float[2] x) => (double[2] y)", "y = Cast<to=11>(x)", 17, "",
        {NOT_CAST: 1},
    ),
    "cast-shared": (
        "(int32[2] x) => (float[2] y, int64[2] z)", "a = Cast<to=7>(x)\n  y = Cast<to=1>(a)\n  z = Neg(a)", 17, "",
        {NOT_CAST: 1, "cast chain: first Cast output is used elsewhere": 1},
    ),
    "cast-of-unknown-type": (
        "(float[2] x) => (float[2] y)", "c = custom.Op(x)\n  a = Cast<to=11>(c)\n  y = Cast<to=1>(a)", 17, "",
        {NOT_CAST: 1, "cast chain: source type unknown": 1},
    ),
    "cast-through-string": (
        "(float[2] x) => (float[2] y)", "a = Cast<to=8>(x)\n  y = Cast<to=1>(a)", 17, "",
        {NOT_CAST: 1, "cast chain: type outside the exact-cast table": 1},
    ),
    "cast-float32-float16-float32": (
        "(float[2] x) => (float[2] y)", "n = Neg(x)\n  a = Cast<to=10>(n)\n  y = Cast<to=1>(a)", 17, "",
        {NOT_CAST: 1, "cast chain: intermediate type narrows the source type": 1},
    ),
    "cast-int64-int32-int64": (
        "(int64[2] x) => (int64[2] y)", "n = Neg(x)\n  a = Cast<to=6>(n)\n  y = Cast<to=7>(a)", 17, "",
        {NOT_CAST: 1, "cast chain: intermediate type narrows the source type": 1},
    ),
    "cast-int32-float16-float": (
        "(int32[2] x) => (float[2] y)", "a = Cast<to=10>(x)\n  y = Cast<to=1>(a)", 17, "",
        {NOT_CAST: 1, "cast chain: intermediate type narrows the source type": 1},
    ),
    "cast-input-to-output": (
        "(int32[2] x) => (int32[2] y)", "a = Cast<to=7>(x)\n  y = Cast<to=6>(a)", 17, "",
        {NOT_CAST: 1, "cast chain: result is a graph output that cannot be renamed": 1},
    ),
}


@pytest.mark.parametrize("case", sorted(DECLINES))
def test_declines(case):
    signature, body, opset, inits, declined = DECLINES[case]
    text = _text(signature, body, opset, inits)
    verify_declines(FuseReshapeChainsPass, text, declined)
