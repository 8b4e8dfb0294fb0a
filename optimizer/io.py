"""Loading, validating and saving models: the one module of the product that touches protobuf.

`load()` refuses anything that is not a well-formed ONNX model this installation can run, with a
one-line `ModelInputError`, before any tensor data is read: external data must stay inside the
model's folder, declared tensor sizes must match the bytes present, and nothing is ever executed.
`save()` writes atomically (a temporary folder beside the target, then renames), so an interrupted
or failed run never leaves a half-written file.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

__all__ = [
    "ModelInputError",
    "load",
    "load_proto",
    "save",
    "stage",
    "publish",
    "discard",
    "staged_bytes",
    "check_writable",
    "convert_opset",
    "model_file_bytes",
    "weight_bytes_by_dtype",
    "supported_versions",
    "EXTERNAL_DATA_THRESHOLD",
]

logger = logging.getLogger(__name__)

# Protobuf cannot serialize a message over 2 GiB; stay clear of it.
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3 - 64 * 1024**2


class ModelInputError(Exception):
    """A problem with what the user gave us; the message is one line meant for them."""


def _fail(path: Path | str, message: str) -> ModelInputError:
    return ModelInputError(f"{path}: {message}")


@functools.lru_cache(maxsize=1)
def supported_versions() -> tuple[int, int]:
    """(max IR version, max default-domain opset) that both onnx and onnxruntime accept here.

    onnxruntime publishes neither number, so it is probed once with a one-node model.
    """
    import onnxruntime as ort

    def loads(ir_version: int, opset: int) -> bool:
        x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
        y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
        graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        model.ir_version = ir_version
        options = ort.SessionOptions()
        options.log_severity_level = 4
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            return True
        except Exception:  # noqa: BLE001 - any refusal means "not supported"
            return False

    max_opset = onnx.defs.onnx_opset_version()
    ir_version = next((v for v in range(onnx.IR_VERSION, 2, -1) if loads(v, 7)), 3)
    opset = next((o for o in range(max_opset, 6, -1) if loads(ir_version, o)), 7)
    return ir_version, opset


def _iter_tensors(graph: onnx.GraphProto):
    """Every TensorProto stored in a graph: initializers, Constant values, subgraphs' too."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _iter_tensors(attr.g)
            for sub in attr.graphs:
                yield from _iter_tensors(sub)


def _expected_bytes(tensor: onnx.TensorProto, where: Path) -> int | None:
    """Bytes the tensor's dims and dtype declare (None for strings and unknown dtypes)."""
    if any(d < 0 for d in tensor.dims):
        raise _fail(where, f"tensor '{tensor.name}' has a negative dimension {list(tensor.dims)}")
    if tensor.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    try:
        np_dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    except Exception:  # noqa: BLE001
        return None
    count = int(np.prod(tensor.dims, dtype=np.float64)) if tensor.dims else 1
    bits = 4 if tensor.data_type in _FOUR_BIT_TYPES else 8 * np.dtype(np_dtype).itemsize
    return (count * bits + 7) // 8


_FOUR_BIT_TYPES = {getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, n)}


