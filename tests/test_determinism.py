"""Determinism and idempotence: the same input gives byte-identical files, in one process or across
processes with different hash seeds; optimizing an optimized model changes nothing more."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from optimizer import optimize

SAMPLES = sorted(p for p in (Path(__file__).parent.parent / "sample_models").glob("*.onnx"))
LEVELS = ("O1", "O2", "O3")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_two_runs_are_byte_identical_and_a_third_changes_nothing(sample, level, tmp_path):
    first, second, again = (tmp_path / name for name in ("first", "second", "again"))
    for folder in (first, second, again):
        folder.mkdir()
    optimize(sample, first / "m.onnx", level=level)
    optimize(sample, second / "m.onnx", level=level)
    assert _files(first) == _files(second)
    result = optimize(first / "m.onnx", again / "m.onnx", level=level)
    changed = [record.name for record in result.records if record.modified]
    assert changed == [], f"optimizing the optimized model changed it again: {changed}"
    assert _files(again) == _files(first)


def test_external_data_is_deterministic(tmp_path):
    sample = next(p for p in SAMPLES if p.stem == "transformer_block")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        optimize(sample, tmp_path / name / "m.onnx", external_data=True)
    assert (tmp_path / "a" / "m.onnx.data").is_file()
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_identical_across_processes_with_different_hash_seeds(tmp_path):
    """Set and dict iteration must not leak into the output: Python randomizes str hashes per process."""
    outputs = []
    for seed in ("1", "2"):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        script = (
            "import sys\nfrom pathlib import Path\nfrom optimizer import optimize\n"
            "for sample in sys.argv[2:]:\n"
            "    optimize(sample, Path(sys.argv[1]) / (Path(sample).stem + '.onnx'), level='O3')\n"
        )
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", script, str(folder), *map(str, SAMPLES)], check=True, env=env, timeout=300)
        outputs.append(_files(folder))
    assert outputs[0].keys() == {p.stem + ".onnx" for p in SAMPLES}
    different = [name for name in outputs[0] if outputs[0][name] != outputs[1][name]]
    assert not different, f"outputs differ between hash seeds: {different}"
