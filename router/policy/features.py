"""Features of a request for the learned router, shared by serving and training (pure: values in, values out).

A request's feature vector is its prompt embedding followed by the structural features below, in the fixed
order of `FEATURE_NAMES`. Features read only what the proxy sees before any answer exists: the user turns, the
system prompt, the tools, `max_tokens`. Assistant turns are never read (a training set has placeholders where
a live conversation has the earlier answers), so a prompt gives the same vector in serving and in training.
Bump `FEATURES_VERSION` whenever a name, its order or its computation changes: artifacts record it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from router.types import JSONObject

FEATURES_VERSION = "1"
DATASET_MAX_TOKENS = 1024
"""The `max_tokens` of requests built from a data set's prompts (the data has none)."""
PLACEHOLDER_ANSWER = "(earlier answer)"
"""The assistant turn put between the user turns of a multi-turn data set prompt."""

FEATURE_NAMES: tuple[str, ...] = (
    "last_user_chars_log",
    "user_chars_log",
    "last_user_words_log",
    "user_turns",
    "system_chars_log",
    "tools_present",
    "tools_count_log",
    "tool_results_log",
    "images",
    "max_tokens_log",
    "code_fence",
    "code_tokens_log",
    "programming_words_log",
    "digit_ratio",
    "numbers_log",
    "math_operators_log",
    "math_words_log",
    "latex",
    "question_marks_log",
    "ascii_share",
    "upper_ratio",
    "mean_word_chars",
    "lines_log",
    "sentences_log",
    "choice_options",
    "choice_numeric_share",
    "choice_option_chars_log",
    "negation_words",
    "statement_pair",
    "fill_blank",
    "list_instruction",
    "format_instruction",
    "creative_words",
    "reasoning_words",
    "follow_up",
)

_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_CODE_TOKENS = re.compile(
    r"\bdef \w+\(|\bclass \w+|\bimport \w+|#include|\bfunction\b|=>|\breturn\b|\bprintf?\(|console\.log|"
    r"\bSELECT\b.+\bFROM\b|</?[a-z]+>|\w+\(\w*\)\s*[{;:]|[{};]\s*$|\w+\[\w*\]|\w+\.\w+\(",
    re.MULTILINE,
)
_PROGRAMMING = re.compile(
    r"\b(python|java|javascript|typescript|c\+\+|rust|golang|sql|html|css|bash|shell|code|function|program|"
    r"algorithm|compile|debug|bug|api|regex|script|implement)\b",
    re.IGNORECASE,
)
_MATH_OPERATORS = re.compile(r"(?<=[\w)\s])[-+*/^=<>×÷≤≥](?=[\s(\w])")
_MATH_WORDS = re.compile(
    r"\b(solve|calculate|compute|how many|how much|evaluate|sum|product|total|probability|percent(?:age)?|"
    r"equation|integral|derivative|average|ratio|remainder|value of|square|root|prime|polynomial|matrix)\b",
    re.IGNORECASE,
)
_LATEX = re.compile(r"\\(?:frac|sqrt|sum|int|cdot|times|pi|alpha|beta|theta|le|ge)\b|\$[^$]+\$")
_CHOICE = re.compile(r"^\s*\(?([A-Ha-h])[).:]\s+(.*)$", re.MULTILINE)
_CHOICE_INLINE = re.compile(r"\(([A-H])\)\s")
_NUMERIC_OPTION = re.compile(r"^[\s$€£-]*\d[\d\s.,/%:^-]*\w{0,6}\s*$")
_NEGATION = re.compile(r"\b(NOT|EXCEPT|LEAST|FALSE|INCORRECT|UNLIKELY|NEVER)\b")
_STATEMENT_PAIR = re.compile(r"statement\s*(?:1|i)\b.*statement\s*(?:2|ii)\b", re.IGNORECASE | re.DOTALL)
_FILL_BLANK = re.compile(r"_{3,}|\bfill in the blank|\bblank\b", re.IGNORECASE)
_LIST_INSTRUCTION = re.compile(
    r"\b(list|enumerate|bullet(?:ed)? points?|step[- ]by[- ]step|steps|outline|\d+\s+(?:ways|tips|examples|"
    r"reasons|ideas|items|points))\b",
    re.IGNORECASE,
)
_FORMAT_INSTRUCTION = re.compile(
    r"\b(json|yaml|csv|table|markdown|format|in \d+ words|at most|no more than|exactly \d+|fewer than|"
    r"words?|sentences?|paragraphs?|rewrite|rephrase|summari[sz]e|translate|start (?:every|each))\b",
    re.IGNORECASE,
)
_CREATIVE = re.compile(
    r"\b(write|compose|draft|story|poem|essay|blog|email|letter|imagine|pretend|role[- ]?play|act as|"
    r"persuasive|slogan|dialogue|script)\b",
    re.IGNORECASE,
)
_REASONING = re.compile(
    r"\b(why|explain|reason(?:ing)?|prove|justify|deduce|infer|logic(?:al)?|therefore|puzzle|riddle|"
    r"assum(?:e|ption)|implies|conclude|argument)\b",
    re.IGNORECASE,
)
_REFERENTIAL = re.compile(r"\b(it|this|that|these|those|above|previous|again|also|now|your)\b", re.IGNORECASE)


