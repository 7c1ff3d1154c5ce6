"""The learned router in the proxy: features equal training's, every request logged, labels from live traffic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import numpy as np
import openai
import pytest

from router.embedding.encoder import MODEL_NAME, Encoder
from router.policy.classifier import latest_artifact_dir, load_artifact
from router.policy.features import FEATURE_NAMES, FEATURES_VERSION, request_from_prompt
from router.replay.runner import BackgroundServer
from tests.learned.support import RULES, record_with, records
from tests.support import ProxyFactory, marker, proxy_settings, received_with
from training.dataset import Labelled, embed_requests

ROOT = Path(__file__).resolve().parents[2]


def learned_settings(upstream: BackgroundServer, tmp: Path, **learned: Any) -> Any:
    return proxy_settings(
        upstream.url, cascade_rules=RULES, embedding={"enabled": True},
        outcome_log={"url": f"sqlite:///{tmp}/outcomes.sqlite", "store_text": True, "flush_interval_ms": 20,
                     "spool_path": str(tmp / "spool.jsonl")},
        labels={"exploration_rate": 1.0},
        learned_router={"models_dir": str(ROOT / "models"), **learned})


@pytest.fixture(scope="module")
def served(proxy_factory: ProxyFactory, upstream: BackgroundServer, encoder: Encoder,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[BackgroundServer, str]:
    tmp = tmp_path_factory.mktemp("learned")
    server = proxy_factory(learned_settings(upstream, tmp, skip_threshold=0.0), encoder)  # predict, never skip
    return server, f"sqlite:///{tmp}/outcomes.sqlite"


def training_row(prompt: str, max_tokens: int, encoder: Encoder) -> np.ndarray:
    """The feature row training computes for a prompt (its own batch embedding, its own request builder)."""
    request = request_from_prompt(prompt, max_tokens=max_tokens)
    data = Labelled(ids=["x"], sources=["s"], categories=[""], requests=[request], labels=np.array([1]),
                    draft_quality=np.ones(1), strong_quality=np.ones(1), draft_output_chars=np.zeros(1),
                    strong_output_chars=np.zeros(1))
    embeddings = embed_requests(data, lambda: encoder, model_name=MODEL_NAME, cache_dir=None, progress=False)
    return data.features(embeddings)[0]


@pytest.mark.parametrize("client", ["anthropic", "openai-stream"])
def test_the_features_are_identical_in_serving_and_training(served: tuple[BackgroundServer, str],
                                                           encoder: Encoder, client: str) -> None:
    proxy, url = served
    prompt = f"A train leaves at 3 pm going 60 km/h. How far has it gone by 5:30 pm? Show the steps. {marker()}"
    if client == "anthropic":
        anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0).messages.create(
            model="claude-opus-4-8", max_tokens=700, messages=[{"role": "user", "content": prompt}])
    else:
        stream = openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0).chat.completions.create(
            model="gpt-4o", max_tokens=700, stream=True, messages=[{"role": "user", "content": prompt}])
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    record = record_with(url, prompt)
    assert record.features is not None and record.embedding is not None and record.prediction is not None
    assert record.features_version == FEATURES_VERSION and len(record.features) == len(FEATURE_NAMES)
    served_row = np.concatenate([np.frombuffer(record.embedding, dtype=np.float32), np.array(record.features)])
    trained_row = training_row(prompt, 700, encoder)
    np.testing.assert_allclose(served_row, trained_row, rtol=0, atol=1e-5)
    directory = latest_artifact_dir(ROOT / "models")
    assert directory is not None and record.artifact_version == directory.name.removeprefix("router-")
    artifact = load_artifact(directory, expected_dimension=384, expected_features_version=FEATURES_VERSION)
    assert artifact.predict(trained_row[None, :].astype(np.float32))[0] == pytest.approx(record.prediction, abs=1e-4)


def test_each_request_is_logged_with_its_route_costs_and_latency(served: tuple[BackgroundServer, str],
                                                                 upstream: BackgroundServer) -> None:
    proxy, url = served
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)
    weak, plain, other = marker(), marker(), marker()
    reply = claude.messages.with_raw_response.create(
        model="claude-opus-4-8", max_tokens=100,
        messages=[{"role": "user", "content": f"Explain why the sky is blue [[weak:claude-haiku-4-5]] {weak}"}])
    assert reply.headers["x-cascadeflow-route"] == "escalated" and "x-cascadeflow-predicted-good" in reply.headers
    claude.messages.create(model="claude-opus-4-8", max_tokens=100,
                           messages=[{"role": "user", "content": f"Say hello [[text:Hello there.]] {plain}"}])
    claude.messages.create(model="claude-haiku-4-5", max_tokens=100,
                           messages=[{"role": "user", "content": f"No rule for me {other}"}])
    escalated = record_with(url, weak, labelled=True)
    assert escalated.route == "escalated" and escalated.accepted is False and escalated.confidence is not None
    assert escalated.components and "predicted" in escalated.components
    assert escalated.draft_model == "claude-haiku-4-5" and escalated.strong_model == "claude-opus-4-8"
    assert escalated.cost_usd is not None and escalated.cost_usd > 0 and escalated.draft_output_tokens
    assert escalated.latency_ms and escalated.draft_latency_ms and escalated.strong_latency_ms
    assert escalated.label is False and escalated.label_source == "agreement:similarity"
    assert escalated.draft_text and "not sure" in escalated.draft_text and escalated.tenant
    accepted = record_with(url, plain, labelled=True)
    assert accepted.route == "draft" and accepted.accepted is True
    assert accepted.label is True and accepted.label_source.startswith("agreement:")
    assert [r.route for r in records(url) if other in (r.prompt_text or "")] == []  # no hub request: no prompt
    assert any(r.route == "pass_through" and r.requested_model == "claude-haiku-4-5" for r in records(url))
    metrics = httpx.get(proxy.url + "/metrics").text
    assert 'cascadeflow_explorations_total{result="ok",tier="strong"}' in metrics
    assert 'cascadeflow_cost_usd_total{kind="exploration"}' in metrics
    assert len([i for i in received_with(upstream, plain)]) == 2  # the draft, then the exploration's strong call


def test_a_request_below_the_skip_threshold_never_drafts(proxy_factory: ProxyFactory, upstream: BackgroundServer,
                                                         encoder: Encoder, tmp_path: Path) -> None:
    proxy = proxy_factory(learned_settings(upstream, tmp_path, skip_threshold=0.9999), encoder)
    url = f"sqlite:///{tmp_path}/outcomes.sqlite"
    tag = marker()
    reply = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0).messages.with_raw_response.create(
        model="claude-opus-4-8", max_tokens=100, messages=[{"role": "user", "content": f"Prove it {tag}"}])
    assert reply.headers["x-cascadeflow-route"] == "strong"
    assert reply.headers["x-cascadeflow-draft-accepted"] == "skipped"
    assert float(reply.headers["x-cascadeflow-predicted-good"]) < 0.9999
    record = record_with(url, tag, labelled=True)  # exploration: the draft is asked in the background
    assert record.route == "strong" and record.reason.startswith("learned router: P(draft good)=")
    assert record.skip_threshold == 0.9999 and record.accepted is None
    calls = [item for item in received_with(upstream, tag)]
    assert len(calls) == 2  # the strong answer, then the background draft for the label
    forced = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0).messages.with_raw_response.create(
        model="claude-opus-4-8", max_tokens=100, messages=[{"role": "user", "content": f"Prove it {marker()}"}],
        extra_headers={"x-cascadeflow-force": "draft"})
    assert forced.headers["x-cascadeflow-route"] == "draft"  # a client's forced tier beats the router


def test_a_broken_log_store_degrades_without_failing_requests(proxy_factory: ProxyFactory,
                                                              upstream: BackgroundServer, encoder: Encoder,
                                                              tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = proxy_settings(upstream.url, cascade_rules=RULES, embedding={"enabled": True},
                              outcome_log={"url": f"sqlite:///{blocker}/x.sqlite", "flush_interval_ms": 20,
                                           "spool_path": str(tmp_path / "spool.jsonl")})
    proxy = proxy_factory(settings, encoder)
    tag = marker()
    reply = httpx.post(proxy.url + "/v1/messages", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                       json={"model": "claude-opus-4-8", "max_tokens": 50,
                             "messages": [{"role": "user", "content": f"hello {tag}"}]})
    assert reply.status_code == 200
    ready = httpx.get(proxy.url + "/ready").json()
    assert ready["checks"]["outcome_log"]["ok"] is False and ready["status"] == "degraded"
    spool = tmp_path / "spool.jsonl"
    deadline = time.monotonic() + 10
    while not (spool.exists() and '"requested_model": "claude-opus-4-8"' in spool.read_text()):
        assert time.monotonic() < deadline, "the record never reached the spool"
        time.sleep(0.05)


def test_the_grader_judge_asks_a_model_and_says_so(proxy_factory: ProxyFactory, upstream: BackgroundServer,
                                                   encoder: Encoder, tmp_path: Path) -> None:
    settings = learned_settings(upstream, tmp_path, skip_threshold=0.0)
    settings = settings.model_copy(update={"labels": settings.labels.model_copy(
        update={"judge": "grader", "grader_model": "claude-haiku-4-5"})})
    proxy = proxy_factory(settings, encoder)
    tag = marker()  # the scripted grader reads the directive inside the question it is shown: it says YES
    anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0).messages.create(
        model="claude-opus-4-8", max_tokens=100, messages=[{"role": "user", "content": f"[[text:YES]] {tag}"}])
    record = record_with(f"sqlite:///{tmp_path}/outcomes.sqlite", tag, labelled=True)
    assert record.label is True and record.label_source == "grader:claude-haiku-4-5"
    grader_calls = [item for item in received_with(upstream, tag) if "Reference answer" in str(item)]
    assert len(grader_calls) == 1
