"""`cascadeflow eval` replays the policy of a config on labelled data and prints the routing metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from router.cli import main as cascadeflow
from training.dataset import load_jsonl
from training.evaluate import apgr, calls_to_recover, estimate_outcomes, oracle_curve, random_curve, router_curve

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_of_the_reference_policies() -> None:
    data = load_jsonl(ROOT / "data/routellm/dev.jsonl", limit=400)
    outcomes = estimate_outcomes(data)
    assert apgr(random_curve(outcomes), outcomes) == 0.5
    assert calls_to_recover(random_curve(outcomes), outcomes, 0.5) == 0.5
    oracle = oracle_curve(outcomes)
    assert apgr(oracle, outcomes) > 1.0  # the oracle passes the strong model: it keeps the draft where it wins
    assert calls_to_recover(oracle, outcomes, 0.8) < 0.2
    worst = router_curve(outcomes.strong_quality - outcomes.draft_quality, outcomes)  # escalates the best drafts
    assert apgr(worst, outcomes) < 0.5


@pytest.mark.slow
def test_the_eval_command_prints_every_policy_per_source(tmp_path: Path, capsys: object) -> None:
    rows = [json.loads(line) for line in (ROOT / "data/routellm/dev.jsonl").read_text().splitlines()]
    picked = [row for source in ("routellm/mmlu", "routellm/gsm8k", "routellm/mt_bench")
              for row in [r for r in rows if r["source"] == source][:30]]
    data_file = tmp_path / "sample.jsonl"
    data_file.write_text("".join(json.dumps(row) + "\n" for row in picked))
    config = tmp_path / "config.yaml"
    config.write_text("cascade_rules:\n  - {request_model: gpt-4-1106-preview, draft_model: mixtral-8x7b,"
                      " verifier_model: gpt-4-1106-preview, quality_threshold: 0.6}\n"
                      "learned_router: {skip_threshold: 0.5}\n")
    assert cascadeflow(["eval", "--data", str(data_file), "--config", str(config), "--split", "all",
                        "--models", str(ROOT / "models"), "--cache-dir", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out  # type: ignore[attr-defined]
    for group in ("overall: n=90", "gsm8k: n=30", "mmlu: n=30", "mt_bench: n=30"):
        assert group in printed
    for policy in ("| router |", "| random |", "| oracle |", "| always-draft |", "| always-strong |"):
        assert printed.count(policy) == 4
    assert "skip below router P(good) 0.5000, then serve the draft from verifier" in printed, \
        "the config's skip threshold, and the shipped verifier's accept threshold"
    assert cascadeflow(["eval", "--data", str(data_file), "--config", str(config), "--split", "all", "--no-verifier",
                        "--models", str(ROOT / "models"), "--cache-dir", str(tmp_path), "--no-progress"]) == 0
    assert "skip below router P(good) 0.5000, then serve the draft from hand score 0.600" in \
        capsys.readouterr().out  # type: ignore[attr-defined]
    header = next(line for line in printed.splitlines() if line.startswith("| policy"))
    assert "APGR" in header and "CPT(50%)" in header and "drafts accepted @policy" in header
    assert not np.isnan(float(next(line for line in printed.splitlines() if line.startswith("| random |"))
                              .split("|")[3]))
