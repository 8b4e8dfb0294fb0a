"""Conformance on the installed onnx wheel's model cases (simple, pytorch-converted, pytorch-operator).

Each case is one test (id = "<suite>/<case>"), run through scripts/conformance.py's logic: when
onnxruntime reproduces the stored outputs with the original model, the optimized model must too (or
`optimize` must refuse the model with ModelInputError). When the original itself fails in
onnxruntime, `optimize` must still not crash. No network is needed; the onnx 1.22.0 node tests run
only through `make conformance` (scripts/conformance.py --full).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "conformance.py"


def _load_harness():
    name = "_conformance_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered while it executes
    spec.loader.exec_module(module)
    return module


harness = _load_harness()
CASES = harness.discover_cases(harness.installed_case_dirs())


def test_installed_cases_found():
    assert len(CASES) >= 100, f"expected the onnx wheel's ~140 model cases, found {len(CASES)}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case):
    result = harness.run_case(case, level="O2", check_crash_on_failing=False)
    if result.status == "regression":
        pytest.fail(f"{case.name}: {result.error}", pytrace=False)
    if result.status in ("original-fails", "skipped"):
        # Nothing to compare against, but the optimizer must refuse cleanly or produce a model.
        with tempfile.TemporaryDirectory(prefix="conformance-") as scratch:
            outcome = harness.run_optimizer(case, Path(scratch) / "model.opt.onnx", "O2")
        if outcome is not None and outcome[0] == "crash":
            pytest.fail(f"{case.name} (original {result.status}: {result.error[:120]}): optimize crashed: {outcome[1]}",
                        pytrace=False)
    # "pass" and "refused" (ModelInputError) are both acceptable outcomes.
