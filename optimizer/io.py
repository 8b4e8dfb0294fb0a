"""Loading, validating and saving models: the one module of the product that touches protobuf.

`load()` refuses anything that is not a well-formed ONNX model this installation can run, with a
one-line `ModelInputError`, before any tensor data is read: external data must stay inside the
model's folder, declared tensor sizes must match the bytes present, and nothing is ever executed.
`save()` writes atomically (a temporary folder beside the target, then renames), so an interrupted
or failed run never leaves a half-written file.

Weights in external data stay on disk: a loaded model's external tensors map only their own bytes,
each time they are read, and keep nothing mapped (`MappedExternalTensor`), so a pass that looks at
every weight does not leave the whole model resident while onnxruntime runs it; writing copies them
file to file. Peak memory on a 2.1 GiB model: bench/results/2026-11-22-large-model.md.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import mmap
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from optimizer.errors import UserError, mention
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
    "StagingArea",
    "discard",
    "staged_bytes",
    "check_writable",
    "convert_opset",
    "model_file_bytes",
    "weight_bytes_by_dtype",
    "supported_versions",
    "inferred_value_bytes",
    "MappedExternalTensor",
    "EXTERNAL_DATA_THRESHOLD",
    "scratch_folder",
    "sweep_scratch_folders",
]

logger = logging.getLogger(__name__)

# Protobuf cannot serialize a message over 2 GiB; stay clear of it.
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3 - 64 * 1024**2
_PROTOBUF_LIMIT = 2**31 - 1


class ModelInputError(UserError):
    """A problem with what the user gave us; the message is one line meant for them."""


def _fail(path: Path | str, message: str, *, option: str | None = None) -> ModelInputError:
    return ModelInputError(f"{path}: {message}", option=option)


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
    name = tensor.name or "<unnamed>"
    keys = [entry.key for entry in tensor.external_data]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise _fail(where, f"tensor '{name}' declares external data key '{twice[0]}' twice; refused")
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if "\x00" in location:
        raise _fail(where, f"tensor '{name}' has an external data location with a NUL byte ({location!r}); refused")
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
    if os.stat(real_file).st_nlink > 1:  # onnx-ir refuses to read such a file (a hard link may smuggle another file in)
        raise _fail(where, f"external data file {location!r} for tensor '{name}' has other hard links; refused (use a copy of it)")
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
    if tensor.data_type == onnx.TensorProto.STRING and not tensor.HasField("segment"):
        count = int(np.prod(tensor.dims, dtype=np.float64)) if tensor.dims else 1
        if len(tensor.string_data) != count:
            raise _fail(where, f"tensor '{tensor.name}' declares shape {list(tensor.dims)} ({count} strings) but holds {len(tensor.string_data)} values")
        return
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
    except Exception as error:  # noqa: BLE001 - protobuf raises several types for garbage
        raise _fail(where, _parse_failure(error)) from None
    del data
    if proto.ir_version <= 0 or not proto.HasField("graph") or (not proto.graph.node and not proto.graph.output):
        raise _fail(where, "not an ONNX model (no IR version or no graph)")
    _check_versions(proto, where)
    for tensor in _iter_tensors(proto.graph):
        _check_tensor_type(tensor, where)
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _check_external_location(tensor, where.parent, where)
        else:
            _check_embedded_size(tensor, where)
    _check_sparse_initializers(proto.graph, where)
    _check_declared_types(proto.graph, where)
    _check_attribute_references(proto.graph, where)
    _check_utf8(proto, where)
    try:
        # The checker needs structure, not weights (their sizes were checked above): give it a
        # skeleton, which saves serializing every weight once more. External locations were
        # checked above as well, against the model's folder.
        onnx.checker.check_model(_skeleton(proto))
    except UnicodeDecodeError as error:
        raise _fail(where, f"a name or string in the model is not valid UTF-8 ({error.reason} at byte {error.start}: {error.object[max(0, error.start - 16):error.end]!r}); ONNX strings must be UTF-8") from None
    except Exception as error:  # noqa: BLE001 - checker raises ValidationError and C++ errors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        # The checker is stricter than the runtime (e.g. outputs declared without a shape, which
        # real exports have): what onnxruntime loads is a model users run, so accept it.
        _accept_if_runtime_loads(where, f"invalid ONNX model: {first}", f"onnx.checker objects ({first})")
    _check_type_inference(proto, where)
    return proto


def _parse_failure(error: Exception) -> str:
    """Why protobuf could not parse a file, in words: too deeply nested, or not a protobuf at all."""
    text = str(error)
    if "MaxDepth" in text or "recursion" in text.lower() or "depth" in text.lower():
        return "its messages are nested too deeply for protobuf to parse (e.g. hundreds of nested If/Loop subgraphs); refused"
    return "not an ONNX model (the file is not a valid protobuf; truncated or another format?)"


def _accept_if_runtime_loads(where: Path, refusal: str, objection: str) -> None:
    """The one load policy for a model a static check objects to: refused (with `refusal`) unless
    onnxruntime loads it, in which case every command accepts it (with a warning naming `objection`)."""
    loads, reason = _runtime_load_error(where)
    if not loads:
        raise _fail(where, f"{refusal} (onnxruntime refuses it too: {reason})" if reason else refusal)
    logger.warning("%s: %s, but onnxruntime loads the model; continuing", where, objection)


def _copy_fields(source, target, skip: str | tuple[str, ...]) -> None:
    """Copy every set field of a protobuf message except those named in `skip` (no weights are touched)."""
    skip = (skip,) if isinstance(skip, str) else skip
    for field, value in source.ListFields():
        if field.name in skip:
            continue
        if isinstance(value, (list, tuple)) or hasattr(value, "extend"):  # repeated field
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


_SKELETON_KEEPS_BYTES = 1024


def _skeleton(proto: onnx.ModelProto, *, keep_dims: bool = False) -> onnx.ModelProto:
    """The model with every main-graph initializer, and every tensor in a main-graph node's attributes
    (Constant values, embedded or external), replaced by an empty tensor of the same name and type.

    With `keep_dims` (for type inference) the tensors keep their dims, and small embedded ones their
    values (shape inference reads e.g. a Reshape's target shape).
    """

    def empty(tensor: onnx.TensorProto, into: onnx.TensorProto) -> None:
        if keep_dims and tensor.data_location != onnx.TensorProto.EXTERNAL and tensor.ByteSize() <= _SKELETON_KEEPS_BYTES:
            into.CopyFrom(tensor)
            return
        into.name, into.data_type = tensor.name, tensor.data_type
        if keep_dims:
            into.dims.extend(tensor.dims)
        else:
            into.dims.append(0)

    skeleton = onnx.ModelProto()
    _copy_fields(proto, skeleton, skip="graph")
    _copy_fields(proto.graph, skeleton.graph, skip=("initializer", "node"))
    for tensor in proto.graph.initializer:
        empty(tensor, skeleton.graph.initializer.add())
    for node in proto.graph.node:
        copy = skeleton.graph.node.add()
        if not any(attr.HasField("t") or attr.tensors for attr in node.attribute):
            copy.CopyFrom(node)  # no weights in it: one copy in C++, not field by field
            continue
        _copy_fields(node, copy, skip="attribute")
        for attr in node.attribute:
            target = copy.attribute.add()
            _copy_fields(attr, target, skip=("t", "tensors"))
            if attr.HasField("t"):
                empty(attr.t, target.t)
            for tensor in attr.tensors:
                empty(tensor, target.tensors.add())
    return skeleton


def _runtime_load_error(path: Path) -> tuple[bool, str]:
    """(whether onnxruntime loads the model, the first line of its refusal without the file path)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return True, ""
    except Exception as error:  # noqa: BLE001 - any refusal
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        first = (lines[0] if lines else type(error).__name__).replace(str(path), "MODEL")
        return False, first.split(" failed:", 1)[-1][:300]


_TENSOR_DATA_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")


_ELEMENT_TYPES = frozenset(onnx.TensorProto.DataType.values()) - {onnx.TensorProto.UNDEFINED}


def _type_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type) if elem_type in onnx.TensorProto.DataType.values() else str(elem_type)


