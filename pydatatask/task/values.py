"""Functions over values: ``@pydatatask.task`` loads a job's inputs and saves its return.

The body only ever receives and returns plain values, so a plain ``def`` runs unchanged
on any :class:`concurrent.futures.Executor` (a thread, a process pool, a Dask cluster
through ``distributed.Client(...).get_executor()``); loading and saving stay in the
controller, where the session's clients live.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Unpack

from pydatatask.errors import ConfigurationError
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.task.base import Task, TaskOptions, source_of

__all__ = ["ValueFunction", "ValueTask", "task"]

ValueFunction = Callable[..., Any]
"""The body of a :class:`ValueTask`, ``func(job=..., **inputs) -> output``, sync or async."""


class ValueTask(Task):
    """A task whose body takes its inputs' values and returns its outputs' values.

    For each job, every input is loaded (``await repo.load(job)``; for a repository that
    stores no values, such as a schedule, ``await repo.info(job)``) and passed by name;
    ``job`` is passed when the body takes it. The return value is saved
    (``await repo.save(job, value)``) to the one output, or, with several outputs, the
    returned dict is saved key by key; when one of them cannot be saved, those already
    saved for the job are deleted again. Inputs are input links and outputs output links,
    so dependencies between tasks follow as for every task.

    :param func: the body; an ``async def`` runs in the controller's loop, a plain
        ``def`` on ``executor`` (a thread when None).
    :param inputs: parameter name -> the repository whose value it receives.
    :param outputs: output name -> the repository the value is saved to.
    :param version: the body's version, recorded as ``version`` in every done record.
    :raises ConfigurationError: for a body that is not callable, a parameter that names
        no input, an input no parameter takes, a positional-only parameter for an input
        or ``job``, a name used twice, a repository that
        holds no values, or an ``async def`` body given an executor.
    """

    def __init__(
        self,
        name: str,
        func: ValueFunction,
        *,
        done: MetadataRepository | None = None,
        inputs: Mapping[str, Repository] | None = None,
        outputs: Mapping[str, Repository] | None = None,
        executor: concurrent.futures.Executor | None = None,
        **options: Unpack[TaskOptions],
    ) -> None:
        super().__init__(name, done, **options)
        if not callable(func):
            raise ConfigurationError(f"task {name!r}: the body must be callable")
        self.func = func
        self.inputs = dict(inputs or {})
        self.outputs = dict(outputs or {})
        self.executor = executor
        self.__doc__ = func.__doc__
        self.__wrapped__ = func
        for link_name, repo, what in [
            *((key, repo, "input") for key, repo in self.inputs.items()),
            *((key, repo, "output") for key, repo in self.outputs.items()),
        ]:
            if not isinstance(repo, Repository) or (
                what == "output" and not isinstance(repo, MetadataRepository | BlobRepository)
            ):
                raise ConfigurationError(
                    f"task {name!r}: {what} {link_name!r} must be a repository of values "
                    f"(a metadata or blob repository), not {type(repo).__name__}"
                )
            if link_name in self.links:
                raise ConfigurationError(f"task {name!r}: {link_name!r} is used twice")
            self.link(link_name, repo, is_input=what == "input", is_output=what == "output")
        self._is_async = inspect.iscoroutinefunction(func)
        if self._is_async and executor is not None:
            raise ConfigurationError(
                f"task {name!r}: an async def body runs in the controller; "
                "give an executor to a plain def body"
            )
        self._takes_job = self._check_parameters()

    def code_material(self) -> str:
        """Return the body's source."""
        return source_of(self.func)

    def _check_parameters(self) -> bool:
        """Match the body's parameters to the inputs now; return whether it takes ``job``."""
        parameters = inspect.signature(self.func).parameters
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        for parameter in parameters.values():
            if parameter.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
                continue
            if parameter.kind is inspect.Parameter.POSITIONAL_ONLY and (
                parameter.name == "job" or parameter.name in self.inputs
            ):
                raise ConfigurationError(
                    f"task {self.name!r}: parameter {parameter.name!r} of "
                    f"{getattr(self.func, '__qualname__', self.func)!r} is positional-only, "
                    "but values are passed by name"
                )
            if parameter.name == "job" or parameter.name in self.inputs:
                continue
            if parameter.default is inspect.Parameter.empty:
                known = ", ".join(sorted(self.inputs)) or "none"
                raise ConfigurationError(
                    f"task {self.name!r}: parameter {parameter.name!r} of "
                    f"{getattr(self.func, '__qualname__', self.func)!r} is no input "
                    f"(inputs: {known}; 'job' receives the job id)"
                )
        untaken = [name for name in self.inputs if name not in parameters]
        if untaken and not takes_all:
            raise ConfigurationError(
                f"task {self.name!r}: no parameter takes the input {', '.join(untaken)}"
            )
        return "job" in parameters

    async def execute(self, job: str, attempt: int) -> dict[str, Any]:
        """Load the inputs, call the body, save what it returns."""
        if len(self.inputs) == 1:  # no gather, and no asyncio task, for the common case
            ((name, repo),) = self.inputs.items()
            arguments = {name: await _load(repo, job)}
        else:
            names = list(self.inputs)
            values = await asyncio.gather(*(_load(self.inputs[name], job) for name in names))
            arguments = dict(zip(names, values, strict=True))
        if self._takes_job:
            arguments["job"] = job
        returned = await self._call(arguments)
        await self._save(job, returned)
        return {} if self.version is None else {"version": self.version}

    async def _call(self, arguments: dict[str, Any]) -> Any:
        if self._is_async:
            return await self.func(**arguments)
        if self.executor is None:
            return await asyncio.to_thread(self.func, **arguments)
        if _copies_functions(self.executor):  # Dask: cloudpickle sends the body itself
            call = functools.partial(self.func, **arguments)
        else:  # a process pool pickles by name, and the name is the task's now
            call = functools.partial(_call_body, _Body(self.func), arguments)
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    async def _save(self, job: str, returned: Any) -> None:
        if not self.outputs:
            return
        if len(self.outputs) == 1:
            (repo,) = self.outputs.values()
            await _save(repo, job, returned)
            return
        if not isinstance(returned, Mapping):
            raise TypeError(
                f"task {self.name!r} has outputs {', '.join(self.outputs)}: its body must "
                f"return a dict with those keys, not {type(returned).__name__}"
            )
        missing = [name for name in self.outputs if name not in returned]
        unknown = [str(name) for name in returned if name not in self.outputs]
        if missing or unknown:
            problems = [f"no {', '.join(missing)}"] if missing else []
            problems += [f"unknown {', '.join(unknown)}"] if unknown else []
            raise KeyError(
                f"task {self.name!r}: the returned dict does not match its outputs "
                f"({'; '.join(problems)})"
            )
        saved: list[Repository] = []
        try:
            for name, repo in self.outputs.items():
                await _save(repo, job, returned[name])
                saved.append(repo)
        except BaseException:
            # A failed job leaves none of its outputs: remove those saved before the one
            # that could not be (a value its codec refuses, a storage error).
            for repo in saved:
                with contextlib.suppress(Exception):
                    await repo.delete(job)
            raise


