"""Verification: does the optimized model compute what the original computes?

Inputs come from the user (`--inputs data.npz`) or are generated from the declared shapes (dynamic
dims bound by `--input-shape` or by defaults tried in turn until the ORIGINAL model runs). The
reference is the original in onnxruntime with graph optimizations off. Each output is compared by
max abs error, max relative error (max|a-b| / max|a|) and cosine similarity.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping, Sequence

from pathlib import Path

from optimizer.errors import UserError, mention
import numpy as np
import onnx_ir as ir

from optimizer.error_stats import error_statistics
from optimizer.runtime import DEFAULT_RUN_TIMEOUT_S, RunTimeoutError, run_interruptibly
from optimizer.units import IEC_UNITS, format_bytes

__all__ = [
    "ArrayHeader",
    "Feeds",
    "NpzInputs",
    "read_npz_headers",
    "OutputComparison",
    "VerificationResult",
    "VerificationInputError",
    "Tolerance",
    "Verifier",
    "parse_input_shapes",
    "load_inputs",
    "default_tolerance",
    "check_value_sizes",
    "feeds_for",
    "check_batch",
    "save_inputs",
]

logger = logging.getLogger(__name__)

RANDOM_OPS = frozenset({"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial", "Bernoulli"})
QUANTIZED_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
     "ConvInteger", "DynamicQuantizeMatMul", "QLinearAdd", "QLinearMul", "MatMulNBits", "QGemm"}
)


_INPUTS, _SHAPES = mention("inputs"), mention("input_shapes")

class VerificationInputError(UserError):
    """The ORIGINAL model cannot run on the inputs we have: a problem with inputs, not the optimizer."""


@dataclasses.dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


def default_tolerance(model: ir.Model) -> Tolerance:
    """Tight for lossless rewrites of float models; looser for models already quantized."""
    return _tolerance_for({n.op_type for n in ir.traversal.RecursiveGraphIterator(model.graph)})


def _tolerance_for(ops: set[str]) -> Tolerance:
    if ops & QUANTIZED_OPS:
        return Tolerance(rtol=1e-2, atol=1e-3)
    return Tolerance(rtol=1e-4, atol=1e-5)


@dataclasses.dataclass
class OutputComparison:
    name: str
    max_abs: float
    max_rel: float
    cosine: float
    passed: bool
    note: str = ""
    stats: dict | None = None
    """Element-wise error statistics (optimizer.error_stats), None for outputs that are not compared by value."""


@dataclasses.dataclass
class VerificationResult:
    status: str  # "passed", "failed" or "skipped"
    outputs: list[OutputComparison] = dataclasses.field(default_factory=list)
    reason: str = ""
    tolerance: Tolerance | None = None
    inputs_source: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# -- inputs -------------------------------------------------------------------------------------


def parse_input_shapes(specs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """`["ids=1,128", "mask=1,128"]` -> {"ids": (1, 128), ...}; VerificationInputError with a readable message."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        if not sep or not name:
            raise VerificationInputError(f"{_SHAPES} {spec!r}: expected NAME=D1,D2,...", option="input_shapes")
        try:
            values = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip() != "")
        except ValueError:
            raise VerificationInputError(f"{_SHAPES} {spec!r}: dims must be integers", option="input_shapes") from None
        if any(d < 0 for d in values):
            raise VerificationInputError(f"{_SHAPES} {spec!r}: dims must be >= 0", option="input_shapes")
        shapes[name] = values
    return shapes