def _check_tensor_type(tensor: onnx.TensorProto, where: Path) -> None:
    """A tensor's element type must be a defined one."""
    if tensor.data_type not in _ELEMENT_TYPES:
        raise _fail(where, f"tensor '{tensor.name or '<unnamed>'}' has element type {_type_name(tensor.data_type)}, not an ONNX element type")


def _dense_bytes(dims, data_type: int) -> int:
    count = int(np.prod(list(dims), dtype=np.float64)) if len(dims) else 1
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    except Exception:  # noqa: BLE001 - strings and types numpy lacks: count one byte
        itemsize = 1
    return count * itemsize


_DENSE_SPARSE_LIMIT = _PROTOBUF_LIMIT


def _check_sparse_initializers(graph: onnx.GraphProto, where: Path) -> None:
    """Sparse initializers: onnxruntime makes them dense at load, so their dense size is what counts."""
    for sparse in graph.sparse_initializer:
        name = sparse.values.name or "<unnamed>"
        if any(d < 0 for d in sparse.dims):
            raise _fail(where, f"sparse initializer '{name}' has a negative dimension {list(sparse.dims)}")
        dense = _dense_bytes(sparse.dims, sparse.values.data_type)
        if dense > _DENSE_SPARSE_LIMIT:
            raise _fail(where, f"sparse initializer '{name}' has dense shape {list(sparse.dims)} ({dense / 2**30:.3g} GiB once made dense, as onnxruntime does), over the {_DENSE_SPARSE_LIMIT / 2**30:.0f} GiB limit; refused")


