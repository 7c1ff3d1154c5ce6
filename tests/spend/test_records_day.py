"""The spend row's UTC day: the day number decides, exactly as a formatted date would."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from router.spend.records import utc_day


@pytest.mark.parametrize("moment", [0.0, -0.5, 86399.999999, 86400.0, 951782400.0 - 1e-3, 951782400.0, 1764460800.0])
def test_the_day_of_a_moment_at_day_edges(moment: float) -> None:
    assert utc_day(moment) == datetime.fromtimestamp(moment, tz=UTC).strftime("%Y-%m-%d")


def test_the_day_of_random_moments_matches_a_formatted_date() -> None:
    moments = random.Random(7)
    for _ in range(20_000):
        moment = moments.uniform(-2e9, 4e9)
        assert utc_day(moment) == datetime.fromtimestamp(moment, tz=UTC).strftime("%Y-%m-%d")
