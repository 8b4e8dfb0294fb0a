"""`optimize fleet MODELS -o OUT_DIR`: the click command (parse, call the fleet, render).

Exit codes: 0 every model good (or up to date); 1 a gate (or a --strict verification) failed for a
model; 2 a model was bad input, or the fleet itself was (no models, a bad manifest, Ray missing);
3 a model crashed, ran out of memory or timed out; 130 interrupted. The worst model's code wins.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["fleet_command"]

EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130

PER_MODEL = {
    "level": "level", "only_passes": "passes", "skip_passes": "skip_passes", "inputs_file": "inputs", "input_shapes": "input_shape",
    "verify": "verify", "rtol": "rtol", "atol": "atol", "strict": "strict", "keep_initializer_inputs": "keep_initializer_inputs",
    "external_data": "external_data", "fold_max_bytes": "fold_max_bytes", "fold_max_growth": "fold_max_growth",
    "target_opset": "target_opset", "tune": "tune", "budget": "budget", "objective": "objective", "batch": "batch",
    "quantize": "quantize", "calibration": "calibration", "max_error": "max_error", "per_channel": "per_channel",
    "quant_format": "quant_format", "exclude_nodes": "exclude_nodes", "op_types": "op_types", "prune_outputs": "prune_outputs",
    "prune_weights": "prune_weights",
}
"""Command-line parameter -> per-model option key (the manifest's)."""
GATES = {"max_size": "max_size", "max_params": "max_params", "require_ops": "require_ops", "forbid_ops": "forbid_ops"}


def _given_options(context: click.Context, params: dict) -> dict:
    """The per-model options the user gave on the command line (defaults stay the main command's)."""
    from click.core import ParameterSource

    def given(name: str) -> bool:
        return context.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)

    def plain(value):
        return [str(v) for v in value] if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value

    options = {key: plain(params[name]) for name, key in PER_MODEL.items() if given(name)}
    options.update({key: str(Path(options[key]).resolve()) for key in ("inputs", "calibration") if key in options})
    gates = {key: plain(params[name]) for name, key in GATES.items() if given(name)}
    if gates:
        options["gates"] = gates
    return options


def _memory_limit(text: str | None) -> int | None:
    from optimizer.fleet.manifest import FleetInputError
    from optimizer.gates import GateInputError, parse_size

    try:
        return parse_size(text) if text else None
    except GateInputError:
        raise FleetInputError(f"--max-memory {text!r}: expected a size such as 4GB") from None


def _engine(params: dict):
    memory = _memory_limit(params["max_memory"])
    if params["engine"] == "ray":
        from optimizer.fleet.ray_engine import RayEngine

        return RayEngine(params["address"] or "auto", timeout=params["timeout"], max_retries=params["max_retries"], local_cpus=params["workers"], max_memory=memory, max_in_flight=params["max_in_flight"])
    from optimizer.fleet.local import LocalEngine

    if params["address"]:
        click.echo("warning: --address is for --engine ray; the local engine ignores it", err=True)
    return LocalEngine(params["workers"], timeout=params["timeout"], max_memory=memory)