def _check_external_location(tensor: onnx.TensorProto, base_dir: Path, where: Path) -> None:
    """Refuse external data that would be read from outside the model's folder, or that is short."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    name = tensor.name or "<unnamed>"
    if not location:
        raise _fail(where, f"tensor '{name}' declares external data without a location")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in location:
        raise _fail(where, f"tensor '{name}' points outside the model's folder ({location!r}); refused")
    parts = Path(location.replace("\\", "/")).parts
    if ".." in parts:
        raise _fail(where, f"tensor '{name}' points outside the model's folder ({location!r}); refused")
    real_base = os.path.realpath(base_dir)
    real_file = os.path.realpath(base_dir / location)
    if os.path.commonpath([real_base, real_file]) != real_base:
        raise _fail(where, f"tensor '{name}' external data {location!r} resolves outside the model's folder (symlink); refused")
    if not os.path.isfile(real_file):
        raise _fail(where, f"external data file {location!r} for tensor '{name}' is missing")
    try:
        offset = int(info.get("offset", 0) or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        raise _fail(where, f"tensor '{name}' has a malformed external data offset/length") from None
    size = os.path.getsize(real_file)
    expected = _expected_bytes(tensor, where)
    if length is not None and expected is not None and length != expected:
        raise _fail(where, f"tensor '{name}' declares {expected} bytes but its external data length is {length}")
    needed = length if length is not None else (expected or 0)
    if offset < 0 or offset + needed > size:
        raise _fail(where, f"external data {location!r} is too short for tensor '{name}' ({size} bytes, needs {offset + needed})")


def _check_embedded_size(tensor: onnx.TensorProto, where: Path) -> None:
    """Declared dims must match the bytes actually stored (catches corrupt or hostile tensors)."""
    expected = _expected_bytes(tensor, where)
    if expected is None or tensor.HasField("segment"):
        return
    if tensor.raw_data:
        present = len(tensor.raw_data)
    else:
        present = None
        for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            values = getattr(tensor, field)
            if len(values):
                present = len(values)
                break
        if present is None:
            present = 0
        count = int(np.prod(tensor.dims, dtype=np.float64)) if tensor.dims else 1
        if tensor.data_type in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128):
            count *= 2
        if tensor.data_type in _FOUR_BIT_TYPES:
            count = (count + 1) // 2
        if present == count or (present == 0 and count == 0):
            return
        raise _fail(where, f"tensor '{tensor.name}' declares shape {list(tensor.dims)} but holds {present} values")
    if present != expected:
        raise _fail(where, f"tensor '{tensor.name}' declares shape {list(tensor.dims)} ({expected} bytes) but holds {present} bytes")


def load_proto(path: str | os.PathLike) -> onnx.ModelProto:
    """Parse and validate a model file without reading its external data."""
    where = Path(path)
    if not where.exists():
        raise _fail(where, "no such file")
    if where.is_dir():
        raise _fail(where, "is a folder, not an ONNX model file")
    try:
        size = where.stat().st_size
        if size == 0:
            raise _fail(where, "empty file, not an ONNX model")
        data = where.read_bytes()
    except OSError as error:
        raise _fail(where, f"cannot read: {error.strerror or error}") from None
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception:  # noqa: BLE001 - protobuf raises several types for garbage
        raise _fail(where, "not an ONNX model (the file is not a valid protobuf; truncated or another format?)") from None
    del data
    if proto.ir_version <= 0 or not proto.HasField("graph") or (not proto.graph.node and not proto.graph.output):
        raise _fail(where, "not an ONNX model (no IR version or no graph)")
    _check_versions(proto, where)
    for tensor in _iter_tensors(proto.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _check_external_location(tensor, where.parent, where)
        else:
            _check_embedded_size(tensor, where)
    try:
        # The checker needs structure, not weights (their sizes were checked above): give it a
        # skeleton, which saves serializing every weight once more. External locations were
        # checked above as well, against the model's folder.
        onnx.checker.check_model(_skeleton(proto))
    except Exception as error:  # noqa: BLE001 - checker raises ValidationError and C++ errors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        # The checker is stricter than the runtime (e.g. outputs declared without a shape, which
        # real exports have): what onnxruntime loads is a model users run, so accept it.
        if not _runtime_loads(where):
            raise _fail(where, f"invalid ONNX model: {first}") from None
        logger.warning("%s: onnx.checker objects (%s), but onnxruntime loads the model; continuing", where, first)
    return proto


def _copy_fields(source, target, skip: str) -> None:
    """Copy every set field of a protobuf message except `skip` (no weights are touched)."""
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if isinstance(value, (list, tuple)) or hasattr(value, "extend"):  # repeated field
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def _skeleton(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every main-graph initializer replaced by an empty tensor of the same name and type."""
    skeleton = onnx.ModelProto()
    _copy_fields(proto, skeleton, skip="graph")
    _copy_fields(proto.graph, skeleton.graph, skip="initializer")
    for tensor in proto.graph.initializer:
        empty = skeleton.graph.initializer.add()
        empty.name, empty.data_type = tensor.name, tensor.data_type
        empty.dims.append(0)
    return skeleton


def _runtime_loads(path: Path) -> bool:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return True
    except Exception:  # noqa: BLE001 - any refusal
        return False


