"""The dashboard's numbers, as pure functions of outcome records: savings, rates, spend splits, the Wilson interval
of the quality the savings cost, per rule and over time, and the latest decisions with their thresholds."""

from __future__ import annotations

from typing import Any

import pytest

from router.dashboard.aggregate import Summary, Window, spend_by_user, spend_parts, wilson
from router.dashboard.decisions import RuleThresholds, accept_threshold, decision_json, rule_thresholds
from router.settings import Settings
from router.spend.records import UsageRow
from router.storage.records import OutcomeRecord

DAY = 86400.0
TODAY = 1_800_000_000.0 - 1_800_000_000.0 % DAY  # a UTC midnight
NOW = TODAY + 15 * 3600.0
RULE = {"draft_model": "claude-haiku-4-5", "strong_model": "claude-opus-4-8", "requested_model": "cascade/team"}


def record(route: str, at: float, **fields: Any) -> OutcomeRecord:
    rule = RULE if route in ("cache", "draft", "escalated", "strong") else {"requested_model": "gpt-4o"}
    values: dict[str, Any] = {"request_id": f"r{at}-{route}", "created_at": at, "tenant": "user:ann",
                              "endpoint": "messages", "route": route, **rule, **fields}
    return OutcomeRecord(**values)


def traffic() -> list[OutcomeRecord]:
    """Three days of requests: (route, cost, strong-only cost, label) chosen so every total is easy to check."""
    return [
        record("pass_through", TODAY - 2 * DAY + 10, cost_usd=1.0, tenant="user:bob"),
        record("pass_through", TODAY - 2 * DAY + 20, cost_usd=1.0, strong_only_cost_usd=None, tenant="user:bob"),
        record("cache", TODAY - DAY + 10, cache_hit=True, cost_usd=0.0, strong_only_cost_usd=0.5),
        record("draft", TODAY - DAY + 20, accepted=True, cost_usd=0.1, strong_only_cost_usd=1.0, label=True),
        record("draft", TODAY + 10, accepted=True, cost_usd=0.1, strong_only_cost_usd=1.0, label=True),
        record("draft", TODAY + 20, accepted=True, cost_usd=0.1, strong_only_cost_usd=1.0, label=False),
        record("escalated", TODAY + 30, accepted=False, cost_usd=1.2, strong_only_cost_usd=1.0, label=True,
               draft_input_tokens=100, draft_output_tokens=50, confidence=0.41,
               reason="confidence 0.410 below 0.7"),
        record("strong", TODAY + 40, cost_usd=1.0, strong_only_cost_usd=1.0, label=False, prediction=0.2,
               skip_threshold=0.35),
        record("draft", TODAY - 30 * DAY, accepted=True, cost_usd=5.0, strong_only_cost_usd=9.0),  # before the window
    ]


def summary(**options: Any) -> dict[str, Any]:
    folded = Summary(Window.last(7, NOW), draft_price=lambda model, i, o: 0.2 if model == RULE["draft_model"] else None,
                     **options)
    for item in reversed(traffic()):  # any order
        folded.add(item)
    return folded.to_json()


def test_the_wilson_interval_matches_published_values() -> None:
    assert wilson(0, 0) is None
    assert wilson(8, 10) == pytest.approx((0.49016, 0.94332), abs=1e-5)
    assert wilson(0, 5) == pytest.approx((0.0, 0.43448), abs=1e-5)
    assert wilson(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)


def test_the_window_is_whole_utc_days_or_hours() -> None:
    week = Window.last(7, NOW)
    assert week.since == TODAY - 6 * DAY and week.bucket_s == DAY and len(week.starts) == 7
    day = Window.last(1, NOW)
    assert day.bucket_s == 3600 and len(day.starts) == 24 and day.starts[-1] == NOW - (NOW % 3600)
    assert week.index(week.since - 1, 7) is None and week.index(NOW + 999, 7) == 6 and week.index(TODAY + 1, 7) == 6