@dataclasses.dataclass(frozen=True)
class ArrayHeader:
    """What an .npz member declares before any of its data is read."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.float64)) * self.dtype.itemsize


def read_npz_headers(path: str | os.PathLike) -> dict[str, ArrayHeader]:
    """Shape and dtype of every array in an .npz file, read from each member's header only (nothing is
    decompressed beyond it); VerificationInputError for a file that is not an .npz of plain arrays."""
    import zipfile

    headers: dict[str, ArrayHeader] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if not member.filename.endswith(".npy"):
                    continue
                with archive.open(member) as stream:
                    version = np.lib.format.read_magic(stream)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read_header(stream)
                if dtype.hasobject:
                    raise VerificationInputError(f"{path}: array '{member.filename[:-4]}' holds Python objects, which are never unpickled", option="inputs")
                headers[member.filename[:-4]] = ArrayHeader(tuple(int(d) for d in shape), np.dtype(dtype))
    except FileNotFoundError:
        raise VerificationInputError(f"{path}: no such file", option="inputs") from None
    except VerificationInputError:
        raise
    except Exception as error:  # noqa: BLE001 - zip/format errors of many kinds
        raise VerificationInputError(f"{path}: not a readable .npz file ({first_line(error)})", option="inputs") from None
    return headers


class NpzInputs(Mapping):
    """The arrays of an .npz file by name, each read (decompressed) only when first asked for.

    `headers` (shape, dtype) are known at once, so what the model cannot take (wrong names, dtypes,
    ranks or static dims) or what would not fit in memory is refused before any data is decompressed.
    """

    def __init__(self, path: str | os.PathLike, headers: Mapping[str, ArrayHeader]) -> None:
        self.path, self.headers = Path(path), dict(headers)
        self._arrays: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.headers:
            raise KeyError(name)
        if name not in self._arrays:
            try:
                with np.load(self.path, allow_pickle=False) as data:
                    array = data[name]
            except Exception as error:  # noqa: BLE001 - a member whose data does not match its header
                raise VerificationInputError(f"{self.path}: array '{name}' cannot be read ({first_line(error)})", option="inputs") from None
            if array.shape != self.headers[name].shape or array.dtype != self.headers[name].dtype:
                raise VerificationInputError(f"{self.path}: array '{name}' does not match its header", option="inputs")
            self._arrays[name] = array
        return self._arrays[name]

    def __iter__(self):
        return iter(self.headers)

    def __len__(self) -> int:
        return len(self.headers)


def load_inputs(path: str | os.PathLike, *, max_bytes: int | None = None) -> NpzInputs:
    """Arrays keyed by input name from an .npz file (never unpickles objects), read lazily.

    The headers are read first: arrays declaring more than `max_bytes` in all (default: half the
    memory available now) are refused before anything is decompressed (a small .npz can inflate to
    gigabytes).
    """
    headers = read_npz_headers(path)
    limit = max_bytes if max_bytes is not None else _input_memory_limit()
    total = sum(header.nbytes for header in headers.values())
    if limit is not None and total > limit:
        name = max(headers, key=lambda key: headers[key].nbytes)
        raise VerificationInputError(
            f"{path}: the arrays would take {format_bytes(total, IEC_UNITS)} once decompressed ('{name}' is {list(headers[name].shape)} {headers[name].dtype}), "
            f"over the {format_bytes(limit, IEC_UNITS)} limit (half the memory available); nothing was loaded",
            option="inputs",
        )
    return NpzInputs(path, headers)


def _input_memory_limit() -> int | None:
    available = available_memory()
    return available // 2 if available is not None else None


class Feeds(dict):
    """Input arrays by name that remember where they came from (`source`, e.g. "generated (random; x=[1, 4])"):
    a Verifier handed them again blames the inputs they are, not the user's --inputs."""

    def __init__(self, arrays: Mapping[str, np.ndarray], source: str) -> None:
        super().__init__(arrays)
        self.source = source


@dataclasses.dataclass(frozen=True)
class _InputSpec:
    name: str
    dtype: np.dtype
    dims: tuple  # ints, or str/None for dynamic dims


