"""The Markdown rendering of a report document: short, for a pull-request comment.

Headline figures first, then one before/after table, what changed, and the warnings. Names that come
from a model (paths, ops, outputs) are escaped: a model cannot inject markup into the comment.
"""

from __future__ import annotations

import re

from optimizer.reports.document import ERROR_STAT_COLUMNS, CheckReport, CompareReport, Document, RunReport, TuningSection, Verification, document_from_dict, error_stat_rows
from optimizer.reports.summary import Summary
from optimizer.units import format_bytes, format_count_change, format_ms, format_relative_change

__all__ = ["render_markdown"]

_SPECIAL = re.compile(r"([\\`*_{}\[\]|~])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # line breaks of every kind, escapes: one line stays one line


def _md(text: object) -> str:
    """Text from a model or a path, safe inside Markdown (table cells included)."""
    value = _CONTROL.sub(" ", str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", value)


def _ms(value: float | None) -> str:
    return format_ms(value, dash="-", general=True)


def _footer(document: Document) -> str:
    tool, machine = document.tool or {}, document.machine or {}
    cpu = machine.get("cpu_model") or "unknown CPU"
    cores = machine.get("cpu_affinity") or machine.get("cpu_count")
    return (
        f"<sub>optimize {tool.get('optimize', '?')} · {tool.get('onnxruntime_flavour', 'onnxruntime')} {tool.get('onnxruntime', '?')} · "
        f"{_md(cpu)}{f', {cores} cores' if cores else ''} · {document.created}</sub>"
    )


def _warnings(document: Document) -> list[str]:
    if not document.warnings:
        return []
    return ["", "**Warnings**", "", *[f"- {_md(w)}" for w in document.warnings]]


def _changed_ops(before: dict, after: dict, limit: int = 12) -> str:
    rows = [(op, before.get(op, 0), after.get(op, 0)) for op in sorted(set(before) | set(after))]
    changed = sorted((r for r in rows if r[1] != r[2]), key=lambda r: (-abs(r[2] - r[1]), r[0]))
    if not changed:
        return "none"
    text = ", ".join(f"{_md(op)} {b} → {a}" for op, b, a in changed[:limit])
    return text + (f" and {len(changed) - limit} more" if len(changed) > limit else "")


def _provenance(origin) -> list[str]:
    """Which inputs the models ran on, and each model's runtime settings, as one line."""
    if not origin:
        return []
    parts = [f"**Inputs:** {_md(origin.inputs)}"]
    if origin.settings:
        parts.append("**Settings:** " + "; ".join(f"{_md(label)}: {_md(text)}" for label, text in origin.settings.items()))
    return ["", " · ".join(parts)]


def _summary(summary: Summary | None) -> list[str]:
    """The summary table (interface, IR, opsets, every op type, size, elapsed), folded: a PR comment stays short."""
    if not summary or not summary.models:
        return []
    labels = [m.label for m in summary.models]
    lines = ["", "<details><summary>Summary: interface, opsets, every op type, sizes</summary>", "",
             "| | " + " | ".join(_md(label) for label in labels) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {_md(label)} | " + " | ".join(_md(cell) for cell in cells) + " |" for label, cells in summary.rows()]
    return lines + ["", "</details>", ""]


def _verification_line(verification: Verification) -> str:
    status, outputs = verification.status, verification.outputs or []
    if status == "passed":
        worst = max((o.max_abs or 0.0 for o in outputs), default=0.0)
        return f"verified in onnxruntime on {len(outputs)} output(s), max abs error {worst:.2g}"
    if status == "not run":
        return "**not verified**"
    return f"**verification {_md(status)}**" + (f": {_md(verification.reason)}" if verification.reason else "")


def _error_stats(outputs) -> list[str]:
    """The element-wise error percentiles per output and the smallest passing tolerance, as a table."""
    rows = error_stat_rows(outputs)
    if not rows:
        return []
    lines = ["", "| " + " | ".join(ERROR_STAT_COLUMNS) + " |", "|---" * len(ERROR_STAT_COLUMNS) + "|"]
    return lines + ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]


def _speed_line(tuning: TuningSection, shipped: str | None) -> str:
    speedup, noise = tuning.speedup, tuning.noise
    chosen = f"{_md(tuning.chosen_label)}, {_md(shipped or '')} graph"
    if speedup > 1 + noise:
        return f"**{speedup:.2f}x faster** than the original under onnxruntime's defaults ({chosen})"
    if speedup >= 1 - noise:
        return f"as fast as the original within the noise ({speedup:.2f}x, noise {noise:.0%}; {chosen})"
    return f"**{1 / speedup:.2f}x slower** than the original under onnxruntime's defaults in the final timing ({chosen})"


def _optimization(document: RunReport) -> list[str]:
    before, after = document.input, document.output
    lines = [f"### optimize: {_md(before.path or 'model')} → {_md(after.path or '(not written)')}", ""]
    tuning = document.tuning
    measured = (tuning.measured if tuning else None) or {}
    headline = [_speed_line(tuning, document.shipped_variant)] if tuning and tuning.speedup else []
    headline.append(_verification_line(document.verification))
    headline.append(f"{'?' if before.nodes is None else before.nodes} → {'?' if after.nodes is None else after.nodes} nodes")
    if before.file_bytes is not None and after.file_bytes is not None:
        headline.append(f"{format_bytes(before.file_bytes)} → {format_bytes(after.file_bytes)}")
    lines += [" · ".join(headline), *_provenance(document.provenance), *_summary(document.summary), "", "| | before | after | change |", "|---|---|---|---|"]
    lines.append(f"| nodes | {before.nodes} | {after.nodes} | {format_count_change(before.nodes or 0, after.nodes or 0)} |")
    lines.append(f"| file size | {format_bytes(before.file_bytes)} | {format_bytes(after.file_bytes)} | {format_relative_change(before.file_bytes, after.file_bytes, format_bytes)} |")
    lines.append(f"| weights | {format_bytes(before.initializer_bytes)} | {format_bytes(after.initializer_bytes)} | {format_relative_change(before.initializer_bytes, after.initializer_bytes, format_bytes)} |")
    if measured.get("baseline_median_ms") is not None:
        lines.append(
            f"| latency, median (min) | {_ms(measured['baseline_median_ms'])} ({_ms(measured.get('baseline_min_ms'))}) "
            f"| {_ms(measured.get('median_ms'))} ({_ms(measured.get('min_ms'))}) | {format_relative_change(measured['baseline_median_ms'], measured.get('median_ms'))} |"
        )
    lines += ["", f"**Ops changed:** {_changed_ops(before.op_counts or {}, after.op_counts or {})}"]
    changed = [p for p in document.passes or [] if p.changes]
    if changed:
        items = [f"{_md(p.name)} ({', '.join(f'{v} {_md(k)}' for k, v in p.changes.items())})" for p in changed]
        lines.append(f"**Passes that changed the graph:** {'; '.join(items)}")
    lines += _error_stats(document.verification.outputs)
    for dropped in document.dropped_passes or []:
        lines.append(f"**Dropped pass** {_md(dropped.name)}: {_md(dropped.reason)}")
    lossy = document.lossy
    if lossy:
        variants = "; ".join(f"{_md(v.label)}: {_md(v.status)}, {_md(v.reason)}" for v in lossy.variants or [])
        lines.append(f"**Lossy variants** (budget {_md(lossy.budget)}): {variants or 'none tried'}")
    if tuning and tuning.decision:
        lines += _decision(tuning, document)
    if document.introduced_ops:
        lines.append(f"**Needs onnxruntime:** introduced {', '.join(f'{_md(op)} ×{n}' for op, n in document.introduced_ops.items())}")
    return lines + _warnings(document)


def _decision(tuning: TuningSection, document: RunReport) -> list[str]:
    """The tuning decision record: the sentence, the budget, and the final run's candidates against the preferred one."""
    lines = ["", f"**Tuning** ({_md(tuning.budget_summary)}): {_md(tuning.sentence)}"]
    if document.shipped_variant not in (document.level, "optimized") and document.shipped_reason:
        lines.append(f"**Ships** the {_md(document.shipped_variant)} graph: {_md(document.shipped_reason)}")
    rows = [c for c in tuning.candidates if c.get("stage") in ("final", "calibration")]
    if rows:
        lines += ["", "| graph | settings | vs preferred (interval) | median | outcome | stage |", "|---|---|---|---|---|---|"]
        for c in rows:
            lines.append(f"| {_md(c.get('variant'))} | {_md(c.get('label'))} | {tuning.speed_vs_preferred(c)} | {_ms(c.get('median_ms'))} | {_md(c.get('outcome'))} | {_md(c.get('stage'))} |")
        lines.append("")
    return lines


def _check(document: CheckReport) -> list[str]:
    gates, failed = document.gates or [], document.failed_gates
    verdict = f"✅ all {len(gates)} gates pass" if not failed else f"❌ {len(failed)} of {len(gates)} gates failed"
    model = document.model.path if "path" in document.model.json_keys else "model"
    lines = [f"### optimize check: {_md(model)}: {verdict}", *_provenance(document.provenance), *_summary(document.summary), "", "| gate | measured | limit | result | detail |", "|---|---|---|---|---|"]
    for gate in gates:
        measured = gate.measured_text if gate.measured_text is not None else gate.measured
        limit = gate.limit_text if gate.limit_text is not None else gate.limit
        lines.append(f"| {_md(gate.gate)} | {_md(measured)} | {_md(limit)} | {'✅ pass' if gate.passed else '❌ fail'} | {_md(gate.detail)} |")
    return lines + _error_stats(document.errors) + _warnings(document)


def _compare(document: CompareReport) -> list[str]:
    lines = [f"### optimize compare: {_md(document.a.path)} (A) vs {_md(document.b.path)} (B)", ""]
    headline = []
    latency, size, outputs = document.latency, document.size, document.outputs or []
    if latency:
        headline.append(f"B takes **{latency['ratio_median']:.2f}x** A's time (median; {latency['ratio_min']:.2f}x by minimum, noise {latency['noise']:.0%})")
    if size.ratio is not None:
        headline.append(f"B is {size.ratio:.2f}x A's size ({format_bytes(size.a_bytes)} → {format_bytes(size.b_bytes)})")
    if outputs:
        headline.append(f"worst rel error {max(o.rel for o in outputs):.3g} over {len(outputs)} output(s)")
    lines += [" · ".join(headline) or "no figures", *_provenance(document.provenance), *_summary(document.summary), ""]
    if outputs:
        lines += ["| output | max abs | rel | cosine | top-1 agreement | non-finite |", "|---|---|---|---|---|---|"]
        for row in outputs:
            top1 = "-" if row.top1 is None else f"{row.top1:.4f}"
            lines.append(f"| {_md(row.name)} | {row.max_abs:.3g} | {row.rel:.3g} | {row.cos:.6f} | {top1} | {row.nonfinite or 0} |")
        lines += [*_error_stats(outputs), ""]
    changed = document.changed_ops
    lines.append("**Ops changed (A → B):** " + (", ".join(f"{_md(r.op)} {r.a} → {r.b}" for r in changed) if changed else "none"))
    if latency and latency.get("verdict"):
        lines.append(f"**Latency:** {_md(latency['verdict'])}")
    return lines + _warnings(document)


_RENDERERS = {RunReport: _optimization, CheckReport: _check, CompareReport: _compare}


def render_markdown(document: Document | dict) -> str:
    """The document as Markdown (GitHub-flavoured: tables, `<sub>`)."""
    if isinstance(document, dict) and "kind" not in document:
        document = {**document, "kind": "optimize"}
    document = document_from_dict(document)
    renderer = _RENDERERS.get(type(document))
    if renderer is None:
        raise ValueError(f"no Markdown rendering for report kind {document.kind!r}")
    return "\n".join([*renderer(document), "", _footer(document)]) + "\n"
