"""Label real local models' answers for the verifier: draft and strong answers, log-probs, agreement, gold labels.

Asks a draft and a strong model (OpenAI-compatible servers, e.g. `cascadeflow local-models serve`) the short
questions in `data/local/short_questions.jsonl` and GSM8K problems from `data/gsm8k/train.jsonl`: the draft
greedily with token log-probs, then `--samples - 1` more times at `--temperature` (agreement evidence), the
strong model greedily. Each answer is labelled by the gold answer (the final number, or an accepted answer),
and one JSON line per question is appended in the verifier's training format (`draft_response`,
`draft_logprobs`, `draft_agreement`, `draft_good_enough`: the draft gives the gold answer; whether the strong
model is right too is `strong_score`). A question already in the output is skipped, so an interrupted run resumes.
With `--top-up`, no question is asked anew: the rows already written get more draft samples (`--samples`).

    python -m training.local_data --draft-url http://127.0.0.1:8601/v1 --draft-model qwen2.5-coder-0.5b \\
        --strong-url http://127.0.0.1:8602/v1 --strong-model qwen2.5-coder-1.5b --gsm8k 200 --out local.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from router.assets import assets_root
from router.scoring.agreement import final_number, sample_agreement

GSM8K_INSTRUCTION = "Solve the problem. Show brief working, then end with 'The answer is <number>.'\n\n"


@dataclass(frozen=True)
class Question:
    """A question with its gold answers (lower case) and whether the gold is a number."""

    id: str
    source: str
    text: str
    answers: tuple[str, ...]
    numeric: bool


@dataclass(frozen=True)
class Reply:
    """One model answer: its text, token log-probs and stop reason."""

    text: str
    logprobs: list[float]
    finish_reason: str


def questions(short: Path, gsm8k: Path, gsm8k_limit: int) -> Iterator[Question]:
    """The short questions, then the first `gsm8k_limit` GSM8K problems."""
    for line in short.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        answers = tuple(str(a).lower() for a in row["answers"])
        yield Question(row["id"], "local/short", row["question"], answers, all(_is_number(a) for a in answers))
    with gsm8k.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if index >= gsm8k_limit:
                return
            row = json.loads(line)
            gold = row["answer"].rsplit("####", 1)[-1].strip().replace(",", "")
            yield Question(f"gsm8k-train/{index}", "local/gsm8k", GSM8K_INSTRUCTION + row["question"], (gold,), True)


def _is_number(text: str) -> bool:
    return re.fullmatch(r"-?\d+(?:\.\d+)?", text) is not None


def is_right(question: Question, text: str) -> bool:
    """Whether an answer gives the gold answer: its final number, or an accepted answer among its words."""
    if question.numeric:
        number = final_number(text, maths=True)
        return number is not None and any(abs(number - float(a)) < 1e-6 for a in question.answers)
    words = " ".join(re.findall(r"[a-z0-9]+", text.lower()))
    return any(re.search(rf"\b{re.escape(answer)}\b", words) for answer in question.answers)


def ask(client: httpx.Client, url: str, model: str, text: str, *, temperature: float, logprobs: bool,
        max_tokens: int) -> Reply:
    """One chat completion (not streamed)."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}],
                            "temperature": temperature, "max_tokens": max_tokens}
    if logprobs:
        body["logprobs"] = True
    response = client.post(f"{url.rstrip('/')}/chat/completions", json=body)
    response.raise_for_status()
    choice = response.json()["choices"][0]
    content = ((choice.get("logprobs") or {}).get("content")) or []
    values = [float(item["logprob"]) for item in content if isinstance(item, dict) and "logprob" in item]
    return Reply(str(choice["message"].get("content") or ""), values, str(choice.get("finish_reason") or "stop"))


