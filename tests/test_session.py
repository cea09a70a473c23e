from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pydatatask import LifecycleError, Session


async def test_resources_open_in_order_and_close_in_reverse() -> None:
    events: list[str] = []
    session = Session()

    @session.resource
    async def first() -> AsyncIterator[str]:
        events.append("open first")
        yield "one"
        events.append("close first")

    @session.resource
    async def second() -> AsyncIterator[str]:
        events.append("open second")
        yield "two"
        events.append("close second")

    async with session:
        assert (first(), second()) == ("one", "two")
    assert events == ["open first", "open second", "close second", "close first"]


async def test_accessor_while_closed_names_the_resource() -> None:
    session = Session()

    @session.resource
    async def bucket_client() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(LifecycleError, match="bucket_client"):
        bucket_client()
    async with session:
        assert bucket_client() == 1
    with pytest.raises(LifecycleError, match="bucket_client"):
        bucket_client()


async def test_failed_open_closes_what_was_opened() -> None:
    events: list[str] = []
    session = Session()

    @session.resource
    async def good() -> AsyncIterator[None]:
        events.append("open good")
        yield None
        events.append("close good")

    @session.resource
    async def bad() -> AsyncIterator[None]:
        raise ConnectionError("server down")
        yield None

    @session.resource
    async def never() -> AsyncIterator[None]:
        events.append("open never")
        yield None

    with pytest.raises(ConnectionError, match="server down"):
        await session.open()
    assert events == ["open good", "close good"]
    assert not session.is_open
    with pytest.raises(LifecycleError):
        good()


async def test_session_reopens() -> None:
    opened = 0
    session = Session()

    @session.resource
    async def counter() -> AsyncIterator[int]:
        nonlocal opened
        opened += 1
        yield opened

    for expected in (1, 2):
        async with session:
            assert counter() == expected


async def test_identity_is_the_accessor_not_the_name() -> None:
    session = Session()

    def make(value: int):  # type: ignore[no-untyped-def]
        async def client() -> AsyncIterator[int]:
            yield value

        return session.resource(client)

    one, two = make(1), make(2)
    async with session:
        assert (one(), two()) == (1, 2)


async def test_double_open_is_an_error() -> None:
    session = Session()
    await session.open()
    with pytest.raises(LifecycleError, match="already open"):
        await session.open()
    await session.close()
    await session.close()


async def test_resource_that_never_yields() -> None:
    session = Session()

    @session.resource
    async def empty() -> AsyncIterator[int]:
        return
        yield 0

    with pytest.raises(LifecycleError, match="without yielding"):
        await session.open()


async def test_resource_that_yields_twice_is_reported_and_closed() -> None:
    cleaned = []
    session = Session()

    @session.resource
    async def greedy() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            cleaned.append(True)

    await session.open()
    with pytest.raises(LifecycleError, match="more than once"):
        await session.close()
    assert cleaned == [True]
    assert not session.is_open


async def test_body_error_still_closes_resources() -> None:
    closed = []
    session = Session()

    @session.resource
    async def res() -> AsyncIterator[int]:
        yield 1
        closed.append(True)

    with pytest.raises(ValueError, match="body"):
        async with session:
            raise ValueError("body")
    assert closed == [True]
