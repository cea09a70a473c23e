"""Tasks whose jobs are shell scripts submitted to a Slurm cluster.

A :class:`SlurmTask` renders its jinja2 ``template`` for a job, exactly as a
:class:`~pydatatask.ProcessTask` does (same context, same template safety), into a
:class:`~pydatatask.executor.slurm.SlurmSpec`, which a
:class:`~pydatatask.executor.slurm.SlurmManager` submits with ``sbatch``; the lifecycle
(follow, re-attach, timeout, cancel, quota, clean-up) is
:class:`~pydatatask.task.external.ExternalTask`'s.

The job folders are the memory of what runs: each holds its Slurm job id, so a
restarted controller follows the same Slurm jobs, reaps the ones that ended meanwhile,
and never submits a job twice. A folder is removed only after its job's done record is
written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Unpack

from pydatatask.errors import ConfigurationError
from pydatatask.executor.slurm import SlurmHandle, SlurmManager, SlurmSpec
from pydatatask.quota import ResourceManager, Resources
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.streams import ByteReader
from pydatatask.task.base import TaskOptions
from pydatatask.task.external import Source
from pydatatask.task.script import OnExit, ScriptTask, StdoutSentinel
from pydatatask.templating import render

__all__ = ["SlurmTask"]


class SlurmTask(ScriptTask[SlurmSpec, SlurmHandle]):
    """Submit a templated shell script per job to a Slurm cluster, as a batch job.

    A minimal task names its script and its links::

        upper = SlurmTask(
            "upper",
            "tr a-z A-Z < {{ src | shquote }} > {{ dst | shquote }}",
            partition="debug",
            manager=SlurmManager("books", "/shared/pydatatask"),
            done=YamlMetadataFileRepository("work/upper-done"),
        )
        upper.link("src", FileRepository("work/books", ".txt"), is_input=True)
        upper.link("dst", FileRepository("work/upper", ".txt"), is_output=True)

    The done record holds ``exit_code``, ``slurm_state`` (``COMPLETED``, ``FAILED``,
    ``CANCELLED``, ...) and ``slurm_job_id``.

    :param name: the task name.
    :param template: a jinja2 shell script; it sees ``job``, ``task`` (the name),
        ``env``/``environ`` (the ``environ`` option) and every link by name (its
        ``info`` for the job, computed only when used). Values must be shell-safe or
        quoted with ``| shquote``.
    :param partition: the Slurm partition (None: the cluster's default).
    :param sbatch_args: more ``sbatch`` options, such as ``("--time=10", "--mem=1G")``.
    :param manager: the :class:`~pydatatask.SlurmManager` that submits jobs, or a
        session accessor returning one (default: app ``pydatatask``, job folders under
        ``~/.pydatatask/slurm``).
    :param done: the done repository.
    :param stdin: a blob repository whose value for the job is the script's stdin.
    :param stdout: a blob repository receiving the script's stdout.
    :param stderr: a blob repository receiving its stderr, or :data:`~pydatatask.STDOUT`
        to merge it into stdout.
    :param environ: environment variables exported to the script.
    :param ready: as for every task.
    :param resource_manager: the quota the jobs draw from (None: no quota).
    :param job_resources: what one job holds from the quota while it runs (None: nothing).
    :param window: the period over which the quota's ``launches`` are counted.
    :param on_exit: what a stopping controller does with submitted jobs: ``"detach"``
        (the default) leaves them for the next controller to follow; ``"kill"`` cancels
        them, and they run again next time.
    :param options: the options of every task: ``timeout`` (cancel the job after this
        long and record a timeout), ``retry``, ``max_concurrent``, ``version``.
    :raises TypeError: for an unknown keyword argument.
    :raises ConfigurationError: for arguments of the wrong kind.
    """

    def __init__(
        self,
        name: str,
        template: str,
        *,
        partition: str | None = None,
        sbatch_args: Sequence[str] = (),
        manager: SlurmManager | Callable[[], SlurmManager] | None = None,
        done: MetadataRepository | None = None,
        stdin: BlobRepository | None = None,
        stdout: BlobRepository | None = None,
        stderr: BlobRepository | StdoutSentinel | None = None,
        environ: Mapping[str, str] | None = None,
        ready: Repository | None = None,
        resource_manager: ResourceManager | None = None,
        job_resources: Resources | None = None,
        window: timedelta | float = timedelta(minutes=1),
        on_exit: OnExit = "detach",
        **options: Unpack[TaskOptions],
    ) -> None:
        if partition is not None and not isinstance(partition, str):
            raise ConfigurationError(f"task {name!r}: partition must be a str")
        if isinstance(sbatch_args, str) or not all(isinstance(arg, str) for arg in sbatch_args):
            raise ConfigurationError(f"task {name!r}: sbatch_args must be a list of str")
        self._manager: Source[SlurmManager] = Source(
            name,
            "manager",
            SlurmManager("pydatatask") if manager is None else manager,
            SlurmManager,
        )
        super().__init__(
            name,
            template,
            manager=self._manager,
            resource_manager=resource_manager,
            job_resources=Resources() if job_resources is None else job_resources,
            window=window,
            environ=environ,
            done=done,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            ready=ready,
            on_exit=on_exit,
            **options,
        )
        self.partition = partition
        self.sbatch_args = tuple(sbatch_args)

    @property
    def manager(self) -> SlurmManager:
        """The manager that submits this task's jobs (an accessor's value while open).

        :raises ConfigurationError: when an accessor returns something else.
        :raises LifecycleError: when the accessor's session is closed.
        """
        return self._manager.get()

    async def _spec(self, context: dict[str, Any], stdin: ByteReader | None) -> SlurmSpec:
        return SlurmSpec(
            script=await render(self.template, context),
            environ=self.environ,
            stdin=stdin,
            merge_stderr=self.merge_stderr,
            partition=self.partition,
            sbatch_args=self.sbatch_args,
        )
