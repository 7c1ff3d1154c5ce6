"""Usage queries: a caller's request parameters to the rows it may see, and the report `/v1/usage` answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any, cast

from router.auth_keys.admission import KeyPrincipal
from router.errors import InvalidRequestError, PermissionDeniedError
from router.spend.records import GroupBy, Totals, UsageQuery, UsageRow, money
from router.types import Principal

DEFAULT_DAYS = 7
MAX_DAYS = 366
GROUPS = ("day", "user", "key")


def _date(params: Mapping[str, str], name: str) -> date | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidRequestError(f"{name}: not a date (YYYY-MM-DD): {text!r}", param=name) from None


def _days(params: Mapping[str, str]) -> int:
    text = params.get("days") or str(DEFAULT_DAYS)
    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise InvalidRequestError(f"days: a whole number from 1 to {MAX_DAYS}, got {text!r}", param="days")
    return int(text)


def date_range(start: date | None, end: date | None, days: int, today: date) -> tuple[date, date]:
    """The days asked for: `start`..`end` (both included), by default the last `days` days up to `end` (today)."""
    end = end or (start + timedelta(days=days - 1) if start is not None else today)
    start = start or end - timedelta(days=days - 1)
    if start > end:
        raise InvalidRequestError(f"start ({start}) is after end ({end})", param="start")
    if (end - start).days >= MAX_DAYS:
        raise InvalidRequestError(f"at most {MAX_DAYS} days at once", param="start")
    return start, end


def usage_query(principal: Principal, params: Mapping[str, str], today: date) -> UsageQuery:
    """What a caller may read: an admin key everyone's (or one `user`'s), anyone else their own user's (all its
    keys) or, without a proxy key, their own key's. Asking for another user is refused (403)."""
    group_by = params.get("group_by") or "user"
    if group_by not in GROUPS:
        raise InvalidRequestError(f"group_by: one of {', '.join(GROUPS)}, got {group_by!r}", param="group_by")
    start, end = date_range(_date(params, "start"), _date(params, "end"), _days(params), today)
    user = params.get("user") or None
    if isinstance(principal, KeyPrincipal) and principal.admin:
        return UsageQuery(start, end, None, user, cast(GroupBy, group_by))
    own = principal.user if isinstance(principal, KeyPrincipal) else None
    if user is not None and user != own:
        raise PermissionDeniedError("only an admin key may read another user's usage", param="user")
    return UsageQuery(start, end, principal.tenant, None, cast(GroupBy, group_by))


def report(query: UsageQuery, rows: Sequence[UsageRow]) -> dict[str, Any]:
    """The answer of `/v1/usage`: the rows by day, and their totals."""
    return {"object": "usage", "start": query.start.isoformat(), "end": query.end.isoformat(),
            "group_by": query.group_by, "scope": "all" if query.tenant is None else "own",
            "data": [row.to_json(query.group_by) for row in rows], "total": money(Totals.of(rows))}