def _check_versions(proto: onnx.ModelProto, where: Path) -> None:
    max_ir, max_opset = supported_versions()
    if proto.ir_version > max_ir:
        raise _fail(where, f"IR version {proto.ir_version} is newer than this installation supports (up to {max_ir}); upgrade onnx/onnxruntime")
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > max_opset:
            raise _fail(where, f"opset {opset.version} is newer than this installation supports (up to {max_opset}); upgrade onnx/onnxruntime")
    if not any(o.domain in ("", "ai.onnx") for o in proto.opset_import) and proto.ir_version >= 3:
        if any(n.domain in ("", "ai.onnx") for n in proto.graph.node):
            raise _fail(where, "the model uses standard ONNX ops but imports no default-domain opset")


def load(path: str | os.PathLike, *, validate: bool = True) -> ir.Model:
    """Validate and load a model; tensors in external data stay on disk until used (memory-mapped).

    `validate=False` is for re-reading a file this process already validated.
    """
    proto = load_proto(path) if validate else onnx.load_model(str(path), load_external_data=False)
    model = ir.serde.deserialize_model(proto)
    ir.external_data.set_base_dir(model.graph, os.path.dirname(os.path.abspath(path)))
    return model


def convert_opset(model: ir.Model, opset: int) -> ir.Model:
    """The model upgraded to default-domain `opset` by onnx's version converter (ValueError if it cannot)."""
    from onnx import version_converter

    base_dir = None
    for value in model.graph.initializers.values():
        if isinstance(value.const_value, ir.ExternalTensor):
            base_dir = value.const_value.base_dir
            break
    proto = ir.serde.serialize_model(model)
    try:
        converted = version_converter.convert_version(proto, opset)
    except Exception as error:  # noqa: BLE001 - the converter raises C++ errors of several kinds
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"onnx's version converter cannot upgrade this model to opset {opset}: {first}") from None
    upgraded = ir.serde.deserialize_model(converted)
    if base_dir is not None:
        ir.external_data.set_base_dir(upgraded.graph, base_dir)
    return upgraded


def model_file_bytes(model: ir.Model, path: str | os.PathLike) -> int:
    """Size of a model on disk: its file plus every external data file its tensors reference."""
    total = Path(path).stat().st_size
    data_files = set()
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if isinstance(tensor, ir.ExternalTensor):
                data_files.add(os.path.realpath(os.path.join(tensor.base_dir, tensor.location)))
    return total + sum(os.path.getsize(f) for f in data_files if os.path.isfile(f))


def weight_bytes_by_dtype(model: ir.Model) -> dict[str, int]:
    """Initializer bytes per element type, over the main graph and subgraphs."""
    totals: dict[str, int] = {}
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.const_value is not None:
                key = value.const_value.dtype.name.lower()
                totals[key] = totals.get(key, 0) + value.const_value.nbytes
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def _tensor_bytes(model: ir.Model) -> int:
    total = 0
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.const_value is not None:
                total += value.const_value.nbytes
    return total


def stage(model: ir.Model, folder: str | os.PathLike, name: str, *, external_data: bool | None = None) -> Path:
    """Write `model` as `<new hidden folder in folder>/<name>` (weights in `<name>.data` when external).

    Returns the staged model path; `publish()` moves it into place, `discard()` removes it.
    """
    folder = Path(folder)
    use_external = external_data if external_data is not None else _tensor_bytes(model) > EXTERNAL_DATA_THRESHOLD
    try:
        staging = Path(tempfile.mkdtemp(prefix=".optimize-", dir=folder))
    except OSError as error:
        raise _fail(folder / name, f"cannot write: {error.strerror or error}") from None
    staged = staging / name
    try:
        if use_external:
            ir.save(model, staged, external_data=name + ".data")
        else:
            _write_embedded(model, staged)
    except OSError as error:
        discard(staged)
        raise _fail(folder / name, f"cannot write: {error.strerror or error}") from None
    except BaseException:
        discard(staged)
        raise
    return staged


_STREAMED_TENSOR_BYTES = 64 * 1024


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(field_number: int, length: int) -> bytes:
    """The tag and length prefix of a length-delimited protobuf field."""
    return _varint(field_number << 3 | 2) + _varint(length)


