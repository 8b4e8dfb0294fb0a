"""Terminal rendering (rich): the report documents of `run`, `check` and `compare`, and the results of
`tune`, `profile`, `inspect`, `partition` and `passes`.

The run, check and compare tables are made from their typed document (`optimizer.reports.document`),
the same object the JSON, Markdown and HTML reports are made from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from optimizer.inspection import Inspection
from optimizer.lossy import LossyResult
from optimizer.profile import ProfileResult
from optimizer.tune import TuningResult
from optimizer.reports.document import (
    ERROR_STAT_COLUMNS, CheckReport, CompareReport, LossySection, LossyVariantRow, ModelFacts, PassRow, ProfileSection, Provenance, RunReport, TuningSection, Verification,
    document_from_dict, error_stat_rows,
)
from optimizer.reports.summary import Summary
from optimizer.units import format_bytes, format_change, format_count, format_count_change, format_error, format_flops, format_ms, format_percent

PIPED_WIDTH = 160
"""Columns of a report printed to a pipe or file without `COLUMNS` (CI logs): rich's default of 80 cut names."""

__all__ = [
    "PIPED_WIDTH", "report_console", "render_summary", "render_provenance", "render_run", "render_error_stats", "render_inspection", "render_lossy",
    "render_lossy_section", "render_tuning", "render_tuning_section", "render_profile", "render_pass_list",
    "render_manifest", "render_partitioned_run", "render_check", "render_comparison",
]


def report_console() -> Console:
    """The console reports print to: the terminal's width, `COLUMNS` when set, and when piped without
    `COLUMNS` a width wide enough that CI logs get whole rows (tables fold long names, never cut them);
    control characters from models are shown escaped (`optimizer.sanitize`)."""
    import os
    import sys

    from optimizer.sanitize import SanitizingConsole

    width = None
    if not os.environ.get("COLUMNS", "").isdigit() and not sys.stdout.isatty():
        width = PIPED_WIDTH
    return SanitizingConsole(highlight=False, width=width)


def render_run(report: RunReport, console: Console, *, verbose: bool = False) -> None:
    """The `run` document: size, op types, passes, verification per output, lossy variants, tuning, warnings."""
    source = escape(report.input.path) if report.input.path else "<model>"
    target = escape(report.output.path) if report.output.path else "(not written)"
    console.print(f"[bold]{source}[/] -> [bold]{target}[/]  (level {report.level})")
    render_summary(report.summary, console)
    render_provenance(report.provenance, console)
    _render_sizes(report.input, report.output, console, verbose=verbose)
    _render_passes(report.passes, console, verbose=verbose)
    _render_verification(report.verification, console, "" if report.provenance else report.verification.inputs_source)
    if report.pruned_outputs:
        pruned = report.pruned_outputs
        console.print(f"[cyan]--prune-outputs:[/] removed {pruned.get('outputs_removed', 0)} output(s), {pruned.get('nodes_removed', 0)} node(s), {pruned.get('initializers_removed', 0)} initializer(s)")
    if report.lossy is not None:
        render_lossy_section(report.lossy, console)
    if report.tuning:
        render_tuning_section(report.tuning, console, verbose=verbose)
        if report.shipped_variant not in (report.level, "optimized"):
            made = f" ({(report.optimized or {}).get('nodes')} nodes)" if (report.optimized or {}).get("nodes") is not None else ""
            console.print(
                f"[cyan]shipped:[/] the {escape(str(report.shipped_variant))} graph ({report.output.nodes} nodes), not the {escape(str(report.level))} "
                f"output{made}: {escape(report.shipped_reason or '')}"
            )
        if report.config:
            console.print(f"configuration: {escape(report.config)}")
    if report.introduced_ops:
        listed = ", ".join(f"{op} {count}" for op, count in sorted(report.introduced_ops.items()))
        console.print(f"[cyan]onnxruntime-only ops introduced:[/] {escape(listed)} (the output needs onnxruntime)")
    _render_profile_line(report.profile, console)
    _render_warnings(report.warnings, console)
    seconds = sum(report.seconds.values())
    verdict = "[green]verified[/]" if report.verified else "[yellow]not verified[/]"
    if report.lossy is not None and report.lossy.chosen_variant is not None:
        verdict += f" (lossless passes); {escape(report.lossy.chosen_variant.label)} within the error budget ({escape(str(report.lossy.budget))})"
    console.print(f"{verdict}; {report.input.nodes} -> {report.output.nodes} nodes in {seconds:.2f} s")


