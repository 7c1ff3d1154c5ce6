"""Live reload of `model_info` and `labels` in a running proxy: a new price prices the next request, a new output
limit caps the next draft, a new exploration rate explores the next draft; a bad file changes none of them."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.app import create_app
from router.reload import ConfigSource
from router.replay.runner import BackgroundServer
from router.settings import load_settings
from tests.support import NO_RETRIES_NOR_BREAKER, marker, received_with

DRAFT, STRONG = "claude-haiku-4-5", "claude-opus-4-8"


def config(upstream_url: str, folder: Path, *, price: float, max_output: int, exploration: float) -> dict[str, Any]:
    return {
        "data_dir": str(folder),
        "providers": {"anthropic": {"kind": "anthropic", "base_url": upstream_url, "api_key": "sk-test"}},
        "models": [{"match": "claude-*", "provider": "anthropic"}],
        "model_info": {DRAFT: {"prices": {"input": price, "output": 5 * price}, "max_output_tokens": max_output}},
        "cascade_rules": [{"request_model": STRONG, "draft_model": DRAFT, "verifier_model": STRONG,
                           "quality_threshold": 0.6}],
        "labels": {"exploration_rate": exploration},
        "outcome_log": {"enabled": True, "url": f"sqlite:///{folder}/outcomes.sqlite", "spool_path": None,
                        "flush_interval_ms": 20},
        "embedding": {"enabled": False}, "cache": {"enabled": False}, "learned_router": {"enabled": False},
        "verifier": {"enabled": False}, "resilience": NO_RETRIES_NOR_BREAKER, "reload": {"watch": False},
    }


def write(path: Path, data: dict[str, Any] | str) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    stamp = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


@pytest.fixture
def running(upstream: BackgroundServer, tmp_path: Path) -> Iterator[tuple[BackgroundServer, Path]]:
    path = tmp_path / "config.yaml"
    write(path, config(upstream.url, tmp_path, price=1.0, max_output=500, exploration=0.0))
    with BackgroundServer(create_app(load_settings(path, environ={}), config=ConfigSource(str(path)))) as proxy:
        yield proxy, path


def ask(proxy: BackgroundServer, tag: str) -> httpx.Response:
    """A cascade request whose draft is served (its cost is the draft's, priced by `model_info`)."""
    body = {"model": STRONG, "max_tokens": 1000,
            "messages": [{"role": "user", "content": f"[[text:The answer is 42.]] {tag}"}]}
    response = httpx.post(proxy.url + "/v1/messages", json=body, timeout=30,
                          headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert response.status_code == 200 and response.headers["x-cascadeflow-route"] == "draft", response.text
    return response


def priced(response: httpx.Response, price: float) -> tuple[float, float]:
    """The request's cost header, and its usage at `price` (input) and 5 × `price` (output) per million."""
    usage = response.json()["usage"]
    expected = (usage["input_tokens"] * price + usage["output_tokens"] * 5 * price) / 1e6
    return float(response.headers["x-cascadeflow-actual-cost"]), expected


def reload(proxy: BackgroundServer) -> dict[str, Any]:
    answer = httpx.post(proxy.url + "/admin/config/reload", timeout=30)
    assert answer.status_code in (200, 422), answer.text
    data: dict[str, Any] = answer.json()
    return data


def draft_max_tokens(upstream: BackgroundServer, tag: str) -> list[int]:
    return [item["body"]["max_tokens"] for item in received_with(upstream, tag) if item["body"]["model"] == DRAFT]


def test_a_reloaded_price_and_limit_apply_to_the_next_request(
        running: tuple[BackgroundServer, Path], upstream: BackgroundServer) -> None:
    proxy, path = running
    actual, expected = priced(ask(proxy, before := marker()), 1.0)
    assert actual == pytest.approx(expected, abs=1e-8) and actual > 0
    assert draft_max_tokens(upstream, before) == [500]

    write(path, config(upstream.url, path.parent, price=3.0, max_output=200, exploration=0.0))
    result = reload(proxy)
    assert result["status"] == "applied" and {"model_info.claude-haiku-4-5.prices.input",
                                              "model_info.claude-haiku-4-5.max_output_tokens"} <= set(result["applied"])
    actual, expected = priced(ask(proxy, after := marker()), 3.0)
    assert actual == pytest.approx(expected, abs=1e-8), "the next request is priced at the new price"
    assert draft_max_tokens(upstream, after) == [200], "the next draft is capped at the new limit"

    bad = config(upstream.url, path.parent, price=9.0, max_output=100, exploration=0.0)
    bad["model_info"][DRAFT]["prices"]["output"] = -1
    write(path, bad)
    rejected = reload(proxy)
    assert rejected["status"] == "rejected" and "model_info.claude-haiku-4-5.prices.output" in rejected["error"]
    actual, expected = priced(ask(proxy, kept := marker()), 3.0)
    assert actual == pytest.approx(expected, abs=1e-8), "a bad file keeps the running prices"
    assert draft_max_tokens(upstream, kept) == [200]


def test_a_reloaded_exploration_rate_explores_the_next_draft(
        running: tuple[BackgroundServer, Path], upstream: BackgroundServer) -> None:
    proxy, path = running
    write(path, config(upstream.url, path.parent, price=1.0, max_output=500, exploration=1.0))
    result = reload(proxy)
    assert result["status"] == "applied" and result["applied"] == ["labels.exploration_rate"]
    ask(proxy, tag := marker())
    deadline = time.monotonic() + 10
    while len(received_with(upstream, tag)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    models = sorted(item["body"]["model"] for item in received_with(upstream, tag))
    assert models == [DRAFT, STRONG], "the served draft was explored: the strong model answered it too"
