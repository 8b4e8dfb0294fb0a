"""What a fleet run optimizes: a folder of `*.onnx` (recursively) or a manifest, as a list of `Job`s.

A manifest is JSON or YAML (`.json`, `.yaml`, `.yml`)::

    defaults: {level: O3, tune: false}        # options for every model (the command line's are under them)
    models:
      - path: vision/resnet.onnx              # relative to the manifest's folder
        input_shape: {input: [1, 3, 224, 224]}
        gates: {max_size: 50MB, forbid_ops: [Loop]}
      - path: text/bert.onnx
        name: bert-int8                       # the output's name [default: the path's]
        quantize: dynamic
        max_error: [rel=0.01]

Option keys are the main command's long flags with `_` for `-` (`skip_passes`, `input_shape`, ...).
Unknown keys are refused up front (a typo must not silently fall back to a default); the values
are checked where they are used, per model, so one bad entry fails one model.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from optimizer.errors import UserError

__all__ = ["FleetInputError", "Job", "OPTION_KEYS", "GATE_KEYS", "load_jobs"]

OPTION_KEYS = frozenset({
    "level", "passes", "skip_passes", "inputs", "input_shape", "verify", "rtol", "atol", "strict",
    "keep_initializer_inputs", "external_data", "fold_max_bytes", "fold_max_growth", "target_opset",
    "tune", "budget", "objective", "batch", "quantize", "calibration", "max_error", "per_channel",
    "quant_format", "exclude_nodes", "op_types", "prune_outputs", "prune_weights", "gates",
})
"""Per-model options: the main command's, plus `gates` (the static gates of `optimize check`)."""

GATE_KEYS = frozenset({"max_size", "max_params", "require_ops", "forbid_ops"})
PATH_KEYS = ("inputs", "calibration")
"""Options naming files: relative to the manifest's folder."""


class FleetInputError(UserError):
    """A fleet that cannot be run: no models, an unreadable manifest, an unknown option, clashing outputs."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One model to optimize: where it is, where its output goes, with which options (JSON values only)."""

    name: str
    source: Path
    output: Path
    options: Mapping[str, object]
    node_type: str | None = None

    @property
    def tuned(self) -> bool:
        """Tuning times the model: it needs a machine of its own."""
        return bool(self.options.get("tune", True))

    def to_dict(self) -> dict:
        return {"name": self.name, "source": str(self.source), "output": str(self.output), "options": dict(self.options), "node_type": self.node_type}


def _check_keys(options: Mapping, where: str) -> None:
    unknown = sorted(set(options) - OPTION_KEYS)
    if unknown:
        raise FleetInputError(f"{where}: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(OPTION_KEYS))})")
    gates = options.get("gates") or {}
    if not isinstance(gates, Mapping) or set(gates) - GATE_KEYS:
        raise FleetInputError(f"{where}: gates must map {', '.join(sorted(GATE_KEYS))} to limits")


def _read_manifest(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise FleetInputError(f"{path}: not valid JSON ({error})") from None
    try:
        import yaml
    except ImportError:
        raise FleetInputError(f"{path}: YAML manifests need PyYAML (pip install pyyaml), or write the manifest as JSON") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise FleetInputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None


def _manifest_entries(path: Path) -> tuple[dict, list[dict]]:
    """The manifest's defaults and its model entries, each with an absolute `path`."""
    data = _read_manifest(path)
    if isinstance(data, list):
        data = {"models": data}
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), list):
        raise FleetInputError(f"{path}: expected a list of models, or a mapping with `models` (and optional `defaults`)")
    defaults = dict(data.get("defaults") or {})
    _check_keys(defaults, f"{path}: defaults")
    entries = []
    for number, raw in enumerate(data["models"], 1):
        entry = {"path": raw} if isinstance(raw, str) else dict(raw) if isinstance(raw, Mapping) else None
        if entry is None or not entry.get("path"):
            raise FleetInputError(f"{path}: model {number} has no path")
        name = entry.pop("name", None)
        model_path = path.parent / str(entry.pop("path"))
        _check_keys(entry, f"{path}: model {number} ({model_path.name})")
        entries.append({"path": model_path, "name": name, "options": _absolute_paths({**defaults, **entry}, path.parent)})
    return defaults, entries


def _absolute_paths(options: dict, base: Path) -> dict:
    return {key: str(base / value) if key in PATH_KEYS and isinstance(value, str) else value for key, value in options.items()}


def _folder_entries(folder: Path, out_dir: Path) -> list[dict]:
    """Every `*.onnx` under the folder, except those under OUT_DIR (which may lie inside it)."""
    out = out_dir.resolve()
    return [{"path": path, "name": None, "options": {}} for path in sorted(folder.rglob("*.onnx")) if path.is_file() and not path.resolve().is_relative_to(out)]


def _output_name(entry: dict, root: Path) -> str:
    if entry["name"]:
        return str(entry["name"]).removesuffix(".onnx")
    try:
        return entry["path"].relative_to(root).with_suffix("").as_posix()
    except ValueError:
        return entry["path"].stem


def load_jobs(models: Path, out_dir: Path, options: Mapping[str, object], node_types: Sequence[str] = ()) -> list[Job]:
    """The jobs for MODELS (a folder or a manifest): `options` (the command line's) under each model's own.

    Outputs go to OUT_DIR/<path under the folder>.onnx; with node types, to OUT_DIR/<type>/... (one
    tuned model and settings file per machine type). Raises FleetInputError.
    """
    _check_keys(options, "options")
    if models.is_dir():
        root, entries = models, _folder_entries(models, out_dir)
    elif models.is_file():
        root, (_, entries) = models.parent, _manifest_entries(models)
    else:
        raise FleetInputError(f"{models}: no such folder or manifest")
    if not entries:
        raise FleetInputError(f"{models}: no *.onnx models found")
    jobs, seen = [], {}
    for entry in entries:
        name = _output_name(entry, root)
        if name in seen:
            raise FleetInputError(f"{entry['path']} and {seen[name]} would both write {name}.onnx: give one a `name`")
        seen[name] = entry["path"]
        merged = {**options, **entry["options"]}
        for node_type in node_types or (None,):
            folder = out_dir / node_type if node_type else out_dir
            label = f"{node_type}/{name}" if node_type else name
            jobs.append(Job(label, entry["path"].resolve(), (folder / f"{name}.onnx").resolve(), merged, node_type))
    return jobs