def render_summary(summary: Summary | None, console: Console) -> None:
    """The one-glance table (onnxslim's): interface, IR, opsets, every op type, nodes, size, elapsed, one column per model."""
    if not summary or not summary.models:
        return
    table = _table("Summary", ["", *[model.label for model in summary.models]])
    ops = set().union(*(model.op_counts or {} for model in summary.models))
    for label, cells in summary.rows():
        differs = label in ops and len(set(cells)) > 1
        table.add_row(escape(label), *[f"[bold]{escape(cell)}[/]" if differs else escape(cell) for cell in cells])
    console.print(table)


def render_provenance(origin: Provenance | None, console: Console) -> None:
    """Which inputs the models ran on, and each model's runtime settings."""
    if not origin:
        return
    console.print(f"[cyan]inputs:[/] {escape(origin.inputs)}")
    if origin.settings:
        console.print("[cyan]settings:[/] " + escape("; ".join(f"{label}: {text}" for label, text in origin.settings.items())))


def _table(title: str, columns: Sequence[str], right: Sequence[str] = ()) -> Table:
    """A report table (title as rich markup, never wrapped) whose cells wrap at spaces and fold words too
    long for their column instead of cutting them; the `right` columns align right (figures)."""
    from rich.text import Text

    table = Table(title=title, title_justify="left", min_width=Text.from_markup(title).cell_len)  # a title never wraps inside its table
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left", overflow="fold")
    return table


def _render_warnings(warnings: list[str], console: Console) -> None:
    for warning in warnings or []:
        console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)


def _render_profile_line(profile: ProfileSection | None, console: Console) -> None:
    """The written model's time by op type under its settings, when it was profiled."""
    if profile is None:
        return
    if profile.by_op_type:
        shares = ", ".join(f"{row.op_type} {format_percent(row.share or 0, 0)}" for row in profile.by_op_type[:6])
        console.print(f"time by op type ({profile.runs} profiled runs, {format_ms(profile.run_ms)} each): {escape(shares)}")
    elif profile.error:
        console.print(f"profile: {escape(profile.error)}")


def _render_sizes(before: ModelFacts, after: ModelFacts, console: Console, *, verbose: bool) -> None:
    """The model table: nodes, bytes, weights by dtype, and their change (every op type is in the summary)."""
    size = _table("Model", ("", "before", "after", "change"), right=("before", "after", "change"))
    size.add_row("nodes", format_count(before.nodes), format_count(after.nodes), format_change(before.nodes, after.nodes))
    size.add_row("initializer bytes", format_bytes(before.initializer_bytes), format_bytes(after.initializer_bytes), format_change(before.initializer_bytes, after.initializer_bytes, format_bytes))
    size.add_row("file size", format_bytes(before.file_bytes), format_bytes(after.file_bytes), format_change(before.file_bytes, after.file_bytes, format_bytes))
    if verbose or set(before.weight_bytes_by_dtype) != set(after.weight_bytes_by_dtype):
        for dtype in sorted(set(before.weight_bytes_by_dtype) | set(after.weight_bytes_by_dtype)):
            b, a = before.weight_bytes_by_dtype.get(dtype, 0), after.weight_bytes_by_dtype.get(dtype, 0)
            size.add_row(f"  {dtype} weights", format_bytes(b), format_bytes(a), format_change(b, a, format_bytes))
    console.print(size)


