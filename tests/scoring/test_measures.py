"""Each draft measure on crafted inputs."""

from __future__ import annotations

import time
from typing import Any

import pytest

from router.scoring import measures
from router.scoring.arithmetic import check_arithmetic
from router.scoring.schemas import schema_errors, validator_class
from router.scoring.types import DraftEvidence

GOOD = "Paris is the capital of France. It has been the seat of government for centuries."
LONG_QUESTION = " ".join(["Please explain in detail how the water cycle works and why it matters for farming."] * 6)
READ_TOOL = {
    "name": "Read",
    "description": "Read a file",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "file_path": {"type": "string"},
            "offset": {"type": "integer", "exclusiveMinimum": 0},
            "limit": {"type": "integer"},
        },
        "required": ["file_path"],
        "additionalProperties": False,
    },
}
ENV_TOOL = {
    "name": "SetEnv",
    "description": "Set environment variables",
    "input_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"vars": {"type": "object", "propertyNames": {"pattern": "^[A-Z_]+$"}}},
        "required": ["vars"],
    },
}


def evidence(
    text: str | None = GOOD,
    *,
    blocks: list[dict[str, Any]] | None = None,
    stop: str | None = "end_turn",
    question: str = "What is the capital of France?",
    logprobs: tuple[float, ...] | None = None,
    **request: Any,
) -> DraftEvidence:
    """A draft with the given text (or blocks) answering a one-message request."""
    content = blocks if blocks is not None else ([{"type": "text", "text": text}] if text is not None else [])
    answer: dict[str, Any] = {"role": "assistant", "content": content}
    if stop is not None:
        answer["stop_reason"] = stop
    body = {"max_tokens": 1024, "messages": [{"role": "user", "content": question}], **request}
    return DraftEvidence(request=body, answer=answer, logprobs=logprobs)


def call(name: str, args: Any, call_id: str = "toolu_1") -> dict[str, Any]:
    """A tool_use block."""
    return {"type": "tool_use", "id": call_id, "name": name, "input": args}


# truncation and empty


def test_truncated_answer_is_a_hard_fail() -> None:
    c = measures.truncation(evidence(stop="max_tokens"))
    assert c is not None and c.fatal and c.value == 0.0 and "max_tokens" in c.detail


def test_finished_answer_passes_truncation_and_no_stop_reason_does_not_apply() -> None:
    c = measures.truncation(evidence(stop="end_turn"))
    assert c is not None and not c.fatal and c.value == 1.0
    assert measures.truncation(evidence(stop=None)) is None


@pytest.mark.parametrize("text", ["", "   \n ", "..."])
def test_empty_answer_is_a_hard_fail(text: str) -> None:
    c = measures.empty(evidence(text))
    assert c.fatal and c.value == 0.0


def test_thinking_only_answer_is_empty_but_a_tool_call_is_not() -> None:
    assert measures.empty(evidence(blocks=[{"type": "thinking", "thinking": "hmm", "signature": "x"}])).fatal
    assert not measures.empty(evidence(blocks=[call("Read", {"file_path": "/a"})], stop="tool_use")).fatal


# refusal and hedging


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that request.",
        "I cannot assist with this.",
        "As an AI, I don't have personal opinions.",
        "I apologize, but I'm not able to do that.",
        "I can’t help with that.",
    ],
)
def test_a_short_answer_that_opens_by_refusing_is_a_hard_fail(text: str) -> None:
    c = measures.refusal(evidence(text))
    assert c is not None and c.value < 0.2 and c.fatal, "a refusing draft is never served: the strong model may answer"


def test_a_refusal_inside_a_long_helpful_answer_only_lowers_the_score() -> None:
    text = "I'm sorry, but I can't check live data. " + " ".join([GOOD] * 12)
    c = measures.refusal(evidence(text))
    assert c is not None and c.value < 1.0 and not c.fatal


def test_refusal_is_scaled_by_density() -> None:
    late = " ".join([GOOD] * 20) + " I'm unable to check live prices, though."
    short = measures.refusal(evidence("I'm unable to check live prices."))
    long = measures.refusal(evidence(late))
    assert short is not None and long is not None and short.value < long.value < 1.0


