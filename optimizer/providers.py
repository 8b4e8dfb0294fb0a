"""Which onnxruntime flavour is installed, which execution providers and CPU features it can use, and
which provider settings are worth timing.

onnxruntime ships as several PyPI distributions that all provide the `onnxruntime` module (the CPU
build, `onnxruntime-openvino`, `onnxruntime-gpu`, ...). Nothing here assumes one: the flavour is read
from the installed distribution, the providers from onnxruntime, the CPU's instruction sets from the
operating system. The provider settings are the lossless ones (OpenVINO at FP32 or ACCURACY precision,
threads, streams) for the tuner, and the lossy precisions (OpenVINO's bf16) for the lossy stage, which
holds them to the error budget like quantization.

A provider that cannot take a model, or that hands some nodes back to the CPU provider, is reported
(`placement`), never timed as if it ran the whole graph.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import re
from collections.abc import Mapping, Sequence

__all__ = [
    "FLAVOURS",
    "Flavour",
    "ProviderSetting",
    "Placement",
    "cpu_features",
    "supports_bf16",
    "runtime_flavour",
    "lossless_settings",
    "precision_settings",
    "placement",
    "profiled_placement",
]

CPU = "CPUExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"

FLAVOURS = (
    "onnxruntime",
    "onnxruntime-openvino",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-qnn",
    "onnxruntime-silicon",
    "ort-nightly",
)
"""PyPI distributions that provide the `onnxruntime` module."""

_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni")


@dataclasses.dataclass(frozen=True)
class Flavour:
    """The installed onnxruntime: its distribution name, version and the providers it offers."""

    distribution: str
    version: str
    providers: tuple[str, ...]

    def label(self) -> str:
        """e.g. 'onnxruntime-openvino 1.24.1 (OpenVINO, CPU)'."""
        names = ", ".join(p.replace("ExecutionProvider", "") for p in self.providers)
        return f"{self.distribution} {self.version} ({names})"

    def to_dict(self) -> dict:
        return {"distribution": self.distribution, "version": self.version, "providers": list(self.providers)}


@functools.lru_cache(maxsize=1)
def runtime_flavour() -> Flavour:
    """The onnxruntime distribution that is installed (the first of FLAVOURS found), its version and providers."""
    import onnxruntime

    distribution = "onnxruntime"
    for name in FLAVOURS:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        distribution = name
        break
    return Flavour(distribution, onnxruntime.__version__, tuple(onnxruntime.get_available_providers()))


def cpu_features(cpuinfo: str | None = None) -> frozenset[str]:
    """The instruction-set extensions of this CPU that matter for inference kernels (Linux /proc/cpuinfo flags).

    Empty when unknown (another OS, or no flags line): callers then do not offer what needs them.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                cpuinfo = handle.read()
        except OSError:
            return frozenset()
    match = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    if match is None:
        return frozenset()
    flags = set(match.group(1).split())
    return frozenset(f for f in _FEATURES if f in flags)


