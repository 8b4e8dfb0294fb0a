"""Making text from a model or from onnxruntime safe to show: control characters visibly escaped.

Names, doc strings and onnxruntime's error messages come from the model file, which the attacker
writes. Written raw to a terminal they can clear it (`ESC [2J`), retitle the window (OSC 0), plant
hyperlinks (OSC 8), reorder what the reader sees (bidi overrides U+202E, U+2066), hide text (zero-width
spaces) or split one error line into two (CR, NEL, U+2028). `sanitize_text()` replaces every such
character by a visible escape (`\\x1b`, `\\u202e`) and the backslash itself by `\\\\` only where it could
make an escape ambiguous; `sanitize_markdown()` also keeps GitHub from pinging (`@name`), linking
(`#123`) or auto-linking bare URLs. JSON is not sanitized: it is exact, and its encoder escapes.

`SanitizingConsole` is a rich `Console` that sanitizes every string it is asked to print, so a renderer
handed one cannot write raw control characters whatever it prints; `SanitizingFormatter` does the
same for log records written to stderr.
"""

from __future__ import annotations

import logging
import re
import unicodedata

__all__ = ["sanitize_text", "sanitize_line", "sanitize_markdown", "SanitizingConsole", "SanitizingFormatter", "is_unsafe"]

_ALLOWED_WHITESPACE = frozenset("\n\t")
_INVISIBLE_FORMAT = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e")


def is_unsafe(char: str) -> bool:
    """Whether showing `char` raw could alter the terminal or hide, reorder or split text."""
    if char in _ALLOWED_WHITESPACE:
        return False
    category = unicodedata.category(char)
    # Cc: C0/C1 controls (ESC, NUL, CR, NEL); Cf: format (bidi overrides, zero-width);
    # Zl/Zp: line and paragraph separators; Cs/Co/Cn: surrogates, private use, unassigned.
    return category in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") or char in _INVISIBLE_FORMAT


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def sanitize_text(text: object) -> str:
    """`text` with every unsafe character shown as its escape; newlines and tabs are kept."""
    text = str(text)
    if not any(is_unsafe(char) for char in text):
        return text
    return "".join(_escape(char) if is_unsafe(char) else char for char in text)


def sanitize_line(text: object) -> str:
    """`sanitize_text` for one line: newlines and tabs are escaped too (an error message stays one line)."""
    return sanitize_text(text).replace("\n", "\\n").replace("\t", "\\t")


_MENTION = re.compile(r"(?<![\w`])@(?=[A-Za-z0-9])")
_REFERENCE = re.compile(r"(?<![\w&`])#(?=\d)")
_URL = re.compile(r"\b(https?|ftp|file|www)(:|\.)", re.IGNORECASE)


def sanitize_markdown(text: object) -> str:
    """`sanitize_text` for Markdown that GitHub renders: no `@mention` pings, `#123` links or bare-URL
    auto-links (a zero-width joiner would be invisible: the breaking character is escaped instead)."""
    text = sanitize_text(text)
    text = _MENTION.sub("&#64;", text)
    text = _REFERENCE.sub("&#35;", text)
    return _URL.sub(lambda match: f"{match.group(1)}&#{ord(match.group(2))};", text)


class SanitizingFormatter(logging.Formatter):
    """A logging formatter whose records (messages, tracebacks) have their control characters escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return sanitize_text(super().format(record))


def _console_class():
    from rich.console import Console
    from rich.segment import Segment

    class _SanitizingConsole(Console):
        """A rich Console that escapes unsafe characters in every text segment it writes.

        Rich's own control segments (cursor moves of a status line) and the styles it renders around
        text are kept; only the text itself, wherever it came from (strings, markup, tables), is sanitized.
        """

        def print(self, *objects, **kwargs):  # noqa: A003 - rich's name
            super().print(*(_sanitized(item) for item in objects), **kwargs)

        def _render_buffer(self, buffer):
            return super()._render_buffer(
                segment if segment.control else Segment(sanitize_text(segment.text), segment.style, segment.control) for segment in buffer
            )

    return _SanitizingConsole


def _sanitized(item):
    """A printable with its text sanitized before rich splits it into lines: strings, Text, Table cells."""
    from rich.table import Table
    from rich.text import Text

    if isinstance(item, str):
        return sanitize_text(item)
    if isinstance(item, Text) and any(is_unsafe(char) for char in item.plain):
        return Text(sanitize_text(item.plain), style=item.style, justify=item.justify, overflow=item.overflow, no_wrap=item.no_wrap)
    if isinstance(item, Table):
        for column in item.columns:
            column._cells = [_sanitized(cell) for cell in column._cells]
            column.header = _sanitized(column.header)
        item.title = _sanitized(item.title) if item.title is not None else None
        item.caption = _sanitized(item.caption) if item.caption is not None else None
    return item


def SanitizingConsole(**kwargs):  # noqa: N802 - a class factory, used like a class
    """A rich `Console(**kwargs)` that sanitizes what it writes (rich is imported only when called)."""
    return _console_class()(**kwargs)