def _render_passes(passes: list[PassRow], console: Console, *, verbose: bool) -> None:
    table = _table("Passes", ("pass", "runs", "changes", "time"), right=("runs", "time"))
    for entry in passes:
        changes = escape(", ".join(f"{k} {v}" for k, v in entry.changes.items()) or "-")
        if entry.dropped:
            changes = f"[red]dropped[/]: {escape(entry.dropped)}"
        elif verbose and entry.declined:
            changes += " [dim](declined: " + escape(", ".join(f"{k} {v}" for k, v in entry.declined.items())) + ")[/]"
        table.add_row(entry.name, str(entry.runs), changes, f"{entry.seconds * 1000:.1f} ms")
    console.print(table)


def _render_verification(verification: Verification, console: Console, inputs: str) -> None:
    """The check against the original per output (`inputs`: what it ran on, when no provenance line said so)."""
    if verification.status == "not run":
        console.print("[yellow]verification: not run (--no-verify)[/]")
        return
    if verification.status == "skipped":
        console.print(f"[yellow]verification skipped:[/] {escape(verification.reason)}")
        return
    tolerance = verification.tolerance or {}
    table = _table(escape(f"Verification in onnxruntime (rtol {tolerance.get('rtol'):g}, atol {tolerance.get('atol'):g})"),
                   ("output", "max abs", "max rel", "cosine", "result"), right=("max abs", "max rel", "cosine", "result"))
    for output in verification.outputs:
        status = "[green]ok[/]" if output.passed else f"[red]FAIL[/] {escape(output.note)}"
        table.add_row(escape(output.name), format_error(output.max_abs), format_error(output.max_rel), f"{output.cosine:.6f}", status)
    if verification.outputs:
        console.print(table)
        if inputs:
            console.print(f"  on {escape(inputs)}", soft_wrap=True)
    render_error_stats(verification.outputs, console)
    if verification.status == "failed":
        console.print(f"[red]verification failed:[/] {escape(verification.reason)}")


def render_error_stats(outputs, console: Console) -> None:
    """Element-wise error percentiles per output and the smallest tolerance that passes (polygraphy's figures)."""
    rows = error_stat_rows(outputs)
    if not rows:
        return
    table = _table("Error statistics per output (element-wise)", ERROR_STAT_COLUMNS, right=ERROR_STAT_COLUMNS[1:-1])
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


def _worst_errors(variant: LossyVariantRow) -> str:
    if not variant.errors:
        return "-"
    rel = max(e.rel for e in variant.errors)
    cos = min(e.cos for e in variant.errors)
    top1 = [e.top1 for e in variant.errors if e.top1 is not None]
    text = f"rel {format_error(rel)}, cos {cos:.4f}"
    return text + (f", top1 {min(top1):.3f}" if top1 else "")


def render_lossy(result: LossyResult, console: Console) -> None:
    """The lossy stage's table (builds its `LossySection`; see `render_lossy_section`)."""
    render_lossy_section(LossySection.from_dict(result.to_dict()), console)


def render_lossy_section(lossy: LossySection, console: Console) -> None:
    """Each lossy variant tried or skipped: worst error per metric, speed against the lossless model, the verdict."""
    table = _table(escape(f"Lossy variants (error budget {lossy.budget}; speed against the lossless model)"), ("variant", "worst error", "speed", "left float", "verdict"), right=("speed", "left float"))
    colours = {"kept": "green", "discarded": "yellow", "failed": "red", "skipped": "dim"}
    for variant in lossy.variants:
        speed = f"{variant.speedup_vs_lossless:.2f}x" if variant.speedup_vs_lossless is not None else "-"
        verdict = variant.reason or variant.status
        table.add_row(
            escape(variant.label), _worst_errors(variant), speed, str(len(variant.excluded_nodes)) if variant.excluded_nodes else "-",
            f"[{colours.get(variant.status, 'white')}]{escape(verdict)}[/]",
        )
    console.print(table)
    for variant in lossy.variants:
        excluded = variant.excluded_nodes
        if excluded:
            names = ", ".join(f"{n['name']} ({n['op_type']}, +{n['sensitivity']:.2g})" for n in excluded[:8])
            more = f" and {len(excluded) - 8} more" if len(excluded) > 8 else ""
            console.print(f"  {escape(variant.label)} left float, most sensitive first (relative error each adds): {escape(names + more)}")
        for note in variant.notes:
            if "pruned" in note:
                console.print(f"  {escape(variant.label)}: {escape(note)}")
    chosen = lossy.chosen_variant
    if chosen is not None:
        errors = ", ".join(f"{e.name}: rel {format_error(e.rel)} cos {e.cos:.4f}" + (f" top1 {e.top1:.3f}" if e.top1 is not None else "") for e in chosen.errors)
        console.print(f"[green]shipping {escape(chosen.label)}[/] ({escape(errors)})")
    else:
        console.print("[yellow]no lossy variant ships[/]")