def _declared_values(graph: onnx.GraphProto):
    """Every ValueInfo a graph (and its subgraphs) declares: inputs, outputs, value_info."""
    yield from graph.input
    yield from graph.output
    yield from graph.value_info
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _declared_values(attr.g)
            for sub in attr.graphs:
                yield from _declared_values(sub)


def _check_declared_types(graph: onnx.GraphProto, where: Path) -> None:
    """Declared tensor types must name an element type; an initializer must have its graph input's type."""
    for info in _declared_values(graph):
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type not in _ELEMENT_TYPES:
            raise _fail(where, f"value '{info.name}' declares element type {_type_name(info.type.tensor_type.elem_type)}, not an ONNX element type")
    initializers = {tensor.name: tensor.data_type for tensor in graph.initializer}
    for info in graph.input:
        declared = info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else None
        if info.name in initializers and declared and declared != initializers[info.name]:
            have, want = _type_name(initializers[info.name]), _type_name(declared)
            raise _fail(where, f"initializer '{info.name}' has element type {have} but its graph input declares {want}")


def _check_utf8(proto: onnx.ModelProto, where: Path) -> None:
    """Every name and string field must be UTF-8 (protobuf hands back bytes for one that is not)."""
    texts = [proto.producer_name, proto.producer_version, proto.domain, proto.doc_string]
    texts += [entry.key for entry in proto.metadata_props] + [entry.value for entry in proto.metadata_props] + [o.domain for o in proto.opset_import]
    _refuse_bytes(texts, "the model's metadata", where)
    _check_graph_utf8(proto.graph, where)
    for function in proto.functions:
        _refuse_bytes([function.name, function.domain, *function.input, *function.output], f"function {function.name!r}", where)
        for node in function.node:
            _check_node_utf8(node, where)


def _check_graph_utf8(graph: onnx.GraphProto, where: Path) -> None:
    _refuse_bytes([graph.name, graph.doc_string], "a graph's name or doc string", where)
    _refuse_bytes([info.name for info in (*graph.input, *graph.output, *graph.value_info)], "a value name", where)
    _refuse_bytes([tensor.name for tensor in graph.initializer], "an initializer name", where)
    for node in graph.node:
        _check_node_utf8(node, where)