async def _load(repo: Repository, job: str) -> Any:
    """Return an input's value: what it stores, or for a view (a schedule) its ``info``."""
    if isinstance(repo, MetadataRepository | BlobRepository):
        return await repo.load(job)
    return await repo.info(job)


async def _save(repo: Repository, job: str, value: Any) -> None:
    assert isinstance(repo, MetadataRepository | BlobRepository)
    await repo.save(job, value)


def _copies_functions(executor: concurrent.futures.Executor) -> bool:
    """Whether the executor ships functions by value (a Dask client's executor does)."""
    return type(executor).__module__.partition(".")[0] == "distributed"


def _call_body(body: _Body, arguments: dict[str, Any]) -> Any:
    """Call the body where the executor runs it (a thread, a process, a Dask worker)."""
    return body.func(**arguments)


class _Body:
    """A body that travels to a pool's process by the name of the task it became.

    ``@task`` replaces the function's module-level name with the task, so pickling the
    function by name would find the task instead; this finds the function through it.
    A function not reachable so travels as itself.
    """

    def __init__(self, func: ValueFunction) -> None:
        self.func = func

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        module = getattr(self.func, "__module__", None)
        qualname = getattr(self.func, "__qualname__", "")
        found = _resolve(module, qualname) if module and "<" not in qualname else None
        if isinstance(found, ValueTask) and found.func is self.func:
            return (_body_of_task, (module, qualname))
        return (_Body, (self.func,))


def _resolve(module: str, qualname: str) -> Any:
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found


def _body_of_task(module: str, qualname: str) -> _Body:
    found = _resolve(module, qualname)
    if not isinstance(found, ValueTask):
        raise ConfigurationError(f"{module}.{qualname} is not a task in this process")
    return _Body(found.func)


def task(
    name: str | None = None,
    *,
    done: MetadataRepository | None = None,
    inputs: Mapping[str, Repository] | None = None,
    outputs: Mapping[str, Repository] | None = None,
    executor: concurrent.futures.Executor | None = None,
    **options: Unpack[TaskOptions],
) -> Callable[[ValueFunction], ValueTask]:
    """Turn a function over values into a task named after it (or ``name``).

    ::

        @pydatatask.task(done=done_repo, inputs={"book": books}, outputs={"report": reports})
        async def summary(job: str, book: str) -> str:
            return f"{job}: {len(book.split())} words"

    See :class:`ValueTask` for how inputs, outputs and executors are used.
    """

    def decorate(func: ValueFunction) -> ValueTask:
        return ValueTask(
            name or func.__name__,
            func,
            done=done,
            inputs=inputs,
            outputs=outputs,
            executor=executor,
            **options,
        )

    return decorate