def supports_bf16(features: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX512_BF16 or AMX): only then does bf16 execution pay."""
    features = cpu_features() if features is None else features
    return bool({"avx512_bf16", "amx_bf16"} & features)


@dataclasses.dataclass(frozen=True)
class ProviderSetting:
    """One provider with its options, as the tuner or the lossy stage times it."""

    provider: str
    options: tuple[tuple[str, str], ...] = ()
    precision: str = "fp32"
    """'fp32' for lossless settings; 'bf16' (lossy, held to the error budget) otherwise."""

    @property
    def lossless(self) -> bool:
        return self.precision == "fp32"

    def options_dict(self) -> dict[str, str]:
        return dict(self.options)

    def runtime_config(self):
        """The settings-file configuration that runs this setting (the CPU provider behind it for what it declines)."""
        from optimizer.runtime import RuntimeConfig

        if self.provider == CPU:
            return RuntimeConfig()
        return RuntimeConfig(providers=(self.provider, CPU), provider_options=(self.options, ()))

    def label(self) -> str:
        shown = [f"{k}={v}" for k, v in self.options if k not in ("device_type", "load_config")]
        name = self.provider.replace("ExecutionProvider", "")
        return " ".join([name, *([] if self.lossless else [self.precision]), *shown])


def _lossless(provider: str, **options: str) -> ProviderSetting:
    return ProviderSetting(provider, tuple(sorted(options.items())))


def lossless_settings(available: Sequence[str], *, objective: str = "latency", cores: int = 1, threads: Sequence[int] = ()) -> list[ProviderSetting]:
    """Provider settings worth timing next to the CPU provider's, computing the same function.

    OpenVINO on the CPU: its default FP32 precision and ACCURACY (which also keeps fp32 where the
    default might not), fewer threads than its default of all cores (`threads` below `cores`), and for the
    throughput objective one stream per core. onnxruntime's own thread, spinning and graph-level settings
    are not crossed with these: the nodes OpenVINO takes do not use them. OpenVINO's GPU device is not
    assumed; GPU builds of onnxruntime offer their own providers.
    """
    settings: list[ProviderSetting] = []
    if OPENVINO in available:
        settings.append(_lossless(OPENVINO, device_type="CPU", precision="FP32"))
        settings.append(_lossless(OPENVINO, device_type="CPU", precision="ACCURACY"))
        for count in sorted({t for t in threads if 0 < t < cores}):
            settings.append(_lossless(OPENVINO, device_type="CPU", precision="FP32", num_of_threads=str(count)))
        if objective == "throughput" and cores > 1:
            settings.append(_lossless(OPENVINO, device_type="CPU", precision="FP32", num_streams=str(cores)))
    return settings


def precision_settings(available: Sequence[str], features: frozenset[str] | None = None) -> list[ProviderSetting]:
    """Lossy precisions the installed providers can run on this CPU: OpenVINO's bf16 where the CPU has native bf16.

    OpenVINO's CPU plugin takes bf16 through its inference-precision hint (the provider's `precision`
    option only accepts FP32 and ACCURACY on the CPU device).
    """
    settings: list[ProviderSetting] = []
    if OPENVINO in available and supports_bf16(features):
        hint = json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}, separators=(",", ":"))
        settings.append(ProviderSetting(OPENVINO, (("device_type", "CPU"), ("load_config", hint)), "bf16"))
    return settings


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where onnxruntime ran a model's nodes: kernel executions per provider (from its profiler)."""

    nodes_by_provider: Mapping[str, int]
    """Profiled node executions by provider; a provider's fused subgraph counts once."""

    def falls_back(self, provider: str) -> bool:
        """Whether nodes other than `provider`'s ran (on the CPU provider, typically)."""
        return any(count and name != provider for name, count in self.nodes_by_provider.items())

    def describe(self) -> str:
        return ", ".join(f"{count} on {name.replace('ExecutionProvider', '')}" for name, count in sorted(self.nodes_by_provider.items()))

    def to_dict(self) -> dict:
        return dict(sorted(self.nodes_by_provider.items()))


def placement(profile_events: Sequence[Mapping]) -> Placement:
    """Kernel executions per provider, from the events of one profiled run (onnxruntime's JSON trace)."""
    counts: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for event in profile_events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        args = event.get("args") or {}
        provider = str(args.get("provider", "?"))
        key = (str(event["name"]), provider)
        if key in seen:  # several runs profiled: count each node once
            continue
        seen.add(key)
        counts[provider] = counts.get(provider, 0) + 1
    return Placement(counts)


def profiled_placement(model_path, config, feeds: Mapping) -> Placement:
    """Run the model once under `config` (a RuntimeConfig) with onnxruntime's profiler on; where its kernels ran."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="optimize-placement-") as folder:
        options = config.session_options()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "trace")
        session = config.create_session(model_path, options)
        session.run(None, dict(feeds))
        with open(session.end_profiling(), encoding="utf-8") as handle:
            return placement(json.load(handle))
