"""Record: a typed view of one JSON object that gives the object back exactly.

A report section is a dataclass whose fields are the keys renderers read. `from_dict` fills them
(a field typed as a section, a list of sections or an optional one is read as that section), remembers
the key order and keeps unknown keys aside, so
`to_dict()` returns the same keys, order and values the section was made from: the JSON of a report
never depends on which keys a renderer happens to know.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
import typing

__all__ = ["Record", "plain"]


@dataclasses.dataclass
class Record:
    """Base of every typed report section (see the module docstring)."""

    json_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False, compare=False, kw_only=True)
    json_extra: dict = dataclasses.field(default_factory=dict, repr=False, compare=False, kw_only=True)

    def __post_init__(self) -> None:
        # A section given as null, [] or another non-object reads as an empty one and writes back as it was.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.default_factory is not dataclasses.MISSING and not isinstance(value, Record):
                default = field.default_factory()
                if isinstance(default, Record):
                    self.json_extra[field.name] = value
                    setattr(self, field.name, default)

    def __bool__(self) -> bool:
        """False for an empty section (`{}`), as for the mapping it stands for."""
        return bool(self.json_keys)

    @classmethod
    def field_names(cls) -> set[str]:
        """The keys this section reads as typed fields."""
        return {f.name for f in dataclasses.fields(cls) if f.name not in ("json_keys", "json_extra")}

    @classmethod
    def from_dict(cls, data: Mapping):
        """The section of a JSON-ready mapping; missing keys take the field's default."""
        names = cls.field_names()
        parsers = cls._section_parsers()
        known = {key: _parse(parsers.get(key), value) for key, value in data.items() if key in names}
        extra = {key: value for key, value in data.items() if key not in names}
        return cls(**known, json_keys=tuple(data), json_extra=extra)

    @classmethod
    def _section_parsers(cls) -> dict[str, Callable]:
        """`from_dict` of the section type of each field typed as one (`ModelFacts`, `list[PassRow]`, `LossySection | None`)."""
        cached = cls.__dict__.get("_parsers")
        if cached is None:
            hints = typing.get_type_hints(cls)
            cached = {name: section.from_dict for name in cls.field_names() if (section := _section_type(hints.get(name)))}
            cls._parsers = cached
        return cached

    def to_dict(self) -> dict:
        """The mapping this section was made from: same keys, same order, same values."""
        return {key: plain(self.json_extra[key] if key in self.json_extra else getattr(self, key)) for key in self.json_keys}


def _section_type(hint) -> type[Record] | None:
    """The Record subclass a type hint names, alone or inside list[...] or ... | None."""
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint
    return next((found for arg in typing.get_args(hint) if (found := _section_type(arg))), None)


def _parse(parser: Callable | None, value):
    if parser is None or value is None:
        return value
    if isinstance(value, list):
        return [parser(item) if isinstance(item, Mapping) else item for item in value]
    return parser(value) if isinstance(value, Mapping) else value


def plain(value):
    """A section (or a list of them) as JSON-ready data; anything else as it is."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value
