"""The agreement judge labels a draft against the strong answer, and says how."""

from __future__ import annotations

from router.scoring.agreement import final_choice, final_number, grader_verdict, judge_agreement
from router.types import JSONObject


def request(text: str) -> JSONObject:
    return {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": text}]}


def answer(text: str = "", tools: tuple[str, ...] = ()) -> JSONObject:
    content: list[JSONObject] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": f"t{i}", "name": name, "input": {}} for i, name in enumerate(tools)]
    return {"role": "assistant", "content": content, "stop_reason": "tool_use" if tools else "end_turn"}


def test_multiple_choice_answers_are_compared_by_letter() -> None:
    question = request("Which is prime?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:")
    same = judge_agreement(question, answer("The answer is (C)."), answer("C"), similarity=0.1, threshold=0.8)
    differ = judge_agreement(question, answer("Answer: B"), answer("The answer is C"), similarity=0.99,
                             threshold=0.8)
    assert same is not None and same.good and same.source == "agreement:choice"
    assert differ is not None and not differ.good and differ.detail == "draft B vs strong C"


def test_maths_answers_are_compared_by_final_number() -> None:
    question = request("Tom has 3 boxes of 12 eggs. How many eggs does he have in total?")
    good = judge_agreement(question, answer("3 x 12 = 36 eggs.\n#### 36"), answer("He has 36 eggs in total: 36"),
                           similarity=0.2, threshold=0.8)
    bad = judge_agreement(question, answer("So he has 1,234 eggs"), answer("The answer is 36"), similarity=0.95,
                          threshold=0.8)
    assert good is not None and good.good and good.source == "agreement:numeric"
    assert bad is not None and not bad.good


def test_tool_calls_must_match_by_name() -> None:
    question = request("Read the file")
    assert judge_agreement(question, answer(tools=("Read",)), answer(tools=("Read",)), similarity=None,
                           threshold=0.8) == judge_agreement(question, answer(tools=("Read",)),
                                                             answer(tools=("Read",)), similarity=0.0, threshold=0.8)
    verdict = judge_agreement(question, answer("I can't"), answer(tools=("Read",)), similarity=None, threshold=0.8)
    assert verdict is not None and not verdict.good and verdict.source == "agreement:tools"


def test_free_text_falls_back_to_exact_then_similarity_then_abstains() -> None:
    question = request("Write a haiku about the sea")
    exact = judge_agreement(question, answer("Waves  fold, salt wind."), answer("waves fold salt wind"),
                            similarity=None, threshold=0.8)
    assert exact is not None and exact.good and exact.source == "agreement:exact"
    close = judge_agreement(question, answer("Blue waves"), answer("Grey sea"), similarity=0.85, threshold=0.8)
    far = judge_agreement(question, answer("Blue waves"), answer("Grey sea"), similarity=0.5, threshold=0.8)
    assert close is not None and close.good and close.source == "agreement:similarity"
    assert far is not None and not far.good
    assert judge_agreement(question, answer("Blue waves"), answer("Grey sea"), similarity=None, threshold=0.8) is None


def test_extractors() -> None:
    assert final_choice("I think the answer is option (d).") == "D"
    assert final_choice("Paris is the capital.") is None
    assert final_number("\\boxed{1,250.5}", maths=False) == 1250.5
    assert final_number("It costs 5 dollars and 20 cents, so 520", maths=True) == 520
    assert final_number("There were 3 kings", maths=False) is None


def test_grader_verdict_reads_yes_or_no() -> None:
    yes = grader_verdict(answer("YES, it is as good."), "gpt-4o")
    assert yes is not None and yes.good and yes.source == "grader:gpt-4o"
    no = grader_verdict(answer("No."), "gpt-4o")
    assert no is not None and not no.good
    assert grader_verdict(answer("Maybe"), "gpt-4o") is None
