"""/metrics on prometheus-client: counters and latency histograms move by what the requests did, label values are
escaped, unknown metrics are dropped (logged once), and several processes add up in one scrape."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest import approx

from router.metrics import METRICS, MULTIPROC_ENV, Metrics, multiprocess_directory
from router.replay.runner import BackgroundServer
from tests.support import ProxyFactory, marker, proxy_settings

ROOT = Path(__file__).resolve().parents[2]
RULES = [{"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-8",
          "quality_threshold": 0.6}]
HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition text, by name and labels (parsed by prometheus-client itself)."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(proxy: BackgroundServer) -> Samples:
    response = httpx.get(proxy.url + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples) -> Callable[..., float]:
    """How much one sample grew between two scrapes."""
    return lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)


def ask(proxy: BackgroundServer, content: str, *, model: str = "claude-opus-4-8",
        stream: bool = False) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "max_tokens": 64, "stream": stream,
                            "messages": [{"role": "user", "content": content}]}
    return httpx.post(proxy.url + "/v1/messages", json=body, headers=HEADERS, timeout=30)


@pytest.fixture(scope="module")
def cascade(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> BackgroundServer:
    return proxy_factory(proxy_settings(upstream.url, cascade_rules=RULES))


def test_requests_latency_and_spend_move_by_what_was_served(cascade: BackgroundServer) -> None:
    before = scrape(cascade)
    replies = [ask(cascade, f"What is 2+2? {marker()}") for _ in range(3)]
    assert [r.headers["x-cascadeflow-draft-accepted"] for r in replies] == ["true"] * 3
    delta = moved(before, scrape(cascade))
    request = {"dialect": "anthropic", "endpoint": "messages", "route": "draft", "status": "200"}
    assert delta("cascadeflow_requests_total", **request) == 3
    assert delta("cascadeflow_drafts_total", outcome="accepted") == 3
    assert delta("cascadeflow_request_duration_seconds_count", **request) == 3
    assert delta("cascadeflow_request_duration_seconds_bucket", le="+Inf", **request) == 3
    assert delta("cascadeflow_request_duration_seconds_sum", **request) > 0
    assert delta("cascadeflow_draft_duration_seconds_count", model="claude-haiku-4-5", outcome="accepted") == 3
    for kind, header in (("actual", "x-cascadeflow-actual-cost"), ("original", "x-cascadeflow-original-cost")):
        booked = sum(float(r.headers[header]) for r in replies)
        assert booked > 0 and delta("cascadeflow_cost_usd_total", kind=kind) == approx(booked, abs=1e-7)


def test_a_streamed_escalation_times_its_first_byte_and_its_strong_call(cascade: BackgroundServer) -> None:
    before = scrape(cascade)
    reply = ask(cascade, f"{marker()} [[weak:claude-haiku-4-5]]", stream=True)
    assert reply.status_code == 200 and reply.headers["x-cascadeflow-route"] == "escalated"
    deadline = time.monotonic() + 5  # a stream is recorded when it ends
    while (delta := moved(before, scrape(cascade)))("cascadeflow_requests_total", dialect="anthropic",
                                                    endpoint="messages", route="escalated", status="200") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    stream = {"dialect": "anthropic", "endpoint": "messages", "route": "escalated"}
    assert delta("cascadeflow_stream_first_byte_seconds_count", **stream) == 1
    assert delta("cascadeflow_request_duration_seconds_count", status="200", **stream) == 1
    assert delta("cascadeflow_strong_duration_seconds_count", model="claude-opus-4-8", route="escalated") == 1
    assert delta("cascadeflow_draft_duration_seconds_count", model="claude-haiku-4-5", outcome="rejected") == 1
    assert delta("cascadeflow_drafts_total", outcome="rejected") == 1


def test_an_upstream_error_is_counted_with_its_status(cascade: BackgroundServer) -> None:
    before = scrape(cascade)
    assert ask(cascade, f"{marker()} [[status:529]]", model="claude-sonnet-5").status_code == 529
    delta = moved(before, scrape(cascade))
    assert delta("cascadeflow_upstream_errors_total", kind="api_error", status="529") == 1
    assert delta("cascadeflow_request_duration_seconds_count", dialect="anthropic", endpoint="messages",
                 route="failed", status="529") == 1


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    odd = 'say "hi"\nthen \\ leave'
    metrics.inc("cascadeflow_cost_usd_total", 1.5, kind=odd)
    text = metrics.render()
    assert 'cascadeflow_cost_usd_total{kind="say \\"hi\\"\\nthen \\\\ leave"} 1.5' in text.splitlines()
    assert value(parse(text), "cascadeflow_cost_usd_total", kind=odd) == 1.5


def test_unknown_metrics_and_wrong_labels_are_dropped_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    served = {"dialect": "anthropic", "endpoint": "messages", "route": "draft", "status": "200"}
    metrics.inc("cascadeflow_requests_total", **served)
    with caplog.at_level(logging.WARNING, logger="router.metrics"):
        for _ in range(3):
            metrics.inc("cascadeflow_no_such_thing_total", endpoint="messages")
            metrics.inc("cascadeflow_requests_total", endpoint="messages")  # `route` missing
            metrics.observe("cascadeflow_requests_total", 1.0, **served)  # a counter
            metrics.inc("cascadeflow_tokens_total", -1, kind="input", tier="served")
            with metrics.timer("cascadeflow_nothing_seconds"):
                pass
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 4, warned  # one per name
    assert any("cascadeflow_no_such_thing_total" in line for line in warned)
    text = metrics.render()
    assert "no_such_thing" not in text and "nothing_seconds" not in text
    assert metrics.value("cascadeflow_requests_total", **served) == 1


def test_the_table_follows_the_naming_rules() -> None:
    for name, spec in METRICS.items():
        assert name.startswith("cascadeflow_"), name
        assert list(spec.labels) == sorted(spec.labels), f"{name}: labels are shown in alphabetical order"
        assert name.endswith("_total") == (spec.kind == "counter"), name
        assert spec.kind != "histogram" or name.endswith("_seconds"), name


def test_every_metric_the_code_names_is_declared() -> None:
    call = re.compile(r"metrics\.(inc|advance|observe|gauge|timer)\(\s*(f?)\"(cascadeflow_[^\"]*)\"")
    named: set[str] = set()
    for path in (ROOT / "router").rglob("*.py"):
        for _, is_format, name in call.findall(path.read_text()):
            kinds = ("router", "verifier") if is_format else ("",)  # router/artifacts.py names them by kind
            named.update(name.replace("{self._spec.kind}", kind) for kind in kinds)
    assert "cascadeflow_requests_total" in named and "cascadeflow_verifier_artifact_loads_total" in named
    assert sorted(named - set(METRICS)) == []


WRITER = """
import sys
from router.metrics import Metrics

