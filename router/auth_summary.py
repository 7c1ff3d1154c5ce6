"""What the start banner says about client authentication: the mode in force, counting the keys in the key store
as well as those in the config (a proxy whose keys all live in the database is not open); and the warnings logged
at start when the proxy is open to anyone who reaches it."""

from __future__ import annotations

import asyncio

from router.auth_keys.store import KeyView, open_key_store, public_url
from router.auth_settings import AuthSettings
from router.settings import Settings, is_loopback

PASS_THROUGH = "pass-through (clients send their own provider keys)"
OPEN = "OPEN: no proxy key is needed, so anyone who reaches the port spends the configured provider keys"


async def _read(auth: AuthSettings, timeout_s: float) -> KeyView:
    assert auth.store is not None
    store = open_key_store(auth.store, redis_prefix=auth.redis_prefix)
    try:
        return KeyView.of(await asyncio.wait_for(store.load(), timeout_s))
    finally:
        await store.close()


def stored_keys(auth: AuthSettings, timeout_s: float = 5.0) -> KeyView | str:
    """The key store's keys, or why they cannot be read (no store is an empty view); call outside an event loop."""
    if auth.store is None or auth.mode == "pass_through":
        return KeyView()
    try:
        return asyncio.run(_read(auth, timeout_s))
    except Exception as exc:  # any backend failure: the banner says so, requests retry the store
        return f"the key store {public_url(auth.store)} cannot be read now ({type(exc).__name__})"


def describe_auth(settings: Settings, stored: KeyView | str | None = None) -> str:
    """The banner's auth line: proxy keys (where they are), hybrid, or pass-through (and whether that is open)."""
    auth = settings.auth
    if auth.passes_through:
        return _exposure(settings, PASS_THROUGH)
    stored = stored_keys(auth) if stored is None else stored
    where = [f"{len(auth.keys)} in the config"] if auth.keys else []
    if isinstance(stored, KeyView) and stored.active:
        where.append(f"{len(stored.active)} in the key store")
    keys = f"proxy keys ({', '.join(where)})" if where else "proxy keys (none active: every request is refused)"
    unreadable = f"; {stored}" if isinstance(stored, str) else ""
    if auth.mode == "hybrid":
        return f"hybrid: {keys}, or a client's own provider key, which never spends a configured one{unreadable}"
    if auth.mode == "api_key" or auth.keys or (isinstance(stored, KeyView) and stored.any):
        return keys + unreadable
    if unreadable:
        return _exposure(settings, f"{PASS_THROUGH} until the key store holds a proxy key{unreadable}")
    return _exposure(settings, PASS_THROUGH)


def _exposure(settings: Settings, line: str) -> str:
    """A pass-through line, flagged when anyone beyond this machine may use the configured provider keys."""
    return line if is_loopback(settings.server.host) else f"{line}; {OPEN}"


def serves_without_keys(settings: Settings, stored: KeyView | str) -> bool:
    """Whether requests without a proxy key are served: pass_through or open, or no proxy key anywhere (in the
    config or in the key store; one that cannot be read counts as empty, as the requests see it until it can)."""
    auth = settings.auth
    if auth.passes_through:
        return True
    if auth.mode is not None or auth.keys:
        return False
    return not (isinstance(stored, KeyView) and stored.any)


def start_warnings(settings: Settings, address: str, stored: KeyView | str) -> list[str]:
    """What `proxy start` logs as warnings: a proxy that anyone who reaches `address` (host:port) may use with the
    configured provider keys, and the deprecated `server.open_without_keys`."""
    warnings = []
    if settings.server.open_without_keys:
        warnings.append("server.open_without_keys is deprecated: write auth.mode: open for a proxy anyone may use, "
                        "or auth.mode: api_key when its proxy keys live in the key store")
    if not is_loopback(settings.server.host) and serves_without_keys(settings, stored):
        keyed = sorted(name for name, provider in settings.providers.items() if provider.api_key is not None)
        spent = f"the configured provider keys ({', '.join(keyed)})" if keyed else "any provider key configured later"
        warnings.append(f"the proxy is open on {address}: no proxy key is needed, so anyone who reaches this "
                        f"address spends {spent}; add proxy keys (auth.keys, `cascadeflow keys create`) unless a "
                        "gateway in front of it authenticates its clients")
    return warnings
