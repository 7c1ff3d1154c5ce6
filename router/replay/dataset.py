"""An answer source that replays what each model really answered to a labelled data set's prompts.

The RouteLLM rows carry the draft's and the strong model's answers but no token counts: input and output
tokens are estimated at four characters a token, so replayed costs are estimates of the same order.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.assets import shipped_routellm_data
from router.replay.answers import Answer, Fault, UpstreamRequest
from router.replay.scripted import last_turn

DRAFT_NAMES = frozenset({"mixtral-8x7b-instruct", "mistralai/mixtral-8x7b-instruct-v0.1"})
STRONG_NAMES = frozenset({"gpt-4-1106-preview"})
_SPACE = re.compile(r"\s+")


def prompt_key(text: str) -> str:
    """Whitespace-insensitive key of a user turn."""
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class LabelledRow:
    """One prompt with both answers and their quality labels."""

    id: str
    source: str
    turns: tuple[str, ...]
    draft_response: str
    strong_response: str
    draft_score: float
    strong_score: float
    draft_good_enough: int


def load_rows(path: Path | None = None) -> list[LabelledRow]:
    """Every row that has both answers' text (GSM8K and MT-bench; MMLU rows carry none); the shipped data by default."""
    rows = []
    with (path or shipped_routellm_data()).open(encoding="utf-8") as handle:
        for line in handle:
            raw: dict[str, Any] = json.loads(line)
            if not raw.get("draft_response") or not raw.get("strong_response"):
                continue
            turns = raw.get("turns") or [raw["prompt"]]
            rows.append(LabelledRow(str(raw["id"]), str(raw["source"]).split("/")[-1], tuple(turns),
                                    str(raw["draft_response"]), str(raw["strong_response"]),
                                    float(raw["draft_score"]), float(raw["strong_score"]),
                                    int(raw["draft_good_enough"])))
    return rows


def sample_rows(rows: Iterable[LabelledRow], sources: Sequence[str], limit: int, seed: int = 7) -> list[LabelledRow]:
    """A deterministic sample of at most `limit` rows per source."""
    picked: list[LabelledRow] = []
    for source in sources:
        candidates = sorted((row for row in rows if row.source == source), key=lambda row: row.id)
        random.Random(f"{seed}:{source}").shuffle(candidates)
        picked.extend(candidates[:limit])
    return picked


class DatasetSource:
    """Answers a known prompt with the named model's real answer; an unknown prompt gets a 404 error."""

    def __init__(self, rows: Iterable[LabelledRow], *, draft_names: frozenset[str] = DRAFT_NAMES,
                 strong_names: frozenset[str] = STRONG_NAMES) -> None:
        self._by_prompt = {prompt_key(row.turns[-1]): row for row in rows}
        self._draft_names = draft_names
        self._strong_names = strong_names

    async def answer(self, request: UpstreamRequest) -> Answer | Fault:
        """The recorded answer of the requested model."""
        row = self._by_prompt.get(prompt_key(last_turn(request).text))
        model = request.model.lower()
        if row is None or model not in self._draft_names | self._strong_names:
            return Fault(status=404)
        text = row.draft_response if model in self._draft_names else row.strong_response
        prompt_chars = sum(len(turn) for turn in row.turns)
        return Answer(text=text, input_tokens=max(1, prompt_chars // 4), output_tokens=max(1, len(text) // 4))
