#!/usr/bin/env python3
"""Conformance harness: the ONNX backend test cases, before and after `optimize`.

Every case is a folder holding `model.onnx` and `test_data_set_N/{input,output}_K.pb`. For each case:

1. run the ORIGINAL model in onnxruntime (CPU, default session) on the stored inputs and compare
   with the stored outputs (rtol=1e-3 like onnx's backend tests, atol=1e-5; exact for integers and
   booleans; NaN positions must agree);
2. if that passes, run `optimize(level=...)` and check the OPTIMIZED model the same way.

The installed wheel's `light` model zoo (`data/light/light_<model>.onnx`: AlexNet, DenseNet-121,
Inception v1/v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512, weights made by
ConstantOfShape) is run the same way, except that its inputs are not stored: they are generated as
onnx's backend runner generates them (`Runner.generate_dummy_data(x, seed=0, random=False)`, i.e.
`arange(n) / n` in the input's shape, dynamic dims as 1), the expected outputs are
`light_<model>_output_K.pb`, and the tolerances are the runner's (`data/real/test_<model>/data.json`:
rtol 1e-3, 2e-3 for DenseNet-121, atol 1e-7). These models are also optimized at O3 (onnxruntime
contrib-op fusions) unless the run's level already is O3; they are summarized on their own lines.

Each case gets one status:

    original-fails  onnxruntime cannot load/run the original, or its outputs are wrong (not ours)
    skipped         the stored data cannot be loaded (optional/map values, unreadable protos)
    refused         `optimize` raised ModelInputError (listed, not counted as a failure)
    pass            the optimized model reproduces the stored outputs
    regression      the original passes but the optimized model does not, or `optimize` raised
                    any other exception

Usage:
    python scripts/conformance.py               # the installed onnx wheel's model cases + light model zoo
    python scripts/conformance.py --full        # + onnx 1.22.0's 1,765 node tests (fetched into .conformance/)
    python scripts/conformance.py --data DIR    # every case folder under DIR (no light models)
    options: --limit N  --pattern SUBSTR  --json OUT  --level O2  --no-light  --quiet

Exit status: 1 if any regression, 0 otherwise (2 for bad usage or a failed download).
The reusable pieces (`discover_cases`, `discover_light_cases`, `run_case`, `installed_case_dirs`)
are imported by tests/test_conformance.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".conformance"
NODE_TESTS_VERSION = "1.22.0"
INSTALLED_SUITES = ("simple", "pytorch-converted", "pytorch-operator")
LIGHT_SUITE = "light"
RTOL = 1e-3
ATOL = 1e-5
# onnx's loader defaults for model tests (onnx/backend/test/loader); `real/*/data.json` may override.
LIGHT_RTOL = 1e-3
LIGHT_ATOL = 1e-7
LIGHT_EXTRA_LEVELS = ("O3",)  # the light CNNs are also optimized at these levels (cheap: ~10 s)

STATUSES = ("pass", "regression", "refused", "original-fails", "skipped")

if str(REPO_ROOT) not in sys.path:  # run from a checkout without the editable install
    sys.path.insert(0, str(REPO_ROOT))


# ----------------------------------------------------------------------------------------------
# Cases and their data


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # "<suite>/<folder>", e.g. "node/test_abs"; "light/<model>" for the light model zoo
    path: Path  # the case folder (holds model.onnx; for a light model, the light/ folder)
    model_file: str = "model.onnx"  # "light_<model>.onnx" for a light model
    rtol: float = RTOL
    atol: float = ATOL
    light: bool = False  # inputs generated as onnx's runner does; outputs in <model>_output_K.pb

    @property
    def model_path(self) -> Path:
        return self.path / self.model_file


@dataclasses.dataclass
class CaseResult:
    name: str
    status: str
    error: str = ""
    # For cases whose original fails: the optimizer must still not crash on them.
    optimizer_crash: str = ""
    seconds: float = 0.0


class DataError(Exception):
    """The stored inputs/outputs of a case cannot be loaded."""


class Mismatch(Exception):
    """Outputs differ from the stored ones."""


def installed_data_dir() -> Path:
    import onnx

    return Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data"


def installed_case_dirs() -> list[Path]:
    """The suites of the installed onnx wheel that hold complete cases (no network needed)."""
    base = installed_data_dir()
    return [base / suite for suite in INSTALLED_SUITES if (base / suite).is_dir()]


def light_tolerances(data_dir: Path | None = None) -> dict[str, tuple[float, float]]:
    """{light model file name: (rtol, atol)} as onnx's backend runner uses them.

    The runner's light tests are the `real` suite (`load_model_tests(kind="real")`): each
    `real/test_<model>/data.json` names the light file by `url` and may set rtol/atol (loader
    defaults 1e-3/1e-7; DenseNet-121 has rtol 2e-3).
    """
    base = Path(data_dir) if data_dir is not None else installed_data_dir()
    tolerances: dict[str, tuple[float, float]] = {}
    for meta in sorted((base / "real").glob("*/data.json")):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        url = data.get("url") or ""
        if f"/{LIGHT_SUITE}/" in url:
            tolerances[url.rsplit("/", 1)[1]] = (float(data.get("rtol", LIGHT_RTOL)), float(data.get("atol", LIGHT_ATOL)))
    return tolerances


def discover_light_cases(light_dir: Path | None = None, pattern: str | None = None) -> list[Case]:
    """The installed wheel's light model zoo: one case per `light_<model>.onnx` (name "light/<model>")."""
    light_dir = Path(light_dir) if light_dir is not None else installed_data_dir() / LIGHT_SUITE
    if not light_dir.is_dir():
        return []
    tolerances = light_tolerances(light_dir.parent)
    cases = []
    for model in sorted(light_dir.glob("light_*.onnx")):
        name = f"{LIGHT_SUITE}/{model.stem[len('light_'):]}"
        if pattern and pattern not in name:
            continue
        rtol, atol = tolerances.get(model.name, (LIGHT_RTOL, LIGHT_ATOL))
        cases.append(Case(name, light_dir, model.name, rtol, atol, light=True))
    return cases


