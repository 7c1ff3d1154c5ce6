"""One pure function per measurement of a draft: each returns a Component, or None when it does not apply.

Every measure has the signature ``(evidence, weight) -> Component | None``. Values are in [0, 1] with 1 =
confident; a ``fatal`` component (truncation, empty output, invalid JSON, invalid tool call) forces escalation.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable

from router.scoring.arithmetic import check_arithmetic
from router.scoring.extract import (
    answer_text,
    any_tool_uses,
    output_schema,
    question_text,
    request_tools,
    stop_reason,
    tool_choice,
    tool_uses,
    words,
    written_tool_calls,
)
from router.scoring.schemas import compile_schema, schema_errors, validation_errors
from router.scoring.types import Component, DraftEvidence, clamp01

Measure = Callable[[DraftEvidence, float], Component | None]

TRUNCATION_STOP_REASONS: tuple[str, ...] = ("max_tokens", "model_context_window_exceeded")

REFUSAL_PHRASES: tuple[str, ...] = (
    r"I can(?:'t|not| not) (?:help|assist)(?! but)",
    r"I can(?:'t|not| not) (?:provide|fulfil+|comply|answer|do that|create|write|generate|share)",
    r"I(?:'m| am) (?:not able|unable) to",
    r"I(?:'m| am) not (?:allowed|permitted) to",
    r"I won't be able to",
    r"I (?:must|have to) (?:decline|refuse)",
    r"As an AI\b",
    r"as an? (?:AI )?(?:language model|AI model|AI assistant)",
    r"I apologi[sz]e,? but",
    r"I'm sorry,? but I",
    r"(?:against|violates?) my (?:guidelines|programming|policies)",
    r"I do(?:n't| not) have (?:access|the ability) to",
)
HEDGING_PHRASES: tuple[str, ...] = (
    r"I(?:'m| am) not (?:entirely |completely |totally |100% )?(?:sure|certain|confident)",
    r"I(?:'m| am) unsure",
    r"I do(?:n't| not) know",
    r"I think",
    r"I believe",
    r"I guess",
    r"might be",
    r"could be",
    r"possibly",
    r"perhaps",
    r"probably",
    r"it depends",
    r"hard to (?:say|tell)",
    r"difficult to (?:say|determine|tell)",
    r"not (?:entirely )?clear",
    r"I may be (?:wrong|mistaken)",
    r"if I (?:remember|recall) correctly",
    r"to the best of my knowledge",
    r"double[- ]check",
)
NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "twenty", "thirty", "forty", "fifty", "hundred", "thousand", "million", "half", "none",
)  # fmt: skip

REFUSAL_RATE = 1.2
"""Refusal confidence is exp(-rate * refusal phrases per 100 words): one phrase in a short answer → ~0.1."""
HEDGING_RATE = 0.25
"""Hedging confidence is exp(-rate * hedges per 100 words): one hedge in a short answer → ~0.6."""
MIN_WORDS_FOR_DENSITY = 50
"""Phrase densities are taken over at least this many words, so one phrase in a tiny answer is not infinite."""
OPENING_CHARS = 120
REFUSAL_ANSWER_WORDS = 60
"""An answer of at most this many words that opens by refusing is a refusal (a hard fail), not a caveat."""
"""A refusal within this many characters of the start counts double (the answer opens by refusing)."""
NGRAM = 4
REPEAT_FREE_SHARE = 0.15
"""Share of repeated word 4-grams that ordinary prose, lists and code reach without looping."""
REPEAT_LOOP_SHARE = 0.6
"""Share of repeated word 4-grams at which the answer is taken as a degenerate loop (confidence 0)."""
MIN_LINE_CHARS = 10
LENGTH_MIN_QUESTION_WORDS = 20
LENGTH_RATIO = 0.2
"""An answer shorter than this share of the question's words is suspicious (mildly: the value stays ≥ 0.5)."""
LOW_TOKEN_LOGPROB = math.log(0.1)
LOGPROB_FLOOR = -30.0
MATH_NO_NUMBER_VALUE = 0.3
MATH_NO_WORKING_VALUE = 0.7
"""A maths answer with a number but no calculation written out (``a op b = c``) is mildly suspicious."""
ARITHMETIC_ERROR_PENALTY = 0.5
"""Each wrong calculation multiplies the arithmetic confidence by this."""

