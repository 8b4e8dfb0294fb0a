"""HTML escaping for the report page: markup built by the renderer passes through, every other value
(paths, op and node names, error messages from untrusted models) is escaped on its way in."""

from __future__ import annotations

import html

__all__ = ["Markup", "escape"]


class Markup(str):
    """Markup built by the renderer (already escaped)."""


def escape(value) -> str:
    """`value` as HTML text (None as ""); Markup as it is."""
    if isinstance(value, Markup):
        return value
    return html.escape("" if value is None else str(value), quote=True)
