"""Where a job's files go, and how the driver puts them there: staged beside the output, renamed into place.

Workers write into a staging folder under OUT_DIR (a local worker) or send the files' bytes back (a
Ray task, through the object store); either way the driver moves each file into place with one
`os.replace`, the model last, so a reader never sees half a model, and a crash leaves the old output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["STAGING_FOLDER", "staging_folder", "stage_bytes", "publish", "discard"]

STAGING_FOLDER = ".fleet-staging"


def staging_folder(out_dir: Path, name: str) -> Path:
    """A fresh, empty folder for one job's files, on OUT_DIR's filesystem (so renames are atomic)."""
    root = out_dir / STAGING_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=name.replace("/", "_")[:40] + "-", dir=root))


def stage_bytes(folder: Path, files: Mapping[str, bytes]) -> list[str]:
    """Write files that came back as bytes into a staging folder; their names."""
    for name, data in files.items():
        if Path(name).name != name:
            raise ValueError(f"{name!r}: a staged file name, not a path")
        (folder / name).write_bytes(data)
    return sorted(files)


def publish(folder: Path, names: Iterable[str], output: Path) -> None:
    """Move the staged files beside `output` (the model last) and remove the ones a previous run left
    that this one did not write (an old settings file, old external data)."""
    names = sorted(names, key=lambda name: name == output.name)
    output.parent.mkdir(parents=True, exist_ok=True)
    for stale in (output.with_name(output.name + ".json"), output.with_name(output.name + ".data")):
        if stale.name not in names:
            stale.unlink(missing_ok=True)
    for name in names:
        os.replace(folder / name, output.parent / name)


def discard(folder: Path) -> None:
    """Remove a staging folder (and the staging root once it is empty)."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:
        pass
