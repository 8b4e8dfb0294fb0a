"""The `optimize` command: parse, call the library, render. Heavy imports happen inside commands.

Exit codes: 0 success; 1 verification failed under --strict; 2 bad input (one line on stderr);
3 internal error; 130 interrupted. No traceback unless -v.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import signal
import sys
import tempfile
from pathlib import Path

import click

__all__ = ["main", "cli"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

FLAGS = {
    "inputs": "--inputs", "input_shapes": "--input-shape", "batch": "--batch", "no_verify": "--no-verify", "no_verify_command": "`optimize MODEL --no-verify`",
    "no_external_data": "--no-external-data", "force": "--force", "prune_outputs": "--prune-outputs",
    "target_opset": "--target-opset", "calibration": "--calibration", "quantize": "--quantize",
    "quant_format": "--quant-format", "prune_weights": "--prune-weights", "budget": "--budget", "precision": "--precision",
    "config_output": "-o", "run_timeout": "--run-timeout",
}
"""The flag of each option a library error mentions (`optimizer.errors.mention`): the only place they are spelled."""


def _print_version(ctx: click.Context) -> None:
    """`optimize --version`: this package's version and which onnxruntime flavour runs the models."""
    import importlib.metadata

    from optimizer.providers import runtime_flavour

    click.echo(f"optimize {importlib.metadata.version('optimize')}")
    click.echo(f"onnxruntime: {runtime_flavour().label()}")
    ctx.exit()


class _DefaultCommandGroup(click.Group):
    """A group where `optimize MODEL ...` means `optimize run MODEL ...`."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        """A command's usage error (a bad option value, a missing argument) as one line, exit 2."""
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            if isinstance(error, _UsageLine):
                raise
            raise _UsageLine(error.format_message(), error.ctx) from None


class _UsageLine(click.UsageError):
    """A usage error shown as one `error:` line, without click's usage block (which names `optimize run`
    even when the user typed `optimize MODEL`)."""

    def show(self, file=None) -> None:
        hint = f" (see `optimize {self.ctx.info_name} --help`)" if self.ctx is not None and self.ctx.parent is not None and self.ctx.info_name != "run" else " (see `optimize --help`)"
        click.echo(f"error: {self.format_message()}{hint}", err=True, file=file)


class _Interrupted(BaseException):
    """SIGTERM, or SIGINT (Ctrl-C), arrived: stop the work; cleanup still runs. A BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way swallows it."""


def _on_signal(signum, frame):  # noqa: ARG001
    # The first signal stops the work; more while the work unwinds are ignored, so that the cleanup
    # (staged outputs, temporary folders) always finishes.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _signals_received.append(signum)
    raise _Interrupted()


_signals_received: list[int] = []
"""Signals that stopped the work: an error raised on the way out (an extension module whose import
the signal cut short reports an ImportError) is then reported as the interruption it is."""


def _catch_signals() -> dict:
    """Route SIGTERM and SIGINT to `_Interrupted`; the previous handlers, to restore. A SIGINT the
    parent ignores (a background job of a script) stays ignored."""
    previous = {signal.SIGTERM: signal.getsignal(signal.SIGTERM), signal.SIGINT: signal.getsignal(signal.SIGINT)}
    signal.signal(signal.SIGTERM, _on_signal)
    if previous[signal.SIGINT] is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_signal)
    return previous


def _stderr():
    """The console for progress on stderr; it escapes control characters from models (optimizer.sanitize)."""
    from optimizer.sanitize import SanitizingConsole

    return SanitizingConsole(stderr=True, highlight=False, soft_wrap=True)


def _stdout():
    """The console renderers print reports to (`report.report_console`: piped width, control characters escaped)."""
    from optimizer.report import report_console

    return report_console()


def _warn(message: str) -> None:
    """One warning line on stderr, control characters escaped."""
    from optimizer.sanitize import sanitize_line

    click.echo(f"warning: {sanitize_line(message)}", err=True)


def _fail(message: str, code: int) -> None:
    """The one error line on stderr (control characters, CR and newlines escaped), then exit `code`."""
    from optimizer.sanitize import sanitize_line

    click.echo(f"error: {sanitize_line(message)}", err=True)
    sys.exit(code)


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING
    if verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    if quiet:
        level = logging.ERROR
    from optimizer.sanitize import SanitizingFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SanitizingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # onnx-ir warns about things we handle on purpose (e.g. initializer-inputs it will not dedup).
    logging.getLogger("onnx_ir").setLevel(level if verbose >= 2 else logging.ERROR)


