"""fuse-attention (TVM style): BERT, GPT-2, cross-attention and scaled-Q/K exports fuse; each decline is named."""

import numpy as np
import onnx_ir as ir
import pytest

from passes.fusion.attention import FuseAttentionPass
from tests.helpers import assert_equivalent, model_text, verify, verify_declines

B, S, H, D = 2, 8, 2, 8
E = H * D
RNG = np.random.default_rng(0)


def _floats(*shape: int) -> str:
    values = RNG.standard_normal(shape).astype(np.float32) * 0.3
    return "{" + ", ".join(f"{v:.4f}" for v in values.reshape(-1)) + "}"


CONSTANTS = f"""float[{E}, {E}] wq = {_floats(E, E)}, float[{E}, {E}] wk = {_floats(E, E)}, float[{E}, {E}] wv = {_floats(E, E)},
   float[{E}] bq = {_floats(E)}, float[{E}] bk = {_floats(E)}, float[{E}] bv = {_floats(E)},
   float[{E}, {3 * E}] wqkv = {_floats(E, 3 * E)}, float[{3 * E}] bqkv = {_floats(3 * E)},
   int64[4] heads = {{{B}, {S}, -1, {D}}}, int64[4] heads0 = {{0, 0, {H}, {D}}}, int64[3] merged = {{{B}, {S}, -1}},
   int64[3] merged0 = {{0, 0, {E}}}, int64[2] flat = {{-1, {E}}}, int64[3] packed = {{{B}, {S}, {3 * E}}},
   int64[3] thirds = {{{E}, {E}, {E}}}, int64[3] seq_first = {{{S}, {B}, {E}}}, float scale = {{{D ** -0.5}}}, float root = {{{D ** 0.5}}}, float quarter_root = {{{D ** -0.25}}}, float negative = {{-0.3}}"""

BERT_PROJECTIONS = """mq = MatMul(x, wq)
  q = Add(mq, bq)
  mk = MatMul(x, wk)
  k = Add(bk, mk)
  mv = MatMul(x, wv)
  v = Add(mv, bv)"""

GPT2_PROJECTIONS = """x2 = Reshape(x, flat)
  g = Gemm(x2, wqkv, bqkv)
  p = Reshape(g, packed)
  q, k, v = Split<axis=2>(p, thirds)"""

HEADS = """rq = Reshape(q, {heads})
  qh = Transpose<perm=[0, 2, 1, 3]>(rq)
  rk = Reshape(k, {heads})
  kt = Transpose<perm=[0, 2, 3, 1]>(rk)
  rv = Reshape(v, {heads})
  vh = Transpose<perm=[0, 2, 1, 3]>(rv)"""

SCORES = """qk = MatMul(qh, kt)
  scaled = Mul(qk, scale)"""

SOFTMAX_MASKED = """masked = Add(scaled, mask)
  probs = Softmax<axis=-1>(masked)"""

MERGE = """ctx = MatMul(probs, vh)
  ct = Transpose<perm=[0, 2, 1, 3]>(ctx)
  y = Reshape(ct, {merged})"""


def _text(body: str, inputs: str = f"float[{B}, {S}, {E}] x, float[1, 1, {S}, {S}] mask", outputs: str = f"float[{B}, {S}, {E}] y", opset: int = 17) -> str:
    return model_text(body, inputs, outputs, CONSTANTS, opset=opset, ir_version=8)


def _model(projections: str = BERT_PROJECTIONS, heads: str = "heads", scores: str = SCORES, softmax: str = SOFTMAX_MASKED, merged: str = "merged") -> str:
    return "\n  ".join([projections, HEADS.format(heads=heads), scores, softmax, MERGE.format(merged=merged)])


