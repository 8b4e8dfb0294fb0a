"""Runtime configurations: the `OUT.onnx.json` file the tuner writes, and sessions built from it.

The file is plain JSON that any tool can read (schema_version 1)::

    {"schema_version": 1,
     "providers": ["CPUExecutionProvider"], "provider_options": [{}],
     "session_options": {"intra_op_num_threads": 2, "inter_op_num_threads": 1,
                         "execution_mode": "sequential", "graph_optimization_level": "all"},
     "session_config_entries": {"session.intra_op.allow_spinning": "0"},
     "concurrent_requests": 1, "objective": "latency",
     "model": {...}, "measured": {...}, "machine": {...}}

`session(model_path)` returns an `onnxruntime.InferenceSession` built from it; the README shows
the same in plain onnxruntime. A thread count of 0 means onnxruntime's default.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from optimizer.errors import UserError

__all__ = [
    "CONFIG_SCHEMA_VERSION",
    "ConfigError",
    "RunTimeoutError",
    "DEFAULT_RUN_TIMEOUT_S",
    "run_interruptibly",
    "RuntimeConfig",
    "available_providers",
    "config_path_for",
    "is_config_of",
    "load_config",
    "session",
    "stage_config",
    "write_config",
]

logger = logging.getLogger(__name__)

CONFIG_SCHEMA_VERSION = 1
SPINNING_KEY = "session.intra_op.allow_spinning"
INTER_SPINNING_KEY = "session.inter_op.allow_spinning"
EXECUTION_MODES = ("sequential", "parallel")
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")


class ConfigError(UserError):
    """A runtime configuration file that cannot be used; the message is one line for the user."""


DEFAULT_RUN_TIMEOUT_S = 300.0
"""How long one onnxruntime run of a model may take by default (a Loop with a huge trip count)."""


class RunTimeoutError(UserError):
    """One onnxruntime run went past its time limit and was stopped."""


def run_interruptibly(session, output_names, feeds, *, timeout_s: float | None = DEFAULT_RUN_TIMEOUT_S, run_options=None):
    """`session.run(output_names, feeds)` that a signal or a time limit stops within a second or two.

    The run happens on a worker thread while this thread waits in short slices, so the interpreter
    handles SIGINT/SIGTERM (its handler's exception) at once instead of after the run; on that
    exception, or past `timeout_s` (None: no limit), onnxruntime is asked to stop
    (`RunOptions.terminate`, checked between kernels and loop iterations) and the exception, or
    `RunTimeoutError`, is raised once the run has stopped. measure.py and tune.py can time through it:
    pass their own `run_options`; the worker's overhead is a thread start per call.
    """
    import threading
    import time

    import onnxruntime as ort

    options = run_options if run_options is not None else ort.RunOptions()
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["result"] = session.run(output_names, feeds, options)
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = error

    worker = threading.Thread(target=work, name="onnxruntime-run")  # not a daemon: the process never exits mid-run
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    worker.start()
    try:
        while worker.is_alive() and (deadline is None or time.monotonic() < deadline):
            worker.join(0.05)
    except BaseException:
        options.terminate = True
        _join_stopped(worker)
        raise
    if worker.is_alive():
        options.terminate = True
        _join_stopped(worker)
        raise RunTimeoutError(f"the run did not finish within {timeout_s:g} s and was stopped")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """How to build an onnxruntime session; the defaults are onnxruntime's own."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    provider_options: tuple[tuple[tuple[str, str], ...], ...] = ((),)
    intra_op_num_threads: int = 0
    inter_op_num_threads: int = 0
    execution_mode: str = "sequential"
    graph_optimization_level: str = "all"
    session_config_entries: tuple[tuple[str, str], ...] = ()
    concurrent_requests: int = 1

    @property
    def spinning(self) -> bool:
        entries = dict(self.session_config_entries)
        return entries.get(SPINNING_KEY, "1") != "0" and entries.get(INTER_SPINNING_KEY, "1") != "0"

    def label(self) -> str:
        """A short readable description, e.g. 'CPU intra=2 spin=off'."""
        parts = [",".join(p.replace("ExecutionProvider", "") for p in self.providers)]
        for key, value in self.provider_options[0] if self.provider_options else ():
            parts.append(f"{key}={value}")
        parts.append(f"intra={self.intra_op_num_threads or 'default'}")
        if self.execution_mode == "parallel":
            parts.append(f"parallel inter={self.inter_op_num_threads or 'default'}")
        if self.graph_optimization_level != "all":
            parts.append(f"level={self.graph_optimization_level}")
        if not self.spinning:
            parts.append("spin=off")
        parts += [f"{key}={value}" for key, value in self.session_config_entries if key not in (SPINNING_KEY, INTER_SPINNING_KEY)]
        if self.concurrent_requests > 1:
            parts.append(f"streams={self.concurrent_requests}")
        return " ".join(parts)

    def to_dict(self) -> dict:
        """The configuration part of the file (no measurements)."""
        return {
            "providers": list(self.providers),
            "provider_options": [dict(options) for options in self.provider_options],
            "session_options": {
                "intra_op_num_threads": self.intra_op_num_threads,
                "inter_op_num_threads": self.inter_op_num_threads,
                "execution_mode": self.execution_mode,
                "graph_optimization_level": self.graph_optimization_level,
            },
            "session_config_entries": dict(self.session_config_entries),
            "concurrent_requests": self.concurrent_requests,
        }

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "config") -> RuntimeConfig:
        """Validate and read a configuration; ConfigError names the offending field."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a JSON object")
        version = data.get("schema_version", CONFIG_SCHEMA_VERSION)
        if version != CONFIG_SCHEMA_VERSION:
            raise ConfigError(f"{where}: schema_version {version!r} is not supported (this version reads {CONFIG_SCHEMA_VERSION})")
        providers = data.get("providers", ["CPUExecutionProvider"])
        if not isinstance(providers, list) or not providers or not all(isinstance(p, str) for p in providers):
            raise ConfigError(f"{where}: 'providers' must be a non-empty list of provider names")
        _check_provider_names(providers, where)
        options = data.get("provider_options", [{} for _ in providers])
        if not isinstance(options, list) or len(options) != len(providers) or not all(isinstance(o, Mapping) for o in options):
            raise ConfigError(f"{where}: 'provider_options' must be a list of objects, one per provider")
        for provider, entries in zip(providers, options):
            _check_provider_options(provider, entries, where)
        session = data.get("session_options", {})
        if not isinstance(session, Mapping):
            raise ConfigError(f"{where}: 'session_options' must be an object")
        unknown = set(session) - {"intra_op_num_threads", "inter_op_num_threads", "execution_mode", "graph_optimization_level"}
        if unknown:
            raise ConfigError(f"{where}: unknown session_options {sorted(unknown)}")
        threads = {}
        for key in ("intra_op_num_threads", "inter_op_num_threads"):
            value = session.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{where}: session_options.{key} must be an integer >= 0 (0: onnxruntime's default)")
            if value > _cores():
                raise ConfigError(f"{where}: session_options.{key} is {value}, more than the {_cores()} cores of this machine")
            threads[key] = value
        mode = session.get("execution_mode", "sequential")
        if mode not in EXECUTION_MODES:
            raise ConfigError(f"{where}: session_options.execution_mode must be one of {', '.join(EXECUTION_MODES)}")
        level = session.get("graph_optimization_level", "all")
        if level not in OPTIMIZATION_LEVELS:
            raise ConfigError(f"{where}: session_options.graph_optimization_level must be one of {', '.join(OPTIMIZATION_LEVELS)}")
        entries = data.get("session_config_entries", {})
        if not isinstance(entries, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in entries.items()):
            raise ConfigError(f"{where}: 'session_config_entries' must map strings to strings")
        for key, value in entries.items():
            if not key.startswith(_CONFIG_ENTRY_PREFIXES) or len(key) > _MAX_SETTING_CHARS or len(value) > _MAX_SETTING_CHARS or not _printable(key + value):
                raise ConfigError(f"{where}: session_config_entries key {key[:80]!r} is not an onnxruntime session setting ({', '.join(p + '*' for p in _CONFIG_ENTRY_PREFIXES)})")
        concurrent = data.get("concurrent_requests", 1)
        if not isinstance(concurrent, int) or isinstance(concurrent, bool) or not 1 <= concurrent <= _MAX_CONCURRENT_REQUESTS:
            raise ConfigError(f"{where}: 'concurrent_requests' must be an integer from 1 to {_MAX_CONCURRENT_REQUESTS}")
        return cls(
            providers=tuple(providers),
            provider_options=tuple(tuple(sorted((str(k), str(v)) for k, v in o.items())) for o in options),
            execution_mode=mode,
            graph_optimization_level=level,
            session_config_entries=tuple(sorted(entries.items())),
            concurrent_requests=concurrent,
            **threads,
        )

    def session_options(self):
        """An `onnxruntime.SessionOptions` with these settings (logging kept quiet)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = self.intra_op_num_threads
        options.inter_op_num_threads = self.inter_op_num_threads
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if self.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_optimization_level]
        for key, value in self.session_config_entries:
            options.add_session_config_entry(key, value)
        return options

    def check_providers(self) -> None:
        """ConfigError when a provider is not in the installed onnxruntime."""
        available = available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise ConfigError(f"provider(s) {', '.join(missing)} not available in this onnxruntime ({', '.join(available)})")

    def create_session(self, model_path: str | os.PathLike, session_options=None):
        """An InferenceSession of `model_path` under this configuration.

        onnxruntime's silent fallback to CPU is off: a provider that fails is an error, not a CPU
        session under the provider's name.
        """
        import onnxruntime as ort

        self.check_providers()
        session = ort.InferenceSession(
            str(model_path),
            session_options or self.session_options(),
            providers=list(self.providers),
            provider_options=[dict(o) for o in self.provider_options],
            enable_fallback=0,
        )
        if session.get_providers()[0] != self.providers[0]:
            raise ConfigError(f"{self.providers[0]} could not take the model; onnxruntime runs it on {session.get_providers()[0]}")
        return session