def render_tuning(result: TuningResult, console: Console, *, verbose: bool = False, top: int = 8) -> None:
    """The tuner's decision record (see `render_tuning_section`)."""
    render_tuning_section(TuningSection.from_dict(result.to_dict()), console, verbose=verbose, top=top)


def render_tuning_section(tuning: TuningSection, console: Console, *, verbose: bool = False, top: int = 8) -> None:
    """The decision record: each candidate's speed against the preferred one (with its interval), outcome and
    stage; the choice with its figures; the sentence; the budget given and spent; the machine it holds for."""
    measured, everything = tuning.measured or {}, tuning.to_dict()
    table = Table(title=escape(f"Tuning ({measured.get('objective')}; {tuning.budget_summary})"), title_justify="left")
    for column in ("graph", "settings", "vs preferred", "min", "median", "p90", "outcome", "stage"):
        table.add_column(column, justify="left" if column in ("graph", "settings", "outcome", "stage") else "right")
    timed = [c for c in tuning.candidates if c.get("outcome") not in ("untimed",)]
    shown = timed if verbose else timed[:top]
    colours = {"win": "green", "loss": "yellow", "failed": "red", "preferred": "cyan"}
    for candidate in shown:
        outcome = candidate.get("outcome") or ""
        table.add_row(
            escape(str(candidate.get("variant"))), escape(str(candidate.get("label"))), tuning.speed_vs_preferred(candidate),
            *(format_ms(candidate.get(key), decimals=3) for key in ("min_ms", "median_ms", "p90_ms")),
            f"[{colours.get(outcome, 'white')}]{escape(outcome)}[/]", escape(candidate.get("stage") or ""),
        )
    console.print(table)
    hidden, untimed = len(timed) - len(shown), len(tuning.candidates) - len(timed)
    if hidden:
        console.print(f"  ... {hidden} more timed candidates (-v lists them)")
    if untimed:
        console.print(f"  {untimed} candidates not timed: the budget did not reach them")
    chosen = (tuning.decision or {}).get("chosen") or {}
    console.print(
        f"[bold]chosen:[/] {escape(tuning.chosen_label)} on the {escape(str(measured.get('variant')))} graph: "
        f"median {format_ms(measured.get('median_ms'), decimals=3)}, p90 {format_ms(measured.get('p90_ms'), decimals=3)}, "
        f"p99 {format_ms(measured.get('p99_ms'), decimals=3)}; {tuning.speed_vs_preferred(chosen)} vs the preferred candidate, "
        f"{tuning.speedup or 1.0:.2f}x vs the original under defaults (median {format_ms(measured.get('baseline_median_ms'), decimals=3)})"
    )
    if measured.get("throughput_per_s") is not None:
        console.print(f"throughput: {measured['throughput_per_s']:.1f}/s (defaults {measured.get('baseline_throughput_per_s') or 0:.1f}/s)")
    console.print(f"[dim]{escape(tuning.sentence)}[/]")
    for note in (tuning.decision or {}).get("notes") or []:
        console.print(f"[dim]{escape(note)}[/]")
    for reason in (everything.get("space") or {}).get("skipped") or []:
        console.print(f"[dim]not timed: {escape(reason)}[/]")
    machine = everything.get("machine") or {}
    console.print(f"[dim]measured on {escape(str(machine.get('cpu_model')))}, {machine.get('cpu_affinity') or machine.get('cpu_count')} usable cores, onnxruntime {machine.get('onnxruntime')}; inputs {escape(str(measured.get('inputs')))}. Tune again on the machine you deploy to.[/]")


