"""The fleet's one merged report: a document (one entry per model under `models`, and totals) and its
renderings: a terminal table (rich), JSON, Markdown for a pull request, and a self-contained HTML
page with a sortable table and a chart of speedup per model.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from optimizer.units import format_bytes

__all__ = ["fleet_document", "summary_row", "render_table", "render_markdown", "render_html", "write_fleet_reports", "to_json_text"]

COLUMNS = ("model", "status", "nodes", "size", "speedup", "max error", "shipped", "time")


def _max_error(document: Mapping | None) -> float | None:
    outputs = ((document or {}).get("verification") or {}).get("outputs") or []
    values = [output["max_abs"] for output in outputs if isinstance(output.get("max_abs"), (int, float))]
    return max(values) if values else None


def summary_row(entry: Mapping) -> dict:
    """One model's figures for the tables and the chart (None where not measured)."""
    document = entry.get("document") or {}
    before, after = document.get("input") or {}, document.get("output") or {}
    measured = (document.get("tuning") or {}).get("measured") or {}
    return {
        "model": entry["name"],
        "status": entry["status"] + (" (up to date)" if entry.get("skipped") else ""),
        "nodes_before": before.get("nodes"),
        "nodes_after": after.get("nodes"),
        "bytes_before": before.get("file_bytes"),
        "bytes_after": after.get("file_bytes"),
        "speedup": measured.get("speedup_vs_defaults"),
        "max_error": _max_error(document),
        "shipped": document.get("shipped_variant"),
        "seconds": entry.get("seconds"),
        "reason": entry.get("reason") or "",
    }


def fleet_document(result, models: str, out_dir: str) -> dict:
    """The report document of a fleet run (`kind: fleet`)."""
    from optimizer.reports.document import header

    counts: dict[str, int] = {}
    for entry in result.entries:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    speedups = [row["speedup"] for row in map(summary_row, result.entries) if isinstance(row["speedup"], (int, float))]
    totals = {
        "models": len(result.entries),
        "by_status": counts,
        "skipped_up_to_date": len(result.skipped),
        "seconds": round(result.seconds, 3),
        "model_seconds": round(sum(entry.get("seconds") or 0 for entry in result.entries if not entry["skipped"]), 3),
        "geomean_speedup": round(math.exp(sum(map(math.log, speedups)) / len(speedups)), 4) if speedups else None,
        "exit_code": result.exit_code,
    }
    return {**header("fleet"), "models_path": models, "out_dir": out_dir, "engine": result.engine, "totals": totals, "models": result.entries}


def _cells(row: Mapping) -> list[str]:
    def pair(a, b, fmt):
        return f"{fmt(a)} -> {fmt(b)}" if a is not None and b is not None else "-"

    return [
        row["model"],
        row["status"],
        pair(row["nodes_before"], row["nodes_after"], str),
        pair(row["bytes_before"], row["bytes_after"], format_bytes),
        f"{row['speedup']:.2f}x" if row["speedup"] is not None else "-",
        f"{row['max_error']:.2g}" if row["max_error"] is not None else "-",
        row["shipped"] or "-",
        f"{row['seconds']:.1f} s" if row["seconds"] is not None else "-",
    ]


def _totals_line(document: Mapping) -> str:
    totals = document["totals"]
    statuses = ", ".join(f"{count} {status}" for status, count in sorted(totals["by_status"].items()))
    speedup = f"; geomean speedup {totals['geomean_speedup']:.2f}x" if totals["geomean_speedup"] else ""
    return f"{totals['models']} models: {statuses} ({totals['skipped_up_to_date']} up to date){speedup}; {totals['seconds']:.1f} s wall, exit {totals['exit_code']}"


