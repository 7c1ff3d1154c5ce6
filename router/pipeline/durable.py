"""Answers that wait for their records to be on disk, when a journal fsyncs (`outcome_log.journal_fsync`,
`spend.journal_fsync`): a JSON answer (or an error) is returned only after the group fsync that covers the request's
records, a stream's body ends only after it. Without fsync the journal's `write()` alone is enough against a killed
process, and nothing waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from router.types import Answer, StreamAnswer

Wait = Callable[[], Awaitable[None]]


async def all_synced(waits: list[Wait]) -> None:
    """Wait for every journal's group fsync (they run at the same time)."""
    if len(waits) == 1:
        await waits[0]()
    elif waits:
        await asyncio.gather(*(wait() for wait in waits))


async def synced_answer(answer: Answer, durable: Wait) -> Answer:
    """The answer, once the records written so far are durable (a stream: once its records are, at its end)."""
    if isinstance(answer, StreamAnswer):
        answer.frames = _synced_frames(answer.frames, durable)
        return answer
    await durable()
    return answer


async def _synced_frames(frames: AsyncIterator[bytes], durable: Wait) -> AsyncIterator[bytes]:
    try:
        async for frame in frames:
            yield frame
    finally:
        close = getattr(frames, "aclose", None)
        if close is not None:
            await close()
    await durable()  # the stream's record was appended at its end: the body ends once it is on disk
