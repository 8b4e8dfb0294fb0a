"""The Ray engine: each model a Ray task on an existing cluster (or a private one on this machine).

- The source model (and its `.data`, `--inputs`, `--calibration` files) travel to the task through
  the object store, so nodes need no shared filesystem; the files the task writes come back the same
  way, and the driver writes them (temporary name, then rename).
- Optimize + verify are CPU tasks sized by the model's bytes. A tuned model reserves a whole node:
  all the CPUs of a node (the largest), or with a node type, all the CPUs of a node that advertises
  the custom resource `node_type:<name>`, so no two timings, and no other model, share a machine.
- Retries are for the infrastructure: a worker or node that dies is retried (`max_retries`); bad
  input is not an exception but a failure outcome, so it is never retried.
- At most as many CPU tasks are in flight as the cluster has CPUs, and as many tuning tasks as it has
  nodes (of the type): the driver holds little, and the per-model timeout (counted from submission)
  measures running time, not queueing.

`import ray` happens only here, when the engine starts.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from optimizer.fleet.manifest import PATH_KEYS, FleetInputError, Job
from optimizer.fleet.outputs import stage_bytes, staging_folder
from optimizer.fleet.worker import BAD_INPUT, FAILED, outcome, run_job

__all__ = ["RayEngine", "cpus_for", "ray_task"]

MiB = 1 << 20
Work = Callable[[dict, Path], dict]


def cpus_for(model_bytes: int) -> int:
    """CPUs an optimize + verify task asks for: onnxruntime's verification runs threads on big models."""
    return 1 if model_bytes < 200 * MiB else 2 if model_bytes < 2048 * MiB else 4


def _import_ray():
    try:
        import ray
    except ImportError:
        raise FleetInputError("--engine ray needs Ray, which is not installed: pip install 'optimize[ray]'") from None
    return ray


def _shipped_files(job: Job) -> dict[str, bytes]:
    """The files the task needs, by name in its scratch folder: the model, its external data, input files."""
    files = {"source.onnx": job.source.read_bytes()}
    data = job.source.with_name(job.source.name + ".data")
    if data.is_file():
        files["source.onnx.data"] = data.read_bytes()
    for key in PATH_KEYS:
        value = job.options.get(key)
        if isinstance(value, str) and Path(value).is_file():
            files[f"{key}{Path(value).suffix}"] = Path(value).read_bytes()
    return files


def ray_task(work: Work, job: dict, shipped: dict[str, bytes]) -> dict:
    """On a Ray worker: unpack the shipped files, run the job, send back its outcome and its files' bytes."""
    with tempfile.TemporaryDirectory(prefix="optimize-fleet-") as scratch:
        inputs, staging = Path(scratch, "in"), Path(scratch, "out")
        inputs.mkdir()
        staging.mkdir()
        stage_bytes(inputs, shipped)
        options = dict(job["options"])
        for key in PATH_KEYS:
            local = [name for name in shipped if name.startswith(key)]
            if local:
                options[key] = str(inputs / local[0])
        result = work({**job, "source": str(inputs / "source.onnx"), "options": options}, staging)
        result["file_bytes"] = {name: (staging / name).read_bytes() for name in result.get("files", [])}
        return result