def _feeds(mask_shape=(1, 1, S, S), kv_seq: int | None = None, batch: int = B, seq: int = S) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((batch, seq, E)).astype(np.float32)}
    if mask_shape is not None:
        mask = np.where(rng.random(mask_shape) < 0.25, np.float32(-3.4028235e38), np.float32(0)).astype(np.float32)
        mask[..., 0] = 0  # every row keeps one key
        feeds["mask"] = mask
    if kv_seq is not None:
        feeds["memory"] = rng.standard_normal((batch, kv_seq, E)).astype(np.float32)
    return feeds


CAUSAL = np.triu(np.full((S, S), -10000.0, dtype=np.float32), 1).reshape(1, 1, S, S)


def _attributes(model: ir.Model, op: str) -> dict:
    node = next(n for n in model.graph if n.op_type == op)
    assert node.domain == "com.microsoft"
    return {name: attr.value for name, attr in node.attributes.items()}


@pytest.mark.parametrize(
    "body",
    [
        _model(),
        _model(scores="qk = MatMul(qh, kt)\n  scaled = Div(qk, root)"),
        _model(heads="heads0", merged="merged0"),
        _model(scores="qs = Mul(qh, quarter_root)\n  ks = Mul(kt, quarter_root)\n  scaled = MatMul(qs, ks)"),
        _model(
            softmax=SOFTMAX_MASKED,
            scores=SCORES,
        ).replace("kt = Transpose<perm=[0, 2, 3, 1]>(rk)", "kh = Transpose<perm=[0, 2, 1, 3]>(rk)\n  kt = Transpose<perm=[0, 1, 3, 2]>(kh)"),
    ],
    ids=["bert-mul-scale", "div-scale", "reshape-zeros", "scaled-q-and-k", "k-two-transposes"],
)
def test_fuses_bert_style_attention_into_packed_attention(body):
    text = _text(body)
    model, _ = verify(FuseAttentionPass, text, ["Attention"], None, stats={"attention": 1})
    attributes = _attributes(model, "Attention")
    assert attributes["num_heads"] == H
    assert attributes["scale"] == pytest.approx(D**-0.5, rel=1e-6)
    assert model.opset_imports["com.microsoft"] == 1
    assert_equivalent(text, model, _feeds(), rtol=1e-4, atol=1e-5)


def test_fuses_gpt2_packed_projection_with_causal_mask():
    text = _text(_model(projections=GPT2_PROJECTIONS))
    model, _ = verify(FuseAttentionPass, text, ["Attention"], None, stats={"attention": 1})
    feeds = _feeds()
    feeds["mask"] = CAUSAL
    assert_equivalent(text, model, feeds, rtol=1e-4, atol=1e-5)


def test_fuses_unmasked_attention():
    text = _text(_model(softmax="probs = Softmax<axis=-1>(scaled)"), inputs=f"float[{B}, {S}, {E}] x")
    verify(FuseAttentionPass, text, ["Attention"], _feeds(mask_shape=None), stats={"attention": 1}, rtol=1e-4, atol=1e-5)


def test_padding_mask_broadcast_over_queries_is_expanded():
    text = _text(_model(), inputs=f"float[{B}, {S}, {E}] x, float[{B}, 1, 1, {S}] mask")
    verify(FuseAttentionPass, text, ["Expand", "Attention"], _feeds(mask_shape=(B, 1, 1, S)), stats={"attention": 1}, rtol=1e-4, atol=1e-5)


def test_heads_merged_into_rows_keep_their_2d_shape():
    text = _text(_model(merged="flat"), outputs=f"float[{B * S}, {E}] y")
    verify(FuseAttentionPass, text, ["Attention", "Reshape"], _feeds(), stats={"attention": 1}, rtol=1e-4, atol=1e-5)