def _log(value: float) -> float:
    return math.log1p(max(value, 0.0))


def _content_text(content: Any) -> str:
    """The text of a message's content: a string, or its text blocks (system reminders removed)."""
    if isinstance(content, str):
        return _REMINDER.sub("", content).strip()
    if not isinstance(content, list):
        return ""
    parts = [_REMINDER.sub("", str(block.get("text", ""))).strip()
             for block in content if isinstance(block, dict) and block.get("type") == "text"]
    return "\n".join(part for part in parts if part)


def _count_blocks(messages: Sequence[Any], kind: str) -> int:
    return sum(1 for message in messages if isinstance(message, dict) and isinstance(message.get("content"), list)
               for block in message["content"] if isinstance(block, dict) and block.get("type") == kind)


def _system_text(system: Any) -> str:
    return _content_text(system)


def _choice_features(text: str) -> tuple[float, float, float]:
    """Multiple-choice options ("A. …", "(B) …"): how many, the share that are numbers, their mean length."""
    options = [match.group(2).strip() for match in _CHOICE.finditer(text)]
    if len(options) < 2:
        inline = _CHOICE_INLINE.findall(text)
        return (float(len(inline)) if len(inline) >= 2 else 0.0), 0.0, 0.0
    numeric = sum(1 for option in options if _NUMERIC_OPTION.match(option))
    mean_chars = sum(len(option) for option in options) / len(options)
    return float(min(len(options), 10)), numeric / len(options), _log(mean_chars)