def _split_names(values: tuple[str, ...]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _display_options(json_help: str = "Print the report as JSON on stdout.", quiet_help: str = "Print nothing but warnings and errors.", verbose_help: str = "-vv logs and tracebacks."):
    """`--json`, `-q` and `-v`, as every command has them, handed to the command as one `_Display` (keyword `display`)."""
    options = (
        _json_option(json_help),
        click.option("-q", "--quiet", is_flag=True, help=quiet_help),
        click.option("-v", "--verbose", count=True, help=verbose_help),
    )

    def decorate(command):
        command = _collect("display", _Display)(command)
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _json_option(help: str):  # noqa: A002 - click's name
    return click.option("--json", "as_json", is_flag=True, help=help)


def _input_shape_option(help: str = "Bind an input's dynamic dims for generated inputs (repeatable)."):  # noqa: A002 - click's name
    return click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D1,D2,...", help=help)


def _inputs_option(help: str):  # noqa: A002 - click's name
    return click.option("--inputs", "inputs_file", type=click.Path(path_type=Path), help=help)


def _model_inputs_options(inputs_help: str, shapes_help: str = "Bind an input's dynamic dims for generated inputs (repeatable)."):
    """`--inputs`, `--input-shape` and `--save-inputs`, as every command that runs models has them."""
    options = (_inputs_option(inputs_help), _input_shape_option(shapes_help), _save_inputs_option())

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _save_inputs_option():
    return click.option(
        "--save-inputs", "save_inputs", type=click.Path(path_type=Path), metavar="FILE.npz",
        help="Write the inputs the models run on (generated, or --inputs) to FILE.npz, for --inputs next time.",
    )


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """The inputs a command runs models on: the arrays (None: the library generates them) and where they come from."""

    arrays: dict | None
    source: str | None
    """What the reports name as the inputs ("data.npz", "generated ..."; None: the library's own words)."""
    saved: Path | None


def _prepare_inputs(model: Path, inputs_file: Path | None, shapes: dict, batch: int, save_to: Path | None) -> _Inputs:
    """The `--inputs` arrays; with `--save-inputs`, the arrays are made here (generated as the library would)
    and written first, so the command runs on exactly what was saved."""
    from optimizer import io, verify as verification

    arrays = _read_inputs(inputs_file) if inputs_file else None
    if save_to is None:
        return _Inputs(arrays, str(inputs_file) if inputs_file else None, None)
    _check_save_path(save_to, [model, inputs_file])
    if arrays is None:
        arrays, source = verification.feeds_for(model, io.load(model), None, shapes, batch)
    else:
        source = str(inputs_file)
    verification.save_inputs(save_to, arrays)
    return _Inputs(arrays, source, save_to)


def _read_inputs(path: Path) -> dict:
    """The arrays of an --inputs file; a file that is no .npz archive (a text or .npy file) is said to be one."""
    from optimizer import verify as verification
    from optimizer.errors import UserError

    try:
        with open(path, "rb") as stream:
            magic = stream.read(6)
    except OSError:
        magic = None  # load_inputs says what is wrong with the path
    if magic is not None and not magic.startswith(b"PK"):
        kind = "a single .npy array" if magic == b"\x93NUMPY" else "not a zip archive"
        raise UserError(f"--inputs {path}: not an .npz file ({kind}); write one with numpy.savez(path, input_name=array, ...) or --save-inputs")
    return verification.load_inputs(path)


def _echo_json(document) -> None:
    """A report document as `--json` prints it."""
    from optimizer.reports import to_json

    click.echo(to_json(document), nl=False)


def _begin_measuring(reports, protected: list, input_shapes: tuple[str, ...], inputs_file: Path | None, save_inputs: Path | None) -> tuple[dict, _Inputs]:
    """What check and compare do first: refuse bad --report paths, read --input-shape, make the inputs
    (for the first of `protected`, the model the inputs are generated from)."""
    from optimizer.reports import check_report_paths

    check_report_paths(reports, protected)
    shapes = _input_shapes(input_shapes)
    return shapes, _prepare_inputs(protected[0], inputs_file, shapes, 1, save_inputs)


def _check_save_path(path: Path, protected: list) -> None:
    """Refuse a --save-inputs path that is no .npz, sits in a missing folder, or is one of the command's files."""
    from optimizer.errors import UserError

    if path.suffix.lower() != ".npz":
        raise UserError(f"--save-inputs {path}: the file must end in .npz (numpy's archive, what --inputs reads)")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"--save-inputs {path}: folder {folder} does not exist")
    if any(other is not None and Path(other).resolve() == path.resolve() for other in protected):
        raise UserError(f"--save-inputs {path}: would overwrite a model or the --inputs file; choose another name")


def _discover_configs(no_config: bool, *given: Path | None) -> bool:
    """Whether models pick up the settings file beside them: not with --no-config (which refuses explicit settings too)."""
    from optimizer.errors import UserError

    if no_config and any(path is not None for path in given):
        raise UserError("--no-config runs every model under onnxruntime's defaults: leave out the --config options, or --no-config")
    return not no_config


def _budget_option(default: float, help: str):  # noqa: A002 - click's name
    return click.option("--budget", type=click.FloatRange(min=1), default=default, show_default=True, help=help)


_report_option = click.option(
    "--report", "reports", multiple=True, type=click.Path(path_type=Path), metavar="FILE.json|.md|.html",
    help="Write the report; the suffix picks the format (repeatable).",
)


def _collect(into: str, cls):
    """Hand a command the parameters named like `cls`'s fields as one `cls` object, keyword `into`."""
    names = [field.name for field in dataclasses.fields(cls)]

    def decorate(command):
        @functools.wraps(command)
        def collected(**params):
            params[into] = cls(**{name: params.pop(name) for name in names})
            return command(**params)

        return collected

    return decorate


@dataclasses.dataclass(frozen=True)
class _Display:
    """`--json`, `-q`, `-v`."""

    as_json: bool
    quiet: bool
    verbose: int


@dataclasses.dataclass(frozen=True)
class _PassFlags:
    """The run command's pass selection flags."""

    level: str
    only_passes: tuple[str, ...]
    skip_passes: tuple[str, ...]
    keep_initializer_inputs: bool
    fold_max_bytes: int | None
    fold_max_growth: float | None
    target_opset: int | None
    fix_shapes: tuple[str, ...]

    def options(self):
        from optimizer.options import PassSelection

        return PassSelection(
            self.level, tuple(_split_names(self.only_passes)) or None, tuple(_split_names(self.skip_passes)), self.keep_initializer_inputs,
            self.fold_max_bytes, self.fold_max_growth, self.target_opset,
        )


@dataclasses.dataclass(frozen=True)
class _VerifyFlags:
    """The run command's verification flags."""

    inputs_file: Path | None
    input_shapes: tuple[str, ...]
    verify: bool
    rtol: float | None
    atol: float | None
    strict: bool
    batch: int
    save_inputs: Path | None
    run_timeout: float

    def options(self, shapes: dict, inputs: _Inputs):
        """VerifyOptions on `inputs` (made by `_prepare_inputs`: generated ones set the batch already)."""
        from optimizer.options import VerifyOptions

        batch = 1 if inputs.saved is not None and self.inputs_file is None else self.batch
        return VerifyOptions(self.verify, inputs.arrays, shapes, self.rtol, self.atol, self.strict, batch, self.run_timeout or None)