def _check_node_utf8(node: onnx.NodeProto, where: Path) -> None:
    _refuse_bytes([node.name, node.op_type, node.domain, node.doc_string, *node.input, *node.output], "a node's name, op type or inputs", where)
    for attr in node.attribute:
        _refuse_bytes([attr.name, attr.ref_attr_name, attr.doc_string], "an attribute name", where)
        if attr.HasField("g"):
            _check_graph_utf8(attr.g, where)
        for sub in attr.graphs:
            _check_graph_utf8(sub, where)


def _refuse_bytes(texts, what: str, where: Path) -> None:
    for text in texts:
        if isinstance(text, bytes):
            raise _fail(where, f"{what} is not valid UTF-8 ({text[:40]!r}); ONNX strings must be UTF-8")


def _check_attribute_references(graph: onnx.GraphProto, where: Path) -> None:
    """An attribute that refers to a function's attribute (`ref_attr_name`) only means something in a function body."""
    for node in graph.node:
        for attr in node.attribute:
            if attr.ref_attr_name:
                raise _fail(where, f"node '{node.name or node.op_type}' attribute '{attr.name}' refers to a function attribute ({attr.ref_attr_name!r}) outside any function")
            if attr.HasField("g"):
                _check_attribute_references(attr.g, where)
            for sub in attr.graphs:
                _check_attribute_references(sub, where)


_CONTRADICTIONS = ("differs from existing", "existing shape differ")
"""What onnx's type inference says when a declared type (value_info, output, input) contradicts the inferred one."""


def _check_type_inference(proto: onnx.ModelProto, where: Path) -> None:
    """Declared types must agree with what onnx's type inference derives (a value_info contradicting its
    producer); run on a copy without the weights' bytes. A contradiction onnxruntime tolerates is accepted;
    other inference failures (ops inference cannot follow) are left to the checker and the runtime."""
    try:
        onnx.shape_inference.infer_shapes(_skeleton(proto, keep_dims=True), check_type=True, strict_mode=True)
    except Exception as error:  # noqa: BLE001 - inference raises InferenceError and C++ errors
        if not any(words in str(error) for words in _CONTRADICTIONS):
            return
        lines = [line.strip() for line in str(error).replace("[ShapeInferenceError] Inference error(s): ", "").splitlines() if line.strip()]
        first = lines[0] if lines else type(error).__name__
        _accept_if_runtime_loads(where, f"a declared type contradicts the graph: {first}", f"type inference objects ({first})")


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


class MappedExternalTensor(ir.ExternalTensor):
    """An external tensor that maps only its own bytes, anew at each read, and keeps no mapping.

    onnx-ir's `ExternalTensor` maps the whole data file at the first read and keeps the mapping (and
    every page read through it) for the tensor's lifetime: after a pass has looked at each weight
    once (zero-channel pruning, deduplication), a 2 GB model stays resident in this process while
    onnxruntime holds its own copy to verify it. Here `numpy()` returns a read-only array over a
    fresh mapping of the tensor's range, unmapped when the caller drops the array; `tobytes()` reads
    the range. Everything else (serialization as external data, `tofile`'s file-to-file copy) is
    onnx-ir's.
    """

    __slots__ = ()

    def _range(self) -> tuple[int, int]:
        self._check_validity()
        self._check_path_containment()
        offset = self.offset or 0
        return offset, self.length if self.length is not None else self.nbytes

    def numpy(self) -> np.ndarray:
        if self.dtype.is_string() or self.dtype.bitwidth < 8 or self.size == 0:
            array = ir.ExternalTensor.numpy(self).copy()  # packed sub-byte types are unpacked into a copy anyway
            self.release()
            return array
        offset, length = self._range()
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        with open(self.path, "rb") as file:
            mapped = mmap.mmap(file.fileno(), offset + length - start, access=mmap.ACCESS_READ, offset=start)
        dtype = np.dtype(self.dtype.numpy()).newbyteorder("<")
        return np.frombuffer(mapped, dtype=dtype, count=self.size, offset=offset - start).reshape(self.shape.numpy())

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self.numpy()
        return array.astype(dtype) if dtype is not None else (array.copy() if copy else array)

    def tobytes(self) -> bytes:
        offset, length = self._range()
        with open(self.path, "rb") as file:
            file.seek(offset)
            data = file.read(length)
        if len(data) != length:
            raise ValueError(f"external data of tensor {self.name!r} is short: {len(data)} bytes of {length}")
        return data


