"""The spend ledger's rows: one per finished request, built from its ledger entry; and the SQL both backends share.

A row holds who spent (tenant, user, key id, tier), what was asked (endpoint, requested model, route, status) and
the money: the actual cost (the served answer and a thrown-away draft, cache reads and writes priced), the
strong-only cost (what the strong model alone would have cost; unknown for some failures) and the wasted draft.
Days are UTC dates (`YYYY-MM-DD`), stored with the row so both backends group by the same text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from router.auth_keys.admission import KeyPrincipal
from router.costs import TokenUsage

if TYPE_CHECKING:
    from router.pipeline.outcome import Outcome

TABLE = "cascadeflow_spend"
GroupBy = Literal["day", "user", "key"]


@dataclass(frozen=True)
class SpendRecord:
    """One request's spend."""

    request_id: str
    created_at: float
    day: str
    tenant: str
    user_name: str | None
    key_id: str | None
    tier: str | None
    endpoint: str
    model: str
    route: str
    status: int
    actual_usd: float
    strong_only_usd: float | None
    wasted_usd: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int

    def row(self) -> tuple[Any, ...]:
        """The values of COLUMNS."""
        return tuple(getattr(self, name) for name in COLUMNS)

    def to_json(self) -> dict[str, Any]:
        """For the spool."""
        return asdict(self)

    @classmethod
    def of_json(cls, data: dict[str, Any]) -> SpendRecord:
        """From `to_json`."""
        return cls(**{name: data[name] for name in COLUMNS})


COLUMNS = tuple(field.name for field in fields(SpendRecord))


