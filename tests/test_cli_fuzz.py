"""Fuzzing the whole command line on protobuf-level mutations of the sample models (issue 19).

Each example takes a sample model, changes one field somewhere in its protobuf (a scalar set to a
hostile value, a repeated item removed or duplicated, a string replaced), writes it and runs one
command on it. Whatever the mutation, the command must exit 0, 1 or 2 (never 3, an internal error),
print no traceback, write nothing when it fails, and leave the input unchanged.

    FUZZ_CLI_EXAMPLES=1000 FUZZ_SEED=random .venv/bin/python -m pytest tests/test_cli_fuzz.py -x
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from click.testing import CliRunner
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, event, given, reject, seed, settings
from hypothesis import strategies as st

from optimizer.cli import cli

SAMPLES = sorted((Path(__file__).parent.parent / "sample_models").glob("*.onnx"))
EXAMPLES = int(os.environ.get("FUZZ_CLI_EXAMPLES", "100"))
SEED = os.environ.get("FUZZ_SEED", "")

COMMANDS = (["inspect"], ["run", "--no-tune"], ["check", "--max-size", "1GB"], ["run", "--no-tune", "--no-verify", "--level", "O3"])

_INTS = (0, 1, -1, 2, 7, 255, 2**31 - 1, -(2**31), 10**9, 2**62)
_STRINGS = ("", "x", "../outside.bin", "/etc/passwd", "\x1b[2J\x1b]0;t\x07", "\u202e\u2028\r", "a" * 300, "Identity", "location")


def _scalar_fields(message, found: list) -> None:
    """(message, field) for every scalar field of `message` and the messages inside it."""
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not None:
            if field.is_repeated:
                for item in getattr(message, field.name):
                    _scalar_fields(item, found)
            elif message.HasField(field.name):
                _scalar_fields(getattr(message, field.name), found)
        else:
            found.append((message, field))


def _repeated_items(message, found: list) -> None:
    """(container, index) for every item of every repeated message field."""
    for field in message.DESCRIPTOR.fields:
        if field.message_type is None:
            continue
        if field.is_repeated:
            container = getattr(message, field.name)
            for index, item in enumerate(container):
                found.append((container, index))
                _repeated_items(item, found)
        elif message.HasField(field.name):
            _repeated_items(getattr(message, field.name), found)


def _new_value(field, data):
    if field.type == FieldDescriptor.TYPE_STRING:
        return data.draw(st.sampled_from(_STRINGS))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return data.draw(st.sampled_from((b"", b"\0" * 3, b"\xff" * 64)))
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return data.draw(st.sampled_from((0.0, -1.0, 1e30, float("nan"), float("inf"))))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return data.draw(st.booleans())
    if field.type == FieldDescriptor.TYPE_ENUM:
        return data.draw(st.sampled_from([value.number for value in field.enum_type.values]))
    value = data.draw(st.sampled_from(_INTS))
    unsigned = field.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64)
    return abs(value) if unsigned else value


def mutate(model: onnx.ModelProto, data) -> str:
    """Apply one drawn mutation to `model` in place; a short description of it."""
    kind = data.draw(st.sampled_from(("set", "set", "remove", "duplicate")))
    if kind == "set":
        fields: list = []
        _scalar_fields(model, fields)
        message, field = fields[data.draw(st.integers(0, len(fields) - 1))]
        value = _new_value(field, data)
        try:
            if field.is_repeated:
                container = getattr(message, field.name)
                if len(container) and data.draw(st.booleans()):
                    container[data.draw(st.integers(0, len(container) - 1))] = value
                else:
                    container.append(value)
            else:
                setattr(message, field.name, value)
        except (ValueError, TypeError, OverflowError):
            reject()
        return f"{message.DESCRIPTOR.name}.{field.name} = {value!r}"
    items: list = []
    _repeated_items(model, items)
    if not items:
        reject()
    container, index = items[data.draw(st.integers(0, len(items) - 1))]
    if kind == "remove":
        del container[index]
        return f"removed item {index} of a repeated {type(container).__name__}"
    container.add().CopyFrom(container[index])
    return f"duplicated item {index}"


_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=SEED == "",
    database=None if SEED == "" else settings.default.database,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
    print_blob=True,
)


def _seeded(test):
    return seed(int(SEED))(test) if SEED not in ("", "random") else test


@_seeded
@_settings
@given(data=st.data())
def test_every_command_survives_mutated_models(data, tmp_path_factory):
    sample = data.draw(st.sampled_from(SAMPLES), label="sample")
    model = onnx.load(str(sample))
    change = mutate(model, data)
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "m.onnx"
    try:
        path.write_bytes(model.SerializeToString())
    except Exception:  # noqa: BLE001 - protobuf cannot serialize some mutations (e.g. a bad enum in a closed field)
        reject()
    before = path.read_bytes()
    command = data.draw(st.sampled_from(COMMANDS), label="command")
    out = folder / "out.onnx"
    args = [command[0], str(path), *(["-o", str(out), "-q"] if command[0] == "run" else []), *command[1:]]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    event(f"{command[0]} exit {result.exit_code}")
    note = f"{sample.name}: {change}; {' '.join(command)} -> {result.exit_code}: {result.output[-400:]}"
    assert result.exit_code in (0, 1, 2), note
    assert "Traceback" not in result.output, note
    if result.exit_code != 0:
        assert not out.exists(), note
        assert len(result.stderr.strip().splitlines()) >= 1 and result.stderr.strip().splitlines()[-1].startswith("error: "), note
    assert path.read_bytes() == before, note
    assert sorted(p.name for p in folder.iterdir()) in (["m.onnx"], ["m.onnx", "out.onnx"]), note
