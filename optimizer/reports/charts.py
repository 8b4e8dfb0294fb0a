"""Charts of the HTML report, drawn as inline SVG: horizontal bars (sizes, op counts, time by op type)
and latency bars with min-p90 whiskers. Pure functions of the figures; labels are escaped."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from optimizer.reports.markup import escape
from optimizer.units import DASH, format_bytes, format_count, format_ms, format_significant, is_finite

__all__ = ["WIDTH", "TOP_OPS", "bar_chart", "latency_chart", "op_rows", "size_rows"]

WIDTH = 1040  # every chart's width in CSS pixels (scaled down when printed or narrower)
TOP_OPS = 16  # op types per size chart


def _nice(value: float, binary: bool = False) -> tuple[float, int]:
    """An axis maximum at or above `value` (1, 2, 2.5 or 5 times a power of ten, of KB/MB/GB when
    `binary`) and its tick count."""
    if not is_finite(value) or value <= 0:
        return 1.0, 5
    unit = 1024 ** min(3, int(math.log(value, 1024))) if binary and value >= 1024 else 1
    value /= unit
    base = 10 ** math.floor(math.log10(value)) * unit
    for step in (1, 2, 2.5, 5, 10):
        if value * unit <= step * base * (1 + 1e-9):
            return step * base, 4 if step == 2 else 5
    return 10 * base, 5


def _label(text, x: float, y: float, max_chars: int, css: str = "label") -> str:
    full = str(text)
    short = full if len(full) <= max_chars else full[: max_chars - 1] + "…"
    return f'<text class="{css}" x="{x:.1f}" y="{y:.1f}" text-anchor="end"><title>{escape(full)}</title>{escape(short)}</text>'


def _frame(chart_id: str, caption: str, height: float, parts: list[str]) -> str:
    return (f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
            f'viewBox="0 0 {WIDTH} {height:.0f}" role="img" aria-label="{escape(caption)}"><title>{escape(caption)}</title>{"".join(parts)}</svg>')


def _tick(value: float) -> str:
    return f"{float(f'{value:.6g}'):g}"


def _axis(x0: float, x1: float, top: float, bottom: float, vmax: float, ticks: int, fmt, unit: str = "") -> list[str]:
    """Gridlines and tick labels from 0 to vmax; `unit` follows the last label."""
    parts = []
    for i in range(ticks + 1):
        x = x0 + (x1 - x0) * i / ticks
        text = fmt(vmax * i / ticks) + (f" {unit}" if unit and i == ticks else "")
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 14:.1f}" text-anchor="middle">{escape(text)}</text>')
    return parts


def bar_chart(chart_id: str, caption: str, rows: Sequence[tuple[str, Sequence, str]], series: Sequence[tuple[str, str]], kind: str = "count") -> str:
    """Horizontal bars, one group per row: rows are (label, one value per series, the text at the right).
    `kind` ("bytes", "ms" or "count") picks the axis' ticks."""
    if not rows:
        return ""
    count = len(series)
    bar_h, gap = 13, 2
    row_h = count * bar_h + (count - 1) * gap + 9
    max_chars = min(40, max(len(str(r[0])) for r in rows))
    x0, x1 = max_chars * 7 + 16, WIDTH - 240
    top = 26 if count > 1 else 6
    bottom = top + row_h * len(rows)
    vmax, ticks = _nice(max([v for r in rows for v in r[1] if is_finite(v)] or [0]), binary=kind == "bytes")
    fmt = (lambda v: format_bytes(v, tick=True)) if kind == "bytes" else _tick
    parts = _axis(x0, x1, top, bottom, vmax, ticks, fmt, "ms" if kind == "ms" else "")
    exact = {"bytes": lambda v: format_bytes(v, dash=DASH), "ms": format_ms}.get(kind, format_count)
    if count > 1:
        for j, (name, css) in enumerate(series):
            lx = x0 + j * 120
            parts.append(f'<rect class="bar {css}" x="{lx}" y="6" width="12" height="12"/><text x="{lx + 17}" y="16">{escape(name)}</text>')
    for i, (label, values, text) in enumerate(rows):
        y = top + i * row_h + 4.5
        parts.append(_label(label, x0 - 8, y + (row_h - 9) / 2 + 4, max_chars))
        for j, value in enumerate(values):
            if not is_finite(value):
                continue
            width = max(0.0, (x1 - x0) * min(value, vmax) / vmax)
            name, css = series[j]
            parts.append(f'<rect class="bar {css}" x="{x0}" y="{y + j * (bar_h + gap):.1f}" width="{width:.1f}" height="{bar_h}">'
                         f'<title>{escape(label)}: {escape(name)} {escape(exact(value))}</title></rect>')
        parts.append(f'<text class="value" x="{x1 + 10}" y="{y + (row_h - 9) / 2 + 4:.1f}">{escape(text)}</text>')
    return _frame(chart_id, caption, bottom + 22, parts)