@dataclasses.dataclass(frozen=True)
class _TuneFlags:
    """The run command's tuning flags."""

    tune: bool
    budget: float
    objective: str

    def options(self):
        from optimizer.options import TuneOptions

        return TuneOptions(self.tune, self.budget, self.objective)


@dataclasses.dataclass(frozen=True)
class _OutputFlags:
    """The run command's flags for what is written."""

    external_data: bool | None
    force: bool
    prune_outputs: tuple[str, ...]
    reports: tuple[Path, ...]
    with_profile: bool | None

    def options(self, output: Path):
        from optimizer.options import OutputOptions

        return OutputOptions(output, self.external_data, self.force, tuple(_split_names(self.prune_outputs)) or None)


@dataclasses.dataclass(frozen=True)
class _LossyFlags:
    """The run command's lossy-variant flags."""

    quantize: str
    calibration: Path | None
    max_error: tuple[str, ...]
    per_channel: bool
    quant_format: str
    exclude_nodes: tuple[str, ...]
    quant_op_types: tuple[str, ...]
    prune_weights: str | None
    precision: str

    def _prune_ratio(self) -> float | None:
        from optimizer.lossy import LossyInputError

        if self.prune_weights is None:
            return None
        method, _, value = self.prune_weights.partition(":")
        try:
            ratio = float(value)
        except ValueError:
            ratio = None
        if method != "magnitude" or ratio is None:
            raise LossyInputError(f"--prune-weights {self.prune_weights!r}: expected magnitude:RATIO, e.g. magnitude:0.5")
        return ratio

    def _warn_unused(self) -> None:
        given = (("--calibration", self.calibration), ("--max-error", self.max_error), ("--exclude-nodes", self.exclude_nodes), ("--op-types", self.quant_op_types))
        unused = [flag for flag, value in given if value]
        if self.quantize == "none" and unused and ((self.prune_weights is None and self.precision == "fp32") or unused != ["--max-error"]):
            _warn(f"{', '.join(unused)} {'has' if len(unused) == 1 else 'have'} no effect without --quantize")
        if self.calibration is not None and self.quantize in ("dynamic", "fp16"):
            _warn("--calibration is only used by --quantize static or auto")

    def options(self, time_budget: float):
        """LossyOptions from the flags (LossyInputError for bad values)."""
        from optimizer.error_budget import ErrorBudget
        from optimizer.lossy import LossyInputError, LossyOptions

        ratio = self._prune_ratio()
        try:
            budget = ErrorBudget.parse(list(self.max_error))
        except ValueError as error:
            raise LossyInputError(str(error)) from None
        if self.calibration is not None and not self.calibration.exists():
            raise LossyInputError(f"--calibration {self.calibration}: no such file or folder")
        self._warn_unused()
        return LossyOptions(
            quantize=self.quantize, calibration=self.calibration, budget=budget, per_channel=self.per_channel, quant_format=self.quant_format,
            exclude_nodes=tuple(_split_names(self.exclude_nodes)), op_types=tuple(_split_names(self.quant_op_types)) or None,
            prune_weights=ratio, time_budget_s=time_budget, precision=self.precision,
        )


@click.group(cls=_DefaultCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=lambda ctx, _param, value: _print_version(ctx) if value else None, help="Show the version, the onnxruntime flavour and its providers, and exit.")
def cli() -> None:
    """Make an ONNX model faster without changing what it computes, and prove it.

    \b
      optimize MODEL.onnx -o FAST.onnx     optimize, verify, tune; write FAST.onnx + FAST.onnx.json
      optimize tune MODEL.onnx              the fastest onnxruntime settings for a model as it is
      optimize profile MODEL.onnx           time by node and op type (onnxruntime's profiler)
      optimize check MODEL.onnx --max-size 50MB ...   CI gates: exit 0 pass, 1 a gate failed, 2 bad input
      optimize compare A.onnx B.onnx        error per output, op counts, size and latency of B against A
      optimize inspect MODEL.onnx           ops, parameters, FLOPs, critical path, parallel branches
      optimize partition MODEL.onnx --parts N -o DIR   cut into sub-models (pipeline or branches)
      optimize run-partitioned DIR          run the parts, check them against the whole model, time both
      optimize passes                       list the passes and their levels
    Run `optimize run --help` for every option of the main command.
    """