def utc_day(moment: float) -> str:
    """The UTC date of a moment, as `YYYY-MM-DD` (POSIX time has 86,400 seconds a day: the day number decides)."""
    return _day_name(int(moment // 86400))


@lru_cache(maxsize=4)
def _day_name(day: int) -> str:
    """The `YYYY-MM-DD` of a day number since 1970-01-01 (formatting a date cost 2% of a request's CPU)."""
    return datetime.fromtimestamp(day * 86400, tz=UTC).strftime("%Y-%m-%d")


def spend_record(outcome: Outcome) -> SpendRecord:
    """The spend row of a finished request."""
    call, entry = outcome.call, outcome.ledger
    principal = call.principal
    keyed = principal if isinstance(principal, KeyPrincipal) else None
    usage = sum((charge.usage for charge in (entry.served, entry.wasted_draft) if charge is not None), TokenUsage())
    created = outcome.clock.created_at
    return SpendRecord(
        request_id=call.request_id, created_at=created, day=utc_day(created), tenant=principal.tenant,
        user_name=keyed.user if keyed else None, key_id=keyed.key_id if keyed else None,
        tier=keyed.tier if keyed else None, endpoint=call.endpoint.value, model=call.model, route=outcome.plan.route,
        status=outcome.status, actual_usd=entry.actual_usd, strong_only_usd=entry.strong_only_usd,
        wasted_usd=entry.wasted_usd,
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens)


@dataclass(frozen=True)
class UsageQuery:
    """Which rows to sum: a range of UTC days (both included), whose (None: everyone's), grouped how."""

    start: date
    end: date
    tenant: str | None = None
    user: str | None = None
    group_by: GroupBy = "user"


SUMS = ("requests", "actual_usd", "strong_only_usd", "wasted_usd", "input_tokens", "output_tokens",
        "cache_read_tokens", "cache_write_tokens")


@dataclass(frozen=True)
class UsageRow:
    """The spend of one day (of one user, of one key, as grouped)."""

    day: str
    tenant: str | None
    user: str | None
    key_id: str | None
    requests: int
    actual_usd: float
    strong_only_usd: float
    """A request whose strong-only cost is unknown (a failure) counts at its actual cost."""
    wasted_usd: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int

    @property
    def saved_usd(self) -> float:
        """Strong-only minus actual."""
        return self.strong_only_usd - self.actual_usd

    def to_json(self, group_by: GroupBy) -> dict[str, Any]:
        """As `/v1/usage` shows it."""
        shown: dict[str, Any] = {"date": self.day}
        if group_by != "day":
            shown["user"] = self.user if self.user is not None else self.tenant
        if group_by == "key":
            shown["key_id"] = self.key_id
        return {**shown, **money(self)}


def money(row: UsageRow | Totals) -> dict[str, Any]:
    """The sums of a row, as JSON."""
    return {"requests": row.requests, "actual_cost_usd": round(row.actual_usd, 8),
            "strong_only_cost_usd": round(row.strong_only_usd, 8), "saved_usd": round(row.saved_usd, 8),
            "wasted_draft_usd": round(row.wasted_usd, 8), "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens, "cache_read_tokens": row.cache_read_tokens,
            "cache_write_tokens": row.cache_write_tokens}


@dataclass(frozen=True)
class Totals:
    """The sums of several rows."""

    requests: int = 0
    actual_usd: float = 0.0
    strong_only_usd: float = 0.0
    wasted_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def saved_usd(self) -> float:
        """Strong-only minus actual."""
        return self.strong_only_usd - self.actual_usd

    @classmethod
    def of(cls, rows: Sequence[UsageRow]) -> Totals:
        """The sums of rows."""
        return cls(*(sum(getattr(row, name) for row in rows) for name in SUMS))


_GROUPS: dict[GroupBy, tuple[str, ...]] = {"day": ("day",), "user": ("day", "tenant", "user_name"),
                                           "key": ("day", "tenant", "user_name", "key_id")}


def usage_sql(query: UsageQuery, placeholder: Callable[[int], str]) -> tuple[str, list[object]]:
    """The aggregation of a usage query (placeholders `?` or `$n`)."""
    groups = _GROUPS[query.group_by]
    conditions = ["day >= {}", "day <= {}"]
    parameters: list[object] = [query.start.isoformat(), query.end.isoformat()]
    for column, value in (("tenant", query.tenant), ("user_name", query.user)):
        if value is not None:
            conditions.append(f"{column} = {{}}")
            parameters.append(value)
    where = " AND ".join(condition.format(placeholder(index + 1)) for index, condition in enumerate(conditions))
    selected = [name if name in groups else f"NULL AS {name}" for name in ("day", "tenant", "user_name", "key_id")]
    sql = (f"SELECT {', '.join(selected)}, COUNT(*) AS requests, SUM(actual_usd) AS actual_usd, "
           "SUM(COALESCE(strong_only_usd, actual_usd)) AS strong_only_usd, SUM(wasted_usd) AS wasted_usd, "
           "SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens, "
           "SUM(cache_read_tokens) AS cache_read_tokens, SUM(cache_write_tokens) AS cache_write_tokens "
           f"FROM {TABLE} WHERE {where} GROUP BY {', '.join(groups)} ORDER BY {', '.join(groups)}")
    return sql, parameters


def usage_row(row: Any) -> UsageRow:
    """A row of `usage_sql`'s result (a mapping by column name)."""
    def usd(name: str) -> float:
        return float(row[name] or 0.0)

    def tokens(name: str) -> int:
        return int(row[name] or 0)

    return UsageRow(str(row["day"]), row["tenant"], row["user_name"], row["key_id"], int(row["requests"]),
                    usd("actual_usd"), usd("strong_only_usd"), usd("wasted_usd"), tokens("input_tokens"),
                    tokens("output_tokens"), tokens("cache_read_tokens"), tokens("cache_write_tokens"))


def scope_totals_sql(placeholder: Callable[[int], str]) -> str:
    """The spend of keyed requests per day, key, user and tier since a day (one parameter), to start budgets."""
    return (f"SELECT day, key_id, user_name, tier, SUM(actual_usd) AS usd FROM {TABLE} "
            f"WHERE day >= {placeholder(1)} AND key_id IS NOT NULL GROUP BY day, key_id, user_name, tier")
