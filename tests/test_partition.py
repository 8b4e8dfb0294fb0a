"""Partitioning into pipeline stages and concurrent branch groups: round trips in onnxruntime, the
manifest, balance, refusals, and run_partitioned catching a wrong part."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from optimizer.partition import (
    MANIFEST_NAME,
    Manifest,
    Part,
    PartitionError,
    partition,
    run_partitioned,
)
from optimizer.partition.plan import balanced_cuts
from optimizer.partition.source import SourceGraph

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
FLOAT = TensorProto.FLOAT


def _save(tmp_path: Path, nodes, inputs, outputs, initializers=(), name="model.onnx", ir_version=10) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = ir_version
    path = tmp_path / name
    onnx.save(proto, str(path))
    return path


def _tensor(name, shape, elem_type=FLOAT):
    return helper.make_tensor_value_info(name, elem_type, shape)


def _weight(name, shape, seed=0):
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32), name)


def _chain(tmp_path: Path, heavy_at: int | None = None, length: int = 6) -> Path:
    """x[batch,16] through `length` cheap nodes (Add, Relu alternating; 16 FLOPs each at batch 1) and an
    Identity; `heavy_at` makes that node a MatMul by a [16,16] weight (512 FLOPs) instead."""
    nodes, weights, x = [], [], "x"
    for i in range(length):
        out = f"v{i}"
        if i == heavy_at:
            nodes.append(helper.make_node("MatMul", [x, "big"], [out], name=f"n{i}"))
            weights.append(_weight("big", (16, 16), seed=99))
        elif i % 2 == 0:
            nodes.append(helper.make_node("Add", [x, "bias"], [out], name=f"n{i}"))
        else:
            nodes.append(helper.make_node("Relu", [x], [out], name=f"n{i}"))
        x = out
    nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    weights.append(numpy_helper.from_array(np.linspace(-1, 1, 16, dtype=np.float32), "bias"))
    return _save(tmp_path, nodes, [_tensor("x", ["batch", 16])], [_tensor("y", ["batch", 16])], weights)


def _inception_like(tmp_path: Path, stem: bool = True) -> Path:
    """[stem Relu] -> 4 branches of different cost (1, 2, 3 and 4 MatMuls) -> Concat -> MatMul -> y."""
    nodes, weights = [], []
    top = "x"
    if stem:
        nodes.append(helper.make_node("Relu", ["x"], ["h"], name="stem"))
        top = "h"
    ends = []
    for b in range(4):
        x = top
        for d in range(b + 1):
            w = f"w{b}_{d}"
            weights.append(_weight(w, (32, 32), seed=10 * b + d))
            nodes.append(helper.make_node("MatMul", [x, w], [f"b{b}_m{d}"], name=f"b{b}/mm{d}"))
            nodes.append(helper.make_node("Tanh", [f"b{b}_m{d}"], [f"b{b}_t{d}"], name=f"b{b}/tanh{d}"))
            x = f"b{b}_t{d}"
        ends.append(x)
    nodes.append(helper.make_node("Concat", ends, ["cat"], name="concat", axis=1))
    nodes.append(helper.make_node("MatMul", ["cat", "proj"], ["y"], name="project"))
    weights.append(_weight("proj", (128, 8), seed=7))
    return _save(tmp_path, nodes, [_tensor("x", [2, 32])], [_tensor("y", [2, 8])], weights)


def _feeds(**shapes) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def _check_parts(manifest: Manifest) -> list[onnx.ModelProto]:
    """Every part is a valid, typed standalone model whose interface is what the manifest says."""
    protos = []
    for part in manifest.parts:
        proto = onnx.load(str(manifest.directory / part.file))
        onnx.checker.check_model(proto)
        assert [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}] == part.inputs
        assert [o.name for o in proto.graph.output] == part.outputs
        for value in [*proto.graph.input, *proto.graph.output]:
            assert value.type.HasField("tensor_type") and value.type.tensor_type.elem_type != 0
        assert len(proto.graph.node) == part.nodes
        protos.append(proto)
    return protos


# --------------------------------------------------------------------------- pipeline

@pytest.mark.parametrize("parts", [1, 2, 3])
def test_pipeline_round_trip_on_a_chain(tmp_path, parts):
    manifest = partition(_chain(tmp_path), parts, tmp_path / "out")
    assert [p.role for p in manifest.parts] == ["stage"] * parts
    assert manifest.schedule == [[f"part-{k:02d}.onnx"] for k in range(parts)]
    assert [p.stage for p in manifest.parts] == list(range(parts))
    protos = _check_parts(manifest)
    assert sum(len(p.graph.node) for p in protos) == 7  # every node placed once
    assert protos[0].ir_version == 10 and protos[0].opset_import[0].version == 17
    for earlier, later in zip(manifest.parts, manifest.parts[1:]):
        assert later.inputs == earlier.outputs  # a chain hands on one value
    report = run_partitioned(tmp_path / "out", _feeds(x=(3, 16)), rounds=0)
    assert report.matches and all(row["passed"] for row in report.outputs)
    assert report.outputs[0]["max_abs"] <= 1e-5


def test_pipeline_stage_with_a_heavy_node_holds_it_alone(tmp_path):
    manifest = partition(_chain(tmp_path, heavy_at=2, length=5), 3, tmp_path / "out")
    protos = _check_parts(manifest)
    assert [[n.name for n in p.graph.node] for p in protos] == [["n0", "n1"], ["n2"], ["n3", "n4", "out"]]
    assert manifest.cost_basis == "flops"
    assert manifest.parts[1].flops == max(p.flops for p in manifest.parts)
    assert manifest.parts[1].flops == 2 * 16 * 16 * 1  # batch -> 1 in the cost model
    assert run_partitioned(tmp_path / "out", _feeds(x=(2, 16)), rounds=0).matches


def test_pipeline_on_an_inception_like_model(tmp_path):
    manifest = partition(_inception_like(tmp_path), 3, tmp_path / "out")
    _check_parts(manifest)
    assert len(manifest.parts) == 3
    flops = [p.flops for p in manifest.parts]
    assert max(flops) < 0.6 * sum(flops)  # balanced, not one stage holding most of the work
    assert len(manifest.parts[1].inputs) >= 2  # branches in flight cross the cut
    assert run_partitioned(tmp_path / "out", _feeds(x=(2, 32)), rounds=0).matches


@pytest.mark.parametrize(("name", "shapes", "parts"), [
    ("transformer_block", {"hidden": (2, 8, 64)}, 3),
    ("transformer_block", {"hidden": (1, 5, 64)}, 7),
    ("inception_block", {"x": (1, 16, 16, 16)}, 4),
])
def test_pipeline_round_trip_on_sample_models(tmp_path, name, shapes, parts):
    manifest = partition(SAMPLES / f"{name}.onnx", parts, tmp_path / "out")
    protos = _check_parts(manifest)
    assert len(protos) == parts
    source = onnx.load(str(SAMPLES / f"{name}.onnx"))
    placed = [n.name for p in protos for n in p.graph.node if n.op_type != "Constant"]
    assert sorted(placed) == sorted(n.name for n in source.graph.node if n.op_type != "Constant")  # each once
    assert manifest.inputs == [i.name for i in source.graph.input]
    assert manifest.outputs == [o.name for o in source.graph.output]
    report = run_partitioned(tmp_path / "out", _feeds(**shapes), rounds=0)
    assert report.matches, report.outputs


def test_subgraph_nodes_stay_whole_and_read_outer_values_as_inputs(tmp_path):
    manifest = partition(SAMPLES / "if_model.onnx", 5, tmp_path / "out")
    protos = _check_parts(manifest)
    ifs = [(part, proto) for part, proto in zip(manifest.parts, protos) if any(n.op_type == "If" for n in proto.graph.node)]
    assert len(ifs) == 2
    for part, proto in ifs:
        assert "x" in part.inputs  # the branches read x from the outer scope
        assert all(len(n.attribute) == 2 for n in proto.graph.node if n.op_type == "If")  # both branches kept
    assert any("scale" in {t.name for t in proto.graph.initializer} for _, proto in ifs)  # read inside a branch
    assert run_partitioned(tmp_path / "out", {"x": np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)}, rounds=0).matches


def test_ir3_initializer_inputs_stay_inputs_of_their_part(tmp_path):
    manifest = partition(SAMPLES / "initializer_inputs.onnx", 2, tmp_path / "out")
    for proto in _check_parts(manifest):
        assert proto.ir_version == 3
        inputs = {i.name for i in proto.graph.input}
        assert all(t.name in inputs for t in proto.graph.initializer)  # IR 3: every initializer is an input
    assert manifest.inputs == ["data"]
    assert run_partitioned(tmp_path / "out", _feeds(data=(1, 3, 8, 8)), rounds=0).matches


def test_fewer_nodes_than_parts_makes_fewer_parts_and_says_so(tmp_path):
    manifest = partition(_chain(tmp_path, length=2), 9, tmp_path / "out")
    assert len(manifest.parts) == 3
    assert any("asked for 9 parts" in note and "made 3" in note for note in manifest.notes)


def test_unknown_costs_fall_back_to_node_counts(tmp_path):
    nodes = [helper.make_node("Identity", [f"v{i}"], [f"v{i + 1}"], name=f"id{i}") for i in range(6)]
    path = _save(tmp_path, nodes, [_tensor("v0", [2])], [_tensor("v6", [2])])
    manifest = partition(path, 3, tmp_path / "out")
    assert manifest.cost_basis == "nodes"
    assert [p.nodes for p in manifest.parts] == [2, 2, 2]


@pytest.mark.parametrize("weights,parts", [
    ([1, 1, 100, 1, 1], 3), ([5, 0, 0, 5, 3, 2], 2), ([3, 1, 4, 1, 5, 9, 2, 6], 3), ([0, 0, 0, 0], 2), ([7], 1),
])
def test_balanced_cuts_are_optimal(weights, parts):
    ends = balanced_cuts(weights, parts)
    assert len(ends) == parts and ends[-1] == len(weights)
    assert all(a < b for a, b in zip([0, *ends], ends))  # no empty run

    def score(cuts):
        runs = [sum(weights[a:b]) for a, b in zip([0, *cuts], cuts)]
        return max(runs), sum(r * r for r in runs)

    best = min(score([*c, len(weights)]) for c in itertools.combinations(range(1, len(weights)), parts - 1))
    assert score(ends) == best


# --------------------------------------------------------------------------- branches

def test_branches_round_trip_on_an_inception_like_model(tmp_path):
    manifest = partition(_inception_like(tmp_path), 2, tmp_path / "out", strategy="branches")
    protos = _check_parts(manifest)
    assert [p.role for p in manifest.parts] == ["head", "branches", "branches", "tail"]
    assert manifest.schedule == [["part-00.onnx"], ["part-01.onnx", "part-02.onnx"], ["part-03.onnx"]]
    assert manifest.region == {"fork": "stem", "join": "concat", "branches": 4, "groups": 2}
    assert [n.name for n in protos[0].graph.node] == ["stem"]
    assert [n.name for n in protos[3].graph.node] == ["concat", "project"]
    groups = [sorted({n.name.split("/")[0] for n in proto.graph.node}) for proto in protos[1:3]]
    assert sorted(groups) == [["b0", "b3"], ["b1", "b2"]]  # 1+4 and 2+3 MatMuls: balanced
    assert manifest.parts[1].flops == pytest.approx(manifest.parts[2].flops)
    assert manifest.parts[1].inputs == ["h"] and manifest.parts[2].inputs == ["h"]
    report = run_partitioned(tmp_path / "out", _feeds(x=(2, 32)), rounds=0)
    assert report.matches
    assert any("intra_op_num_threads=1" in note for note in report.notes)


def test_branches_on_the_inception_block_without_a_head(tmp_path):
    manifest = partition(SAMPLES / "inception_block.onnx", 4, tmp_path / "out", strategy="branches")
    _check_parts(manifest)
    assert [p.role for p in manifest.parts] == ["branches"] * 4 + ["tail"]
    assert [len(step) for step in manifest.schedule] == [4, 1]
    assert any("no head part" in note for note in manifest.notes)
    assert run_partitioned(tmp_path / "out", _feeds(x=(1, 16, 16, 16)), rounds=0).matches


def test_branches_refused_on_a_pure_chain(tmp_path):
    with pytest.raises(PartitionError, match=r"^no parallel branches: .*--strategy pipeline") as error:
        partition(_chain(tmp_path), 2, tmp_path / "out", strategy="branches")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- refusals and the manifest

def test_out_dir_not_empty_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(PartitionError, match="not empty"):
        partition(_chain(tmp_path), 2, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    assert len(partition(_chain(tmp_path), 2, out).parts) == 2  # an empty folder is fine


@pytest.mark.parametrize("kwargs,match", [
    ({"parts": 0}, "parts must be"),
    ({"parts": 2, "strategy": "random"}, "unknown strategy"),
    ({"parts": 2, "input_shapes": {"nope": [1, 16]}}, "nope"),
])
def test_bad_requests_are_refused(tmp_path, kwargs, match):
    with pytest.raises(PartitionError, match=match):
        partition(_chain(tmp_path), out_dir=tmp_path / "out", **kwargs)


def test_a_graph_with_a_cycle_is_refused(tmp_path):
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="first"),
        helper.make_node("Relu", ["a"], ["b"], name="second"),
    ]
    path = _save(tmp_path, nodes, [_tensor("x", [2])], [_tensor("b", [2])])
    with pytest.raises(PartitionError, match="topologically sorted"):  # the loader refuses it first
        partition(path, 2, tmp_path / "out")
    with pytest.raises(PartitionError, match="has a cycle .*cannot be ordered"):
        SourceGraph.of(ir.serde.deserialize_model(onnx.load(str(path))))


def test_an_unsorted_graph_is_sorted_into_its_parts(tmp_path):
    nodes = [  # onnx.checker objects to the order, onnxruntime does not
        helper.make_node("Relu", ["a"], ["y"], name="second"),
        helper.make_node("Neg", ["x"], ["a"], name="first"),
    ]
    path = _save(tmp_path, nodes, [_tensor("x", [2])], [_tensor("y", [2])])
    manifest = partition(path, 2, tmp_path / "out")
    assert [[n.name for n in p.graph.node] for p in _check_parts(manifest)] == [["first"], ["second"]]
    assert any("not in topological order" in note for note in manifest.notes)
    assert run_partitioned(tmp_path / "out", {"x": np.array([-1.0, 2.0], np.float32)}, rounds=0).matches


def test_manifest_content(tmp_path):
    path = _chain(tmp_path)
    manifest = partition(path, 2, tmp_path / "out")
    data = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert data == manifest.to_dict()
    assert data["schema_version"] == 1 and data["strategy"] == "pipeline"
    assert data["source"]["path"] == str(path.resolve())
    assert len(data["source"]["sha256"]) == 64
    assert data["inputs"] == ["x"] and data["outputs"] == ["y"]
    assert set(data["parts"][0]) == {"file", "role", "stage", "inputs", "outputs", "flops", "nodes"}
    loaded = Manifest.load(tmp_path / "out")
    assert loaded.to_dict() == manifest.to_dict()
    assert loaded.directory == tmp_path / "out"


def _edit_manifest(directory: Path, change) -> None:
    path = directory / MANIFEST_NAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("change,match", [
    (lambda d: d.update(schema_version=2), "schema_version 2"),
    (lambda d: d.pop("schedule"), "no 'schedule'"),
    (lambda d: d["schedule"].reverse(), "says stage"),
    (lambda d: d["schedule"].pop(), "every part exactly once"),
    (lambda d: d["parts"][0].update(file="../evil.onnx"), "plain .onnx name"),
    (lambda d: d["parts"][1]["inputs"].append("ghost"), "reads 'ghost'"),
    (lambda d: d.update(outputs=["nothing"]), "produced by no part"),
    (lambda d: d.update(strategy="magic"), "unknown strategy"),
])
def test_invalid_manifests_are_refused(tmp_path, change, match):
    partition(_chain(tmp_path), 2, tmp_path / "out")
    _edit_manifest(tmp_path / "out", change)
    with pytest.raises(PartitionError, match=match) as error:
        Manifest.load(tmp_path / "out")
    assert "\n" not in str(error.value)


def test_missing_or_unreadable_manifest_and_missing_part(tmp_path):
    with pytest.raises(PartitionError, match="no manifest"):
        Manifest.load(tmp_path)
    partition(_chain(tmp_path), 2, tmp_path / "out")
    (tmp_path / "out" / "part-01.onnx").unlink()
    with pytest.raises(PartitionError, match="'part-01.onnx' is missing"):
        Manifest.load(tmp_path / "out")
    (tmp_path / "out" / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(PartitionError, match="not a readable JSON manifest"):
        Manifest.load(tmp_path / "out")


# --------------------------------------------------------------------------- run_partitioned

def test_a_tampered_part_is_detected(tmp_path):
    manifest = partition(_chain(tmp_path), 2, tmp_path / "out")
    first = manifest.parts[0]
    [name_in], [name_out] = first.inputs, first.outputs
    # the same interface, but the value it hands on is off by one
    add_one = helper.make_graph(
        [helper.make_node("Add", [name_in, "one"], [name_out])], "tampered",
        [_tensor(name_in, ["batch", 16])], [_tensor(name_out, ["batch", 16])],
        [numpy_helper.from_array(np.ones(16, np.float32), "one")],
    )
    proto = helper.make_model(add_one, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 10
    onnx.save(proto, str(tmp_path / "out" / first.file))
    report = run_partitioned(tmp_path / "out", _feeds(x=(2, 16)), rounds=1)
    assert not report.matches and not report.pays
    assert report.outputs[0]["max_abs"] > 0.1
    assert "differ" in report.verdict and report.latency is None  # a wrong answer is not timed


def test_stream_pipeline_matches_the_whole_model_and_is_timed(tmp_path):
    partition(SAMPLES / "transformer_block.onnx", 3, tmp_path / "out")
    report = run_partitioned(tmp_path / "out", _feeds(hidden=(1, 8, 64)), stream=4, rounds=1)
    assert report.matches and report.stream_matches is True
    assert set(report.latency) == {"whole", "partitioned", "control"}
    assert set(report.throughput) == {"whole", "partitioned", "control"}
    assert report.throughput_speedup > 0 and report.latency_speedup > 0 and report.noise >= 0
    assert isinstance(report.pays, bool)
    assert ("does not pay" in report.verdict) == (not report.pays)  # no speed assertion: the machine is shared
    assert any("stream of 4" in note for note in report.notes)
    json.dumps(report.to_dict())


def test_branches_stream_and_bad_feeds(tmp_path):
    partition(_inception_like(tmp_path), 2, tmp_path / "out", strategy="branches")
    feeds = _feeds(x=(2, 32))
    report = run_partitioned(tmp_path / "out", feeds, stream=3, rounds=0)
    assert report.matches and report.stream_matches is True and report.latency is None
    with pytest.raises(PartitionError, match="lack graph input 'x'"):
        run_partitioned(tmp_path / "out", {}, rounds=0)
    with pytest.raises(PartitionError, match="'extra'"):
        run_partitioned(tmp_path / "out", {**feeds, "extra": feeds["x"]}, rounds=0)
    with pytest.raises(PartitionError, match="stream must be"):
        run_partitioned(tmp_path / "out", feeds, stream=0)


def test_a_moved_source_model_is_reported(tmp_path):
    path = _chain(tmp_path)
    partition(path, 2, tmp_path / "out")
    shutil.move(path, tmp_path / "elsewhere.onnx")
    with pytest.raises(PartitionError, match="source model .* is missing"):
        run_partitioned(tmp_path / "out", _feeds(x=(2, 16)), rounds=0)


def test_partitioning_is_deterministic(tmp_path):
    first = partition(SAMPLES / "transformer_block.onnx", 3, tmp_path / "a", strategy="branches")
    second = partition(SAMPLES / "transformer_block.onnx", 3, tmp_path / "b", strategy="branches")
    assert first.to_dict() == second.to_dict()
    for part in first.parts:
        assert (tmp_path / "a" / part.file).read_bytes() == (tmp_path / "b" / part.file).read_bytes()
    assert (tmp_path / "a" / MANIFEST_NAME).read_bytes() == (tmp_path / "b" / MANIFEST_NAME).read_bytes()


# --------------------------------------------------------------------------- the modules on their own

def _plan(path: Path, strategy: str, parts: int):
    from optimizer.analysis import analyze
    from optimizer.partition.plan import plan_parts

    source = SourceGraph.of(ir.serde.deserialize_model(onnx.load(str(path))))
    notes: list[str] = []
    return source, plan_parts(source, analyze(source.model), strategy, parts, notes), notes


def test_a_plan_is_made_without_extracting_or_writing(tmp_path):
    path = _inception_like(tmp_path)
    before = sorted(tmp_path.iterdir())
    source, plan, notes = _plan(path, "branches", 2)
    assert sorted(tmp_path.iterdir()) == before  # planning writes nothing
    assert [(p.role, p.step) for p in plan.parts] == [("head", 0), ("branches", 1), ("branches", 1), ("tail", 2)]
    assert plan.cost_basis == "flops" and plan.region["groups"] == 2
    placed = [i for p in plan.parts for i in p.nodes]
    assert sorted(placed) == [i for i in range(len(source.nodes)) if not source.constant[i]]  # each node once
    head, *groups, tail = plan.parts
    assert head.outputs == ["h"] and all(g.inputs == ["h"] for g in groups)
    assert sorted(tail.inputs) == sorted(name for g in groups for name in g.outputs)
    assert tail.outputs == ["y"] and any("region" in note for note in notes)
    assert sum(p.flops for p in plan.parts) == pytest.approx(sum(c.flops for c in _analysis_of(path).nodes))


def _analysis_of(path: Path):
    from optimizer.analysis import analyze

    return analyze(ir.serde.deserialize_model(onnx.load(str(path))))


def test_a_pipeline_plan_hands_each_stage_the_previous_stages_outputs(tmp_path):
    _, plan, _ = _plan(_chain(tmp_path), "pipeline", 3)
    assert [p.step for p in plan.parts] == [0, 1, 2] and {p.role for p in plan.parts} == {"stage"}
    assert plan.parts[0].inputs == ["x"] and plan.parts[-1].outputs == ["y"]
    for earlier, later in zip(plan.parts, plan.parts[1:]):
        assert later.boundary == earlier.outputs == later.inputs


def test_an_extracted_part_has_the_planned_interface(tmp_path):
    from optimizer.graph.shapes import infer_shapes
    from optimizer.partition.extract import extract_part

    source, plan, _ = _plan(_chain(tmp_path), "pipeline", 2)
    infer_shapes(source.model)
    part = extract_part(source, plan.parts[1], "g-part-01")
    assert [v.name for v in part.graph.inputs if not v.is_initializer()] == plan.parts[1].inputs
    assert [v.name for v in part.graph.outputs] == plan.parts[1].outputs
    assert len(list(part.graph)) == len(plan.parts[1].keep) and part.graph.name == "g-part-01"
    assert len(list(source.model.graph)) == len(source.nodes)  # the source is not changed


def _manifest_fields(path: Path) -> dict:
    return {"strategy": "pipeline", "source_path": str(path), "source_sha256": "0" * 64,
            "inputs": ["x"], "outputs": ["y"], "cost_basis": "flops", "region": None, "notes": []}


@pytest.mark.parametrize("existing", [False, True])
def test_writing_a_partition_rolls_back_on_failure(tmp_path, existing):
    from optimizer.partition.manifest import write_partition

    path = _chain(tmp_path, length=2)
    model = ir.serde.deserialize_model(onnx.load(str(path)))
    out = tmp_path / "out"
    if existing:
        out.mkdir()

    def parts():
        yield Part("part-00.onnx", "stage", 0, ["x"], ["y"], 1.0, 3), model
        raise RuntimeError("extraction failed")

    with pytest.raises(RuntimeError, match="extraction failed"):
        write_partition(out, parts(), **_manifest_fields(path))
    assert (out.exists() and list(out.iterdir()) == []) if existing else not out.exists()


def test_a_written_partition_loads_back(tmp_path):
    from optimizer.partition.manifest import write_partition

    path = _chain(tmp_path, length=2)
    model = ir.serde.deserialize_model(onnx.load(str(path)))
    written = write_partition(tmp_path / "out", [(Part("part-00.onnx", "stage", 0, ["x"], ["y"], 1.0, 3), model)],
                              **_manifest_fields(path))
    assert written.schedule == [["part-00.onnx"]]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MANIFEST_NAME, "part-00.onnx"]
    assert Manifest.load(tmp_path / "out").to_dict() == written.to_dict()
