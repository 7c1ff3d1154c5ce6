"""A shutdown ends within `server.shutdown_grace_s`, from SIGTERM to the process's exit: answers in flight get
their share of it, and every step of the application's stop after them shares one deadline (router/shutdown.py),
even with requests and background work stuck on an upstream that never answers; an answer still running when its
share ends gets a clean error in its dialect (a 503, or a stream's error event and end), never a plain-text 500."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from router.protocol.sse import SSEDecoder
from router.shutdown import SERVER_STEPS_S, Deadline, ShutdownPlan
from tests.stalling import ASK, stalled_proxy, wait_for

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


@dataclass(frozen=True)
class Stuck:
    """A request whose answer the stalling upstream never finishes."""

    path: str
    model: str
    stream: bool

    @property
    def dialect(self) -> str:
        return {"/v1/messages": "anthropic", "/v1/chat/completions": "chat"}.get(self.path, "responses")

    def body(self) -> dict[str, object]:
        question = [{"role": "user", "content": f"Stuck on {self.path} ({self.stream})"}]
        if self.dialect == "responses":
            return {"model": self.model, "input": question, "stream": self.stream}
        return {"model": self.model, "max_tokens": 64, "messages": question, "stream": self.stream}


PASS_THROUGH = "claude-sonnet-4-5"
STUCK = [Stuck(path, PASS_THROUGH, stream) for path in ("/v1/messages", "/v1/chat/completions", "/v1/responses")
         for stream in (False, True)]
"""Pass-through in the three dialects (translated for the OpenAI ones), each as JSON and as a stream."""


def ask(url: str, stuck: Stuck) -> httpx.Response:
    """The whole answer (read to its end)."""
    headers = {**ASK, "authorization": "Bearer k"}
    with httpx.stream("POST", url + stuck.path, timeout=60, headers=headers, json=stuck.body()) as reply:
        reply.read()
    return reply


def check_cut(stuck: Stuck, reply: httpx.Response) -> None:
    """A JSON request gets a 503 in its dialect with retry-after; a stream that had begun ends with its dialect's
    error event, then only `[DONE]` in a chat stream."""
    if not stuck.stream:
        assert reply.status_code == 503 and int(reply.headers["retry-after"]) >= 1, reply.text
        assert reply.headers["content-type"] == "application/json"
        body = reply.json()
        error = body["error"]
        assert error["type"] == "overloaded_error" and "shutting down" in error["message"]
        assert body["type"] == "error" if stuck.dialect == "anthropic" else error["code"] == "overloaded_error"
        return
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    decoder = SSEDecoder()
    events = decoder.feed(reply.content) + decoder.flush()
    assert len(events) >= 2, "the stream had begun before it was cut"
    if stuck.dialect == "chat":
        assert events[-1].data == "[DONE]" and events[-1].event is None
        last = json.loads(events[-2].data)
        assert last["error"]["type"] == "overloaded_error" and "shutting down" in last["error"]["message"]
        assert all(event.data != "[DONE]" for event in events[:-1])
        return
    last = json.loads(events[-1].data)
    assert events[-1].event == "error" == last["type"]
    message = last["error"]["message"] if stuck.dialect == "anthropic" else last["message"]
    assert "shutting down" in message


@pytest.mark.slow  # a proxy process
def test_a_proxy_with_stuck_requests_and_background_work_exits_within_its_grace(tmp_path: Path) -> None:
    answers: dict[Stuck, httpx.Response | str] = {}
    with stalled_proxy(tmp_path, grace_s=GRACE_S) as proxy:
        proxy.explore_a_draft()  # its exploration of the strong model: background work, stuck upstream

        def stuck(request: Stuck) -> None:
            try:
                answers[request] = ask(proxy.url, request)
            except httpx.HTTPError as exc:
                answers[request] = type(exc).__name__

        clients = [threading.Thread(target=stuck, args=(request,), daemon=True) for request in STUCK]
        for client in clients:
            client.start()
        wait_for(lambda: proxy.stalls.models.count(PASS_THROUGH) == len(STUCK))
        time.sleep(0.2)  # the streams' first events reach their clients
        code, took = proxy.terminate()
        text = proxy.log.read_text(errors="replace")
    assert took < GRACE_S + SLACK_S, f"shutdown took {took:.2f} s with a grace of {GRACE_S} s\n{text[-3000:]}"
    assert code == -signal.SIGTERM and "Application shutdown complete." in text
    for client in clients:
        client.join(10)
    assert "Exception in ASGI application" not in text, text[-3000:]
    for request in STUCK:
        reply = answers.get(request)
        assert isinstance(reply, httpx.Response), f"{request}: {reply}"
        check_cut(request, reply)