_CONFIG_ENTRY_PREFIXES = ("session.", "optimization.", "ep.", "mlas.")
_MAX_SETTING_CHARS = 1024
_MAX_CONCURRENT_REQUESTS = 256


def _cores() -> int:
    """Cores this process may run on (the ceiling of a thread count in a settings file)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _printable(text: str) -> bool:
    return text.isprintable()


def _check_provider_names(providers: list[str], where: str) -> None:
    """Every provider must be one onnxruntime knows (installed or not), each named once."""
    import onnxruntime as ort

    known = set(ort.get_all_providers())
    unknown = [p for p in providers if p not in known]
    if unknown:
        raise ConfigError(f"{where}: execution provider {unknown[0][:80]!r} is not available in this onnxruntime, and no onnxruntime build knows it (known: {', '.join(sorted(known))})")
    if len(set(providers)) != len(providers):
        raise ConfigError(f"{where}: 'providers' names a provider twice")


def _check_provider_options(provider: str, options: Mapping, where: str) -> None:
    """Provider options are short printable names mapped to scalars (strings, numbers, booleans)."""
    for key, value in options.items():
        if not isinstance(key, str) or not key or len(key) > _MAX_SETTING_CHARS or not _printable(key):
            raise ConfigError(f"{where}: provider_options of {provider} has a malformed key {str(key)[:80]!r}")
        if not isinstance(value, (str, int, float, bool)) or (isinstance(value, str) and (len(value) > _MAX_SETTING_CHARS or not _printable(value))):
            raise ConfigError(f"{where}: provider_options of {provider}: {key!r} must be a short string, number or boolean")
    if provider == "CPUExecutionProvider" and options:
        raise ConfigError(f"{where}: CPUExecutionProvider takes no provider options (got {', '.join(map(str, options))[:200]})")


_STOP_GRACE_S = 60.0


def _join_stopped(worker) -> None:
    """Wait for a run told to terminate (onnxruntime checks between kernels: milliseconds, unless one
    kernel runs long), so that no onnxruntime call is in flight when the caller unwinds or exits."""
    worker.join(_STOP_GRACE_S)
    if worker.is_alive():
        logger.warning("an onnxruntime run did not stop within %g s of being told to", _STOP_GRACE_S)


def available_providers() -> list[str]:
    """Execution providers the installed onnxruntime offers (CPU always last)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def config_path_for(model_path: str | os.PathLike) -> Path:
    """Where the configuration of a model lives: next to it, `MODEL.onnx.json`."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def load_config(path: str | os.PathLike) -> tuple[RuntimeConfig, dict]:
    """The configuration in a file, and the whole file as read (measurements, machine)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a readable JSON file ({error})") from None
    return RuntimeConfig.from_dict(data, str(path)), data