def render_profile(result: ProfileResult, console: Console, top: int = 15) -> None:
    """Per-op-type and slowest-node tables of an onnxruntime profile; times are means per run."""
    console.print(f"onnxruntime profile: {result.runs} runs, {result.run_ms:.3f} ms per run, {result.kernel_ms:.3f} ms in kernels ({len(result.nodes)} nodes)")
    by_type = _table("Op types (as onnxruntime ran them, after its own fusions)", ("op type", "nodes", "ms/run", "share"), right=("nodes", "ms/run", "share"))
    for entry in result.by_op_type:
        by_type.add_row(escape(entry.op_type), str(entry.nodes), f"{entry.mean_ms:.3f}", format_percent(entry.share))
    console.print(by_type)
    shown = result.top(top)
    nodes = _table(f"Slowest nodes (top {len(shown)} of {len(result.nodes)})", ("#", "node", "op type", "provider", "ms/run", "share", "cumulative"), right=("#", "ms/run", "share", "cumulative"))
    cumulative = 0.0
    for rank, node in enumerate(shown, 1):
        cumulative += node.share
        provider = node.provider.removesuffix("ExecutionProvider")
        nodes.add_row(str(rank), escape(node.name), escape(node.op_type), escape(provider), f"{node.mean_ms:.3f}", format_percent(node.share), format_percent(cumulative))
    console.print(nodes)
    if len(result.nodes) > len(shown):
        rest = sum(n.mean_ms for n in result.nodes[len(shown):])
        console.print(f"  ... {len(result.nodes) - len(shown)} more nodes, {rest:.3f} ms/run ({1 - cumulative:.1%})")


def render_pass_list(rows: list[tuple[str, str, str]], console: Console) -> None:
    """`optimize passes`: name, level and description of each registered pass; a table on a terminal,
    one whole line per pass when piped (for grep and CI logs)."""
    if not console.is_terminal:
        width = max((len(name) for name, _, _ in rows), default=0)
        for name, level, description in rows:
            console.print(escape(f"{name:<{width}}  {level}  {description}"), soft_wrap=True)
        return
    table = _table("Passes (a level runs its passes and those of the levels below)", ("name", "level", "description"))
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