class _ProgressLine:
    """Models done / running / failed with the time left: a live line on a terminal, one line per model in a log."""

    def __init__(self, console, *, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self.status = console.status("starting") if enabled and console.is_terminal else None

    def __enter__(self):
        if self.status:
            self.status.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.status:
            self.status.stop()

    def __call__(self, progress, event: str, job, entry) -> None:
        left = progress.seconds_left()
        text = f"{progress.done}/{progress.total} done, {progress.running} running, {progress.failed} failed" + (f", ~{left:.0f} s left" if left is not None else "")
        if self.status:
            self.status.update(text)
        elif self.enabled and event == "finished":
            self.console.print(f"[{text}] {job.name}: {entry['status']} ({entry['seconds']:.1f} s)", markup=False)


def _print_plan(jobs, params: dict) -> None:
    """--dry-run: per model, whether it would run, be skipped as up to date, or be refused; nothing runs."""
    from optimizer.fleet.runner import plan

    _, settled = plan(jobs, resume=params["resume"], force=params["force"])
    for job in jobs:
        how = settled[job.name]
        state = "run" if how is None else "up to date" if how[0] == "skipped" else f"refused: {how[1]['reason']}"
        click.echo(f"{job.name}\t{state}\t{job.source} -> {job.output}" + ("\ttuned" if job.tuned else ""))


def _run(params: dict, options: dict) -> tuple[dict, object]:
    from rich.console import Console

    from optimizer.fleet.manifest import FleetInputError, load_jobs
    from optimizer.fleet.report import fleet_document, write_fleet_reports
    from optimizer.fleet.runner import run_fleet
    from optimizer.reports import check_report_paths

    out_dir: Path = params["out_dir"]
    if params["node_types"] and params["engine"] != "ray":
        raise FleetInputError("--node-type picks machines of a Ray cluster: add --engine ray (locally, every model is tuned on this machine)")
    jobs = load_jobs(params["models"], out_dir, options, params["node_types"])
    if params["dry_run"]:
        _print_plan(jobs, params)
        sys.exit(0)
    out_dir.mkdir(parents=True, exist_ok=True)  # a report may go inside it
    reports = check_report_paths(params["reports"], [path for job in jobs for path in (job.source, job.output)])
    if params["node_types"] and not any(job.tuned for job in jobs):
        click.echo("warning: --node-type matters only for tuned models; these are not tuned", err=True)
    engine = _engine(params)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with _ProgressLine(console, enabled=not params["quiet"] and not params["as_json"]) as progress:
        result = run_fleet(jobs, out_dir, engine, resume=params["resume"], force=params["force"], on_progress=progress)
    document = fleet_document(result, str(params["models"]), str(out_dir))
    write_fleet_reports(document, reports)
    return document, result


def _render(document: dict, result, params: dict) -> None:
    from rich.console import Console

    from optimizer.fleet.report import render_table, to_json_text

    if result.skipped and not params["quiet"]:
        click.echo(f"skipped as up to date: {', '.join(result.skipped)}", err=True)
    if params["as_json"]:
        click.echo(to_json_text(document), nl=False)
        return
    if not params["quiet"]:
        console = Console(highlight=False)
        render_table(document, console if console.is_terminal else Console(highlight=False, width=160))
        for path in params["reports"]:
            click.echo(f"report: {path}")


@click.command("fleet")
@click.argument("models", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for the optimized models (the folder's layout is kept).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="local: a process per model on this machine; ray: tasks on a Ray cluster.")
@click.option("--address", help="The Ray cluster: auto, HOST:PORT, ray://HOST:PORT, or local for a private one on this machine [default: auto].")
@click.option("--workers", type=click.IntRange(min=1), help="Models at once on this machine (local engine), or the CPUs of a private Ray instance (--address local) [default: the usable cores].")
@click.option("--timeout", type=click.FloatRange(min=1), help="Seconds one model may take before it is stopped and failed.")
@click.option("--max-memory", metavar="SIZE", help="Memory one model may use, e.g. 8GB: locally a cap on its process (past it, that model fails as out of memory); on Ray, reserved per task.")
@click.option("--max-retries", type=click.IntRange(min=0), default=3, show_default=True, help="Ray: retries of a task whose worker or node died (never for bad input).")
@click.option("--max-in-flight", type=click.IntRange(min=1), help="Ray: tasks submitted at once [default: the cluster's CPUs]; lower it for big models (the driver's object store holds each in-flight model).")
@click.option("--node-type", "node_types", multiple=True, metavar="NAME", help="Ray: tune on nodes with the resource node_type:NAME; one model and settings file per type under OUT_DIR/NAME/ (repeatable).")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Skip models whose output is up to date (same source sha256, options and tool versions).")
@click.option("--dry-run", is_flag=True, help="List each model: to run, up to date, or refused (and why); run nothing.")
@click.option("--force", is_flag=True, help="Replace outputs in OUT_DIR that no fleet run wrote (by default those models fail).")
@click.option("--level", type=click.Choice(["O1", "O2", "O3"]), default="O2", show_default=True, help="As for `optimize run` (a manifest can set it per model, like every option below).")
@click.option("--passes", "only_passes", multiple=True, metavar="NAME,...")
@click.option("--skip-passes", multiple=True, metavar="NAME,...")
@click.option("--inputs", "inputs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Verification inputs (.npz) for every model.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D1,D2,...")
@click.option("--verify/--no-verify", default=True, show_default=True)
@click.option("--rtol", type=float)
@click.option("--atol", type=float)
@click.option("--strict", is_flag=True)
@click.option("--keep-initializer-inputs", is_flag=True)
@click.option("--external-data/--no-external-data", default=None)
@click.option("--fold-max-bytes", type=click.IntRange(min=0))
@click.option("--fold-max-growth", type=click.FloatRange(min=0))
@click.option("--target-opset", type=click.IntRange(min=7))
@click.option("--tune/--no-tune", default=True, show_default=True, help="Tune each model (alone on a machine: locally one at a time, on Ray a whole node).")
@click.option("--budget", type=click.FloatRange(min=1), default=30.0, show_default=True)
@click.option("--objective", type=click.Choice(["latency", "throughput"]), default="latency", show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--quantize", type=click.Choice(["none", "dynamic", "static", "fp16", "auto"]), default="none", show_default=True)
@click.option("--calibration", type=click.Path(exists=True, path_type=Path))
@click.option("--max-error", multiple=True, metavar="SPEC")
@click.option("--per-channel/--no-per-channel", default=True, show_default=True)
@click.option("--quant-format", type=click.Choice(["qdq", "qoperator"]), default="qdq", show_default=True)
@click.option("--exclude-nodes", multiple=True, metavar="NAME,...")
@click.option("--op-types", multiple=True, metavar="TYPE,...")
@click.option("--prune-outputs", multiple=True, metavar="NAME,...")
@click.option("--prune-weights", metavar="magnitude:RATIO")
@click.option("--max-size", help="Gate: the optimized model's size on disk, e.g. 50MB (exit 1 when over).")
@click.option("--max-params", type=click.IntRange(min=0), help="Gate: parameter count.")
@click.option("--require-op", "require_ops", multiple=True, metavar="OP", help="Gate: an op the optimized model must contain.")
@click.option("--forbid-op", "forbid_ops", multiple=True, metavar="OP", help="Gate: an op it must not contain.")
@click.option("--report", "reports", multiple=True, type=click.Path(path_type=Path), metavar="FILE.json|.md|.html", help="Write the merged report; the suffix picks the format (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the merged report (JSON) on stdout instead of the table.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
@click.pass_context
def fleet_command(context: click.Context, **params) -> None:
    """Optimize every model in MODELS (a folder, recursively, or a YAML/JSON manifest) into OUT_DIR.

    \b
    Each model runs in its own process (or Ray task), so one crash is one failure; a rerun skips the
    models whose output is up to date. One merged report: a table, --json, --report FILE.
    """
    from optimizer.errors import UserError

    try:
        document, result = _run(params, _given_options(context, params))
    except UserError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        click.echo("error: interrupted; the models finished so far are written and recorded", err=True)
        sys.exit(EXIT_INTERRUPTED)
    _render(document, result, params)
    sys.exit(result.exit_code)
