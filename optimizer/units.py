"""Sizes and counts written for people: one formatter per quantity, shared by every report and message."""

from __future__ import annotations

__all__ = ["format_bytes", "format_flops", "BYTE_UNITS", "IEC_UNITS"]

BYTE_UNITS = ("B", "KB", "MB", "GB")
"""1024-based, as the reports print sizes."""
IEC_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")
"""1024-based with IEC names, for error messages about memory."""


def format_bytes(count: float | None, units: tuple[str, ...] = BYTE_UNITS) -> str:
    """1536 -> '1.5 KB' (or '1.5 KiB' with IEC_UNITS); the last unit takes everything above it."""
    if count is None:
        return "-"
    value = float(count)
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            return f"{value:.0f} {unit}" if unit == units[0] else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_flops(count: float) -> str:
    """12345678 -> '12.35 M'."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count:.0f}"
