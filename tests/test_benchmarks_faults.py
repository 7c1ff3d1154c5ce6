"""The fault test's parts: what counts as a clean answer in each dialect, the upstream's faults as a client sees
them, and (slow) a short run of the whole script through a real proxy."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from benchmarks.fault_checks import BAD, classify, classify_stream
from benchmarks.fault_upstream import FaultPlan, FaultUpstream
from benchmarks.faults import report, run_faults

ANTHROPIC_OK = (b'event: message_start\ndata: {"type": "message_start", "message": {}}\n\n'
                b'event: message_stop\ndata: {"type": "message_stop"}\n\n')
ANTHROPIC_ERROR = b'event: error\ndata: {"type": "error", "error": {"type": "api_error", "message": "broke"}}\n\n'
CHUNK = b'data: {"object": "chat.completion.chunk", "choices": []}\n\n'
CHAT_ERROR = b'data: {"error": {"message": "broke", "type": "api_error", "param": null, "code": null}}\n\n'


@pytest.mark.parametrize(("body", "expected"), [
    (ANTHROPIC_OK, "ok"),
    (ANTHROPIC_OK.split(b"event: message_stop")[0] + ANTHROPIC_ERROR, "error_event"),
    (ANTHROPIC_OK.split(b"event: message_stop")[0], "bad_body"),  # no terminal event
    (ANTHROPIC_ERROR + ANTHROPIC_OK, "bad_body"),  # an answer after the error
    (b'event: message_start\ndata: {"type": "message_start", "message": \n\n' + ANTHROPIC_ERROR, "bad_body"),
])
def test_anthropic_streams(body: bytes, expected: str) -> None:
    assert classify_stream("anthropic", body) == expected


@pytest.mark.parametrize(("body", "expected"), [
    (CHUNK + b"data: [DONE]\n\n", "ok"), (CHUNK + CHAT_ERROR, "error_event"), (CHUNK, "bad_body"),
    (CHAT_ERROR + b"data: [DONE]\n\n", "bad_body"), (CHUNK + b"data: {oops\n\ndata: [DONE]\n\n", "bad_body")])
def test_chat_streams(body: bytes, expected: str) -> None:
    assert classify_stream("openai_chat", body) == expected


def test_responses_streams_and_json_answers() -> None:
    done = b'event: response.completed\ndata: {"type": "response.completed"}\n\n'
    error = b'event: error\ndata: {"type": "error", "code": "api_error", "message": "broke", "param": null}\n\n'
    assert classify_stream("openai_responses", done) == "ok"
    assert classify_stream("openai_responses", error) == "error_event"
    overloaded = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    assert classify("anthropic", False, 529, "application/json", overloaded) == "error_json"
    assert classify("openai_chat", True, 502, "application/json",
                    b'{"error": {"message": "down", "type": "api_error"}}') == "error_json"
    assert classify("openai_chat", False, 502, "application/json", b'{"type": "error"}') == "bad_body"
    assert classify("anthropic", False, 500, "application/json",
                    b'{"type": "error", "error": {"type": "api_error", "message": "crash"}}') == "status_500"
    assert classify("anthropic", False, 200, "application/json", b'{"type": "message", "content": [') == "bad_body"
    assert classify("anthropic", True, 200, "application/json", ANTHROPIC_OK) == "bad_body"


async def call(plan: FaultPlan, *, stream: bool, timeout_s: float = 5.0) -> tuple[int, bytes]:
    upstream = FaultUpstream(plan)
    url = await upstream.start()
    body = {"model": "claude-haiku-4-5", "max_tokens": 16, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]}
    try:
        async with aiohttp.ClientSession() as session, session.post(
                url + "/v1/messages", json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            return response.status, await response.read()
    finally:
        await upstream.stop()


def only(fault: str) -> FaultPlan:
    return FaultPlan(weights={fault: 1.0}, storm_length_s=0.0, stall_s=1.0, latency_s=0.0, chunk_gap_s=0.0)


async def test_each_fault_reaches_the_client_as_intended() -> None:
    assert (await call(only("ok"), stream=False))[0] == 200
    status, body = await call(only("ok"), stream=True)
    assert status == 200 and classify_stream("anthropic", body) == "ok"
    status, body = await call(only("status_529"), stream=True)
    assert status == 529 and json.loads(body)["error"]["type"] == "overloaded_error"
    status, body = await call(only("malformed"), stream=False)
    assert status == 200 and classify("anthropic", False, status, "application/json", body) == "bad_body"
    status, body = await call(only("malformed"), stream=True)
    assert status == 200 and classify_stream("anthropic", body) == "bad_body"
    for fault, stream in (("drop_before", False), ("drop_mid", False), ("drop_mid", True)):
        with pytest.raises(aiohttp.ClientError):
            await call(only(fault), stream=stream)
    for fault, stream in (("stall_before", False), ("stall_mid", True)):
        with pytest.raises(TimeoutError):
            await call(only(fault), stream=stream, timeout_s=0.5)
    storm = FaultPlan(weights={"ok": 1.0}, storm_every_s=10.0, storm_length_s=10.0)
    assert (await call(storm, stream=False))[0] == 529


@pytest.mark.slow
async def test_a_short_fault_run_answers_every_request_and_loses_no_record(tmp_path: Path) -> None:
    run = await run_faults(seconds=8.0, concurrency=8, seed=3, work=tmp_path)
    text = report(run, 8.0, 8)
    assert len(run.sent) > 50 and sum(run.faults.values()) > len(run.sent) / 2, text
    assert all(run.faults[fault] for fault in ("drop_before", "malformed", "status_529", "storm_529")), text
    assert not any(run.totals[bad] for bad in BAD), text
    assert run.records["outcomes missing"] == run.records["spend missing"] == 0, text
    assert run.records["outcomes duplicated"] == run.records["spend duplicated"] == 0, text
    assert run.passed and text.endswith("no record lost"), text
