"""Cost of ``import pydatatask`` in a fresh interpreter: time and peak memory."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from benchmarks._common import Stopwatch, median

RUNS = 5
_RSS = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def _python(code: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *options, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )


def _import_seconds() -> float:
    """Return the cumulative ``-X importtime`` of the top-level ``pydatatask`` import."""
    errors = _python("import pydatatask", "-X", "importtime").stderr
    for line in errors.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == "pydatatask":
            return int(parts[1]) / 1e6
    raise RuntimeError(f"no import time for pydatatask in:\n{errors}")


def _wall_seconds(code: str) -> float:
    with Stopwatch() as watch:
        _python(code)
    return watch.seconds


def measure() -> dict[str, Any]:
    """Return import time (importtime and wall clock) and peak RSS against a bare interpreter."""
    importtime = median([_import_seconds() for _ in range(RUNS)])
    bare_wall = median([_wall_seconds("pass") for _ in range(RUNS)])
    wall = median([_wall_seconds("import pydatatask") for _ in range(RUNS)])
    bare_rss = median([int(_python(_RSS).stdout) / 1024 for _ in range(RUNS)])
    rss = median([int(_python(f"import pydatatask; {_RSS}").stdout) / 1024 for _ in range(RUNS)])
    return {
        "runs": RUNS,
        "seconds": importtime,
        "wall_seconds": wall,
        "bare_wall_seconds": bare_wall,
        "wall_delta_seconds": wall - bare_wall,
        "peak_rss_mib": rss,
        "bare_peak_rss_mib": bare_rss,
        "delta_rss_mib": rss - bare_rss,
    }


def main() -> dict[str, Any]:
    """Entry point (runs its own subprocesses)."""
    return measure()