_FLAGS = re.IGNORECASE
_REFUSAL = re.compile("|".join(rf"(?:\b{p})" for p in REFUSAL_PHRASES), _FLAGS)
_HEDGING = re.compile("|".join(rf"(?:\b{p}\b)" for p in HEDGING_PHRASES), _FLAGS)
_ALNUM = re.compile(r"\w")
_MATH_QUESTION = re.compile(
    r"\b(?:how (?:many|much|long|far|old|often|fast|tall|high|heavy|big)|calculate|compute|solve|"
    r"(?:what|find)(?: is| was| are| were| will| would|'s)?(?: be)? (?:the |their |his |her |its )?"
    r"(?:total|sum|product|value|difference|average|cost|price|number|amount|percentage|profit|distance|"
    r"area|age|weight|salary|speed|depth|height|length))\b",
    _FLAGS,
)
_NUMBER = re.compile(r"\d|\b(?:" + "|".join(NUMBER_WORDS) + r")\b", _FLAGS)


def _plain(evidence: DraftEvidence) -> str:
    """The answer text with typographic apostrophes made plain."""
    return answer_text(evidence.answer).replace("’", "'")


def _density(hits: int, word_count: int) -> float:
    """Phrase hits per 100 words (over at least MIN_WORDS_FOR_DENSITY words)."""
    return 100.0 * hits / max(word_count, MIN_WORDS_FOR_DENSITY)


def _quote(matches: list[str]) -> str:
    """The first distinct matched phrases, quoted."""
    distinct = list(dict.fromkeys(m.strip().lower() for m in matches))
    return ", ".join(repr(m) for m in distinct[:3])


def truncation(evidence: DraftEvidence, weight: float = 1.0) -> Component | None:
    """Hard fail when the draft stopped on its token limit."""
    reason = stop_reason(evidence.answer)
    if reason is None:
        return None
    if reason in TRUNCATION_STOP_REASONS:
        return Component("truncation", 0.0, weight, f"stop_reason={reason}: the answer is cut off", fatal=True)
    return Component("truncation", 1.0, weight, f"stop_reason={reason}")


def empty(evidence: DraftEvidence, weight: float = 1.0) -> Component:
    """Hard fail when the draft has neither visible text nor a tool call."""
    calls = len(any_tool_uses(evidence.answer))
    text = answer_text(evidence.answer)
    if calls or _ALNUM.search(text):
        return Component("empty", 1.0, weight, f"{len(words(text))} words, {calls} tool calls")
    return Component("empty", 0.0, weight, "no text and no tool call", fatal=True)


def refusal(evidence: DraftEvidence, weight: float = 1.0) -> Component | None:
    """Refusal phrases lower confidence strongly, by their density (an opening refusal counts double). A draft
    that is a refusal (the provider's stop reason says so, or a short answer opens by refusing) is a hard
    fail: the strong model may well answer, so such a draft is never served."""
    if stop_reason(evidence.answer) == "refusal":
        return Component("refusal", 0.0, weight, "stop_reason=refusal", fatal=True)
    text = _plain(evidence)
    if not text.strip():
        return None
    found = list(_REFUSAL.finditer(text))
    if not found:
        return Component("refusal", 1.0, weight, "no refusal phrase")
    hits = len(found) + (1 if found[0].start() < OPENING_CHARS else 0)
    density = _density(hits, len(words(text)))
    detail = f"{len(found)} refusal phrases ({density:.2f}/100 words): {_quote([m.group(0) for m in found])}"
    refuses = found[0].start() < OPENING_CHARS and len(words(text)) <= REFUSAL_ANSWER_WORDS
    return Component("refusal", clamp01(math.exp(-REFUSAL_RATE * density)), weight,
                     ("the answer is a refusal: " if refuses else "") + detail, fatal=refuses)


