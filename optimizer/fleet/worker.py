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

__all__ = ["OK", "GATE_FAILED", "BAD_INPUT", "FAILED", "EXIT_CODES", "run_job", "outcome", "OUT_OF_MEMORY"]

logger = logging.getLogger(__name__)

OK, GATE_FAILED, BAD_INPUT, FAILED = "ok", "gate-failed", "bad-input", "failed"
OUT_OF_MEMORY = "out of memory (an allocation failed under the memory limit)"
EXIT_CODES = {OK: 0, GATE_FAILED: 1, BAD_INPUT: 2, FAILED: 3}
"""Per model, as the main command's: 1 a gate (or a --strict verification) failed, 2 bad input, 3 a crash,
a timeout or an internal error."""


def outcome(status: str, reason: str = "", document: dict | None = None, files: list[str] | None = None, seconds: float = 0.0) -> dict:
    """A job's result as the driver merges it."""
    return {"status": status, "exit_code": EXIT_CODES[status], "reason": reason, "document": document, "files": files or [], "seconds": round(seconds, 3)}


def _document(result) -> dict:
    from optimizer.reports.document import RunReport

    return RunReport.from_result(result).to_dict()


def run_job(job: Mapping, staging: str | Path) -> dict:
    """Optimize `job["source"]` into STAGING under the output's own name (external data and settings files
    name it), plus its settings; the outcome, never an exception."""
    from optimizer import api
    from optimizer.errors import UserError
    from optimizer.fleet.options import check_gates, optimize_arguments
    from optimizer.verify import first_line

    start = time.perf_counter()
    staged = Path(staging) / Path(job["output"]).name
    try:
        keywords = optimize_arguments(job["options"])
    except (ValueError, TypeError) as error:  # a manifest value of the wrong kind ("budget": "lots")
        return outcome(BAD_INPUT, f"bad option value: {first_line(error)}")
    except UserError as error:
        return outcome(BAD_INPUT, first_line(error))
    try:
        result = api.optimize(job["source"], staged, force=True, **keywords)
        document = _document(result)
        gates = job["options"].get("gates")
        if gates:
            document["gates"] = check_gates(staged, gates)
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
