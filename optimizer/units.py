"""Numbers written for people: one formatter per quantity (bytes, FLOPs, milliseconds, ratios,
percentages, changes, errors), shared by the terminal report, Markdown, HTML, gates and messages.

A formatter takes the raw figure (None for "not measured") and never raises on odd values: a missing
figure prints as a dash, a non-number as itself.
"""

from __future__ import annotations

import math

__all__ = [
    "BYTE_UNITS", "IEC_UNITS", "DASH",
    "is_number", "is_finite",
    "format_bytes", "format_flops", "format_si", "format_significant", "format_count", "format_ms", "format_ratio",
    "format_percent", "format_error", "format_change", "format_against", "format_relative_change", "format_count_change",
]

BYTE_UNITS = ("B", "KB", "MB", "GB")
"""1024-based, as the reports print sizes."""
IEC_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")
"""1024-based with IEC names, for error messages about memory."""
DASH = "–"
"""What the HTML report prints for a figure that was not measured (the terminal and Markdown print "-")."""


def is_number(value) -> bool:
    """An int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value) -> bool:
    """A number that is neither NaN nor infinite."""
    return is_number(value) and math.isfinite(value)


def _missing(value, dash: str) -> str:
    return dash if value is None else str(value)


def format_bytes(count: float | None, units: tuple[str, ...] = BYTE_UNITS, *, tick: bool = False, dash: str = "-") -> str:
    """1536 -> '1.5 KB' (or '1.5 KiB' with IEC_UNITS); the last unit takes everything above it.
    `tick` (axis labels): no trailing zeros ('1.5 KB', '2 MB'). None -> `dash`; NaN, inf -> as themselves."""
    if not is_finite(count):
        return _missing(count, dash)
    value = float(count)
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            if tick:
                return f"{value:g} {unit}"
            return f"{value:.0f} {unit}" if unit == units[0] else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_flops(count: float) -> str:
    """12345678 -> '12.35 M' (the terminal's FLOPs)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count:.0f}"


def format_significant(value, digits: int = 3, dash: str = DASH) -> str:
    """A number with `digits` significant digits, never in exponent form ("0.0148", "1,235")."""
    if not is_number(value):
        return _missing(value, dash)
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value == 0:
        return "0"
    rounded = float(f"{value:.{digits}g}")
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:,.{decimals}f}"


def format_si(count, unit: str = "") -> str:
    """1234567 -> "1.23 M" (FLOPs, parameters), three significant digits."""
    if not is_finite(count):
        return _missing(count, DASH)
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(count) >= scale:
            return f"{format_significant(count / scale)} {prefix}{unit}"
    return f"{format_significant(count)} {unit}".rstrip()


def format_count(value) -> str:
    """1234 -> "1,234"."""
    return f"{int(value):,}" if is_finite(value) else _missing(value, DASH)


def format_ms(value, *, dash: str = DASH, general: bool = False, decimals: int | None = None) -> str:
    """Milliseconds: three significant digits ("1.23 ms"); `general` uses Python's `g` format
    (exponent form for large values), as the Markdown report does; `decimals` fixes the decimals
    ("0.039 ms"), as the terminal's latency tables do."""
    if value is None:
        return dash
    if decimals is not None:
        return f"{value:.{decimals}f} ms"
    return f"{value:.3g} ms" if general else f"{format_significant(value)} ms"


def format_ratio(value, digits: int = 2) -> str:
    """1.2345 -> "1.23x"; not a finite number -> "–"."""
    return f"{value:.{digits}f}x" if is_finite(value) else DASH


def format_percent(value, digits: int = 1) -> str:
    """0.0312 -> "3.1%"."""
    return f"{value:.{digits}%}"


def format_error(value, *, dash: str = DASH, plain_zero: bool = False) -> str:
    """An output error in exponent form ("1.23e-05"); "inf"/"nan" as words; `plain_zero`: 0 -> "0"."""
    if not is_number(value):
        return _missing(value, dash)
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return "0" if plain_zero and value == 0 else f"{value:.2e}"


def format_change(before, after, show=None) -> str:
    """Before -> after as a change: "=", "+12.5%", or from zero the amount added, written by `show`
    ("+85.0 MB" with format_bytes; by default "+1,234" or three significant digits); "" when either is missing."""
    if not (is_finite(before) and is_finite(after)):
        return ""
    if before == after:
        return "="
    if before == 0:
        if show is None:
            show = format_count if float(after).is_integer() else format_significant
        return f"+{show(after)}" if after > 0 else f"-{show(-after)}"
    return f"{(after - before) / before * 100:+.1f}%"


def format_against(value, limit, digits: int = 3) -> str:
    """A measured figure next to the limit it is held to, with as many significant digits as it takes to
    tell them apart, plus two when it took more than `digits` (a cosine of 0.999698 against 0.99999 prints
    as "0.999698", not "1")."""
    if not (is_finite(value) and is_finite(limit)):
        return format_significant(value) if is_number(value) else _missing(value, DASH)
    for places in range(digits, 16):
        if value == limit or float(f"{value:.{places}g}") != float(f"{limit:.{places}g}"):
            return f"{value:.{places + 2 if places > digits else places}g}"
    return repr(value)


def format_relative_change(before, after, show=None) -> str:
    """Markdown's change column: "=", "+12.5%", or the signed difference when `before` is not positive,
    written by `show` ("+85.0 MB" with format_bytes; by default the plain number)."""
    if before is None or after is None:
        return ""
    if before == after:
        return "="
    if before and isinstance(before, (int, float)) and before > 0:
        return f"{(after - before) / before:+.1%}"
    if show is None or not (is_number(before) and is_number(after)):
        return f"{after - before:+}"
    difference = after - before
    return f"+{show(difference)}" if difference > 0 else f"-{show(-difference)}"


def format_count_change(before: int, after: int) -> str:
    """12 -> 9: "-3"; equal: "="."""
    return "=" if before == after else f"{after - before:+d}"
