"""The trained verifier: its features, its training, its artifact in service, and agreement evidence."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from router.learning_settings import VerifierSettings
from router.metrics import Metrics
from router.replay.runner import BackgroundServer
from router.scoring.agreement import final_answer, sample_agreement
from router.scoring.evidence import VERIFIER_FEATURE_NAMES, VERIFIER_FEATURES_VERSION, verifier_features
from router.scoring.types import DraftEvidence
from router.verifier import Verifier
from tests.support import ProxyFactory, marker, proxy_settings, received_with
from training.train_verifier import main as train_verifier

RIGHT = "Adding them gives 12 + 30 = 42. The answer is 42."
WRONG = "I'm not sure, it might be 32 or possibly something else; I think it depends."
RULE = {"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-8",
        "quality_threshold": 0.6}


def answer(text: str) -> dict[str, Any]:
    return {"type": "message", "content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}


def request(text: str = "How many apples are there if I have 12 and buy 30?") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def test_features_say_which_evidence_is_absent() -> None:
    bare = dict(zip(VERIFIER_FEATURE_NAMES, verifier_features(DraftEvidence(request(), answer(RIGHT))), strict=True))
    assert (bare["has_logprobs"], bare["has_agreement"], bare["has_prediction"]) == (0.0, 0.0, 0.0)
    full = DraftEvidence(request(), answer(RIGHT), logprobs=(-0.1, -2.0), predicted_good=0.8, agreement=2 / 3)
    row = dict(zip(VERIFIER_FEATURE_NAMES, verifier_features(full), strict=True))
    assert row["has_logprobs"] == 1.0 and row["logprob_min"] == -2.0 and row["logprob_low_share"] == 0.5
    assert row["agreement"] == pytest.approx(2 / 3) and row["predicted_good"] == 0.8
    assert row["answer_ends_with_number"] == 1.0 and row["measure_hedging"] == 1.0


def test_final_answers_and_agreement() -> None:
    question = request()
    assert final_answer(question, answer(RIGHT)) == "number:42"
    assert final_answer(request("Is water wet?"), answer("Yes, it is.")) == "yesno:yes"
    assert final_answer(request("Capital of France?"), answer("Paris.")) == "text:paris"
    assert final_answer(request("Write me a poem about the sea, please"),
                        answer("The sea is wide and the sea is deep and the waves roll on")) is None
    samples = [answer("So 42."), answer("That makes 32."), answer("The total is 42")]
    assert sample_agreement(question, answer(RIGHT), samples) == pytest.approx(2 / 3)
    assert sample_agreement(question, answer(RIGHT), []) is None


def write_data(path: Path, rows: int = 400, seed: int = 0) -> Path:
    """A labelled set where wrong drafts hedge and right ones state a number (a learnable signal)."""
    rng = random.Random(seed)
    with path.open("w") as handle:
        for index in range(rows):
            good = rng.random() < 0.6
            text = RIGHT if good else WRONG
            if rng.random() < 0.05:  # some noise, so calibration has something to do (and the served-worse cap holds)
                text = WRONG if good else RIGHT
            handle.write(json.dumps({"id": f"synthetic/{index}", "source": "synthetic", "prompt": f"Q{index}: 12+30?",
                                     "draft_response": text, "draft_good_enough": int(good)}) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("verifier")
    data = write_data(folder / "data.jsonl")
    return train_verifier(["--data", str(data), "--out", str(folder / "models"), "--version", "1",
                           "--no-progress", "--no-router"])


def test_training_writes_a_calibrated_artifact_that_beats_chance(trained: Path) -> None:
    metadata = json.loads((trained / "metadata.json").read_text())
    assert trained.name == "verifier-1" and metadata["features_version"] == VERIFIER_FEATURES_VERSION
    assert metadata["scores"]["test"]["overall"]["verifier_auc"] > 0.75
    thresholds = metadata["thresholds"]
    assert 0.0 < thresholds["accept_threshold"] <= 1.0 and thresholds["quality_target"] == 0.95
    assert thresholds["chosen_on"]["worst_group_ratio"] >= 0.95, "the policy keeps the target where it was chosen"
    assert thresholds["chosen_on"]["served_by_draft"] > 0.2, "a learnable signal lets drafts be served"
    assert "skip_threshold" not in thresholds, "without a router only the accept threshold is chosen"
    assert thresholds["default_profile"] == "synthetic" and list(thresholds["profiles"]) == ["synthetic"]
    assert "| overall |" in (trained / "report.md").read_text()


async def test_the_artifact_judges_drafts_and_a_mismatch_is_refused(trained: Path, tmp_path: Path) -> None:
    verifier = Verifier(VerifierSettings(models_dir=str(trained.parent)), Metrics())
    verifier._watcher.load_now()
    good = await verifier.judge(DraftEvidence(request(), answer(RIGHT)))
    bad = await verifier.judge(DraftEvidence(request(), answer(WRONG)))
    assert good is not None and bad is not None and good[0] > bad[0] and good[2] == "1"
    await verifier.stop()
    tampered = tmp_path / "verifier-2"
    tampered.mkdir()
    metadata = json.loads((trained / "metadata.json").read_text()) | {"features_version": "0"}
    (tampered / "metadata.json").write_text(json.dumps(metadata))
    (tampered / "model.joblib").write_bytes((trained / "model.joblib").read_bytes())
    refusing = Verifier(VerifierSettings(models_dir=str(tmp_path)), Metrics())
    refusing._watcher.load_now()
    assert await refusing.judge(DraftEvidence(request(), answer(RIGHT))) is None
    status = refusing.status()
    assert status["active"] == "hand-weighted fallback" and "features version" in str(status["refused"])
    await refusing.stop()


async def test_a_rule_profile_picks_the_pair_chosen_for_its_kind_of_model_pair(trained: Path, tmp_path: Path) -> None:
    profiled = tmp_path / "verifier-3"
    profiled.mkdir()
    metadata = json.loads((trained / "metadata.json").read_text())
    metadata["thresholds"] |= {"accept_threshold": 0.6, "skip_threshold": 0.5, "router_version": "router-a",
                               "profiles": {"local": {"accept_threshold": 0.9, "skip_threshold": 0.0}}}
    (profiled / "metadata.json").write_text(json.dumps(metadata))
    (profiled / "model.joblib").write_bytes((trained / "model.joblib").read_bytes())
    verifier = Verifier(VerifierSettings(models_dir=str(tmp_path)), Metrics())
    verifier._watcher.load_now()
    artifact = verifier.artifact
    assert artifact is not None
    assert (verifier.threshold_of(artifact), verifier.threshold_of(artifact, "local")) == (0.6, 0.9)
    assert verifier.threshold_of(artifact, "no-such-profile") == 0.6, "an unknown profile means the default pair"
    assert verifier.paired_skip_threshold("router-a", "local") == 0.0
    assert verifier.paired_skip_threshold("router-a") == 0.5
    assert verifier.paired_skip_threshold("router-b") is None, "a pair is only used with the router it was chosen for"
    judged = await verifier.judge(DraftEvidence(request(), answer(RIGHT)), "local")
    assert judged is not None and judged[1] == 0.9
    await verifier.stop()
    configured = Verifier(VerifierSettings(models_dir=str(tmp_path), accept_threshold=0.7), Metrics())
    configured._watcher.load_now()
    assert configured.paired_skip_threshold("router-a") is None, "a configured accept threshold breaks the pair"
    await configured.stop()


def ask(proxy: BackgroundServer, text: str) -> httpx.Headers:
    client = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)
    raw = client.messages.with_raw_response.create(model="claude-opus-4-8", max_tokens=64,
                                                   messages=[{"role": "user", "content": text}])
    return raw.headers


def test_the_proxy_serves_what_the_verifier_accepts(proxy_factory: ProxyFactory, upstream: BackgroundServer,
                                                    trained: Path) -> None:
    proxy = proxy_factory(proxy_settings(upstream.url, cascade_rules=[RULE],
                                         verifier={"models_dir": str(trained.parent), "accept_threshold": 0.5}))
    right = ask(proxy, f"12+30? {marker()} [[text:{RIGHT}]]")
    wrong = ask(proxy, f"12+30? {marker()} [[text:{WRONG}]]")
    assert right["x-cascadeflow-route"] == "draft" and wrong["x-cascadeflow-route"] == "escalated"
    assert float(right["x-cascadeflow-confidence"]) >= 0.5 > float(wrong["x-cascadeflow-confidence"])
    ready = httpx.get(proxy.url + "/ready").json()["checks"]["verifier"]
    assert ready["active"] == "trained" and ready["artifact"] == "1"


def test_agreement_samples_run_with_the_draft_and_are_paid_as_draft(proxy_factory: ProxyFactory,
                                                                    upstream: BackgroundServer) -> None:
    rule = {**RULE, "verify": {"samples": 3, "temperature": 0.7}}
    proxy = proxy_factory(proxy_settings(upstream.url, cascade_rules=[rule]))
    tag = marker()
    headers = ask(proxy, f"12+30? {tag} [[text:{RIGHT}]]")
    drafts = [item for item in received_with(upstream, tag) if item["body"]["model"] == "claude-haiku-4-5"]
    assert sorted(str(item["body"].get("temperature")) for item in drafts) == ["0.7", "0.7", "None"]
    single = proxy_factory(proxy_settings(upstream.url, cascade_rules=[RULE]))
    alone = ask(single, f"12+30? {marker()} [[text:{RIGHT}]]")
    assert headers["x-cascadeflow-route"] == alone["x-cascadeflow-route"] == "draft"
    assert float(headers["x-cascadeflow-actual-cost"]) == pytest.approx(3 * float(alone["x-cascadeflow-actual-cost"]),
                                                                        rel=0.05)
