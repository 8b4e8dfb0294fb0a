"""The HTML report: one self-contained page made from a report document (`optimizer.reports.document`).

`render_html(document)` is a pure function of the typed document: inline CSS, charts as inline SVG
(`optimizer.reports.charts`), no script, no fonts, no images, nothing fetched. A Content-Security-Policy
meta tag forbids every fetch, so the page opens offline and a hostile model cannot make it phone home.
Model paths, op names, node names and error messages come from untrusted models: every value goes
through `optimizer.reports.markup.escape` before it reaches the page. Kinds: "optimize", "check",
"compare" (others are shown as escaped JSON).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

from optimizer.reports.charts import TOP_OPS, bar_chart, latency_chart, op_rows, size_rows
from optimizer.reports.document import ERROR_STAT_COLUMNS, AnalysisSection, CheckReport, CompareReport, Document, ModelFacts, OutputErrorRow, ProfileSection, Provenance, RunReport, TuningSection, document_from_dict, error_stat_rows
from optimizer.reports.markup import Markup, escape
from optimizer.reports.summary import Summary
from optimizer.units import DASH, format_bytes, format_change, format_count, format_error, format_ms, format_percent, format_ratio, format_si, format_significant, is_finite, is_number

__all__ = ["render_html", "CSP"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
TOP_ROWS = 10  # profile and analysis nodes

CSS = """
:root{--fg:#1f2933;--muted:#616e7c;--line:#d9e2ec;--panel:#f5f7fa;--before:#9aa5b1;--after:#2f6fb3;
--chosen:#dd6b20;--ok:#2f855a;--bad:#c53030}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:#fff;
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 28px 40px}
h1{font-size:22px;margin:0 0 2px}
h2{font-size:17px;margin:30px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:14px;margin:16px 0 4px}
p{margin:6px 0}
.muted,.sub{color:var(--muted)}
.path{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:13px;word-break:break-all}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px}
nav{margin:10px 0 0;font-size:13px}
nav a{color:var(--after);margin-right:12px;text-decoration:none}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(165px,1fr));gap:10px;margin:16px 0}
.card{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:9px 12px}
.card .k{font-size:11.5px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:19px;font-weight:600;margin:1px 0}
.card .s{font-size:12.5px;color:var(--muted)}
.card.ok{border-left:4px solid var(--ok)}.card.ok .v{color:var(--ok)}
.card.bad{border-left:4px solid var(--bad)}.card.bad .v{color:var(--bad)}
.banner{font-size:15px;font-weight:600;padding:8px 12px;border-radius:5px;margin:12px 0;color:#fff}
.banner.ok{background:var(--ok)}.banner.bad{background:var(--bad)}
.warnings{background:#fffbea;border:1px solid #f0b429;border-left:5px solid #f0b429;border-radius:4px;padding:8px 14px;margin:14px 0}
.warnings h2{border:0;margin:0 0 4px;padding:0;font-size:15px;color:#8d5b00}
.warnings ul{margin:0;padding-left:20px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--panel);font-weight:600;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.fail td{background:#fff5f5}
tr.idle td{color:var(--muted)}
#passes-table td:first-child,#lossy-table td:first-child,#gates-table td:first-child{white-space:nowrap}
td small,li small{color:var(--muted)}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;font-weight:600;color:#fff;white-space:nowrap}
.badge.pass{background:var(--ok)}.badge.fail{background:var(--bad)}.badge.neutral{background:#7b8794}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0 10px;font-size:13px}
dl.kv dt{color:var(--muted)}dl.kv dd{margin:0}
svg.chart{display:block;max-width:100%;height:auto;margin:6px 0 14px}
svg.chart text{font-size:12px;fill:#1f2933}
svg.chart .tick,svg.chart .value{fill:#52606d}
svg.chart .group{font-weight:600;fill:#52606d}
svg.chart .grid{stroke:#e4e7eb;stroke-width:1}
svg.chart .bar{fill:var(--after)}
svg.chart .bar.before,svg.chart .bar.baseline{fill:var(--before)}
svg.chart .bar.control{fill:#cbd2d9}
svg.chart .bar.chosen{fill:var(--chosen)}
svg.chart text.chosen{font-weight:700;fill:#9c4221}
svg.chart .whisker{stroke:#1f2933;stroke-width:1.4}
footer{margin-top:34px;padding-top:10px;border-top:1px solid var(--line);color:var(--muted);font-size:12px}
footer dl.kv{font-size:12px}
@media print{main{max-width:none;padding:0}h2{break-after:avoid}nav{display:none}
svg.chart,table,.card,.warnings{break-inside:avoid}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


# -- formatting -----------------------------------------------------------------------------------


def _bytes(count) -> str:
    return format_bytes(count, dash=DASH)


def _err(value) -> str:
    return format_error(value, plain_zero=True)


def _pairs(mapping) -> str:
    """{"layernorm": 2, "nodes": 4} -> "layernorm 2, nodes 4"."""
    return ", ".join(f"{key}\u00a0{value}" for key, value in (mapping or {}).items())


# -- building blocks ------------------------------------------------------------------------------


def _badge(passed, text: str | None = None) -> Markup:
    kind = "neutral" if passed is None else ("pass" if passed else "fail")
    return Markup(f'<span class="badge {kind}">{escape(text or ("pass" if passed else "FAIL"))}</span>')


def _table(headers: Sequence[str], rows: Sequence[Sequence], *, numeric: Sequence[int] = (), row_classes: Sequence[str] | None = None, table_id: str = "") -> str:
    """A table; cells are escaped unless they are markup built here. `numeric` columns align right."""
    def cell(tag: str, index: int, value) -> str:
        return f'<{tag} class="n">{escape(value)}</{tag}>' if index in numeric else f"<{tag}>{escape(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        css = row_classes[r] if row_classes and row_classes[r] else ""
        body.append((f'<tr class="{css}">' if css else "<tr>") + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return f'<table{ident}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _kv(items: Sequence[tuple[str, object]]) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items if v not in (None, "", "–")) + "</dl>"


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{escape(title)}</h2>{body}</section>'


def _not_run(text: str) -> str:
    return f'<p class="muted not-run">{escape(text)}</p>'


def _card(key: str, value: str, sub: str = "", state: str = "") -> str:
    value = value.replace(" ", "\u00a0").replace("\u00a0→\u00a0", "\u00a0→ ")  # wrap only after an arrow
    return f'<div class="card {state}"><div class="k">{escape(key)}</div><div class="v">{escape(value)}</div><div class="s">{escape(sub)}</div></div>'


def _path(value) -> str:
    return f'<span class="path">{escape(value if value else "(in memory)")}</span>'


# -- shared sections ------------------------------------------------------------------------------


def _errors_table(errors: Sequence[OutputErrorRow] | None) -> str:
    rows = [(e.name, _err(e.max_abs), _err(e.rel), format_significant(e.cos, 6), format_significant(e.top1, 4), format_count(e.nonfinite)) for e in errors or []]
    return _table(["output", "max abs", "rel", "cosine", "top-1 agreement", "non-finite"], rows, numeric=(1, 2, 3, 4, 5)) if rows else ""


def _worst(errors: Sequence[OutputErrorRow] | None) -> str:
    errors = errors or []
    rel = [e.rel for e in errors if is_number(e.rel)]
    cos = [e.cos for e in errors if is_number(e.cos)]
    top1 = [e.top1 for e in errors if is_number(e.top1)]
    nonfinite = sum(e.nonfinite or 0 for e in errors)
    parts = ([f"rel {_err(max(rel))}"] if rel else []) + ([f"cos {format_significant(min(cos), 6)}"] if cos else []) + ([f"top1 {format_significant(min(top1), 4)}"] if top1 else [])
    return ", ".join(parts + ([f"{nonfinite} non-finite"] if nonfinite else [])) or "–"


def _stats_table(columns: Sequence[tuple[str, ModelFacts]]) -> str:
    """Model statistics side by side (check's model and baseline, compare's a and b)."""
    dtypes = sorted({k for _, m in columns for k in (m.weight_bytes_by_dtype or {})})
    rows = [("path", *[Markup(_path(m.path)) for _, m in columns]),
            ("file size", *[_bytes(m.file_bytes) for _, m in columns]),
            ("nodes", *[format_count(m.nodes) for _, m in columns]),
            ("parameters", *[format_si(m.parameters) for _, m in columns])]
    rows += [(f"weights {d}", *[_bytes((m.weight_bytes_by_dtype or {}).get(d)) for _, m in columns]) for d in dtypes]
    if any(m.config for _, m in columns):
        rows.append(("runtime settings", *[Markup(_path(m.config)) if m.config else "defaults" for _, m in columns]))
    return _table(["", *[name for name, _ in columns]], rows, numeric=tuple(range(1, len(columns) + 1)))


def _comparison_charts(prefix: str, names: tuple[str, str], a: ModelFacts, b: ModelFacts) -> tuple[str, str]:
    """Weight bytes by dtype and by op type, and op counts, of two models (before/after, baseline/model, A/B)."""
    series = [(names[0], "before"), (names[1], "after")]
    sizes = ""
    for key, title, bytes_a, bytes_b in (("dtype", "By dtype", a.weight_bytes_by_dtype, b.weight_bytes_by_dtype),
                                         ("optype", "By op type", a.weight_bytes_by_op_type, b.weight_bytes_by_op_type)):
        chart = bar_chart(f"{prefix}-{key}", f"weight bytes {title.lower()}", size_rows(bytes_a, bytes_b), series, "bytes")
        sizes += f"<h3>{title}</h3>" + (chart or _not_run("No weights."))
    counts_a, counts_b = a.op_counts or {}, b.op_counts or {}
    pairs = [(op, counts_a.get(op, 0), counts_b.get(op, 0)) for op in sorted(set(counts_a) | set(counts_b))]
    ops = '<p class="muted">Every op type whose count changed, and the most frequent others.</p>' + bar_chart(f"{prefix}-ops", "op counts", op_rows(pairs), series)
    return sizes, ops


def _footer(doc: Document) -> str:
    tool, machine = doc.tool or {}, doc.machine or {}
    versions = ", ".join(f"{k} {v}" for k, v in tool.items())
    cpu = machine.get("cpu_model") or machine.get("cpu")
    cores = machine.get("cpu_count")
    items = [("created", doc.created), ("tools", versions), ("schema", doc.schema_version),
             ("CPU", f"{cpu or '?'}" + (f", {cores} cores ({machine.get('cpu_affinity')} usable)" if cores else "")),
             ("instruction sets", ", ".join(machine.get("cpu_isa") or [])), ("platform", machine.get("platform")),
             ("python / numpy / onnxruntime", " / ".join(str(machine.get(k, "?")) for k in ("python", "numpy", "onnxruntime")) if machine else "")]
    seconds = doc.seconds
    if isinstance(seconds, Mapping):
        items.append(("seconds", ", ".join(f"{k} {format_significant(v)}" for k, v in seconds.items())))
    return f"<footer>{_kv(items)}</footer>"


def _page(title: str, body: str, doc: Document) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="referrer" content="no-referrer"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>{body}{_footer(doc)}</main></body></html>\n")


def _nav(items: Sequence[tuple[str, str]]) -> str:
    return "<nav>" + "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t in items) + "</nav>"


def _warnings(items: Sequence[str]) -> str:
    if not items:
        return ""
    return '<div class="warnings" id="warnings"><h2>Warnings</h2><ul>' + "".join(f"<li>{escape(w)}</li>" for w in items) + "</ul></div>"


def _name(path) -> str:
    return str(path).replace("\\", "/").rsplit("/", 1)[-1] if path else "model"


# -- kind "optimize" ------------------------------------------------------------------------------


def _headline(doc: RunReport) -> str:
    before, after, tuning, verification = doc.input, doc.output, doc.tuning, doc.verification
    cards = []
    if tuning:
        m = tuning.measured or {}
        speedup, noise = tuning.speedup, tuning.noise
        within = is_finite(speedup) and abs(speedup - 1) <= noise
        # speedup_vs_defaults is the ratio of the minimum latencies (the tuner's score)
        sub = f"min {format_ms(m.get('baseline_min_ms'))} → {format_ms(m.get('min_ms'))}" + (f"; within the noise ({noise:.0%})" if within else "")
        cards.append(_card("speed vs original", format_ratio(speedup), sub, "" if within or not is_finite(speedup) else ("ok" if speedup > 1 else "bad")))
    else:
        cards.append(_card("speed vs original", "not tuned", "no latency measured"))
    cards.append(_card("nodes", f"{format_count(before.nodes)} → {format_count(after.nodes)}", format_change(before.nodes, after.nodes)))
    cards.append(_card("file size", f"{_bytes(before.file_bytes)} → {_bytes(after.file_bytes)}", format_change(before.file_bytes, after.file_bytes, _bytes)))
    status = verification.status or "not run"
    outputs = verification.outputs or []
    cards.append(_card("verification", status, f"{len(outputs)} output(s)" if outputs else verification.reason or "",
                       {"passed": "ok", "failed": "bad"}.get(status, "")))
    lossy_label = doc.lossy.chosen_label if doc.lossy else None
    tuned_label = tuning.chosen.get("label") if tuning and tuning.chosen else None
    cards.append(_card("ships", str(doc.shipped_variant or doc.level or "–"), " · ".join(x for x in (lossy_label, tuned_label) if x)))
    return '<div class="cards" id="headline">' + "".join(cards) + "</div>"


def _before_after(doc: RunReport) -> str:
    before, after = doc.input, doc.output
    rows = [("path", Markup(_path(before.path)), Markup(_path(after.path)), "")]
    for label, a, b, show in (("nodes", before.nodes, after.nodes, format_count), ("file size", before.file_bytes, after.file_bytes, _bytes),
                              ("initializer bytes", before.initializer_bytes, after.initializer_bytes, _bytes)):
        rows.append((label, show(a), show(b), format_change(a, b, show)))
    dtypes_before, dtypes_after = before.weight_bytes_by_dtype or {}, after.weight_bytes_by_dtype or {}
    for dtype in sorted(set(dtypes_before) | set(dtypes_after)):
        a, b = dtypes_before.get(dtype, 0), dtypes_after.get(dtype, 0)
        rows.append((f"weights {dtype}", _bytes(a), _bytes(b), format_change(a, b, _bytes)))
    body = _table(["", "before", "after", "change"], rows, numeric=(1, 2, 3), table_id="before-after")
    extra = [("level", doc.level), ("external data", after.external_data), ("runtime settings", doc.config),
             ("ops introduced", _pairs(doc.introduced_ops)),
             ("initializer inputs made constants", ", ".join(map(str, doc.converted_initializer_inputs or []))),
             ("outputs kept (pruned the rest)", ", ".join(map(str, doc.pruned_outputs or [])))]
    return _section("summary", "Before and after", body + _kv(extra))


def _key(candidate: Mapping) -> str:
    return f"{candidate.get('variant')} | {candidate.get('label')}"


def _tuning_rows(tuning: TuningSection) -> list:
    """The latency chart's rows: the final round (which decides), then every other candidate the search timed."""
    m, final = tuning.measured or {}, {k: v for k, v in (tuning.final or {}).items() if v}
    chosen = _key(tuning.chosen or {})
    # The reference (the original under onnxruntime's defaults) is not named: it is the final entry with the baseline's figures.
    baseline = next((k for k, s in final.items() if k != "control" and (s.get("median_ms"), s.get("min_ms")) == (m.get("baseline_median_ms"), m.get("baseline_min_ms"))), None)
    rows: list = []
    if final:
        rows.append(f"Final round: timed together, decides ({len(final)} configurations)")
        for key, stats in sorted(final.items(), key=lambda item: item[1].get("median_ms") or math.inf):
            role = "chosen" if key == chosen else "control" if key == "control" else "baseline" if key == baseline else ""
            rows.append(("control (a second copy of the baseline)" if key == "control" else key, stats, role))
    searched = [c for c in m.get("candidates") or [] if c.get("min_ms") is not None and _key(c) not in final]
    if searched:
        rows.append(f"Search: each other candidate's last timing ({len(searched)})")
        rows += [(_key(c), c, f"out at rung {c['eliminated_at_rung']}" if c.get("eliminated_at_rung") else "") for c in sorted(searched, key=lambda c: c.get("median_ms") or math.inf)]
    return rows


def _why_untimed(candidate: Mapping) -> str:
    if candidate.get("error"):
        return f"failed: {candidate['error']}"
    rung = candidate.get("eliminated_at_rung")
    if rung == 0:
        return "never timed: ruled out before the first rung (its graph lost the variant stage, or no budget left)"
    return f"eliminated at rung {rung}" if rung else "not timed"


def _decision_table(tuning: TuningSection) -> str:
    """The decision record's timed candidates: speed against the preferred one with its interval, outcome, stage."""
    timed = [c for c in tuning.candidates if c.get("outcome") != "untimed"]
    if not timed:
        return ""
    rows = [(_key(c), tuning.speed_vs_preferred(c), format_ms(c.get("median_ms")), c.get("outcome"), c.get("stage")) for c in timed]
    classes = ["ok" if c.get("outcome") == "win" else "fail" if c.get("outcome") == "failed" else "" for c in timed]
    return "<h3>Decision</h3>" + _table(["candidate", "vs preferred (interval)", "median", "outcome", "stage"], rows, numeric=(1, 2), row_classes=classes, table_id="decision")


def _tuning(doc: RunReport) -> str:
    tuning = doc.tuning
    if not tuning:
        return _section("tuning", "Tuning", _not_run("Tuning not run: no runtime settings or graph variants were timed."))
    m, final = tuning.measured or {}, tuning.final or {}
    body = f'<p class="decision"><strong>{escape(tuning.sentence)}</strong></p>'
    if doc.shipped_variant not in (doc.level, "optimized") and doc.shipped_reason:
        body += f"<p>Ships the {escape(doc.shipped_variant)} graph, not the {escape(doc.level)} output: {escape(doc.shipped_reason)}</p>"
    body += _kv([("objective", m.get("objective")), ("budget", tuning.budget_summary),
                 ("speedup vs original under defaults (paired)", format_ratio(m.get("speedup_vs_defaults"))),
                 ("noise (control vs preferred)", f"{m['noise']:.1%}" if is_finite(m.get("noise")) else None), ("per call", m.get("per_call")),
                 ("chosen", _key(tuning.chosen or {})), ("inputs", m.get("inputs")), ("batch", m.get("batch"))])
    body += _decision_table(tuning)
    body += latency_chart("chart-tuning", "latency per configuration: bar to the median, whisker from min to p90", _tuning_rows(tuning))
    body += '<p class="muted">Bar: median latency. Whisker and figures in brackets: minimum – p90. Highlighted: the configuration that ships.</p>'
    untimed = [c for c in m.get("candidates") or [] if c.get("min_ms") is None and _key(c) not in final]
    if untimed:
        rows = [(c.get("variant"), c.get("label"), _why_untimed(c)) for c in untimed]
        body += f"<h3>Not timed or failed ({len(untimed)})</h3>" + _table(["variant", "configuration", "why"], rows, row_classes=["fail" if c.get("error") else "idle" for c in untimed], table_id="untimed")
    search = m.get("search") or {}
    if search:
        rungs = [(r.get("stage"), r.get("rung", ""), r.get("candidates"), r.get("rounds"), format_significant(r.get("seconds"))) for r in search.get("rungs") or []]
        body += f"<h3>Search</h3><p>{escape(search.get('mode'))}: {escape(format_significant(search.get('seconds')))} s (budget {escape(format_significant(search.get('budget_s')))} s).</p>"
        body += _table(["stage", "rung", "candidates", "rounds", "seconds (cumulative)"], rungs, numeric=(1, 2, 3, 4)) if rungs else ""
        if search.get("skipped"):
            body += '<p class="muted">Left out of the search:</p><ul>' + "".join(f"<li>{escape(s)}</li>" for s in search["skipped"]) + "</ul>"
    return _section("tuning", "Tuning", body)


def _unavailable(section_id: str, title: str, section: AnalysisSection | ProfileSection | None, what: str) -> str | None:
    """The section for a figure that was not made ("Profile not run.") or failed; None when it is there."""
    if not section:
        return _section(section_id, title, _not_run(f"{what} not run."))
    if section.error:
        return _section(section_id, title, _not_run(f"{what} failed: {section.error}"))
    return None


def _profile(doc: RunReport) -> str:
    profile = doc.profile
    unavailable = _unavailable("profile", "Time by op type", profile, "Profile")
    if unavailable:
        return unavailable
    by_type = sorted(profile.by_op_type or [], key=lambda r: -(r.mean_ms or 0))
    rows = [(r.op_type, [r.mean_ms], f"{format_ms(r.mean_ms)} · {format_percent(r.share or 0)} · {r.nodes} node(s)") for r in by_type[:TOP_OPS]]
    rest = by_type[TOP_OPS:]
    if rest:
        ms, share = sum(r.mean_ms or 0 for r in rest), sum(r.share or 0 for r in rest)
        rows.append((f"other ({len(rest)} op types)", [ms], f"{format_ms(ms)} · {format_percent(share)}"))
    body = f"<p>{escape(profile.runs)} profiled runs under the shipped settings: {escape(format_ms(profile.run_ms))} per run, {escape(format_ms(profile.kernel_ms))} in kernels.</p>"
    body += bar_chart("chart-profile", "mean kernel time by op type", rows, [("mean time", "after")], "ms")
    nodes = profile.nodes or []
    if nodes:
        body += f"<h3>Slowest nodes (top {min(TOP_ROWS, len(nodes))} of {len(nodes)})</h3>"
        body += _table(["node", "op type", "provider", "mean", "share"], [(n.name, n.op_type, n.provider, format_ms(n.mean_ms), format_percent(n.share or 0)) for n in nodes[:TOP_ROWS]], numeric=(3, 4))
    return _section("profile", "Time by op type", body)


def _passes(doc: RunReport) -> str:
    passes, dropped = doc.passes or [], {d.name: d.reason for d in doc.dropped_passes or []}
    if not passes:
        return _section("passes", "Passes", _not_run("No passes ran."))
    rows, classes = [], []
    for p in passes:
        declined = "; ".join(f"{reason} ×{count}" for reason, count in (p.declined or {}).items())
        rows.append((p.name, _pairs(p.changes) or "–", Markup(f"<small>{escape(declined)}</small>") if declined else "", format_significant((p.seconds or 0) * 1000), dropped.get(p.name, "")))
        classes.append("fail" if p.name in dropped else ("" if p.changes else "idle"))
    return _section("passes", "Passes", _table(["pass", "changes", "declined", "ms", "dropped because"], rows, numeric=(3,), row_classes=classes, table_id="passes-table"))


def _error_stats(outputs) -> str:
    """Element-wise error percentiles per output and the smallest tolerance that passes."""
    rows = error_stat_rows(outputs)
    if not rows:
        return ""
    return "<h3>Error statistics (element-wise)</h3>" + _table(ERROR_STAT_COLUMNS, rows, numeric=tuple(range(1, len(ERROR_STAT_COLUMNS) - 1)), table_id="error-stats")


def _verification(doc: RunReport) -> str:
    v = doc.verification
    status = v.status or "not run"
    outputs = v.outputs or []
    head = f"<p>{_badge(status == 'passed' if status in ('passed', 'failed') else None, status)} {escape(v.reason or '')}</p>"
    head += _kv([("inputs", v.inputs_source), ("tolerance", _pairs(v.tolerance)), ("of", v.of)])
    if status == "not run" and not outputs:
        return _section("verification", "Verification", _not_run("Verification not run."))
    if not outputs:
        return _section("verification", "Verification", head)
    rows = [(o.name, _err(o.max_abs), _err(o.max_rel), format_significant(o.cosine, 6), _badge(o.passed), o.note or "") for o in outputs]
    return _section("verification", "Verification", head + _table(["output", "max abs", "max rel", "cosine", "", "note"], rows, numeric=(1, 2, 3), row_classes=["" if o.passed else "fail" for o in outputs])
                    + _error_stats(outputs))


def _lossy(doc: RunReport) -> str:
    lossy = doc.lossy
    if not lossy:
        return _section("lossy", "Lossy variants", _not_run("No lossy variant tried (quantization, fp16 and pruning are opt-in)."))
    rows = []
    for v in lossy.variants or []:
        excluded = v.excluded_nodes or []
        speed = f"{format_ratio(v.speedup_vs_lossless)} median, {format_ratio(v.speedup_vs_lossless_min)} min" if is_finite(v.speedup_vs_lossless) else "–"
        rows.append((v.label or v.method, _badge({"kept": True, "failed": False}.get(v.status), v.status), v.reason or "",
                     _worst(v.errors), speed, ", ".join(f"{k} {_bytes(b)}" for k, b in (v.weight_bytes_by_dtype or {}).items()),
                     f"{len(excluded)}: " + ", ".join(str(n.get("name")) for n in excluded[:5]) + (" …" if len(excluded) > 5 else "") if excluded else ""))
    lossless = lossy.lossless_latency_ms or {}
    body = _kv([("error budget", lossy.budget), ("ships", lossy.chosen or "none (the lossless model ships)"),
                ("lossless median", format_ms(lossless.get("median_ms")) if lossless else None), ("noise", format_percent(lossy.noise) if is_finite(lossy.noise) else None)])
    body += _table(["variant", "status", "reason", "worst errors", "speed vs lossless", "weights", "nodes left float"], rows, table_id="lossy-table")
    body += "".join(f'<p class="muted">{escape(n)}</p>' for n in lossy.notes or [])
    return _section("lossy", "Lossy variants", body)


def _analysis(doc: RunReport) -> str:
    a = doc.analysis
    unavailable = _unavailable("analysis", "Cost model", a, "Analysis")
    if unavailable:
        return unavailable
    work = a.work_flops
    body = _kv([("work", format_si(work, "FLOPs")), ("span (critical path)", format_si(a.span_flops, "FLOPs") + (f", {a.critical_path_length} nodes" if a.critical_path_length else "")),
                ("parallelism (work / span)", format_significant(a.parallelism)), ("inter-op speedup bound", format_ratio(a.inter_op_speedup_bound)),
                ("parallel regions", len(a.regions or [])), ("nodes of unknown cost", a.unknown_cost_nodes)])
    top = a.top_nodes or []
    if top:
        share = (lambda f: format_percent(f / work)) if is_finite(work) and work > 0 else (lambda f: "–")
        body += "<h3>Costliest nodes</h3>" + _table(["node", "op type", "FLOPs", "share of work", "bytes moved"],
                                                     [(n.name, n.op_type, format_si(n.flops), share(n.flops or 0), _bytes(n.bytes_moved)) for n in top[:TOP_ROWS]], numeric=(2, 3, 4))
    return _section("analysis", "Cost model", body)


def _provenance(origin: Provenance | None) -> str:
    """Which inputs the models ran on, and each model's runtime settings."""
    if not origin:
        return ""
    items = [("inputs", origin.inputs), *[(f"settings, {label}", text) for label, text in (origin.settings or {}).items()]]
    return _section("provenance", "Provenance", _kv(items))


def _overview(summary: Summary | None) -> str:
    """The summary table (interface, IR, opsets, every op type, size, elapsed), one column per model."""
    if not summary or not summary.models:
        return ""
    table = _table(["", *[m.label for m in summary.models]], [(label, *cells) for label, cells in summary.rows()], table_id="overview-table")
    return _section("overview", "Summary", table)


def _optimize(doc: RunReport) -> str:
    before, after = doc.input, doc.output
    warnings = [f"pass {d.name} was dropped: {d.reason}" for d in doc.dropped_passes or []] + [str(w) for w in doc.warnings or []]
    if doc.verification.status == "failed":
        warnings.insert(0, f"verification failed: {doc.verification.reason or 'see below'}")
    head = f"<header><h1>Optimized {escape(_name(before.path))}</h1><p>{_path(before.path)} → {_path(after.path)}</p>"
    head += _nav([("overview", "summary"), ("summary", "before/after"), ("tuning", "tuning"), ("profile", "time"), ("sizes", "sizes"), ("ops", "ops"), ("passes", "passes"),
                  ("verification", "verification"), ("lossy", "lossy"), ("analysis", "cost model")]) + "</header>"
    sizes, ops = _comparison_charts("chart", ("before", "after"), before, after)
    return (head + _headline(doc) + _warnings(warnings) + _overview(doc.summary) + _provenance(doc.provenance) + _before_after(doc) + _tuning(doc) + _profile(doc) + _section("sizes", "Weight bytes", sizes)
            + _section("ops", "Op counts", ops) + _passes(doc) + _verification(doc) + _lossy(doc) + _analysis(doc))


# -- kinds "check" and "compare" ------------------------------------------------------------------


def _gate_value(value, unit: str) -> str:
    if not is_number(value):
        return "–" if value is None else str(value)
    if unit == "bytes":
        return _bytes(value)
    if unit == "ms":
        return format_ms(value)
    if unit == "ratio":
        return f"{format_significant(value)}x"
    text = f"{value:,}" if isinstance(value, int) else f"{value:.4g}"
    return f"{text} {unit or ''}".rstrip()


def _latency_section(latency: Mapping | None, rows: list, facts: list, verdict: str = "") -> str:
    if not latency:
        return _section("latency", "Latency", _not_run("Latency not measured."))
    chart = latency_chart("chart-latency", "latency: bar to the median, whisker from min to p90", [r for r in rows if r[1]])
    noise = [("noise (control vs reference)", f"{latency['noise']:.1%}" if is_finite(latency.get("noise")) else None)]
    legend = '<p class="muted">Bar: median. Whisker and figures in brackets: minimum – p90. Timed together in rotated blocks.</p>'
    return _section("latency", "Latency", (f"<p><strong>{escape(verdict)}</strong></p>" if verdict else "") + chart + legend + _kv(facts + noise))


def _check(doc: CheckReport) -> str:
    model, baseline, gates = doc.model, doc.baseline, doc.gates or []
    failed = doc.failed_gates
    body = f"<header><h1>Check {escape(_name(model.path))}</h1><p>{_path(model.path)}" + (f" against {_path(baseline.path)}" if baseline else "") + "</p></header>"
    body += f'<div id="verdict" class="banner {"ok" if doc.passed else "bad"}">{"PASSED" if doc.passed else "FAILED"}: {len(gates) - len(failed)} of {len(gates)} gates passed</div>'
    body += _overview(doc.summary) + _provenance(doc.provenance)
    rows = [(g.gate, g.measured_text or _gate_value(g.measured, g.unit or ""), g.limit_text or _gate_value(g.limit, g.unit or ""), _badge(bool(g.passed)), g.detail or "") for g in gates]
    body += _section("gates", "Gates", _table(["gate", "measured", "limit", "", "detail"], rows, numeric=(1, 2), row_classes=["" if g.passed else "fail" for g in gates], table_id="gates-table")
                     if gates else _not_run("No gates were set."))
    latency = doc.latency or {}
    body += _latency_section(doc.latency, [("model", latency.get("model"), "subject"), ("baseline", latency.get("baseline"), "baseline"), ("control (a second copy)", latency.get("control"), "control")],
                             [("model / baseline median", format_ratio(latency.get("ratio_median"))), ("model / baseline minimum", format_ratio(latency.get("ratio_min")))])
    body += _section("errors", "Output errors", (_kv([("inputs", doc.inputs)]) + _errors_table(doc.errors) + _error_stats(doc.errors)) if doc.errors else _not_run("Outputs not compared (no baseline)."))
    columns = ([("baseline", baseline)] if baseline else []) + [("model", model)]
    body += _section("model", "Model", _stats_table(columns))
    if baseline:
        sizes, ops = _comparison_charts("chart-check", ("baseline", "model"), baseline, model)
        return body + _section("sizes", "Weight bytes", sizes) + _section("ops", "Op counts", ops)
    dtypes = [(k, [v], _bytes(v)) for k, v in (model.weight_bytes_by_dtype or {}).items()]
    return body + _section("sizes", "Weight bytes by dtype", bar_chart("chart-check-dtype", "weight bytes by dtype", dtypes, [("model", "after")], "bytes") or _not_run("No weights."))


def _compare(doc: CompareReport) -> str:
    a, b, size, latency, outputs = doc.a, doc.b, doc.size, doc.latency, doc.outputs or []
    body = f"<header><h1>Compare {escape(_name(a.path))} and {escape(_name(b.path))}</h1><p>A {_path(a.path)}<br>B {_path(b.path)}</p></header>"
    rel = [o.rel for o in outputs if is_number(o.rel)]
    cards = [_card("size B / A", format_ratio(size.ratio), f"{_bytes(size.a_bytes)} → {_bytes(size.b_bytes)}"),
             _card("latency B / A", format_ratio(latency.get("ratio_median")) + " median" if latency else "not measured", (latency or {}).get("verdict") or ""),
             _card("worst output error", f"rel {_err(max(rel))}" if rel else "–", f"{_worst(outputs)}; {len(outputs)} output(s)" if outputs else "outputs not compared"),
             _card("op types changed", str(len(doc.changed_ops)), f"nodes {format_count(a.nodes)} → {format_count(b.nodes)}")]
    body += '<div class="cards" id="headline">' + "".join(cards) + "</div>" + _overview(doc.summary) + _provenance(doc.provenance)
    timing = latency or {}
    body += _latency_section(latency, [("A", timing.get("a"), "before"), ("B", timing.get("b"), "subject"), ("control (a second copy of A)", timing.get("control"), "control")],
                             [("B / A median", format_ratio(timing.get("ratio_median"))), ("B / A minimum", format_ratio(timing.get("ratio_min")))], timing.get("verdict") or "")
    body += _section("outputs", "Outputs", (_kv([("inputs", doc.inputs)]) + _errors_table(outputs) + _error_stats(outputs)) if outputs else _not_run("Outputs not compared."))
    sizes, ops = _comparison_charts("chart-compare", ("A", "B"), a, b)
    return body + _section("models", "Models", _stats_table([("A", a), ("B", b)])) + _section("sizes", "Weight bytes", sizes) + _section("ops", "Op counts", ops)


def render_html(document: Document | dict) -> str:
    """The document (typed, or its JSON-ready dict) as one self-contained HTML page (no script, no fetches)."""
    doc = document_from_dict(document)
    if isinstance(doc, RunReport):
        title, body = f"optimize: {_name(doc.input.path)}", _optimize(doc)
    elif isinstance(doc, CheckReport):
        title, body = f"check: {_name(doc.model.path)} {'passed' if doc.passed else 'FAILED'}", _check(doc)
    elif isinstance(doc, CompareReport):
        title, body = f"compare: {_name(doc.a.path)} vs {_name(doc.b.path)}", _compare(doc)
    else:
        title = f"optimize report ({doc.kind})"
        body = f"<h1>{escape(title)}</h1><pre>{escape(json.dumps(doc.to_dict(), indent=2, default=str))}</pre>"
    return _page(title, body, doc)
