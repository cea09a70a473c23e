"""A real single-node Slurm cluster (slurmctld, slurmd, munge) for the Slurm tests.

``slurm_cluster`` starts it once per test session in a temporary folder: a fresh munge
key and ``munged`` on a private socket, a ``slurm.conf`` with free ports, then
``slurmctld -D -i`` and ``slurmd -D -N localhost``, and waits until ``sinfo`` reports
the node idle. It needs root (slurmd runs jobs as their owners) and Debian's
``slurmctld slurmd slurm-client munge`` packages (``scripts/install-slurm``); without
them the tests are skipped.

Slurm 22.05's slurmctld listens on every address and cannot be bound to loopback
alone. So the daemons run in a private network namespace that holds only ``lo``
(``unshare --net``), and the client commands (``sbatch``, ``squeue``, ...) enter it
through small scripts in ``SlurmCluster.bin_dir`` that tests put first on ``PATH``:
nothing outside the namespace can reach the daemons, and they reach nothing but
loopback. ``lo`` also gets ``127.0.0.2``, since name resolution with ``AI_ADDRCONFIG``
refuses even numeric addresses in a namespace holding loopback addresses only. Where
namespaces cannot be made, the cluster runs in the machine's own network; it still
talks to 127.0.0.1 only, though slurmctld's listening socket is bound to all addresses.

Teardown cancels every job, waits until ``squeue`` is empty, then stops the daemons by
their PIDs (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.processes import (
    Process,
    find_command,
    free_loopback_ports,
    launch,
    log_tail,
    readiness_failure,
    stop_process,
)

logger = logging.getLogger(__name__)

CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sacct", "sinfo")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
DRAIN_TIMEOUT = 120.0
MISSING = "Slurm or munge is not installed (run scripts/install-slurm as root)"


@dataclass(frozen=True)
class SlurmCluster:
    """How to reach the test cluster: its configuration and its client commands."""

    conf: Path
    bin_dir: Path
    """Holds ``sbatch``, ``squeue``, ``scontrol``, ``scancel``, ``sacct`` and ``sinfo``
    for this cluster (entering its network namespace)."""

    @property
    def environ(self) -> dict[str, str]:
        """Environment variables under which the Slurm commands reach this cluster."""
        return {
            "SLURM_CONF": str(self.conf),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one of the cluster's client commands; return its outcome (never raises)."""
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def queued(self) -> list[int]:
        """Return the ids of every job ``squeue`` lists (pending, running or completing).

        :raises AssertionError: when ``squeue`` fails.
        """
        result = self.run("squeue", "--noheader", "--format=%i")
        assert result.returncode == 0, result.stderr
        return [int(line) for line in result.stdout.split()]


def _namespace(workdir: Path) -> Process | None:
    """Start a process holding a new network namespace with loopback up; None if impossible."""
    script = "ip link set lo up && ip addr add 127.0.0.2/8 dev lo && exec sleep infinity"
    holder = launch(["unshare", "--net", "sh", "-c", script], workdir / "netns.log")

    def ready() -> bool:
        check = subprocess.run(
            ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "ip", "-o", "addr", "show", "lo"],
            capture_output=True,
            text=True,
            check=False,
        )
        return "127.0.0.2" in check.stdout

    failure = readiness_failure(ready, holder, "netns", workdir / "netns.log", timeout=10)
    if failure is None:
        return holder
    logger.warning("no private network namespace for Slurm, using this one: %s", failure)
    stop_process(holder, STOP_TIMEOUT)
    return None


def _write_clients(bin_dir: Path, conf: Path, prefix: Sequence[str]) -> None:
    bin_dir.mkdir()
    for name in CLIENTS:
        command = " ".join([*prefix, find_command(name, MISSING)])
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {command} "$@"\n')
        script.chmod(0o755)


