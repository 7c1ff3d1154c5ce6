"""The whole pipeline in process, with fake provider transports: every route, its outcome record and ledger entry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
import pytest

from router.costs import PriceBook, TokenUsage
from router.errors import ProxyError, UpstreamMalformedError, UpstreamStatusError
from router.learning_settings import OutcomeLogSettings
from router.ledger import Ledger
from router.metrics import Metrics
from router.pipeline import Pipeline, Steps
from router.pipeline.draft import DraftStep
from router.pipeline.predict import PredictStep
from router.pipeline.record import OutcomeRecorder, RecordStep
from router.pipeline.serve import ServeStep
from router.pipeline.verify import VerifyStep
from router.protocol.anthropic_stream import encode_event, message_to_events
from router.providers.call import Upstream
from router.providers.registry import ProviderRegistry
from router.providers.transport import Provider, UpstreamReply
from router.scoring import ConfidenceScorer
from router.settings import Settings
from router.storage.records import OutcomeRecord
from router.types import Answer, ClientCall, Dialect, Endpoint, JSONAnswer, Principal, StreamAnswer

DRAFT, STRONG = "claude-haiku-4-5", "claude-opus-4-8"
GOOD = "Paris is the capital of France, on the Seine; about two million people live in the city itself."
WEAK = "I'm sorry, but I'm not sure. It might be this, or possibly that; I think it depends."
PRICES = PriceBook()


def message(model: str, text: str, usage: tuple[int, int] = (20, 30)) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]}}


class FakeStream:
    """What the pipeline uses of an open upstream stream."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.status, self.headers = 200, {"content-type": "text/event-stream"}
        self._chunks, self._fail_after = chunks, fail_after
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        for index, chunk in enumerate(self._chunks):
            if index == self._fail_after:
                raise UpstreamStatusError(500, b"", {}, "anthropic")
            yield chunk

    def close(self) -> None:
        self.closed = True


class FakeAnthropic(Provider):
    """An Anthropic provider answering from a table of model -> (text, usage); no network."""

    def __init__(self, answers: Mapping[str, str], *, broken: bool = False, failing: frozenset[str] = frozenset()):
        super().__init__("anthropic", "anthropic", Settings(providers={"anthropic": {"base_url": "http://x"}})
                         .providers["anthropic"])
        self.answers, self.broken, self.failing = answers, broken, failing
        self.calls: list[dict[str, Any]] = []

    def _answer(self, body: bytes) -> dict[str, Any]:
        request = orjson.loads(body)
        self.calls.append(request)
        if request["model"] in self.failing:
            raise UpstreamStatusError(529, b'{"type":"error","error":{"type":"overloaded_error"}}', {}, "anthropic")
        return message(request["model"], self.answers[request["model"]])

    async def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str],
                      timeout_s: float | None = None) -> UpstreamReply:
        answer = self._answer(body or b"{}")
        payload = b'{"type": "message", "content": [' if self.broken else orjson.dumps(answer)
        return UpstreamReply(200, {"content-type": "application/json"}, payload)

    async def stream(self, path: str, body: bytes, headers: Mapping[str, str]) -> FakeStream:  # type: ignore[override]
        answer = self._answer(body)
        return FakeStream([encode_event(event) for event in message_to_events(answer)])


class ListLog:
    """An outcome log that keeps records in a list."""

    def __init__(self) -> None:
        self.records: list[OutcomeRecord] = []

    def submit(self, record: OutcomeRecord) -> bool:
        self.records.append(record)
        return True

    def submit_label(self, request_id: str, label: bool, source: str, detail: str = "") -> bool:
        return True

    async def flush(self) -> None:
        return None


def build(provider: FakeAnthropic, rules: list[dict[str, Any]] | None = None) -> tuple[Pipeline, ListLog, Metrics]:
    settings = Settings(providers={"anthropic": {"base_url": "http://x"}},
                        models=[{"match": "claude-*", "provider": "anthropic"}], cascade_rules=rules or [])
    registry = ProviderRegistry(settings)
    registry.providers["anthropic"] = provider
    metrics, log = Metrics(), ListLog()
    ledger, upstream = Ledger(PRICES, metrics), Upstream()
    recorder = OutcomeRecorder(log, OutcomeLogSettings(), metrics)  # type: ignore[arg-type]
    record = RecordStep(ledger, metrics, recorder, None)
    steps = Steps(cache=None, predict=PredictStep(None, None, metrics, logging_features=False),
                  draft=DraftStep(registry, upstream), verify=VerifyStep(ConfidenceScorer()),
                  serve=ServeStep(registry, upstream, ledger, record), record=record)
    return Pipeline(registry, upstream, list(settings.cascade_rules), steps), log, metrics


