"""Terminal rendering (rich) of an optimization result and of the pass list."""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from optimizer.api import OptimizationResult

__all__ = ["render_optimization", "render_pass_list", "format_bytes"]


def format_bytes(count: int | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _change(before: int | None, after: int | None) -> str:
    if before is None or after is None:
        return ""
    if before == after:
        return "="
    if before == 0:
        return f"+{after}"
    return f"{(after - before) / before * 100:+.1f}%"


def _error(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2e}"


def render_optimization(result: OptimizationResult, console: Console, *, verbose: bool = False) -> None:
    """Before/after summary: size, op types, passes, verification per output, warnings."""
    source = escape(str(result.input_path)) if result.input_path else "<model>"
    target = escape(str(result.output_path)) if result.output_path else "(not written)"
    console.print(f"[bold]{source}[/] -> [bold]{target}[/]  (level {result.level})")

    size = Table(title="Model", title_justify="left")
    for column in ("", "before", "after", "change"):
        size.add_column(column, justify="right" if column else "left")
    before, after = result.before, result.after
    size.add_row("nodes", str(before.nodes), str(after.nodes), _change(before.nodes, after.nodes))
    size.add_row("initializer bytes", format_bytes(before.initializer_bytes), format_bytes(after.initializer_bytes), _change(before.initializer_bytes, after.initializer_bytes))
    size.add_row("file size", format_bytes(before.file_bytes), format_bytes(after.file_bytes), _change(before.file_bytes, after.file_bytes))
    console.print(size)

    ops = Table(title="Op types" + ("" if verbose else " (changed)"), title_justify="left")
    for column in ("op", "before", "after"):
        ops.add_column(column, justify="left" if column == "op" else "right")
    rows = 0
    for op in sorted(set(before.op_counts) | set(after.op_counts)):
        b, a = before.op_counts.get(op, 0), after.op_counts.get(op, 0)
        if verbose or a != b:
            ops.add_row(escape(op), str(b), str(a))
            rows += 1
    if rows:
        console.print(ops)

    passes = Table(title="Passes", title_justify="left")
    for column, justify in (("pass", "left"), ("runs", "right"), ("changes", "left"), ("time", "right")):
        passes.add_column(column, justify=justify)
    for entry in result.pass_summary():
        changes = escape(", ".join(f"{k} {v}" for k, v in entry["changes"].items()) or "-")
        if entry.get("dropped"):
            changes = f"[red]dropped[/]: {escape(entry['dropped'][:80])}"
        elif verbose and entry["declined"]:
            changes += " [dim](declined: " + escape(", ".join(f"{k} {v}" for k, v in entry["declined"].items())) + ")[/]"
        passes.add_row(entry["name"], str(entry["runs"]), changes, f"{entry['seconds'] * 1000:.1f} ms")
    console.print(passes)

    verification = result.verification
    if verification is None:
        console.print("[yellow]verification: not run (--no-verify)[/]")
    elif verification.status == "skipped":
        console.print(f"[yellow]verification skipped:[/] {escape(verification.reason)}")
    else:
        table = Table(title=escape(f"Verification in onnxruntime (rtol {verification.tolerance.rtol:g}, atol {verification.tolerance.atol:g}; inputs {verification.inputs_source})"), title_justify="left")
        for column in ("output", "max abs", "max rel", "cosine", "result"):
            table.add_column(column, justify="left" if column == "output" else "right")
        for output in verification.outputs:
            status = "[green]ok[/]" if output.passed else f"[red]FAIL[/] {escape(output.note)}"
            table.add_row(escape(output.name), _error(output.max_abs), _error(output.max_rel), f"{output.cosine:.6f}", status)
        if verification.outputs:
            console.print(table)
        if verification.status == "failed":
            console.print(f"[red]verification failed:[/] {escape(verification.reason)}")

    if result.introduced_ops:
        listed = ", ".join(f"{op} {count}" for op, count in sorted(result.introduced_ops.items()))
        console.print(f"[cyan]onnxruntime-only ops introduced:[/] {escape(listed)} (the output needs onnxruntime)")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    seconds = sum(result.seconds.values())
    verdict = "[green]verified[/]" if result.verified else "[yellow]not verified[/]"
    console.print(f"{verdict}; {before.nodes} -> {after.nodes} nodes in {seconds:.2f} s")


def render_pass_list(rows: list[tuple[str, str, str]], console: Console) -> None:
    table = Table(title="Passes (a level runs its passes and those of the levels below)", title_justify="left")
    for column in ("name", "level", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)