def _memory_mb() -> int:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return max(256, int(line.split()[1]) // 1024 - 1024)
    return 1024


def _write_conf(workdir: Path, munge_socket: Path) -> Path:
    ctld_port, slurmd_port = free_loopback_ports(2)
    for folder in ("state", "spool"):
        (workdir / folder).mkdir()
    conf = workdir / "slurm.conf"
    settings = [
        "ClusterName=pydatatask",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=root",
        "AuthType=auth/munge",
        f"AuthInfo=socket={munge_socket}",
        "CredType=cred/munge",
        "CommunicationParameters=NoInAddrAny",
        f"StateSaveLocation={workdir / 'state'}",
        f"SlurmdSpoolDir={workdir / 'spool'}",
        f"SlurmctldPidFile={workdir / 'slurmctld.pid'}",
        f"SlurmdPidFile={workdir / 'slurmd.pid'}",
        f"SlurmctldLogFile={workdir / 'slurmctld.log'}",
        f"SlurmdLogFile={workdir / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "ReturnToService=2",
        "MinJobAge=300",
        "KillWait=5",
        "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
        f"NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory={_memory_mb()}",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ]
    conf.write_text("\n".join(settings))
    return conf


def _start_munge(workdir: Path, folder: Path) -> tuple[Process, Path]:
    """Start munged with a new key in ``folder``; return it and its socket."""
    key = folder / "munge.key"
    subprocess.run(
        [find_command("mungekey", MISSING, fallbacks=["/usr/sbin/mungekey"]), "-c", "-k", str(key)],
        check=True,
        capture_output=True,
    )
    key.chmod(0o400)
    socket = folder / "munge.sock"
    command = [
        find_command("munged", MISSING, fallbacks=["/usr/sbin/munged"]),
        "-F",
        f"--socket={socket}",
        f"--key-file={key}",
        f"--pid-file={folder / 'munged.pid'}",
        f"--log-file={folder / 'munged.log'}",
        f"--seed-file={folder / 'munged.seed'}",
    ]
    process = launch(command, workdir / "munged.out")
    failure = readiness_failure(
        socket.exists, process, "munged", workdir / "munged.out", timeout=30
    )
    if failure is not None:
        stop_process(process, STOP_TIMEOUT)
        pytest.fail(failure)
    return process, socket


def _idle(cluster: SlurmCluster) -> bool:
    result = cluster.run("sinfo", "--noheader", "--format=%t")
    return result.stdout.split() == ["idle"]


def _drain(cluster: SlurmCluster) -> None:
    """Cancel every job and wait until ``squeue`` lists none."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        try:
            jobs = cluster.queued()
        except AssertionError as exc:
            logger.warning("cannot list the test cluster's jobs: %s", exc)
            return
        if not jobs:
            return
        cluster.run("scancel", *map(str, jobs))
        time.sleep(0.5)
    logger.warning("jobs still queued after %g s: %s", DRAIN_TIMEOUT, cluster.queued())


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """Yield a running single-node Slurm cluster, started once per session."""
    slurmctld = find_command("slurmctld", MISSING, fallbacks=["/usr/sbin/slurmctld"])
    slurmd = find_command("slurmd", MISSING, fallbacks=["/usr/sbin/slurmd"])
    for name in CLIENTS:
        find_command(name, MISSING)
    if os.geteuid() != 0:
        pytest.skip("the test Slurm cluster needs root: slurmd runs jobs as their owners")
    workdir = tmp_path_factory.mktemp("slurm")
    # munged wants every folder above its socket searchable by all, which pytest's
    # temporary folders are not.
    munge_folder = Path(tempfile.mkdtemp(prefix="pydatatask-munge-"))
    munge_folder.chmod(0o755)
    started: list[Process] = []
    holder = _namespace(workdir)
    prefix = [] if holder is None else ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
    try:
        munged, munge_socket = _start_munge(workdir, munge_folder)
        started.append(munged)
        conf = _write_conf(workdir, munge_socket)
        cluster = SlurmCluster(conf, workdir / "bin")
        _write_clients(cluster.bin_dir, conf, prefix)
        # Not under `timeout`: the daemons must get the signals sent to their PIDs.
        controller = launch([*prefix, slurmctld, "-D", "-i", "-f", str(conf)], workdir / "ctld.out")
        started.append(controller)
        node = launch(
            [*prefix, slurmd, "-D", "-N", "localhost", "-f", str(conf)], workdir / "d.out"
        )
        started.append(node)
        failure = readiness_failure(
            lambda: _idle(cluster), node, "slurmd", workdir / "slurmd.log", timeout=START_TIMEOUT
        )
        if failure is None and controller.poll() is not None:
            failure = f"slurmctld exited:\n{log_tail(workdir / 'slurmctld.log')}"
        if failure is not None:
            pytest.fail(f"{failure}\n--- slurmctld:\n{log_tail(workdir / 'slurmctld.log')}")
        yield cluster
        _drain(cluster)
    finally:
        for process in reversed(started):
            stop_process(process, STOP_TIMEOUT)
        if holder is not None:
            stop_process(holder, STOP_TIMEOUT)
        shutil.rmtree(munge_folder, ignore_errors=True)
