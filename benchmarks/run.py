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

DEFAULT_N = 100_000
QUICK_N = 2_000
S3_DEFAULT_N = 5_000
S3_QUICK_N = 300
"""S3 is far slower per request, so W1 over S3 uses fewer keys (``--s3-n``)."""
_ROOT = Path(__file__).resolve().parent.parent
_RESULT_PREFIX = "BENCHMARK-RESULT "

W1_KINDS = [
    "w1-memory",
    "w1-memory-values",
    "w1-files",
    "w1-files-values",
    "w1-files-leases",
    "w1-yaml",
    "w1-s3",
]
ORDER = [
    *W1_KINDS,
    "chain",
    "import",
    "web-pages",
    "web-w1",
    "stale-memory",
    "stale-files",
    "newkeys",
]
GROUPS: dict[str, list[str]] = {
    "w1-memory": ["w1-memory"],
    "w1-files": ["w1-files"],
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
    "newkeys": ["newkeys"],
}
"""What ``--only NAME`` runs; the no-op re-run is part of the W1 filesystem workload."""


# ------------------------------------------------------------------ workers


def _worker(kind: str, count: int) -> dict[str, Any]:
    """Measure one workload in this process."""
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
    if kind == "newkeys":
        from benchmarks import newkeys

        return newkeys.main(count)
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


def _spawn_s3(kind: str, count: int) -> dict[str, Any]:
    """Measure one S3 workload against a fresh server of its own, stopped afterwards."""
    from benchmarks import _s3

    with _s3.server() as endpoint:
        return _spawn(kind, count, endpoint.environment())


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------- table


@dataclass
class Row:
    """One line of the report."""

    name: str
    value: str
    unit: str
    ratio: str = ""
    rss: str = ""
    target: str = ""
    meets: str = ""


def _check(ok: bool) -> str:
    return "yes" if ok else "NO"


def _jobs(value: float) -> str:
    return f"{value:,.0f}"


def _mib(value: float) -> str:
    return f"{value:.1f}"


W1_TITLES = {
    "w1-memory": ("W1 in-memory", "plain asyncio, dicts"),
    "w1-files": ("W1 filesystem, plain files", "plain asyncio, to_thread files"),
    "w1-memory-values": ("W1 in-memory, functions over values", "plain asyncio, dicts"),
    "w1-files-values": (
        "W1 filesystem, plain files, functions over values",
        "plain asyncio, to_thread files",
    ),
    "w1-files-leases": (
        "W1 filesystem, plain files, with leases (files)",
        "plain asyncio, to_thread files (no claims)",
    ),
    "w1-yaml": ("W1 filesystem, YAML", "plain asyncio, to_thread YAML"),
    "w1-s3": ("W1 S3, SeaweedFS", "plain asyncio, one aiobotocore client"),
}
W1_RATIO_TARGET = {"w1-memory": 1.0, "w1-files": 0.5, "w1-yaml": 0.5}
"""The project's goals; W1 over S3 has none yet, so its ratio is shown without one."""
RSS_TARGET_MIB = 300.0
NO_OP_TARGET_S = 2.0
CHAIN_TARGET_MS = 100.0
IMPORT_TARGET_S = 0.2
IMPORT_RSS_TARGET_MIB = 40.0