def test_savings_and_rates_count_as_the_spend_ledger_does() -> None:
    totals = summary()["totals"]
    assert totals["requests"] == 8
    assert totals["actual_usd"] == pytest.approx(4.5)
    assert totals["strong_only_usd"] == pytest.approx(7.5), "an unknown strong-only cost counts at the actual cost"
    assert totals["saved_usd"] == pytest.approx(3.0) and totals["saved_share"] == pytest.approx(0.4)
    assert totals["routes"] == {"cache": 1, "draft": 3, "escalated": 1, "strong": 1, "pass_through": 2, "failed": 0}
    assert totals["cache_hit_rate"] == pytest.approx(1 / 8)
    assert (totals["drafts"], totals["accepted"]) == (4, 3)
    assert totals["acceptance_rate"] == pytest.approx(0.75) and totals["escalation_rate"] == pytest.approx(0.25)
    assert totals["cascade_requests"] == 5 and totals["strong_direct_rate"] == pytest.approx(0.2)


def test_the_series_has_every_bucket_and_adds_up() -> None:
    data = summary()
    series = data["series"]
    assert [point["t"] for point in series] == [TODAY - (6 - i) * DAY for i in range(7)]
    assert [point["requests"] for point in series] == [0, 0, 0, 0, 2, 2, 4]
    assert series[-1]["routes"]["draft"] == 2 and series[-1]["acceptance_rate"] == pytest.approx(2 / 3)
    assert series[0]["acceptance_rate"] is None and series[0]["quality"]["share"] is None
    assert series[-1]["cumulative_saved_usd"] == pytest.approx(data["totals"]["saved_usd"])
    assert [point["quality"]["n"] for point in series[-2:]] == [1, 2]


def test_the_quality_the_savings_cost_comes_from_labels_of_served_drafts() -> None:
    quality = summary()["quality"]
    served = quality["served"]
    assert (served["n"], served["agreed"]) == (3, 2) and served["share"] == pytest.approx(2 / 3)
    assert (served["low"], served["high"]) == pytest.approx(wilson(2, 3))
    assert quality["escalated"]["n"] == 1 and quality["escalated"]["agreed"] == 1, "an escalation it did not need"
    assert quality["skipped"]["n"] == 1 and quality["skipped"]["agreed"] == 0
    assert quality["explored_share"] == pytest.approx(1.0) and quality["confidence"] == 0.95
    (rule,) = quality["by_rule"]
    assert rule["rule"] == "cascade/team" and rule["draft_model"] == "claude-haiku-4-5"
    assert rule["requests"] == 5 and rule["served_drafts"] == 3 and rule["served"] == served


def test_quality_is_kept_per_rule() -> None:
    folded = Summary(Window.last(7, NOW))
    for index, good in enumerate((True, True, False, True)):
        folded.add(record("draft", TODAY + index, accepted=True, label=good))
    folded.add(record("draft", TODAY + 9, accepted=True, label=False, requested_model="claude-sonnet-4-5"))
    folded.add(record("draft", TODAY + 10, accepted=True, requested_model="claude-sonnet-4-5"))  # not explored
    rules = {row["rule"]: row for row in folded.to_json()["quality"]["by_rule"]}
    assert rules["cascade/team"]["served"]["share"] == pytest.approx(0.75)
    assert rules["claude-sonnet-4-5"]["served"]["n"] == 1 and rules["claude-sonnet-4-5"]["explored_share"] == 0.5


