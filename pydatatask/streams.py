"""Async byte and text streams that blob repositories hand out.

A reader's ``read(n)`` returns at most ``n`` bytes (or characters) and advances; ``read()``
returns the rest. A writer makes its value visible only when it closes successfully; a
writer that is left through an exception (or cancelled) discards what it wrote.
"""

from __future__ import annotations

import abc
import codecs
from types import TracebackType
from typing import Generic, Literal, Protocol, Self, TypeVar

__all__ = [
    "AsyncReader",
    "AsyncWriter",
    "ByteReader",
    "ByteWriter",
    "BytesReader",
    "OpenMode",
    "TextReader",
    "TextWriter",
    "copy_stream",
]

OpenMode = Literal["r", "rb", "w", "wb"]
DEFAULT_CHUNK = 1 << 16

Data = TypeVar("Data", str, bytes)
DataCo = TypeVar("DataCo", str, bytes, covariant=True)
DataContra = TypeVar("DataContra", str, bytes, contravariant=True)


class AsyncReader(Protocol[DataCo]):
    """What a reader returned by ``BlobRepository.open(job, "r" | "rb")`` offers."""

    async def read(self, n: int = -1) -> DataCo:
        """Return at most ``n`` items (all remaining when ``n`` is negative); empty at the end."""
        ...

    async def close(self) -> None:
        """Release the underlying resources."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class AsyncWriter(Protocol[DataContra]):
    """What a writer returned by ``BlobRepository.open(job, "w" | "wb")`` offers."""

    async def write(self, data: DataContra) -> int:
        """Append ``data``; return how many items were accepted."""
        ...

    async def close(self) -> None:
        """Commit the value, making it visible."""
        ...

    async def abort(self) -> None:
        """Discard everything written; the previous value (if any) stays."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class _ClosesOnExit:
    """``async with`` support for a stream that is closed however the block ends."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class _CommitsOnExit:
    """``async with`` support for a writer: commit when the block succeeds, else abort."""

    async def close(self) -> None:
        raise NotImplementedError

    async def abort(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.close()
        else:
            await self.abort()


class ByteReader(_ClosesOnExit, abc.ABC):
    """Base class for byte readers: subclasses implement ``_read_some(n)``."""

    _closed = False

    @abc.abstractmethod
    async def _read_some(self, n: int) -> bytes:
        """Return between 1 and ``n`` bytes, or ``b""`` at the end of the stream."""

    async def _release(self) -> None:
        """Free backend resources; called once by :meth:`close`."""

    async def read(self, n: int = -1) -> bytes:
        """Return at most ``n`` bytes (everything left when ``n`` is negative)."""
        if self._closed:
            raise ValueError("read from a closed stream")
        if n == 0:
            return b""
        if n > 0:
            return await self._read_some(n)
        parts = []
        while chunk := await self._read_some(DEFAULT_CHUNK):
            parts.append(chunk)
        return b"".join(parts)

    async def close(self) -> None:
        """Release the stream; closing twice does nothing."""
        if not self._closed:
            self._closed = True
            await self._release()


class BytesReader(ByteReader):
    """A reader over a bytes object already in memory."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._position = 0

    async def _read_some(self, n: int) -> bytes:
        start = self._position
        self._position = min(start + n, len(self._view))
        return bytes(self._view[start : self._position])

    async def read(self, n: int = -1) -> bytes:
        """Return at most ``n`` bytes (everything left when ``n`` is negative)."""
        if n < 0 and not self._closed:
            n = len(self._view) - self._position
            if n == 0:
                return b""
        return await super().read(n)


class ByteWriter(_CommitsOnExit, abc.ABC):
    """Base class for atomic byte writers.

    Subclasses implement ``_write``, ``_commit`` and ``_discard``. Leaving an
    ``async with`` block through an exception or cancellation discards the value.
    """

    _finished = False

    @abc.abstractmethod
    async def _write(self, data: bytes) -> None:
        """Accept ``data`` (possibly buffering it)."""

    @abc.abstractmethod
    async def _commit(self) -> None:
        """Make everything written visible as the new value."""

    @abc.abstractmethod
    async def _discard(self) -> None:
        """Drop everything written and any temporary state."""

    async def write(self, data: bytes) -> int:
        """Append ``data``; return its length."""
        if self._finished:
            raise ValueError("write to a closed stream")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"a binary writer takes bytes, not {type(data).__name__}")
        if data:
            await self._write(bytes(data))
        return len(data)

    async def close(self) -> None:
        """Commit the value; if committing fails, the partial value is discarded."""
        if self._finished:
            return
        self._finished = True
        try:
            await self._commit()
        except BaseException:
            await self._discard()
            raise

    async def abort(self) -> None:
        """Discard the value; the previous value (if any) stays."""
        if not self._finished:
            self._finished = True
            await self._discard()


class TextReader(_ClosesOnExit):
    """Decode a byte reader as UTF-8, incrementally; ``read(n)`` returns at most n characters."""

    def __init__(self, raw: ByteReader, encoding: str = "utf-8") -> None:
        self.raw = raw
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        self._pending = ""
        self._eof = False

    async def read(self, n: int = -1) -> str:
        """Return at most ``n`` characters (everything left when ``n`` is negative)."""
        if n < 0:
            rest = await self.raw.read()
            text = self._pending + self._decoder.decode(rest, final=True)
            self._pending = ""
            self._eof = True
            return text
        while len(self._pending) < n and not self._eof:
            chunk = await self.raw.read(max(n - len(self._pending), DEFAULT_CHUNK))
            if not chunk:
                self._eof = True
            self._pending += self._decoder.decode(chunk, final=not chunk)
        text, self._pending = self._pending[:n], self._pending[n:]
        return text

    async def close(self) -> None:
        """Close the underlying byte reader."""
        await self.raw.close()


class TextWriter(_CommitsOnExit):
    """Encode text as UTF-8 onto an atomic byte writer."""

    def __init__(self, raw: ByteWriter, encoding: str = "utf-8") -> None:
        self.raw = raw
        self._encoding = encoding

    async def write(self, data: str) -> int:
        """Append ``data``; return the number of characters written."""
        if not isinstance(data, str):
            raise TypeError(f"a text writer takes str, not {type(data).__name__}")
        await self.raw.write(data.encode(self._encoding))
        return len(data)

    async def close(self) -> None:
        """Commit the value."""
        await self.raw.close()

    async def abort(self) -> None:
        """Discard the value."""
        await self.raw.abort()


class _Readable(Protocol, Generic[DataCo]):
    async def read(self, n: int = -1) -> DataCo: ...


class _Writable(Protocol, Generic[DataContra]):
    async def write(self, data: DataContra) -> int: ...


async def copy_stream(
    reader: _Readable[Data], writer: _Writable[Data], chunk_size: int = DEFAULT_CHUNK
) -> int:
    """Copy everything from ``reader`` to ``writer`` in bounded chunks; return the amount."""
    total = 0
    while chunk := await reader.read(chunk_size):
        total += await writer.write(chunk)
    return total
