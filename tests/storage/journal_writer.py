"""Submits outcome records (or posts spend rows) forever, noting each one acknowledged once `submit` (or `post`)
has returned, with writers that never commit on their own; the journal tests kill it with SIGKILL."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from router.learning_settings import OutcomeLogSettings
from router.metrics import Metrics
from router.spend.ledger import SpendLedger
from router.spend.records import SpendRecord
from router.spend.settings import SpendSettings
from router.spend.stores import open_spend_store
from router.storage import open_outcome_log
from router.storage.records import OutcomeRecord

NEVER_MS = 3_600_000.0


def spend_row(request_id: str) -> SpendRecord:
    return SpendRecord(request_id=request_id, created_at=time.time(), day="2025-03-13", tenant="key:abc",
                       user_name="ann", key_id="k1", tier=None, endpoint="messages", model="claude-haiku-4-5",
                       route="draft", status=200, actual_usd=0.001, strong_only_usd=0.01, wasted_usd=0.0,
                       input_tokens=10, output_tokens=5, cache_read_tokens=0, cache_write_tokens=0)


async def main(mode: str, store: str, journal: str, acks: str) -> None:
    ledger: SpendLedger | None = None
    if mode == "outcomes":
        log = open_outcome_log(OutcomeLogSettings(url=store, spool_path=None, journal_path=journal,
                                                  batch_size=1_000_000, queue_size=1_000_000,
                                                  flush_interval_ms=NEVER_MS))
        await log.start()
    else:
        settings = SpendSettings(url=store, spool_path=None, journal_path=journal, batch_size=1_000_000,
                                 queue_size=1_000_000, flush_interval_ms=NEVER_MS)
        ledger = SpendLedger(open_spend_store(store), settings, Metrics())
        await ledger.start()
    number = 0
    with Path(acks).open("a", encoding="utf-8") as handle:
        while True:
            done = []
            for _ in range(50):
                request_id = f"r{number}"
                number += 1
                if ledger is None:
                    assert log.submit(OutcomeRecord(request_id=request_id, created_at=time.time(), tenant="t",
                                                    endpoint="messages", requested_model="m", route="draft"))
                else:
                    ledger.post_record(spend_row(request_id))
                done.append(request_id)
            handle.write("".join(f"{request_id}\n" for request_id in done))
            handle.flush()
            await asyncio.sleep(0.001)


if __name__ == "__main__":  # journal_writer.py outcomes|spend <store url> <journal dir> <ack file>
    asyncio.run(main(*sys.argv[1:5]))
