"""The Markdown rendering of a report document: short, for a pull-request comment.

Headline figures first, then one before/after table, what changed, and the warnings. Names that come
from a model (paths, ops, outputs) are escaped: a model cannot inject markup into the comment.
"""

from __future__ import annotations

import re

from optimizer.units import format_bytes

__all__ = ["render_markdown"]

_SPECIAL = re.compile(r"([\\`*_{}\[\]|~])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # line breaks of every kind, escapes: one line stays one line


def _md(text: object) -> str:
    """Text from a model or a path, safe inside Markdown (table cells included)."""
    value = _CONTROL.sub(" ", str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} ms"


def _delta(before: int | float | None, after: int | float | None) -> str:
    if before is None or after is None:
        return ""
    if before == after:
        return "="
    if before and isinstance(before, (int, float)) and before > 0:
        return f"{(after - before) / before:+.1%}"
    return f"{after - before:+}"


def _count_delta(before: int, after: int) -> str:
    return "=" if before == after else f"{after - before:+d}"


def _footer(document: dict) -> str:
    tool = document.get("tool") or {}
    machine = document.get("machine") or {}
    cpu = machine.get("cpu_model") or "unknown CPU"
    cores = machine.get("cpu_affinity") or machine.get("cpu_count")
    return (
        f"<sub>optimize {tool.get('optimize', '?')} · onnxruntime {tool.get('onnxruntime', '?')} · "
        f"{_md(cpu)}{f', {cores} cores' if cores else ''} · {document.get('created', '')}</sub>"
    )


def _warnings(document: dict) -> list[str]:
    warnings = document.get("warnings") or []
    if not warnings:
        return []
    return ["", "**Warnings**", "", *[f"- {_md(w)}" for w in warnings]]


def _changed_ops(before: dict, after: dict, limit: int = 12) -> str:
    rows = [(op, before.get(op, 0), after.get(op, 0)) for op in sorted(set(before) | set(after))]
    changed = sorted((r for r in rows if r[1] != r[2]), key=lambda r: (-abs(r[2] - r[1]), r[0]))
    if not changed:
        return "none"
    text = ", ".join(f"{_md(op)} {b} → {a}" for op, b, a in changed[:limit])
    return text + (f" and {len(changed) - limit} more" if len(changed) > limit else "")


def _verification_line(verification: dict) -> str:
    status = verification.get("status", "not run")
    outputs = verification.get("outputs") or []
    if status == "passed":
        worst = max((o.get("max_abs") or 0.0 for o in outputs), default=0.0)
        return f"verified in onnxruntime on {len(outputs)} output(s), max abs error {worst:.2g}"
    if status == "not run":
        return "**not verified**"
    return f"**verification {_md(status)}**" + (f": {_md(verification['reason'])}" if verification.get("reason") else "")


def _optimization(document: dict) -> list[str]:
    before, after = document.get("input") or {}, document.get("output") or {}
    source, target = before.get("path") or "model", after.get("path") or "(not written)"
    lines = [f"### optimize: {_md(source)} → {_md(target)}", ""]
    headline = []
    tuning = document.get("tuning")
    measured = (tuning or {}).get("measured") or {}
    if measured.get("speedup_vs_defaults"):
        speedup, noise = measured["speedup_vs_defaults"], measured.get("noise") or 0.0
        chosen = f"{_md((tuning.get('chosen') or {}).get('label', ''))}, {_md(document.get('shipped_variant') or '')} graph"
        if speedup > 1 + noise:
            headline.append(f"**{speedup:.2f}x faster** than the original under onnxruntime's defaults ({chosen})")
        elif speedup >= 1 - noise:
            headline.append(f"as fast as the original within the noise ({speedup:.2f}x, noise {noise:.0%}; {chosen})")
        else:
            headline.append(f"**{1 / speedup:.2f}x slower** than the original under onnxruntime's defaults in the final timing ({chosen})")
    headline.append(_verification_line(document.get("verification") or {}))
    headline.append(f"{before.get('nodes', '?')} → {after.get('nodes', '?')} nodes")
    if before.get("file_bytes") is not None and after.get("file_bytes") is not None:
        headline.append(f"{format_bytes(before['file_bytes'])} → {format_bytes(after['file_bytes'])}")
    lines += [" · ".join(headline), "", "| | before | after | change |", "|---|---|---|---|"]
    lines.append(f"| nodes | {before.get('nodes')} | {after.get('nodes')} | {_count_delta(before.get('nodes', 0), after.get('nodes', 0))} |")
    lines.append(f"| file size | {format_bytes(before.get('file_bytes'))} | {format_bytes(after.get('file_bytes'))} | {_delta(before.get('file_bytes'), after.get('file_bytes'))} |")
    lines.append(f"| weights | {format_bytes(before.get('initializer_bytes'))} | {format_bytes(after.get('initializer_bytes'))} | {_delta(before.get('initializer_bytes'), after.get('initializer_bytes'))} |")
    if measured.get("baseline_median_ms") is not None:
        lines.append(
            f"| latency, median (min) | {_ms(measured['baseline_median_ms'])} ({_ms(measured.get('baseline_min_ms'))}) "
            f"| {_ms(measured.get('median_ms'))} ({_ms(measured.get('min_ms'))}) | {_delta(measured['baseline_median_ms'], measured.get('median_ms'))} |"
        )
    lines += ["", f"**Ops changed:** {_changed_ops(before.get('op_counts') or {}, after.get('op_counts') or {})}"]
    changed = [p for p in document.get("passes") or [] if p.get("changes")]
    if changed:
        items = [f"{_md(p['name'])} ({', '.join(f'{v} {_md(k)}' for k, v in p['changes'].items())})" for p in changed]
        lines.append(f"**Passes that changed the graph:** {'; '.join(items)}")
    for dropped in document.get("dropped_passes") or []:
        lines.append(f"**Dropped pass** {_md(dropped['name'])}: {_md(dropped['reason'])}")
    lossy = document.get("lossy")
    if lossy:
        variants = "; ".join(f"{_md(v['label'])}: {_md(v['status'])}, {_md(v['reason'])}" for v in lossy.get("variants") or [])
        lines.append(f"**Lossy variants** (budget {_md(lossy.get('budget'))}): {variants or 'none tried'}")
    if document.get("introduced_ops"):
        lines.append(f"**Needs onnxruntime:** introduced {', '.join(f'{_md(op)} ×{n}' for op, n in document['introduced_ops'].items())}")
    return lines + _warnings(document)


def _check(document: dict) -> list[str]:
    gates = document.get("gates") or []
    failed = [g for g in gates if not g.get("passed")]
    verdict = f"✅ all {len(gates)} gates pass" if not failed else f"❌ {len(failed)} of {len(gates)} gates failed"
    model = (document.get("model") or {}).get("path", "model")
    lines = [f"### optimize check: {_md(model)}: {verdict}", "", "| gate | measured | limit | result | detail |", "|---|---|---|---|---|"]
    for gate in gates:
        lines.append(
            f"| {_md(gate['gate'])} | {_md(gate.get('measured_text', gate.get('measured')))} | {_md(gate.get('limit_text', gate.get('limit')))} "
            f"| {'✅ pass' if gate.get('passed') else '❌ fail'} | {_md(gate.get('detail', ''))} |"
        )
    return lines + _warnings(document)


def _compare(document: dict) -> list[str]:
    a, b = document.get("a") or {}, document.get("b") or {}
    lines = [f"### optimize compare: {_md(a.get('path'))} (A) vs {_md(b.get('path'))} (B)", ""]
    headline = []
    latency = document.get("latency")
    if latency:
        headline.append(f"B takes **{latency['ratio_median']:.2f}x** A's time (median; {latency['ratio_min']:.2f}x by minimum, noise {latency['noise']:.0%})")
    size = document.get("size") or {}
    if size.get("ratio") is not None:
        headline.append(f"B is {size['ratio']:.2f}x A's size ({format_bytes(size.get('a_bytes'))} → {format_bytes(size.get('b_bytes'))})")
    outputs = document.get("outputs") or []
    if outputs:
        headline.append(f"worst rel error {max(o['rel'] for o in outputs):.3g} over {len(outputs)} output(s)")
    lines += [" · ".join(headline) or "no figures", ""]
    if outputs:
        lines += ["| output | max abs | rel | cosine | top-1 agreement | non-finite |", "|---|---|---|---|---|---|"]
        for row in outputs:
            top1 = "-" if row.get("top1") is None else f"{row['top1']:.4f}"
            lines.append(f"| {_md(row['name'])} | {row['max_abs']:.3g} | {row['rel']:.3g} | {row['cos']:.6f} | {top1} | {row.get('nonfinite', 0)} |")
        lines.append("")
    changed = [r for r in document.get("op_counts") or [] if r.get("delta")]
    lines.append("**Ops changed (A → B):** " + (", ".join(f"{_md(r['op'])} {r['a']} → {r['b']}" for r in changed) if changed else "none"))
    if latency and latency.get("verdict"):
        lines.append(f"**Latency:** {_md(latency['verdict'])}")
    return lines + _warnings(document)


_RENDERERS = {"optimize": _optimization, "check": _check, "compare": _compare}


def render_markdown(document: dict) -> str:
    """The document as Markdown (GitHub-flavoured: tables, `<sub>`)."""
    kind = document.get("kind", "optimize")
    if kind not in _RENDERERS:
        raise ValueError(f"no Markdown rendering for report kind {kind!r}")
    return "\n".join([*_RENDERERS[kind](document), "", _footer(document)]) + "\n"
