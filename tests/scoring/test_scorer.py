"""The combined confidence score: weighting, hard failures, predicted and learned components."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from router.scoring import (
    MEASURES,
    Component,
    ConfidenceScore,
    ConfidenceScorer,
    DraftEvidence,
    LearnedComponent,
    ScoringWeights,
    combine,
)
from router.scoring.scorer import NO_EVIDENCE_VALUE

QUESTION = (
    "Tom has 12 apples in a basket on the table and gives 5 of them to his sister. How many apples does he have left?"
)
GOOD = "Tom starts with 12 apples and gives away 5, so 12 - 5 = 7. He has 7 apples left."
HEDGING = "I think Tom might have 7 apples left, but I'm not sure, it depends on how you count."
REFUSAL = "I'm sorry, but I can't help with that. As an AI, I cannot assist with counting apples."
TOOL = {
    "name": "Read",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"file_path": {"type": "string"}},
        "required": ["file_path"],
        "additionalProperties": False,
    },
}


def evidence(
    text: str = GOOD,
    stop: str = "end_turn",
    predicted: float | None = None,
    logprobs: tuple[float, ...] | None = None,
) -> DraftEvidence:
    """A text draft answering QUESTION."""
    request = {"max_tokens": 1024, "messages": [{"role": "user", "content": QUESTION}]}
    answer = {"role": "assistant", "content": [{"type": "text", "text": text}], "stop_reason": stop}
    return DraftEvidence(request=request, answer=answer, logprobs=logprobs, predicted_good=predicted)


def tool_evidence(args: dict[str, Any]) -> DraftEvidence:
    """A draft calling Read, answering a request with a JSON output format and tool_choice any."""
    request = {
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Open the file."}],
        "tools": [TOOL],
        "tool_choice": {"type": "any"},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
    }
    answer = {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": args}],
        "stop_reason": "tool_use",
    }
    return DraftEvidence(request=request, answer=answer)


class FixedModel:
    """A learned component that always predicts the same value."""

    def __init__(self, value: float | None) -> None:
        self.value = value
        self.seen: list[DraftEvidence] = []

    def predict(self, evidence: DraftEvidence) -> float | None:
        self.seen.append(evidence)
        return self.value


def test_good_scores_above_hedging_above_refusal() -> None:
    scorer = ConfidenceScorer()
    good, hedging, refusal = (scorer.score(evidence(t)) for t in (GOOD, HEDGING, REFUSAL))
    assert good.value > hedging.value > refusal.value
    assert good.value == pytest.approx(1.0)
    assert good.hard_fail is hedging.hard_fail is None
    assert refusal.hard_fail is not None and "refusal" in refusal.hard_fail, "a plain refusal is a hard fail"


def test_all_applicable_components_are_reported() -> None:
    score = ConfidenceScorer().score(evidence(logprobs=(-0.1, -0.2), predicted=0.8))
    names = {c.name for c in score.components}
    assert names == {
        "truncation",
        "empty",
        "refusal",
        "hedging",
        "repetition",
        "length",
        "logprobs",
        "math_answer",
        "arithmetic",
        "predicted",
    }
    tool_names = {c.name for c in ConfidenceScorer().score(tool_evidence({"file_path": "/a"})).components}
    assert {"tool_calls", "tool_choice", "empty", "truncation"} <= tool_names
    assert "structured_output" not in tool_names  # a tool-calling turn is not the JSON answer


def test_weighted_mean_of_the_components() -> None:
    score = ConfidenceScorer().score(evidence(HEDGING))
    expected = sum(c.weight * c.value for c in score.components) / sum(c.weight for c in score.components)
    assert score.value == pytest.approx(expected)


def test_truncation_is_a_hard_fail_that_keeps_the_components() -> None:
    score = ConfidenceScorer().score(evidence(stop="max_tokens"))
    assert score.value == 0.0
    assert score.hard_fail is not None and score.hard_fail.startswith("truncation")
    assert not score.accepted_by_gates
    assert score.component("refusal") is not None


def test_invalid_tool_call_is_a_hard_fail() -> None:
    score = ConfidenceScorer().score(tool_evidence({"path": "/a"}))
    assert score.value == 0.0 and score.hard_fail is not None and "tool_calls" in score.hard_fail
    ok = ConfidenceScorer().score(tool_evidence({"file_path": "/a"}))
    assert ok.hard_fail is None and ok.value == NO_EVIDENCE_VALUE


def test_predicted_good_enters_as_a_weighted_component() -> None:
    scorer = ConfidenceScorer()
    low, high = scorer.score(evidence(predicted=0.1)), scorer.score(evidence(predicted=0.9))
    component = low.component("predicted")
    assert component is not None and component.value == 0.1 and component.weight == ScoringWeights().predicted
    assert low.value < high.value
    assert scorer.score(evidence(predicted=float("nan"))).component("predicted") is None
    assert scorer.score(evidence(predicted=1.7)).component("predicted").value == 1.0  # type: ignore[union-attr]


def test_learned_component_plugs_in() -> None:
    model = FixedModel(0.2)
    learned: LearnedComponent = model
    ev = evidence()
    score = ConfidenceScorer(learned=learned).score(ev)
    component = score.component("learned")
    assert model.seen == [ev]
    assert component is not None and component.value == 0.2 and component.weight == ScoringWeights().learned
    assert score.value < ConfidenceScorer().score(ev).value
    assert ConfidenceScorer(learned=FixedModel(None)).score(ev).component("learned") is None


def test_weights_are_configurable_and_validated() -> None:
    only_hedging = ScoringWeights(**{name: 0.0 for name, _ in MEASURES} | {"hedging": 1.0})
    score = ConfidenceScorer(only_hedging).score(evidence(HEDGING))
    assert score.value == pytest.approx(score.component("hedging").value)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="refusal"):
        ScoringWeights(refusal=-1.0)
    with pytest.raises(ValueError, match="hedging"):
        ScoringWeights(hedging=math.inf)
    with pytest.raises(KeyError):
        ScoringWeights().of("vibes")


def test_no_weighted_evidence_means_no_objection() -> None:
    zero = ScoringWeights(**{name: 0.0 for name, _ in MEASURES})
    score = ConfidenceScorer(zero).score(evidence(HEDGING))
    assert score.value == NO_EVIDENCE_VALUE and score.components


def test_combine_and_as_dict() -> None:
    parts = (
        Component("a", 1.0, 3.0, "fine"),
        Component("b", 0.0, 1.0, "bad"),
        Component("gate", 1.0, 0.0, "passed"),
    )
    score = combine(parts)
    assert score.value == pytest.approx(0.75) and score.hard_fail is None
    vetoed = combine((*parts, Component("tool_calls", 0.0, 0.0, "unknown tool 'x'", fatal=True)))
    assert vetoed == ConfidenceScore(0.0, (*parts, vetoed.components[-1]), "tool_calls: unknown tool 'x'")
    data = json.loads(json.dumps(vetoed.as_dict()))
    assert data["value"] == 0.0 and data["hard_fail"].startswith("tool_calls")
    assert [c["name"] for c in data["components"]] == ["a", "b", "gate", "tool_calls"]
    assert data["components"][-1]["fatal"] is True and "fatal" not in data["components"][0]