def hub_answer(text: str) -> dict[str, Any]:
    """An answer text as a hub message (for the agreement check)."""
    return {"type": "message", "content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}


def draft_samples(args: argparse.Namespace, client: httpx.Client, text: str, count: int) -> list[str]:
    """`count` more draft answers to `text` at `--temperature` (the agreement evidence)."""
    return [ask(client, args.draft_url, args.draft_model, text, temperature=args.temperature, logprobs=False,
                max_tokens=args.max_tokens).text for _ in range(count)]


def agreement_of(text: str, answer: str, samples: list[str]) -> float | None:
    """The share of the samples whose final answer is the draft's (None when it has none), as the proxy measures it."""
    request = {"messages": [{"role": "user", "content": text}]}
    return sample_agreement(request, hub_answer(answer), [hub_answer(sample) for sample in samples])


def label(args: argparse.Namespace, client: httpx.Client, question: Question,
          known_strong: dict[str, Reply] | None = None) -> dict[str, Any]:
    """One labelled row: the draft (with samples) and the strong model on one question (its answer from
    `known_strong` when there)."""
    draft = ask(client, args.draft_url, args.draft_model, question.text, temperature=0.0, logprobs=True,
                max_tokens=args.max_tokens)
    samples = draft_samples(args, client, question.text, args.samples - 1)
    strong = (known_strong or {}).get(question.id) or ask(
        client, args.strong_url, args.strong_model, question.text, temperature=0.0, logprobs=False,
        max_tokens=args.max_tokens)
    agreement = agreement_of(question.text, draft.text, samples)
    draft_right, strong_right = is_right(question, draft.text), is_right(question, strong.text)
    source = f"{args.profile}/{question.source.rsplit('/', 1)[-1]}"
    return {"id": question.id, "source": source, "category": question.source.rsplit("/", 1)[-1],
            "prompt": question.text, "gold": list(question.answers), "draft_model": args.draft_model,
            "strong_model": args.strong_model, "draft_response": draft.text, "strong_response": strong.text,
            "draft_stop_reason": "max_tokens" if draft.finish_reason == "length" else "end_turn",
            "draft_logprobs": draft.logprobs, "draft_samples": samples,
            "draft_agreement": agreement, "label_kind": "correct_0_1",
            "draft_score": int(draft_right), "strong_score": int(strong_right),
            "draft_good_enough": int(draft_right)}


def strong_answers(path: Path | None, strong_model: str) -> dict[str, Reply]:
    """The strong model's answers already labelled in another data set (same questions, same strong model), so
    a new draft model is labelled without asking the strong model again."""
    if path is None:
        return {}
    answers = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("strong_model") == strong_model and isinstance(row.get("strong_response"), str):
            answers[str(row["id"])] = Reply(row["strong_response"], [], "stop")
    return answers


def run(args: argparse.Namespace) -> int:
    """Label every question not yet in the output; returns how many were added."""
    known_strong = strong_answers(args.strong_from, args.strong_model)
    done = set()
    if args.out.exists():
        done = {json.loads(line)["id"] for line in args.out.read_text(encoding="utf-8").splitlines() if line}
    added = 0
    with httpx.Client(timeout=args.timeout_s) as client, args.out.open("a", encoding="utf-8") as out:
        for question in questions(args.short, args.gsm8k_file, args.gsm8k):
            if question.id in done:
                continue
            row = label(args, client, question, known_strong)
            out.write(json.dumps(row) + "\n")
            out.flush()
            added += 1
            if not args.quiet:
                print(f"{question.id}: draft {'right' if row['draft_score'] else 'wrong'}, strong "
                      f"{'right' if row['strong_score'] else 'wrong'}, agreement {row['draft_agreement']}", flush=True)
    return added


def top_up(args: argparse.Namespace) -> int:
    """Give every row of the output `--samples - 1` draft samples: the missing ones are asked of the draft, and
    the agreement is computed again over all of them (the greedy answers and the labels are kept). The file is
    replaced once every row is done; returns how many rows gained samples."""
    rows = [json.loads(line) for line in args.out.read_text(encoding="utf-8").splitlines() if line.strip()]
    topped = 0
    with httpx.Client(timeout=args.timeout_s) as client:
        for row in rows:
            samples = list(row.get("draft_samples") or [])
            missing = args.samples - 1 - len(samples)
            if missing <= 0 or row.get("draft_model") != args.draft_model:
                continue
            samples += draft_samples(args, client, row["prompt"], missing)
            row["draft_samples"] = samples
            row["draft_agreement"] = agreement_of(row["prompt"], row["draft_response"], samples)
            topped += 1
            if not args.quiet:
                print(f"{row['id']}: {len(samples)} samples, agreement {row['draft_agreement']}", flush=True)
    written = args.out.with_name(args.out.name + ".partial")
    written.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    written.replace(args.out)
    return topped


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m training.local_data", description=__doc__.splitlines()[0])
    parser.add_argument("--draft-url", required=True)
    parser.add_argument("--draft-model", required=True)
    parser.add_argument("--strong-url", default="", help="the strong model's server (needed for questions that "
                        "--strong-from does not answer)")
    parser.add_argument("--strong-model", required=True)
    parser.add_argument("--strong-from", type=Path, help="a labelled data set whose strong answers (same strong "
                        "model) are reused rather than asked again")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--profile", default="local", help="the verifier policy profile the rows belong to (one per "
                        "model pair; the part of `source` before the '/')")
    parser.add_argument("--gsm8k", type=int, default=100, help="how many GSM8K problems (from the first)")
    parser.add_argument("--short", type=Path, default=assets_root() / "data" / "local" / "short_questions.jsonl")
    parser.add_argument("--gsm8k-file", type=Path, default=assets_root() / "data" / "gsm8k" / "train.jsonl")
    parser.add_argument("--samples", type=int, default=3, help="draft answers per question (1 greedy + samples)")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--top-up", action="store_true", help="ask no new questions: give the rows already in "
                        "--out (of --draft-model) --samples - 1 draft samples each and recompute their agreement")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    return top_up(args) if args.top_up else run(args)


if __name__ == "__main__":
    main()
