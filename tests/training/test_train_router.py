"""Training on its own: splits, thresholds for a quality target, and an artifact the server accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from router.embedding.encoder import MODEL_NAME
from router.policy.classifier import load_artifact
from router.policy.features import FEATURES_VERSION, request_from_prompt
from training.dataset import Labelled, split_of
from training.evaluate import choose_skip_threshold, estimate_outcomes
from training.train_router import main as train_router
from training.train_router import split_rows


def labelled(n: int, *, created_at: bool = False) -> Labelled:
    rng = np.random.default_rng(1)
    labels = (rng.random(n) < 0.5).astype(np.int64)
    return Labelled(
        ids=[f"mtbench/{i // 2}/turn{i % 2 + 1}" for i in range(n)], sources=["s"] * n, categories=[""] * n,
        requests=[request_from_prompt(f"question {i}") for i in range(n)], labels=labels,
        draft_quality=labels.astype(np.float64), strong_quality=np.ones(n), draft_output_chars=np.full(n, 40.0),
        strong_output_chars=np.full(n, 40.0),
        created_at=np.arange(n, dtype=np.float64)[::-1].copy() if created_at else None)


def test_hash_split_keeps_conversations_together_and_time_split_holds_out_the_newest() -> None:
    data = labelled(200)
    splits = split_rows(data, "hash")
    assert all(splits[i] == splits[i + 1] for i in range(0, 200, 2))  # turn 1 and turn 2 of one conversation
    assert split_of("mmlu/x/1") == split_of("mmlu/x/1") and set(splits) == {"train", "validation", "test"}
    by_time = split_rows(labelled(100, created_at=True), "time")  # created_at runs from 99 down to 0
    assert list(by_time[:20]) == ["test"] * 20 and list(by_time[20:30]) == ["validation"] * 10
    assert set(by_time[30:]) == {"train"}


def test_the_skip_threshold_meets_the_quality_target_at_every_higher_threshold() -> None:
    data = labelled(400)
    outcomes = estimate_outcomes(data)
    p_good = np.clip(data.labels * 0.6 + np.random.default_rng(2).random(400) * 0.4, 0, 1)
    for target in (0.8, 0.9, 0.95):
        choice = choose_skip_threshold(p_good, outcomes, target)
        for threshold in np.linspace(choice.skip_threshold, 1.0, 25):
            served = np.where(p_good < threshold, outcomes.strong_quality, outcomes.draft_quality)
            assert served.sum() / outcomes.strong_quality.sum() >= target - 1e-9
    assert choose_skip_threshold(p_good, outcomes, 0.8).skip_threshold < choose_skip_threshold(
        p_good, outcomes, 0.95).skip_threshold


@pytest.mark.slow
def test_training_writes_an_artifact_the_server_accepts(tmp_path: Path) -> None:
    directory = train_router(["--data", str(Path(__file__).resolve().parents[2] / "data/routellm/dev.jsonl"),
                              "--limit", "200", "--out", str(tmp_path), "--version", "t1", "--no-progress",
                              "--cache-dir", str(tmp_path / "cache")])
    artifact = load_artifact(directory, expected_dimension=384, expected_features_version=FEATURES_VERSION,
                             expected_embedding_model=MODEL_NAME)
    metadata = artifact.metadata
    assert (directory / "compiled.npz").is_file(), "served without scikit-learn"
    assert metadata.version == "t1" and metadata.training_data[0]["rows"] == 200
    assert len(metadata.training_data[0]["sha256"]) == 64 and metadata.split["how"] == "hash"
    assert 0.0 <= metadata.thresholds["skip_threshold"] <= 1.0 and metadata.thresholds["quality_target"] == 0.95
    assert set(metadata.scores["test"]) >= {"overall"} and "apgr" in metadata.scores["test"]["overall"]
    assert "Held-out test split" in (directory / "report.md").read_text()