def test_no_refusal_phrase_and_idioms_keep_full_confidence() -> None:
    assert measures.refusal(evidence(GOOD)) is not None
    assert measures.refusal(evidence(GOOD)).value == 1.0  # type: ignore[union-attr]
    assert measures.refusal(evidence("I can't help but admire the view.")).value == 1.0  # type: ignore[union-attr]
    assert measures.refusal(evidence("")) is None


def test_refusal_stop_reason_scores_zero() -> None:
    c = measures.refusal(evidence("Partial", stop="refusal"))
    assert c is not None and c.value == 0.0


def test_hedging_lowers_mildly_and_more_with_density() -> None:
    one = measures.hedging(evidence("I think the capital of France is Paris, on the Seine."))
    many = measures.hedging(evidence("I think it might be Paris, possibly Lyon. I'm not sure, it depends."))
    none = measures.hedging(evidence(GOOD))
    assert one is not None and many is not None and none is not None
    assert none.value == 1.0 > one.value > 0.5 > many.value
    assert "'i think'" in one.detail


def test_one_hedge_costs_less_than_one_refusal() -> None:
    hedge = measures.hedging(evidence("I'm not sure that Paris is the capital."))
    refuse = measures.refusal(evidence("I'm unable to say what the capital is."))
    assert hedge is not None and refuse is not None and hedge.value > refuse.value


# degenerate output and length


def test_repetition_loop_scores_zero() -> None:
    c = measures.repetition(evidence("The answer is 42 and that is final. " * 40))
    assert c is not None and c.value == 0.0


def test_repeated_line_run_lowers() -> None:
    text = "Here is the list:\n" + "- buy milk at the store\n" * 8 + "Done."
    c = measures.repetition(evidence(text))
    assert c is not None and c.value == 0.0 and "run 8" in c.detail


def test_ordinary_prose_is_not_repetitive() -> None:
    text = (
        "The water cycle moves water between the sea, the air and the land. Heat from the sun evaporates water, "
        "vapour rises and cools into clouds, and rain or snow returns it to the ground, where rivers carry it back."
    )
    c = measures.repetition(evidence(text))
    assert c is not None and c.value == 1.0


def test_short_answer_to_long_question_is_mildly_suspicious() -> None:
    short = measures.length(evidence("Evaporation.", question=LONG_QUESTION))
    full = measures.length(evidence(" ".join(["Water evaporates, condenses and falls."] * 8), question=LONG_QUESTION))
    assert short is not None and full is not None
    assert 0.5 <= short.value < 0.6 and full.value == 1.0
    assert measures.length(evidence("Paris.")) is None  # short question


# log-probabilities


def test_logprobs_high_vs_low() -> None:
    high = measures.logprobs(evidence(logprobs=tuple([-0.01] * 50)))
    low = measures.logprobs(evidence(logprobs=tuple([-2.5] * 40 + [-0.1] * 10)))
    assert high is not None and low is not None
    assert high.value > 0.95 and low.value < 0.2


def test_logprobs_absent_or_unusable_do_not_apply() -> None:
    assert measures.logprobs(evidence()) is None
    assert measures.logprobs(evidence(logprobs=())) is None
    assert measures.logprobs(evidence(logprobs=(float("nan"),))) is None
    c = measures.logprobs(evidence(logprobs=(float("-inf"), 0.3)))
    assert c is not None and 0.0 <= c.value <= 1.0


# structured output

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer", "minimum": 0}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


def json_request(schema: Any = SCHEMA) -> dict[str, Any]:
    """Request fields asking for JSON output with a schema."""
    return {"output_config": {"format": {"type": "json_schema", "schema": schema}}}


