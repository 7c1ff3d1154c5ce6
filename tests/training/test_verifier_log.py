"""Training the verifier from the outcome log: which records become rows, with what costs and predictions, how
they join labelled data sets as a profile of their own, and a clear refusal when there are too few."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import pytest

from router.scoring.evidence import VERIFIER_FEATURE_NAMES, VERIFIER_FEATURES_VERSION, verifier_features
from router.scoring.types import DraftEvidence
from router.storage import open_outcome_log
from router.storage.records import OutcomeRecord
from tests.storage.conftest import settings_for
from training.policy_data import LOGGED_DRAFT_COST, LOGGED_STRONG_COST, costs, pair_prices
from training.train_verifier import main as train_verifier
from training.verifier_log import LOGGED_FEATURES, load_log_rows, logged_predictions, public_url

RIGHT = "Adding them gives 12 + 30 = 42. The answer is 42."
WRONG = "I'm not sure, it might be 32 or possibly something else; I think it depends."


def row_for(text: str) -> tuple[float, ...]:
    return verifier_features(DraftEvidence({"messages": [{"role": "user", "content": "12 + 30?"}]},
                                           {"type": "message", "content": [{"type": "text", "text": text}],
                                            "stop_reason": "end_turn"}))


def record(n: int, *, good: bool, row: tuple[float, ...] | None = None, version: str | None = VERIFIER_FEATURES_VERSION,
           accepted: bool = True, cost: float | None = 0.001, strong_only: float | None = 0.01,
           prediction: float | None = None, router: str | None = None) -> OutcomeRecord:
    return OutcomeRecord(
        request_id=f"r{n}", created_at=time.time(), tenant="t", endpoint="messages", requested_model="claude-opus-4-8",
        route="draft" if accepted else "escalated", draft_model="claude-haiku-4-5", strong_model="claude-opus-4-8",
        accepted=accepted, prompt_sha256=f"{n:064x}", prediction=prediction, artifact_version=router,
        verifier_features=row, verifier_features_version=version if row is not None else None, cost_usd=cost,
        strong_only_cost_usd=strong_only, input_tokens=100, output_tokens=80, draft_input_tokens=100,
        draft_output_tokens=50)


def write_log(url: str, tmp_path: Path, records: list[tuple[OutcomeRecord, bool | None]]) -> None:
    """The records, each labelled (True/False) or not (None), in a log at `url`."""
    async def write() -> None:
        log = open_outcome_log(settings_for(url, tmp_path))
        await log.start()
        try:
            for item, label in records:
                log.submit(item)
                if label is not None:
                    log.submit_label(item.request_id, label, "agreement:exact" if label else "agreement:similarity")
            await log.flush()
        finally:
            await log.stop()

    asyncio.run(write())


def test_labelled_rows_with_a_current_row_are_kept_with_real_costs_and_the_rest_counted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/outcomes.sqlite"
    right, wrong = row_for(RIGHT), row_for(WRONG)
    write_log(url, tmp_path, [
        (record(1, good=True, row=right, prediction=0.8, router="router-a"), True),
        (record(2, good=False, row=wrong, accepted=False, cost=0.012), False),
        (record(3, good=True, row=right, cost=0.0, strong_only=0.0), True),  # models without a price
        (record(4, good=True), True),  # the router skipped the draft: no row
        (record(5, good=True, row=right, version="0"), True),
        (record(6, good=True, row=(1.0, 2.0, 3.0)), False),
        (record(7, good=True, row=right), None),  # never labelled
    ])
    loaded = load_log_rows(url)
    assert [row["id"] for row in loaded.rows] == [f"{n:064x}" for n in (1, 2, 3)]
    assert {row["source"] for row in loaded.rows} == {"log/claude-haiku-4-5"}
    assert [row["draft_good_enough"] for row in loaded.rows] == [1, 0, 1]
    assert loaded.rows[0][LOGGED_FEATURES] == right and loaded.rows[1][LOGGED_FEATURES] == wrong
    assert loaded.origin == {"path": url, "kind": "outcome_log", "sha256": None, "rows": 3,
                             "label_sources": ["agreement:exact", "agreement:similarity"],
                             "left_out": {"a row of 3 features": 1, "features version 0": 1,
                                          "no verifier feature row": 1}}
    draft_cost, strong_cost = costs(loaded.rows)
    (d_in, d_out), (s_in, s_out) = pair_prices()
    assert draft_cost[:2] == pytest.approx([0.001, 0.002]) and strong_cost[:2] == pytest.approx([0.01, 0.01])
    assert (draft_cost[2], strong_cost[2]) == pytest.approx((100 * d_in + 50 * d_out, 100 * s_in + 50 * s_out))
    assert loaded.rows[0][LOGGED_DRAFT_COST] == pytest.approx(0.001) and LOGGED_STRONG_COST in loaded.rows[2]
    predictions = logged_predictions(loaded.rows, "router-a")
    assert predictions[0] == 0.8 and np.isnan(predictions[1:]).all(), "only the router the pair is chosen for"
    assert math.isnan(logged_predictions(loaded.rows, "router-b")[0])


def test_the_logs_url_is_recorded_without_credentials() -> None:
    assert public_url("postgresql://cf:s3cret@db.internal:5432/cascadeflow?sslmode=require&password=x") == \
        "postgresql://db.internal:5432/cascadeflow"
    assert public_url("sqlite:////var/lib/cf/outcomes.sqlite") == "sqlite:////var/lib/cf/outcomes.sqlite"


def test_too_few_labelled_prompts_are_refused_saying_why(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/outcomes.sqlite"
    write_log(url, tmp_path, [(record(n, good=n % 2 == 0, row=row_for(RIGHT if n % 2 == 0 else WRONG)), n % 2 == 0)
                              for n in range(8)])
    with pytest.raises(SystemExit, match="too few labelled prompts to train on"):
        train_verifier(["--outcomes", url, "--no-router", "--out", str(tmp_path / "models"), "--no-progress"])
    with pytest.raises(SystemExit):  # and no source at all is a usage error
        train_verifier(["--no-router", "--out", str(tmp_path / "models"), "--no-progress"])


@pytest.mark.slow
def test_a_log_and_a_data_set_train_one_artifact_with_a_profile_each(tmp_path: Path) -> None:
    rng = random.Random(0)
    data = tmp_path / "data.jsonl"
    with data.open("w") as handle:
        for n in range(160):
            good = rng.random() < 0.6
            row = {"id": f"synthetic/{n}", "source": "synthetic", "prompt": f"Q{n}: 12+30?",
                   "draft_response": RIGHT if good else WRONG, "draft_good_enough": int(good)}
            handle.write(json.dumps(row) + "\n")
    url = f"sqlite:///{tmp_path}/outcomes.sqlite"
    logged = []
    for n in range(80):
        good = rng.random() < 0.6
        logged.append((record(n, good=good, row=row_for(RIGHT if good else WRONG), accepted=good,
                              cost=0.001 if good else 0.011), good))
    write_log(url, tmp_path, logged)
    directory = train_verifier(["--data", str(data), "--outcomes", url, "--no-router", "--out", str(tmp_path / "m"),
                                "--version", "mixed", "--no-progress"])
    metadata = json.loads((directory / "metadata.json").read_text())
    assert [item["path"] for item in metadata["training_data"]] == [str(data), url]
    assert metadata["training_data"][1]["rows"] == 80
    assert set(metadata["thresholds"]["profiles"]) == {"synthetic", "log"}
    assert metadata["thresholds"]["default_profile"] == "synthetic", "the profile with the most rows"
    test_scores = metadata["scores"]["test"]
    assert math.isnan(test_scores["log/claude-haiku-4-5"]["hand_auc"]), "no text, no hand-weighted score"
    assert test_scores["log/claude-haiku-4-5"]["verifier_auc"] > 0.9 and test_scores["synthetic"]["hand_auc"] > 0.5
    report = (directory / "report.md").read_text()
    assert f"Outcome log {url}: 80 rows" in report and "| log/claude-haiku-4-5 |" in report and "| – |" in report
    assert len(VERIFIER_FEATURE_NAMES) == len(metadata["feature_names"])


@pytest.mark.slow
def test_the_skip_threshold_is_chosen_on_what_the_given_router_predicted_at_serving(tmp_path: Path) -> None:
    from router.policy.classifier import read_metadata
    from training.train_verifier import shipped_router

    router = shipped_router()
    if router is None:
        pytest.skip("no shipped router artifact")
    version = read_metadata(router).version
    for served_by in (version, "another-router"):
        url = f"sqlite:///{tmp_path}/{served_by}.sqlite"
        rng = random.Random(1)
        logged = []
        for n in range(60):
            good = rng.random() < 0.6
            logged.append((record(n, good=good, row=row_for(RIGHT if good else WRONG), accepted=good,
                                  prediction=0.9 if good else 0.3, router=served_by), good))
        write_log(url, tmp_path, logged)
        directory = train_verifier(["--outcomes", url, "--router", str(router), "--out", str(tmp_path / served_by),
                                    "--no-progress"])
        thresholds = json.loads((directory / "metadata.json").read_text())["thresholds"]
        if served_by == version:
            assert thresholds["router_version"] == version and "skip_threshold" in thresholds["profiles"]["log"]
        else:  # nothing this router predicted: no pair with it, so the router keeps its own skip threshold
            assert "router_version" not in thresholds and "skip_threshold" not in thresholds["profiles"]["log"]