def test_cross_attention_becomes_multi_head_attention():
    body = _model().replace("mk = MatMul(x, wk)", "mk = MatMul(memory, wk)").replace("mv = MatMul(x, wv)", "mv = MatMul(memory, wv)")
    body = body.replace("rk = Reshape(k, heads)", "rk = Reshape(k, heads0)").replace("rv = Reshape(v, heads)", "rv = Reshape(v, heads0)")
    text = _text(body, inputs=f"float[{B}, {S}, {E}] x, float[{B}, 5, {E}] memory, float[1, 1, {S}, 5] mask")
    model, _ = verify(FuseAttentionPass, text, ["MatMul", "Add", "MatMul", "Add", "MatMul", "Add", "MultiHeadAttention"], None, stats={"attention": 1})
    assert _attributes(model, "MultiHeadAttention")["num_heads"] == H
    assert_equivalent(text, model, _feeds(mask_shape=(1, 1, S, 5), kv_seq=5), rtol=1e-4, atol=1e-5)


def test_dynamic_batch_and_sequence_fuse():
    body = _model(heads="heads0", merged="merged0")
    text = _text(body, inputs=f"float[batch, seq, {E}] x, float[batch, 1, seq, seq] mask", outputs=f"float[batch, seq, {E}] y")
    model, _ = verify(FuseAttentionPass, text, ["Attention"], None, stats={"attention": 1})
    feeds = _feeds(mask_shape=(3, 1, 5, 5), batch=3, seq=5)
    assert_equivalent(text, model, feeds, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "body, inputs, outputs, reason",
    [
        (_model(softmax=SOFTMAX_MASKED.replace("axis=-1", "axis=2")), None, None, "Softmax is not over the last axis of 4-D scores"),
        (_model(), None, f"float[{B}, {S}, {E}] y, float[{B}, {H}, {S}, {S}] scaled", "an intermediate is used elsewhere"),
        (_model(), None, f"float[{B}, {S}, {E}] y, float[{B}, {H}, {S}, {S}] qk", "an intermediate is used elsewhere"),
        (_model(merged="seq_first"), None, f"float[{S}, {B}, {E}] y", "merged heads are not [B,S,hidden] or [B*S,hidden]"),
        (_model(), f"float[{B}, {S}, {E}] x, float[{S}] mask", None, "mask is not 4-D"),
        (_model(), f"float[{B}, {S}, {E}] x, float[1, 1, {S}, 1] mask", None, "mask shape is not [B|1, H|1, S, T]"),
        (_model().replace("qh = Transpose<perm=[0, 2, 1, 3]>(rq)", "qh = Transpose<perm=[0, 2, 3, 1]>(rq)").replace("kt = Transpose<perm=[0, 2, 3, 1]>(rk)", "kt = Transpose<perm=[0, 2, 1, 3]>(rk)"), None, None, "heads are not split by Reshape and Transpose"),
        (_model(), None, f"float[{B}, {S}, {E}] y, float[{B}, {H}, {S}, {S}] probs", "probabilities are not multiplied by V"),
        (_model(merged="heads"), None, f"float[{B}, {S}, {H}, {D}] y", "merged heads are not [B,S,hidden] or [B*S,hidden]"),
        (_model(scores="qk = MatMul(qh, kt)\n  scaled = Mul(qk, mask)", softmax="probs = Softmax<axis=-1>(scaled)"), None, None, "scores are not MatMul(Q, K^T)"),
        (_model(scores="qk = MatMul(qh, kt)\n  scaled = Mul(qk, negative)"), None, None, "attention scale is not positive"),
    ],
    ids=["softmax-axis", "scores-used-elsewhere", "raw-scores-used-elsewhere", "merged-seq-first", "mask-rank", "mask-shape", "not-head-split", "probs-used-elsewhere", "merged-2d", "non-constant-scale", "negative-scale"],
)
def test_declines(body, inputs, outputs, reason):
    kwargs = {}
    if inputs:
        kwargs["inputs"] = inputs
    if outputs:
        kwargs["outputs"] = outputs
    text = _text(body, **kwargs)
    verify_declines(FuseAttentionPass, text, {f"attention: {reason}": 1})
