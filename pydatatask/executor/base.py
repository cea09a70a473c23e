"""Process managers: start shell jobs on a Linux host, find them again, wait, kill, clean up.

Every job gets a folder ``{root}/{app}/{task}/{job folder}/`` on the host. The job
folder is the job id with every character outside ``[A-Za-z0-9_.-]`` replaced, followed
by a hash of the id, so any valid id (spaces, quotes, unicode) is a safe, unique name.
It holds:

- ``job``: the job id, for humans and for :meth:`LinuxProcessManager.jobs`;
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
only when the group is provably the job's.

Subclasses supply four primitives: run a ``sh -c`` script, write a file, open a file
for reading, and remove nothing else; all job management is the shell code below, so
the local and SSH managers behave the same.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import logging
import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydatatask.errors import BackendError, BackendUnavailableError, ConfigurationError
from pydatatask.streams import ByteReader

__all__ = ["JobState", "LinuxProcessManager", "ProcessHandle", "job_folder_name"]

logger = logging.getLogger(__name__)

Stream = Literal["stdout", "stderr"]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_POLL_MIN = 0.05
_POLL_MAX = 1.0
_UNAVAILABLE_MAX = 5.0

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

_PREPARE = 'rm -rf -- "$1" && mkdir -p -- "$1"'
_REMOVE = 'rm -rf -- "$1"'
_LIST = """
for dir in "$1"/*/; do
    if read -r job 2>/dev/null < "${dir}job"; then echo "$job"; fi
done
"""


def job_folder_name(job: str) -> str:
    """Return a folder name for ``job`` that is unique, readable and inert in a shell."""
    digest = hashlib.sha256(job.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    readable = _UNSAFE.sub("_", job).lstrip(".")[:48]
    return f"{readable}-{digest}" if readable else digest


@dataclass(frozen=True)
class ProcessHandle:
    """Identifies a started job: the wrapper's PID, start time (clock ticks) and boot id."""

    pid: int
    start_time: int
    boot_id: str

    @classmethod
    def parse(cls, line: str) -> ProcessHandle:
        """Parse the ``pid`` file's ``PID START BOOT_ID`` line.

        :raises BackendError: for a malformed line.
        """
        parts = line.split()
        try:
            return cls(int(parts[0]), int(parts[1]), parts[2])
        except (IndexError, ValueError) as exc:
            raise BackendError(f"malformed job pid file: {line!r}") from exc

    def as_record(self) -> dict[str, int | str]:
        """Return the fields stored in a task's ``pids`` repository."""
        return {"pid": self.pid, "start_time": self.start_time, "boot_id": self.boot_id}


@dataclass(frozen=True)
class JobState:
    """What a job is doing: running, or ended with an exit code (None: ended unrecorded)."""

    running: bool
    exit_code: int | None = None

    @property
    def vanished(self) -> bool:
        """Whether the job ended without recording its exit status (it was killed)."""
        return not self.running and self.exit_code is None


def wrapper_script(environ: Mapping[str, str], direct: bool, stdin: bool, merge: bool) -> str:
    """Return the wrapper that runs ``./script`` and records its PID and exit status.

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
    for name, value in environ.items():
        if not isinstance(name, str) or _ENV_NAME.fullmatch(name) is None:
            raise ConfigurationError(f"invalid environment variable name {name!r}")
        lines.append(f"export {name}={shlex.quote(str(value))}")
    runner = "chmod u+x script && ./script" if direct else "sh ./script"
    redirect = f"<{'stdin' if stdin else '/dev/null'} >stdout 2>{'&1' if merge else 'stderr'}"
    lines += [
        f"{{ {runner}; }} {redirect}",
        "code=$?",
        'echo "$code" > exit_code.tmp && mv -f exit_code.tmp exit_code',
        "",
    ]
    return "\n".join(lines)


class LinuxProcessManager(abc.ABC):
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
        self._waiters: dict[str, list[tuple[ProcessHandle, asyncio.Future[JobState]]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None

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

    # ------------------------------------------------------------ operations

    async def start(
        self,
        task: str,
        job: str,
        script: str,
        *,
        environ: Mapping[str, str] | None = None,
        stdin: ByteReader | bytes | None = None,
        merge_stderr: bool = False,
    ) -> ProcessHandle:
        """Start ``script`` for ``job`` in a fresh job folder; return once it runs.

        A previous folder of the same job is replaced.

        :raises BackendError: when the job cannot be started.
        :raises BackendUnavailableError: when the host cannot be reached.
        """
        directory = self.job_dir(task, job)
        wrapper = wrapper_script(
            environ or {}, script.startswith("#!"), stdin is not None, merge_stderr
        )
        await self._check(_PREPARE, directory)
        await self.write_file(posixpath.join(directory, "job"), job.encode() + b"\n")
        await self.write_file(posixpath.join(directory, "script"), script.encode())
        await self.write_file(posixpath.join(directory, "wrapper"), wrapper.encode())
        if stdin is not None:
            await self.write_file(posixpath.join(directory, "stdin"), stdin)
        out = await self._check(_LAUNCH, directory)
        return ProcessHandle.parse(out.decode(errors="replace"))

    async def find(self, task: str, job: str) -> ProcessHandle | None:
        """Return the handle in ``job``'s pid file, or None when it never started."""
        try:
            reader = await self.open_file(posixpath.join(self.job_dir(task, job), "pid"))
        except FileNotFoundError:
            return None
        async with reader:
            return ProcessHandle.parse((await reader.read()).decode(errors="replace"))

    async def jobs(self, task: str) -> list[str]:
        """Return the ids of ``task``'s jobs that have a folder on the host."""
        out = await self._check(_LIST, self.task_dir(task))
        return [line for line in out.decode(errors="replace").splitlines() if line]

    async def poll_many(self, jobs: list[tuple[str, ProcessHandle]]) -> list[JobState]:
        """Return the state of each (job folder, handle) pair, in one round trip."""
        args = [
            str(part)
            for directory, handle in jobs
            for part in (directory, handle.pid, handle.start_time)
        ]
        lines = (await self._check(_PROBE, *args)).decode(errors="replace").splitlines()
        if len(lines) != len(jobs) + 1:
            raise BackendError(f"{self!r}: unexpected answer to a status query: {lines!r}")
        boot, states = lines[0].strip(), []
        for (_, handle), line in zip(jobs, lines[1:], strict=True):
            if line == "running" and handle.boot_id == boot:
                states.append(JobState(running=True))
            elif line.startswith("exit "):
                states.append(JobState(running=False, exit_code=_exit_code(line[5:])))
            else:
                states.append(JobState(running=False))
        return states

    async def poll(self, task: str, job: str, handle: ProcessHandle) -> JobState:
        """Return the state of one job."""
        return (await self.poll_many([(self.job_dir(task, job), handle)]))[0]

    async def wait(self, task: str, job: str, handle: ProcessHandle) -> JobState:
        """Wait until the job ends; return how it ended.

        The job's state is polled together with every other job being waited for, with
        a short interval that grows while nothing changes. While the host cannot be
        reached the wait goes on, retrying: an unreachable host does not end a job.
        """
        directory = self.job_dir(task, job)
        future: asyncio.Future[JobState] = asyncio.get_running_loop().create_future()
        entry = (handle, future)
        self._waiters.setdefault(directory, []).append(entry)
        self._ensure_poller()
        try:
            return await future
        finally:
            entries = self._waiters.get(directory, [])
            if entry in entries:
                entries.remove(entry)
            if not entries:
                self._waiters.pop(directory, None)

    async def kill(self, task: str, job: str, handle: ProcessHandle, grace: float = 5.0) -> None:
        """Send SIGTERM to the job's process group, and SIGKILL after ``grace`` seconds.

        Does nothing when the job has ended or its PID now belongs to another process.
        """
        tenths = max(0, round(grace * 10))
        await self._check(_KILL, str(handle.pid), str(handle.start_time), str(tenths))

    async def open_output(self, task: str, job: str, stream: Stream) -> ByteReader:
        """Open the job's ``stdout`` or ``stderr`` file.

        :raises FileNotFoundError: when the job wrote no such file.
        """
        return await self.open_file(posixpath.join(self.job_dir(task, job), stream))

    async def cleanup(self, task: str, job: str) -> None:
        """Remove the job's folder."""
        await self._check(_REMOVE, self.job_dir(task, job))

    # ------------------------------------------------------------ polling

    def _ensure_poller(self) -> None:
        loop = asyncio.get_running_loop()
        if self._poller is None or self._poller.done() or self._poller.get_loop() is not loop:
            self._kick = asyncio.Event()
            self._poller = loop.create_task(self._poll_loop(self._kick), name=f"{self!r} poller")
        assert self._kick is not None
        self._kick.set()

    async def _poll_loop(self, kick: asyncio.Event) -> None:
        delay = _POLL_MIN
        try:
            while self._waiters:
                delay = await self._poll_once(delay)
                kick.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await kick.wait()
                        delay = _POLL_MIN
        except BaseException as error:
            for entries in self._waiters.values():
                for _, future in entries:
                    if future.done():
                        continue
                    if isinstance(error, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(error)
            if isinstance(error, Exception):
                return  # handed to every waiter
            raise

    async def _poll_once(self, delay: float) -> float:
        batch = [
            (directory, handle, future)
            for directory, entries in self._waiters.items()
            for handle, future in entries
            if not future.done()
        ]
        if not batch:
            return delay
        try:
            states = await self.poll_many([(directory, handle) for directory, handle, _ in batch])
        except BackendUnavailableError as exc:
            logger.warning("%r: cannot check %d jobs, will retry: %s", self, len(batch), exc)
            return min(_UNAVAILABLE_MAX, max(delay * 2, 0.5))
        ended = False
        for (_, _, future), state in zip(batch, states, strict=True):
            if not state.running and not future.done():
                future.set_result(state)
                ended = True
        return _POLL_MIN if ended else min(_POLL_MAX, delay * 1.5)


def _exit_code(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None