def _w1_rows(kind: str, framework: dict[str, Any], lower: dict[str, Any]) -> list[Row]:
    title, lower_title = W1_TITLES[kind]
    if kind == "w1-s3":
        title += f", N={framework['n']:,}"
    ratio = framework["jobs_per_second"] / lower["jobs_per_second"]
    target = W1_RATIO_TARGET.get(kind)
    rows = [
        Row(
            f"{title} ({framework['jobs']:,} jobs)",
            _jobs(framework["jobs_per_second"]),
            "jobs/s",
            f"{ratio:.2f}x",
            _mib(framework["peak_rss_mib"]),
            "" if target is None else f">= {target:.1f}x",
            "" if target is None else _check(ratio >= target),
        ),
        Row(
            f"  lower bound: {lower_title}",
            _jobs(lower["jobs_per_second"]),
            "jobs/s",
            "1.00x",
            _mib(lower["peak_rss_mib"]),
        ),
    ]
    if "requests" in framework and "requests" in lower:
        per_job = [sum(side["requests"].values()) / side["jobs"] for side in (framework, lower)]
        rows.append(
            Row(
                "  S3 requests per job: pydatatask / lower bound",
                f"{per_job[0]:.2f} / {per_job[1]:.2f}",
                "requests",
            )
        )
    if framework["extra_launches"]:
        rows.append(
            Row(
                "  launches beyond one per job",
                f"{framework['extra_launches']:,}",
                "jobs",
                target="0",
                meets="NO",
            )
        )
    if kind == "w1-memory":
        rows.append(
            Row(
                "W1 in-memory peak RSS",
                _mib(framework["peak_rss_mib"]),
                "MiB",
                target=f"< {RSS_TARGET_MIB:.0f} MiB",
                meets=_check(framework["peak_rss_mib"] < RSS_TARGET_MIB),
            )
        )
    if "no_op" in framework:
        no_op = framework["no_op"]
        rows.append(
            Row(
                f"No-op re-run, filesystem ({no_op['done_jobs_considered']:,} done jobs)",
                f"{no_op['seconds']:.3f}",
                "s",
                target=f"< {NO_OP_TARGET_S:.0f} s",
                meets=_check(no_op["seconds"] < NO_OP_TARGET_S),
            )
        )
        rows.append(
            Row(
                "  of which run() alone; jobs launched",
                f"{no_op['run_seconds']:.3f}",
                f"s; {no_op['launched']}",
            )
        )
    return rows


def _chain_rows(chain: dict[str, Any]) -> list[Row]:
    ratio = chain["lower_bound_ms"] / chain["ms"]
    return [
        Row(
            f"Chain of {chain['stages']} stages, 1 key (median of {chain['trials']})",
            f"{chain['ms']:.2f}",
            "ms",
            f"{ratio:.3f}x",
            target=f"< {CHAIN_TARGET_MS:.0f} ms",
            meets=_check(chain["ms"] < CHAIN_TARGET_MS),
        ),
        Row("  lower bound: plain asyncio tasks", f"{chain['lower_bound_ms']:.3f}", "ms", "1.00x"),
    ]


def _web_rows(result: dict[str, Any]) -> list[Row]:
    from benchmarks import web

    rows: list[Row] = web.rows(result)
    return rows


def _stale_rows(result: dict[str, Any]) -> list[Row]:
    where = "in memory, 2 stages" if result["kind"] == "memory" else "on files, 1 stage"
    floor = result["floor_s"]
    rows = [
        Row(
            f"{command} over {result['count']:,} done keys {where}",
            f"{result[key]:.2f}",
            "s",
            f"{floor / result[key]:.3f}x",
            _mib(result["rss_peak_mib"]) if key == "status_s" else "",
        )
        for command, key in (
            ("status", "status_s"),
            ("plan", "plan_s"),
            ("plan --rerun-stale", "plan_rerun_s"),
        )
    ]
    floor_name = (
        "hash every input and compare"
        if result["kind"] == "memory"
        else "stat every input, read every record"
    )
    rows.append(Row(f"  lower bound: {floor_name}, plain Python", f"{floor:.2f}", "s", "1.00x"))
    return rows


def _newkeys_rows(result: dict[str, Any]) -> list[Row]:
    if "skipped" in result:
        return [
            Row("New keys with many done, run --forever on files", "skipped", result["skipped"])
        ]
    return [
        Row(
            f"{result['new']} new keys with {result['done']:,} done, run --forever on files",
            f"{result['seconds']:.3f}",
            "s",
            f"{result['floor_seconds'] / result['seconds']:.3f}x",
            _mib(result["peak_rss_mib"]),
            target="< 1 s, no listing",
            meets=_check(result["seconds"] < 1.0 and not result["listed_again"]),
        ),
        Row(
            "  lower bound: write the files and records in plain Python",
            f"{result['floor_seconds']:.3f}",
            "s",
            "1.00x",
        ),
    ]


