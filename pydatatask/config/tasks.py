# Longer than 400 lines on purpose: one short builder per task kind, all sharing the keys
# and the wiring of TaskKeys, which read best side by side.
"""The task kinds of pipeline files: ``function``, ``process``, ``container``, ``kube``, ``slurm``.

Every kind takes the keys of :class:`TaskKeys` besides its own. A task without ``done``
records its jobs in a YAML repository under ``.pydatatask/done/TASK`` beside the file.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Required, TypedDict, Unpack, cast

from pydatatask.config.errors import nearest
from pydatatask.config.registry import (
    BuildContext,
    Choices,
    Kind,
    Reference,
    RelativePath,
    RepositoryName,
    register,
)
from pydatatask.errors import ConfigurationError
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.repository.filesystem import YamlMetadataFileRepository
from pydatatask.session import Resource
from pydatatask.task.base import Task
from pydatatask.task.retry import RetryPolicy

__all__ = [
    "InvalidValueError",
    "LinkOptions",
    "RetryOptions",
    "TaskKeys",
    "import_function",
]

BlobRepositoryName = Annotated[BlobRepository, Reference("repository")]
"""A key naming a blob repository (files, S3 objects, in-memory bytes)."""
MetadataRepositoryName = Annotated[MetadataRepository, Reference("repository")]
"""A key naming a metadata repository (YAML files or objects, MongoDB, memory)."""
_OnExit = Annotated[str, Choices(("detach", "kill"))]
_SSHConnection = Annotated[Resource[Any], Reference("resource", ("ssh",))]
_DockerClient = Annotated[Resource[Any], Reference("resource", ("docker",))]
_KubernetesClient = Annotated[Resource[Any], Reference("resource", ("kubernetes",))]


class InvalidValueError(ConfigurationError):
    """A factory found the value of one of its keys unusable; the file's error names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


class LinkOptions(TypedDict, total=False):
    """One link of ``links``: the repository and its dispositions, as ``Task.link`` takes.

    :param repo: the repository.
    :param is_input: the task reads it.
    :param is_output: the task writes it.
    :param is_status: it records the state of the task's jobs.
    :param inhibits_start: a job whose id is present here is not started.
    :param required_for_start: a job starts only when its id is present here.
    :param inhibits_output: a job whose id is here has not produced output.
    :param required_for_output: a job's output is complete only when its id is here.
    """

    repo: Required[RepositoryName]
    is_input: bool
    is_output: bool
    is_status: bool
    inhibits_start: bool
    required_for_start: bool
    inhibits_output: bool
    required_for_output: bool


class RetryOptions(TypedDict, total=False):
    """A retry policy (``pydatatask.RetryPolicy``).

    :param max_attempts: attempts in all, the first one included.
    :param backoff: seconds to wait after the first failure; doubled after each.
    :param max_backoff: the longest wait.
    :param jitter: the random fraction of each wait, from 0 to 1.
    :param retry_timeouts: whether a job that timed out is retried.
    """

    max_attempts: int
    backoff: float
    max_backoff: float
    jitter: float
    retry_timeouts: bool


class TaskKeys(TypedDict, total=False):
    """The keys every task kind takes.

    :param inputs: link name -> the repository it reads (an input link).
    :param outputs: link name -> the repository it writes (an output link).
    :param links: link name -> a repository with every link option.
    :param done: the metadata repository of the task's done records (default: YAML
        files under ``.pydatatask/done/TASK`` beside the file).
    :param timeout: seconds after which a job is stopped and recorded as timed out.
    :param retry: a number of attempts, or a retry policy.
    :param max_concurrent: the most jobs of the task running at once.
    :param version: the code's version, kept in every done record: a new one makes the
        task's done jobs stale (default: a hash of the body, script or manifest).
    """

    inputs: dict[str, RepositoryName]
    outputs: dict[str, RepositoryName]
    links: dict[str, LinkOptions]
    done: MetadataRepositoryName
    timeout: float
    retry: int | RetryOptions
    max_concurrent: int
    version: str