def latency_chart(chart_id: str, caption: str, rows: Sequence) -> str:
    """Latency per configuration: a bar to the median, a whisker from the minimum to p90.

    Rows are a group title (str) or (label, LatencyStats-like dict, role) with role "chosen",
    "baseline", "control", "before", "subject" (highlighted, unlabelled), "" or a note for the text at
    the right. Whiskers past the axis (a p90 far above every median) are cut at the edge and marked
    with an arrow; the text at the right gives the real figures.
    """
    timed = [r for r in rows if not isinstance(r, str)]
    if not timed:
        return ""
    row_h, group_h = 22, 22
    max_chars = min(44, max(len(str(r[0])) for r in timed))
    x0, x1 = max_chars * 7 + 16, WIDTH - 330
    medians = [r[1].get("median_ms") for r in timed if is_finite(r[1].get("median_ms"))]
    highs = [r[1].get("p90_ms") for r in timed if is_finite(r[1].get("p90_ms"))] + medians
    vmax, ticks = _nice(min(max(highs or [0]), 2.5 * max(medians or [0])) if medians else max(highs or [0]))
    height = 8 + sum(group_h if isinstance(r, str) else row_h for r in rows)
    parts = _axis(x0, x1, 4, height, vmax, ticks, _tick, "ms")

    def x_of(value: float) -> float:
        return x0 + (x1 - x0) * min(max(value, 0.0), vmax) / vmax

    y = 6.0
    for row in rows:
        if isinstance(row, str):
            parts.append(f'<text class="group" x="4" y="{y + 15:.1f}">{escape(row)}</text>')
            y += group_h
            continue
        label, stats, note = row
        low, mid, high = stats.get("min_ms"), stats.get("median_ms"), stats.get("p90_ms")
        role = "chosen" if note == "subject" else note if note in ("chosen", "baseline", "control", "before") else ""
        css = f"label {role}".strip()
        parts.append(_label(label, x0 - 8, y + 15, max_chars, css))
        if is_finite(mid):
            parts.append(f'<rect class="bar {role}" x="{x0}" y="{y + 5:.1f}" width="{x_of(mid) - x0:.1f}" height="12">'
                         f'<title>{escape(label)}: median {escape(format_ms(mid))}</title></rect>')
        if is_finite(low) and is_finite(high):
            a, b, c = x_of(low), x_of(high), y + 11
            parts.append(f'<line class="whisker" x1="{a:.1f}" y1="{c:.1f}" x2="{b:.1f}" y2="{c:.1f}"/>'
                         f'<line class="whisker" x1="{a:.1f}" y1="{c - 5:.1f}" x2="{a:.1f}" y2="{c + 5:.1f}"/>')
            if high > vmax:
                parts.append(f'<path class="clipped" d="M{b - 6:.1f} {c - 5:.1f} L{b:.1f} {c:.1f} L{b - 6:.1f} {c + 5:.1f} Z" fill="#1f2933"/>')
            else:
                parts.append(f'<line class="whisker" x1="{b:.1f}" y1="{c - 5:.1f}" x2="{b:.1f}" y2="{c + 5:.1f}"/>')
        mark = {"chosen": "  ← chosen", "baseline": "  baseline", "control": "  control", "before": "", "subject": "", "": ""}.get(note, f"  · {note}")
        text = f"{format_ms(mid)}  ({format_significant(low)} – {format_significant(high)}){mark}"
        parts.append(f'<text class="value{" chosen" if role == "chosen" else ""}" x="{x1 + 10}" y="{y + 15:.1f}">{escape(text)}</text>')
        y += row_h
    return _frame(chart_id, caption, height + 20, parts)


def op_rows(pairs: Sequence[tuple[str, object, object]], biggest: int = 5) -> list[tuple[str, list, str]]:
    """Every op whose count changed, plus the `biggest` unchanged ones, largest first."""
    def size(p):
        return max(v for v in (p[1], p[2], 0) if is_finite(v))

    changed = [p for p in pairs if (p[1] or 0) != (p[2] or 0)]
    same = sorted((p for p in pairs if (p[1] or 0) == (p[2] or 0)), key=lambda p: -size(p))[:biggest]
    rows = []
    for op, a, b in sorted(changed + same, key=lambda p: (-size(p), p[0])):
        a, b = a or 0, b or 0
        rows.append((op, [a, b], f"{a} → {b}" + (f"  ({b - a:+d})" if b != a else "")))
    return rows


def size_rows(before: Mapping | None, after: Mapping | None) -> list[tuple[str, list, str]]:
    """Bytes per key (dtype or op type), before and after; the smallest beyond TOP_OPS summed as "other"."""
    before = {k: v for k, v in (before or {}).items() if is_finite(v)}
    after = {k: v for k, v in (after or {}).items() if is_finite(v)}
    keys = sorted(set(before) | set(after), key=lambda k: -max(before.get(k, 0), after.get(k, 0)))
    rows = [(k, [before.get(k, 0), after.get(k, 0)], f"{format_bytes(before.get(k, 0), dash=DASH)} → {format_bytes(after.get(k, 0), dash=DASH)}") for k in keys[:TOP_OPS]]
    rest = keys[TOP_OPS:]
    if rest:
        a, b = sum(before.get(k, 0) for k in rest), sum(after.get(k, 0) for k in rest)
        rows.append((f"other ({len(rest)})", [a, b], f"{format_bytes(a, dash=DASH)} → {format_bytes(b, dash=DASH)}"))
    return rows