class RayEngine:
    """Run jobs as Ray tasks; `run` yields (job, outcome, staging folder) as each ends."""

    name = "ray"

    def __init__(self, address: str | None = "auto", timeout: float | None = None, max_retries: int = 3, work: Work = run_job, local_cpus: int | None = None,
                 max_memory: int | None = None, max_in_flight: int | None = None) -> None:
        """Connect to the cluster at `address` (auto, HOST:PORT, ray://...), or with `local` start a private
        instance on this machine (loopback only, `local_cpus` CPUs); an instance already started in this
        process is used as it is. `max_memory` is reserved per task (Ray's `memory` resource);
        `max_in_flight` caps the tasks submitted at once (the models the driver's object store holds)."""
        self.ray = _import_ray()
        if not self.ray.is_initialized():
            self._connect(address, local_cpus)
        self.nodes = [node for node in self.ray.nodes() if node.get("Alive")]
        self.address, self.work = address, work
        self.timeout, self.max_retries, self.max_memory, self.max_in_flight = timeout, max_retries, max_memory, max_in_flight

    def _connect(self, address: str | None, local_cpus: int | None) -> None:
        try:
            if address in (None, "", "local"):
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a private instance listens on 127.0.0.1 only
                self.ray.init(num_cpus=local_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
            else:
                self.ray.init(address=address, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise FleetInputError(f"--address {address}: cannot connect to a Ray cluster ({str(error).splitlines()[0]})") from None

    def describe(self) -> dict:
        cpus = sum(node["Resources"].get("CPU", 0) for node in self.nodes)
        return {"engine": self.name, "address": self.address, "nodes": len(self.nodes), "cpus": cpus, "timeout_s": self.timeout, "max_retries": self.max_retries,
                "max_memory": self.max_memory, "max_in_flight": self.max_in_flight}

    def _node_cpus(self, node_type: str | None) -> int:
        """The CPUs of a whole node (of that type): what a tuning task reserves."""
        key = f"node_type:{node_type}" if node_type else None
        counts = [int(node["Resources"].get("CPU", 0)) for node in self.nodes if key is None or key in node["Resources"]]
        if not counts:
            raise FleetInputError(f"--node-type {node_type}: no node of the cluster has the resource {key} (start it with ray start --resources '{{\"{key}\": 1}}')")
        return max(counts) if key is None else min(counts)

    def _options(self, job: Job) -> dict:
        options = {"max_retries": self.max_retries, "retry_exceptions": False, "num_cpus": cpus_for(job.source.stat().st_size)}
        if self.max_memory:
            options["memory"] = self.max_memory
        if job.tuned:
            options["num_cpus"] = self._node_cpus(job.node_type)
            if job.node_type:
                options["resources"] = {f"node_type:{job.node_type}": 1}
        return options

    def run(self, jobs: Sequence[Job], out_dir: Path, on_start: Callable[[Job], None] | None = None) -> Iterator[tuple[Job, dict, Path]]:
        ray = self.ray
        for node_type in {job.node_type for job in jobs if job.tuned}:
            self._node_cpus(node_type)  # an unknown node type fails the run before anything is submitted
        task = ray.remote(ray_task)
        waiting, pending = list(jobs), {}
        try:
            while waiting or pending:
                while (job := self._next(waiting, pending)) is not None:
                    waiting.remove(job)
                    if on_start:
                        on_start(job)
                    try:
                        reference = task.options(**self._options(job)).remote(self.work, job.to_dict(), _shipped_files(job))
                    except OSError as error:
                        yield job, outcome(BAD_INPUT, f"{job.source}: cannot read: {error.strerror or error}"), staging_folder(out_dir, job.name)
                        continue
                    pending[reference] = (job, time.monotonic())
                yield from self._finished(pending, out_dir)
        finally:
            for reference in pending:
                ray.cancel(reference, force=True)

    def _slots(self, job: Job) -> tuple[tuple, int]:
        """The pool a job draws from and its size: a tuned job one of the nodes (of its type) it can have
        whole, any other job one of the cluster's CPUs."""
        if job.tuned:
            key, cpus = f"node_type:{job.node_type}" if job.node_type else None, self._node_cpus(job.node_type)
            hosts = [node for node in self.nodes if (key is None or key in node["Resources"]) and node["Resources"].get("CPU", 0) >= cpus]
            return ("tune", job.node_type), max(1, len(hosts))
        return ("cpu",), max(1, int(sum(node["Resources"].get("CPU", 0) for node in self.nodes)))

    def _next(self, waiting: list[Job], pending: dict) -> Job | None:
        """The first waiting job whose pool has room: the cluster is kept busy, not flooded, so a task's
        time from submission is close to its running time."""
        if self.max_in_flight and len(pending) >= self.max_in_flight:
            return None
        for job in waiting:
            pool, size = self._slots(job)
            if sum(1 for other, _ in pending.values() if self._slots(other)[0] == pool) < size:
                return job
        return None

    def _finished(self, pending: dict, out_dir: Path) -> Iterator[tuple[Job, dict, Path]]:
        ready, _ = self.ray.wait(list(pending), num_returns=1, timeout=1.0)
        for reference in ready:
            job, started = pending.pop(reference)
            yield job, *self._collect(job, reference, started, out_dir)
        now = time.monotonic()
        for reference, (job, started) in list(pending.items()):
            if self.timeout and now - started > self.timeout:
                self.ray.cancel(reference, force=True)
                pending.pop(reference)
                yield job, outcome(FAILED, f"timed out after {self.timeout:g} s"), staging_folder(out_dir, job.name)

    def _collect(self, job: Job, reference, started: float, out_dir: Path) -> tuple[dict, Path]:
        staging = staging_folder(out_dir, job.name)
        try:
            result = self.ray.get(reference)
        except self.ray.exceptions.RayError as error:
            reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            return outcome(FAILED, f"the Ray task failed after {self.max_retries} retries: {type(error).__name__}: {reason}", seconds=time.monotonic() - started), staging
        result["files"] = stage_bytes(staging, result.pop("file_bytes", {}))
        return result, staging