def import_function(spec: str, folder: Path, key: str = "function") -> Any:
    """Import ``module:attribute`` with ``folder`` first on ``sys.path`` (where it stays).

    As for any import, a module already imported under that name is used as it is.

    :param key: the key naming the function, for errors.
    :raises InvalidValueError: for a malformed spec, or one that cannot be imported.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise InvalidValueError(key, "expected 'module:attribute'")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    try:
        found: Any = importlib.import_module(module_name)
    # Any error of the user's module, as it is imported, is a problem of this key.
    except Exception as exc:
        raise InvalidValueError(
            key, f"cannot import {spec!r}: {type(exc).__name__}: {exc}"
        ) from exc
    path = module_name
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            guess = nearest(part, [name for name in dir(found) if not name.startswith("_")])
            hint = "" if guess is None else f" (did you mean {guess!r}?)"
            raise InvalidValueError(
                key, f"cannot import {spec!r}: {path!r} has no {part!r}{hint}"
            ) from None
        path += f".{part}"
    return found


def _done(context: BuildContext, keys: TaskKeys) -> MetadataRepository:
    done = keys.get("done")
    if done is not None:
        return done
    return YamlMetadataFileRepository(context.folder / ".pydatatask" / "done" / context.name)


def _retry(value: int | RetryOptions | None) -> RetryPolicy | int | None:
    if isinstance(value, dict):
        return RetryPolicy(**value)
    return value


def _wire(task: Task, keys: TaskKeys, *, values_linked: bool = False) -> Task:
    """Link the task's inputs, outputs and links (inputs and outputs unless done already)."""
    if not values_linked:
        for name, repo in keys.get("inputs", {}).items():
            task.link(name, repo, is_input=True)
        for name, repo in keys.get("outputs", {}).items():
            task.link(name, repo, is_output=True)
    for name, options in keys.get("links", {}).items():
        flags = {flag: value for flag, value in options.items() if flag != "repo"}
        task.link(name, options["repo"], **cast(dict[str, bool], flags))
    return task


def _stderr(stderr: BlobRepository | None, merge_stderr: bool) -> Any:
    if not merge_stderr:
        return stderr
    if stderr is not None:
        raise InvalidValueError("merge_stderr", "give stderr or merge_stderr, not both")
    from pydatatask.task.script import STDOUT

    return STDOUT


def function_task(
    context: BuildContext,
    /,
    *,
    function: str,
    **keys: Unpack[TaskKeys],
) -> Task:
    """Run a function over values, as ``@pydatatask.task`` makes (``ValueTask``).

    :param function: ``module:attribute``, imported with the file's folder on
        ``sys.path``: a function, or a ``@pydatatask.task`` whose function is used (and
        its ``version``, unless the file gives one). An ``InProcessSyncTask`` or
        ``ExecutorTask`` names a function over repositories instead: its body receives
        the job id and, for each of its parameters, the link of that name.
    """
    from pydatatask.task.function import FunctionTask
    from pydatatask.task.values import ValueTask

    body = import_function(function, context.folder)
    version = keys.get("version")
    if isinstance(body, FunctionTask):
        return _repository_function_task(context, function, body, keys)
    if isinstance(body, ValueTask):
        version = version if version is not None else body.version
        body = body.func
    elif isinstance(body, Task) or not callable(body):
        raise InvalidValueError(
            "function", f"{function!r} is not a function or a @pydatatask.task function"
        )
    task = ValueTask(
        context.name,
        body,
        done=_done(context, keys),
        inputs=keys.get("inputs"),
        outputs=keys.get("outputs"),
        version=version,
        timeout=keys.get("timeout"),
        retry=_retry(keys.get("retry")),
        max_concurrent=keys.get("max_concurrent"),
    )
    return _wire(task, keys, values_linked=True)


def _repository_function_task(context: BuildContext, spec: str, body: Any, keys: TaskKeys) -> Task:
    """Return a task over repositories with the body (and executor) of an imported one."""
    from pydatatask.task.function import ExecutorTask, InProcessSyncTask

    if body.func is None:
        raise InvalidValueError("function", f"{spec!r} is a task without a body")
    options: dict[str, Any] = {
        "timeout": keys.get("timeout"),
        "retry": _retry(keys.get("retry")),
        "max_concurrent": keys.get("max_concurrent"),
        "version": keys.get("version", body.version),
    }
    done = _done(context, keys)
    task: Task
    if isinstance(body, ExecutorTask):
        task = ExecutorTask(context.name, body.executor, done, None, body.func, **options)
    else:
        task = InProcessSyncTask(context.name, done, None, body.func, **options)
    return _wire(task, keys)