def structural_features(request: JSONObject) -> dict[str, float]:
    """The named structural features of an Anthropic-format request (no answer is read)."""
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    user_texts = [text for m in messages if m.get("role") == "user" and (text := _content_text(m.get("content")))]
    last = user_texts[-1] if user_texts else ""
    system = _system_text(request.get("system"))
    tools = request.get("tools")
    tool_count = len(tools) if isinstance(tools, list) else 0
    max_tokens = request.get("max_tokens")
    chars = max(len(last), 1)
    words = _WORD.findall(last)
    letters = [c for c in last if c.isalpha()]
    choices, numeric_choices, choice_chars = _choice_features(last)
    values = {
        "last_user_chars_log": _log(len(last)),
        "user_chars_log": _log(sum(len(text) for text in user_texts) + len(system)),
        "last_user_words_log": _log(len(words)),
        "user_turns": float(min(len(user_texts), 50)),
        "system_chars_log": _log(len(system)),
        "tools_present": float(tool_count > 0),
        "tools_count_log": _log(tool_count),
        "tool_results_log": _log(_count_blocks(messages, "tool_result")),
        "images": float(min(_count_blocks(messages, "image"), 10)),
        "max_tokens_log": _log(max_tokens) if isinstance(max_tokens, int | float) else 0.0,
        "code_fence": float("```" in last),
        "code_tokens_log": _log(len(_CODE_TOKENS.findall(last))),
        "programming_words_log": _log(len(_PROGRAMMING.findall(last))),
        "digit_ratio": sum(c.isdigit() for c in last) / chars,
        "numbers_log": _log(len(_NUMBER.findall(last))),
        "math_operators_log": _log(len(_MATH_OPERATORS.findall(last))),
        "math_words_log": _log(len(_MATH_WORDS.findall(last))),
        "latex": float(bool(_LATEX.search(last))),
        "question_marks_log": _log(last.count("?")),
        "ascii_share": sum(c.isascii() for c in last) / chars if last else 1.0,
        "upper_ratio": sum(c.isupper() for c in letters) / len(letters) if letters else 0.0,
        "mean_word_chars": min(sum(len(w) for w in words) / len(words), 30.0) if words else 0.0,
        "lines_log": _log(last.count("\n") + 1 if last else 0),
        "sentences_log": _log(len(_SENTENCE_END.findall(last))),
        "choice_options": choices,
        "choice_numeric_share": numeric_choices,
        "choice_option_chars_log": choice_chars,
        "negation_words": float(min(len(_NEGATION.findall(last)), 5)),
        "statement_pair": float(bool(_STATEMENT_PAIR.search(last))),
        "fill_blank": float(bool(_FILL_BLANK.search(last))),
        "list_instruction": float(min(len(_LIST_INSTRUCTION.findall(last)), 5)),
        "format_instruction": float(min(len(_FORMAT_INSTRUCTION.findall(last)), 5)),
        "creative_words": float(min(len(_CREATIVE.findall(last)), 5)),
        "reasoning_words": float(min(len(_REASONING.findall(last)), 5)),
        "follow_up": float(len(user_texts) > 1 and len(last) < 200 and bool(_REFERENTIAL.search(last))),
    }
    return {name: float(values[name]) for name in FEATURE_NAMES}


def structural_vector(request: JSONObject) -> NDArray[np.float32]:
    """The structural features as a float32 vector in `FEATURE_NAMES` order."""
    values = structural_features(request)
    return np.array([values[name] for name in FEATURE_NAMES], dtype=np.float32)


def feature_vector(embedding: NDArray[np.float32], request: JSONObject) -> NDArray[np.float32]:
    """The classifier's input for one request: the prompt embedding followed by the structural vector."""
    return np.concatenate([np.asarray(embedding, dtype=np.float32).ravel(), structural_vector(request)])


def feature_matrix(embeddings: NDArray[np.float32], requests: Sequence[JSONObject]) -> NDArray[np.float32]:
    """Feature vectors of many requests, one row each (embeddings row-aligned with requests)."""
    if len(embeddings) != len(requests):
        raise ValueError(f"{len(embeddings)} embeddings for {len(requests)} requests")
    structural = np.stack([structural_vector(r) for r in requests]) if requests else np.zeros(
        (0, len(FEATURE_NAMES)), dtype=np.float32)
    return np.hstack([np.asarray(embeddings, dtype=np.float32).reshape(len(requests), -1), structural])


def request_from_prompt(prompt: str | Sequence[str], *, max_tokens: int = DATASET_MAX_TOKENS) -> JSONObject:
    """An Anthropic Messages request for a data set prompt: its user turns, placeholder answers between them."""
    turns = [prompt] if isinstance(prompt, str) else list(prompt)
    if not turns:
        raise ValueError("a prompt needs at least one user turn")
    messages: list[JSONObject] = []
    for index, turn in enumerate(turns):
        if index:
            messages.append({"role": "assistant", "content": PLACEHOLDER_ANSWER})
        messages.append({"role": "user", "content": str(turn)})
    return {"model": "", "max_tokens": max_tokens, "messages": messages}
