"""`cascadeflow keys`: create, list and revoke proxy keys in the key store, or hash a key for `auth.keys`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from router.auth_keys.records import StoredKey, hash_key, new_key
from router.auth_keys.store import KeyStore, open_key_store, public_url
from router.errors import ConfigError
from router.settings import Settings, config_path_from_environment, load_settings

T = TypeVar("T")
CONFIG_HELP = ("YAML config file naming the key store (auth.store) and tiers (default: $CASCADEFLOW_CONFIG, else "
               "none: sqlite:///var/keys.sqlite under the user data directory)")


def _settings(args: argparse.Namespace) -> Settings | None:
    path = args.config or config_path_from_environment()
    try:
        return load_settings(path)
    except ConfigError as exc:
        print(f"cascadeflow: invalid configuration: {exc}", file=sys.stderr)
        return None


def _with_store(settings: Settings, work: Callable[[KeyStore], Awaitable[T]]) -> T:
    """Run one operation on the configured store, closing it afterwards."""
    auth = settings.auth
    assert auth.store is not None  # load_settings always chooses one

    async def run() -> T:
        store = open_key_store(auth.store or "", redis_prefix=auth.redis_prefix)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _when(moment: float | None) -> str:
    return "-" if moment is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def _limits(key: StoredKey) -> str:
    parts = [f"{name}={value}" for name, value in (("rpm", key.rpm), ("tpm", key.tpm),
                                                   ("concurrent", key.max_concurrent)) if value is not None]
    parts += [f"{name}=${value:g}" for name, value in (("day", key.daily_budget_usd),
                                                       ("month", key.monthly_budget_usd)) if value is not None]
    return ",".join(parts + (["admin"] if key.admin else [])) or "-"


def _create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 2
    tier = args.tier or settings.auth.default_tier
    if tier is not None and tier not in settings.auth.tiers:
        known = ", ".join(sorted(settings.auth.tiers)) or "none configured"
        print(f"cascadeflow: unknown tier {tier!r} (tiers: {known})", file=sys.stderr)
        return 2
    key, record = new_key(args.user, tier=tier, rpm=args.rpm, tpm=args.tpm, max_concurrent=args.max_concurrent,
                          daily_budget_usd=args.daily_budget_usd, monthly_budget_usd=args.monthly_budget_usd,
                          admin=args.admin)
    _with_store(settings, lambda store: store.create(record))
    print(f"created key {record.id} for user {record.user} (tier {tier or '-'}, limits {_limits(record)}) in "
          f"{_store_name(settings)}; the key is shown once, only its SHA-256 digest is kept:", file=sys.stderr)
    print(key, flush=True)
    return 0


def _list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 2
    keys = _with_store(settings, lambda store: store.load())
    shown = [key for key in keys if args.all or key.active]
    print(f"{'ID':<15} {'USER':<20} {'TIER':<10} {'LIMITS':<28} {'CREATED (UTC)':<20} REVOKED (UTC)")
    for key in shown:
        print(f"{key.id:<15} {key.user:<20} {key.tier or '-':<10} {_limits(key):<28} {_when(key.created_at):<20} "
              f"{_when(key.revoked_at)}")
    print(f"{len(shown)} keys ({sum(key.active for key in keys)} active) in {_store_name(settings)}", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 2
    key = _with_store(settings, lambda store: store.revoke(args.key_id))
    if key is None:
        print(f"cascadeflow: no key {args.key_id!r} in {_store_name(settings)}", file=sys.stderr)
        return 1
    print(f"revoked key {key.id} of user {key.user} at {_when(key.revoked_at)} UTC; running proxies refuse it "
          f"within {settings.auth.refresh_interval_s:g} s")
    return 0


def _hash(args: argparse.Namespace) -> int:
    key = args.key if args.key is not None else sys.stdin.readline().strip()
    if not key:
        print("cascadeflow: no key given", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0


def _store_name(settings: Settings) -> str:
    """The store's URL without a password."""
    return public_url(settings.auth.store or "")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _usd(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be a non-negative amount of USD, got {text}")
    return value


def add_keys_commands(commands: Any) -> None:
    """The `keys` sub-commands, under the top-level sub-parsers."""
    keys = commands.add_parser("keys", help="proxy keys").add_subparsers(dest="action", required=True)
    hashing = keys.add_parser("hash", help="print the SHA-256 digest to put in auth.keys[].key_sha256")
    hashing.add_argument("key", nargs="?", help="the key (default: read one line from stdin)")
    hashing.set_defaults(handler=_hash)

    create = keys.add_parser("create", help="make a key in the key store; it is printed once, on stdout")
    create.add_argument("--user", required=True, help="the user the key belongs to (required; no default)")
    create.add_argument("--tier", help="a tier of `tiers` whose limits hold for the user (default: "
                        "auth.default_tier, else none)")
    create.add_argument("--rpm", type=_positive, help="requests per minute of this key (default: unset: no key limit)")
    create.add_argument("--tpm", type=_positive, help="tokens per minute of this key (default: unset: no key limit)")
    create.add_argument("--max-concurrent", type=_positive, help="requests in flight at once with this key (default: "
                        "unset: no key limit)")
    create.add_argument("--daily-budget-usd", type=_usd, help="USD this key may spend per UTC day (default: unset: "
                        "no key budget)")
    create.add_argument("--monthly-budget-usd", type=_usd, help="USD this key may spend per UTC month (default: "
                        "unset: no key budget)")
    create.add_argument("--admin", action="store_true", help="the key may read every user's usage (default: off: "
                        "its own user's only)")
    create.add_argument("--config", help=CONFIG_HELP)
    create.set_defaults(handler=_create)

    listing = keys.add_parser("list", help="list the keys of the key store (ids, users, limits; never a key)")
    listing.add_argument("--all", action="store_true", help="include revoked keys (default: active keys only)")
    listing.add_argument("--config", help=CONFIG_HELP)
    listing.set_defaults(handler=_list)

    revoke = keys.add_parser("revoke", help="revoke a key by id; every running proxy refuses it within a second")
    revoke.add_argument("key_id", help="the key's id, as `keys list` shows it")
    revoke.add_argument("--config", help=CONFIG_HELP)
    revoke.set_defaults(handler=_revoke)
