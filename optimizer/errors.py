"""The one base class of everything the user can fix: bad models, inputs, settings or options (exit 2).

A message that names a setting the user can change does so through `mention(option)`: the Python API
shows the option's library name (the keyword argument, e.g. `inputs`), the command line renders the
same message with its flag (`UserError.render(flags)`), so library code never spells a CLI flag.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["UserError", "mention", "LIBRARY_TERMS"]

_MENTION = re.compile("\x1f([a-z_]+)\x1f")

LIBRARY_TERMS = {
    "no_verify": "verify=False",
    "no_external_data": "external_data=False",
    "no_verify_command": "optimize(..., verify=False)",
    "config_output": "output",
}
"""How the Python API words an option mention that is not simply a keyword argument's name."""


def mention(option: str) -> str:
    """A mention of the user-settable `option` inside an error message (rendered by `UserError`)."""
    return f"\x1f{option}\x1f"


class UserError(Exception):
    """Bad input: the command line shows its message as one line and exits 2, never a traceback.

    `option` names the setting at fault in library terms (machine-readable, e.g. "inputs"), or None.
    """

    def __init__(self, message: str = "", *, option: str | None = None) -> None:
        super().__init__(message)
        self.template = message
        self.option = option

    def render(self, terms: Mapping[str, str] | None = None) -> str:
        """The message with each mentioned option worded by `terms` (else by its library term)."""
        names = {**LIBRARY_TERMS, **(terms or {})}
        return _MENTION.sub(lambda match: names.get(match.group(1), match.group(1)), self.template)

    def __str__(self) -> str:
        return self.render()
