"""The verifier's policy profiles: one pair of thresholds (router skip, verifier accept) per kind of model pair.

A profile is the part of a row's source before the first `/` (`routellm/gsm8k` -> `routellm`, `local/short` ->
`local`): rows of one profile come from one model pair. Each profile's pair is chosen on its own rows (see
training/policy.py), including its rows without a draft answer (RouteLLM's MMLU: the router alone decides
them), so the skip threshold is chosen with every kind of request in view, but never on rows the router was
trained on (its predictions there are in-sample). The profile with the most rows is
the artifact's default pair; a rule picks another with `verify: {profile: <name>}`. Outcome-log rows
(training/verifier_log.py) are the profile `log`. A profile none of whose rows has the router's prediction
(a log the router did not route) gets no skip threshold: the router's own applies to it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from router.policy.classifier import file_sha256
from training.dataset import split_of
from training.policy import Floats, PolicyPoint, choose_policy, evaluate, frontier, policy_grid
from training.policy_data import policy_data

UNDRAFTED_PER_SOURCE = 2000
"""At most this many rows without a draft answer per source join the choice (they only need the router)."""


def profile_of(source: str) -> str:
    """The profile of a data source."""
    return source.split("/", 1)[0] or "data"


DATA_SHA256 = "_data_sha256"
"""The key under which a loaded row carries the sha256 of the file it came from."""


def load_undrafted(paths: Sequence[Path], limit: int = UNDRAFTED_PER_SOURCE) -> list[dict[str, Any]]:
    """Labelled rows without a draft answer (with both models' scores), at most `limit` per source: validation
    and test rows first (a router never trained on them), then by hash of the id (the same rows every run)."""
    by_source: dict[str, list[tuple[tuple[bool, str], dict[str, Any]]]] = {}
    for path in paths:
        digest = file_sha256(path)
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                if not row.get("draft_response") and "draft_score" in row and "strong_score" in row:
                    example = str(row.get("id"))
                    key = (split_of(example) == "train", hashlib.sha256(example.encode()).hexdigest())
                    by_source.setdefault(str(row.get("source") or "data"), []).append(
                        (key, row | {DATA_SHA256: digest}))
    return [row for rows in by_source.values() for _, row in sorted(rows, key=lambda item: item[0])[:limit]]


def router_in_sample(rows: Sequence[dict[str, Any]], router_dir: Path | None) -> NDArray[np.bool_]:
    """Rows the router artifact was trained on (the train split of a file in its training data): its
    predictions there are in-sample, too confident to choose a skip threshold on."""
    if router_dir is None:
        return np.zeros(len(rows), dtype=bool)
    metadata = json.loads((router_dir / "metadata.json").read_text(encoding="utf-8"))
    trained = {str(item.get("sha256")) for item in metadata.get("training_data", []) if isinstance(item, dict)}
    return np.array([row.get(DATA_SHA256) in trained and split_of(str(row.get("id"))) == "train" for row in rows],
                    dtype=bool)


@dataclass(frozen=True)
class ProfileChoice:
    """One profile's pair: where it was chosen (out of fold), how it did on the test split, and the curve."""

    name: str
    rows: int
    chosen: PolicyPoint
    test: PolicyPoint
    curve: list[tuple[float, PolicyPoint | None]]
    routed: bool = True
    """Whether its rows had the router's predictions (the skip threshold was chosen on something)."""

    def thresholds(self, with_router: bool) -> dict[str, Any]:
        """For the artifact's metadata."""
        pair: dict[str, Any] = {"accept_threshold": min(self.chosen.accept_threshold, 1.0),
                                "chosen_on": self.chosen.as_dict(), "test": self.test.as_dict()}
        return pair | ({"skip_threshold": self.chosen.skip_threshold} if with_router and self.routed else {})


@dataclass(frozen=True)
class Judged:
    """Rows with the router's and the verifier's predictions (NaN where absent)."""

    rows: list[dict[str, Any]]
    p_router: Floats | None
    p_verify: Floats

    def of_profile(self, name: str) -> Judged:
        """The rows of one profile."""
        mask = np.array([profile_of(str(row.get("source") or "data")) == name for row in self.rows], dtype=bool)
        return Judged([row for row, keep in zip(self.rows, mask, strict=True) if keep],
                      self.p_router[mask] if self.p_router is not None else None, self.p_verify[mask])

    def plus(self, other: Judged) -> Judged:
        """These rows and the other's."""
        router = None if self.p_router is None or other.p_router is None else np.concatenate(
            [self.p_router, other.p_router])
        return Judged(self.rows + other.rows, router, np.concatenate([self.p_verify, other.p_verify]))


def choose_profiles(fit: Judged, test: Judged, *, target: float, margin_z: float, targets: tuple[float, ...],
                    max_served_worse: float = 1.0, served_worse_z: float = 0.0) -> list[ProfileChoice]:
    """Each profile's pair, chosen on its fit rows and evaluated on its test rows; the largest first."""
    names = sorted({profile_of(str(row.get("source") or "data")) for row in fit.rows})
    choices = []
    for name in names:
        fit_part, test_part = fit.of_profile(name), test.of_profile(name)
        data = policy_data(fit_part.rows, fit_part.p_router, fit_part.p_verify)
        points = policy_grid(data)
        chosen = choose_policy(data, target, margin_z, points, max_served_worse, served_worse_z)
        test_data = policy_data(test_part.rows, test_part.p_router, test_part.p_verify)
        choices.append(ProfileChoice(name, len(fit_part.rows), chosen,
                                     evaluate(test_data, chosen.skip_threshold, chosen.accept_threshold),
                                     frontier(points, targets, margin_z, max_served_worse, served_worse_z),
                                     routed=not np.isnan(data.p_router).all()))
    return sorted(choices, key=lambda choice: -choice.rows)
