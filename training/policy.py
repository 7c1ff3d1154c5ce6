"""One cost-aware serving policy: the router's skip threshold and the verifier's accept threshold, chosen together.

The policy, per request: below the skip threshold on the router's P(draft good enough) the request goes straight
to the strong model; otherwise the draft runs (its cost is paid), and it is served when the verifier's
P(draft good enough | answer) reaches the accept threshold, else escalated (draft and strong both paid). For a
stated quality target (say 95% of the strong model's quality) `choose_policy` searches the pairs of thresholds
and keeps the cheapest one whose quality reaches the target in every group of requests (each data source), so a
large source cannot hide a loss on a small one, with a margin for the noise of small groups: per group, the mean
of (quality - target x strong quality) must stay above zero by `margin_z` standard errors. A cap on the share of
served drafts that are worse than the strong model's answer (`max_served_worse`) keeps the promise a mean
cannot: few served drafts may be wrong even where many right ones make up the average. A request worth
drafting is then one where P(accept) x savings beats the draft's cost: the search prices both outcomes, it does
not assume drafting is free.

Requests without a router prediction are never skipped; requests without a verifier prediction (no draft
answer in the data) are served by the draft when drafted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Mask = NDArray[np.bool_]
GRID = 81
"""Candidate thresholds per axis: quantiles of the predictions (plus 0 and 1)."""


@dataclass(frozen=True)
class PolicyData:
    """Per request: both predictions (NaN where absent), qualities on [0, 1], estimated costs, and a group."""

    p_router: Floats
    p_verify: Floats
    draft_quality: Floats
    strong_quality: Floats
    draft_cost: Floats
    strong_cost: Floats
    groups: NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.p_router)

    def subset(self, mask: Mask) -> PolicyData:
        """The requests where `mask` is true."""
        return PolicyData(self.p_router[mask], self.p_verify[mask], self.draft_quality[mask],
                          self.strong_quality[mask], self.draft_cost[mask], self.strong_cost[mask], self.groups[mask])


@dataclass(frozen=True)
class PolicyPoint:
    """A pair of thresholds and what it achieves: quality and cost against always-strong, shares of requests."""

    skip_threshold: float
    accept_threshold: float
    quality_ratio: float
    worst_group_ratio: float
    cost_saved: float
    drafted: float
    served_by_draft: float
    served_wrong: float
    """Among drafts served, the share whose quality is below the strong model's (a worse answer)."""
    served_count: int = 0
    """How many drafts were served (the sample `served_wrong` is measured on)."""
    moments: tuple[tuple[float, float, float, float, float, float], ...] = ()
    """Per group: n and the sums of q, q², s, s² and q·s (q the policy's quality, s the strong model's)."""

    def as_dict(self) -> dict[str, float]:
        """For artifact metadata and reports."""
        return {key: float(value) for key, value in self.__dict__.items() if key != "moments"}


def decide(data: PolicyData, skip_threshold: float, accept_threshold: float) -> tuple[Mask, Mask]:
    """(drafted, answered by the strong model) for every request under a pair of thresholds."""
    drafted = ~(data.p_router < skip_threshold)  # NaN compares False: never skipped
    accepted = np.where(np.isnan(data.p_verify), True, data.p_verify >= accept_threshold)
    return drafted, ~drafted | ~accepted


def evaluate(data: PolicyData, skip_threshold: float, accept_threshold: float) -> PolicyPoint:
    """Quality and cost of one pair of thresholds on `data`."""
    drafted, strong = decide(data, skip_threshold, accept_threshold)
    quality = np.where(strong, data.strong_quality, data.draft_quality)
    cost = np.where(drafted, data.draft_cost, 0.0) + np.where(strong, data.strong_cost, 0.0)
    ratios = [float(quality[data.groups == g].sum()) / max(float(data.strong_quality[data.groups == g].sum()), 1e-12)
              for g in np.unique(data.groups)]
    served = drafted & ~strong
    worse = served & (data.draft_quality < data.strong_quality)
    moments = []
    for group in np.unique(data.groups):
        q, s = quality[data.groups == group], data.strong_quality[data.groups == group]
        moments.append((float(len(q)), float(q.sum()), float((q * q).sum()), float(s.sum()), float((s * s).sum()),
                        float((q * s).sum())))
    return PolicyPoint(
        skip_threshold=skip_threshold, accept_threshold=accept_threshold,
        quality_ratio=float(quality.sum()) / max(float(data.strong_quality.sum()), 1e-12),
        worst_group_ratio=min(ratios) if ratios else math.nan,
        cost_saved=1.0 - float(cost.sum()) / max(float(data.strong_cost.sum()), 1e-12),
        drafted=float(drafted.mean()) if len(data) else math.nan,
        served_by_draft=float(served.mean()) if len(data) else math.nan,
        served_wrong=float(worse.sum()) / int(served.sum()) if served.any() else 0.0, served_count=int(served.sum()),
        moments=tuple(moments))


