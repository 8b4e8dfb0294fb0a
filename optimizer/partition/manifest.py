"""The manifest of a partitioned model (`manifest.json`): its schema, loading with validation, and
writing a partition folder with rollback.

A partition folder holds the part files and `manifest.json`: schema version, strategy, the source
model (path and sha256), the graph's inputs and outputs, every part (file, role, schedule step,
inputs, outputs, FLOPs, nodes) and the schedule (steps whose parts may run concurrently). Loading
checks that every part reads only graph inputs and earlier steps' outputs and that every graph output
is produced. Writing stages the manifest and renames it into place last; on any failure the files
written (and the folder, when this call created it) are removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import onnx_ir as ir

from optimizer.partition.errors import PartitionError

__all__ = [
    "MANIFEST_NAME",
    "ROLES",
    "SCHEMA_VERSION",
    "STRATEGIES",
    "Manifest",
    "Part",
    "check_out_dir",
    "sha256_of",
    "write_partition",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
STRATEGIES = ("pipeline", "branches")
ROLES = ("stage", "head", "branches", "tail")


@dataclasses.dataclass
class Part:
    """One part file: what it reads, what it hands on, what it costs, and its schedule step."""

    file: str
    role: str  # "stage" (pipeline), "head", "branches" or "tail"
    stage: int  # index of its step in the schedule
    inputs: list[str]  # values to feed: graph inputs and earlier parts' outputs
    outputs: list[str]  # values later parts read, and graph outputs it produces
    flops: float
    nodes: int  # nodes in the part file (copied Constant nodes included)


@dataclasses.dataclass
class Manifest:
    """The parts of a partitioned model and the order to run them in (`manifest.json`)."""

    strategy: str
    source_path: str
    source_sha256: str
    inputs: list[str]
    outputs: list[str]
    parts: list[Part]
    schedule: list[list[str]]  # steps; the part files of one step may run concurrently
    cost_basis: str = "flops"  # "flops" or "nodes"
    region: dict | None = None  # branches: {"fork", "join", "branches", "groups"}
    notes: list[str] = dataclasses.field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    directory: Path | None = None  # where it was loaded from or written to; not serialized

    def to_dict(self) -> dict:
        """A JSON-ready dict (the content of `manifest.json`)."""
        return {
            "schema_version": self.schema_version,
            "strategy": self.strategy,
            "source": {"path": self.source_path, "sha256": self.source_sha256},
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "cost_basis": self.cost_basis,
            "region": self.region,
            "parts": [dataclasses.asdict(p) for p in self.parts],
            "schedule": [list(step) for step in self.schedule],
            "notes": list(self.notes),
        }

    def part(self, file: str) -> Part:
        """The part whose file is `file`."""
        return next(p for p in self.parts if p.file == file)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Manifest:
        """Read and validate `directory/manifest.json` (PartitionError, one line, when it is not usable)."""
        directory = Path(directory)
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise PartitionError(f"{path}: no manifest (not a folder written by partition?)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PartitionError(f"{path}: not a readable JSON manifest ({error})") from None
        try:
            manifest = cls._from_dict(data)
        except PartitionError as error:
            raise PartitionError(f"{path}: {error}") from None
        for part in manifest.parts:
            if not (directory / part.file).is_file():
                raise PartitionError(f"{path}: part file {part.file!r} is missing")
        manifest.directory = directory
        return manifest

    @classmethod
    def _from_dict(cls, data) -> Manifest:
        """A manifest from the parsed JSON, checked field by field (PartitionError on the first problem)."""
        version = _need(data, "schema_version", int)
        if version != SCHEMA_VERSION:
            raise PartitionError(f"schema_version {version} is not supported (expected {SCHEMA_VERSION})")
        strategy = _need(data, "strategy", str)
        if strategy not in STRATEGIES:
            raise PartitionError(f"unknown strategy {strategy!r}")
        source = _need(data, "source", dict)
        parts = [_part_of(entry, f"parts[{index}]") for index, entry in enumerate(_need(data, "parts", list))]
        if not parts:
            raise PartitionError("lists no parts")
        files = [p.file for p in parts]
        if len(set(files)) != len(files):
            raise PartitionError("a part file is listed twice")
        schedule = _need(data, "schedule", list)
        if not all(isinstance(step, list) and step for step in schedule):
            raise PartitionError("schedule must be a list of non-empty lists of part files")
        scheduled = [file for step in schedule for file in step]
        if sorted(map(str, scheduled)) != sorted(files):
            raise PartitionError("schedule does not list every part exactly once")
        manifest = cls(
            strategy=strategy,
            source_path=_need(source, "path", str, "source"),
            source_sha256=_need(source, "sha256", str, "source"),
            inputs=_names(_need(data, "inputs", list), "inputs"),
            outputs=_names(_need(data, "outputs", list), "outputs"),
            parts=parts,
            schedule=[list(step) for step in schedule],
            cost_basis=str(data.get("cost_basis", "flops")),
            region=data.get("region") if isinstance(data.get("region"), dict) else None,
            notes=[str(n) for n in data.get("notes", []) if isinstance(n, str)],
        )
        _check_data_flow(manifest)
        return manifest


def _need(mapping, key: str, kind, where: str = "manifest"):
    """`mapping[key]`, which must be of type `kind` (a bool is no number)."""
    if not isinstance(mapping, dict) or key not in mapping:
        raise PartitionError(f"{where} has no {key!r}")
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise PartitionError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _names(value, where: str) -> list[str]:
    """A list of non-empty value names."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PartitionError(f"{where} must be a list of names")
    return list(value)