def process_task(
    context: BuildContext,
    /,
    *,
    process: str,
    manager: _SSHConnection | None = None,
    remote_path: str = "/tmp/pydatatask",
    environ: dict[str, str] | None = None,
    stdin: BlobRepositoryName | None = None,
    stdout: BlobRepositoryName | None = None,
    stderr: BlobRepositoryName | None = None,
    merge_stderr: bool = False,
    pids: MetadataRepositoryName | None = None,
    ready: RepositoryName | None = None,
    on_exit: _OnExit = "detach",
    kill_grace: float = 5.0,
    user: str | None = None,
    workdir: str | None = None,
    **keys: Unpack[TaskKeys],
) -> Task:
    """Run a shell script per job as a process, here or over SSH (``ProcessTask``).

    :param process: the jinja2 shell script; links are named in it by their names.
    :param manager: an ``ssh`` resource to run jobs on that host (default: this
        machine, with job folders under ``.pydatatask/jobs`` beside the file).
    :param remote_path: the folder of job folders on the SSH host.
    :param environ: environment variables exported to the script.
    :param stdin: a blob repository whose value is the script's standard input.
    :param stdout: a blob repository receiving its standard output.
    :param stderr: a blob repository receiving its standard error.
    :param merge_stderr: send standard error to ``stdout``.
    :param pids: where running jobs are noted (default: beside the done records).
    :param ready: a repository listing the jobs that may run, in place of the inputs.
    :param on_exit: ``detach`` leaves running jobs to the next controller; ``kill``
        kills them when the controller stops.
    :param kill_grace: seconds between SIGTERM and SIGKILL when a job is killed.
    :param user: run the script as this account (a name or uid; the controller must
        run as root to switch, and over SSH only the connection's login is accepted).
    :param workdir: run the script in this folder (default: the job's folder).
    """
    from pydatatask.executor.linux import LinuxProcessManager
    from pydatatask.executor.local import LocalLinuxManager
    from pydatatask.task.process import ProcessTask

    executor: LinuxProcessManager
    if manager is None:
        executor = LocalLinuxManager(context.app, context.folder / ".pydatatask" / "jobs")
    else:
        from pydatatask.executor.ssh import SSHLinuxManager

        executor = SSHLinuxManager(context.app, manager, remote_path)
    task = ProcessTask(
        context.name,
        executor,
        pids=pids,
        template=process,
        environ=environ,
        kill_grace=kill_grace,
        user=user,
        workdir=workdir,
        **_script_options(context, keys, (stdin, stdout, stderr, merge_stderr), ready, on_exit),
    )
    return _wire(task, keys)


def _script_options(
    context: BuildContext,
    keys: TaskKeys,
    streams: tuple[BlobRepository | None, BlobRepository | None, BlobRepository | None, bool],
    ready: Repository | None,
    on_exit: str,
) -> dict[str, Any]:
    """Return the keywords every task running a script shares, from the file's keys."""
    stdin, stdout, stderr, merge_stderr = streams
    return {
        "done": _done(context, keys),
        "stdin": stdin,
        "stdout": stdout,
        "stderr": _stderr(stderr, merge_stderr),
        "ready": ready,
        "timeout": keys.get("timeout"),
        "retry": _retry(keys.get("retry")),
        "on_exit": cast(Literal["detach", "kill"], on_exit),
        "max_concurrent": keys.get("max_concurrent"),
        "version": keys.get("version"),
    }


def container_task(
    context: BuildContext,
    /,
    *,
    container: str,
    image: str,
    resource: _DockerClient,
    environ: dict[str, str] | None = None,
    stdin: BlobRepositoryName | None = None,
    stdout: BlobRepositoryName | None = None,
    stderr: BlobRepositoryName | None = None,
    merge_stderr: bool = False,
    entrypoint: list[str] | None = None,
    network_mode: str = "none",
    ready: RepositoryName | None = None,
    on_exit: _OnExit = "detach",
    user: str | None = None,
    workdir: str | None = None,
    **keys: Unpack[TaskKeys],
) -> Task:
    """Run a shell script per job in a Docker container (``ContainerTask``).

    :param container: the jinja2 shell script run in the container.
    :param image: the image (a jinja2 template too).
    :param resource: the ``docker`` resource giving the engine's client.
    :param environ: environment variables set in the container.
    :param stdin: a blob repository whose value is the script's standard input.
    :param stdout: a blob repository receiving its standard output.
    :param stderr: a blob repository receiving its standard error.
    :param merge_stderr: send standard error to ``stdout``.
    :param entrypoint: the command the script is appended to (default ``/bin/sh -c``).
    :param network_mode: the container's network (``none``, ``host``, a network name).
    :param ready: a repository listing the jobs that may run, in place of the inputs.
    :param on_exit: ``detach`` leaves running containers to the next controller;
        ``kill`` removes them when the controller stops.
    :param user: the container's user (``name``, ``uid`` or ``uid:gid``).
    :param workdir: the container's working directory.
    """
    from pydatatask.executor.docker import DockerContainerManager
    from pydatatask.quota import Resources
    from pydatatask.task.container import ContainerTask

    task = ContainerTask(
        context.name,
        DockerContainerManager(context.app, resource),
        None,
        Resources(),
        image=image,
        template=container,
        environ=environ,
        entrypoint=("/bin/sh", "-c") if entrypoint is None else entrypoint,
        network_mode=network_mode,
        user=user,
        workdir=workdir,
        **_script_options(context, keys, (stdin, stdout, stderr, merge_stderr), ready, on_exit),
    )
    return _wire(task, keys)