def stage_config(path: str | os.PathLike, config: RuntimeConfig, **sections) -> Path:
    """Write the file under a hidden temporary name beside `path`; `os.replace` it into place (or unlink it)."""
    path = Path(path)
    document = {"schema_version": CONFIG_SCHEMA_VERSION, **config.to_dict(), **sections}
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(descriptor, 0o666 & ~umask)  # like any file the user creates, not mkstemp's 0600
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, default=str)
            handle.write("\n")
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary)


def write_config(path: str | os.PathLike, config: RuntimeConfig, **sections) -> None:
    """Write the file atomically: the configuration plus extra sections (objective, model, measured, machine)."""
    staged = stage_config(path, config, **sections)
    try:
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def is_config_of(path: str | os.PathLike, model_name: str) -> bool:
    """Whether `path` is a configuration file written for the model file named `model_name`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "schema_version" in data and isinstance(data.get("model"), dict) and data["model"].get("file") == model_name


def session(model_path: str | os.PathLike, config_path: str | os.PathLike | None = None, *, config: RuntimeConfig | None = None):
    """An `onnxruntime.InferenceSession` of the model under its tuned configuration.

    The configuration comes from `config`, else `config_path`, else `MODEL.onnx.json` when it exists,
    else onnxruntime's defaults.
    """
    if config is None:
        if config_path is None and config_path_for(model_path).is_file():
            config_path = config_path_for(model_path)
        config = load_config(config_path)[0] if config_path is not None else RuntimeConfig()
    return config.create_session(model_path)

