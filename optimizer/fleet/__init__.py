"""Many models at once: `optimize fleet MODELS -o OUT_DIR`.

    manifest.py    a folder or a YAML/JSON manifest -> Jobs (per-model options over the command line's)
    options.py     per-model options -> optimize() keywords and gate checks
    worker.py      one model's work (optimize, gates) -> an outcome; never raises for the model's sake
    local.py       the local engine: a process per model, sized to the cores, with a timeout
    ray_engine.py  the Ray engine: CPU tasks, whole-node tuning tasks, retries for infrastructure faults
    outputs.py     staging and atomic publication of a model's files
    resume.py      the record beside each output (source sha256, options, tool versions)
    runner.py      the driver: resume, engine, publish, merge
    report.py      the merged report: terminal table, JSON, Markdown, HTML
    cli.py         the click command `fleet_command`
"""

from optimizer.fleet.manifest import FleetInputError, Job, load_jobs
from optimizer.fleet.runner import FleetResult, run_fleet

__all__ = ["FleetInputError", "FleetResult", "Job", "load_jobs", "run_fleet"]
