"""The local engine: one process per model, as many at once as there are cores, each with a deadline.

Not `ProcessPoolExecutor`: when one of its workers dies (a segfault, the kernel's out-of-memory
killer), the pool is broken and every pending model fails with it, and it cannot stop one model at
its timeout. Here each model gets its own process (forked from a server that imported the optimizer
once, so a start costs milliseconds), its result comes back through a pipe, and a process that dies
or outlives its deadline is that model's failure alone.

Tuned models are timed alone: a model that tunes starts only when nothing else runs, and nothing
starts beside it, so its timings are not another model's noise.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import wait
from pathlib import Path

from optimizer.fleet.manifest import Job
from optimizer.fleet.outputs import discard, staging_folder
from optimizer.fleet.worker import FAILED, OUT_OF_MEMORY, outcome, run_job

__all__ = ["LocalEngine", "usable_cores"]

Work = Callable[[dict, Path], dict]


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _child(work: Work, job: dict, staging: str, connection, max_memory: int | None) -> None:
    """In the worker process: cap its address space, run the job and send its outcome back. Ctrl-C is
    the driver's to handle (it stops the workers), not each worker's to print a traceback for."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    start = time.monotonic()
    try:
        if max_memory:
            resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))
        result = work(job, Path(staging))
    except MemoryError:
        result = outcome(FAILED, OUT_OF_MEMORY, seconds=time.monotonic() - start)
    except Exception as error:  # noqa: BLE001 - a work function that raises is that model's failure
        result = outcome(FAILED, f"internal error ({type(error).__name__}: {error})", seconds=time.monotonic() - start)
    try:
        connection.send(result)
    finally:
        connection.close()


def _context():
    """Fork from a server that preloaded the optimizer (Linux); spawn where there is no forkserver."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["onnxruntime", "optimizer.api", "optimizer.fleet.worker", "optimizer.reports.document"])
        return context
    return multiprocessing.get_context("spawn")


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        hint = " (out of memory?)" if -exitcode == signal.SIGKILL else ""
        return f"the worker process died: killed by {name}{hint}"
    return f"the worker process exited with code {exitcode} before sending a result"


class _Running:
    """One model's worker process."""

    def __init__(self, context, work: Work, job: Job, out_dir: Path, timeout: float | None, max_memory: int | None) -> None:
        self.job = job
        self.staging = staging_folder(out_dir, job.name)
        self.receiver, sender = context.Pipe(duplex=False)
        self.process = context.Process(target=_child, args=(work, job.to_dict(), str(self.staging), sender, max_memory), daemon=True)
        self.started = time.monotonic()
        self.deadline = self.started + timeout if timeout else None
        self.timeout = timeout
        self.process.start()
        sender.close()

    def collect(self) -> dict:
        """The outcome once the pipe is readable or the process is gone."""
        try:
            result = self.receiver.recv()
        except (EOFError, OSError):
            self.process.join(5)
            result = outcome(FAILED, _death(self.process.exitcode), seconds=time.monotonic() - self.started)
        self.process.join(5)
        self.receiver.close()
        return result

    def stop(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.receiver.close()

    def timed_out(self) -> dict:
        self.stop()
        return outcome(FAILED, f"timed out after {self.timeout:g} s", seconds=time.monotonic() - self.started)


class LocalEngine:
    """Run jobs in worker processes on this machine; `run` yields (job, outcome, staging folder) as each ends."""

    name = "local"

    def __init__(self, workers: int | None = None, timeout: float | None = None, work: Work = run_job, max_memory: int | None = None) -> None:
        """`workers` models at once (default: the usable cores), each stopped after `timeout` seconds and
        limited to `max_memory` bytes of address space (an allocation past it fails that model alone)."""
        self.workers = max(1, workers or usable_cores())
        self.timeout = timeout
        self.work = work
        self.max_memory = max_memory

    def describe(self) -> dict:
        return {"engine": self.name, "workers": self.workers, "timeout_s": self.timeout, "max_memory": self.max_memory}

    def run(self, jobs: Sequence[Job], out_dir: Path, on_start: Callable[[Job], None] | None = None) -> Iterator[tuple[Job, dict, Path]]:
        context = _context()
        waiting = sorted(jobs, key=lambda job: job.tuned)  # the shared-core work first, then each tuned model alone
        running: list[_Running] = []
        try:
            while waiting or running:
                while waiting and self._may_start(waiting[0], running):
                    job = waiting.pop(0)
                    running.append(_Running(context, self.work, job, out_dir, self.timeout, self.max_memory))
                    if on_start:
                        on_start(job)
                yield from self._finished(running)
        finally:  # interrupted, or the driver failed: stop what still runs and leave no staging behind
            for worker in running:
                worker.stop()
                discard(worker.staging)

    def _may_start(self, job: Job, running: list[_Running]) -> bool:
        if job.tuned or any(worker.job.tuned for worker in running):
            return not running
        return len(running) < self.workers

    def _finished(self, running: list[_Running]) -> Iterator[tuple[Job, dict, Path]]:
        deadlines = [worker.deadline for worker in running if worker.deadline is not None]
        wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        ready = set(wait([worker.receiver for worker in running] + [worker.process.sentinel for worker in running], wait_s))
        now = time.monotonic()
        for worker in list(running):
            if worker.receiver in ready or worker.process.sentinel in ready:
                result = worker.collect()
            elif worker.deadline is not None and now >= worker.deadline:
                result = worker.timed_out()
            else:
                continue
            running.remove(worker)
            yield worker.job, result, worker.staging
