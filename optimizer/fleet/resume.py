"""Resume: a record beside each output says what made it, so a rerun skips what is up to date.

`OUT.onnx.fleet.json` holds the fingerprint of the job (the source model's and input files' sha256,
the options, the node type, the tool's and onnxruntime's versions), the output's sha256 and the
job's outcome (its report document). A job is up to date when its record's fingerprint equals the
job's, the output is still the one recorded, and the job did not fail (a failure is always retried).
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

from optimizer import __version__
from optimizer.fleet.manifest import PATH_KEYS, Job

__all__ = ["RECORD_SUFFIX", "record_path", "fingerprint", "recorded_outcome", "write_record"]

RECORD_SUFFIX = ".fleet.json"
RECORD_VERSION = 1


def record_path(output: Path) -> Path:
    return output.with_name(output.name + RECORD_SUFFIX)


def _sha256(path: str | os.PathLike) -> str | None:
    from optimizer.io import content_digest

    return content_digest(path).hex() if Path(path).exists() else None


def _versions() -> dict:
    versions = {"optimize": __version__}
    for package in ("onnxruntime", "onnx", "onnx-ir"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def fingerprint(job: Job) -> dict:
    """What the output depends on: source bytes, input files, options, machine type, tool versions."""
    files = {key: _sha256(job.options[key]) for key in PATH_KEYS if isinstance(job.options.get(key), str) and Path(job.options[key]).is_file()}
    return {
        "version": RECORD_VERSION,
        "source_sha256": _sha256(job.source),
        "files_sha256": files,
        "options": json.loads(json.dumps(dict(job.options), sort_keys=True, default=str)),
        "node_type": job.node_type,
        "tool": _versions(),
    }


def recorded_outcome(job: Job, current: dict) -> dict | None:
    """The recorded outcome when the job's output is up to date with `current` (its fingerprint), else None."""
    try:
        record = json.loads(record_path(job.output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    outcome = record.get("outcome") or {}
    if record.get("fingerprint") != current or outcome.get("status") not in ("ok", "gate-failed"):
        return None
    if record.get("output_sha256") != _sha256(job.output):
        return None
    return outcome


def write_record(job: Job, current: dict, outcome: dict) -> None:
    """Write the record atomically, after the output is in place."""
    path = record_path(job.output)
    body = {"fingerprint": current, "output_sha256": _sha256(job.output), "outcome": outcome}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(body, indent=1, default=str, allow_nan=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)
