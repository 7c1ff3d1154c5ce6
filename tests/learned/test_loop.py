"""The learning loop: traffic through the proxy fills the log, training on the log writes a new artifact, the
running proxy picks it up and routes differently exactly where the labels said the draft falls short."""

from __future__ import annotations

import time
from pathlib import Path

import anthropic
import httpx
import pytest

from router.embedding.encoder import Encoder
from router.replay.runner import BackgroundServer
from tests.learned.support import RULES, wait_for
from tests.support import ProxyFactory, proxy_settings
from training.train_router import main as train_router

WEAK = "[[weak:claude-haiku-4-5]]"
HARD_TOPICS = ["that the square root of {n} is irrational", "that there are infinitely many primes of the form "
               "{n}k+1", "that every group of order {n} is abelian or say why not", "the bound on the {n}th "
               "Ramsey number", "that a planar graph with {n} vertices is {n}-colourable"]
EASY_TOPICS = ["the capital of country number {n} on an alphabetical list", "how to say hello in language "
               "number {n}", "a synonym for the word 'happy', variant {n}", "the colour of the sky on day {n}"]


def hard(n: int) -> str:
    return f"Prove rigorously {HARD_TOPICS[n % len(HARD_TOPICS)].format(n=n + 3)}. {WEAK}"


def easy(n: int) -> str:  # both tiers give the same answer: the draft was good enough
    return f"Tell me {EASY_TOPICS[n % len(EASY_TOPICS)].format(n=n + 3)}. [[text:Here is answer {n}.]]"


def route_of(claude: anthropic.Anthropic, prompt: str) -> str:
    reply = claude.messages.with_raw_response.create(model="claude-opus-4-8", max_tokens=200,
                                                     messages=[{"role": "user", "content": prompt}])
    return reply.headers["x-cascadeflow-route"]


@pytest.mark.slow
def test_retraining_on_the_log_changes_routing_where_the_labels_say(
        proxy_factory: ProxyFactory, upstream: BackgroundServer, encoder: Encoder, tmp_path: Path) -> None:
    models, url = tmp_path / "models", f"sqlite:///{tmp_path}/outcomes.sqlite"
    settings = proxy_settings(
        upstream.url, cascade_rules=RULES, embedding={"enabled": True},
        outcome_log={"url": url, "flush_interval_ms": 20, "spool_path": str(tmp_path / "spool.jsonl")},
        labels={"exploration_rate": 1.0}, learned_router={"models_dir": str(models), "reload_interval_s": 0.2})
    proxy = proxy_factory(settings, encoder)
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)

    # 1. no artifact yet: every request drafts first; weak drafts are escalated
    before = {"hard": [route_of(claude, hard(n)) for n in range(24)],
              "easy": [route_of(claude, easy(n)) for n in range(24)]}
    assert set(before["hard"]) == {"escalated"} and set(before["easy"]) == {"draft"}
    logged = wait_for(url, lambda found: len(found) == 48 and all(r.label is not None for r in found))
    labels = {r.label for r in logged}
    assert labels == {True, False}
    assert all(r.features is not None and r.embedding is not None and r.prediction is None for r in logged)

    # 2. retrain on the log alone, into the directory the running proxy watches
    directory = train_router(["--log", url, "--out", str(models), "--quality-target", "0.95", "--no-progress"])
    version = directory.name.removeprefix("router-")
    deadline = time.monotonic() + 15
    while httpx.get(proxy.url + "/ready").json()["checks"]["learned_router"]["artifact"] != version:
        assert time.monotonic() < deadline, "the proxy never picked up the new artifact"
        time.sleep(0.1)

    # 3. new prompts of both kinds: the hard kind now skips the draft, the easy kind still drafts
    after = {"hard": [route_of(claude, hard(n)) for n in range(100, 110)],
             "easy": [route_of(claude, easy(n)) for n in range(100, 110)]}
    assert after["hard"].count("strong") >= 9, after
    assert after["easy"].count("draft") >= 9, after
    skipped = wait_for(url, lambda found: len([r for r in found if r.route == "strong"]) >= 9)
    assert all(r.reason.startswith("learned router") and r.artifact_version == version
               for r in skipped if r.route == "strong")