def _import_rows(result: dict[str, Any]) -> list[Row]:
    return [
        Row(
            f"import pydatatask, -X importtime (median of {result['runs']})",
            f"{result['seconds']:.3f}",
            "s",
            target=f"< {IMPORT_TARGET_S:.1f} s",
            meets=_check(result["seconds"] < IMPORT_TARGET_S),
        ),
        Row(
            "  wall clock over bare python -c pass",
            f"{result['wall_delta_seconds']:.3f}",
            "s",
        ),
        Row(
            "import pydatatask peak RSS",
            _mib(result["peak_rss_mib"]),
            "MiB",
            target=f"< {IMPORT_RSS_TARGET_MIB:.0f} MiB",
            meets=_check(result["peak_rss_mib"] < IMPORT_RSS_TARGET_MIB),
        ),
        Row(
            f"  over bare python ({_mib(result['bare_peak_rss_mib'])} MiB)",
            _mib(result["delta_rss_mib"]),
            "MiB",
        ),
    ]


HEADERS = Row("benchmark", "value", "unit", "vs lower bound", "peak RSS MiB", "target", "meets")


def format_table(rows: list[Row]) -> str:
    """Return the rows as aligned plain text: names left, figures right."""
    table = [list(asdict(row).values()) for row in [HEADERS, *rows]]
    widths = [max(len(line[column]) for line in table) for column in range(len(HEADERS.__dict__))]
    left = {0, 2, 5, 6}
    lines = []
    for index, line in enumerate(table):
        cells = [
            cell.ljust(width) if column in left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


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
        f"  W1 S3 next to W1 filesystem, plain files ({_jobs(files)} jobs/s)",
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
        meets=_check(extra <= 0.10),
    )


def measure_all(
    kinds: list[str], count: int, s3_count: int = S3_DEFAULT_N
) -> tuple[dict[str, Any], list[Row]]:
    """Run the chosen workloads, each lower bound just before its framework run."""
    results: dict[str, Any] = {}
    rows: list[Row] = []
    builders: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
        "chain": _chain_rows,
        "import": _import_rows,
        "web-pages": _web_rows,
        "web-w1": _web_rows,
        "stale-memory": _stale_rows,
        "stale-files": _stale_rows,
        "newkeys": _newkeys_rows,
    }
    for kind in kinds:
        if kind == "w1-s3":
            from benchmarks import _s3

            reason = _s3.missing()
            if reason is not None:
                _progress(f"skipping {kind}: {reason}")
                results[kind] = {"skipped": reason}
                rows.append(Row("W1 S3, SeaweedFS", "skipped", "(see the note below)"))
                continue
            lower = _spawn_s3("lower-s3", s3_count)
            framework = _spawn_s3(kind, s3_count)
            results[kind] = {"pydatatask": framework, "lower_bound": lower}
            rows.extend(_w1_rows(kind, framework, lower))
            versus = _s3_versus_files(results)
            if versus is not None:
                rows.append(versus)
        elif kind.startswith("w1-"):
            variant = kind.removeprefix("w1-")
            base = variant.removesuffix("-leases").removesuffix("-values")
            lower = _spawn(f"lower-{base}", count)
            framework = _spawn(kind, count)
            results[kind] = {"pydatatask": framework, "lower_bound": lower}
            rows.extend(_w1_rows(kind, framework, lower))
            if kind == "w1-files-leases" and "w1-files" in results:
                rows.append(_lease_overhead(results))
            if kind.endswith("-values") and kind.removesuffix("-values") in results:
                rows.append(_values_cost(results, kind))
        else:
            results[kind] = _spawn(kind, count)
            rows.extend(builders[kind](results[kind]))
    return results, rows


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
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in args.only or []:
        for part in name.split(","):
            if part.strip() not in GROUPS:
                parser.error(f"unknown benchmark {part!r}; choose from {', '.join(GROUPS)}")
    if args.n is not None and args.n < 1:
        parser.error("--n must be at least 1")
    if args.s3_n is not None and args.s3_n < 1:
        parser.error("--s3-n must be at least 1")
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
    results, rows = measure_all(_selected(args.only), count, s3_count)
    elapsed = time.perf_counter() - started
    if args.json:
        payload = {
            "n": count,
            "s3_n": s3_count,
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
