"""Labelling local models' answers: gold checks, and a whole run against a local OpenAI-compatible upstream."""

from __future__ import annotations

import json
from pathlib import Path

from router.replay.runner import BackgroundServer
from training.local_data import Question, is_right, strong_answers
from training.local_data import main as label_local


def labelling(upstream: BackgroundServer, folder: Path, out: Path, asked: list[tuple[str, str, str]]) -> list[str]:
    """The labeller's arguments for short questions (id, the scripted answer, the gold answer) written to `folder`,
    both models on the scripted upstream."""
    short = folder / "short.jsonl"
    short.write_text("".join(json.dumps({"id": key, "question": f"Say [[text:{text}]]", "answers": [gold]}) + "\n"
                             for key, text, gold in asked))
    return ["--draft-url", upstream.url + "/v1", "--draft-model", "gpt-4o-mini", "--strong-url", upstream.url + "/v1",
            "--strong-model", "gpt-4o", "--out", str(out), "--short", str(short), "--gsm8k", "0", "--quiet"]


def test_answers_are_judged_by_the_gold_answer() -> None:
    sum_question = Question("q", "local/short", "What is 12 + 30?", ("42",), True)
    assert is_right(sum_question, "12 + 30 = 42") and not is_right(sum_question, "12 + 30 = 32")
    capital = Question("c", "local/short", "Capital of France?", ("paris",), False)
    assert is_right(capital, "It is Paris.") and not is_right(capital, "Lyon, I think; not Parisian.")
    gas = Question("g", "local/short", "Gas?", ("carbon dioxide", "co2"), False)
    assert is_right(gas, "Carbon dioxide (CO2).")


def test_a_run_writes_labelled_rows_and_resumes(upstream: BackgroundServer, tmp_path: Path) -> None:
    out = tmp_path / "labelled.jsonl"
    common = labelling(upstream, tmp_path, out, [("s/1", "The answer is 42.", "42"), ("s/2", "It is Lyon.", "paris")])
    assert label_local(common) == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["draft_score"], r["strong_score"], r["draft_good_enough"]) for r in rows] == [(1, 1, 1), (0, 0, 0)], \
        "labelled by the gold answer alone: a wrong draft is wrong even where the strong model is wrong too"
    assert rows[0]["draft_agreement"] == 1.0 and rows[0]["draft_response"] == "The answer is 42."
    assert label_local(common) == 0, "questions already labelled are skipped"


def test_strong_answers_are_reused_only_from_the_same_strong_model(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in [
        {"id": "short/1", "strong_model": "qwen2.5-coder-1.5b", "strong_response": "42"},
        {"id": "short/2", "strong_model": "another-model", "strong_response": "7"}]) + "\n")
    known = strong_answers(data, "qwen2.5-coder-1.5b")
    assert list(known) == ["short/1"] and known["short/1"].text == "42"
    assert strong_answers(None, "qwen2.5-coder-1.5b") == {}


def test_a_top_up_gives_every_row_more_samples_and_keeps_its_labels(upstream: BackgroundServer,
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "labelled.jsonl"
    common = labelling(upstream, tmp_path, out, [("s/1", "The answer is 42.", "42")])
    assert label_local([*common, "--samples", "2"]) == 1
    before = json.loads(out.read_text())
    assert len(before["draft_samples"]) == 1
    assert label_local([*common, "--samples", "4", "--top-up"]) == 1
    after = json.loads(out.read_text())
    assert after["draft_samples"] == ["The answer is 42."] * 3 and after["draft_agreement"] == 1.0
    del after["draft_samples"], before["draft_samples"]
    assert after == before, "the greedy answer, its label and the agreement (every sample agrees) are kept"
    assert label_local([*common, "--samples", "4", "--top-up"]) == 0, "rows with enough samples are left as they are"
    assert not list(tmp_path.glob("*.partial"))
