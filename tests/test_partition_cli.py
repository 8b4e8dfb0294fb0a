"""`optimize partition` and `optimize run-partitioned` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from click.testing import CliRunner
from onnx import helper

from optimizer.cli import cli

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_branches_partition_round_trip_exits_0(tmp_path):
    out = tmp_path / "parts"
    made = invoke("partition", SAMPLES / "inception_block.onnx", "--parts", "2", "--strategy", "branches", "-o", out)
    assert made.exit_code == 0, made.output
    assert "schedule (| runs concurrently): [part-00.onnx | part-01.onnx] -> part-02.onnx" in made.output
    ran = invoke("run-partitioned", out, "--rounds", "1", "--json")
    assert ran.exit_code == 0, ran.output
    report = json.loads(ran.stdout)
    assert report["matches"] is True and report["strategy"] == "branches"
    assert report["verdict"]  # honest either way; speed is not asserted


def test_pipeline_stream_on_the_transformer_block(tmp_path):
    out = tmp_path / "stages"
    made = invoke("partition", SAMPLES / "transformer_block.onnx", "--parts", "3", "-o", out, "--json")
    assert made.exit_code == 0, made.output
    manifest = json.loads(made.stdout)
    assert manifest["strategy"] == "pipeline" and len(manifest["parts"]) == 3
    ran = invoke("run-partitioned", out, "--stream", "3", "--rounds", "1")
    assert ran.exit_code == 0, ran.output
    assert "throughput over a stream of 3" in ran.output


def test_parts_that_differ_exit_1(tmp_path):
    out = tmp_path / "parts"
    assert invoke("partition", SAMPLES / "transformer_block.onnx", "--parts", "2", "-o", out).exit_code == 0
    last = sorted(out.glob("part-*.onnx"))[-1]
    model = onnx.load(last)
    graph = model.graph
    final = graph.output[0].name
    graph.node[-1].output[0] = final + "_raw"
    graph.node.append(helper.make_node("Neg", [final + "_raw"], [final]))
    onnx.save(model, last)
    ran = invoke("run-partitioned", out, "--rounds", "0")
    assert ran.exit_code == 1 and "DIFFERS" in ran.output


def test_partition_refusals_exit_2_in_one_line(tmp_path):
    chain = invoke("partition", SAMPLES / "cnn_bn.onnx", "--parts", "2", "--strategy", "branches", "-o", tmp_path / "p")
    assert chain.exit_code == 2 and "no parallel branches" in chain.stderr and "--strategy pipeline" in chain.stderr
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("keep")
    refused = invoke("partition", SAMPLES / "cnn_bn.onnx", "--parts", "2", "-o", busy)
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert (busy / "x.txt").read_text() == "keep"
    missing = invoke("run-partitioned", tmp_path / "nothing")
    assert missing.exit_code == 2 and "Traceback" not in missing.output