def test_spend_by_model_splits_a_thrown_away_draft_from_the_strong_answer() -> None:
    models = {row["model"]: row for row in summary()["spend_by_model"]}
    assert models["gpt-4o"]["usd"] == pytest.approx(2.0) and models["gpt-4o"]["answers"] == 2
    assert models["claude-opus-4-8"]["usd"] == pytest.approx(2.0)  # escalated 1.2 - 0.2 draft, strong 1.0
    assert models["claude-haiku-4-5"]["served_usd"] == pytest.approx(0.3)
    assert models["claude-haiku-4-5"]["rejected_draft_usd"] == pytest.approx(0.2)
    escalated = record("escalated", NOW, cost_usd=1.2, draft_input_tokens=100, draft_output_tokens=50)
    assert spend_parts(escalated, None) == [("claude-opus-4-8", 1.2, False)], "an unpriced draft: all to strong"
    assert spend_parts(escalated, lambda *_: 9.0) == [("claude-haiku-4-5", 1.2, True)], "never more than the cost"
    assert spend_parts(record("cache", NOW, cost_usd=0.0), None) == []


def test_spend_by_user_sums_the_ledger_rows_of_each_user() -> None:
    def row(day: str, tenant: str, user: str | None, requests: int, actual: float, strong: float) -> UsageRow:
        return UsageRow(day, tenant, user, None, requests, actual, strong, 0.0, 0, 0, 0, 0)

    users = spend_by_user([row("2027-01-01", "t1", "ann", 2, 1.0, 3.0), row("2027-01-02", "t1", "ann", 1, 0.5, 0.5),
                           row("2027-01-02", "key:abc", None, 4, 2.0, 2.0)])
    assert [(u["user"], u["requests"], u["actual_usd"], u["saved_usd"]) for u in users] == [
        ("key:abc", 4, 2.0, 0.0), ("ann", 3, 1.5, 2.0)]


def test_the_latest_decisions_come_newest_first_with_their_thresholds() -> None:
    decisions = summary(latest=3, thresholds={"cascade/team": RuleThresholds(0.7, 0.55)})["decisions"]
    assert [d["route"] for d in decisions] == ["strong", "escalated", "draft"]
    strong, escalated, _ = decisions
    assert (strong["router_p_good"], strong["skip_threshold"]) == (0.2, 0.35) and strong["label"] is False
    assert (escalated["accept_threshold"], escalated["accept_threshold_from"]) == (0.7, "decision")
    assert escalated["draft_model"] == "claude-haiku-4-5" and escalated["reason"] == "confidence 0.410 below 0.7"
    assert "prompt" not in escalated and "label_detail" not in escalated


def test_an_accepted_draft_shows_the_running_threshold_of_its_judge() -> None:
    current = {"cascade/team": RuleThresholds(0.7, 0.55)}
    by_verifier = record("draft", NOW, confidence=0.8, components={"verifier": 0.8, "hedging": 0.1})
    assert accept_threshold(by_verifier, current) == (0.55, "current")
    assert accept_threshold(record("draft", NOW, confidence=0.9), current) == (0.7, "current")
    assert accept_threshold(record("draft", NOW), current) == (None, None), "no draft judged"
    assert accept_threshold(record("draft", NOW, confidence=0.9, requested_model="gone"), current) == (None, None)


def test_prompt_text_is_shown_only_with_content_logging() -> None:
    item = record("draft", NOW, prompt_text="x" * 500, label_detail="draft 4 vs strong 4")
    assert "prompt" not in decision_json(item, {}, show_content=False)
    shown = decision_json(item, {}, show_content=True)
    assert shown["prompt"] == "x" * 300 and shown["label_detail"] == "draft 4 vs strong 4"


def test_rule_thresholds_name_each_rule_by_every_model_that_selects_it() -> None:
    settings = Settings(providers={}, cascade_rules=[
        {"name": "team", "request_model": "claude-sonnet-4-5", "draft_model": "a", "verifier_model": "b",
         "quality_threshold": 0.6},
        {"name": "other", "draft_model": "c", "verifier_model": "d"}])
    assert rule_thresholds(settings, None) == {"claude-sonnet-4-5": RuleThresholds(0.6), "cascade/team":
                                               RuleThresholds(0.6), "cascade/other": RuleThresholds(0.7)}
