"""Shared pieces: keys and values, timing, peak memory, temporary folders."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CONCURRENCY = 256
"""Jobs in flight at once, in the pipelines (their default) and in the lower bounds."""
VALUE_SIZE = 100
"""Bytes per input value."""
DONE_MARKER = b"success: true\n"
"""What a lower bound writes as a job's done marker on disk."""

_FILLER = "abcdefghijklmnopqrstuvwxyz" * 4


def keys(count: int) -> list[str]:
    """Return ``count`` job ids."""
    width = max(6, len(str(count)))
    return [f"k{index:0{width}d}" for index in range(count)]


def value_of(key: str) -> str:
    """Return the 100-character lower-case input value of ``key``."""
    return (f"{key}-{_FILLER}")[:VALUE_SIZE]


def peak_rss_mib() -> float:
    """Return this process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: list[float]) -> float:
    """Return the median of ``values``."""
    return statistics.median(values)


class Stopwatch:
    """Measure wall-clock seconds with ``perf_counter`` in a ``with`` block."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


TMPFS = Path("/dev/shm")
"""Where the ``-tmpfs`` variants keep their files: memory-backed, no disk underneath."""


def tmpfs_missing() -> str | None:
    """Return why the ``-tmpfs`` variants cannot run here, or None when they can."""
    if not TMPFS.is_dir():
        return f"{TMPFS} does not exist on this machine"
    if not os.access(TMPFS, os.W_OK | os.X_OK):
        return f"{TMPFS} is not writable"
    return None


@contextlib.contextmanager
def scratch(name: str, under: Path | None = None) -> Iterator[Path]:
    """Yield a fresh folder under ``under`` (default: the system temporary folder).

    The folder is removed afterwards.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"pydatatask-bench-{name}-", dir=under))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_inputs(folder: Path, names: list[str], as_yaml: bool) -> None:
    """Write one input file per key, plain text or a YAML string, before timing starts."""
    import yaml

    os.makedirs(folder, exist_ok=True)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    for key in names:
        text = value_of(key)
        data = yaml.dump(text, Dumper=dumper).encode() if as_yaml else text.encode()
        suffix = ".yaml" if as_yaml else ""
        with open(folder / f"{key}{suffix}", "wb") as file:
            file.write(data)


def read_file(path: str) -> bytes:
    """Return a file's bytes, as plain Python reads them."""
    with open(path, "rb") as file:
        return file.read()


def replace_file(folder: str, name: str, data: bytes) -> None:
    """Write to a hidden temporary name in the folder, then rename it into place."""
    temp = os.path.join(folder, f".{name}.tmp")
    with open(temp, "wb") as file:
        file.write(data)
    os.replace(temp, os.path.join(folder, name))