def _write_embedded(model: ir.Model, path: Path) -> None:
    """Write a self-contained model without building it as one protobuf string.

    Protobuf messages are concatenations of their fields, so large main-graph initializers are
    written header first and raw bytes straight after, one tensor at a time; the rest of the model
    is serialized normally. Peak memory stays at the model plus one tensor (ir.save needs 3x).
    """
    graph = model.graph
    streamed = []
    for name, value in list(graph.initializers.items()):
        tensor = value.const_value
        if tensor is None or isinstance(tensor, ir.StringTensor) or tensor.nbytes < _STREAMED_TENSOR_BYTES:
            continue
        streamed.append((name, value))
        del graph.initializers[name]
    try:
        proto = ir.serde.serialize_model(model)
    finally:
        for name, value in streamed:
            graph.register_initializer(value)
    graph_head = proto.graph.SerializeToString()
    proto.ClearField("graph")
    entries = []
    for name, value in streamed:
        tensor = value.const_value
        header = onnx.TensorProto(name=name, data_type=tensor.dtype.value, dims=list(tensor.shape.numpy()))
        if tensor.doc_string:
            header.doc_string = tensor.doc_string
        head = header.SerializeToString()
        entries.append((name, head, _length_delimited(9, tensor.nbytes)))
    graph_length = len(graph_head) + sum(
        len(_length_delimited(5, len(head) + len(raw_prefix) + value.const_value.nbytes)) + len(head) + len(raw_prefix) + value.const_value.nbytes
        for (_, head, raw_prefix), (_, value) in zip(entries, streamed)
    )
    with open(path, "wb") as file:
        file.write(proto.SerializeToString())
        file.write(_length_delimited(7, graph_length))
        file.write(graph_head)
        for (_, head, raw_prefix), (_, value) in zip(entries, streamed):
            data = value.const_value.tobytes()
            if len(data) != value.const_value.nbytes:
                raise RuntimeError(f"tensor {value.name!r}: {len(data)} bytes, expected {value.const_value.nbytes}")
            file.write(_length_delimited(5, len(head) + len(raw_prefix) + len(data)))
            file.write(head)
            file.write(raw_prefix)
            file.write(data)
            del data


def publish(staged: Path, target: str | os.PathLike) -> Path | None:
    """Move a staged model (and its external data) to `target`; returns the data path if any."""
    target = Path(target)
    data = staged.with_name(staged.name + ".data")
    published_data = None
    try:
        if data.exists():
            published_data = target.with_name(target.name + ".data")
            os.replace(data, published_data)
        os.replace(staged, target)
    except OSError as error:
        raise _fail(target, f"cannot write: {error.strerror or error}") from None
    finally:
        discard(staged)
    return published_data


def staged_bytes(staged: Path) -> int:
    """Bytes a staged model occupies (model file plus its external data)."""
    data = staged.with_name(staged.name + ".data")
    return staged.stat().st_size + (data.stat().st_size if data.exists() else 0)


def content_digest(path: str | os.PathLike) -> bytes:
    """SHA-256 of a model file and its `.data` file, if any: equal digests mean identical models."""
    digest = hashlib.sha256()
    path = Path(path)
    for part in (path, path.with_name(path.name + ".data")):
        if part.exists():
            with open(part, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.digest()


def discard(staged: Path) -> None:
    """Remove a staged model's hidden folder and everything in it."""
    shutil.rmtree(staged.parent, ignore_errors=True)


def check_writable(target: str | os.PathLike) -> None:
    """Refuse early an output path that cannot be written."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise _fail(target, f"cannot write: folder {str(folder)!r} does not exist")
    if target.is_dir():
        raise _fail(target, "cannot write: it is a folder")
    if not os.access(folder, os.W_OK):
        raise _fail(target, "cannot write: permission denied")
    if target.exists() and not os.access(target, os.W_OK):
        raise _fail(target, "cannot write: the existing file is read-only")


def save(model: ir.Model, path: str | os.PathLike, *, external_data: bool | None = None) -> Path | None:
    """Write `model` to `path` atomically (weights to `<path>.data` when asked or over 2 GB)."""
    check_writable(path)
    target = Path(path)
    staged = stage(model, target.parent if str(target.parent) else Path("."), target.name, external_data=external_data)
    return publish(staged, target)