def _part_of(entry, where: str) -> Part:
    """One entry of the manifest's `parts`, checked."""
    file = _need(entry, "file", str, where)
    if not file.endswith(".onnx") or Path(file).name != file or file.startswith("."):
        raise PartitionError(f"{where}: file {file!r} must be a plain .onnx name inside the folder")
    role = _need(entry, "role", str, where)
    if role not in ROLES:
        raise PartitionError(f"{where}: unknown role {role!r}")
    return Part(
        file, role, _need(entry, "stage", int, where),
        _names(_need(entry, "inputs", list, where), f"{where}.inputs"),
        _names(_need(entry, "outputs", list, where), f"{where}.outputs"),
        float(_need(entry, "flops", (int, float), where)), _need(entry, "nodes", int, where),
    )


def _check_data_flow(manifest: Manifest) -> None:
    """Every part runs at its stage and reads only graph inputs and earlier steps' outputs; every graph output is produced."""
    available = set(manifest.inputs)
    for step_index, step in enumerate(manifest.schedule):
        for file in step:
            part = manifest.part(file)
            if part.stage != step_index:
                raise PartitionError(f"part {file!r} says stage {part.stage} but the schedule runs it at step {step_index}")
            missing = [name for name in part.inputs if name not in available]
            if missing:
                raise PartitionError(f"part {file!r} reads {missing[0]!r}, which no graph input or earlier part provides")
        available.update(name for file in step for name in manifest.part(file).outputs)
    missing = [name for name in manifest.outputs if name not in available]
    if missing:
        raise PartitionError(f"graph output {missing[0]!r} is produced by no part")


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_out_dir(out_dir: Path) -> None:
    """Refuse anything but a missing or empty folder."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise PartitionError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()):
            raise PartitionError(f"{out_dir}: folder is not empty; give a new or empty folder")


def _prepare_out_dir(out_dir: Path) -> bool:
    """Check the folder again and create it when missing; True when this call created it."""
    check_out_dir(out_dir)
    if out_dir.exists():
        return False
    try:
        out_dir.mkdir(parents=True)
    except OSError as error:
        raise PartitionError(f"{out_dir}: cannot create ({error.strerror or error})") from None
    return True


def _write_files(out_dir: Path, parts: Iterable[tuple[Part, ir.Model]], fields: dict, written: list[Path]) -> Manifest:
    """Save every part model, then stage and rename the manifest; `written` lists what is on disk."""
    from optimizer import io

    manifest_parts = []
    for part, model in parts:
        written.append(out_dir / part.file)
        io.save(model, out_dir / part.file)
        manifest_parts.append(part)
    steps = max(p.stage for p in manifest_parts) + 1
    manifest = Manifest(
        parts=manifest_parts,
        schedule=[[p.file for p in manifest_parts if p.stage == s] for s in range(steps)],
        directory=out_dir,
        **fields,
    )
    Manifest._from_dict(json.loads(json.dumps(manifest.to_dict())))  # what we write, we can read
    staged = out_dir / (MANIFEST_NAME + ".tmp")
    written.append(staged)
    staged.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(staged, out_dir / MANIFEST_NAME)
    return manifest


def write_partition(out_dir: Path, parts: Iterable[tuple[Part, ir.Model]], **fields) -> Manifest:
    """Write the part models and `manifest.json` into `out_dir` (missing or empty), all or nothing.

    `parts` may be lazy (models extracted one at a time); `fields` are the Manifest's other fields
    (strategy, source_path, source_sha256, inputs, outputs, cost_basis, region, notes). The schedule
    follows the parts' stages.
    """
    created = _prepare_out_dir(out_dir)
    written: list[Path] = []
    try:
        return _write_files(out_dir, parts, fields, written)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".data").unlink(missing_ok=True)
        if created:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        raise