def _candidates(values: Floats) -> list[float]:
    known = values[~np.isnan(values)]
    inner = np.quantile(known, np.linspace(0.0, 1.0, GRID)) if len(known) else np.array([])
    return sorted({0.0, 1.0 + 1e-9, *(round(float(v), 6) for v in inner)})


def policy_grid(data: PolicyData) -> list[PolicyPoint]:
    """Every pair of candidate thresholds, evaluated."""
    skips = _candidates(data.p_router) if not np.isnan(data.p_router).all() else [0.0]
    accepts = _candidates(data.p_verify) if not np.isnan(data.p_verify).all() else [0.0]
    return [evaluate(data, skip, accept) for skip in skips for accept in accepts]


def reaches(point: PolicyPoint, target: float, margin_z: float) -> bool:
    """Whether a pair keeps `target` of the strong model's quality in every group, `margin_z` standard errors
    clear of it: per group, the mean of (quality - target x strong quality) less `margin_z` standard errors
    stays at or above zero (computed from the point's per-group moments)."""
    for n, q, qq, s, ss, qs in point.moments:
        mean = (q - target * s) / n
        if n > 1:
            square = qq - 2 * target * qs + target * target * ss  # sum of (q - t s)^2
            variance = max((square - n * mean * mean) / (n - 1), 0.0)
            error = math.sqrt(variance / n)
        else:
            error = 0.0
        if mean - margin_z * error < -1e-12:
            return False
    return True


def served_worse_bound(point: PolicyPoint, z: float) -> float:
    """The Wilson upper bound, `z` standard errors up, on the share of served drafts worse than the strong answer:
    a handful of served drafts with none wrong proves little."""
    n, share = point.served_count, point.served_wrong
    if n == 0:
        return 0.0
    centre = share + z * z / (2 * n)
    spread = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (centre + spread) / (1 + z * z / n)


def acceptable(point: PolicyPoint, target: float, margin_z: float, max_served_worse: float,
               served_worse_z: float) -> bool:
    """Whether a pair reaches the target (see `reaches`) and its served drafts are worse than the strong answer
    at most `max_served_worse` of the time, `served_worse_z` standard errors clear (Wilson bound)."""
    return reaches(point, target, margin_z) and (
        max_served_worse >= 1.0 or served_worse_bound(point, served_worse_z) <= max_served_worse + 1e-12)


def _cheapest(points: list[PolicyPoint]) -> PolicyPoint:
    return max(points, key=lambda p: (round(p.cost_saved, 9), -p.drafted, p.quality_ratio))


def choose_policy(data: PolicyData, target: float, margin_z: float = 1.0, points: list[PolicyPoint] | None = None,
                  max_served_worse: float = 1.0, served_worse_z: float = 0.0) -> PolicyPoint:
    """The cheapest pair (of `points`, else the whole grid) that is `acceptable`; always-strong (skip
    everything) when none is. Ties go to the pair that drafts less."""
    feasible = [p for p in (points if points is not None else policy_grid(data))
                if acceptable(p, target, margin_z, max_served_worse, served_worse_z)]
    return _cheapest(feasible) if feasible else evaluate(data, 1.0 + 1e-9, 1.0 + 1e-9)


def frontier(points: list[PolicyPoint], targets: tuple[float, ...], margin_z: float = 1.0,
             max_served_worse: float = 1.0, served_worse_z: float = 0.0) -> list[tuple[float, PolicyPoint | None]]:
    """The curve: for each quality target, the cheapest evaluated pair reaching it (as `choose_policy`)."""
    out: list[tuple[float, PolicyPoint | None]] = []
    for target in sorted(targets):
        feasible = [p for p in points if acceptable(p, target, margin_z, max_served_worse, served_worse_z)]
        out.append((target, _cheapest(feasible) if feasible else None))
    return out


def curve_table(points: list[tuple[float, PolicyPoint | None]]) -> list[str]:
    """Markdown rows of the curve."""
    lines = ["| quality target | skip below | accept from | quality kept | worst source | cost saved | drafted "
             "| served by draft | served drafts worse |", "|---|---|---|---|---|---|---|---|---|"]
    for target, point in points:
        if point is None:
            lines.append(f"| {100 * target:.0f}% | – | – | not reachable | | | | | |")
            continue
        lines.append(f"| {100 * target:.0f}% | {point.skip_threshold:.3f} | {min(point.accept_threshold, 1.0):.3f} "
                     f"| {100 * point.quality_ratio:.1f}% | {100 * point.worst_group_ratio:.1f}% "
                     f"| {100 * point.cost_saved:.1f}% | {100 * point.drafted:.1f}% "
                     f"| {100 * point.served_by_draft:.1f}% | {100 * point.served_wrong:.1f}% |")
    return lines
