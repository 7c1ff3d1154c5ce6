"""Writes outcome records forever, noting each acknowledged (flushed) id; the crash test kills it with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from router.learning_settings import OutcomeLogSettings
from router.storage import open_outcome_log
from router.storage.records import OutcomeRecord


async def main(url: str, acks: str, spool: str | None) -> None:
    log = open_outcome_log(OutcomeLogSettings(url=url, spool_path=spool, batch_size=64, flush_interval_ms=5))
    await log.start()
    number = 0
    with open(acks, "a", encoding="utf-8") as handle:
        while True:
            batch = []
            for _ in range(37):
                request_id = f"r{number}"
                number += 1
                log.submit(OutcomeRecord(request_id=request_id, created_at=time.time(), tenant="t",
                                         endpoint="messages", requested_model="m", route="draft",
                                         prompt_text="x" * 2000))
                batch.append(request_id)
            await log.flush()
            handle.write("".join(f"{request_id}\n" for request_id in batch))
            handle.flush()
            os.fsync(handle.fileno())


if __name__ == "__main__":  # crash_writer.py <url> <ackfile> [<spool>]
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