@cli.command("run")
@click.argument("model", type=click.Path(dir_okay=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Where to write the optimized model [default: MODEL.opt.onnx].")
@click.option("--level", type=click.Choice(["O1", "O2", "O3"]), default="O2", show_default=True, help="O1 cleanup+folding; O2 adds standard-ONNX fusions; O3 adds onnxruntime-only fusions.")
@click.option("--passes", "only_passes", multiple=True, metavar="NAME,...", help="Run only these passes (see `optimize passes`).")
@click.option("--skip-passes", multiple=True, metavar="NAME,...", help="Leave these passes out.")
@_model_inputs_options("Verification inputs: an .npz of arrays keyed by graph input name.")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Check the result against the original in onnxruntime.")
@click.option("--rtol", type=float, help="Relative tolerance (default 1e-4; 1e-2 for quantized models).")
@click.option("--atol", type=float, help="Absolute tolerance (default 1e-5; 1e-3 for quantized models).")
@click.option("--strict", is_flag=True, help="A verification failure exits 1 instead of dropping the pass that caused it.")
@click.option("--run-timeout", type=click.FloatRange(min=0), default=300.0, show_default=True, metavar="SECONDS", help="Stop one onnxruntime run of a model (reference outputs, a check) after this long; 0: no limit.")
@click.option("--keep-initializer-inputs", is_flag=True, help="Keep graph inputs that have initializers as inputs (default: they become constants).")
@click.option("--external-data/--no-external-data", default=None, help="Write weights to OUT.onnx.data [default: only when over 2 GB].")
@click.option("--fold-max-bytes", type=click.IntRange(min=0), help="Refuse constant folds whose output exceeds this many bytes... [default: 1048576]")
@click.option("--fold-max-growth", type=click.FloatRange(min=0), help="...and grows past this multiple of its inputs [default: 2.0].")
@click.option("--fix-shape", "fix_shapes", multiple=True, metavar="NAME=D1,D2,...", help="Make an input's dims static in the written model (checked against the original; shape folding then uses them). Repeatable.")
@click.option("--target-opset", type=click.IntRange(min=7), help="Upgrade the model to this opset first (onnx's version converter, verified like a pass) so standard fusions apply.")
@click.option("--tune/--no-tune", default=True, show_default=True, help="Time the original and each level's graph under onnxruntime settings; ship the fastest graph and write its settings to OUT.onnx.json.")
@_budget_option(30.0, "Seconds tuning may take; with --quantize, the search for a lossy variant gets as many again.")
@click.option("--objective", type=click.Choice(["latency", "throughput"]), default="latency", show_default=True, help="Tune for one request's latency, or for requests per second under concurrency.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Batch size of generated inputs (verification and tuning).")
@click.option("--quantize", type=click.Choice(["none", "dynamic", "static", "fp16", "auto"]), default="none", show_default=True, help="Try a lossy variant (onnxruntime.quantization); it ships only within --max-error and measurably faster. auto tries what suits the model.")
@click.option("--calibration", type=click.Path(path_type=Path), help="Calibration data for static int8: an .npz sample, or a folder of .npz samples (arrays keyed by input name).")
@click.option("--max-error", "max_error", multiple=True, metavar="SPEC", help="Error budget of lossy variants, per output: rel=0.01 (max|a-b|/max|a|), cos=0.999, top1=0.99 (repeatable) [default: rel=0.05].")
@click.option("--per-channel/--no-per-channel", default=True, show_default=True, help="Per-channel int8 weights (more accurate; per-tensor is onnxruntime's default for dynamic).")
@click.option("--quant-format", type=click.Choice(["qdq", "qoperator"]), default="qdq", show_default=True, help="Static int8 format.")
@click.option("--exclude-nodes", multiple=True, metavar="NAME,...", help="Nodes lossy variants leave in float32.")
@click.option("--op-types", "quant_op_types", multiple=True, metavar="TYPE,...", help="Op types to quantize [default: MatMul-like ops for dynamic, onnxruntime's list for static].")
@click.option("--prune-outputs", multiple=True, metavar="NAME,...", help="Keep only these graph outputs; what only the others need is removed.")
@click.option(
    "--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
    help="bf16: also try running the model in bf16 on a provider with bf16 kernels (onnxruntime-openvino on a CPU with AVX512_BF16 or AMX); "
    "held to --max-error and shipped only when measurably faster, with its settings in OUT.onnx.json. --quantize auto tries it too.",
)
@click.option("--prune-weights", metavar="magnitude:RATIO", help="Lossy, opt-in: zero the RATIO smallest weights of each Conv/Gemm/MatMul (held to --max-error and the speed check like quantization).")
@click.option("--force", is_flag=True, help="Overwrite an existing output (also the input itself).")
@_report_option
@click.option("--profile/--no-profile", "with_profile", default=None, help="Profile the written model under its settings (time by op type) for the report [default: on with --report].")
@_display_options(json_help="Print a machine-readable summary (JSON) on stdout instead of tables.", verbose_help="More detail: all op types, declined matches, every tuning candidate; -vv logs and tracebacks.")
@_collect("selection", _PassFlags)
@_collect("checking", _VerifyFlags)
@_collect("tuning", _TuneFlags)
@_collect("lossy", _LossyFlags)
@_collect("writing", _OutputFlags)
def run_command(model: Path, output: Path | None, display: _Display, selection: _PassFlags, checking: _VerifyFlags, tuning: _TuneFlags, lossy: _LossyFlags, writing: _OutputFlags) -> None:
    """Optimize MODEL losslessly, verify the result in onnxruntime, tune its runtime settings and write both.

    \b
    Writes OUT.onnx and, when tuning, OUT.onnx.json: the fastest onnxruntime settings measured on
    this machine (load them with optimizer.runtime.session or plain onnxruntime, see the README).
    The shipped graph is never slower than the original under those settings.
    """
    _configure_logging(display.verbose, display.quiet)
    if output is None:
        output = model.with_name(model.stem + ".opt.onnx")
    console = _stderr()

    def work():
        from optimizer import api
        from optimizer.options import OptimizeOptions
        from optimizer.reports import check_report_paths

        shapes = _input_shapes(checking.input_shapes)
        check_report_paths(writing.reports, [model, output])
        try:
            api.resolve_pass_names(selection.level, _split_names(selection.only_passes), _split_names(selection.skip_passes))
        except KeyError as error:
            _fail(error.args[0], EXIT_BAD_INPUT)
        source, fixed = _fixed_source(model, selection.fix_shapes, shapes, scratch)
        prepared = _prepare_inputs(source, checking.inputs_file, shapes, checking.batch, checking.save_inputs)
        verify_options = checking.options(shapes, prepared)
        options = OptimizeOptions(selection.options(), verify_options, tuning.options(), writing.options(output), lossy.options(tuning.budget))
        show_progress = not display.quiet and not display.as_json and console.is_terminal
        status = console.status("loading") if show_progress else None
        if status:
            status.start()
        try:
            result = api.optimize(
                source, options=options,
                on_stage=(lambda text: status.update(text)) if status else None,
                on_status=(lambda progress: status.update(_measuring_line(progress))) if status else None,
            )
            if fixed:
                result = dataclasses.replace(result, input_path=model, warnings=[f"--fix-shape made dims static: {'; '.join(fixed)}", *result.warnings])
            try:
                document = _run_report(result, verify_options.inputs, shapes, display, writing, status, _run_origin(result, prepared, checking.inputs_file))
                if writing.reports:
                    from optimizer.reports import write_reports

                    write_reports(document, writing.reports, [model, output])
            except (KeyboardInterrupt, _Interrupted):
                written = f"after writing {result.output_path}" if result.output_path is not None else "after optimizing"
                _fail(f"interrupted {written}; the report was not written", EXIT_INTERRUPTED)
            return result, document
        finally:
            if status:
                status.stop()

    with tempfile.TemporaryDirectory(prefix="optimize-cli-") as scratch_dir:
        scratch = Path(scratch_dir)
        result, document = _handle_errors(display.verbose, work)
    _render_run(result, document, display, writing.reports)


def _fixed_source(model: Path, specs: tuple[str, ...], input_shapes: dict, scratch: Path) -> tuple[Path, list[str]]:
    """The model the run starts from: MODEL, or with --fix-shape a copy with those dims static (checked
    against MODEL), and a line per fixed input."""
    if not specs:
        return model, []
    from optimizer.fix_shape import FixShapeError, parse_fixed_shapes, write_fixed_model

    shapes = parse_fixed_shapes(list(specs))
    both = sorted(set(shapes) & set(input_shapes))
    if both:
        raise FixShapeError(f"--fix-shape and --input-shape both set {', '.join(both)}: --fix-shape alone is enough (generated inputs follow it)")
    return write_fixed_model(model, shapes, scratch)


def _render_run(result, document, display: _Display, reports: tuple[Path, ...]) -> None:
    """The run command's output from its one `RunReport`: JSON, the terminal report, or (quiet) only the warnings."""
    if display.as_json:
        _echo_json(document)
    elif not display.quiet:
        from optimizer.report import render_run, report_console

        out = report_console()
        render_run(document, out, verbose=display.verbose > 0)
        for path in reports:
            out.print(f"report: {path}")
    else:
        for warning in result.warnings:
            _warn(warning)


def _origin(library_source: str | None, prepared: _Inputs, inputs_file: Path | None, settings: dict | None = None) -> dict:
    """The provenance of a command's figures: the inputs (the file, or how they were generated) and the settings."""
    from optimizer.reports.document import provenance

    source = prepared.source if prepared.saved is not None and inputs_file is None else library_source
    return provenance(source, inputs_file=inputs_file, arrays=prepared.arrays if inputs_file else None, saved=prepared.saved, settings=settings)


def _run_origin(result, prepared: _Inputs, inputs_file: Path | None) -> dict:
    settings = {"output": f"{result.config_path} (written by tuning)"} if result.config_path else {}
    return _origin(result.verification.inputs_source if result.verification else None, prepared, inputs_file, settings)


def _run_report(result, inputs, input_shapes, display: _Display, writing: _OutputFlags, status, origin: dict):
    """The run's one report document: the result and, when something reads them (--json, --report,
    --profile), the written graph's analysis and its profile."""
    from optimizer import api
    from optimizer.reports.document import RunReport, analysis_summary

    if not (display.as_json or writing.reports or writing.with_profile):  # the analysis and the profile cost time: only when read
        return RunReport.from_result(result, origin=origin)
    if status:
        status.update("writing the report")
    analysis = analysis_summary(result.model, input_shapes)
    profiled = None
    if (writing.with_profile if writing.with_profile is not None else bool(writing.reports)) and result.output_path is not None:
        try:
            outcome, _ = api.profile(result.output_path, config_path=result.config_path, inputs=inputs, input_shapes=input_shapes)
            profiled = outcome.to_dict()
        except Exception as error:  # noqa: BLE001 - the model is written; the report says why it has no profile
            profiled = {"error": f"{type(error).__name__}: {error}".splitlines()[0]}
    return RunReport.from_result(result, analysis=analysis, profile=profiled, origin=origin)


def _handle_errors(verbose: int, work):
    """Run `work()`, turning bad input, a failed --strict check, interruption and internal errors into one line and an exit code."""
    previous = _catch_signals()
    try:
        return _run_reporting_errors(verbose, work)
    except (KeyboardInterrupt, _Interrupted):
        _fail("interrupted; no output written", EXIT_INTERRUPTED)
    except Exception:
        if _signals_received:  # e.g. the imports above `work` cut short
            _fail("interrupted; no output written", EXIT_INTERRUPTED)
        raise
    finally:
        _restore_signals(previous)


def _restore_signals(previous: dict) -> None:
    """Put the handlers back, unless a signal arrived: then they stay ignored until the process exits."""
    if not _signals_received:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_reporting_errors(verbose: int, work):
    from optimizer import api
    from optimizer.errors import UserError

    try:
        return work()
    except UserError as error:
        if verbose >= 2:
            logging.exception("bad input")
        _fail(error.render(FLAGS), EXIT_BAD_INPUT)
    except api.VerificationFailedError as error:
        _fail(f"{error} (--strict: nothing written)", EXIT_FAILED)
    except Exception as error:  # noqa: BLE001 - last resort: one line, not a traceback
        if _signals_received:
            _fail("interrupted; no output written", EXIT_INTERRUPTED)
        if verbose >= 2:
            logging.exception("internal error")
        _fail(f"internal error ({type(error).__name__}: {error}); rerun with -vv for details", EXIT_INTERNAL)


def _input_shapes(specs: tuple[str, ...]) -> dict:
    """`--input-shape` values as {name: dims} (VerificationInputError for a malformed one)."""
    from optimizer import verify as verification

    return verification.parse_input_shapes(specs)


def _int_list(values: tuple[str, ...], option: str) -> list[int] | None:
    numbers = []
    for text in _split_names(values):
        if not text.isdigit() or int(text) < 1:
            _fail(f"{option}: expected positive integers separated by commas, got {text!r}", EXIT_BAD_INPUT)
        numbers.append(int(text))
    return numbers or None


@cli.command("tune")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Where to write the configuration [default: MODEL.onnx.json].")
@_model_inputs_options("Inputs to time on: an .npz of arrays keyed by input name (realistic dynamic shapes).")
@click.option("--providers", multiple=True, metavar="NAME,...", help="Execution providers to consider [default: every one the installed onnxruntime offers].")
@click.option("--intra", multiple=True, metavar="N,...", help="Intra-op thread counts to try [default: 1, 2, 4, ... up to the usable cores].")
@click.option("--inter", multiple=True, metavar="N,...", help="Inter-op thread counts for parallel execution [default: 2, 4, 8 up to the cores, when the graph has parallel branches].")
@click.option("--objective", type=click.Choice(["latency", "throughput"]), default="latency", show_default=True, help="One request's latency, or requests per second with concurrent requests x threads each.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Batch size of generated inputs.")
@_budget_option(60.0, "Seconds the search may take.")
@_display_options(json_help="Print the result as JSON on stdout.", verbose_help="List every candidate; -vv logs and tracebacks.")
def tune_command(model, output, inputs_file, input_shapes, save_inputs, providers, intra, inter, objective, batch, budget, display: _Display) -> None:
    """Find the fastest onnxruntime settings for MODEL on this machine; write them as JSON.

    \b
    Times onnxruntime's defaults against the settings that can matter here (threads, spinning,
    parallel execution when the graph has parallel branches, optimization level, providers) by
    successive halving within the budget. Keeps the defaults unless something beats them by more
    than the measured noise.
    """
    _configure_logging(display.verbose, display.quiet)
    console = _stderr()

    def work():
        from optimizer import api

        shapes = _input_shapes(input_shapes)
        prepared = _prepare_inputs(model, inputs_file, shapes, batch, save_inputs)
        with _ProgressBar(console, enabled=not display.quiet and not display.as_json, total=budget) as bar:
            return api.tune_model(
                model, output, inputs=prepared.arrays, input_shapes=shapes, providers=_split_names(providers) or None,
                intra=_int_list(intra, "--intra"), inter=_int_list(inter, "--inter"), objective=objective,
                batch=1 if prepared.saved is not None and inputs_file is None else batch, budget=budget, on_status=bar.status,
            )

    result, config_path = _handle_errors(display.verbose, work)
    if display.as_json:
        saved = {"saved_inputs": str(save_inputs)} if save_inputs else {}
        click.echo(json.dumps({"config": str(config_path), **saved, **result.to_dict()}, indent=2, default=str))
    elif not display.quiet:
        from optimizer.report import render_tuning, report_console

        out = report_console()
        render_tuning(result, out, verbose=display.verbose > 0)
        out.print(f"configuration: {config_path}")
        if save_inputs:
            out.print(f"inputs saved to {save_inputs}")


@cli.command("profile")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Runtime configuration to profile under [default: MODEL.onnx.json when it exists, else onnxruntime's defaults].")
@_model_inputs_options("Inputs: an .npz of arrays keyed by input name.")
@click.option("--runs", type=click.IntRange(min=1), default=20, show_default=True, help="Profiled runs (after 3 warm-up runs).")
@click.option("--top", type=click.IntRange(min=1), default=15, show_default=True, help="How many of the slowest nodes to list.")
@_display_options(json_help="Print the profile as JSON on stdout.")
def profile_command(model, config_path, inputs_file, input_shapes, save_inputs, runs, top, display: _Display) -> None:
    """Time MODEL by node and by op type with onnxruntime's profiler."""
    _configure_logging(display.verbose, display.quiet)

    def work():
        from optimizer import api

        shapes = _input_shapes(input_shapes)
        prepared = _prepare_inputs(model, inputs_file, shapes, 1, save_inputs)
        return api.profile(model, config_path=config_path, inputs=prepared.arrays, input_shapes=shapes, runs=runs)

    result, used_config = _handle_errors(display.verbose, work)
    if display.as_json:
        saved = {"saved_inputs": str(save_inputs)} if save_inputs else {}
        click.echo(json.dumps({"config": str(used_config) if used_config else None, **saved, **result.to_dict()}, indent=2))
    elif not display.quiet:
        from optimizer.report import render_profile, report_console

        out = report_console()
        out.print(f"settings: {used_config if used_config else 'onnxruntime defaults'}")
        if save_inputs:
            out.print(f"inputs saved to {save_inputs}")
        render_profile(result, out, top=top)


@cli.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@_input_shape_option("Bind an input's dynamic dims for the cost model (repeatable) [default: batch 1, other dims 128 or 224].")
@_display_options(json_help="Print the description as JSON on stdout (keys analysis.work_flops, analysis.span_flops, analysis.parallelism, analysis.regions, ...).", verbose_help="Every op type and the most expensive nodes; -vv logs and tracebacks.")
def inspect_command(model, input_shapes, display: _Display) -> None:
    """Describe MODEL: interface, ops, parameters, FLOPs per op type, critical path, parallelism and parallel regions."""
    _configure_logging(display.verbose, display.quiet)

    def work():
        from optimizer import io
        from optimizer.inspection import inspect_model

        try:
            return inspect_model(model, _input_shapes(input_shapes))
        except ValueError as error:
            raise io.ModelInputError(str(error)) from None

    result = _handle_errors(display.verbose, work)
    if display.as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    elif not display.quiet:
        from optimizer.report import render_inspection, report_console

        render_inspection(result, report_console(), verbose=display.verbose > 0)


@cli.command("check")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--max-size", metavar="SIZE", help="Largest allowed size on disk, external data included: 50MB, 1.5GB, 1048576 (K/M/G are 1024-based).")
@click.option("--max-params", type=click.IntRange(min=0), metavar="N", help="Most parameters (initializer elements) allowed.")
@click.option("--max-latency-ms", type=float, metavar="X", help="Slowest allowed median latency of one request, in ms (fails only beyond the measured noise margin).")
@click.option("--baseline", type=click.Path(path_type=Path), help="The model this one replaces: --max-regression and --max-error compare against it, timed in the same run.")
@click.option("--max-regression", metavar="PCT", help="Most latency and size growth allowed against --baseline: 5% or 0.05.")
@click.option("--max-error", "max_error", multiple=True, metavar="SPEC", help="Error limit per output against --baseline: rel=0.01, cos=0.999, top1=0.99 (repeatable).")
@click.option("--require-op", "require_ops", multiple=True, metavar="TYPE,...", help="Fail unless the model has a node of this op type (e.g. Attention or com.microsoft:Attention).")
@click.option("--forbid-op", "forbid_ops", multiple=True, metavar="TYPE,...", help="Fail if the model has a node of this op type.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Runtime settings for MODEL [default: MODEL.onnx.json when it exists, else onnxruntime's defaults].")
@click.option("--baseline-config", type=click.Path(path_type=Path), help="Runtime settings for the baseline [default: its own .onnx.json, else defaults].")
@click.option("--no-config", is_flag=True, help="Run both models under onnxruntime's defaults, ignoring the .onnx.json settings beside them.")
@_model_inputs_options("Inputs for latency and error gates: an .npz of arrays keyed by input name.")
@_budget_option(20.0, "Seconds the latency measurement may take.")
@_report_option
@_display_options(quiet_help="Print nothing but failed gates and errors.")
def check_command(model, max_size, max_params, max_latency_ms, baseline, max_regression, max_error, require_ops, forbid_ops, config_path, baseline_config, no_config, inputs_file, input_shapes, save_inputs, budget, reports, display: _Display) -> None:
    """Gate MODEL for CI: one row per gate (measured, limit, pass/fail).

    \b
    Exit 0: every gate passes; 1: a gate failed; 2: bad input (a bad model, option or inputs file).
    Latency gates allow for the noise measured on a control copy of the model (at least 2%).
    """
    _configure_logging(display.verbose, display.quiet)
    console = _stderr()

    def work():
        from optimizer import gates
        from optimizer.error_budget import ErrorBudget
        from optimizer.reports import write_reports
        from optimizer.reports.document import CheckReport

        protected = [model, baseline, config_path, baseline_config]
        shapes, prepared = _begin_measuring(reports, protected, input_shapes, inputs_file, save_inputs)
        try:
            options = gates.CheckOptions(
                max_size=gates.parse_size(max_size) if max_size is not None else None,
                max_params=max_params,
                max_latency_ms=max_latency_ms,
                baseline=baseline,
                max_regression=gates.parse_ratio(max_regression, "--max-regression") if max_regression is not None else None,
                error_budget=ErrorBudget.parse(max_error) if max_error else None,
                require_ops=_split_names(require_ops),
                forbid_ops=_split_names(forbid_ops),
                config=config_path,
                baseline_config=baseline_config,
                discover_configs=_discover_configs(no_config, config_path, baseline_config),
                inputs=prepared.arrays,
                input_shapes=shapes,
                budget_s=budget,
            )
        except ValueError as error:
            raise gates.GateInputError(str(error)) from None
        with _ProgressBar(console, enabled=not display.quiet and not display.as_json and console.is_terminal, total=1.0, label="checking") as progress:
            result = gates.run_check(model, options, on_progress=progress)
        document = CheckReport.from_result(result, origin=_origin(result.inputs, prepared, inputs_file, result.settings))
        write_reports(document, reports, protected)
        return result, document

    result, document = _handle_errors(display.verbose, work)
    if display.as_json:
        _echo_json(document)
    else:
        from optimizer.report import render_check, report_console

        render_check(document, report_console(), failed_only=display.quiet)
    sys.exit(EXIT_OK if result.passed else EXIT_FAILED)


@cli.command("compare")
@click.argument("model_a", type=click.Path(path_type=Path))
@click.argument("model_b", type=click.Path(path_type=Path))
@_model_inputs_options("Inputs: an .npz of arrays keyed by input name [default: generated].")
@click.option("--config-a", type=click.Path(path_type=Path), help="Runtime settings for A [default: A.onnx.json when it exists, else defaults].")
@click.option("--config-b", type=click.Path(path_type=Path), help="Runtime settings for B [default: B.onnx.json when it exists, else defaults].")
@click.option("--no-config", is_flag=True, help="Time both models under onnxruntime's defaults, ignoring the .onnx.json settings beside them.")
@click.option("--latency/--no-latency", default=True, show_default=True, help="Time both models in one run (with a control copy of A).")
@_budget_option(20.0, "Seconds the latency measurement may take.")
@_report_option
@_display_options()
def compare_command(model_a, model_b, inputs_file, input_shapes, save_inputs, config_a, config_b, no_config, latency, budget, reports, display: _Display) -> None:
    """Compare MODEL_B with MODEL_A: error per output, op counts, size, and latency measured in one run."""
    _configure_logging(display.verbose, display.quiet)
    console = _stderr()

    def work():
        from optimizer.comparison import compare_models
        from optimizer.reports import write_reports
        from optimizer.reports.document import CompareReport

        protected = [model_a, model_b, config_a, config_b]
        shapes, prepared = _begin_measuring(reports, protected, input_shapes, inputs_file, save_inputs)
        with _ProgressBar(console, enabled=not display.quiet and not display.as_json and console.is_terminal and latency, total=1.0, label="comparing") as progress:
            body = compare_models(
                model_a, model_b, inputs=prepared.arrays, input_shapes=shapes, config_a=config_a, config_b=config_b,
                latency=latency, budget_s=budget, on_progress=progress, discover_configs=_discover_configs(no_config, config_a, config_b),
            )
        document = CompareReport.from_body(body, origin=_origin(body["inputs"], prepared, inputs_file, body["settings"]))
        write_reports(document, reports, protected)
        return document

    document = _handle_errors(display.verbose, work)
    if display.as_json:
        _echo_json(document)
    elif not display.quiet:
        from optimizer.report import render_comparison, report_console

        render_comparison(document, report_console())


@cli.command("partition")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--parts", type=click.IntRange(min=1), required=True, help="Pipeline stages, or concurrent branch groups (plus a head and a tail part).")
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), required=True, help="A new (or empty) folder for the part-XX.onnx files and manifest.json.")
@click.option("--strategy", type=click.Choice(["pipeline", "branches"]), default="pipeline", show_default=True, help="pipeline: a linear cut balanced by FLOPs; branches: the costliest fork-join region's branches in groups.")
@_input_shape_option("Bind dynamic dims for the cost model (the parts keep them dynamic).")
@_display_options(json_help="Print the manifest as JSON on stdout.")
def partition_command(model, parts, out_dir, strategy, input_shapes, display: _Display) -> None:
    """Cut MODEL into sub-models that run one after another (pipeline) or side by side (branches)."""
    _configure_logging(display.verbose, display.quiet)

    def work():
        from optimizer.partition import partition

        return partition(model, parts, out_dir, strategy=strategy, input_shapes=_input_shapes(input_shapes))

    manifest = _handle_errors(display.verbose, work)
    if display.as_json:
        click.echo(json.dumps(manifest.to_dict(), indent=2, default=str))
    elif not display.quiet:
        from optimizer.report import render_manifest, report_console

        render_manifest(manifest, out_dir, report_console())


@cli.command("run-partitioned")
@click.argument("directory", type=click.Path(path_type=Path))
@_inputs_option("Inputs: an .npz of arrays keyed by graph input name [default: generated from the source model].")
@_input_shape_option("Bind dynamic dims of generated inputs (repeatable).")
@click.option("--stream", type=click.IntRange(min=1), default=1, show_default=True, help="Also send N copies of the inputs through the parts as a pipeline and compare throughput.")
@click.option("--rounds", type=click.IntRange(min=0), default=9, show_default=True, help="Rotated timing rounds (0: check only).")
@_display_options()
def run_partitioned_command(directory, inputs_file, input_shapes, stream, rounds, display: _Display) -> None:
    """Run the parts in DIRECTORY, check them against the whole model (exit 1 when they differ), time both."""
    _configure_logging(display.verbose, display.quiet)

    def work():
        from optimizer import api, io, verify as verification
        from optimizer.partition import Manifest, run_partitioned

        manifest = Manifest.load(directory)
        if inputs_file:
            feeds = _read_inputs(inputs_file)
        else:
            source = Path(manifest.source_path)
            feeds, _ = verification.feeds_for(source, io.load(source), None, _input_shapes(input_shapes), 1)
        return run_partitioned(directory, feeds, stream=stream, rounds=rounds)

    report = _handle_errors(display.verbose, work)
    if display.as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    elif not display.quiet:
        from optimizer.report import render_partitioned_run, report_console

        render_partitioned_run(report, report_console())
    if not report.matches or report.stream_matches is False:
        sys.exit(EXIT_FAILED)


def _measuring_line(progress) -> str:
    """A measuring stage's status: what it does, time spent and time left against the budget (never a bare 100%)."""
    if progress.budget_s is None:
        return f"{progress.label} ({progress.elapsed_s:.0f} s)"
    if progress.remaining_s:
        return f"{progress.label} ({progress.elapsed_s:.0f} s of the {progress.budget_s:g} s budget, {progress.remaining_s:.0f} s left)"
    return f"{progress.label} (the {progress.budget_s:g} s budget is spent: finishing the run under way, {progress.elapsed_s:.0f} s)"


class _ProgressBar:
    """A progress bar over a time budget (nothing when disabled or not a terminal).

    Called as `bar(text, fraction)`, or `bar.status(measure.Progress)` by stages that measure: the bar then
    shows the time left, and pulses instead of sitting full once the budget is spent and work goes on.
    """

    def __init__(self, console, *, enabled: bool, total: float, label: str = "tuning") -> None:
        self.console, self.enabled, self.total, self.label = console, enabled and console.is_terminal, total, label
        self.bar = self.task = None

    def __enter__(self):
        if not self.enabled:
            return self
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=self.console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=1.0)
        return self

    def __call__(self, text: str, fraction: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=f"{self.label}: {text}", completed=fraction)

    def status(self, progress) -> None:
        if self.bar is not None:
            spent = progress.remaining_s is not None and progress.remaining_s <= 0
            self.bar.update(self.task, description=f"{self.label}: {_measuring_line(progress)}", total=None if spent else 1.0, completed=progress.fraction)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


