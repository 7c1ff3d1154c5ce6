"""The no-key demo and the dataset replay source, on a tiny labelled file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from router.demo import format_report, run_demo
from router.replay.answers import Answer, Fault, UpstreamRequest
from router.replay.dataset import DatasetSource, load_rows


def write_rows(path: Path) -> Path:
    rows = []
    for index in range(3):
        rows.append({"source": "routellm/gsm8k", "id": f"gsm8k/{index}", "prompt": f"What is {index} plus {index}?",
                     "draft_response": f"The answer is {2 * index}.", "strong_response": f"{index}+{index}={2 * index}",
                     "draft_score": 1, "strong_score": 1, "draft_good_enough": 1})
        rows.append({"source": "routellm/mt_bench", "id": f"mt/{index}", "prompt": None,
                     "turns": [f"Write a poem number {index}.", f"Now shorten poem {index}."],
                     "draft_response": f"Short poem {index}." if index else "I'm sorry, but I can't help with that.",
                     "strong_response": f"A fine short poem {index}.", "draft_score": 2 if index == 0 else 8,
                     "strong_score": 9, "draft_good_enough": 0 if index == 0 else 1})
    rows.append({"source": "routellm/mmlu", "id": "mmlu/0", "prompt": "Pick A or B", "draft_response": None,
                 "strong_response": None, "draft_score": 0, "strong_score": 1, "draft_good_enough": 0})
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def test_dataset_source_replays_each_models_answer(tmp_path: Path) -> None:
    rows = load_rows(write_rows(tmp_path / "d.jsonl"))
    assert len(rows) == 6, "rows without answer text (MMLU) are skipped"
    source = DatasetSource(rows)
    chat = {"messages": [{"role": "user", "content": "What is  2 plus 2?"}]}
    draft = asyncio.run(source.answer(UpstreamRequest("openai_chat", "mixtral-8x7b-instruct", chat)))
    strong = asyncio.run(source.answer(UpstreamRequest("openai_chat", "gpt-4-1106-preview", chat)))
    assert isinstance(draft, Answer) and draft.text == "The answer is 4."
    assert isinstance(strong, Answer) and strong.text == "2+2=4" and strong.input_tokens > 0
    anthropic_body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Now shorten poem 1."}]}]}
    assert isinstance(asyncio.run(source.answer(UpstreamRequest("anthropic", "gpt-4-1106-preview", anthropic_body))),
                      Answer)
    unknown = asyncio.run(source.answer(UpstreamRequest("openai_chat", "gpt-4-1106-preview",
                                                        {"messages": [{"role": "user", "content": "?"}]})))
    assert isinstance(unknown, Fault) and unknown.status == 404


def test_demo_reports_decisions_costs_and_quality(tmp_path: Path) -> None:
    report = run_demo(limit_per_source=3, threshold=0.9, concurrency=2, data=write_rows(tmp_path / "d.jsonl"),
                      progress=False)
    assert len(report.served) == 6
    refusal = next(item for item in report.served if item.row.id == "mt/0")
    assert not refusal.accepted, "the refusing draft is escalated"
    assert sum(item.accepted for item in report.served) == 5
    assert all(item.strong_only_cost > 0 and item.draft_cost > 0 for item in report.served)
    table = format_report(report)
    assert "gsm8k" in table and "mt_bench" in table and "overall" in table


def test_demo_with_the_learned_router_uses_held_out_prompts_and_counts_skips() -> None:
    report = run_demo(limit_per_source=8, threshold=0.9, concurrency=2, sources=("gsm8k",), progress=False,
                      learned=True)
    from training.dataset import split_of

    assert len(report.served) == 8 and all(split_of(item.row.id) == "test" for item in report.served)
    skipped = [item for item in report.served if item.skipped]
    assert skipped, "the shipped router skips the draft for GSM8K prompts it expects the draft to fail"
    assert all(not item.accepted and item.draft_cost == 0 for item in skipped)
    table = format_report(report)
    assert "with the learned router" in table and "skipped" in table