def render_inspection(result: Inspection, console: Console, *, verbose: bool = False, top: int = 12) -> None:
    """Interface, composition, cost by op type, critical path, parallelism and the parallel regions."""
    opsets = ", ".join(f"{domain} {version}" for domain, version in result.opsets.items())
    console.print(f"[bold]{escape(str(result.path))}[/]  {format_bytes(result.file_bytes)}, IR {result.ir_version}, opsets {escape(opsets)}" + (f", by {escape(result.producer)}" if result.producer else ""))
    interface = _table("Inputs and outputs", ("", "name", "dtype", "shape"))
    for kind, rows in (("input", result.inputs), ("output", result.outputs)):
        for row in rows:
            shape = "unknown" if row["shape"] is None else "[" + ", ".join(str(d) for d in row["shape"]) + "]"
            interface.add_row(kind, escape(row["name"]), str(row["dtype"]), escape(shape) + (" [cyan](dynamic)[/]" if row["dynamic"] else ""))
    console.print(interface)
    weights = ", ".join(f"{dtype} {format_bytes(count)}" for dtype, count in result.weight_bytes_by_dtype.items()) or "none"
    console.print(f"{sum(result.op_counts.values())} nodes, {result.parameters:,} parameters ({escape(weights)})")

    analysis = result.analysis
    if analysis is None:
        ops = ", ".join(f"{op} {count}" for op, count in list(result.op_counts.items())[:top])
        console.print(f"op types: {escape(ops)}")
        console.print(f"[yellow]no cost analysis:[/] {escape(result.analysis_error)}")
        return
    costs = _table(f"Cost by op type (work {format_flops(analysis.work_flops)}FLOPs" + (f"; shapes bound by {escape(str(result.input_shapes))}" if result.input_shapes else "; dynamic dims at defaults") + ")",
                   ("op", "count", "FLOPs", "share", "bytes moved"), right=("count", "FLOPs", "share", "bytes moved"))
    by_type = sorted(analysis.by_op_type.items(), key=lambda item: (-item[1]["flops"], -item[1]["count"]))
    for op, stats in by_type[: None if verbose else top]:
        share = stats["flops"] / analysis.work_flops if analysis.work_flops else 0.0
        costs.add_row(escape(op), str(stats["count"]), format_flops(stats["flops"]), format_percent(share), format_bytes(int(stats["bytes_moved"])))
    if not verbose and len(by_type) > top:
        costs.caption = f"... {len(by_type) - top} more op types (-v lists them)"
    console.print(costs)
    if verbose:
        nodes = _table("Most expensive nodes", ("node", "op", "FLOPs", "bytes moved"), right=("FLOPs", "bytes moved"))
        for node in sorted(analysis.nodes, key=lambda n: -n.flops)[:20]:
            nodes.add_row(escape(node.name), escape(node.op_type), format_flops(node.flops), format_bytes(int(node.bytes_moved)))
        console.print(nodes)
    path = analysis.critical_path
    shown = " -> ".join(path[:6]) + (f" -> ... ({len(path)} nodes)" if len(path) > 6 else "")
    console.print(f"critical path: {escape(shown)}")
    console.print(
        f"work {format_flops(analysis.work_flops)}FLOPs, span {format_flops(analysis.span_flops)}FLOPs, "
        f"average parallelism {analysis.parallelism:.2f}; inter-op parallelism could give at most {analysis.inter_op_speedup_bound:.2f}x"
    )
    if analysis.unknown_cost_nodes:
        console.print(f"[yellow]{analysis.unknown_cost_nodes} node(s) have no cost estimate[/] (op outside the cost model or shapes unknown); they count as 0")
    if not analysis.regions:
        console.print("parallel regions: none (the significant work is one chain)")
        return
    regions = _table("Parallel regions (fork -> join)", ("fork", "join", "branches", "FLOPs per branch"))
    for region in analysis.regions[: None if verbose else top]:
        flops = ", ".join(format_flops(b["flops"]) for b in region.branches)
        regions.add_row(escape(region.fork), escape(region.join), str(len(region.branches)), flops)
    console.print(regions)


def render_manifest(manifest, out_dir, console: Console) -> None:
    """The parts written by `optimize partition`: schedule step, role, nodes, FLOPs, what flows in and out."""
    table = _table(escape(f"{len(manifest.parts)} parts ({manifest.strategy}) in {out_dir}"), ("step", "part", "role", "nodes", "FLOPs", "reads", "hands on"), right=("step", "nodes", "FLOPs"))
    for part in manifest.parts:
        reads = ", ".join(part.inputs[:3]) + (f" +{len(part.inputs) - 3}" if len(part.inputs) > 3 else "")
        hands = ", ".join(part.outputs[:3]) + (f" +{len(part.outputs) - 3}" if len(part.outputs) > 3 else "")
        table.add_row(str(part.stage), escape(part.file), part.role, str(part.nodes), format_flops(part.flops), escape(reads), escape(hands))
    console.print(table)
    steps = " -> ".join("[" + " | ".join(step) + "]" if len(step) > 1 else step[0] for step in manifest.schedule)
    console.print(f"schedule (| runs concurrently): {escape(steps)}")
    for note in manifest.notes:
        console.print(f"note: {escape(note)}")
    console.print(f"run them: optimize run-partitioned {escape(str(out_dir))} [--inputs FILE.npz] [--stream N]")


