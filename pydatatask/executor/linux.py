# Longer than 400 lines on purpose: most of it is the shell code that the local and SSH
# managers share, kept next to the Python that runs it.
"""Linux process managers: run shell jobs as process groups on a Linux host.

:class:`LinuxProcessManager` is the :class:`~pydatatask.executor.protocol.Executor` of
jobs that are shell scripts; :class:`~pydatatask.LocalLinuxManager` runs them on this
machine and :class:`~pydatatask.SSHLinuxManager` on a host reached over SSH.

Every job gets a folder ``{root}/{app}/{task}/{job folder}/`` on the host. The job
folder is the job id with every character outside ``[A-Za-z0-9_.-]`` replaced, followed
by a hash of the id, so any valid id (spaces, quotes, unicode) is a safe, unique name.
It holds:

- ``job``: the job id, for humans and for :meth:`LinuxProcessManager.live`;
- ``attempt``: the attempt number the job runs as;
- ``script``: the rendered user script (run with ``sh``, or directly when it starts
  with ``#!``);
- ``wrapper``: the generated shell script that runs ``script`` and records its outcome;
- ``stdin``: the job's standard input, when it has one;
- ``stdout``, ``stderr``: the job's output streams;
- ``pid``: ``PID START_TIME BOOT_ID`` of the wrapper, written atomically when it starts;
- ``exit_code``: the script's exit status, written atomically when it ends.

The wrapper is started with ``setsid``, so it leads a new session and process group that
holds the script and everything the script starts; nothing ties it to the controller,
which may exit or crash while the job runs. A job is alive when the process ``PID``
exists, is not a zombie, and its start time (field 22 of ``/proc/PID/stat``) and the
host's boot id match the ``pid`` file: a recycled PID never makes a dead job look alive.
Killing signals the whole process group (SIGTERM, then SIGKILL after a grace period), and
only when the group is provably the job's. A job is never started while an earlier start
of it still runs, and a folder is removed only while it still holds the job it was asked
about.

Subclasses supply three primitives: run a ``sh -c`` script, write a file, and open a
file for reading; all job management is the shell code below, so the local and SSH
managers behave the same. Jobs being waited for are checked together, in one round trip
per poll (see :mod:`pydatatask.executor.polling`).
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydatatask.errors import BackendError, ConfigurationError
from pydatatask.executor.polling import BatchPoller
from pydatatask.executor.protocol import Executor, ExitStatus, JobHandle, Outputs
from pydatatask.streams import ByteReader, copy_stream

__all__ = [
    "Account",
    "LinuxProcessManager",
    "ProcessHandle",
    "ProcessSpec",
    "ScriptSpec",
    "job_folder_name",
    "wrapper_script",
]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_DEFAULT_GRACE = 5.0

# Field 22 of /proc/PID/stat is the start time; the name in field 2 may hold spaces and
# parentheses, so fields are counted after its last ") ": the start time is the 20th.
_STAT_HELPERS = """
startof() { state=$1; shift 19; start=$1; }
readstat() {
    state= start=
    read -r line 2>/dev/null < "/proc/$1/stat" || return 1
    rest=${line##*) }
    startof $rest
}
"""

_LAUNCH = """
cd "$1" || exit 1
setsid sh ./wrapper </dev/null >/dev/null 2>&1 &
i=0
while [ ! -s pid ]; do
    i=$((i + 1))
    if [ "$i" -gt 1000 ]; then echo "the job's wrapper did not start" >&2; exit 1; fi
    sleep 0.01
done
read -r line < pid
echo "$line"
"""

_PROBE = (
    _STAT_HELPERS
    + """
read -r boot < /proc/sys/kernel/random/boot_id
echo "$boot"
while [ "$#" -ge 3 ]; do
    dir=$1 pid=$2 want=$3
    shift 3
    if readstat "$pid" && [ "$state" != Z ] && [ "$state" != X ] && [ "$start" = "$want" ]; then
        echo running
    elif read -r code 2>/dev/null < "$dir/exit_code"; then
        echo "exit $code"
    else
        echo gone
    fi
done
"""
)

_KILL = (
    _STAT_HELPERS
    + """
pid=$1 want=$2 tenths=$3
# A live process with the wrapper's PID but another start time means the PID was
# reused: the group is someone else's. A missing PID is still held by our group if any
# member survives (Linux does not reuse a PID that names a live process group).
if readstat "$pid" && [ "$start" != "$want" ]; then exit 0; fi
ingroup() { [ "$1" != Z ] && [ "$3" = "$pid" ]; }
members() {
    for stat in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null < "$stat" || continue
        rest=${line##*) }
        ingroup $rest && return 0
    done
    return 1
}
kill -TERM -"$pid" 2>/dev/null || exit 0
i=0
while members; do
    if [ "$i" -ge "$tenths" ]; then kill -KILL -"$pid" 2>/dev/null; exit 0; fi
    i=$((i + 1))
    sleep 0.1
done
"""
)

# Prints the host's own uid, then the passwd entry of the account named (or numbered) $1.
_ACCOUNT = """
entry=$(getent passwd -- "$1") || exit 3
id -u
printf '%s\\n' "$entry"
"""

# Refuses while the folder's job still runs, so a job is never started twice at once.
_PREPARE = (
    _STAT_HELPERS
    + """
dir=$1
read -r boot < /proc/sys/kernel/random/boot_id
if read -r pid want was < "$dir/pid" 2>/dev/null && [ "$was" = "$boot" ] \\
    && readstat "$pid" && [ "$state" != Z ] && [ "$start" = "$want" ]; then
    echo "the job already runs (pid $pid)" >&2
    exit 3
fi
rm -rf -- "$dir" && mkdir -p -- "$dir"
"""
)

# Removes the folder only while it still holds the job the handle names (or none).
_FORGET = """
dir=$1 want=$2
if read -r line 2>/dev/null < "$dir/pid" && [ "$line" != "$want" ]; then exit 0; fi
rm -rf -- "$dir"
"""

# Prints two lines per job folder that has a pid file: "PID START BOOT ATTEMPT", the id.
_DESCRIBE = """
describe() {
    read -r line 2>/dev/null < "$1/pid" || return 0
    IFS= read -r job 2>/dev/null < "$1/job" || return 0
    read -r attempt 2>/dev/null < "$1/attempt" || attempt=1
    printf '%s %s\\n%s\\n' "$line" "$attempt" "$job"
}
if [ "$1" = --all ]; then
    for dir in "$2"/*/; do describe "${dir%/}"; done
else
    describe "$1"
fi
"""


def job_folder_name(job: str) -> str:
    """Return a folder name for ``job`` that is unique, readable and inert in a shell."""
    digest = hashlib.sha256(job.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    readable = _UNSAFE.sub("_", job).lstrip(".")[:48]
    return f"{readable}-{digest}" if readable else digest


@dataclass(frozen=True)
class ScriptSpec:
    """A rendered shell script, its environment and its standard input."""

    script: str
    """Run with ``sh``, or directly when it starts with ``#!``."""
    environ: Mapping[str, str] = field(default_factory=dict)
    stdin: ByteReader | bytes | None = None
    """Copied to where the script runs before it starts; None for no input."""
    merge_stderr: bool = False
    """Send standard error to standard output."""


@dataclass(frozen=True)
class ProcessSpec(ScriptSpec):
    """What to run as a process: a script, and as whom and where."""

    user: str | None = None
    """The account of the host (a name or uid) the script runs as, if not the host's own."""
    workdir: str | None = None
    """The folder the script runs in, if not the job folder."""


@dataclass(frozen=True)
class Account:
    """An account of the host that jobs run as, instead of the one that starts them."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class ProcessHandle(JobHandle):
    """A started job: its wrapper's PID, start time (clock ticks) and the host's boot id."""

    pid: int
    start_time: int
    boot_id: str

    @classmethod
    def parse(cls, task: str, job: str, attempt: int, line: str) -> ProcessHandle:
        """Read the ``pid`` file's ``PID START BOOT_ID`` line.

        :raises BackendError: for a malformed line.
        """
        parts = line.split()
        try:
            return cls(task, job, attempt, int(parts[0]), int(parts[1]), parts[2])
        except (IndexError, ValueError) as exc:
            raise BackendError(f"malformed job pid file: {line!r}") from exc

    @property
    def line(self) -> str:
        """The ``pid`` file's line for this job."""
        return f"{self.pid} {self.start_time} {self.boot_id}"

    def as_record(self) -> dict[str, Any]:
        """Return the PID, start time and boot id as plain values."""
        return {"pid": self.pid, "start_time": self.start_time, "boot_id": self.boot_id}


def export_lines(environ: Mapping[str, str]) -> list[str]:
    """Return the shell lines that export a job's environment.

    :raises ConfigurationError: for an environment variable name that is not a shell name.
    """
    lines = []
    for name, value in environ.items():
        if not isinstance(name, str) or _ENV_NAME.fullmatch(name) is None:
            raise ConfigurationError(f"invalid environment variable name {name!r}")
        lines.append(f"export {name}={shlex.quote(str(value))}")
    return lines


def script_command(direct: bool, stdin: bool, merge: bool) -> tuple[str, str]:
    """Return how a wrapper runs ``./script``, and the redirections of its streams.

    The script runs directly or through ``sh``; its streams go to the job folder's
    ``stdin``, ``stdout`` and ``stderr`` files.
    """
    runner = "chmod u+x script && ./script" if direct else "sh ./script"
    redirect = f"<{'stdin' if stdin else '/dev/null'} >stdout 2>{'&1' if merge else 'stderr'}"
    return runner, redirect


def wrapper_script(
    environ: Mapping[str, str],
    direct: bool,
    stdin: bool,
    merge: bool,
    account: Account | None = None,
    workdir: str | None = None,
) -> str:
    """Return the wrapper that runs ``./script`` and records its PID and exit status.

    With an ``account``, the script runs as that account (through ``setpriv``); with a
    ``workdir``, in that folder.

    :raises ConfigurationError: for an environment variable name that is not a shell name.
    """
    lines = [
        "# Generated by pydatatask: run ./script in this process group, record the outcome.",
        _STAT_HELPERS.strip(),
        "readstat $$",
        "read -r boot < /proc/sys/kernel/random/boot_id",
        'echo "$$ $start $boot" > pid.tmp && mv -f pid.tmp pid',
        # Survive a polite kill of the group long enough to record the script's status.
        "trap : HUP INT TERM",
    ]
    lines += export_lines(environ)
    runner, redirect = script_command(direct, stdin, merge)
    if account is not None or workdir is not None:
        runner = _elsewhere(direct, account, workdir)
    lines += [
        f"{{ {runner}; }} {redirect}",
        "code=$?",
        'echo "$code" > exit_code.tmp && mv -f exit_code.tmp exit_code',
        "",
    ]
    return "\n".join(lines)


def _elsewhere(direct: bool, account: Account | None, workdir: str | None) -> str:
    """Return the command that runs ``script`` in ``workdir`` and as ``account``.

    The script is opened here, as descriptor 3, and run as ``/dev/fd/3``: the account
    may not be allowed into the job folder, and ``workdir`` is not the job folder.
    """
    # `exec 3<`, not a redirection of the subshell: dash does not pass those on to `exec`.
    steps = ["exec 3<script"] + ([] if workdir is None else [f"cd {shlex.quote(workdir)}"])
    switch = ""
    if account is not None:
        home, name = shlex.quote(account.home), shlex.quote(account.name)
        steps.append(f"export HOME={home} USER={name} LOGNAME={name}")
        switch = f"setpriv --reuid={account.uid} --regid={account.gid} --init-groups "
    steps.append(f"exec {switch}{'/dev/fd/3' if direct else 'sh /dev/fd/3'}")
    return f"{'chmod a+rx script && ' if direct else ''}( {' && '.join(steps)} )"


class LinuxProcessManager(Executor[ProcessSpec, ProcessHandle]):
    """Runs shell jobs as process groups on a Linux host (see the module documentation).

    :param app: names this application's folder under ``root``.
    :param root: the folder (on the host) that holds every app's job folders.
    :raises ConfigurationError: for an app name with characters other than letters,
        digits, ``_``, ``.`` and ``-``.
    """

    def __init__(self, app: str, root: str) -> None:
        if not isinstance(app, str) or _NAME.fullmatch(app) is None or ".." in app:
            raise ConfigurationError(
                f"invalid app name {app!r}: use letters, digits, '_', '.' and '-'"
            )
        self.app = app
        self.root = str(root)
        self._poller = BatchPoller(self.probe, repr(self), shortest=0.05, longest=1.0)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.app} at {self.root}>"

    # ------------------------------------------------------------ primitives

    @abc.abstractmethod
    async def run_shell(self, script: str, *args: str) -> tuple[int, bytes, bytes]:
        """Run ``sh -c script sh args...`` on the host; return (status, stdout, stderr).

        :raises BackendUnavailableError: when the host cannot be reached.
        """

    @abc.abstractmethod
    async def write_file(self, path: str, data: bytes | ByteReader) -> None:
        """Write ``data`` (bytes, or a reader copied in chunks) to ``path`` on the host."""

    @abc.abstractmethod
    async def open_file(self, path: str) -> ByteReader:
        """Open ``path`` on the host for reading.

        :raises FileNotFoundError: when it does not exist.
        """

    async def account(self, user: str) -> Account | None:
        """Return the account of the host named (or numbered) ``user`` that jobs run as.

        None means the host's own account, which needs no switch.

        :raises ConfigurationError: when the host has no such account, or the host's own
            account cannot switch to it (only root can).
        :raises BackendUnavailableError: when the host cannot be reached.
        """
        status, out, _ = await self.run_shell(_ACCOUNT, user)
        if status == 3:
            raise ConfigurationError(f"{self!r}: no user account {user!r} on the host")
        lines = out.decode(errors="replace").splitlines()
        fields = lines[1].split(":") if status == 0 and len(lines) == 2 else []
        if len(fields) < 7 or not (
            lines[0].isdigit() and fields[2].isdigit() and fields[3].isdigit()
        ):
            raise BackendError(f"{self!r}: cannot read the account {user!r}: {lines!r}")
        found = Account(fields[0], int(fields[2]), int(fields[3]), fields[5])
        if found.uid == int(lines[0]):
            return None
        if int(lines[0]) != 0:
            raise ConfigurationError(
                f"{self!r}: cannot run jobs as {user!r}: switching accounts needs root"
            )
        return found

    # ------------------------------------------------------------ the layout

    def task_dir(self, task: str) -> str:
        """Return the folder holding ``task``'s job folders."""
        return posixpath.join(self.root, self.app, task)

    def job_dir(self, task: str, job: str) -> str:
        """Return ``job``'s folder."""
        return posixpath.join(self.task_dir(task), job_folder_name(job))

    async def _check(self, script: str, *args: str) -> bytes:
        status, out, err = await self.run_shell(script, *args)
        if status != 0:
            message = err.decode(errors="replace").strip() or f"exit status {status}"
            raise BackendError(f"{self!r}: {message}")
        return out

    # ------------------------------------------------------------ the executor

    async def submit(self, task: str, job: str, attempt: int, spec: ProcessSpec) -> ProcessHandle:
        """Start ``spec.script`` for ``job`` in a fresh job folder; return once it runs.

        :raises BackendError: when the job cannot start, or its earlier start still runs.
        :raises BackendUnavailableError: when the host cannot be reached.
        :raises ConfigurationError: for an environment variable name that is not a shell
            name, or a ``user`` the jobs cannot run as (see :meth:`account`).
        """
        directory = self.job_dir(task, job)
        account = None if spec.user is None else await self.account(spec.user)
        wrapper = wrapper_script(
            spec.environ,
            spec.script.startswith("#!"),
            spec.stdin is not None,
            spec.merge_stderr,
            account,
            spec.workdir,
        )
        await self._check(_PREPARE, directory)
        try:
            await self.write_file(posixpath.join(directory, "job"), job.encode() + b"\n")
            await self.write_file(posixpath.join(directory, "attempt"), b"%d\n" % attempt)
            await self.write_file(posixpath.join(directory, "script"), spec.script.encode())
            await self.write_file(posixpath.join(directory, "wrapper"), wrapper.encode())
            if spec.stdin is not None:
                await self.write_file(posixpath.join(directory, "stdin"), spec.stdin)
            out = await self._check(_LAUNCH, directory)
        except BaseException:
            await asyncio.shield(self._undo(task, job))
            raise
        return ProcessHandle.parse(task, job, attempt, out.decode(errors="replace"))

    async def _undo(self, task: str, job: str) -> None:
        """Stop and remove what a failed start left."""
        try:
            handle = await self.find(task, job)
            if handle is not None:
                await self.stop(handle, 0)
                await self.forget(handle)
            else:
                await self._check(_FORGET, self.job_dir(task, job), "")
        except (OSError, BackendError) as exc:
            logger.warning("%r: could not undo the start of %s job %r: %s", self, task, job, exc)

    async def live(self, task: str) -> list[ProcessHandle]:
        """Return ``task``'s jobs that have a folder with a pid file, in one round trip."""
        return self._described(task, await self._check(_DESCRIBE, "--all", self.task_dir(task)))

    async def find(self, task: str, job: str) -> ProcessHandle | None:
        """Return the handle in ``job``'s pid file, or None when it has none."""
        found = self._described(task, await self._check(_DESCRIBE, self.job_dir(task, job)))
        return next((handle for handle in found if handle.job == job), None)

    def _described(self, task: str, out: bytes) -> list[ProcessHandle]:
        lines = out.decode(errors="replace").splitlines()
        handles = []
        for head, job in zip(lines[::2], lines[1::2], strict=False):
            pid_line, _, attempt = head.rpartition(" ")
            try:
                handles.append(ProcessHandle.parse(task, job, int(attempt), pid_line))
            except (BackendError, ValueError) as exc:
                logger.warning("%r: skipping the job folder of %r: %s", self, job, exc)
        return handles

    def restore(
        self, task: str, job: str, attempt: int, record: Mapping[str, Any]
    ) -> ProcessHandle:
        """Rebuild a handle from :meth:`ProcessHandle.as_record`'s values.

        :raises BackendError: when the record lacks them.
        """
        try:
            return ProcessHandle(
                task,
                job,
                attempt,
                int(record["pid"]),
                int(record["start_time"]),
                str(record.get("boot_id", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"not a process handle: {dict(record)!r}") from exc

    async def probe(self, handles: Sequence[ProcessHandle]) -> dict[ProcessHandle, ExitStatus]:
        """Check many jobs in one round trip; return how each job that ended, ended.

        A job whose process is gone without an ``exit_code`` file (killed, or its host
        restarted) ended without an exit status; so did one whose folder is gone.
        """
        args = [
            str(part)
            for handle in handles
            for part in (self.job_dir(handle.task, handle.job), handle.pid, handle.start_time)
        ]
        lines = (await self._check(_PROBE, *args)).decode(errors="replace").splitlines()
        if len(lines) != len(handles) + 1:
            raise BackendError(f"{self!r}: unexpected answer to a status query: {lines!r}")
        boot, ended = lines[0].strip(), {}
        for handle, line in zip(handles, lines[1:], strict=True):
            if line == "running" and handle.boot_id == boot:
                continue
            ended[handle] = ExitStatus(_exit_code(line[5:]) if line.startswith("exit ") else None)
        return ended

    async def wait(self, handle: ProcessHandle) -> ExitStatus:
        """Wait until the job ends, checked with every other job waited for; see :meth:`probe`.

        While the host cannot be reached the wait goes on, retrying.
        """
        return await self._poller.wait(handle)

    async def stop(self, handle: ProcessHandle, grace: float | None = None) -> None:
        """Send SIGTERM to the job's process group, and SIGKILL ``grace`` seconds later.

        Does nothing when the job has ended or its PID now belongs to another process.
        """
        tenths = max(0, round((_DEFAULT_GRACE if grace is None else grace) * 10))
        await self._check(_KILL, str(handle.pid), str(handle.start_time), str(tenths))

    async def collect(self, handle: ProcessHandle, outputs: Outputs) -> None:
        """Copy the job's ``stdout`` and ``stderr`` files to the streams ``outputs`` wants.

        A file the job never opened (it was killed first, or stderr was merged) is skipped.
        """
        directory = self.job_dir(handle.task, handle.job)
        for stream in ("stdout", "stderr"):
            if not outputs.wants(stream):
                continue
            try:
                reader = await self.open_file(posixpath.join(directory, stream))
            except FileNotFoundError:
                continue
            async with reader:
                await copy_stream(reader, await outputs.writer(stream))

    async def forget(self, handle: ProcessHandle) -> None:
        """Remove the job's folder, unless it holds a newer start of the job by now."""
        await self._check(_FORGET, self.job_dir(handle.task, handle.job), handle.line)


def _exit_code(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None
