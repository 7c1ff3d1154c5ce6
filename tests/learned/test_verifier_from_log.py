"""The verifier learns from live traffic: drafts the proxy judged fill the outcome log with their feature rows,
exploration and escalation label them, and `train --verifier --outcomes` turns the log into an artifact the
server loads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import anthropic
import pytest

from router.embedding.encoder import Encoder
from router.learning_settings import VerifierSettings
from router.metrics import Metrics
from router.replay.runner import BackgroundServer
from router.scoring.evidence import VERIFIER_FEATURES_VERSION
from router.storage.records import OutcomeRecord
from router.verifier import Verifier
from tests.learned.support import RULES, wait_for
from tests.support import ProxyFactory, proxy_settings
from training.train_verifier import main as train_verifier

WEAK = "[[weak:claude-haiku-4-5]]"  # the draft hedges and refuses; the strong model answers
TOPICS = ["the boiling point of liquid number {n}", "the plural of noun number {n}", "the year of event {n}",
          "the author of book number {n}", "the area of square {n}"]
PROMPTS = 20
"""Of each kind: enough prompts of either label in the split trained on for 5-fold cross-validation."""


def prompt(n: int, *, weak: bool) -> str:
    topic = TOPICS[n % len(TOPICS)].format(n=n + 7)
    return f"Tell me {topic}. {WEAK}" if weak else f"Tell me {topic}. [[text:Here is fact {n}.]]"


def judged_and_labelled(found: list[OutcomeRecord]) -> bool:
    return len(found) == 2 * PROMPTS and all(r.label is not None for r in found)


@pytest.mark.slow
def test_training_the_verifier_on_the_proxys_own_outcome_log(
        proxy_factory: ProxyFactory, upstream: BackgroundServer, encoder: Encoder, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/outcomes.sqlite"
    proxy = proxy_factory(proxy_settings(
        upstream.url, cascade_rules=RULES, embedding={"enabled": True},
        outcome_log={"url": url, "flush_interval_ms": 20, "spool_path": str(tmp_path / "spool.jsonl")},
        labels={"exploration_rate": 1.0}), encoder)
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)
    for n in range(PROMPTS):
        for weak in (False, True):
            claude.messages.create(model="claude-opus-4-8", max_tokens=100,
                                   messages=[{"role": "user", "content": prompt(n, weak=weak)}])
    logged = wait_for(url, judged_and_labelled)
    assert {r.route for r in logged} == {"draft", "escalated"}
    assert {r.label for r in logged} == {True, False}, "accepted drafts explored, hedging ones escalated"
    assert all(r.verifier_features_version == VERIFIER_FEATURES_VERSION for r in logged)

    models = tmp_path / "models"
    directory = train_verifier(["--outcomes", url, "--no-router", "--out", str(models), "--version", "from-log",
                                "--no-progress"])
    verifier = Verifier(VerifierSettings(models_dir=str(models)), Metrics())
    verifier._watcher.load_now()  # the serving loader: refused on any mismatch
    assert verifier.artifact is not None and verifier.artifact.metadata.version == "from-log"
    metadata = json.loads((directory / "metadata.json").read_text())
    assert metadata["training_data"] == [{
        "path": url, "kind": "outcome_log", "sha256": None, "rows": 2 * PROMPTS,
        "label_sources": sorted({str(r.label_source) for r in logged}), "left_out": {}}]
    split = metadata["split"]["rows"]
    assert split["fit"] + split["test"] == 2 * PROMPTS and split["test"] > 0
    assert metadata["thresholds"]["default_profile"] == "log" and list(metadata["thresholds"]["profiles"]) == ["log"]
    assert metadata["scores"]["test"]["overall"]["verifier_auc"] == 1.0, "hedging drafts are told apart"
    assert f"Outcome log {url}: {2 * PROMPTS} rows" in (directory / "report.md").read_text()
    asyncio.run(verifier.stop())
