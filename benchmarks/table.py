"""The report of ``python -m benchmarks.run``: its rows, their targets and the table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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


def check(ok: bool) -> str:
    return "yes" if ok else "NO"


def jobs(value: float) -> str:
    return f"{value:,.0f}"


def mib(value: float) -> str:
    return f"{value:.1f}"


W1_TITLES = {
    "w1-memory": ("W1 in-memory", "plain asyncio, dicts"),
    "w1-files": ("W1 filesystem, plain files", "plain asyncio, to_thread files"),
    "w1-files-tmpfs": (
        "W1 tmpfs (/dev/shm), plain files",
        "plain asyncio, to_thread files on tmpfs",
    ),
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
IMPORT_TARGET_S = 0.1
IMPORT_RSS_TARGET_MIB = 40.0
MEMORY_1M_N = 1_000_000
"""The size of W1 in memory at which its targets apply (the fixed N of ``memory-1m``)."""
MEMORY_1M_TARGET_S = 25.0
MEMORY_1M_RSS_TARGET_MIB = 1.5e9 / 2**20
"""1.5 GB (10^9 bytes), about 1,431 MiB."""
NOOP_MEMORY_TARGET = (1_000_000, 1.0)
"""(keys, seconds): the no-op re-run over 1M done keys in memory takes under 1 s."""
NOOP_FILES_TARGET = (200_000, 1.5)
"""(keys, factor): over 200k done keys on files, within 1.5x the listing floor's time."""


SYNC_FLOORS = {"w1-files": 0.8, "w1-files-tmpfs": 0.5}
"""W1 variants measured against plain synchronous Python too, and the ratio each aims at."""


def w1_rows(
    kind: str,
    framework: dict[str, Any],
    lower: dict[str, Any],
    sync_floor: dict[str, Any] | None = None,
) -> list[Row]:
    """Return the rows of one W1 variant: its speed against its lower bound(s)."""
    title, lower_title = W1_TITLES[kind]
    if kind == "w1-s3":
        title += f", N={framework['n']:,}"
    ratio = framework["jobs_per_second"] / lower["jobs_per_second"]
    target = W1_RATIO_TARGET.get(kind)
    rows = [
        Row(
            f"{title} ({framework['jobs']:,} jobs)",
            jobs(framework["jobs_per_second"]),
            "jobs/s",
            f"{ratio:.2f}x",
            mib(framework["peak_rss_mib"]),
            "" if target is None else f">= {target:.1f}x",
            "" if target is None else check(ratio >= target),
        ),
        Row(
            f"  lower bound: {lower_title}",
            jobs(lower["jobs_per_second"]),
            "jobs/s",
            "1.00x",
            mib(lower["peak_rss_mib"]),
        ),
    ]
    if sync_floor is not None:
        sync_ratio = framework["jobs_per_second"] / sync_floor["jobs_per_second"]
        aim = SYNC_FLOORS[kind]
        rows.append(
            Row(
                "  like-for-like floor: plain synchronous Python, temp + rename, "
                "durable done markers",
                jobs(sync_floor["jobs_per_second"]),
                "jobs/s",
                f"{sync_ratio:.2f}x",
                mib(sync_floor["peak_rss_mib"]),
                f">= {aim:.1f}x",
                check(sync_ratio >= aim),
            )
        )
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
                mib(framework["peak_rss_mib"]),
                "MiB",
                target=f"< {RSS_TARGET_MIB:.0f} MiB",
                meets=check(framework["peak_rss_mib"] < RSS_TARGET_MIB),
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
                meets=check(no_op["seconds"] < NO_OP_TARGET_S),
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


def chain_rows(chain: dict[str, Any]) -> list[Row]:
    ratio = chain["lower_bound_ms"] / chain["ms"]
    return [
        Row(
            f"Chain of {chain['stages']} stages, 1 key (median of {chain['trials']})",
            f"{chain['ms']:.2f}",
            "ms",
            f"{ratio:.3f}x",
            target=f"< {CHAIN_TARGET_MS:.0f} ms",
            meets=check(chain["ms"] < CHAIN_TARGET_MS),
        ),
        Row("  lower bound: plain asyncio tasks", f"{chain['lower_bound_ms']:.3f}", "ms", "1.00x"),
    ]


def web_rows(result: dict[str, Any]) -> list[Row]:
    from benchmarks import web

    rows: list[Row] = web.rows(result)
    return rows


