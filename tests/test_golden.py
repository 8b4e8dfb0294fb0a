"""Outputs stay byte-identical across refactors: every sample at O1-O3 and the light zoo at O2/O3 against the recorded digests."""

import json

import pytest

from tests.golden.build import DIGESTS, cases, digest_of

RECORDED = json.loads(DIGESTS.read_text())
CASES = cases()


def test_every_case_is_recorded():
    assert set(RECORDED) == {f"{model.stem}@{level}" for model, level in CASES}
    assert len(CASES) == 6 * 3 + 9 * 2


@pytest.mark.parametrize(("model", "level"), CASES, ids=lambda v: getattr(v, "stem", v))
def test_output_matches_the_recorded_digest(model, level, tmp_path):
    assert digest_of(model, level, tmp_path) == RECORDED[f"{model.stem}@{level}"], (
        f"{model.name} at {level} no longer optimizes to the recorded bytes; "
        "if the change is meant to alter outputs, re-record with python -m tests.golden.build"
    )
