"""Running a short local command to its end, stopping it if the caller is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

__all__ = ["run_command"]


async def run_command(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """Run ``args`` here with no standard input; return (status, stdout, stderr).

    A cancelled caller kills the command, so none outlives the one who waits for it.

    :raises OSError: when the command cannot be started.
    """
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=None if env is None else dict(env),
    )
    try:
        out, err = await process.communicate()
    except asyncio.CancelledError:
        if process.returncode is None:
            process.kill()
        raise
    return await process.wait(), out, err