def _generate_dummy_data(x, seed: int = 0, name: str = "", random: bool = False) -> np.ndarray:
    """A copy of onnx 1.23's `Runner.generate_dummy_data`, used only if that cannot be imported."""
    if not x.type.tensor_type:
        raise NotImplementedError(f"Input expected to have tensor type ({name!r}, {x.name!r}).")
    if x.type.tensor_type.elem_type != 1:
        raise NotImplementedError(f"Currently limited to float tensors ({name!r}, {x.name!r}).")
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in x.type.tensor_type.shape.dim)
    if random:
        gen = np.random.default_rng(seed=seed)
        return gen.random(shape, np.float32)
    n = np.prod(shape)
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def light_input(value_info, model_name: str = "") -> np.ndarray:
    """The input onnx's backend runner feeds a light model (its `use_dummy` branch):
    `Runner.generate_dummy_data(x, seed=0, name=model_name, random=False)`."""
    try:
        from onnx.backend.test.runner import Runner

        generate = Runner.generate_dummy_data
    except (ImportError, AttributeError):
        generate = _generate_dummy_data
    try:
        return generate(value_info, seed=0, name=model_name, random=False)
    except NotImplementedError as exc:
        raise DataError(f"cannot generate input {value_info.name!r}: {exc}") from exc


def discover_cases(roots: Iterable[Path], pattern: str | None = None, limit: int | None = None) -> list[Case]:
    """Every folder holding `model.onnx` plus a `test_data_set_*` folder, under each root."""
    cases: list[Case] = []
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        for model in sorted(root.rglob("model.onnx")):
            folder = model.parent
            if folder in seen or not any(p.is_dir() and p.name.startswith("test_data_set_") for p in folder.iterdir()):
                continue
            seen.add(folder)
            rel = folder.relative_to(root)
            name = f"{root.name}/{rel.as_posix()}" if str(rel) != "." else root.name
            if pattern and pattern not in name:
                continue
            cases.append(Case(name, folder))
    cases.sort(key=lambda c: c.name)
    return cases[:limit] if limit is not None else cases


