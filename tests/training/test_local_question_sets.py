"""The local question sets: the held-out sets share no question with the training questions or each other, and
every question has accepted answers in lower case."""

from __future__ import annotations

import json

from router.assets import assets_root

LOCAL = assets_root() / "data" / "local"
SETS = ("short_questions.jsonl", "heldout_questions.jsonl", "heldout_questions_2.jsonl", "heldout_questions_3.jsonl")


def questions(name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (LOCAL / name).read_text().splitlines() if line.strip()]


def normalised(text: object) -> str:
    return " ".join(str(text).lower().split())


def test_held_out_questions_were_never_training_questions() -> None:
    seen: dict[str, str] = {}
    for name in SETS:
        for row in questions(name):
            text = normalised(row["question"])
            assert text not in seen, f"{row['id']} of {name} repeats a question of {seen.get(text)}"
            seen[text] = name


def test_every_question_has_an_id_and_lower_case_answers() -> None:
    for name in SETS:
        rows = questions(name)
        assert len({row["id"] for row in rows}) == len(rows), f"ids repeat in {name}"
        for row in rows:
            answers = row["answers"]
            assert isinstance(answers, list) and answers, row["id"]
            assert all(isinstance(a, str) and a == a.lower() and a.strip() for a in answers), row["id"]


def test_the_labelled_rows_ask_only_training_questions() -> None:
    held_out = {normalised(row["question"]) for name in SETS[1:] for row in questions(name)}
    for labelled in sorted(LOCAL.glob("*-1.5b.jsonl")):
        for line in labelled.read_text().splitlines():
            prompt = normalised(json.loads(line)["prompt"])
            assert prompt not in held_out, f"{labelled.name} trains on a held-out question: {prompt}"