def _input_specs(model: ir.Model, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> list[_InputSpec]:
    input_shapes = input_shapes or {}
    specs = []
    for value in model.graph.inputs:
        if value.is_initializer():
            continue  # an initializer-input keeps its default
        if value.dtype is None:
            raise VerificationInputError(f"input '{value.name}' has no declared type; pass {_INPUTS}", option="inputs")
        try:
            dtype = value.dtype.numpy()
        except Exception:  # noqa: BLE001
            raise VerificationInputError(f"input '{value.name}' has type {value.dtype}, which cannot be generated; pass {_INPUTS}", option="inputs") from None
        if value.shape is None:
            if value.name in input_shapes:
                specs.append(_InputSpec(value.name, np.dtype(dtype), tuple(input_shapes[value.name])))
                continue
            raise VerificationInputError(f"input '{value.name}' has no declared shape; pass {_SHAPES} {value.name}=... or {_INPUTS}", option="input_shapes")
        dims = tuple(d if isinstance(d, int) else (d.value if isinstance(d, ir.SymbolicDim) else None) for d in value.shape)
        specs.append(_InputSpec(value.name, np.dtype(dtype), dims))
    return specs


# Dynamic dims are tried with these values in turn until the original model accepts them.
_DIM_PROFILES = ({"batch": 1, "other": 16}, {"batch": 1, "other": 1}, {"batch": 1, "other": 64}, {"batch": 1, "other": 224})
_MAX_GENERATED_BYTES = 512 * 1024**2
_BATCH_WORDS = ("batch", "n", "b", "bs", "unk__0", "N")


def _bind_dims(spec: _InputSpec, profile: Mapping[str, int], symbols: dict) -> tuple[int, ...]:
    dims = []
    for position, dim in enumerate(spec.dims):
        if isinstance(dim, int) and dim >= 0:
            dims.append(dim)
            continue
        if isinstance(dim, str) and dim in symbols:
            dims.append(symbols[dim])
            continue
        batch_like = position == 0 and (dim is None or str(dim).lower() in _BATCH_WORDS or "batch" in str(dim).lower() or str(dim).startswith("unk__"))
        value = profile["batch"] if batch_like else profile["other"]
        if isinstance(dim, str):
            symbols[dim] = value
        dims.append(value)
    return tuple(dims)


def _generate_array(spec: _InputSpec, shape: tuple[int, ...], rng: np.random.Generator, zeros: bool) -> np.ndarray:
    dtype, lname = spec.dtype, spec.name.lower()
    if dtype.kind == "f" or dtype.name == "bfloat16":
        if zeros:
            return np.zeros(shape, dtype=dtype)
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iu":
        if "mask" in lname:
            return np.ones(shape, dtype=dtype)
        if zeros or "type" in lname or "segment" in lname or "position" in lname:
            return np.zeros(shape, dtype=dtype)
        high = 256 if dtype == np.uint8 else 100
        return rng.integers(0, high, size=shape).astype(dtype)
    if dtype.kind == "b":
        return np.ones(shape, dtype=bool) if zeros or "mask" in lname else rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind in "OUS":
        return np.full(shape, "a", dtype=object)
    raise VerificationInputError(f"input '{spec.name}' has dtype {dtype}, which cannot be generated; pass {_INPUTS}", option="inputs")


def _candidate_feeds(specs: list[_InputSpec], input_shapes: Mapping[str, tuple[int, ...]], batch: int = 1):
    """Input sets to try, most realistic first; `batch` binds batch-like dynamic dims."""
    for name, shape in input_shapes.items():
        spec = next((s for s in specs if s.name == name), None)
        if spec is None:
            raise VerificationInputError(f"{_SHAPES} names '{name}', which is not an input of the model ({', '.join(s.name for s in specs) or 'none'})", option="input_shapes")
        if len(shape) != len(spec.dims):
            raise VerificationInputError(f"{_SHAPES} {name}: rank {len(shape)} but the model declares rank {len(spec.dims)}", option="input_shapes")
        for given, declared in zip(shape, spec.dims):
            if isinstance(declared, int) and declared >= 0 and declared != given:
                raise VerificationInputError(f"{_SHAPES} {name}={','.join(map(str, shape))} contradicts the declared static shape {list(spec.dims)}", option="input_shapes")
    profiles = _DIM_PROFILES if any(not (isinstance(d, int) and d >= 0) for s in specs if s.name not in input_shapes for d in s.dims) else _DIM_PROFILES[:1]
    too_big = None
    for profile in profiles:
        profile = {**profile, "batch": batch}
        for zeros in (False, True):
            rng = np.random.default_rng(0)
            symbols: dict = {}
            feeds = {}
            shapes = {spec.name: input_shapes.get(spec.name) or _bind_dims(spec, profile, symbols) for spec in specs}
            sizes = {spec.name: int(np.prod(shape, dtype=np.float64)) * spec.dtype.itemsize for spec, shape in zip(specs, shapes.values())}
            if sum(sizes.values()) > _MAX_GENERATED_BYTES:
                if too_big is None or (too_big and sum(sizes.values()) < sum(too_big[0].values())):
                    too_big = (sizes, shapes)
                continue  # this profile would not fit in memory; try the next
            too_big = False
            for spec in specs:
                feeds[spec.name] = _generate_array(spec, shapes[spec.name], rng, zeros)
            yield feeds, f"generated ({'zeros' if zeros else 'random'}; " + ", ".join(f"{k}={list(v.shape)}" for k, v in feeds.items()) + ")"
    if too_big:
        sizes, shapes = too_big
        name = max(sizes, key=sizes.get)
        dynamic = any(not (isinstance(d, int) and d >= 0) for s in specs if s.name == name for d in s.dims)
        raise VerificationInputError(
            f"generated inputs would take {format_bytes(sum(sizes.values()), IEC_UNITS)} (input '{name}' is {list(shapes[name])}), over the "
            f"{format_bytes(_MAX_GENERATED_BYTES, IEC_UNITS)} limit: nothing was generated; pass {_INPUTS} FILE.npz"
            + (f", or smaller dims with {_SHAPES} NAME=D1,D2,..." if dynamic else ""),
            option="inputs",
        )


def available_memory() -> int | None:
    """Bytes of memory the system could give this process now (MemAvailable), None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_value_sizes(model: ir.Model, limit: int | None = None, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> None:
    """Refuse (VerificationInputError) a model with a value whose declared or inferred static size exceeds
    `limit` (default: the memory available now): running it would exhaust memory, so it is not attempted.

    Covers what shape inference sees with constants propagated: an intermediate or output declared
    [100000, 100000, 1000], a ConstantOfShape/Expand/Tile of a constant shape. Graph inputs are the
    generated inputs' business (`_candidate_feeds`), initializers were checked against their bytes.
    `input_shapes` (the feeds' shapes) bind dynamic input dims, so sizes that follow from them count too.
    """
    from optimizer import io

    limit = available_memory() if limit is None else limit
    if limit is None:
        return
    skip = {v.name for v in model.graph.inputs} | set(model.graph.initializers)
    oversized = {name: size for name, size in io.inferred_value_bytes(model, input_shapes).items() if name not in skip and size[0] > limit}
    if not oversized:
        return
    name = max(oversized, key=lambda n: oversized[n][0])
    size, dims = oversized[name]
    producer = ir.convenience.create_value_mapping(model.graph).get(name)
    node = producer.producer() if producer is not None else None
    what = f"output of {node.op_type}{f' {node.name!r}' if node is not None and node.name else ''}" if node is not None else "a value"
    raise VerificationInputError(
        f"value '{name}' ({what}) would take {format_bytes(size, IEC_UNITS)} ({dims}), more than the {format_bytes(limit, IEC_UNITS)} of memory available: "
        f"the model cannot run here, so it was not run ({mention('no_verify_command')} rewrites it without running it)",
        option="verify",
    )


# -- running and comparing ----------------------------------------------------------------------


def _session(path: str, reference: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures are reported (first line) by the caller, not logged to stderr
    if reference:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:300]
    return type(error).__name__


def whole_message(error: BaseException) -> str:
    """Every line of an error's message joined into one (onnxruntime puts the dims that differ on the second)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


def compare_arrays(name: str, expected, actual, tolerance: Tolerance) -> OutputComparison:
    """Error metrics of one output; non-float outputs must match exactly."""
    if isinstance(expected, list) or isinstance(actual, list):
        same = isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual) and all(
            compare_arrays(name, e, a, tolerance).passed for e, a in zip(expected, actual)
        )
        return OutputComparison(name, 0.0 if same else math.inf, 0.0 if same else math.inf, 1.0 if same else 0.0, same, "sequence")
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        return OutputComparison(name, math.inf, math.inf, 0.0, False, f"shape {list(actual.shape)} != expected {list(expected.shape)}")
    if expected.dtype != actual.dtype:
        return OutputComparison(name, math.inf, math.inf, 0.0, False, f"dtype {actual.dtype} != expected {expected.dtype}")
    if expected.dtype.kind not in "fc":
        same = bool(np.array_equal(expected, actual))
        mismatched = 0 if same else int(np.sum(expected != actual))
        return OutputComparison(name, 0.0 if same else math.inf, 0.0 if same else math.inf, 1.0 if same else 0.0, same, "" if same else f"{mismatched} elements differ")
    e64, a64 = expected.astype(np.float64), actual.astype(np.float64)
    nan_e, nan_a = np.isnan(e64), np.isnan(a64)
    if not np.array_equal(nan_e, nan_a):
        return OutputComparison(name, math.inf, math.inf, 0.0, False, "NaN in different places")
    finite = ~nan_e & np.isfinite(e64) & np.isfinite(a64)
    if not np.array_equal(e64[~finite & ~nan_e], a64[~finite & ~nan_e]):
        return OutputComparison(name, math.inf, math.inf, 0.0, False, "infinities differ")
    e, a = e64[finite], a64[finite]
    if e.size == 0:
        return OutputComparison(name, 0.0, 0.0, 1.0, True)
    max_abs, max_rel, cosine = float_error_metrics(e, a)
    passed = max_abs <= tolerance.atol + tolerance.rtol * float(np.max(np.abs(e)))
    return OutputComparison(name, max_abs, max_rel, cosine, passed, stats=error_statistics(e, a, tolerance))


def float_error_metrics(expected: np.ndarray, actual: np.ndarray) -> tuple[float, float, float]:
    """(max |a-b|, max |a-b| / max |a|, cosine similarity) of two finite float64 arrays of one shape."""
    if expected.size == 0:
        return 0.0, 0.0, 1.0
    max_abs = float(np.max(np.abs(expected - actual)))
    scale = float(np.max(np.abs(expected)))
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    norms = float(np.linalg.norm(expected) * np.linalg.norm(actual))
    cosine = float(np.dot(expected.ravel(), actual.ravel()) / norms) if norms > 0 else (1.0 if max_abs == 0 else 0.0)
    return max_abs, max_rel, cosine


class Verifier:
    """Holds the original's outputs on fixed inputs; `check(path)` compares a candidate model file."""

    def __init__(
        self,
        original_path: str | os.PathLike,
        original: ir.Model,
        *,
        inputs: Mapping[str, np.ndarray] | None = None,
        input_shapes: Mapping[str, tuple[int, ...]] | None = None,
        tolerance: Tolerance | None = None,
        batch: int = 1,
        run_timeout_s: float | None = DEFAULT_RUN_TIMEOUT_S,
    ) -> None:
        ops = {n.op_type for n in ir.traversal.RecursiveGraphIterator(original.graph)}  # one walk for the tolerance and the random ops
        self.tolerance = tolerance or _tolerance_for(ops)
        self.run_timeout_s = run_timeout_s
        self._unchecked: ir.Model | None = None
        self.skip_reason = ""
        self.feeds: dict[str, np.ndarray] = {}
        self.expected: list = []
        self.inputs_source = ""
        self.output_names = [v.name for v in original.graph.outputs]
        self.original_path = str(original_path)
        self._runtime_optimizer_fails_original: bool | None = None  # found out on the first failing candidate
        self.note = ""
        if ops & RANDOM_OPS:
            self.skip_reason = f"the model draws random numbers ({', '.join(sorted(ops & RANDOM_OPS))}); outputs are not comparable"
            return
        try:
            session = _session(str(original_path), reference=True)
        except Exception as error:  # noqa: BLE001
            self.skip_reason = f"onnxruntime cannot load the original model: {first_line(error)}"
            return
        specs = _input_specs(original, input_shapes)
        self._unchecked = original  # sizes checked once the inputs are known to fit, before the first run
        if inputs is not None:
            self._use_given_inputs(session, specs, inputs)
        else:
            self._find_working_inputs(session, specs, input_shapes or {}, batch)
        self._unchecked = None

    def _check_sizes_once(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Before the first run: refuse values that the feeds' shapes make too large for memory."""
        if self._unchecked is not None:
            model, self._unchecked = self._unchecked, None
            check_value_sizes(model, input_shapes={name: tuple(np.shape(array)) for name, array in feeds.items()})

    def _run(self, session, feeds: Mapping[str, np.ndarray]) -> list:
        """One run, stopped by a signal or past the run time limit (`RunTimeoutError`)."""
        return run_interruptibly(session, self.output_names, feeds, timeout_s=self.run_timeout_s)

    def _cannot_run(self, error: BaseException, on: str, hint: str = "") -> VerificationInputError:
        """The error for an ORIGINAL model that does not run on `on`: the model's fault, unless the inputs'."""
        if isinstance(error, RunTimeoutError):
            return VerificationInputError(
                f"the ORIGINAL model does not finish on {on} within {self.run_timeout_s:g} s: it was stopped "
                f"(raise {mention('run_timeout')}, or {mention('no_verify_command')} rewrites it without running it)",
                option="run_timeout",
            )
        if _is_out_of_memory(error):
            return VerificationInputError(
                f"the ORIGINAL model cannot run on {on}: onnxruntime ran out of memory ({first_line(error)}); "
                f"{mention('no_verify_command')} rewrites it without running it",
                option="verify",
            )
        return VerificationInputError(f"the ORIGINAL model fails in onnxruntime on {on}: {whole_message(error)}{hint}", option="inputs")

    def _use_given_inputs(self, session, specs: list[_InputSpec], inputs: Mapping[str, np.ndarray]) -> None:
        names = {s.name for s in specs}
        missing = sorted(names - set(inputs))
        extra = sorted(set(inputs) - names - {v.name for v in session.get_inputs()})
        if missing:
            raise VerificationInputError(f"{_INPUTS} lacks arrays for: {', '.join(missing)}", option="inputs")
        if extra:
            raise VerificationInputError(f"{_INPUTS} has arrays that are not model inputs: {', '.join(extra)}", option="inputs")
        _check_declared_arrays(specs, inputs)
        feeds = {}
        for spec in specs:
            array = np.asarray(inputs[spec.name])
            if array.dtype != spec.dtype:
                raise VerificationInputError(f"{_INPUTS} '{spec.name}' is {array.dtype}, the model expects {spec.dtype}", option="inputs")
            feeds[spec.name] = array
        self._check_sizes_once(feeds)
        source = inputs.source if isinstance(inputs, Feeds) else "--inputs"
        try:
            self.expected = self._run(session, feeds)
        except Exception as error:  # noqa: BLE001
            raise self._cannot_run(error, source if isinstance(inputs, Feeds) else f"the given {_INPUTS}") from None
        self.feeds, self.inputs_source = Feeds(feeds, source), source

    def _find_working_inputs(self, session, specs, input_shapes, batch: int) -> None:
        last_error = None
        on = "generated inputs" if specs else "no inputs (it takes none)"
        for feeds, source in _candidate_feeds(specs, input_shapes, batch):
            self._check_sizes_once(feeds)
            try:
                self.expected = self._run(session, feeds)
            except RunTimeoutError as error:  # each other input profile would take as long
                raise self._cannot_run(error, on) from None
            except Exception as error:  # noqa: BLE001 - try the next input profile
                last_error = error
                logger.debug("original rejects %s: %s", source, error)
                continue
            self.feeds, self.inputs_source = Feeds(feeds, source), source
            return
        hint = f"; pass real inputs with {_INPUTS} FILE.npz or bind dims with {_SHAPES} NAME=D1,D2,..." if specs else ""
        raise self._cannot_run(last_error, on, hint) from None

    def check(self, candidate_path: str | os.PathLike) -> VerificationResult:
        """Run the candidate on the same inputs and compare every output.

        The candidate runs with onnxruntime's graph optimizations on, as it will be deployed; the
        reference ran without them. When a candidate fails and onnxruntime's optimizations break the
        original model as well (it cannot load it, or computes other outputs), the fault is
        onnxruntime's, not the rewrite's: candidates are then judged with those optimizations off, and
        `note` says so.
        """
        if self.skip_reason:
            return VerificationResult("skipped", reason=self.skip_reason, tolerance=self.tolerance)
        result = self._compare(candidate_path, runtime_optimizations=not self._runtime_optimizer_fails_original)
        if result.passed or self._runtime_optimizer_fails_original is not None:
            return result
        self._runtime_optimizer_fails_original = not self._compare(self.original_path, runtime_optimizations=True).passed
        if not self._runtime_optimizer_fails_original:
            return result
        self.note = "onnxruntime's graph optimizations fail on the original model too (it cannot load or miscomputes it): verified with them off"
        return self._compare(candidate_path, runtime_optimizations=False)

    def _compare(self, candidate_path: str | os.PathLike, *, runtime_optimizations: bool) -> VerificationResult:
        try:
            session = _session(str(candidate_path), reference=not runtime_optimizations)
            actual = self._run(session, self.feeds)
        except Exception as error:  # noqa: BLE001
            return VerificationResult("failed", reason=f"onnxruntime cannot run the optimized model: {first_line(error)}", tolerance=self.tolerance, inputs_source=self.inputs_source)
        outputs = [compare_arrays(n, e, a, self.tolerance) for n, e, a in zip(self.output_names, self.expected, actual)]
        failed = [o.name for o in outputs if not o.passed]
        return VerificationResult(
            "failed" if failed else "passed",
            outputs,
            reason=f"outputs differ beyond tolerance: {', '.join(failed)}" if failed else "",
            tolerance=self.tolerance,
            inputs_source=self.inputs_source,
        )


def _check_declared_arrays(specs: list[_InputSpec], inputs: Mapping[str, np.ndarray]) -> None:
    """Refuse, from the arrays' headers (before reading their data), dtypes, ranks and static dims the model does not take."""
    headers = getattr(inputs, "headers", None)
    if headers is None:
        return
    for spec in specs:
        header = headers[spec.name]
        if header.dtype != spec.dtype:
            raise VerificationInputError(f"{_INPUTS} '{spec.name}' is {header.dtype}, the model expects {spec.dtype}", option="inputs")
        if len(header.shape) != len(spec.dims) or any(isinstance(d, int) and d >= 0 and d != g for g, d in zip(header.shape, spec.dims)):
            declared = [d if isinstance(d, int) and d >= 0 else (d or "?") for d in spec.dims]
            raise VerificationInputError(f"{_INPUTS} '{spec.name}' is {list(header.shape)}, the model declares {declared}; nothing was read", option="inputs")


_OUT_OF_MEMORY_WORDS = ("bad_alloc", "out of memory", "failed to allocate", "allocation failed", "cannot allocate", "memoryerror")


def _is_out_of_memory(error: BaseException) -> bool:
    """Whether an onnxruntime (or numpy) failure is an allocation that did not fit in memory."""
    return isinstance(error, MemoryError) or any(word in str(error).lower() for word in _OUT_OF_MEMORY_WORDS)


def check_batch(inputs: Mapping[str, np.ndarray] | None, batch: int) -> None:
    """Refuse a batch size with given inputs: the arrays set the batch."""
    if inputs is not None and batch != 1:
        raise VerificationInputError(f"{mention('batch')} applies to generated inputs; with {_INPUTS}, the arrays set the batch", option="batch")


def feeds_for(model_path: Path, model: ir.Model, inputs, input_shapes, batch: int) -> tuple[dict[str, np.ndarray], str]:
    """Inputs to time the model on: the user's, else generated ones the model accepts."""
    check_batch(inputs, batch)
    verifier = Verifier(model_path, model, inputs=inputs, input_shapes={k: tuple(v) for k, v in (input_shapes or {}).items()}, batch=batch)
    if not verifier.feeds:
        raise VerificationInputError(f"cannot run the model: {verifier.skip_reason}")
    return verifier.feeds, verifier.inputs_source


def save_inputs(path: str | os.PathLike, feeds: Mapping[str, np.ndarray]) -> Path:
    """Write the arrays a command ran the models on as an .npz (`--inputs` reads it back); atomically."""
    import tempfile

    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **{name: np.asarray(array) for name, array in feeds.items()})
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temporary, 0o666 & ~mask)  # as a plain open() would have made it
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