def _pb_index(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def _value_kind(type_proto) -> str:
    kind = type_proto.WhichOneof("value")
    if kind == "optional_type":
        inner = _value_kind(type_proto.optional_type.elem_type)
        return f"optional<{inner}>"
    if kind == "sequence_type":
        elem = type_proto.sequence_type.elem_type.WhichOneof("value")
        return "sequence" if elem == "tensor_type" else f"sequence<{elem}>"
    return {"tensor_type": "tensor", "sparse_tensor_type": "sparse"}.get(kind, kind or "unknown")


def _load_value(path: Path, kind: str):
    import onnx
    from onnx import numpy_helper

    data = path.read_bytes()
    try:
        if kind == "tensor":
            proto = onnx.TensorProto()
            proto.ParseFromString(data)
            return numpy_helper.to_array(proto)
        if kind == "sequence":
            proto = onnx.SequenceProto()
            proto.ParseFromString(data)
            if proto.elem_type not in (onnx.SequenceProto.TENSOR, onnx.SequenceProto.UNDEFINED):
                raise DataError(f"{path.name}: sequence of non-tensors")
            return [numpy_helper.to_array(t) for t in proto.tensor_values]
        if kind in ("optional<tensor>", "optional<sequence>"):
            proto = onnx.OptionalProto()
            proto.ParseFromString(data)
            if not proto.HasField("tensor_value") and not proto.HasField("sequence_value"):
                return None
            if proto.HasField("tensor_value"):
                return numpy_helper.to_array(proto.tensor_value)
            return [numpy_helper.to_array(t) for t in proto.sequence_value.tensor_values]
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a proto this onnx cannot read
        raise DataError(f"{path.name}: cannot load as {kind}: {type(exc).__name__}: {exc}") from exc
    raise DataError(f"{path.name}: {kind} values are not supported by the harness")


def load_case_data(case: Case):
    """(input names, output names, [(inputs dict, expected outputs list)] per data set).

    Inputs are fed by the original model's graph-input names (initializers excluded), in the order
    the backend runner feeds them positionally; outputs are the graph outputs in order.
    """
    import onnx

    model = onnx.load(str(case.model_path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in initializers]
    outputs = list(model.graph.output)
    in_kinds = [_value_kind(vi.type) for vi in inputs]
    out_kinds = [_value_kind(vi.type) for vi in outputs]
    if case.light:
        # As onnx's runner: generated inputs, `<model>_output_K.pb` as the expected outputs (the runner
        # would fall back to onnx's ReferenceEvaluator when one is missing; not done here).
        stem = Path(case.model_file).stem
        feeds = {vi.name: light_input(vi, stem[len("light_"):]) for vi in inputs}
        out_files = [case.path / f"{stem}_output_{k}.pb" for k in range(len(outputs))]
        missing = [f.name for f in out_files if not f.is_file()]
        if missing:
            raise DataError(f"no stored output {', '.join(missing)}")
        expected = [_load_value(f, out_kinds[k]) for k, f in enumerate(out_files)]
        return [vi.name for vi in inputs], [vi.name for vi in outputs], [(feeds, expected)]
    sets = []
    for data_dir in sorted(p for p in case.path.iterdir() if p.is_dir() and p.name.startswith("test_data_set_")):
        in_files = sorted(data_dir.glob("input_*.pb"), key=_pb_index)
        out_files = sorted(data_dir.glob("output_*.pb"), key=_pb_index)
        if len(in_files) > len(inputs):
            raise DataError(f"{data_dir.name}: {len(in_files)} input files for {len(inputs)} graph inputs")
        if len(out_files) != len(outputs):
            raise DataError(f"{data_dir.name}: {len(out_files)} output files for {len(outputs)} graph outputs")
        feeds = {inputs[i].name: _load_value(f, in_kinds[i]) for i, f in enumerate(in_files)}
        expected = [_load_value(f, out_kinds[i]) for i, f in enumerate(out_files)]
        sets.append((feeds, expected))
    if not sets:
        raise DataError("no test_data_set_* folder")
    return [vi.name for vi in inputs], [vi.name for vi in outputs], sets


# ----------------------------------------------------------------------------------------------
# Running and comparing


def _is_exact(dtype: np.dtype) -> bool:
    return dtype.kind in "iub" or (dtype.type.__module__.split(".")[0] == "ml_dtypes" and "int" in dtype.name)


def compare_value(actual, expected, where: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Raise Mismatch unless `actual` reproduces `expected` (a tensor, a list of tensors or None)."""
    if expected is None or actual is None:
        if expected is not actual:
            raise Mismatch(f"{where}: expected {'an empty optional' if expected is None else 'a value'}, "
                           f"got {'an empty optional' if actual is None else 'a value'}")
        return
    if isinstance(expected, list):
        if not isinstance(actual, (list, tuple)):
            raise Mismatch(f"{where}: expected a sequence, got {type(actual).__name__}")
        if len(actual) != len(expected):
            raise Mismatch(f"{where}: sequence length {len(actual)} != {len(expected)}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            compare_value(a, e, f"{where}[{i}]", rtol, atol)
        return
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.dtype != expected.dtype:
        raise Mismatch(f"{where}: dtype {actual.dtype} != expected {expected.dtype}")
    if actual.shape != expected.shape:
        raise Mismatch(f"{where}: shape {actual.shape} != expected {expected.shape}")
    if expected.dtype.kind in "OUS":
        if not np.array_equal(actual, expected):
            raise Mismatch(f"{where}: values differ (strings)")
        return
    if _is_exact(expected.dtype):
        a = actual.astype(np.int64) if expected.dtype.kind not in "iub" else actual
        e = expected.astype(np.int64) if expected.dtype.kind not in "iub" else expected
        if not np.array_equal(a, e):
            bad = int(np.count_nonzero(a != e))
            raise Mismatch(f"{where}: {bad}/{e.size} values differ (exact {expected.dtype})")
        return
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    close = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if not close.all():
        bad = ~close
        with np.errstate(invalid="ignore"):
            err = np.abs(a - e)
        finite = np.where(np.isfinite(err), err, 0.0)
        raise Mismatch(
            f"{where}: {int(bad.sum())}/{e.size} values differ beyond rtol={rtol} atol={atol} "
            f"(max abs err {float(finite.max()):.3g}; NaN/inf mismatches {int((bad & ~np.isfinite(err)).sum())})"
        )


def _session(model_path: Path):
    import onnxruntime as ort

    ort.set_default_logger_severity(4)  # failures are reported per case; keep ORT's log quiet
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def _is_exotic(value) -> bool:
    """A tensor of an ml_dtypes type (bfloat16, float8*, int4, ...) that onnxruntime's numpy bridge rejects."""
    return isinstance(value, np.ndarray) and (
        value.dtype.kind == "V" or value.dtype.type.__module__.split(".")[0] == "ml_dtypes"
    )


def _sub_byte_bits(dtype: np.dtype) -> int:
    """4 or 2 for the packed sub-byte types (int4, uint4, float4e2m1, int2, uint2), else 0."""
    name = dtype.name
    if name.startswith(("int4", "uint4", "float4")):
        return 4
    if name.startswith(("int2", "uint2")):
        return 2
    return 0


def _bit_patterns(value: np.ndarray, bits: int) -> np.ndarray:
    if value.dtype.name.startswith("float"):
        return value.view(np.uint8) & ((1 << bits) - 1)
    return value.astype(np.int8).view(np.uint8) & ((1 << bits) - 1)


def _pack(value: np.ndarray, bits: int) -> bytes:
    """ONNX packing: the first element in the least significant bits of each byte."""
    per_byte = 8 // bits
    flat = _bit_patterns(np.ascontiguousarray(value).reshape(-1), bits)
    flat = np.concatenate([flat, np.zeros((-flat.size) % per_byte, np.uint8)]).reshape(-1, per_byte)
    packed = np.zeros(flat.shape[0], np.uint8)
    for i in range(per_byte):
        packed |= (flat[:, i] << (i * bits)).astype(np.uint8)
    return packed.tobytes()


def _unpack(raw: bytes, bits: int, count: int, dtype: np.dtype) -> np.ndarray:
    packed = np.frombuffer(raw, np.uint8)
    per_byte = 8 // bits
    mask = (1 << bits) - 1
    patterns = np.stack([(packed >> (i * bits)) & mask for i in range(per_byte)], axis=1).reshape(-1)[:count]
    if dtype.name.startswith("float"):
        return patterns.astype(np.uint8).view(dtype)
    if dtype.name.startswith("int"):  # sign-extend
        ints = patterns.astype(np.int16)
        ints = np.where(ints >= (1 << (bits - 1)), ints - (1 << bits), ints)
        return ints.astype(np.int8).astype(dtype)
    return patterns.astype(np.uint8).astype(dtype)


def _to_ort_value(value: np.ndarray):
    """An OrtValue holding `value`; ml_dtypes types are copied in through their (packed) bytes."""
    import ctypes

    import onnx
    import onnxruntime as ort

    if not _is_exotic(value):
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value))
    elem_type = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
    bits = _sub_byte_bits(value.dtype)
    if bits:
        raw = _pack(value, bits)
    elif value.dtype.itemsize in (1, 2):
        raw = np.ascontiguousarray(value).view(np.uint8 if value.dtype.itemsize == 1 else np.uint16).tobytes()
    else:
        raise DataError(f"cannot pass {value.dtype} tensors to onnxruntime")
    ort_value = ort.OrtValue.ortvalue_from_shape_and_type(list(value.shape), elem_type)
    if ort_value.tensor_size_in_bytes() != len(raw):
        raise DataError(f"{value.dtype}: onnxruntime expects {ort_value.tensor_size_in_bytes()} bytes, have {len(raw)}")
    if raw:
        ctypes.memmove(ort_value.data_ptr(), raw, len(raw))
    return ort_value


def _from_ort_value(value, expected):
    """The numpy value of an OrtValue; ml_dtypes results are read back through their (packed) bytes."""
    import ctypes

    if not _is_exotic(expected):
        return value.numpy()
    dtype = expected.dtype
    shape = tuple(value.shape())
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = value.tensor_size_in_bytes()
    raw = ctypes.string_at(value.data_ptr(), nbytes) if nbytes else b""
    bits = _sub_byte_bits(dtype)
    if bits:
        if nbytes != -(-count * bits // 8):
            raise Mismatch(f"output holds {nbytes} bytes for {count} x {dtype}")
        return _unpack(raw, bits, count, dtype).reshape(shape)
    if dtype.itemsize not in (1, 2) or nbytes != count * dtype.itemsize:
        raise DataError(f"cannot read {dtype} tensors from onnxruntime")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def check_model(model_path: Path, output_names: Sequence[str], sets, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Run `model_path` on every data set; raise (Mismatch or ORT's error) unless all outputs match."""
    session = _session(model_path)
    present = {i.name for i in session.get_inputs()}
    for n, (feeds, expected) in enumerate(sets):
        missing = [name for name in present if name not in feeds and not _has_initializer(session, name)]
        if missing:
            raise Mismatch(f"data set {n}: model needs inputs {missing} that the case does not provide")
        feeds = {k: v for k, v in feeds.items() if k in present}
        if any(_is_exotic(v) for v in feeds.values()) or any(_is_exotic(e) for e in expected):
            if any(isinstance(v, list) for v in feeds.values()) or any(isinstance(e, list) for e in expected):
                raise DataError("sequences mixed with bfloat16/float8 tensors are not bridged")
            ort_feeds = {k: _to_ort_value(v) for k, v in feeds.items()}
            ort_outputs = session.run_with_ort_values(list(output_names), ort_feeds)
            got = [_from_ort_value(v, e) for v, e in zip(ort_outputs, expected)]
        else:
            got = session.run(list(output_names), feeds)
        for k, (a, e) in enumerate(zip(got, expected)):
            compare_value(a, e, f"data set {n}, output {k} ({output_names[k]!r})", rtol, atol)


def _has_initializer(session, name: str) -> bool:
    try:
        return any(i.name == name for i in session.get_overridable_initializers())
    except Exception:  # noqa: BLE001
        return False


def _one_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _crash_text(exc: BaseException) -> str:
    """The error, plus where in the optimizer it was raised (the innermost project frame)."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if "/optimizer/" in frame.filename or "/passes/" in frame.filename:
            where = f" [at {Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno} in {frame.name}]"
            break
    return _one_line(exc) + where


def run_optimizer(case: Case, out_path: Path, level: str):
    """Call optimize(); returns None on success, ("refused", msg) or ("crash", msg)."""
    from optimizer.api import optimize
    from optimizer.io import ModelInputError

    try:
        optimize(case.model_path, out_path, level=level, verify=False, force=True)
    except ModelInputError as exc:
        return "refused", _one_line(exc)
    except Exception as exc:  # noqa: BLE001 - anything else is an optimizer bug
        return "crash", _crash_text(exc)
    return None


def run_case(case: Case, level: str = "O2", check_crash_on_failing: bool = True,
             original_passed: bool = False) -> CaseResult:
    """Classify one case; never raises (except KeyboardInterrupt).

    `original_passed=True` skips re-checking the original (it passed in an earlier run of this case).
    """
    start = time.perf_counter()
    result = _run_case(case, level, check_crash_on_failing, original_passed)
    result.seconds = time.perf_counter() - start
    return result


def _run_case(case: Case, level: str, check_crash_on_failing: bool, original_passed: bool = False) -> CaseResult:
    try:
        _, output_names, sets = load_case_data(case)
    except DataError as exc:
        return CaseResult(case.name, "skipped", str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. a model.onnx this onnx cannot parse
        return CaseResult(case.name, "skipped", _one_line(exc))

    with tempfile.TemporaryDirectory(prefix="conformance-") as scratch:
        out_path = Path(scratch) / "model.opt.onnx"
        try:
            if not original_passed:
                check_model(case.model_path, output_names, sets, case.rtol, case.atol)
        except Exception as exc:  # noqa: BLE001 - ORT refusals, runtime errors, mismatches
            result = CaseResult(case.name, "original-fails", _one_line(exc))
            if check_crash_on_failing:
                outcome = run_optimizer(case, out_path, level)
                if outcome is not None and outcome[0] == "crash":
                    result.optimizer_crash = outcome[1]
            return result

        outcome = run_optimizer(case, out_path, level)
        if outcome is not None:
            kind, message = outcome
            if kind == "refused":
                return CaseResult(case.name, "refused", message)
            return CaseResult(case.name, "regression", f"optimize raised {message}")
        try:
            check_model(out_path, output_names, sets, case.rtol, case.atol)
        except Mismatch as exc:
            return CaseResult(case.name, "regression", f"optimized model: {exc}")
        except Exception as exc:  # noqa: BLE001
            return CaseResult(case.name, "regression", f"optimized model fails in onnxruntime: {_one_line(exc)}")
    return CaseResult(case.name, "pass")


# ----------------------------------------------------------------------------------------------
# Fetching onnx's node tests


def fetch_node_tests(cache: Path = CACHE_DIR, version: str = NODE_TESTS_VERSION) -> Path:
    """Extract `onnx/backend/test/data/node/*` from the onnx `version` wheel into `cache/node`.

    The wheel is only unzipped for its data; that onnx version is never imported.
    """
    target = cache / f"onnx-{version}" / "node"
    marker = target.parent / ".complete"
    if marker.is_file():
        return target
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(f"onnx-{version}-*.whl"))
    if not found:
        print(f"conformance: downloading the onnx {version} wheel for its node tests ...", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", f"onnx=={version}", "-d", str(wheels)]
        subprocess.run(cmd, check=True)
        found = sorted(wheels.glob(f"onnx-{version}-*.whl"))
        if not found:
            raise RuntimeError(f"pip download left no onnx-{version} wheel in {wheels}")
    prefix = "onnx/backend/test/data/node/"
    with zipfile.ZipFile(found[0]) as wheel:
        for info in wheel.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            rel = info.filename[len(prefix):]
            if ".." in Path(rel).parts:
                continue
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with wheel.open(info) as src, open(dest, "wb") as dst:
                dst.write(src.read())
    marker.write_text(found[0].name + "\n")
    return target


# ----------------------------------------------------------------------------------------------
# Command line


def summarize(results: Sequence[CaseResult]) -> dict[str, int]:
    counts = Counter(r.status for r in results)
    return {"total": len(results), **{s: counts.get(s, 0) for s in STATUSES}}


def suite_of(name: str) -> str:
    return name.split("/", 1)[0]


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{s} {counts[s]}" for s in STATUSES)


def _light_line(label: str, counts: dict[str, int]) -> str:
    others = [f"{s} {counts[s]}" for s in STATUSES if s != "pass" and counts[s]]
    return f"  light model zoo ({label}): {counts['pass']}/{counts['total']} pass" + (f", {', '.join(others)}" if others else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true",
                        help=f"also run onnx {NODE_TESTS_VERSION}'s node tests (fetched into .conformance/)")
    parser.add_argument("--data", action="append", type=Path, metavar="DIR",
                        help="run the cases under DIR instead (repeatable; leaves out the light model zoo)")
    parser.add_argument("--no-light", action="store_true",
                        help="leave out the installed wheel's light model zoo (9 CNNs, also optimized at O3)")
    parser.add_argument("--limit", type=int, help="run at most N cases")
    parser.add_argument("--pattern", help="only cases whose name contains SUBSTR")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every case's result to OUT")
    parser.add_argument("--level", default="O2", help="optimization level (default O2)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    roots: list[Path] = []
    if args.data:
        for d in args.data:
            if not d.is_dir():
                parser.error(f"--data {d}: not a folder")
        roots.extend(args.data)
    if args.full:
        try:
            roots.insert(0, fetch_node_tests())
        except Exception as exc:  # noqa: BLE001
            print(f"conformance: cannot fetch the node tests: {_one_line(exc)}", file=sys.stderr)
            return 2
    if not args.data:
        roots.extend(installed_case_dirs())

    cases = discover_cases(roots, args.pattern)
    if not args.data and not args.no_light:
        cases += discover_light_cases(pattern=args.pattern)
    if args.limit is not None:
        cases = cases[: args.limit]
    if not cases:
        print("conformance: no cases found", file=sys.stderr)
        return 2
    light_cases = [c for c in cases if c.light]
    extra_levels = [lv for lv in LIGHT_EXTRA_LEVELS if lv != args.level] if light_cases else []

    import onnxruntime

    light_note = f" ({len(light_cases)} light models, also at {', '.join(extra_levels)})" if extra_levels else ""
    print(f"conformance: {len(cases)} cases{light_note}, level {args.level}, onnxruntime {onnxruntime.__version__}",
          file=sys.stderr)
    results: list[CaseResult] = []
    start = time.perf_counter()
    for i, case in enumerate(cases, 1):
        results.append(run_case(case, args.level))
        if not args.quiet and (i % 100 == 0 or i == len(cases)):
            c = summarize(results)
            print(f"  [{i}/{len(cases)}] {time.perf_counter() - start:.0f}s  pass {c['pass']}  "
                  f"regression {c['regression']}  refused {c['refused']}  original-fails {c['original-fails']}",
                  file=sys.stderr, flush=True)

    # The light CNNs again at the other levels (O3: onnxruntime contrib-op fusions). The original was
    # checked above: a case whose original fails or whose data cannot load keeps that status.
    by_name = {r.name: r for r in results}
    extra: dict[str, list[CaseResult]] = {}
    for level in extra_levels:
        extra[level] = []
        for case in light_cases:
            first = by_name[case.name]
            if first.status in ("original-fails", "skipped"):
                extra[level].append(CaseResult(case.name, first.status, first.error))
            else:
                extra[level].append(run_case(case, level, original_passed=True))
        if not args.quiet:
            c = summarize(extra[level])
            print(f"  [light models at {level}] {time.perf_counter() - start:.0f}s  pass {c['pass']}  "
                  f"regression {c['regression']}  refused {c['refused']}", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start

    counts = summarize(results)
    suites = {suite: summarize([r for r in results if suite_of(r.name) == suite])
              for suite in dict.fromkeys(suite_of(r.name) for r in results)}
    crashes = [r for r in results if r.optimizer_crash]
    refused = [r for r in results if r.status == "refused"]
    regressions = [r for r in results if r.status == "regression"]
    extra_refused = [(lv, r) for lv, rs in extra.items() for r in rs if r.status == "refused"]
    extra_regressions = [(lv, r) for lv, rs in extra.items() for r in rs if r.status == "regression"]
    if refused or extra_refused:
        print(f"\nrefused ({len(refused) + len(extra_refused)}):")
        for r in refused:
            print(f"  {r.name}: {r.error}")
        for lv, r in extra_refused:
            print(f"  {r.name} at {lv}: {r.error}")
    if crashes:
        print(f"\noptimizer crashed on cases whose original already fails ({len(crashes)}, not counted):")
        for r in crashes:
            print(f"  {r.name}: {r.optimizer_crash}")
    if regressions or extra_regressions:
        print(f"\nregressions ({len(regressions) + len(extra_regressions)}):")
        for r in regressions:
            print(f"  {r.name}: {r.error}")
        for lv, r in extra_regressions:
            print(f"  {r.name} at {lv}: {r.error}")
    light_failures = [r for r in results if r.name in {c.name for c in light_cases} and r.status in ("original-fails", "skipped")]
    if light_failures:
        print(f"\nlight models not checked ({len(light_failures)}):")
        for r in light_failures:
            print(f"  {r.name} ({r.status}): {r.error}")
    print()
    if len(suites) > 1:
        for suite, c in suites.items():
            if suite != LIGHT_SUITE:
                print(f"  {suite}: total {c['total']}, {_counts_text(c)}")
    if LIGHT_SUITE in suites and light_cases:
        print(_light_line(args.level, suites[LIGHT_SUITE]))
        for lv, rs in extra.items():
            print(_light_line(lv, summarize(rs)))
    print(f"conformance: total {counts['total']}, pass {counts['pass']}, regression {counts['regression']}, "
          f"refused {counts['refused']}, original-fails {counts['original-fails']}, skipped {counts['skipped']} "
          f"({elapsed:.0f}s)")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "level": args.level,
            "onnxruntime": onnxruntime.__version__,
            "roots": [str(r) for r in roots],
            "seconds": round(elapsed, 2),
            "counts": counts,
            "suites": suites,
            "cases": [dataclasses.asdict(r) for r in results],
            "light_extra_levels": {
                lv: {"counts": summarize(rs), "cases": [dataclasses.asdict(r) for r in rs]} for lv, rs in extra.items()
            },
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if regressions or extra_regressions else 0


if __name__ == "__main__":
    sys.exit(main())
