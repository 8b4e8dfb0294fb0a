"""The driver: skip what is up to date, hand the rest to an engine, publish each result as it lands.

Everything a model's files go through is here once, whichever engine ran it: the outcome is merged,
the staged files are moved into place (only for a model that produced one), the resume record is
written after them, and the staging folder is removed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from optimizer.fleet.manifest import Job
from optimizer.fleet.outputs import discard, publish
from optimizer.fleet.resume import fingerprint, record_path, recorded_outcome, write_record
from optimizer.fleet.worker import BAD_INPUT, FAILED, GATE_FAILED, OK, outcome

__all__ = ["FleetResult", "Progress", "plan", "run_fleet"]

PUBLISHED = (OK, GATE_FAILED)


@dataclasses.dataclass
class Progress:
    """Counts for the progress line: done, running, failed, skipped as up to date, of total."""

    total: int
    done: int = 0
    running: int = 0
    failed: int = 0
    skipped: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)

    def seconds_left(self) -> float | None:
        """From the pace so far (skipped models excluded); None before the first model ends."""
        finished = self.done - self.skipped
        if finished <= 0:
            return None
        return (time.monotonic() - self.started) / finished * (self.total - self.done)


@dataclasses.dataclass
class FleetResult:
    """One entry per job, in the jobs' order, and the engine that ran them."""

    entries: list[dict]
    engine: dict
    seconds: float

    @property
    def exit_code(self) -> int:
        """The worst model's: 0 all good, 1 a gate failed, 2 bad input, 3 a crash or timeout."""
        return max((entry["exit_code"] for entry in self.entries), default=0)

    @property
    def skipped(self) -> list[str]:
        return [entry["name"] for entry in self.entries if entry["skipped"]]


def _with_final_paths(job: Job, result: dict) -> dict:
    """The outcome with the document naming the source and the published files, not the worker's scratch copies."""
    document = result.get("document")
    if not document:
        return result
    published = {name: str(job.output.parent / name) for name in result.get("files", [])}
    document["input"] = {**(document.get("input") or {}), "path": str(job.source)}
    output = document.get("output") or {}
    document["output"] = {**output, "path": str(job.output), "external_data": published.get(job.output.name + ".data") if output.get("external_data") else None}
    if document.get("config"):
        document["config"] = published.get(job.output.name + ".json")
    return result


def _entry(job: Job, result: dict, skipped: bool) -> dict:
    return {
        "name": job.name,
        "source": str(job.source),
        "output": str(job.output) if result["status"] in PUBLISHED else None,
        "node_type": job.node_type,
        "skipped": skipped,
        **{key: value for key, value in result.items() if key not in ("files", "file_bytes")},
    }


def _foreign_output(job: Job) -> dict | None:
    """A failure outcome when the job's output exists but no fleet run wrote it (it is not ours to replace)."""
    if job.output.exists() and not record_path(job.output).exists():
        return outcome(BAD_INPUT, f"{job.output}: exists and was not written by a fleet run; pass --force to replace it")
    return None


def plan(jobs: Sequence[Job], *, resume: bool = True, force: bool = False) -> tuple[dict[str, dict], dict[str, tuple[str, dict] | None]]:
    """Each job's fingerprint, and what settles it without running: ("skipped", its recorded outcome) when
    up to date, ("refused", a failure) when its output is not ours to replace, None when it must run."""
    with ThreadPoolExecutor(max_workers=4) as hashing:  # sha256 of every source: hashlib releases the GIL
        fingerprints = dict(zip((job.name for job in jobs), hashing.map(fingerprint, jobs)))
    settled: dict[str, tuple[str, dict] | None] = {}
    for job in jobs:
        refused = None if force else _foreign_output(job)
        previous = recorded_outcome(job, fingerprints[job.name]) if resume and refused is None else None
        settled[job.name] = ("refused", refused) if refused else ("skipped", previous) if previous else None
    return fingerprints, settled


def run_fleet(jobs: Sequence[Job], out_dir: Path, engine, *, resume: bool = True, force: bool = False,
              on_progress: Callable[[Progress, str, Job | None, dict | None], None] | None = None) -> FleetResult:
    """Run `jobs` on `engine` (a LocalEngine or RayEngine), writing outputs under `out_dir`.

    An output that exists without a fleet record is left alone (that model fails) unless `force`.
    `on_progress(progress, event, job, entry)` hears "skipped", "started" and "finished" (with the model's entry)."""
    start = time.monotonic()
    progress = Progress(total=len(jobs))
    report = on_progress or (lambda *_: None)
    entries: dict[str, dict] = {}
    fingerprints, settled = plan(jobs, resume=resume, force=force)
    todo = [job for job in jobs if settled[job.name] is None]
    for job in jobs:
        if settled[job.name] is None:
            continue
        how, result = settled[job.name]
        entries[job.name] = _entry(job, result, skipped=how == "skipped")
        progress.done += 1
        progress.skipped += how == "skipped"
        progress.failed += how == "refused"
        report(progress, "skipped" if how == "skipped" else "finished", job, entries[job.name])

    def started(job: Job) -> None:
        progress.running += 1
        report(progress, "started", job, None)

    for job, result, staging in engine.run(todo, out_dir, on_start=started):
        result = _with_final_paths(job, result)
        try:
            if result["status"] in PUBLISHED:
                publish(staging, result["files"], job.output)
                write_record(job, fingerprints[job.name], {key: value for key, value in result.items() if key != "files"})
        except OSError as error:
            result = {**result, "status": FAILED, "exit_code": 3, "reason": f"cannot write {job.output}: {error.strerror or error}"}
        finally:
            discard(staging)
        entries[job.name] = _entry(job, result, skipped=False)
        progress.running -= 1
        progress.done += 1
        progress.failed += result["status"] in (BAD_INPUT, FAILED)
        report(progress, "finished", job, entries[job.name])
    return FleetResult([entries[job.name] for job in jobs], engine.describe(), time.monotonic() - start)