def render_table(document: Mapping, console) -> None:
    """The terminal table: one row per model, then the reasons of the failures and the totals."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"fleet: {escape(document['models_path'])} -> {escape(document['out_dir'])} ({document['engine']['engine']})")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("nodes", "size", "speedup", "max error", "time") else "left")
    rows = [summary_row(entry) for entry in document["models"]]
    for row in rows:
        style = None if row["status"].startswith("ok") else "red"
        table.add_row(*map(escape, _cells(row)), style=style)
    console.print(table)
    for row in rows:
        if row["reason"]:
            console.print(f"{escape(row['model'])}: {escape(row['reason'])}")
    console.print(escape(_totals_line(document)))


def _markdown_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_markdown(document: Mapping) -> str:
    """A pull-request comment: the totals, the table, the failures' reasons."""
    rows = [summary_row(entry) for entry in document["models"]]
    lines = ["## optimize fleet", "", _markdown_cell(_totals_line(document)), "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_markdown_cell(cell) for cell in _cells(row)) + " |" for row in rows]
    failures = [row for row in rows if row["reason"]]
    if failures:
        lines += ["", "### Failures", ""] + [f"- **{_markdown_cell(row['model'])}**: {_markdown_cell(row['reason'])}" for row in failures]
    tool = document.get("tool", {})
    lines += ["", f"<sub>optimize {tool.get('optimize')}, onnxruntime {tool.get('onnxruntime')}, {document.get('created')}</sub>"]
    return "\n".join(lines) + "\n"


_SORT_SCRIPT = """
for (const th of document.querySelectorAll('#models th')) th.addEventListener('click', () => {
  const table = th.closest('table'), body = table.tBodies[0], i = th.cellIndex;
  const up = th.dataset.order !== 'asc'; th.dataset.order = up ? 'asc' : 'desc';
  const key = (row) => { const c = row.cells[i]; return c.dataset.value !== undefined ? c.dataset.value : c.textContent; };
  const rows = [...body.rows].sort((a, b) => {
    const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
    const d = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
    return up ? d : -d; });
  rows.forEach((row) => body.appendChild(row)); });
"""

_STYLE = """
body{font:14px system-ui,sans-serif;margin:2em;color:#222} table{border-collapse:collapse}
th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left} th{cursor:pointer;background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums} tr.bad td{color:#b00020} .bar{fill:#3b7dd8}
.one{stroke:#888;stroke-dasharray:3 3} text{font-size:11px}
"""


def _speedup_chart(rows: Sequence[Mapping]) -> str:
    """Horizontal bars of speedup per model, with a line at 1x; a note when nothing was tuned."""
    measured = [row for row in rows if isinstance(row["speedup"], (int, float))]
    if not measured:
        return "<p>No speedup measured (the models were not tuned).</p>"
    top, left, width, bar = 14, 200, 420, 18
    vmax = max(1.0, max(row["speedup"] for row in measured)) * 1.1
    height = top * 2 + bar * len(measured)
    parts = [f'<svg id="speedup" role="img" aria-label="speedup per model" width="{left + width + 60}" height="{height}">']
    for index, row in enumerate(measured):
        y = top + index * bar
        length = width * row["speedup"] / vmax
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{html.escape(row["model"][:32])}</text>')
        parts.append(f'<rect class="bar" x="{left}" y="{y + 2}" width="{length:.1f}" height="{bar - 4}"/>')
        parts.append(f'<text x="{left + length + 4:.1f}" y="{y + 13}">{row["speedup"]:.2f}x</text>')
    one = left + width / vmax
    parts.append(f'<line class="one" x1="{one:.1f}" x2="{one:.1f}" y1="{top}" y2="{height - top + 4}"/>')
    parts.append(f'<text x="{one:.1f}" y="{top - 1}" text-anchor="middle">1x</text></svg>')
    return "".join(parts)


def render_html(document: Mapping) -> str:
    """One self-contained page (no network): totals, the sortable table, the speedup chart."""
    rows = [summary_row(entry) for entry in document["models"]]
    sort_values = lambda row: [row["model"], row["status"], row["nodes_after"], row["bytes_after"], row["speedup"], row["max_error"], row["shipped"], row["seconds"]]  # noqa: E731
    body = []
    for row in rows:
        cells = []
        for index, (text, value) in enumerate(zip(_cells(row), sort_values(row))):
            numeric = 2 <= index <= 5 or index == 7
            data = f' data-value="{html.escape(str(value if value is not None else -1))}"' if numeric else ""
            cells.append(f'<td{data}{" class=num" if numeric else ""} title="{html.escape(row["reason"])}">{html.escape(text)}</td>')
        body.append(f'<tr class="{"ok" if row["status"].startswith("ok") else "bad"}">{"".join(cells)}</tr>')
    head = "".join(f"<th>{html.escape(column)}</th>" for column in COLUMNS)
    failures = "".join(f"<li><b>{html.escape(row['model'])}</b>: {html.escape(row['reason'])}</li>" for row in rows if row["reason"])
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>optimize fleet</title>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<style>{_STYLE}</style></head><body><h1>optimize fleet</h1><p>{html.escape(_totals_line(document))}</p>"
        f"<h2>Models</h2><table id='models'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        + (f"<h2>Failures</h2><ul>{failures}</ul>" if failures else "")
        + f"<h2>Speedup per model</h2>{_speedup_chart(rows)}"
        f"<p><small>optimize {html.escape(str(document.get('tool', {}).get('optimize')))}, {html.escape(str(document.get('created')))}</small></p>"
        f"<script>{_SORT_SCRIPT}</script></body></html>\n"
    )


def _render(document: Mapping, suffix: str) -> str:
    from optimizer.reports import to_json

    return {".json": lambda: to_json(dict(document)), ".md": lambda: render_markdown(document), ".html": lambda: render_html(document)}[suffix]()


def write_fleet_reports(document: Mapping, paths: Sequence[Path]) -> None:
    """Write each report atomically (temporary name in the same folder, then rename); the paths were
    checked up front by `optimizer.reports.check_report_paths`."""
    for path in paths:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(_render(document, path.suffix.lower()))
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)


def to_json_text(document: Mapping) -> str:
    """The document as strict JSON, as `--json` prints it."""
    return _render(document, ".json")

