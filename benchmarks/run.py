"""Run every benchmark and print one table: ``python -m benchmarks.run [--quick] [--json]``.

Each heavy workload runs in its own Python process, so its peak RSS is its own. Speeds
are reported against a lower bound (the same work written with plain asyncio) measured
in the same invocation, because absolute numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.table import (
    MEMORY_1M_N,
    SYNC_FLOORS,
    W1_TITLES,
    Row,
    chain_rows,
    check,
    format_table,
    import_rows,
    jobs,
    memory_1m_rows,
    newkeys_rows,
    noop_curve_rows,
    peers_rows,
    stale_rows,
    w1_rows,
    web_rows,
)

DEFAULT_N = 100_000
QUICK_N = 2_000
S3_DEFAULT_N = 5_000
S3_QUICK_N = 300
"""S3 is far slower per request, so W1 over S3 uses fewer keys (``--s3-n``)."""
MEMORY_1M_QUICK_N = 20_000
"""W1 in memory at a fixed large N (``--memory-1m-n``), whatever ``--n`` says."""
NOOP_MEMORY_K = (10_000, 100_000, 1_000_000)
NOOP_MEMORY_QUICK_K = (2_000, 20_000)
NOOP_FILES_K = (2_000, 20_000, 200_000)
NOOP_FILES_QUICK_K = (500, 2_000)
"""Done keys of the no-op curve (``--noop-k`` sets both lists)."""
PEERS_N = 1_000
"""Keys of W1 next to Dask (``--peers-n``), with or without ``--quick``."""
_ROOT = Path(__file__).resolve().parent.parent
_RESULT_PREFIX = "BENCHMARK-RESULT "

W1_KINDS = [
    "w1-memory",
    "w1-memory-values",
    "w1-files",
    "w1-files-tmpfs",
    "w1-files-values",
    "w1-files-leases",
    "w1-yaml",
    "w1-s3",
]
ORDER = [
    *W1_KINDS,
    "w1-memory-1m",
    "noop-curve",
    "peers",
    "chain",
    "import",
    "web-pages",
    "web-w1",
    "stale-memory",
    "stale-files",
    "newkeys",
    "newkeys-memory",
    "newkeys-s3",
]
GROUPS: dict[str, list[str]] = {
    "w1-memory": ["w1-memory"],
    "w1-files": ["w1-files"],
    "tmpfs": ["w1-files-tmpfs"],
    "memory-1m": ["w1-memory-1m"],
    "noop-curve": ["noop-curve"],
    "peers": ["peers"],
    "w1-files-leases": ["w1-files", "w1-files-leases"],
    "w1-values": ["w1-memory", "w1-memory-values", "w1-files", "w1-files-values"],
    "w1-yaml": ["w1-yaml"],
    "w1-s3": ["w1-s3"],
    "w1": W1_KINDS,
    "noop": ["w1-files"],
    "chain": ["chain"],
    "import": ["import"],
    "web": ["web-pages", "web-w1"],
    "stale": ["stale-memory", "stale-files"],
    "newkeys": ["newkeys", "newkeys-memory", "newkeys-s3"],
}
"""What ``--only NAME`` runs; the no-op re-run is part of the W1 filesystem workload."""


# ------------------------------------------------------------------ workers


def _worker(kind: str, count: int) -> dict[str, Any]:
    """Measure one workload in this process."""
    if kind == "w1-memory-1m":
        from benchmarks import w1

        return w1.main("memory", count)
    if kind.startswith("noop-"):
        from benchmarks import noop

        return noop.main(kind.removeprefix("noop-"), count)
    if kind.startswith("dask-"):
        from benchmarks import peers

        return peers.main(kind.removeprefix("dask-"), count)
    if kind.startswith("lower-"):
        from benchmarks import lower_bound

        return lower_bound.main(kind.removeprefix("lower-"), count)
    if kind.startswith("w1-"):
        from benchmarks import w1

        return w1.main(kind.removeprefix("w1-"), count)
    if kind == "chain":
        from benchmarks import chain

        return chain.main()
    if kind == "import":
        from benchmarks import imports

        return imports.main()
    if kind.startswith("web-"):
        from benchmarks import web

        return web.main(kind.removeprefix("web-"), count)
    if kind.startswith("stale-"):
        from benchmarks import stale

        return stale.main(kind.removeprefix("stale-"), count)
    if kind.startswith("newkeys"):
        from benchmarks import newkeys

        return newkeys.main(kind.removeprefix("newkeys-") if "-" in kind else "files", count)
    raise ValueError(f"unknown workload {kind!r}")


def _spawn(kind: str, count: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Measure one workload in a fresh Python process and return its figures."""
    _progress(f"running {kind} (N={count}) ...")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--worker", kind, "--n", str(count)],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    if done.returncode != 0:
        raise RuntimeError(f"workload {kind} failed ({done.returncode}):\n{done.stderr}")
    lines = [line for line in done.stdout.splitlines() if line.startswith(_RESULT_PREFIX)]
    if not lines:
        raise RuntimeError(f"workload {kind} printed no result:\n{done.stdout}\n{done.stderr}")
    _progress(f"  {kind} took {time.perf_counter() - started:.1f} s")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix(_RESULT_PREFIX))
    return result