def test_valid_json_against_schema_passes() -> None:
    c = measures.structured_output(evidence('{"city": "Paris", "population": 2100000}', **json_request()))
    assert c is not None and c.value == 1.0 and not c.fatal


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Paris has 2.1 million people.", "not JSON"),
        ('```json\n{"city": "Paris", "population": 1}\n```', "not JSON"),
        ('{"city": "Paris"}', "'population' is a required property"),
        ('{"city": "Paris", "population": "many"}', "not of type 'integer'"),
        ('{"city": "Paris", "population": 1, "mayor": "x"}', "Additional properties"),
    ],
)
def test_invalid_json_or_schema_mismatch_is_a_hard_fail(text: str, why: str) -> None:
    c = measures.structured_output(evidence(text, **json_request()))
    assert c is not None and c.fatal and c.value == 0.0 and why in c.detail


def test_structured_output_skips_without_format_or_with_an_unusable_schema() -> None:
    assert measures.structured_output(evidence("not json")) is None
    assert measures.structured_output(evidence("not json", **json_request({"type": "no-such-type"}))) is None
    remote = {"$ref": "https://example.com/schemas/city.json"}
    assert measures.structured_output(evidence("{}", **json_request(remote))) is None


def test_legacy_output_format_field_is_read() -> None:
    c = measures.structured_output(evidence("[]", output_format={"type": "json_schema", "schema": SCHEMA}))
    assert c is not None and c.fatal


# tool calls


def tool_evidence(*calls: dict[str, Any], tools: list[dict[str, Any]] | None = None, **request: Any) -> DraftEvidence:
    """A draft that calls tools, answering a request that offers them."""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": "Let me look."}, *calls]
    return evidence(blocks=blocks, stop="tool_use", tools=tools or [READ_TOOL, ENV_TOOL], **request)


def test_valid_tool_calls_pass() -> None:
    c = measures.tool_calls(
        tool_evidence(call("Read", {"file_path": "/a", "offset": 1}), call("SetEnv", {"vars": {"HOME": "/"}}, "t2"))
    )
    assert c is not None and c.value == 1.0 and "2 valid tool calls" in c.detail


@pytest.mark.parametrize(
    ("block", "why"),
    [
        (call("Write", {"file_path": "/a"}), "unknown tool 'Write'"),
        (call("Read", {"offset": 3}), "'file_path' is a required property"),
        (call("Read", {"file_path": 7}), "7 is not of type 'string'"),
        (call("Read", {"file_path": "/a", "mode": "r"}), "Additional properties are not allowed"),
        (call("Read", {"file_path": "/a", "offset": 0}), "less than or equal to the minimum of 0"),
        (call("SetEnv", {"vars": {"home": "/"}}), "does not match '^[A-Z_]+$'"),
        (call("Read", ["/a"]), "input is not an object"),
        ({"type": "tool_use", "name": "Read", "input": {"file_path": "/a"}}, "no id"),
    ],
)
def test_invalid_tool_calls_are_hard_fails(block: dict[str, Any], why: str) -> None:
    c = measures.tool_calls(tool_evidence(block))
    assert c is not None and c.fatal and c.value == 0.0
    assert why in c.detail


def test_tool_call_with_no_tools_in_the_request_is_unknown() -> None:
    c = measures.tool_calls(evidence(blocks=[call("Read", {"file_path": "/a"})], stop="tool_use"))
    assert c is not None and c.fatal and "unknown tool" in c.detail


def test_schema_format_is_checked_offline() -> None:
    tool = {"name": "Plan", "input_schema": {"type": "object", "properties": {"day": {"format": "date"}}}}
    assert measures.tool_calls(tool_evidence(call("Plan", {"day": "2024-02-30"}), tools=[tool])).fatal  # type: ignore[union-attr]
    assert not measures.tool_calls(tool_evidence(call("Plan", {"day": "2024-02-29"}), tools=[tool])).fatal  # type: ignore[union-attr]


def test_tool_without_schema_and_answer_without_calls() -> None:
    bash = {"type": "bash_20250124", "name": "bash"}
    c = measures.tool_calls(tool_evidence(call("bash", {"command": "ls"}), tools=[bash]))
    assert c is not None and c.value == 1.0
    assert measures.tool_calls(evidence()) is None


