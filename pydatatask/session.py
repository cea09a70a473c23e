"""Sessions: open and close a pipeline's live resources (clients, connections) together."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Generic, TypeVar

from pydatatask.errors import LifecycleError

__all__ = ["Resource", "Session"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_UNSET: object = object()


class Resource(Generic[T]):
    """The accessor a :meth:`Session.resource` decorator returns.

    Calling it returns the live value while the owning session is open.
    """

    def __init__(self, session: Session, factory: Callable[[], AsyncIterator[T]]) -> None:
        self._session = session
        self._factory = factory
        self._value: object = _UNSET
        self.name: str = getattr(factory, "__qualname__", repr(factory))
        self.__doc__ = factory.__doc__

    def __call__(self) -> T:
        """Return the live value of this resource.

        :raises LifecycleError: when the session is not open.
        """
        if self._value is _UNSET:
            raise LifecycleError(
                f"resource {self.name!r} was used while its session is closed; "
                "open the session (or the pipeline) first with 'async with'"
            )
        return self._value  # type: ignore[return-value]

    def __repr__(self) -> str:
        state = "open" if self._value is not _UNSET else "closed"
        return f"<Resource {self.name} ({state})>"

    @contextlib.asynccontextmanager
    async def _opened(self) -> AsyncIterator[None]:
        generator = self._factory()
        try:
            value = await anext(generator)
        except StopAsyncIteration:
            raise LifecycleError(
                f"resource {self.name!r} finished without yielding a value"
            ) from None
        self._value = value
        try:
            yield
        finally:
            self._value = _UNSET
        # Closing runs the generator's cleanup; a second yield is a bug in the resource.
        try:
            await anext(generator)
        except StopAsyncIteration:
            return
        close = getattr(generator, "aclose", None)
        if close is not None:
            await close()
        raise LifecycleError(f"resource {self.name!r} yielded more than once")


class Session:
    """A set of async resources that are opened and closed together.

    Resources open in definition order and close in reverse order. If one fails to
    open, the ones already open are closed before the error propagates. A closed
    session can be opened again.
    """

    def __init__(self) -> None:
        self._resources: list[Resource[object]] = []
        self._stack: contextlib.AsyncExitStack | None = None

    def resource(self, factory: Callable[[], AsyncIterator[T]]) -> Resource[T]:
        """Register an async generator that yields exactly once as a resource."""
        accessor: Resource[T] = Resource(self, factory)
        self._resources.append(accessor)  # type: ignore[arg-type]
        return accessor

    @property
    def is_open(self) -> bool:
        """Whether the session is currently open."""
        return self._stack is not None

    async def open(self) -> None:
        """Enter every resource in definition order.

        :raises LifecycleError: when the session is already open.
        """
        if self._stack is not None:
            raise LifecycleError("the session is already open")
        stack = contextlib.AsyncExitStack()
        async with contextlib.AsyncExitStack() as guard:
            guard.push_async_callback(stack.aclose)
            for accessor in self._resources:
                logger.debug("opening resource %s", accessor.name)
                await stack.enter_async_context(accessor._opened())
            guard.pop_all()
        self._stack = stack

    async def close(self) -> None:
        """Exit every open resource in reverse order; closing a closed session does nothing."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Session:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
