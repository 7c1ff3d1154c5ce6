"""Work follows the client: a client that hangs up mid-draft cancels the draft and its samples (the upstream sees
the connections close), and the request is recorded once, saying so, with the draft's usage so far as its cost;
at shutdown, background work nobody waits for is cancelled within its budget."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.background import BackgroundTasks
from router.metrics import Metrics
from router.replay.runner import BackgroundServer
from router.storage import open_outcome_log
from tests.stalling import DRAFT, STRONG, Stalls, stalled_proxy, stalling_upstream, wait_for
from tests.support import ProxyFactory, proxy_settings

RULE = {"request_model": STRONG, "draft_model": DRAFT, "verifier_model": STRONG, "verify": {"samples": 2}}


@pytest.fixture
def stalling() -> Iterator[tuple[BackgroundServer, Stalls]]:
    stalls = Stalls()
    with BackgroundServer(stalling_upstream(stalls)) as server:
        yield server, stalls


def test_a_client_that_hangs_up_mid_draft_cancels_its_draft_and_samples(
        proxy_factory: ProxyFactory, stalling: tuple[BackgroundServer, Stalls], tmp_path: Path) -> None:
    server, stalls = stalling
    log_url, spend_url = f"sqlite:///{tmp_path}/o.sqlite", f"sqlite:///{tmp_path}/spend.sqlite"
    proxy = proxy_factory(proxy_settings(server.url, cascade_rules=[RULE], labels={"exploration_rate": 0.0},
                                         outcome_log={"enabled": True, "url": log_url, "spool_path": None,
                                                      "flush_interval_ms": 20},
                                         spend={"url": spend_url, "spool_path": None, "flush_interval_ms": 20}))
    request_id = "hangs-up-mid-draft"
    with pytest.raises(httpx.ReadTimeout):  # the client gives up while the draft is still being written
        httpx.post(proxy.url + "/v1/messages", timeout=httpx.Timeout(10.0, read=1.0),
                   headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "x-request-id": request_id},
                   json={"model": STRONG, "max_tokens": 64, "messages": [{"role": "user", "content": "Hello?"}]})
    hung_up = time.monotonic()
    wait_for(lambda: len(stalls.cancelled) == 2)  # the draft and its extra sample: both connections closed
    assert time.monotonic() - hung_up < 5.0
    assert stalls.models == [DRAFT, DRAFT], "the strong model is never asked"

    def recorded() -> list[Any]:
        return [r for r in asyncio.run(open_outcome_log(log_url).query()) if r.request_id == request_id]

    wait_for(lambda: len(recorded()) == 1)
    (record,) = recorded()
    assert record.route == "failed" and "HTTP 499: the client disconnected during the draft" in record.reason
    assert (record.draft_input_tokens, record.draft_output_tokens) == (200, 2)  # both calls' usage so far
    assert record.cost_usd is not None and record.cost_usd > 0

    def spent() -> list[tuple[Any, ...]]:
        if not Path(spend_url[len("sqlite:///"):]).exists():
            return []
        with sqlite3.connect(spend_url[len("sqlite:///"):]) as connection:
            try:
                return list(connection.execute("SELECT status, wasted_usd, input_tokens FROM cascadeflow_spend "
                                               "WHERE request_id = ?", (request_id,)))
            except sqlite3.OperationalError:  # the ledger has not made its table yet
                return []

    wait_for(lambda: len(spent()) == 1)
    ((status, wasted, input_tokens),) = spent()
    assert status == 499 and wasted == pytest.approx(record.cost_usd) and input_tokens == 200
    time.sleep(0.3)
    assert len(recorded()) == 1 and len(spent()) == 1, "recorded once"


def test_a_client_that_hangs_up_at_once_is_noticed_too(
        proxy_factory: ProxyFactory, stalling: tuple[BackgroundServer, Stalls], tmp_path: Path) -> None:
    """The watch on the client starts 50 ms into a request (router/api/disconnect.py); a client gone before then
    is noticed when it starts, and every upstream call made for it is cut."""
    server, stalls = stalling
    log_url = f"sqlite:///{tmp_path}/o.sqlite"
    proxy = proxy_factory(proxy_settings(server.url, cascade_rules=[RULE], labels={"exploration_rate": 0.0},
                                         outcome_log={"enabled": True, "url": log_url, "spool_path": None,
                                                      "flush_interval_ms": 20}))
    request_id = "hangs-up-at-once"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(proxy.url + "/v1/messages", timeout=httpx.Timeout(10.0, read=0.005),
                   headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "x-request-id": request_id},
                   json={"model": STRONG, "max_tokens": 64, "messages": [{"role": "user", "content": "Hello?"}]})

    def recorded() -> list[Any]:
        return [r for r in asyncio.run(open_outcome_log(log_url).query()) if r.request_id == request_id]

    wait_for(lambda: len(recorded()) == 1, timeout_s=5.0)  # the stalled draft would hold it far longer
    assert "HTTP 499: the client disconnected" in recorded()[0].reason
    wait_for(lambda: len(stalls.cancelled) == len(stalls.models), timeout_s=5.0)


async def test_background_work_is_cancelled_when_its_budget_runs_out() -> None:
    tasks = BackgroundTasks(Metrics(), "labels", logging.getLogger("test"))
    finished: list[str] = []

    async def work(seconds: float, name: str) -> None:
        await asyncio.sleep(seconds)
        finished.append(name)

    tasks.spawn(work(0.01, "quick"))
    tasks.spawn(work(60, "slow"))
    started = time.monotonic()
    assert await tasks.drain(0.3) is False
    assert time.monotonic() - started < 2.0 and finished == ["quick"]
    tasks.spawn(work(0.01, "again"))
    assert await tasks.drain(5.0) is True and finished == ["quick", "again"]


@pytest.mark.slow  # a proxy process
def test_shutdown_cancels_background_work_nobody_waits_for(tmp_path: Path) -> None:
    with stalled_proxy(tmp_path, grace_s=2) as proxy:
        proxy.explore_a_draft()  # the exploration of the accepted draft: stalled
        _, took = proxy.terminate()
        assert took < 2 + 3, f"shutdown took {took:.1f}s"  # the grace period, and a margin for the flush
        wait_for(lambda: STRONG in proxy.stalls.cancelled)  # the exploration's connection was closed
