"""Conformance on the installed onnx wheel's model cases (simple, pytorch-converted, pytorch-operator).

Each case is one test (id = "<suite>/<case>"), run through scripts/conformance.py's logic: when
onnxruntime reproduces the stored outputs with the original model, the optimized model must too (or
`optimize` must refuse the model with ModelInputError). When the original itself fails in
onnxruntime, `optimize` must still not crash. No network is needed; the onnx 1.22.0 node tests run
only through `make conformance` (scripts/conformance.py --full).

The wheel's light model zoo (9 CNNs, id = "light/<model>") is stricter: onnxruntime must reproduce
the stored output from the inputs onnx's backend runner generates, with the runner's tolerances,
for the original AND the O2-optimized model (about 13 s for the nine on 2 cores).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
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
LIGHT_CASES = harness.discover_light_cases()
LIGHT_MODELS = {"bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
                "squeezenet", "vgg19", "zfnet512"}


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


def test_light_models_found():
    found = {c.name.split("/", 1)[1] for c in LIGHT_CASES}
    assert LIGHT_MODELS <= found, f"light models missing from the onnx wheel: {sorted(LIGHT_MODELS - found)}"
    tolerances = {c.name: (c.rtol, c.atol) for c in LIGHT_CASES}
    # onnx's runner tolerances (data/real/test_<model>/data.json), not the harness's defaults.
    assert tolerances["light/densenet121"] == (2e-3, 1e-7)
    assert tolerances["light/resnet50"] == (1e-3, 1e-7)


def test_light_inputs_are_the_runners():
    """The harness's fallback copy of Runner.generate_dummy_data agrees with onnx's own."""
    import onnx

    Runner = pytest.importorskip("onnx.backend.test.runner").Runner
    for case in LIGHT_CASES:
        model = onnx.load(str(case.model_path), load_external_data=False)
        initializers = {i.name for i in model.graph.initializer}
        for vi in model.graph.input:
            if vi.name in initializers:
                continue
            ours = harness._generate_dummy_data(vi, seed=0, name=case.name, random=False)
            theirs = Runner.generate_dummy_data(vi, seed=0, name=case.name, random=False)
            assert ours.dtype == theirs.dtype == np.float32 and np.array_equal(ours, theirs), case.name
            assert np.array_equal(harness.light_input(vi, case.name), theirs), case.name


@pytest.mark.parametrize("case", LIGHT_CASES, ids=[c.name for c in LIGHT_CASES])
def test_light_model(case):
    result = harness.run_case(case, level="O2", check_crash_on_failing=False)
    # "original-fails" here means the harness no longer reproduces onnx's runner (inputs, tolerances).
    assert result.status == "pass", f"{case.name}: {result.status}: {result.error}"