def hedging(evidence: DraftEvidence, weight: float = 1.0) -> Component | None:
    """Hedging phrases lower confidence mildly, by their density."""
    text = _plain(evidence)
    if not text.strip():
        return None
    found = [m.group(0) for m in _HEDGING.finditer(text)]
    if not found:
        return Component("hedging", 1.0, weight, "no hedging phrase")
    density = _density(len(found), len(words(text)))
    detail = f"{len(found)} hedging phrases ({density:.2f}/100 words): {_quote(found)}"
    return Component("hedging", clamp01(math.exp(-HEDGING_RATE * density)), weight, detail)


def _repeated_ngram_share(tokens: list[str]) -> float:
    """Share of word n-grams that repeat an earlier one."""
    grams = [tuple(tokens[i : i + NGRAM]) for i in range(len(tokens) - NGRAM + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(Counter(grams)) / len(grams)


def _longest_line_run(text: str) -> int:
    """The longest run of identical consecutive non-trivial lines."""
    best = run = 0
    previous: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < MIN_LINE_CHARS:
            continue
        run = run + 1 if line == previous else 1
        previous = line
        best = max(best, run)
    return best


def repetition(evidence: DraftEvidence, weight: float = 1.0) -> Component | None:
    """Degenerate loops: the share of repeated word 4-grams and the longest run of repeated lines."""
    text = answer_text(evidence.answer)
    tokens = words(text)
    if not tokens:
        return None
    share = _repeated_ngram_share(tokens)
    run = _longest_line_run(text)
    by_ngrams = 1.0 - clamp01((share - REPEAT_FREE_SHARE) / (REPEAT_LOOP_SHARE - REPEAT_FREE_SHARE))
    by_lines = 1.0 - clamp01((run - 2) / 6)
    detail = f"{share:.0%} repeated {NGRAM}-grams, longest repeated line run {run}"
    return Component("repetition", min(by_ngrams, by_lines), weight, detail)


def length(evidence: DraftEvidence, weight: float = 1.0) -> Component | None:
    """A very short text answer to a long question is mildly suspicious (value stays in [0.5, 1])."""
    question = words(question_text(evidence.request))
    if len(question) < LENGTH_MIN_QUESTION_WORDS or tool_uses(evidence.answer):
        return None
    answer = words(answer_text(evidence.answer))
    expected = LENGTH_RATIO * len(question)
    value = 0.5 + 0.5 * min(1.0, len(answer) / expected)
    return Component("length", value, weight, f"{len(answer)} answer words for {len(question)} question words")


def logprobs(evidence: DraftEvidence, weight: float = 1.0) -> Component | None:
    """Token confidence: the mean of exp(mean logprob) and the share of tokens that were not unlikely."""
    values = [min(0.0, max(lp, LOGPROB_FLOOR)) for lp in evidence.logprobs or () if not math.isnan(lp)]
    if not values:
        return None
    mean = sum(values) / len(values)
    low = sum(1 for lp in values if lp < LOW_TOKEN_LOGPROB) / len(values)
    value = 0.5 * math.exp(mean) + 0.5 * clamp01(1.0 - 2.0 * low)
    detail = f"{len(values)} tokens, mean logprob {mean:.3f} (p={math.exp(mean):.2f}), {low:.0%} below p=0.1"
    return Component("logprobs", clamp01(value), weight, detail)


def structured_output(evidence: DraftEvidence, weight: float = 1.0) -> Component | None:
    """When the request set a JSON schema output format, the text must be JSON that validates against it."""
    asked, schema = output_schema(evidence.request)
    if not asked:
        return None
    validator = compile_schema(schema)
    if validator is None:
        return None
    if tool_uses(evidence.answer) and stop_reason(evidence.answer) == "tool_use":
        return None
    text = answer_text(evidence.answer).strip()
    try:
        data = json.loads(text)
    except ValueError as exc:
        return Component("structured_output", 0.0, weight, f"the text is not JSON: {exc}", fatal=True)
    errors = validation_errors(validator, data)
    if errors is None:
        return None
    if errors:
        return Component("structured_output", 0.0, weight, "schema: " + "; ".join(errors), fatal=True)
    return Component("structured_output", 1.0, weight, "JSON valid against the schema")


def tool_calls(evidence: DraftEvidence, weight: float = 1.0) -> Component | None:
    """Each tool call must name a request tool and its input must validate against that tool's input_schema; a
    call written as text (JSON naming a request tool) is not made, so it fails too."""
    calls, tools = tool_uses(evidence.answer), request_tools(evidence.request)
    if not calls:
        written = written_tool_calls(evidence.answer, tools) if tools else []
        if written:
            calls_of = f"{len(written)} calls" if len(written) > 1 else "a call"
            return Component("tool_calls", 0.0, weight,
                             f"{calls_of} of {', '.join(dict.fromkeys(written))} written as text, not made", fatal=True)
        return None
    problems: list[str] = []
    for call in calls:
        name = call.get("name")
        tool = tools.get(name) if isinstance(name, str) else None
        args = call.get("input")
        if tool is None:
            problems.append(f"unknown tool {name!r}")
        elif not isinstance(call.get("id"), str) or not call["id"]:
            problems.append(f"{name}: no id")
        elif not isinstance(args, dict):
            problems.append(f"{name}: input is not an object")
        elif "input_schema" in tool:
            errors = schema_errors(args, tool["input_schema"])
            if errors:
                problems.append(f"{name}: " + "; ".join(errors))
    if problems:
        return Component("tool_calls", 0.0, weight, " | ".join(problems), fatal=True)
    names = ", ".join(str(c.get("name")) for c in calls)
    return Component("tool_calls", 1.0, weight, f"{len(calls)} valid tool calls: {names}")


def tool_choice_kept(evidence: DraftEvidence, weight: float = 1.0) -> Component | None:
    """The draft must obey tool_choice: no call under ``none``, a call under ``any``, the named one under ``tool``."""
    kind, forced = tool_choice(evidence.request)
    if kind is None:
        return None
    called = [str(c.get("name")) for c in tool_uses(evidence.answer)]
    problem = None
    if kind == "none" and called:
        problem = f"tool_choice none, but the draft called {', '.join(called)}"
    elif kind == "any" and not called:
        problem = "tool_choice any, but the draft called no tool"
    elif kind == "tool" and forced not in called:
        problem = f"tool_choice tool {forced!r}, but the draft called {', '.join(called) or 'no tool'}"
    if problem:
        return Component("tool_choice", 0.0, weight, problem, fatal=True)
    return Component("tool_choice", 1.0, weight, f"tool_choice {kind} kept")


def _is_math_question(question: str) -> bool:
    """Whether a question looks like a maths word problem (digits and a quantity question)."""
    return any(ch.isdigit() for ch in question) and _MATH_QUESTION.search(question) is not None


def math_answer(evidence: DraftEvidence, weight: float = 1.0) -> Component | None:
    """An answer to a maths word problem should contain a number, and preferably its worked calculation."""
    text = answer_text(evidence.answer)
    if not text.strip() or not _is_math_question(question_text(evidence.request)):
        return None
    if not _NUMBER.search(text):
        return Component("math_answer", MATH_NO_NUMBER_VALUE, weight, "maths question, but no number in the answer")
    if check_arithmetic(text).checked == 0:
        return Component("math_answer", MATH_NO_WORKING_VALUE, weight, "maths question, a number but no working")
    return Component("math_answer", 1.0, weight, "maths question, a number and worked calculations")


def arithmetic(evidence: DraftEvidence, weight: float = 1.0) -> Component | None:
    """The calculations the answer writes out (``a + b = c``) should be right."""
    check = check_arithmetic(answer_text(evidence.answer))
    if check.checked == 0:
        return None
    value = ARITHMETIC_ERROR_PENALTY ** len(check.wrong)
    detail = f"{check.checked} calculations, {len(check.wrong)} wrong"
    if check.wrong:
        detail += ": " + "; ".join(check.wrong[:3])
    return Component("arithmetic", value, weight, detail)


MEASURES: tuple[tuple[str, Measure], ...] = (
    ("truncation", truncation),
    ("empty", empty),
    ("structured_output", structured_output),
    ("tool_calls", tool_calls),
    ("tool_choice", tool_choice_kept),
    ("refusal", refusal),
    ("hedging", hedging),
    ("repetition", repetition),
    ("length", length),
    ("logprobs", logprobs),
    ("math_answer", math_answer),
    ("arithmetic", arithmetic),
)
"""Every measure with the name of the component it reports (and of its weight in ScoringWeights)."""
