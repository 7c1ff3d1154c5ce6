"""`cascadeflow usage`: spend and savings per day (per user, per key), read from the spend ledger's database."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime
from typing import Any, cast

import orjson

from router.auth_keys.store import public_url
from router.errors import ConfigError, InvalidRequestError
from router.settings import config_path_from_environment, load_settings
from router.spend.query import DEFAULT_DAYS, GROUPS, MAX_DAYS, date_range, report
from router.spend.records import GroupBy, Totals, UsageQuery, UsageRow
from router.spend.stores import open_spend_store

CONFIG_HELP = ("YAML config file naming the spend ledger (spend.url; default: $CASCADEFLOW_CONFIG, else none: "
               "sqlite:///var/spend.sqlite under the user data directory)")


async def _read(url: str, query: UsageQuery) -> list[UsageRow]:
    store = open_spend_store(url)
    try:
        return await store.usage(query)
    finally:
        await store.close()


def _percent(saved: float, strong_only: float) -> str:
    return f"{100.0 * saved / strong_only:.1f}%" if strong_only > 0 else "-"


def table(rows: list[UsageRow], group_by: GroupBy) -> list[str]:
    """The per-day table, a total line last."""
    who = {"day": [], "user": ["USER"], "key": ["USER", "KEY"]}[group_by]
    header = ["DATE", *who, "REQUESTS", "ACTUAL USD", "STRONG-ONLY USD", "SAVED USD", "SAVED", "WASTED DRAFT USD"]
    lines: list[list[str]] = [header]

    def money(row: UsageRow | Totals) -> list[str]:
        return [str(row.requests), f"{row.actual_usd:.6f}", f"{row.strong_only_usd:.6f}", f"{row.saved_usd:.6f}",
                _percent(row.saved_usd, row.strong_only_usd), f"{row.wasted_usd:.6f}"]

    for row in rows:
        user = row.user if row.user is not None else row.tenant or "-"
        names = {"day": [], "user": [user], "key": [user, row.key_id or "-"]}[group_by]
        lines.append([row.day, *names, *money(row)])
    lines.append(["TOTAL", *["" for _ in who], *money(Totals.of(rows))])
    widths = [max(len(line[index]) for line in lines) for index in range(len(header))]
    text = len(who) + 1  # the date and names are left-aligned, the numbers right-aligned
    return ["  ".join(cell.ljust(width) if index < text else cell.rjust(width)
                      for index, (cell, width) in enumerate(zip(line, widths, strict=True))).rstrip()
            for line in lines]


def _usage(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config or config_path_from_environment())
    except ConfigError as exc:
        print(f"cascadeflow: invalid configuration: {exc}", file=sys.stderr)
        return 2
    spend = settings.spend
    if not spend.enabled or spend.url is None:
        print("cascadeflow: the spend ledger is off (spend.enabled: false)", file=sys.stderr)
        return 2
    try:
        start, end = date_range(args.start, args.end, args.days, datetime.now(tz=UTC).date())
    except InvalidRequestError as exc:
        print(f"cascadeflow: {exc.message}", file=sys.stderr)
        return 2
    query = UsageQuery(start, end, None, args.user, cast(GroupBy, args.group_by))
    rows = asyncio.run(_read(spend.url, query))
    if args.json:
        print(orjson.dumps(report(query, rows), option=orjson.OPT_INDENT_2).decode())
    else:
        print("\n".join(table(rows, query.group_by)))
    print(f"{start} to {end} (UTC), {'user ' + args.user if args.user else 'every user'}, from "
          f"{public_url(spend.url)}", file=sys.stderr)
    return 0


def _days(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_DAYS}, got {value}")
    return value


def add_usage_command(commands: Any) -> None:
    """The `usage` sub-command, under the top-level sub-parsers."""
    usage = commands.add_parser("usage", help="spend and savings per day, per user or key, from the spend ledger")
    usage.add_argument("--user", help="one user's usage (default: every user's)")
    usage.add_argument("--days", type=_days, default=DEFAULT_DAYS, help="the last N days up to --end, today "
                       "included (default: %(default)s)")
    usage.add_argument("--start", type=date.fromisoformat, help="first UTC day, YYYY-MM-DD (default: unset: "
                       "--days before --end)")
    usage.add_argument("--end", type=date.fromisoformat, help="last UTC day, YYYY-MM-DD (default: unset: today)")
    usage.add_argument("--group-by", choices=GROUPS, default="user", help="rows per day, per user and day, or per "
                       "key and day (default: %(default)s)")
    usage.add_argument("--json", action="store_true", help="print the /v1/usage report as JSON (default: off: a "
                       "table)")
    usage.add_argument("--config", help=CONFIG_HELP)
    usage.set_defaults(handler=_usage)
