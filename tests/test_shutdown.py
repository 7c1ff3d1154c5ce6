"""A shutdown ends within `server.shutdown_grace_s`, from SIGTERM to the process's exit: answers in flight get
their share of it, and every step of the application's stop after them shares one deadline (router/shutdown.py),
even with requests and background work stuck on an upstream that never answers."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.kill_durability import free_port, start_proxy, wait_ready
from router.replay.runner import BackgroundServer
from router.shutdown import SERVER_STEPS_S, Deadline, ShutdownPlan
from tests.pipeline.test_abandon import DRAFT, STRONG, Stalls, stalling_upstream, wait_for

GRACE_S = 3.0
SLACK_S = 0.5
"""Beyond the grace: the process's own exit and a loaded machine's scheduling."""


@pytest.mark.parametrize(("grace", "answers"), [(30, 25), (6.5, 4), (3, 2), (1, 0), (0, 0), (3600, 3595)])
def test_the_grace_is_split_between_the_answers_and_the_stop(grace: float, answers: int) -> None:
    plan = ShutdownPlan.of(grace)
    assert plan.answers_s == answers and plan.stop_s > 0
    if grace >= 1:
        assert plan.answers_s + plan.stop_s + SERVER_STEPS_S == pytest.approx(grace)
        assert plan.stop_s <= 5.0


async def test_the_steps_of_a_stop_share_one_deadline(caplog: pytest.LogCaptureFixture) -> None:
    deadline = Deadline(0.3)
    started = time.monotonic()
    assert await deadline.run(asyncio.sleep(0.01), "a quick step")
    with caplog.at_level(logging.WARNING, "router.shutdown"):
        assert not await deadline.run(asyncio.sleep(60), "a stuck step", at_most=0.1)
        assert not await deadline.run(asyncio.sleep(60), "another stuck step")
        assert not await deadline.run(asyncio.sleep(60), "a step after the deadline")
    assert time.monotonic() - started < 0.3 + 0.2
    assert [record.getMessage().split(" took")[0] for record in caplog.records] == [
        "stopping a stuck step", "stopping another stuck step", "stopping a step after the deadline"]


@pytest.mark.slow  # a proxy process
def test_a_proxy_with_stuck_requests_and_background_work_exits_within_its_grace(tmp_path: Path) -> None:
    stalls = Stalls()
    with BackgroundServer(stalling_upstream(stalls, answered=frozenset({DRAFT}))) as server:
        port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(
            f"data_dir: \"{tmp_path}\"\n"
            f"server: {{host: 127.0.0.1, port: {port}, shutdown_grace_s: {GRACE_S}}}\n"
            f"providers:\n  anthropic: {{base_url: \"{server.url}\", api_key: sk-proxy}}\n"
            "embedding: {enabled: false}\nlearned_router: {enabled: false}\nverifier: {enabled: false}\n"
            "labels: {exploration_rate: 1.0}\nreload: {watch: false}\n"
            f"cascade_rules: [{{request_model: {STRONG}, draft_model: {DRAFT}, verifier_model: {STRONG}, "
            "quality_threshold: 0.0}]\n")
        log = tmp_path / "proxy.log"
        proxy = start_proxy(config, log)
        base, answers = f"http://127.0.0.1:{port}", []
        try:
            wait_ready(base, proxy)
            ask = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
            reply = httpx.post(base + "/v1/messages", timeout=30, headers=ask, json={
                "model": STRONG, "max_tokens": 64, "messages": [{"role": "user", "content": "The capital of Peru?"}]})
            assert reply.status_code == 200 and reply.headers["x-cascadeflow-route"] == "draft"
            wait_for(lambda: STRONG in stalls.models)  # the exploration of the accepted draft: stuck upstream

            def stuck(stream: bool) -> None:  # the strong model's answer never comes (a stream stops after its start)
                try:
                    answers.append(httpx.post(base + "/v1/messages", timeout=60, headers=ask, json={
                        "model": STRONG, "max_tokens": 64, "stream": stream, "messages": [
                            {"role": "user", "content": f"Stuck {stream}"}]}).status_code)
                except httpx.HTTPError as exc:
                    answers.append(type(exc).__name__)

            clients = [threading.Thread(target=stuck, args=(stream,), daemon=True) for stream in (False, True)]
            for client in clients:
                client.start()
            wait_for(lambda: stalls.models.count(STRONG) == 3)
            proxy.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = proxy.wait(timeout=30)
            took = time.monotonic() - started
        finally:
            if proxy.poll() is None:
                proxy.kill()
                proxy.wait()
        text = log.read_text(errors="replace")
        assert took < GRACE_S + SLACK_S, f"shutdown took {took:.2f} s with a grace of {GRACE_S} s\n{text[-3000:]}"
        assert code == -signal.SIGTERM and "Application shutdown complete." in text
        for client in clients:
            client.join(10)
        assert len(answers) == 2, "each stuck client got an answer or a closed connection"