def call(model: str, *, stream: bool = False, headers: Mapping[str, str] | None = None,
         dialect: Dialect = Dialect.ANTHROPIC) -> ClientCall:
    body: dict[str, Any] = {"model": model, "max_tokens": 64, "stream": stream,
                            "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    endpoint = Endpoint.MESSAGES if dialect is Dialect.ANTHROPIC else Endpoint.CHAT
    return ClientCall(dialect, endpoint, body, orjson.dumps(body), dict(headers or {}), "",
                      Principal("t", "pass_through"), "req_test")


async def drain(answer: Answer) -> bytes:
    if isinstance(answer, JSONAnswer):
        return answer.body
    return b"".join([frame async for frame in answer.frames])


def usd(model: str, tokens: tuple[int, int] = (20, 30)) -> float:
    return PRICES.cost(model, TokenUsage(*tokens)).usd


RULE = [{"request_model": STRONG, "draft_model": DRAFT, "verifier_model": STRONG, "quality_threshold": 0.6}]


@pytest.mark.parametrize("stream", [False, True])
async def test_pass_through_is_pure_and_priced_under_the_model_that_answered(stream: bool) -> None:
    provider = FakeAnthropic({"claude-sonnet-5": GOOD})
    pipeline, log, metrics = build(provider)
    answer = await pipeline.handle(call("claude-sonnet-5", stream=stream))
    body = await drain(answer)
    expected = message("claude-sonnet-5", GOOD)
    if stream:
        assert body == b"".join(encode_event(event) for event in message_to_events(expected))
    else:
        assert orjson.loads(body) == expected
    (record,) = log.records
    assert record.route == "pass_through" and record.cost_usd == pytest.approx(usd("claude-sonnet-5"))
    assert metrics.value("cascadeflow_cost_usd_total", kind="actual") == pytest.approx(usd("claude-sonnet-5"))


@pytest.mark.parametrize("stream", [False, True])
async def test_an_accepted_draft_is_served_alone_and_strong_only_is_estimated(stream: bool) -> None:
    provider = FakeAnthropic({DRAFT: GOOD, STRONG: GOOD})
    pipeline, log, _ = build(provider, RULE)
    answer = await pipeline.handle(call(STRONG, stream=stream))
    await drain(answer)
    assert [c["model"] for c in provider.calls] == [DRAFT]
    assert answer.headers["x-cascadeflow-route"] == "draft" and answer.headers["x-cascadeflow-draft-accepted"] == "true"
    (record,) = log.records
    assert record.cost_usd == pytest.approx(usd(DRAFT)) and record.strong_only_cost_usd == pytest.approx(usd(STRONG))
    assert float(answer.headers["x-cascadeflow-cost-saved"]) == pytest.approx(usd(STRONG) - usd(DRAFT), abs=1e-8)


@pytest.mark.parametrize("stream", [False, True])
async def test_an_escalation_costs_the_strong_answer_plus_the_wasted_draft(stream: bool) -> None:
    provider = FakeAnthropic({DRAFT: WEAK, STRONG: GOOD})
    pipeline, log, metrics = build(provider, RULE)
    answer = await pipeline.handle(call(STRONG, stream=stream))
    body = await drain(answer)
    assert b"Paris" in body and b"sorry" not in body
    assert answer.headers["x-cascadeflow-route"] == "escalated"
    assert float(answer.headers["x-cascadeflow-draft-cost-wasted"]) == pytest.approx(usd(DRAFT), abs=1e-8)
    (record,) = log.records
    assert record.cost_usd == pytest.approx(usd(DRAFT) + usd(STRONG))
    assert record.strong_only_cost_usd == pytest.approx(usd(STRONG))
    assert metrics.value("cascadeflow_cost_usd_total", kind="wasted_draft") == pytest.approx(usd(DRAFT))
    assert metrics.value("cascadeflow_drafts_total", outcome="rejected") == 1


async def test_a_failed_draft_is_reported_as_failed_not_skipped() -> None:
    provider = FakeAnthropic({STRONG: GOOD}, failing=frozenset({DRAFT}))
    pipeline, log, metrics = build(provider, RULE)
    answer = await pipeline.handle(call(STRONG))
    assert answer.headers["x-cascadeflow-draft-accepted"] == "failed"
    assert answer.headers["x-cascadeflow-route"] == "escalated"
    assert log.records[0].reason.startswith(f"draft {DRAFT} failed")
    assert metrics.value("cascadeflow_drafts_total", outcome="failed") == 1
    skipped = await pipeline.handle(call(STRONG, headers={"x-cascadeflow-force": "strong"}))
    assert skipped.headers["x-cascadeflow-draft-accepted"] == "skipped"


async def test_a_failure_is_counted_and_recorded_then_raised() -> None:
    provider = FakeAnthropic({}, failing=frozenset({"claude-sonnet-5"}))
    pipeline, log, metrics = build(provider)
    with pytest.raises(ProxyError):
        await pipeline.handle(call("claude-sonnet-5"))
    with pytest.raises(ProxyError):
        await pipeline.handle(call(""))  # refused by validation: no model
    assert [r.route for r in log.records] == ["failed", "failed"]
    failed = {"dialect": "anthropic", "endpoint": "messages", "route": "failed"}
    assert metrics.value("cascadeflow_requests_total", status="529", **failed) == 1
    assert metrics.value("cascadeflow_requests_total", status="400", **failed) == 1


async def test_a_malformed_answer_across_dialects_is_an_upstream_error() -> None:
    provider = FakeAnthropic({"claude-sonnet-5": GOOD}, broken=True)
    pipeline, log, _ = build(provider)
    with pytest.raises(UpstreamMalformedError):
        await pipeline.handle(call("claude-sonnet-5", dialect=Dialect.OPENAI_CHAT))
    assert log.records[0].route == "failed"


async def test_a_client_that_hangs_up_still_gets_its_request_recorded() -> None:
    provider = FakeAnthropic({"claude-sonnet-5": GOOD})
    pipeline, log, _ = build(provider)
    answer = await pipeline.handle(call("claude-sonnet-5", stream=True))
    assert isinstance(answer, StreamAnswer)
    frames = answer.frames
    await frames.__anext__()  # message_start: the input usage has arrived
    await frames.aclose()  # type: ignore[attr-defined]
    (record,) = log.records
    assert record.route == "pass_through" and "disconnected" in record.reason
    assert record.input_tokens == 20


async def test_translation_decodes_once_and_answers_in_the_clients_dialect() -> None:
    provider = FakeAnthropic({"claude-sonnet-5": GOOD})
    pipeline, log, _ = build(provider)
    body = orjson.loads(await drain(await pipeline.handle(call("claude-sonnet-5", dialect=Dialect.OPENAI_CHAT))))
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == GOOD
    assert body["usage"]["prompt_tokens"] == 20 and log.records[0].cost_usd == pytest.approx(usd("claude-sonnet-5"))


async def test_agreement_samples_are_evidence_and_draft_cost() -> None:
    provider = FakeAnthropic({DRAFT: "The capital of France is Paris.", STRONG: GOOD})
    rule = [{**RULE[0], "verify": {"samples": 3}}]
    pipeline, log, _ = build(provider, rule)
    await drain(await pipeline.handle(call(STRONG)))
    assert [c.get("temperature") for c in provider.calls] == [None, 0.8, 0.8]
    (record,) = log.records
    assert record.components["agreement"] == 1.0 and record.draft_output_tokens == 90
    assert record.cost_usd == pytest.approx(usd(DRAFT, (60, 90)))


async def test_a_malformed_stream_event_ends_in_an_error_event_of_the_clients_dialect() -> None:
    provider = FakeAnthropic({"claude-sonnet-5": GOOD})

    async def broken(path: str, body: bytes, headers: Mapping[str, str]) -> FakeStream:
        provider.calls.append(orjson.loads(body))
        return FakeStream([b'event: message_start\ndata: {"type": "message_start", "message": {\n\n'])

    provider.stream = broken  # type: ignore[method-assign]
    pipeline, log, _ = build(provider)
    body = await drain(await pipeline.handle(call("claude-sonnet-5", stream=True, dialect=Dialect.OPENAI_CHAT)))
    assert b'"error"' in body and b"could not be decoded" in body
    (record,) = log.records
    assert record.route == "pass_through" and "undecodable" in record.reason