def stale_rows(result: dict[str, Any]) -> list[Row]:
    where = "in memory, 2 stages" if result["kind"] == "memory" else "on files, 1 stage"
    floor = result["floor_s"]
    rows = [
        Row(
            f"{command} over {result['count']:,} done keys {where}",
            f"{result[key]:.2f}",
            "s",
            f"{floor / result[key]:.3f}x",
            mib(result["rss_peak_mib"]) if key == "status_s" else "",
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


_NEWKEYS_FLOORS = {
    "memory": ("in memory", "queue the values to a worker in plain asyncio"),
    "files": ("on files", "write the files and records in plain Python"),
    "s3": ("on S3, append-only input", "write the outputs and records with aiobotocore"),
}


def newkeys_rows(result: dict[str, Any]) -> list[Row]:
    if "skipped" in result:
        return [Row("New keys with many done, run --forever", "skipped", result["skipped"])]
    where, floor = _NEWKEYS_FLOORS[result.get("where", "files")]
    rows = [
        Row(
            f"{result['new']} new keys with {result['done']:,} done, run --forever {where}",
            f"{result['seconds']:.3f}",
            "s",
            f"{result['floor_seconds'] / result['seconds']:.3f}x",
            mib(result["peak_rss_mib"]),
            target="< 1 s, no listing",
            meets=check(result["seconds"] < 1.0 and not result["listed_again"]),
        ),
        Row(f"  lower bound: {floor}", f"{result['floor_seconds']:.3f}", "s", "1.00x"),
    ]
    if "full_listing_seconds" in result:
        rows.append(
            Row(
                f"  one full listing of the input ({result['done'] + result['new']:,} keys)",
                f"{result['full_listing_seconds']:.3f}",
                "s",
            )
        )
    return rows


def import_rows(result: dict[str, Any]) -> list[Row]:
    return [
        Row(
            f"import pydatatask, -X importtime (median of {result['runs']})",
            f"{result['seconds']:.3f}",
            "s",
            target=f"< {IMPORT_TARGET_S:.1f} s",
            meets=check(result["seconds"] < IMPORT_TARGET_S),
        ),
        Row(
            "  wall clock over bare python -c pass",
            f"{result['wall_delta_seconds']:.3f}",
            "s",
        ),
        Row(
            "import pydatatask peak RSS",
            mib(result["peak_rss_mib"]),
            "MiB",
            target=f"< {IMPORT_RSS_TARGET_MIB:.0f} MiB",
            meets=check(result["peak_rss_mib"] < IMPORT_RSS_TARGET_MIB),
        ),
        Row(
            f"  over bare python ({mib(result['bare_peak_rss_mib'])} MiB)",
            mib(result["delta_rss_mib"]),
            "MiB",
        ),
    ]


def memory_1m_rows(framework: dict[str, Any], lower: dict[str, Any]) -> list[Row]:
    count = framework["n"]
    at_target = count == MEMORY_1M_N
    seconds, rss = framework["seconds"], framework["peak_rss_mib"]

    def target(text: str, ok: bool) -> tuple[str, str]:
        if at_target:
            return text, check(ok)
        return f"{text} at N={MEMORY_1M_N:,}", "n/a"

    time_target, time_meets = target(f"< {MEMORY_1M_TARGET_S:.0f} s", seconds < MEMORY_1M_TARGET_S)
    rss_target, rss_meets = target("< 1.5 GB", rss < MEMORY_1M_RSS_TARGET_MIB)
    rows = [
        Row(
            f"W1 in-memory, N={count:,} ({framework['jobs']:,} jobs)",
            f"{seconds:.2f}",
            "s",
            f"{lower['seconds'] / seconds:.2f}x",
            mib(rss),
            time_target,
            time_meets,
        ),
        Row("  speed", jobs(framework["jobs_per_second"]), "jobs/s"),
        Row("  peak RSS", mib(rss), "MiB", target=rss_target, meets=rss_meets),
        Row(
            f"  lower bound: plain asyncio, dicts, N={lower['n']:,}",
            f"{lower['seconds']:.2f}",
            f"s; {jobs(lower['jobs_per_second'])} jobs/s",
            "1.00x",
            mib(lower["peak_rss_mib"]),
        ),
    ]
    if framework["extra_launches"]:
        rows.append(
            Row(
                "  launches beyond one per job",
                f"{framework['extra_launches']:,}",
                "jobs",
                "",
                "",
                "0",
                "NO",
            )
        )
    return rows


def noop_curve_rows(curve: dict[str, list[dict[str, Any]]]) -> list[Row]:
    rows: list[Row] = []
    floors = {
        "memory": "id sets and set differences, plain Python",
        "files": "os.scandir of the folders listed + set differences",
    }
    for where in ("memory", "files"):
        label = "in memory" if where == "memory" else "on files"
        for point in curve[where]:
            seconds, floor, count = point["seconds"], point["floor_seconds"], point["keys"]
            target = meets = ""
            if where == "memory" and count == NOOP_MEMORY_TARGET[0]:
                target = f"< {NOOP_MEMORY_TARGET[1]:.0f} s"
                meets = check(seconds < NOOP_MEMORY_TARGET[1])
            elif where == "files" and count == NOOP_FILES_TARGET[0]:
                target = f"<= {NOOP_FILES_TARGET[1]}x the floor's time"
                meets = check(seconds <= NOOP_FILES_TARGET[1] * floor)
            rows.append(
                Row(
                    f"No-op re-run {label}, {count:,} done keys ({point['done_jobs']:,} jobs)",
                    f"{seconds:.3f}",
                    f"s; {point['per_1k_keys']:.6f} s per 1k keys;"
                    f" first {point['first_seconds']:.3f} s",
                    f"{floor / seconds:.3f}x",
                    mib(point["peak_rss_mib"]),
                    target,
                    meets,
                )
            )
            rows.append(
                Row(
                    f"  floor: {floors[where]}",
                    f"{floor:.6f}",
                    f"s; {floor / count * 1000:.6f} s per 1k keys",
                    "1.00x",
                )
            )
    return rows


def peers_rows(peers: dict[str, dict[str, dict[str, Any]]]) -> list[Row]:
    rows: list[Row] = []
    for where, title in (("memory", "in-memory"), ("files", "filesystem, plain files")):
        ours, dask = peers[where]["pydatatask"], peers[where]["dask"]
        rows.append(
            Row(
                f"Peers: W1 {title}, N={ours['n']:,}, pydatatask",
                jobs(ours["jobs_per_second"]),
                "jobs/s",
                f"{ours['jobs_per_second'] / dask['jobs_per_second']:.2f}x Dask",
                mib(ours["peak_rss_mib"]),
            )
        )
        rows.append(
            Row(
                f"  Dask {dask['dask']}: delayed, threaded scheduler, {dask['threads']} threads",
                jobs(dask["jobs_per_second"]),
                "jobs/s",
                "1.00x",
                mib(dask["peak_rss_mib"]),
            )
        )
    return rows


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
