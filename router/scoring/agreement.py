"""The agreement judge: was the draft good enough, given the strong model's answer to the same request? (pure)

Checks, most specific first; the first that applies decides, and the label says which one it was:
- `tools`: either answer calls tools. Good when both call the same tools (by name, in order).
- `choice`: both answers name a multiple-choice option ("Answer: B", "the answer is (c)"). Good when equal.
- `numeric`: both answers end on a final number (`#### 42`, `\\boxed{42}`, "the answer is 42", or the last number
  of a maths answer). Good when equal within a relative 1e-6.
- `exact`: the normalised texts are equal (case, spacing and punctuation aside). Good.
- `similarity`: the cosine similarity of the two answers' embeddings reaches the threshold.
When none applies (no similarity given), the judge abstains.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from router.scoring.extract import answer_text, question_text, tool_uses
from router.types import JSONObject

_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"
_FINAL_NUMBER = re.compile(
    rf"(?:####\s*|\\boxed\{{\s*|\banswer(?: is|:)\s*(?:\*\*)?\s*|\bresult(?: is|:)\s*|=\s*)({_NUMBER})", re.IGNORECASE)
_ANY_NUMBER = re.compile(_NUMBER)
_CHOICE = re.compile(r"(?:\banswer(?: is|:)?\s*(?:option\s*)?\(?\**([A-Ha-h])\b\)?|^\s*\(?([A-H])[).:]?\s*$)",
                     re.IGNORECASE | re.MULTILINE)
_MATH = re.compile(r"\b(how (?:many|much|long|old|far)|calculate|compute|solve|total|sum|percent|average)\b",
                   re.IGNORECASE)
_NON_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Verdict:
    """The label of one outcome: was the draft good enough, how it was decided, and the evidence."""

    good: bool
    source: str
    detail: str


def final_choice(text: str) -> str | None:
    """The multiple-choice letter an answer settles on, if it names one."""
    found = [(m.group(1) or m.group(2)).upper() for m in _CHOICE.finditer(text) if m.group(1) or m.group(2)]
    return found[-1] if found else None


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", ""))
    except ValueError:
        return None


def final_number(text: str, *, maths: bool) -> float | None:
    """The final numeric answer: an explicit one, else (for maths questions) the last number of the answer."""
    explicit = _FINAL_NUMBER.findall(text)
    if explicit:
        return _number(explicit[-1])
    if maths:
        tail = text.strip().splitlines()[-1] if text.strip() else ""
        numbers = _ANY_NUMBER.findall(tail) or _ANY_NUMBER.findall(text)
        return _number(numbers[-1]) if numbers else None
    return None


def _normalised(text: str) -> str:
    return _NON_WORD.sub(" ", text.lower()).strip()


def judge_agreement(request: JSONObject, draft: JSONObject, strong: JSONObject, *, similarity: float | None,
                    threshold: float) -> Verdict | None:
    """Label the draft against the strong answer; None when nothing can decide (no similarity given)."""
    draft_tools, strong_tools = tool_uses(draft), tool_uses(strong)
    if draft_tools or strong_tools:
        names = [str(b.get("name")) for b in draft_tools], [str(b.get("name")) for b in strong_tools]
        return Verdict(names[0] == names[1], "agreement:tools", f"draft {names[0]} vs strong {names[1]}")
    draft_text, strong_text = answer_text(draft), answer_text(strong)
    choices = final_choice(draft_text), final_choice(strong_text)
    if choices[0] is not None and choices[1] is not None:
        return Verdict(choices[0] == choices[1], "agreement:choice", f"draft {choices[0]} vs strong {choices[1]}")
    maths = bool(_MATH.search(question_text(request)))
    numbers = final_number(draft_text, maths=maths), final_number(strong_text, maths=maths)
    if numbers[0] is not None and numbers[1] is not None:
        same = math.isclose(numbers[0], numbers[1], rel_tol=1e-6, abs_tol=1e-9)
        return Verdict(same, "agreement:numeric", f"draft {numbers[0]:g} vs strong {numbers[1]:g}")
    if _normalised(draft_text) == _normalised(strong_text):
        return Verdict(True, "agreement:exact", "same text")
    if similarity is None:
        return None
    detail = f"cosine {similarity:.3f} vs threshold {threshold:.2f}"
    return Verdict(similarity >= threshold, "agreement:similarity", detail)


_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
SHORT_ANSWER_WORDS = 6


def final_answer(request: JSONObject, answer: JSONObject) -> str | None:
    """The answer's checkable final answer as a comparable key: the tool calls (names and arguments), a choice
    letter, a final number, yes/no, or a short answer's words; None when it has none (free text)."""
    tools = tool_uses(answer)
    if tools:
        return "tools:" + json.dumps([[b.get("name"), b.get("input")] for b in tools], sort_keys=True, default=str)
    text = answer_text(answer)
    choice = final_choice(text)
    if choice is not None:
        return f"choice:{choice}"
    question = question_text(request)
    number = final_number(text, maths=bool(_MATH.search(question) or _ANY_NUMBER.search(question)))
    if number is not None:
        return f"number:{number:.9g}"
    yes_no = _YES_NO.match(text)
    if yes_no is not None:
        return f"yesno:{yes_no.group(1).lower()}"
    words = _normalised(text).split()
    return f"text:{' '.join(words)}" if 0 < len(words) <= SHORT_ANSWER_WORDS else None


def sample_agreement(request: JSONObject, answer: JSONObject, samples: list[JSONObject]) -> float | None:
    """The share of extra samples whose final answer is the draft's; None when the draft has no final answer
    or no sample came back."""
    key = final_answer(request, answer)
    if key is None or not samples:
        return None
    return sum(final_answer(request, sample) == key for sample in samples) / len(samples)


GRADER_SYSTEM = ("You grade answers. Given a question, a reference answer and a candidate answer, reply with one "
                 "word: YES if the candidate is as correct and as useful as the reference, NO otherwise.")


def grader_prompt(request: JSONObject, draft: JSONObject, strong: JSONObject) -> str:
    """The user turn sent to the grader model."""
    return (f"Question:\n{question_text(request)[:6000]}\n\nReference answer:\n{answer_text(strong)[:6000]}\n\n"
            f"Candidate answer:\n{answer_text(draft)[:6000]}\n\nIs the candidate as good as the reference? "
            "Answer YES or NO.")


def grader_verdict(reply: JSONObject, grader: str) -> Verdict | None:
    """The grader's YES/NO as a verdict; None when it answered neither."""
    words = _normalised(answer_text(reply)).split()
    if not words or words[0] not in ("yes", "no"):
        return None
    return Verdict(words[0] == "yes", f"grader:{grader}", " ".join(words[:12]))