def kube_task(
    context: BuildContext,
    /,
    *,
    kube: str | dict[str, Any],
    resource: _KubernetesClient | None = None,
    namespace: str = "default",
    logs: BlobRepositoryName | None = None,
    env: dict[str, str] | None = None,
    ready: RepositoryName | None = None,
    on_exit: _OnExit = "detach",
    **keys: Unpack[TaskKeys],
) -> Task:
    """Run a pod per job on a Kubernetes cluster (``KubeTask``).

    :param kube: the jinja2 pod manifest, as YAML text or as a mapping.
    :param resource: the ``kubernetes`` resource giving the API client (default: the
        in-cluster configuration inside a pod, else the kubeconfig).
    :param namespace: the namespace the pods run in.
    :param logs: a blob repository receiving each pod's log.
    :param env: environment variables added to every container.
    :param ready: a repository listing the jobs that may run, in place of the inputs.
    :param on_exit: ``detach`` leaves running pods to the next controller; ``kill``
        deletes them when the controller stops.
    """
    from pydatatask import yamltext
    from pydatatask.executor.kubernetes import PodManager
    from pydatatask.task.kubernetes import KubeTask

    task = KubeTask(
        context.name,
        PodManager(context.app, namespace, resource),
        None,
        kube if isinstance(kube, str) else yamltext.dump(kube),
        logs=logs,
        done=_done(context, keys),
        timeout=keys.get("timeout"),
        env=env,
        ready=ready,
        retry=_retry(keys.get("retry")),
        on_exit=cast(Literal["detach", "kill"], on_exit),
        max_concurrent=keys.get("max_concurrent"),
        version=keys.get("version"),
    )
    return _wire(task, keys)


def slurm_task(
    context: BuildContext,
    /,
    *,
    slurm: str,
    partition: str | None = None,
    sbatch_args: list[str] | None = None,
    root: Annotated[Path, RelativePath()] | None = None,
    environ: dict[str, str] | None = None,
    stdin: BlobRepositoryName | None = None,
    stdout: BlobRepositoryName | None = None,
    stderr: BlobRepositoryName | None = None,
    merge_stderr: bool = False,
    ready: RepositoryName | None = None,
    on_exit: _OnExit = "detach",
    **keys: Unpack[TaskKeys],
) -> Task:
    """Submit a shell script per job to a Slurm cluster with ``sbatch`` (``SlurmTask``).

    :param slurm: the jinja2 shell script; links are named in it by their names.
    :param partition: the Slurm partition (default: the cluster's default).
    :param sbatch_args: more ``sbatch`` options, such as ``["--time=10", "--mem=1G"]``.
    :param root: a folder the compute nodes share, for the job folders (default:
        ``.pydatatask/slurm`` beside the file).
    :param environ: environment variables exported to the script.
    :param stdin: a blob repository whose value is the script's standard input.
    :param stdout: a blob repository receiving its standard output.
    :param stderr: a blob repository receiving its standard error.
    :param merge_stderr: send standard error to ``stdout``.
    :param ready: a repository listing the jobs that may run, in place of the inputs.
    :param on_exit: ``detach`` leaves submitted jobs to the next controller; ``kill``
        cancels them when the controller stops.
    """
    from pydatatask.executor.slurm import SlurmManager
    from pydatatask.task.slurm import SlurmTask

    folder = root if root is not None else context.folder / ".pydatatask" / "slurm"
    task = SlurmTask(
        context.name,
        slurm,
        partition=partition,
        sbatch_args=sbatch_args or (),
        manager=SlurmManager(context.app, folder),
        environ=environ,
        **_script_options(context, keys, (stdin, stdout, stderr, merge_stderr), ready, on_exit),
    )
    return _wire(task, keys)


register(Kind("function", "task", function_task))
register(Kind("process", "task", process_task))
register(Kind("container", "task", container_task))
register(Kind("kube", "task", kube_task))
register(Kind("slurm", "task", slurm_task))
