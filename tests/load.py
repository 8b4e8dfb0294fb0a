"""A CPU-burning neighbour for tests that must hold under load: `python -c "while True: pass"` processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

__all__ = ["cpu_burners"]


@contextlib.contextmanager
def cpu_burners(count: int = 2) -> Iterator[list[subprocess.Popen]]:
    """Start `count` busy-looping processes; stop (and reap) exactly those on exit."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield burners
    finally:
        for burner in burners:
            burner.terminate()
        for burner in burners:
            try:
                burner.wait(timeout=5)
            except subprocess.TimeoutExpired:
                burner.kill()
                burner.wait()
