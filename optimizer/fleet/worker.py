"""One model's work, as a worker process or a Ray task runs it: `optimize()` into a staging folder.

`run_job` never raises for the model's sake: bad input, a failed gate or an internal error come back
as an outcome (a plain dict: status, exit code, reason, the per-model report document, the files
written), so one model's failure is that model's row in the report, and Ray does not retry bad input.
Options are the main command's, with its defaults (tuning on, a 30 s budget).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["OK", "GATE_FAILED", "BAD_INPUT", "FAILED", "EXIT_CODES", "run_job", "outcome", "optimize_arguments", "OUT_OF_MEMORY"]

logger = logging.getLogger(__name__)

OK, GATE_FAILED, BAD_INPUT, FAILED = "ok", "gate-failed", "bad-input", "failed"
OUT_OF_MEMORY = "out of memory (an allocation failed under the memory limit)"
EXIT_CODES = {OK: 0, GATE_FAILED: 1, BAD_INPUT: 2, FAILED: 3}
"""Per model, as the main command's: 1 a gate (or a --strict verification) failed, 2 bad input, 3 a crash,
a timeout or an internal error."""


def outcome(status: str, reason: str = "", document: dict | None = None, files: list[str] | None = None, seconds: float = 0.0) -> dict:
    """A job's result as the driver merges it."""
    return {"status": status, "exit_code": EXIT_CODES[status], "reason": reason, "document": document, "files": files or [], "seconds": round(seconds, 3)}


def _names(value) -> list[str]:
    """A list option given as a list or as comma-separated text."""
    items = value if isinstance(value, (list, tuple)) else [value]
    return [name.strip() for item in items for name in str(item).split(",") if name.strip()]


def _input_shapes(value) -> dict:
    from optimizer.verify import VerificationInputError, parse_input_shapes

    if isinstance(value, Mapping):
        return {name: tuple(int(d) for d in dims) for name, dims in value.items()}
    try:
        return parse_input_shapes(_names(value) if not isinstance(value, (list, tuple)) else [str(v) for v in value])
    except ValueError as error:
        raise VerificationInputError(str(error)) from None


def _lossy(options: Mapping):
    """LossyOptions from the quantization/pruning options, or None when none is asked for."""
    from optimizer.error_budget import ErrorBudget
    from optimizer.lossy import LossyInputError, LossyOptions

    if options.get("quantize", "none") == "none" and options.get("prune_weights") is None:
        return None
    ratio = options.get("prune_weights")
    if isinstance(ratio, str):
        method, _, value = ratio.partition(":")
        try:
            ratio = float(value) if method == "magnitude" else None
        except ValueError:
            ratio = None
        if ratio is None:
            raise LossyInputError(f"prune_weights {options['prune_weights']!r}: expected magnitude:RATIO")
    try:
        budget = ErrorBudget.parse(_names(options.get("max_error", [])))
    except ValueError as error:
        raise LossyInputError(str(error)) from None
    return LossyOptions(
        quantize=options.get("quantize", "none"),
        calibration=Path(options["calibration"]) if options.get("calibration") else None,
        budget=budget,
        per_channel=bool(options.get("per_channel", True)),
        quant_format=options.get("quant_format", "qdq"),
        exclude_nodes=tuple(_names(options.get("exclude_nodes", []))),
        op_types=tuple(_names(options.get("op_types", []))) or None,
        prune_weights=ratio,
        time_budget_s=float(options.get("budget", 30.0)),
    )


def optimize_arguments(options: Mapping) -> dict:
    """`optimizer.api.optimize` keywords from a job's options (UserError for bad values)."""
    from optimizer import verify

    keywords = {
        "level": options.get("level", "O2"),
        "passes": _names(options["passes"]) if options.get("passes") else None,
        "skip_passes": _names(options.get("skip_passes", [])),
        "verify": bool(options.get("verify", True)),
        "inputs": verify.load_inputs(options["inputs"]) if options.get("inputs") else None,
        "input_shapes": _input_shapes(options.get("input_shape") or {}),
        "tune": bool(options.get("tune", True)),
        "tune_budget": float(options.get("budget", 30.0)),
        "objective": options.get("objective", "latency"),
        "batch": int(options.get("batch", 1)),
        "lossy": _lossy(options),
        "prune_outputs": _names(options["prune_outputs"]) if options.get("prune_outputs") else None,
    }
    for key in ("rtol", "atol", "fold_max_bytes", "fold_max_growth", "target_opset", "external_data"):
        if options.get(key) is not None:
            keywords[key] = options[key]
    for key in ("strict", "keep_initializer_inputs"):
        keywords[key] = bool(options.get(key, False))
    return keywords


def _check_gates(output: Path, gates: Mapping) -> dict:
    """The static gates of `optimize check` on the written model."""
    from optimizer.gates import CheckOptions, parse_size, run_check

    size = gates.get("max_size")
    check = CheckOptions(
        max_size=parse_size(size) if isinstance(size, str) else size,
        max_params=gates.get("max_params"),
        require_ops=_names(gates.get("require_ops", [])),
        forbid_ops=_names(gates.get("forbid_ops", [])),
    )
    return run_check(output, check).to_dict()


def _document(result) -> dict:
    from optimizer.reports.document import optimization_document

    return optimization_document(result)


def run_job(job: Mapping, staging: str | Path) -> dict:
    """Optimize `job["source"]` into STAGING under the output's own name (external data and settings files
    name it), plus its settings; the outcome, never an exception."""
    from optimizer import api
    from optimizer.errors import UserError
    from optimizer.verify import first_line

    start = time.perf_counter()
    staged = Path(staging) / Path(job["output"]).name
    try:
        keywords = optimize_arguments(job["options"])
        result = api.optimize(job["source"], staged, force=True, **keywords)
        document = _document(result)
        gates = job["options"].get("gates")
        if gates:
            document["gates"] = _check_gates(staged, gates)
    except (UserError, KeyError) as error:
        return outcome(BAD_INPUT, first_line(error) if isinstance(error, UserError) else str(error.args[0]), seconds=time.perf_counter() - start)
    except api.VerificationFailedError as error:
        return outcome(GATE_FAILED, f"verification failed (strict): {first_line(error)}", seconds=time.perf_counter() - start)
    except MemoryError:
        return outcome(FAILED, OUT_OF_MEMORY, seconds=time.perf_counter() - start)
    except Exception as error:  # noqa: BLE001 - one model's internal error is that model's failure
        logger.debug("internal error on %s", job["source"], exc_info=True)
        return outcome(FAILED, f"internal error ({type(error).__name__}: {first_line(error)})", seconds=time.perf_counter() - start)
    files = sorted(path.name for path in Path(staging).iterdir() if path.is_file())
    passed = document.get("gates", {}).get("passed", True)
    failed_gates = [gate["gate"] for gate in document.get("gates", {}).get("gates", []) if not gate["passed"]]
    status, reason = (OK, "") if passed else (GATE_FAILED, f"gate(s) failed: {', '.join(failed_gates)}")
    return outcome(status, reason, document, files, time.perf_counter() - start)