@cli.command("passes")
@_json_option("Print the list as JSON.")
def passes_command(as_json: bool) -> None:
    """List every pass with its name, level and what it does."""
    from passes import REGISTRY

    rows = [(cls.name, cls.level, cls.description) for cls in REGISTRY.values()]
    if as_json:
        click.echo(json.dumps([{"name": n, "level": lv, "description": d} for n, lv, d in rows], indent=2))
        return
    from optimizer.report import render_pass_list, report_console

    render_pass_list(rows, report_console())


def _register_fleet() -> None:
    """`optimize fleet`: many models at once (optimizer.fleet); its heavy imports stay inside the command."""
    from optimizer.fleet.cli import fleet_command

    cli.add_command(fleet_command, "fleet")


_register_fleet()


def main() -> None:
    previous = _catch_signals()  # from the start: a signal while the libraries load is no traceback either
    try:
        cli(prog_name="optimize")
    except SystemExit as stop:
        if stop.code == EXIT_INTERRUPTED:
            _exit_now(EXIT_INTERRUPTED)
        raise
    except (KeyboardInterrupt, _Interrupted):
        _fail("interrupted", EXIT_INTERRUPTED)
    except Exception:
        if _signals_received:
            _fail("interrupted", EXIT_INTERRUPTED)
        raise
    finally:
        _restore_signals(previous)


def _exit_now(code: int) -> None:
    """Exit at once, once the cleanup has run: after an interrupted onnxruntime run, the interpreter's
    shutdown can meet onnxruntime's thread pools mid-teardown and abort (SIGABRT) instead of exiting `code`."""
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