def _all_tensors(graph: ir.Graph):
    """Every tensor of a graph and its subgraphs: initializers and node attributes."""
    for value in graph.initializers.values():
        if value.const_value is not None:
            yield value.const_value
    for node in ir.traversal.RecursiveGraphIterator(graph):
        for attr in node.attributes.values():
            if attr.is_ref():
                continue
            if attr.type == ir.AttributeType.TENSOR:
                yield attr.value
            elif attr.type == ir.AttributeType.TENSORS:
                yield from attr.value
            elif attr.type == ir.AttributeType.GRAPH:
                yield from (v.const_value for v in attr.value.initializers.values() if v.const_value is not None)
            elif attr.type == ir.AttributeType.GRAPHS:
                for sub in attr.value:
                    yield from (v.const_value for v in sub.initializers.values() if v.const_value is not None)


def _map_lazily(model: ir.Model, base_dir: str) -> ir.Model:
    """Point external tensors at `base_dir` and make them `MappedExternalTensor`s (nothing is read)."""
    ir.external_data.set_base_dir(model.graph, base_dir)
    for tensor in _all_tensors(model.graph):
        if type(tensor) is ir.ExternalTensor:
            tensor.release()
            tensor.__class__ = MappedExternalTensor  # same slots: only the read methods change
    return model


def load(path: str | os.PathLike, *, validate: bool = True) -> ir.Model:
    """Validate and load a model; tensors in external data stay on disk, read only while used.

    `validate=False` is for re-reading a file this process already validated.
    """
    proto = load_proto(path) if validate else onnx.load_model(str(path), load_external_data=False)
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as error:  # noqa: BLE001 - onnx-ir raises SerdeError around the real cause
        raise _fail(path, f"the model's graph cannot be read: {_innermost(error)}") from None
    return _map_lazily(model, os.path.dirname(os.path.abspath(path)))


def _innermost(error: BaseException) -> str:
    """The first line of the innermost cause of a chained exception."""
    while error.__cause__ is not None or (error.__context__ is not None and not error.__suppress_context__):
        error = error.__cause__ or error.__context__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__


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
        _map_lazily(upgraded, base_dir)
    return upgraded