@pytest.mark.parametrize(
    ("choice", "calls", "fatal"),
    [
        ({"type": "none"}, [call("Read", {"file_path": "/a"})], True),
        ({"type": "any"}, [], True),
        ({"type": "tool", "name": "SetEnv"}, [call("Read", {"file_path": "/a"})], True),
        ({"type": "tool", "name": "Read"}, [call("Read", {"file_path": "/a"})], False),
        ({"type": "auto"}, [], False),
        ({"type": "any"}, [call("Read", {"file_path": "/a"})], False),
    ],
)
def test_tool_choice(choice: dict[str, Any], calls: list[dict[str, Any]], fatal: bool) -> None:
    c = measures.tool_choice_kept(tool_evidence(*calls, tool_choice=choice))
    assert c is not None and c.fatal is fatal and c.value == (0.0 if fatal else 1.0)


def test_tool_choice_absent_does_not_apply() -> None:
    assert measures.tool_choice_kept(tool_evidence(call("Read", {"file_path": "/a"}))) is None


# maths

MATHS = "Tom has 12 apples and gives away 5. How many apples does he have left?"


def test_maths_answer_without_a_number_is_lowered() -> None:
    none = measures.math_answer(evidence("He has some apples left over.", question=MATHS))
    bare = measures.math_answer(evidence("He has seven apples left.", question=MATHS))
    worked = measures.math_answer(evidence("12 - 5 = 7, so he has 7 apples.", question=MATHS))
    assert none is not None and bare is not None and worked is not None
    assert none.value < bare.value < worked.value == 1.0
    assert measures.math_answer(evidence()) is None


def test_wrong_arithmetic_is_lowered() -> None:
    right = measures.arithmetic(evidence("12 - 5 = 7 apples, and 7 * 2 = <<7*2=14>>14 halves."))
    wrong = measures.arithmetic(evidence("12 - 5 = 8 apples, so 8 * 2 = 16."))
    assert right is not None and wrong is not None
    assert right.value == 1.0 and wrong.value < 1.0 and "12 - 5 = 8" in wrong.detail
    assert measures.arithmetic(evidence(GOOD)) is None


@pytest.mark.parametrize(
    ("text", "checked", "wrong"),
    [
        ("9 * $2 = $<<9*2=18>>18", 1, 0),
        ("1,000 + 2,000 = 3,000 and 10/3 = 3.33", 2, 0),
        ("30/100 x 100 = 30%", 1, 0),
        ("45 - 5 = 40 / 2 = 20", 2, 0),
        ("15 floors * 8 units * 3/4 = 36 x 3/4 = 27", 1, 0),
        ("2x + 3 = 7, so x = 2", 0, 0),
        ("(3 + 4) * 2 = 15", 1, 1),
        ("22 + 2/3 = 24 2/3", 0, 0),
    ],
)
def test_check_arithmetic(text: str, checked: int, wrong: int) -> None:
    result = check_arithmetic(text)
    assert (result.checked, len(result.wrong)) == (checked, wrong)


@pytest.mark.parametrize("text", ["1+" * 5000 + "= 2", "The answer is 42 = 42. " * 3000, "1" + ",000" * 5000 + " = 1"])
def test_check_arithmetic_stays_linear_on_pathological_text(text: str) -> None:
    started = time.perf_counter()
    check_arithmetic(text)
    assert time.perf_counter() - started < 1.0


def test_schema_dialect_follows_dollar_schema() -> None:
    assert validator_class(ENV_TOOL["input_schema"]).__name__ == "Draft7Validator"
    assert validator_class(READ_TOOL["input_schema"]).__name__ == "Draft202012Validator"
    assert validator_class({"type": "object"}).__name__ == "Draft202012Validator"
    assert schema_errors({"a": 1}, {"$ref": "https://example.com/remote.json"}) is None


def test_measures_table_names_every_component() -> None:
    names = [name for name, _ in measures.MEASURES]
    assert len(names) == len(set(names))
    c = evidence()
    for name, measure in measures.MEASURES:
        out = measure(c, 2.0)
        assert out is None or (out.name == name and out.weight == 2.0 and 0.0 <= out.value <= 1.0)