metrics = Metrics()
assert metrics.shared, "this process's values must live in PROMETHEUS_MULTIPROC_DIR"
count, entries, close = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "close"
for _ in range(count):
    metrics.inc("cascadeflow_requests_total", dialect="anthropic", endpoint="messages", route="draft", status="200")
    metrics.observe("cascadeflow_request_duration_seconds", 0.2, dialect="anthropic", endpoint="messages",
                    route="draft", status="200")
metrics.inc("cascadeflow_cost_usd_total", 0.25 * count, kind="actual")
metrics.gauge("cascadeflow_cache_entries", entries)
if close:
    metrics.close()
"""


def test_processes_sharing_a_multiprocess_directory_add_up_in_one_scrape(tmp_path: Path) -> None:
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path), "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, *args], cwd=ROOT, env=env, stderr=subprocess.PIPE)
               for args in (["3", "2", "running"], ["4", "5", "close"])]
    for writer in writers:
        _, error = writer.communicate(timeout=60)
        assert writer.returncode == 0, error.decode()
    samples = parse(Metrics(multiprocess_dir=str(tmp_path)).render())
    request = {"dialect": "anthropic", "endpoint": "messages", "route": "draft", "status": "200"}
    assert value(samples, "cascadeflow_requests_total", **request) == 7
    assert value(samples, "cascadeflow_request_duration_seconds_count", **request) == 7
    assert value(samples, "cascadeflow_request_duration_seconds_bucket", le="0.25", **request) == 7
    assert value(samples, "cascadeflow_request_duration_seconds_bucket", le="0.1", **request) == 0
    assert value(samples, "cascadeflow_cost_usd_total", kind="actual") == approx(1.75)
    assert value(samples, "cascadeflow_cache_entries") == 2, "a closed worker's gauges leave the sum"


def test_the_multiprocess_directory_lives_as_long_as_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with multiprocess_directory() as directory:
        assert os.environ[MULTIPROC_ENV] == directory and Path(directory).is_dir()
    assert MULTIPROC_ENV not in os.environ and not Path(directory).exists()
    monkeypatch.setenv(MULTIPROC_ENV, str(ROOT / "kept"))
    with multiprocess_directory() as kept:
        assert kept == str(ROOT / "kept")
    assert os.environ[MULTIPROC_ENV] == kept
