"""Record the sha256 of every sample model optimized at O1-O3 and of the light zoo at O2/O3 (python -m tests.golden.build).

The refactor of the framework (issue 15) must keep outputs byte-identical: `tests/test_golden.py`
compares today's outputs against the digests recorded here before it. Re-record only for a change
that is meant to alter outputs, and say so in the CHANGELOG.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLES = sorted((ROOT / "sample_models").glob("*.onnx"))
LEVELS = ("O1", "O2", "O3")


def light_zoo() -> list[Path]:
    """The onnx wheel's light model zoo (9 CNNs with their weights generated): real exports' graphs."""
    import onnx

    return sorted((Path(onnx.__file__).parent / "backend" / "test" / "data" / "light").glob("light_*.onnx"))


def cases() -> list[tuple[Path, str]]:
    """Every sample at every level, and every light-zoo CNN at O2 and O3."""
    return [(s, level) for s in SAMPLES for level in LEVELS] + [(m, level) for m in light_zoo() for level in ("O2", "O3")]
DIGESTS = Path(__file__).with_name("sample_outputs.json")


def digest_of(sample: Path, level: str, folder: Path) -> str:
    from optimizer import optimize

    out = folder / f"{sample.stem}-{level}.onnx"
    optimize(sample, out, level=level)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        digests = {f"{s.stem}@{level}": digest_of(s, level, Path(scratch)) for s, level in cases()}
    DIGESTS.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(digests)} digests to {DIGESTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
