"""The one ledger through the proxy: every path's cost in the headers, /metrics and the outcome log.

Each figure is checked against genai-prices, computed here on the token counts the client received or, for
calls the client never sees (drafts, explorations, grader calls), on what the scripted upstream answered to
the exact body it received. Every test runs its own proxy, so the /metrics counters start at 0.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from genai_prices import Usage, calc_price
from prometheus_client.parser import text_string_to_metric_families

from router.costs import PriceBook, TokenUsage
from router.embedding.encoder import Encoder
from router.ledger import Ledger, LedgerEntry
from router.metrics import Metrics
from router.replay.answers import Fault, UpstreamRequest
from router.replay.runner import BackgroundServer
from router.replay.scripted import ScriptedSource
from router.replay.server import create_upstream_app, cut_stream, render_events
from router.storage.records import OutcomeRecord
from tests.learned.support import wait_for
from tests.support import ProxyFactory, item_body, marker, proxy_settings, received_with

Tokens = tuple[int, int]
RULES = [
    {"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-8",
     "quality_threshold": 0.6},
    {"request_model": "gpt-4o", "draft_model": "gpt-4o-mini", "verifier_model": "gpt-4o", "quality_threshold": 0.6},
]
PATHS = {"anthropic": "/v1/messages", "chat": "/v1/chat/completions", "responses": "/v1/responses"}
SCRIPTED = {"anthropic": "anthropic", "chat": "openai_chat", "responses": "openai_responses"}  # replay's names
COST = ("x-cascadeflow-actual-cost", "x-cascadeflow-original-cost", "x-cascadeflow-cost-saved")
WASTED = "x-cascadeflow-draft-cost-wasted"
ROUTES = ("cache", "pass_through", "draft", "escalated", "strong", "failed")


class Dialect(NamedTuple):
    """A client dialect, its cascade rule (strong, draft) and a pass-through alias (and what it really is)."""

    kind: str
    strong: str
    draft: str
    alias: str
    real: str
    provider: str  # of the alias

    @property
    def path(self) -> str:
        return PATHS[self.kind]

    @property
    def endpoint(self) -> str:
        return "messages" if self.kind == "anthropic" else self.kind

    @property
    def headers(self) -> dict[str, str]:
        return KEYS[self.kind == "anthropic"]


KEYS = {True: {"x-api-key": "k", "anthropic-version": "2023-06-01"}, False: {"authorization": "Bearer k"}}
ANTHROPIC = Dialect("anthropic", "claude-opus-4-8", "claude-haiku-4-5", "alias-claude", "claude-haiku-4-5", "anthropic")
CHAT = Dialect("chat", "gpt-4o", "gpt-4o-mini", "alias-gpt", "gpt-4o-mini", "openai")
RESPONSES = Dialect("responses", "gpt-4o", "gpt-4o-mini", "alias-gpt", "gpt-4o-mini", "openai")
TRANSLATED = Dialect("anthropic", "claude-opus-4-8", "claude-haiku-4-5", "alias-gpt", "gpt-4o-mini", "openai")
TWO = [pytest.param(ANTHROPIC, id="anthropic"), pytest.param(CHAT, id="chat")]
ALL = [*TWO, pytest.param(RESPONSES, id="responses")]
STREAM = [pytest.param(False, id="json"), pytest.param(True, id="stream")]


def usd(model: str, tokens: Tokens, provider: str) -> float:
    """genai-prices' own price of one call, independent of the proxy's PriceBook."""
    usage = Usage(input_tokens=tokens[0], output_tokens=tokens[1])
    return float(calc_price(usage, model_ref=model, provider_id=provider).total_price)


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-9, abs=1e-15)


def header(value: float) -> Any:  # the headers carry 8 decimals
    return pytest.approx(value, abs=1e-8)


def request(d: Dialect, model: str, text: str, *, stream: bool, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "input": text, "max_output_tokens": 256} if d.kind == "responses" else {
        "model": model, "max_tokens": 256, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
        if d.kind == "chat":
            body["stream_options"] = {"include_usage": True}
    return {**body, **extra}


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def usage_seen(kind: str, data: list[dict[str, Any]]) -> Tokens | None:
    """The (input, output) tokens a client was told: a JSON body's usage, or the last usage of a stream."""
    seen: Tokens | None = None
    for event in data:
        usage = event.get("usage") or (event.get("message") or event.get("response") or {}).get("usage")
        if not usage:
            continue
        if kind == "anthropic":
            cached = (usage.get("cache_read_input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0)
            inputs = usage["input_tokens"] + cached if "input_tokens" in usage else (seen or (0, 0))[0]
            seen = (inputs, usage["output_tokens"])
        elif kind == "chat":
            seen = (usage["prompt_tokens"], usage["completion_tokens"])
        else:
            seen = (usage["input_tokens"], usage["output_tokens"])
    return seen


@dataclass(frozen=True)
class Call:
    """One call the scripted upstream received: the model asked, and the tokens it answered (None: an error)."""

    model: str
    provider: str
    tokens: Tokens | None
    broken_after: Tokens | None  # the usage its stream carried before a [[break:N]], if it broke

    @property
    def usd(self) -> float:
        assert self.tokens is not None
        return usd(self.model, self.tokens, self.provider)


def calls(upstream: BackgroundServer, tag: str) -> list[Call]:
    """The upstream calls whose body mentions the tag, with what the scripted source answered them."""
    found = []
    for item in received_with(upstream, tag):
        kind = next(kind for kind, path in PATHS.items() if path == item["path"])
        body, dialect, provider = item_body(item), SCRIPTED[kind], "anthropic" if kind == "anthropic" else "openai"
        scripted = asyncio.run(ScriptedSource().answer(UpstreamRequest(dialect, body["model"], body)))
        fault = scripted if isinstance(scripted, Fault) else Fault()
        answer = scripted.answer if isinstance(scripted, Fault) else scripted
        assert answer is not None
        broken = None
        if fault.break_stream_after is not None and body.get("stream"):
            chunks, _ = cut_stream(dialect, render_events(dialect, answer, body["model"], body), fault)
            broken = usage_seen(kind, events(b"".join(chunks).decode()))
        tokens = None if fault.status is not None else (answer.input_tokens, answer.output_tokens)
        found.append(Call(body["model"], provider, tokens, broken))
    return found


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    tokens: Tokens | None
    text: str

    def cost(self, name: str) -> float:
        return float(self.headers[name])


@dataclass(frozen=True)
class Books:
    """A fresh proxy, its outcome log and its /metrics."""

    proxy: BackgroundServer
    url: str

    def send(self, d: Dialect, body: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
        response = httpx.post(self.proxy.url + d.path, json=body, headers={**d.headers, **(headers or {})},
                              timeout=30)
        data = events(response.text) if body.get("stream") else [response.json()]
        tokens = usage_seen(d.kind, data) if response.is_success else None
        return Reply(response.status_code, response.headers, tokens, response.text)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples that carry these labels (and any others)."""
        text = httpx.get(self.proxy.url + "/metrics").text
        return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == name and labels.items() <= sample.labels.items())

    def cost(self, kind: str) -> float:
        return self.metric("cascadeflow_cost_usd_total", kind=kind)

    def balanced(self, count: int) -> list[OutcomeRecord]:
        """The log's `count` records: one entry per request, and the metrics are their sums."""
        found = wait_for(self.url, lambda records: len(records) >= count, timeout_s=10)
        assert len(found) == count, [r.route for r in found]
        endpoints = {r.endpoint for r in found}
        assert sum(self.metric("cascadeflow_requests_total", endpoint=e, route=r)
                   for e in endpoints for r in ROUTES) == count
        assert self.cost("actual") == approx(sum(r.cost_usd or 0.0 for r in found))
        assert self.cost("original") == approx(sum(r.strong_only_cost_usd or 0.0 for r in found))
        return found

    def wait_cost(self, kind: str) -> float:
        """A background spend, once it is booked (off the request path)."""
        deadline = time.monotonic() + 10
        while (found := self.cost(kind)) == 0.0:
            assert time.monotonic() < deadline, f"no {kind} cost was ever booked"
            time.sleep(0.05)
        return found


OpenBooks = Callable[..., Books]


@pytest.fixture
def open_books(proxy_factory: ProxyFactory, upstream: BackgroundServer, tmp_path: Path) -> Iterator[OpenBooks]:
    """A fresh proxy with an outcome log; no exploration unless asked (it would add background calls)."""
    started: list[BackgroundServer] = []

    def start(encoder: Encoder | None = None, at: BackgroundServer | None = None, **sections: Any) -> Books:
        url = f"sqlite:///{tmp_path}/o.sqlite"
        log = {"enabled": True, "url": url, "spool_path": None, "flush_interval_ms": 20}
        sections.setdefault("labels", {"exploration_rate": 0.0})
        started.append(proxy_factory(proxy_settings((at or upstream).url, cascade_rules=RULES, outcome_log=log,
                                                    **sections), encoder))
        return Books(started[-1], url)

    yield start
    for server in started:  # stopped again at the end of the session; meanwhile, free its threads
        threading.Thread(target=server.stop, daemon=True).start()


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[BackgroundServer]:
    """A scripted upstream pacing its stream events, so that a client can hang up mid-answer."""
    with BackgroundServer(create_upstream_app(ScriptedSource(), stream_delay_s=0.05)) as server:
        yield server


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("d", [*ALL, pytest.param(TRANSLATED, id="anthropic-to-openai")])
def test_pass_through_is_priced_as_the_model_that_answered(open_books: OpenBooks, upstream: BackgroundServer,
                                                            d: Dialect, stream: bool) -> None:
    books, tag = open_books(), marker()
    reply = books.send(d, request(d, d.alias, f"Hi {tag}", stream=stream))
    assert reply.status == 200 and reply.tokens is not None
    (call,) = calls(upstream, tag)
    assert call.model == d.real and call.tokens == reply.tokens
    served = usd(d.real, reply.tokens, d.provider)
    assert served > 0, "the alias is priced as its upstream model"
    assert not set(COST) & set(reply.headers), "cost headers belong to cascade-rule answers"
    (record,) = books.balanced(1)
    assert (record.route, record.cost_usd, record.strong_only_cost_usd) == ("pass_through", approx(served),
                                                                           approx(served))
    assert (record.input_tokens, record.output_tokens) == reply.tokens
    assert books.cost("wasted_draft") == 0
    assert books.metric("cascadeflow_tokens_total", tier="served", kind="input") == reply.tokens[0]
    assert books.metric("cascadeflow_tokens_total", tier="served", kind="output") == reply.tokens[1]
    assert books.metric("cascadeflow_requests_total", endpoint=d.endpoint, route="pass_through") == 1


@pytest.mark.parametrize(("model", "force"), [("gpt-4o-mini", None), ("gpt-4o", "strong")])
def test_chat_stream_without_include_usage_is_still_priced(open_books: OpenBooks, upstream: BackgroundServer,
                                                           model: str, force: str | None) -> None:
    books, tag = open_books(), marker()
    body = request(CHAT, model, f"Hi {tag}", stream=True)
    del body["stream_options"]  # most chat clients never ask for usage; the provider bills the call all the same
    reply = books.send(CHAT, body, {"x-cascadeflow-force": force} if force else None)
    assert reply.status == 200 and reply.tokens is None, "the client did not ask for a usage chunk"
    (call,) = calls(upstream, tag)
    (record,) = books.balanced(1)
    assert (record.input_tokens, record.output_tokens) == call.tokens, "the ledger never saw the call's usage"
    assert record.cost_usd == approx(call.usd)


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("d", ALL)
def test_accepted_draft(open_books: OpenBooks, upstream: BackgroundServer, d: Dialect, stream: bool) -> None:
    books, tag = open_books(), marker()
    reply = books.send(d, request(d, d.strong, f"What is 2+2? {tag}", stream=stream))
    assert reply.headers["x-cascadeflow-route"] == "draft" and reply.tokens is not None
    (draft,) = calls(upstream, tag)
    assert draft.model == d.draft and draft.tokens == reply.tokens
    strong_only = usd(d.strong, reply.tokens, draft.provider)  # the strong model on the draft's usage
    assert reply.cost(COST[0]) == header(draft.usd) and reply.cost(COST[1]) == header(strong_only)
    assert reply.cost(COST[2]) == header(strong_only - draft.usd) and WASTED not in reply.headers
    (record,) = books.balanced(1)
    assert (record.cost_usd, record.strong_only_cost_usd) == (approx(draft.usd), approx(strong_only))
    assert books.cost("wasted_draft") == 0
    assert books.metric("cascadeflow_tokens_total", tier="served", kind="output") == reply.tokens[1]


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("d", ALL)
def test_escalated_draft_is_wasted(open_books: OpenBooks, upstream: BackgroundServer, d: Dialect,
                                   stream: bool) -> None:
    books, tag = open_books(), marker()
    reply = books.send(d, request(d, d.strong, f"{tag} [[weak:{d.draft}]]", stream=stream))
    assert reply.headers["x-cascadeflow-route"] == "escalated" and reply.tokens is not None
    draft, strong = calls(upstream, tag)
    assert (draft.model, strong.model, strong.tokens) == (d.draft, d.strong, reply.tokens)
    served = strong.usd
    assert draft.usd > 0 and reply.cost(WASTED) == header(draft.usd)
    if stream:  # the rest is known only at the end of the stream
        assert not set(COST) & set(reply.headers)
    else:
        assert reply.cost(COST[0]) == header(served + draft.usd) and reply.cost(COST[1]) == header(served)
        assert reply.cost(COST[2]) == header(-draft.usd)
    (record,) = books.balanced(1)
    assert (record.cost_usd, record.strong_only_cost_usd) == (approx(served + draft.usd), approx(served))
    assert (record.draft_input_tokens, record.draft_output_tokens) == draft.tokens
    assert books.cost("wasted_draft") == approx(draft.usd)
    assert draft.tokens is not None
    assert books.metric("cascadeflow_tokens_total", tier="draft_wasted", kind="input") == draft.tokens[0]
    assert books.metric("cascadeflow_requests_total", endpoint=d.endpoint, route="escalated") == 1


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("d", ALL)
@pytest.mark.parametrize(("how", "directive", "route"), [("skipped", "", "strong"),
                                                         ("failed", "[[fail:{draft}]]", "escalated")])
def test_strong_alone_wastes_nothing(open_books: OpenBooks, upstream: BackgroundServer, d: Dialect, stream: bool,
                                     how: str, directive: str, route: str) -> None:
    """A forced strong call skips the draft; a draft that errors costs nothing: only the strong model is paid."""
    books, tag = open_books(), marker()
    force = {"x-cascadeflow-force": "strong"} if how == "skipped" else None
    reply = books.send(d, request(d, d.strong, f"{tag} {directive.format(draft=d.draft)}", stream=stream), force)
    assert reply.headers["x-cascadeflow-draft-accepted"] == how
    *draft, strong = calls(upstream, tag)
    assert [c.tokens for c in draft] == ([None] if how == "failed" else []) and strong.tokens == reply.tokens
    assert float(reply.headers.get(WASTED, "0")) == 0
    if stream:  # known only at the end of the stream
        assert not set(COST) & set(reply.headers)
    else:
        assert [reply.cost(name) for name in COST] == [header(strong.usd), header(strong.usd), header(0.0)]
    (record,) = books.balanced(1)
    assert (record.route, record.cost_usd, record.strong_only_cost_usd, record.draft_input_tokens) == (
        route, approx(strong.usd), approx(strong.usd), None)
    assert books.cost("wasted_draft") == 0


@pytest.mark.parametrize("d", TWO)
def test_draft_broken_mid_stream_is_paid_for_what_it_used(open_books: OpenBooks, upstream: BackgroundServer,
                                                          d: Dialect) -> None:
    books, tag = open_books(), marker()  # the draft always streams: it breaks; the strong answers in JSON
    reply = books.send(d, request(d, d.strong, f"{tag} [[break:4]]", stream=False))
    assert reply.headers["x-cascadeflow-draft-accepted"] == "failed"
    draft, strong = calls(upstream, tag)
    wasted = usd(draft.model, draft.broken_after, draft.provider) if draft.broken_after else 0.0
    assert d.kind != "anthropic" or wasted > 0, "message_start carried the draft's input tokens"
    assert reply.cost(COST[0]) == header(strong.usd + wasted)
    (record,) = books.balanced(1)
    assert record.cost_usd == approx(strong.usd + wasted) and books.cost("wasted_draft") == approx(wasted)


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize(("d", "model", "priced_as"), [
    pytest.param(ANTHROPIC, "claude-opus-4-8", "claude-opus-4-8", id="anthropic-rule"),
    pytest.param(CHAT, "alias-gpt", "gpt-4o-mini", id="chat-alias-no-rule")])
def test_cache_hit_costs_nothing_and_saves_the_requested_tier(
        open_books: OpenBooks, encoder: Encoder, upstream: BackgroundServer, d: Dialect, model: str,
        priced_as: str, stream: bool) -> None:
    books = open_books(encoder, cache={"enabled": True, "directory": None}, embedding={"enabled": True})
    tag = marker()
    first = books.send(d, request(d, model, f"Name a prime number. {tag}", stream=False, temperature=0))
    hit = books.send(d, request(d, model, f"Name a prime number. {tag}", stream=stream, temperature=0))
    assert hit.headers["x-cascadeflow-cache"] == "hit"
    (call,) = calls(upstream, tag)
    assert hit.tokens == first.tokens == call.tokens and hit.tokens is not None
    estimate = usd(priced_as, hit.tokens, call.provider)  # the requested tier's price on the cached usage
    assert [hit.cost(name) for name in COST] == [header(0.0), header(estimate), header(estimate)]
    (cached,) = [r for r in books.balanced(2) if r.cache_hit]
    assert (cached.route, cached.cost_usd, cached.strong_only_cost_usd) == ("cache", 0.0, approx(estimate))
    assert books.cost("actual") == approx(call.usd)
    assert books.metric("cascadeflow_requests_total", endpoint=d.endpoint, route="cache") == 1


@pytest.mark.parametrize("d", TWO)
def test_exploration_is_booked_apart(open_books: OpenBooks, upstream: BackgroundServer, d: Dialect) -> None:
    books, tag = open_books(labels={"exploration_rate": 1.0}), marker()
    reply = books.send(d, request(d, d.strong, f"Tell me a colour. {tag}", stream=False))
    assert reply.headers["x-cascadeflow-route"] == "draft"
    explored = books.wait_cost("exploration")
    draft, strong = calls(upstream, tag)  # the draft served; the strong model asked in the background
    assert strong.model == d.strong and explored == approx(strong.usd)
    (record,) = books.balanced(1)
    assert record.cost_usd == approx(draft.usd) and books.cost("actual") == approx(draft.usd)
    assert books.metric("cascadeflow_explorations_total", tier="strong", result="ok") == 1


@pytest.mark.parametrize("d", TWO)
def test_grader_is_booked_apart(open_books: OpenBooks, upstream: BackgroundServer, d: Dialect) -> None:
    books, tag = open_books(labels={"judge": "grader", "exploration_rate": 0.0}), marker()
    books.send(d, request(d, d.strong, f"{tag} [[weak:{d.draft}]]", stream=False))
    graded = books.wait_cost("grader")
    draft, strong, grader = calls(upstream, tag)  # the grader's prompt quotes the request
    assert grader.model == d.strong and graded == approx(grader.usd)
    (record,) = books.balanced(1)
    assert record.cost_usd == approx(draft.usd + strong.usd) and books.cost("exploration") == 0


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("d", TWO)
def test_upstream_failures(open_books: OpenBooks, upstream: BackgroundServer, d: Dialect, stream: bool) -> None:
    books, plain, cascade = open_books(), marker(), marker()
    assert books.send(d, request(d, d.alias, f"{plain} [[status:529]]", stream=stream)).status == 529
    failed = books.send(d, request(d, d.strong, f"{cascade} [[weak:{d.draft}]] [[fail:{d.strong}]]", stream=stream))
    assert failed.status == 500
    assert httpx.post(books.proxy.url + d.path, content=b"{nope", headers=d.headers).status_code == 400
    assert [c.tokens for c in calls(upstream, plain)] == [None]
    draft, strong = calls(upstream, cascade)
    assert strong.tokens is None
    records = {r.requested_model: r for r in books.balanced(2)}
    assert all(r.route == "failed" and "failed" in r.reason for r in records.values())
    assert records[d.alias].cost_usd is None, "nothing was spent"
    assert records[d.strong].cost_usd == approx(draft.usd), "the rejected draft was paid for"
    assert (records[d.strong].draft_input_tokens, records[d.strong].draft_output_tokens) == draft.tokens
    assert books.cost("actual") == books.cost("wasted_draft") == approx(draft.usd)
    assert books.metric("cascadeflow_requests_total", endpoint=d.endpoint, route="failed") == 2
    assert books.metric("cascadeflow_requests_total", endpoint=d.endpoint, route="rejected") == 1


@pytest.mark.parametrize("d", TWO)
def test_stream_broken_by_the_upstream_keeps_the_usage_seen(open_books: OpenBooks, upstream: BackgroundServer,
                                                            d: Dialect) -> None:
    books, tag = open_books(), marker()
    reply = books.send(d, request(d, d.alias, f"Hi {tag} [[break:4]]", stream=True))
    assert "error" in reply.text, "the client is told the answer broke"
    (call,) = calls(upstream, tag)
    assert call.broken_after == reply.tokens
    (record,) = books.balanced(1)
    assert record.route == "pass_through" and "failed" in record.reason
    if d.kind == "anthropic":  # message_start carried the input tokens (and an output placeholder)
        assert reply.tokens is not None and record.cost_usd == approx(usd(d.real, reply.tokens, d.provider))
    else:  # the usage chunk comes last: nothing billed was seen
        assert reply.tokens is None and record.cost_usd is None


def hang_up(books: Books, d: Dialect, body: dict[str, Any]) -> tuple[httpx.Headers, Tokens | None]:
    """Read the stream's first event, then hang up: the headers and the usage seen so far."""
    with httpx.stream("POST", books.proxy.url + d.path, json=body, headers=d.headers, timeout=30) as response:
        seen = b""
        for chunk in response.iter_raw():
            seen += chunk
            if b"\n\n" in seen:
                break
        headers = response.headers
    return headers, usage_seen(d.kind, events(seen.split(b"\n\n")[0].decode()))


@pytest.mark.parametrize("d", ALL)
def test_client_hang_up_is_recorded_with_the_usage_seen(open_books: OpenBooks, slow_upstream: BackgroundServer,
                                                        d: Dialect) -> None:
    books, tag = open_books(at=slow_upstream), marker()
    words = " ".join(f"w{n}" for n in range(40))
    _, seen = hang_up(books, d, request(d, d.alias, f"{tag} [[text:{words}]]", stream=True))
    (record,) = books.balanced(1)
    assert record.route == "pass_through" and "disconnected" in record.reason
    if d.kind == "anthropic":  # message_start carries the input tokens (and an output placeholder)
        assert seen is not None and record.cost_usd == approx(usd(d.real, seen, d.provider))
    else:  # nothing billed was seen yet
        assert seen is None and record.cost_usd is None


def test_client_hang_up_after_an_escalation_still_pays_the_draft(open_books: OpenBooks,
                                                                  slow_upstream: BackgroundServer) -> None:
    books, tag, d = open_books(at=slow_upstream), marker(), ANTHROPIC
    headers, seen = hang_up(books, d, request(d, d.strong, f"{tag} [[weak:{d.draft}]]", stream=True))
    draft, _ = calls(slow_upstream, tag)
    assert float(headers[WASTED]) == header(draft.usd) and seen is not None
    (record,) = books.balanced(1)
    assert record.route == "escalated" and "disconnected" in record.reason
    assert record.cost_usd == approx(draft.usd + usd(d.strong, seen, d.provider))
    assert books.cost("wasted_draft") == approx(draft.usd)


def test_metrics_text_keeps_the_ledgers_precision() -> None:
    metrics = Metrics()
    ledger = Ledger(PriceBook(), metrics)
    charge = ledger.charge("claude-haiku-4-5", TokenUsage(12_345_678, 1_234_567), "anthropic")
    assert charge is not None
    ledger.post(LedgerEntry(charge, None, charge.usd))
    values = dict(line.rsplit(" ", 1) for line in metrics.render().splitlines() if not line.startswith("#"))
    assert float(values['cascadeflow_tokens_total{kind="input",tier="served"}']) == 12_345_678
    assert float(values['cascadeflow_cost_usd_total{kind="actual"}']) == approx(charge.usd)