def render_partitioned_run(report, console: Console) -> None:
    """A partitioned run: the check against the whole model, latency and throughput against it, the verdict."""
    table = _table("Parts against the whole model (same inputs)", ("output", "max abs", "max rel", "result"), right=("max abs", "max rel", "result"))
    for output in report.outputs:
        table.add_row(escape(output["name"]), format_error(output["max_abs"]), format_error(output["max_rel"]), "[green]ok[/]" if output["passed"] else "[red]DIFFERS[/]")
    console.print(table)
    if report.latency:
        _latency_table(f"Latency ({report.strategy}; min / median / p90)", list(report.latency.items()), console, "run")
    if report.throughput:
        rates = ", ".join(f"{name} {rate:.1f}/s" for name, rate in report.throughput.items())
        console.print(f"throughput over a stream of {report.stream}: {escape(rates)}")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    colour = "green" if report.pays else ("red" if not report.matches else "yellow")
    console.print(f"[{colour}]{escape(report.verdict)}[/]")


def render_check(document: CheckReport | dict, console: Console, *, failed_only: bool = False) -> None:
    """`optimize check`: one row per gate (measured, limit, pass/fail, why), then the verdict."""
    report = document_from_dict(document)
    if not failed_only:
        render_summary(report.summary, console)
        render_provenance(report.provenance, console)
    gates = report.gates
    rows = report.failed_gates if failed_only else gates
    if rows:
        table = _table(escape(f"Gates for {report.model.path}"), ("gate", "measured", "limit", "result", "detail"), right=("measured", "limit"))
        for gate in rows:
            result = "[green]pass[/]" if gate.passed else "[red]FAIL[/]"
            table.add_row(escape(gate.gate), escape(gate.measured_text), escape(gate.limit_text), result, escape(gate.detail))
        console.print(table)
    if not failed_only:
        render_error_stats(report.errors, console)
        _render_warnings(report.warnings, console)
    failed = len(report.failed_gates)
    if failed:
        console.print(f"[red]{failed} of {len(gates)} gate(s) failed[/]")
    elif not failed_only:
        console.print(f"[green]all {len(gates)} gate(s) pass[/]")


def _latency_table(title: str, rows: list[tuple[str, dict]], console: Console, first: str) -> None:
    """Min / median / p90 per timed model or run."""
    timing = _table(title, (first, "min", "median", "p90"), right=("min", "median", "p90"))
    for label, stats in rows:
        timing.add_row(label, format_ms(stats["min_ms"], decimals=3), format_ms(stats["median_ms"], decimals=3), format_ms(stats["p90_ms"], decimals=3))
    console.print(timing)


def render_comparison(document: CompareReport | dict, console: Console) -> None:
    """`optimize compare`: error per output, op-count changes, size and latency of B against A."""
    report = document_from_dict(document)
    render_summary(report.summary, console)
    render_provenance(report.provenance, console)
    for name, model in (("A", report.a), ("B", report.b)):
        console.print(f"{name}: {escape(model.path)}  ({format_bytes(model.file_bytes)}, {model.nodes} nodes)")
    errors = _table(escape("B against A, per output" + ("" if report.provenance else f" (inputs: {report.inputs})")), ("output", "max abs", "rel", "cosine", "top-1", "NaN/Inf"), right=("max abs", "rel", "cosine", "top-1", "NaN/Inf"))
    for row in report.outputs:
        top1 = "-" if row.top1 is None else f"{row.top1:.4f}"
        errors.add_row(escape(row.name), format_error(row.max_abs), format_error(row.rel), f"{row.cos:.6f}", top1, str(row.nonfinite))
    console.print(errors)
    render_error_stats(report.outputs, console)
    changed = report.changed_ops
    if changed:
        ops = _table("Op counts that differ", ("op", "A", "B", "change"), right=("A", "B", "change"))
        for row in changed:
            ops.add_row(escape(row.op), str(row.a), str(row.b), format_count_change(row.a, row.b))
        console.print(ops)
    else:
        console.print("op counts: identical")
    size = report.size
    if size.ratio is not None:
        console.print(f"size: {format_bytes(size.a_bytes)} -> {format_bytes(size.b_bytes)} ({size.ratio:.3f}x)")
    latency = report.latency
    if latency:
        labels = {"a": "A", "control": "A (control copy)", "b": "B"}
        _latency_table("Latency, one request (min / median / p90)", [(labels[name], latency[name]) for name in ("a", "control", "b")], console, "model")
        console.print(escape(latency["verdict"]))
    _render_warnings(report.warnings, console)