MEMORY_TURNS = 3
"""In-memory W1 and its lower bound each run this many times, in turns; medians count."""


def _in_turns(first: str, second: str, count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``first`` and ``second`` in turns, :data:`MEMORY_TURNS` processes each.

    Return the run of each whose time is the median. A run in memory lasts a fraction of
    a second, in which a virtual machine's first pass over fresh memory can make either
    one twice as slow; taking turns meets both with the same machine.
    """
    firsts, seconds = [], []
    for _ in range(MEMORY_TURNS):
        firsts.append(_spawn(first, count))
        seconds.append(_spawn(second, count))
    return _median_run(firsts), _median_run(seconds)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda run: float(run["seconds"]))
    median = dict(ordered[len(ordered) // 2])
    median["runs_seconds"] = [run["seconds"] for run in runs]
    return median


def _spawn_s3(kind: str, count: int) -> dict[str, Any]:
    """Measure one S3 workload against a fresh server of its own, stopped afterwards."""
    from benchmarks import _s3

    with _s3.server() as endpoint:
        return _spawn(kind, count, endpoint.environment())


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------- main


def _selected(only: list[str] | None) -> list[str]:
    if not only:
        return ORDER
    wanted = {kind for name in only for part in name.split(",") for kind in GROUPS[part.strip()]}
    return [kind for kind in ORDER if kind in wanted]


def _s3_versus_files(results: dict[str, Any]) -> Row | None:
    """Return a row comparing W1 over S3 with W1 over plain files, when both ran."""
    if "w1-s3" not in results or "w1-files" not in results:
        return None
    s3 = results["w1-s3"]["pydatatask"]["jobs_per_second"]
    files = results["w1-files"]["pydatatask"]["jobs_per_second"]
    return Row(
        f"  W1 S3 next to W1 filesystem, plain files ({jobs(files)} jobs/s)",
        f"{s3 / files:.3f}",
        "x the files speed",
    )


def _lease_overhead(results: dict[str, Any]) -> Row:
    """What claiming every job costs, per job, next to W1 over the same files without."""
    plain = results["w1-files"]["pydatatask"]["jobs_per_second"]
    leased = results["w1-files-leases"]["pydatatask"]["jobs_per_second"]
    return Row(
        "  lease overhead per job (vs W1 filesystem without leases)",
        f"{(1 / leased - 1 / plain) * 1e6:,.0f}",
        "us/job",
        f"{leased / plain:.2f}x the speed",
    )


def _values_cost(results: dict[str, Any], kind: str) -> Row:
    """What writing the stages as functions over values costs, per job."""
    plain = results[kind.removesuffix("-values")]["pydatatask"]["jobs_per_second"]
    values = results[kind]["pydatatask"]["jobs_per_second"]
    extra = plain / values - 1
    return Row(
        "  cost per job next to the repository style, same run",
        f"{extra * 100:+.1f}",
        "%",
        target="<= +10 %",
        meets=check(extra <= 0.10),
    )


@dataclass
class Sizes:
    """The fixed sizes of the workloads that do not follow ``--n``."""

    memory_1m: int = MEMORY_1M_N
    noop_memory: tuple[int, ...] = NOOP_MEMORY_K
    noop_files: tuple[int, ...] = NOOP_FILES_K
    peers: int = PEERS_N


def _skipped(results: dict[str, Any], rows: list[Row], kind: str, title: str, why: str) -> None:
    _progress(f"skipping {kind}: {why}")
    results[kind] = {"skipped": why}
    rows.append(Row(title, "skipped", "(see the note below)"))


def _measure_fixed(kind: str, sizes: Sizes, results: dict[str, Any], rows: list[Row]) -> None:
    """Run one of the workloads whose sizes are fixed rather than ``--n``."""
    if kind == "w1-memory-1m":
        lower = _spawn("lower-memory", sizes.memory_1m)
        framework = _spawn(kind, sizes.memory_1m)
        results[kind] = {"pydatatask": framework, "lower_bound": lower}
        rows.extend(memory_1m_rows(framework, lower))
    elif kind == "newkeys-memory":
        results[kind] = _spawn(kind, sizes.memory_1m)
        rows.extend(newkeys_rows(results[kind]))
    elif kind == "noop-curve":
        curve = {
            "memory": [_spawn("noop-memory", count) for count in sizes.noop_memory],
            "files": [_spawn("noop-files", count) for count in sizes.noop_files],
        }
        results[kind] = curve
        rows.extend(noop_curve_rows(curve))
    elif kind == "peers":
        from benchmarks import peers

        reason = peers.missing()
        if reason is not None:
            _skipped(results, rows, kind, "Peers: W1 with Dask", reason)
            return
        results[kind] = {
            where: {
                "pydatatask": _spawn(f"w1-{where}", sizes.peers),
                "dask": _spawn(f"dask-{where}", sizes.peers),
            }
            for where in ("memory", "files")
        }
        rows.extend(peers_rows(results[kind]))


def _measure_on_s3(kind: str, count: int, results: dict[str, Any], rows: list[Row]) -> None:
    """Run an S3 workload, each measurement against a fresh server of its own."""
    from benchmarks import _s3

    reason = _s3.missing()
    if reason is not None:
        title = "W1 S3, SeaweedFS" if kind == "w1-s3" else "New keys on S3, SeaweedFS"
        _skipped(results, rows, kind, title, reason)
    elif kind == "newkeys-s3":
        results[kind] = _spawn_s3(kind, count)
        rows.extend(newkeys_rows(results[kind]))
    else:
        lower = _spawn_s3("lower-s3", count)
        framework = _spawn_s3(kind, count)
        results[kind] = {"pydatatask": framework, "lower_bound": lower}
        rows.extend(w1_rows(kind, framework, lower))
        versus = _s3_versus_files(results)
        if versus is not None:
            rows.append(versus)


def measure_all(
    kinds: list[str], count: int, s3_count: int = S3_DEFAULT_N, sizes: Sizes | None = None
) -> tuple[dict[str, Any], list[Row]]:
    """Run the chosen workloads, each lower bound just before its framework run."""
    sizes = sizes or Sizes()
    results: dict[str, Any] = {}
    rows: list[Row] = []
    builders: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
        "chain": chain_rows,
        "import": import_rows,
        "web-pages": web_rows,
        "web-w1": web_rows,
        "stale-memory": stale_rows,
        "stale-files": stale_rows,
        "newkeys": newkeys_rows,
    }
    for kind in kinds:
        if kind in ("w1-memory-1m", "noop-curve", "peers", "newkeys-memory"):
            _measure_fixed(kind, sizes, results, rows)
            continue
        if kind == "w1-files-tmpfs":
            from benchmarks import _common

            reason = _common.tmpfs_missing()
            if reason is not None:
                _skipped(results, rows, kind, W1_TITLES[kind][0], reason)
                continue
        if kind in ("w1-s3", "newkeys-s3"):
            _measure_on_s3(kind, s3_count, results, rows)
        elif kind.startswith("w1-"):
            variant = kind.removeprefix("w1-")
            base = variant.removesuffix("-leases").removesuffix("-values")
            if base == "memory":
                lower, framework = _in_turns(f"lower-{base}", kind, count)
            else:
                lower = _spawn(f"lower-{base}", count)
                framework = _spawn(kind, count)
            results[kind] = {"pydatatask": framework, "lower_bound": lower}
            if kind in SYNC_FLOORS:  # the like-for-like floor too: plain synchronous Python
                results[kind]["sync_floor"] = _spawn(f"lower-{base}-sync", count)
            rows.extend(w1_rows(kind, framework, lower, results[kind].get("sync_floor")))
            if kind == "w1-files-leases" and "w1-files" in results:
                rows.append(_lease_overhead(results))
            if kind.endswith("-values") and kind.removesuffix("-values") in results:
                rows.append(_values_cost(results, kind))
        else:
            results[kind] = _spawn(kind, count)
            rows.extend(builders[kind](results[kind]))
    return results, rows


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("every count must be at least 1")
    return counts


def _listing(counts: tuple[int, ...]) -> str:
    return ", ".join(f"{count:,}" for count in counts)


def _sizes(args: argparse.Namespace) -> Sizes:
    quick = bool(args.quick)
    return Sizes(
        memory_1m=args.memory_1m_n or (MEMORY_1M_QUICK_N if quick else MEMORY_1M_N),
        noop_memory=args.noop_k or (NOOP_MEMORY_QUICK_K if quick else NOOP_MEMORY_K),
        noop_files=args.noop_k or (NOOP_FILES_QUICK_K if quick else NOOP_FILES_K),
        peers=args.peers_n or PEERS_N,
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description="pydatatask speed and memory benchmarks"
    )
    parser.add_argument("--n", type=int, default=None, help=f"keys in W1 (default {DEFAULT_N})")
    parser.add_argument(
        "--s3-n",
        type=int,
        default=None,
        help=f"keys in W1 over S3 (default {S3_DEFAULT_N}; {S3_QUICK_N} with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: N={QUICK_N}, N={S3_QUICK_N} over S3",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these (repeatable or comma-separated): {', '.join(GROUPS)}",
    )
    parser.add_argument(
        "--memory-1m-n",
        type=int,
        default=None,
        help=f"keys in w1-memory-1m (default {MEMORY_1M_N:,}; {MEMORY_1M_QUICK_N:,} with --quick)",
    )
    parser.add_argument(
        "--noop-k",
        type=_counts,
        default=None,
        metavar="K[,K...]",
        help="done keys of every point of the no-op curve, in memory and on files "
        f"(default {_listing(NOOP_MEMORY_K)} in memory, {_listing(NOOP_FILES_K)} on files)",
    )
    parser.add_argument(
        "--peers-n", type=int, default=None, help=f"keys in W1 next to Dask (default {PEERS_N:,})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in args.only or []:
        for part in name.split(","):
            if part.strip() not in GROUPS:
                parser.error(f"unknown benchmark {part!r}; choose from {', '.join(GROUPS)}")
    if args.n is not None and args.n < 1:
        parser.error("--n must be at least 1")
    for option in ("s3_n", "memory_1m_n", "peers_n"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the table (or JSON); return the exit status."""
    args = _parse(argv)
    count = args.n if args.n is not None else QUICK_N if args.quick else DEFAULT_N
    if args.worker:
        print(_RESULT_PREFIX + json.dumps(_worker(args.worker, count)), flush=True)
        return 0
    s3_count = args.s3_n if args.s3_n is not None else S3_QUICK_N if args.quick else S3_DEFAULT_N
    started = time.perf_counter()
    sizes = _sizes(args)
    results, rows = measure_all(_selected(args.only), count, s3_count, sizes)
    elapsed = time.perf_counter() - started
    if args.json:
        payload = {
            "n": count,
            "s3_n": s3_count,
            "sizes": asdict(sizes),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "elapsed_seconds": round(elapsed, 3),
            "results": results,
            "rows": [asdict(row) for row in rows],
        }
        print(json.dumps(payload, indent=2))
    else:
        print(
            f"pydatatask benchmarks: N={count:,} (N={s3_count:,} over S3), "
            f"Python {sys.version.split()[0]},"
        )
        print(
            f"{os.cpu_count()} CPUs; targets are set for N={DEFAULT_N:,} "
            f"(N={S3_DEFAULT_N:,} over S3)"
        )
        print()
        print(format_table(rows))
        print()
        for kind, result in results.items():
            if "skipped" in result:
                print(f"note: {kind} was skipped: {result['skipped']}")
        print(f"total {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