def inferred_value_bytes(model: ir.Model, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, list[int]]]:
    """Bytes and dims of every main-graph value whose dtype and whole shape onnx's shape inference knows
    (declared, or inferred with constants propagated: a ConstantOfShape of a constant shape counts).

    Weights over 1 KB are not read and the model is left unchanged; {} when inference fails. Constants
    are propagated only when no 1-D value is long: onnx's data propagation holds a shape entry of about
    140 bytes per element of every 1-D value an Add or Mul reads (1.4 GB for 10 million elements).
    `input_shapes` binds graph inputs to the shapes they will run with (the feeds'), for this estimate only.
    """
    from onnx_ir.passes.common import _c_api_utils

    def infer(data_prop: bool):
        return lambda proto: onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=data_prop)

    graph = model.graph
    order = list(graph.initializers.values())
    declared = [(value, value.type, value.shape) for value in order]
    bound = [value for value in graph.inputs if value.name in (input_shapes or {}) and not value.is_initializer()]
    declared += [(value, value.type, value.shape) for value in bound]
    for value in bound:
        value.shape = ir.Shape(list(input_shapes[value.name]))
    try:
        inferred = _c_api_utils.call_onnx_api(infer(False), model)
        infos = (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)
        if not any(_long_1d(info) for info in infos):
            inferred = _c_api_utils.call_onnx_api(infer(True), model)
    except Exception as error:  # noqa: BLE001 - inference is best-effort
        logger.info("shape inference failed: %s", error)
        return {}
    finally:  # the helper re-adds large initializers last and types untyped ones: undo both (determinism)
        if list(graph.initializers.values()) != order:
            for value in order:
                graph.initializers.pop(value.name, None)
            for value in order:
                graph.initializers[value.name] = value
        for value, type_, shape in declared:
            value.type, value.shape = type_, shape
    sizes: dict[str, tuple[int, list[int]]] = {}
    for info in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if not info.type.HasField("tensor_type") or not info.type.tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]
        elem_type = info.type.tensor_type.elem_type
        if None in dims or elem_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
            continue
        try:
            bits = 4 if elem_type in _FOUR_BIT_TYPES else 8 * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize
        except Exception:  # noqa: BLE001 - a type numpy does not know
            continue
        count = int(np.prod(dims, dtype=np.float64)) if dims else 1
        sizes[info.name] = ((count * bits + 7) // 8, dims)
    return sizes


_DATA_PROP_MAX_ELEMENTS = 1 << 16


def _long_1d(info: onnx.ValueInfoProto) -> bool:
    """A 1-D tensor value with more than _DATA_PROP_MAX_ELEMENTS elements (onnx's data propagation would hold one entry per element)."""
    dims = info.type.tensor_type.shape.dim if info.type.HasField("tensor_type") else ()
    return len(dims) == 1 and dims[0].HasField("dim_value") and dims[0].dim_value > _DATA_PROP_MAX_ELEMENTS


def has_external_tensors(model: ir.Model) -> bool:
    """Whether any tensor (initializer or Constant) reads its data from a file."""
    return any(isinstance(tensor, ir.ExternalTensor) for tensor in _all_tensors(model.graph))


def model_file_bytes(model: ir.Model, path: str | os.PathLike) -> int:
    """Size of a model on disk: its file plus every external data file its tensors reference."""
    total = Path(path).stat().st_size
    data_files = set()
    for tensor in _all_tensors(model.graph):  # initializers and Constant-node tensors, subgraphs included
        if isinstance(tensor, ir.ExternalTensor):
            data_files.add(os.path.realpath(os.path.join(tensor.base_dir, tensor.location)))
    return total + sum(os.path.getsize(f) for f in data_files if os.path.isfile(f))


def parameter_count(model: ir.Model) -> int:
    """Elements of every initializer, over the main graph and subgraphs."""
    return sum(int(v.const_value.size) for graph in model.graphs() for v in graph.initializers.values() if v.const_value is not None)


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
    weights = _tensor_bytes(model)
    use_external = external_data if external_data is not None else weights > EXTERNAL_DATA_THRESHOLD
    if not use_external and weights > _PROTOBUF_LIMIT:
        raise _fail(folder / name, f"the weights take {weights / 2**30:.2f} GiB, more than the 2 GiB one ONNX file can hold; write them as external data (drop {mention('no_external_data')})", option="external_data")
    try:
        staging = Path(tempfile.mkdtemp(prefix=".optimize-", dir=folder))
    except OSError as error:
        raise _fail(folder / name, f"cannot write: {error.strerror or error}") from None
    staged = staging / name
    try:
        if use_external:
            with _external_in_memory(model, initializers=False):  # ir.save moves initializers, not node attributes
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


@contextlib.contextmanager
def _external_in_memory(model: ir.Model, *, initializers: bool):
    """Within the block, external tensors in node attributes (and, with `initializers`, in initializers of
    every graph) are in-memory tensors, so that serializing embeds them instead of writing references
    to files that are not beside the new model. Restored afterwards; one tensor's bytes are read at a
    time, when serialized.
    """
    restore: list = []
    try:
        for graph in model.graphs():
            for value in graph.initializers.values() if initializers else ():
                if isinstance(value.const_value, ir.ExternalTensor):
                    restore.append((value, value.const_value))
                    value.const_value = _in_memory(value.const_value)
            for node in graph:
                for key, attr in list(node.attributes.items()):
                    if attr.is_ref() or attr.type not in (ir.AttributeType.TENSOR, ir.AttributeType.TENSORS):
                        continue
                    tensors = [attr.value] if attr.type == ir.AttributeType.TENSOR else list(attr.value)
                    if any(isinstance(t, ir.ExternalTensor) for t in tensors):
                        copies = [_in_memory(t) if isinstance(t, ir.ExternalTensor) else t for t in tensors]
                        restore.append((node, key, attr))
                        node.attributes[key] = ir.Attr(key, attr.type, copies[0] if attr.type == ir.AttributeType.TENSOR else copies, doc_string=attr.doc_string)
        yield
    finally:
        for entry in reversed(restore):
            if len(entry) == 2:
                entry[0].const_value = entry[1]
            else:
                entry[0].attributes[entry[1]] = entry[2]


def _in_memory(tensor: ir.ExternalTensor) -> ir.Tensor:
    return ir.Tensor(tensor.numpy(), dtype=tensor.dtype, name=tensor.name, doc_string=tensor.doc_string)


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
        if tensor is None or isinstance(tensor, ir.StringTensor):
            continue
        if tensor.nbytes < _STREAMED_TENSOR_BYTES and not isinstance(tensor, ir.ExternalTensor):
            continue  # external ones are streamed whatever their size: serializing would keep their references
        streamed.append((name, value))
        del graph.initializers[name]
    try:
        with _external_in_memory(model, initializers=True):  # what is left: subgraphs' and node attributes'
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


def publish(staged: Path, target: str | os.PathLike, *, companions: Mapping[Path, Path] | None = None) -> Path | None:
    """Move a staged model (and its external data) to `target`, then each staged companion file (e.g. the
    settings file, `{staged: final}`) right after it, so that they never disagree; returns the data path if any."""
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
    for companion, final in (companions or {}).items():
        os.replace(companion, final)
    return published_data


class StagingArea:
    """Staged copies of candidate outputs in one folder, under one name; `close()` discards what was not published."""

    def __init__(self, folder: Path, name: str, external_data: bool | None) -> None:
        self.folder, self.name, self.external_data = folder, name, external_data
        self._live: list[Path] = []

    def stage(self, model: ir.Model) -> Path:
        """Write `model` beside the output (`stage()`); the staged path."""
        staged = stage(model, self.folder, self.name, external_data=self.external_data)
        self._live.append(staged)
        return staged

    def discard(self, staged: Path | None) -> None:
        if staged is not None and staged in self._live:
            self._live.remove(staged)
            discard(staged)

    def publish(self, staged: Path, target: Path, *, companions: Mapping[Path, Path] | None = None) -> Path | None:
        """`publish()` a staged model; it is no longer this area's to discard."""
        self._live.remove(staged)
        return publish(staged, target, companions=companions)

    def close(self) -> None:
        for staged in self._live:
            discard(staged)
        self._live.clear()


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


_SCRATCH_PREFIX = "optimize-run-"


@contextlib.contextmanager
def scratch_folder(purpose: str = "work"):
    """A private folder for one run's temporary files, removed on exit.

    It lives under the system temporary folder as `optimize-run-<pid>-<purpose>-<random>`: a run that
    was killed (SIGKILL, a crash) cannot remove its own, so each new one first sweeps the folders
    whose process is gone (`sweep_scratch_folders`).
    """
    sweep_scratch_folders()
    folder = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-{purpose}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep_scratch_folders(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the scratch folders under `root` (default: the system temporary folder) whose process is
    no longer running; the folders removed."""
    root = Path(root if root is not None else tempfile.gettempdir())
    removed = []
    try:
        candidates = [entry for entry in root.iterdir() if entry.name.startswith(_SCRATCH_PREFIX)]
    except OSError:
        return removed
    for entry in candidates:
        pid_text = entry.name[len(_SCRATCH_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or _process_alive(int(pid_text)) or entry.is_symlink() or not entry.is_dir():
            continue
        if entry.stat().st_uid != os.getuid():
            continue  # another user's: not ours to remove
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
