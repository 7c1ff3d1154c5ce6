"""The joint policy: the skip and accept thresholds chosen together for a quality target at the lowest cost."""

from __future__ import annotations

import numpy as np

from training.policy import PolicyData, choose_policy, decide, evaluate, frontier, policy_grid


def data(p_router: list[float], p_verify: list[float], draft_quality: list[float], *,
         groups: list[str] | None = None, draft_cost: float = 1.0, strong_cost: float = 10.0) -> PolicyData:
    n = len(p_router)
    return PolicyData(np.array(p_router, dtype=float), np.array(p_verify, dtype=float),
                      np.array(draft_quality, dtype=float), np.ones(n), np.full(n, draft_cost),
                      np.full(n, strong_cost), np.array(groups or ["a"] * n))


def test_skipped_drafted_served_and_escalated_requests_are_priced_as_they_run() -> None:
    rows = data([0.1, 0.9, 0.9], [0.9, 0.9, 0.2], [0.0, 1.0, 0.0])
    drafted, strong = decide(rows, skip_threshold=0.5, accept_threshold=0.5)
    assert drafted.tolist() == [False, True, True] and strong.tolist() == [True, False, True]
    point = evaluate(rows, 0.5, 0.5)
    assert point.quality_ratio == 1.0 and point.served_wrong == 0.0
    assert point.cost_saved == 1.0 - (10 + 1 + 11) / 30, "an escalated request pays the draft and the strong model"


def test_the_cheapest_pair_that_keeps_the_target_is_chosen() -> None:
    # The verifier separates right drafts (0.8) from wrong ones (0.3); the router knows nothing.
    p_verify = [0.8] * 30 + [0.3] * 10
    rows = data([0.5] * 40, p_verify, [1.0] * 30 + [0.0] * 10)
    point = choose_policy(rows, 0.95, margin_z=0.0)
    assert 0.3 < point.accept_threshold <= 0.8 and point.skip_threshold <= 0.5
    assert point.quality_ratio == 1.0 and point.served_by_draft == 0.75


def test_skipping_pays_when_drafts_are_mostly_escalated_anyway() -> None:
    # Half the requests are hopeless for the draft and the router knows it: skipping them saves the wasted draft.
    rows = data([0.1] * 20 + [0.9] * 20, [0.1] * 20 + [0.9] * 20, [0.0] * 20 + [1.0] * 20, draft_cost=3.0)
    point = choose_policy(rows, 0.95, margin_z=0.0)
    assert 0.1 < point.skip_threshold <= 0.9 and point.drafted == 0.5
    drafting_all = evaluate(rows, 0.0, 0.5)  # the verifier alone also keeps quality, but pays the hopeless drafts
    assert drafting_all.quality_ratio == point.quality_ratio == 1.0
    assert point.cost_saved > drafting_all.cost_saved


def test_every_group_must_reach_the_target_and_none_reachable_means_strong_only() -> None:
    # Group b's drafts are all wrong but look as good as group a's: only serving no draft keeps b at 95%.
    rows = data([0.5] * 40, [0.9] * 40, [1.0] * 20 + [0.0] * 20, groups=["a"] * 20 + ["b"] * 20)
    point = choose_policy(rows, 0.95, margin_z=0.0)
    assert point.served_by_draft == 0.0 and point.worst_group_ratio == 1.0


def test_a_margin_asks_more_of_a_small_noisy_group() -> None:
    rows = data([0.5] * 20, [0.9] * 19 + [0.95], [1.0] * 19 + [0.0])  # 95% kept by serving all drafts
    assert choose_policy(rows, 0.95, margin_z=0.0).served_by_draft == 1.0
    assert choose_policy(rows, 0.95, margin_z=1.0).served_by_draft < 1.0


def test_missing_predictions_never_skip_and_always_serve_the_draft() -> None:
    rows = data([float("nan")] * 4, [float("nan")] * 4, [1.0] * 4)
    drafted, strong = decide(rows, 0.9, 0.9)
    assert drafted.all() and not strong.any()


def test_the_curve_gets_no_cheaper_as_the_target_rises() -> None:
    rng = np.random.default_rng(0)
    good = rng.random(200) < 0.7
    rows = data(list(np.clip(good * 0.3 + rng.random(200) * 0.7, 0, 1)),
                list(np.clip(good * 0.5 + rng.random(200) * 0.5, 0, 1)), list(good.astype(float)))
    curve = frontier(policy_grid(rows), (0.8, 0.9, 0.95, 0.99))
    saved = [point.cost_saved for _, point in curve if point is not None]
    assert saved == sorted(saved, reverse=True) and len(saved) >= 3


def test_a_cap_on_served_drafts_worse_than_the_strong_answer_holds_where_the_mean_would_not() -> None:
    # 85 right drafts and 15 wrong ones: serving all keeps 85%; the verifier ranks the wrong ones lower but mixed.
    p_verify = [0.9] * 80 + [0.6] * 5 + [0.6] * 5 + [0.2] * 10
    rows = data([0.5] * 100, p_verify, [1.0] * 85 + [0.0] * 15)
    loose = choose_policy(rows, 0.90, margin_z=0.0)
    assert loose.served_wrong > 0.05, "the target alone lets the mixed band be served"
    capped = choose_policy(rows, 0.90, margin_z=0.0, max_served_worse=0.05)
    assert capped.served_wrong <= 0.05 and capped.served_by_draft == 0.8


def test_the_cap_holds_with_a_margin_so_a_few_lucky_served_drafts_prove_little() -> None:
    # 19 right drafts and 1 wrong one among those served: 5% measured, but the Wilson bound at z=1 is above 10%.
    rows = data([0.5] * 40, [0.9] * 20 + [0.1] * 20, [1.0] * 19 + [0.0] + [0.0] * 20)
    assert choose_policy(rows, 0.4, margin_z=0.0, max_served_worse=0.10).served_by_draft == 0.5
    assert choose_policy(rows, 0.4, margin_z=0.0, max_served_worse=0.10, served_worse_z=1.0).served_by_draft == 0.0
