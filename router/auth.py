"""Client authentication: pass-through of the client's own key, proxy keys kept as SHA-256 digests (in the config
or in the key store), or both (hybrid); and admission of keyed requests against their rate limits."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from router.auth_keys.admission import KeyPrincipal, admitted
from router.auth_keys.limits import Decision, Limiter, Limits, MemoryLimiter, Scope
from router.auth_keys.records import StoredKey, hash_key, looks_like_proxy_key
from router.auth_keys.store import SQL_READ_TIMEOUT_S, KeyDirectory, KeyStore, open_key_store
from router.auth_settings import AuthPolicy, AuthSettings, LimitSettings, is_redis
from router.budgets.core import BudgetLimits, BudgetScope
from router.errors import AuthenticationError, ConfigError, KeyStoreUnavailableError
from router.types import Answer, AuthMode, ClientCall, Principal

if TYPE_CHECKING:
    from router.budgets.admission import Budgets
    from router.metrics import Metrics
    from router.shared_state import StateSettings
    from router.storage.redis_health import RedisHealth

__all__ = ["Authenticator", "hash_key", "presented_keys"]
logger = logging.getLogger("router.auth")


def presented_keys(headers: Mapping[str, str]) -> list[str]:
    """The keys a client presented, from `x-api-key` and/or `Authorization: Bearer`."""
    keys: list[str] = []
    api_key = headers.get("x-api-key", "").strip()
    if api_key:
        keys.append(api_key)
    authorization = headers.get("authorization", "").strip()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    return keys


def build_limiter(settings: AuthSettings, health: RedisHealth | None = None) -> Limiter:
    """Counters in Redis when the settings name one (shared by every replica; `health` bounds and judges its
    calls), else in this process."""
    url = settings.limiter_redis_url
    if url is None:
        if settings.limiter == "redis":
            raise ConfigError("auth.limiter: redis needs state.redis_url (or auth.redis_url, or a Redis key store)")
        return MemoryLimiter()
    from router.auth_keys.redis_limits import RedisLimiter

    return RedisLimiter(url, settings.redis_prefix, health=health)


class Authenticator:
    """Maps a request's headers to a Principal (or raises AuthenticationError) and admits keyed requests."""

    def __init__(self, settings: AuthSettings, *, store: KeyStore | None = None,
                 limiter: Limiter | None = None, budgets: Budgets | None = None,
                 metrics: Metrics | None = None, state: StateSettings | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._configured = {entry.key_sha256: entry for entry in settings.keys}
        self._admins = frozenset(settings.admin_keys)
        self._merged: dict[tuple[str | None, str], LimitSettings] = {}
        self.budgets = budgets
        if store is None and settings.store is not None and not settings.passes_through:
            store = open_key_store(settings.store, redis_prefix=settings.redis_prefix)
        in_redis = store is not None and is_redis(store.url)  # a Redis store's reads are bounded as Redis's are
        timeout_s = state.timeout_s if state is not None and in_redis else SQL_READ_TIMEOUT_S
        self.directory = KeyDirectory(store, settings.refresh_interval_s, timeout_s=timeout_s, metrics=metrics,
                                      on_failure=state.on_failure if state is not None else "open")
        self.limiter = limiter if limiter is not None else build_limiter(settings)

    @property
    def policy(self) -> AuthPolicy:
        """The auth mode in force: the configured one, else api_key once any proxy key exists (open is pass_through
        on any address)."""
        if self.settings.mode is not None:
            return self.settings.mode
        return "api_key" if self._configured or self.directory.view.any else "pass_through"

    @property
    def mode(self) -> AuthMode:
        """pass_through when clients' own keys are used, else proxy_key."""
        return "pass_through" if self.policy in ("pass_through", "open") else "proxy_key"

    async def identify(self, headers: Mapping[str, str]) -> Principal:
        """The caller, against a view of the key store at most `auth.refresh_interval_s` old."""
        await self.directory.refresh()
        return self.authenticate(headers)

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """Identify the caller against the config's keys and the current view of the store."""
        keys = presented_keys(headers)
        policy = self.policy
        if policy in ("pass_through", "open"):
            return _pass_through(headers, keys)
        usable = self.directory.usable
        for key in keys:
            principal = self._keyed(hash_key(key))
            if principal is not None:
                return principal
        if policy == "hybrid" and keys and not any(looks_like_proxy_key(key) for key in keys):
            return _pass_through(headers, keys, own_key_only=True)  # a provider's own key, forwarded, never ours
        if not keys:
            raise AuthenticationError("missing API key: send it in x-api-key or Authorization: Bearer")
        if not usable:
            raise KeyStoreUnavailableError("the key store cannot be read, so a key that is not in the config cannot "
                                           "be checked; retry shortly")
        raise AuthenticationError("invalid API key")

    async def identify_digest(self, digest: str) -> Principal:
        """The keyed caller whose key has this SHA-256 digest (a dashboard session's), against a view of the key
        store at most `auth.refresh_interval_s` old; AuthenticationError once the key is revoked or gone."""
        await self.directory.refresh()
        principal = self._keyed(digest) if self.mode == "proxy_key" else None
        if principal is not None:
            return principal
        if self.mode == "proxy_key" and not self.directory.usable:
            raise KeyStoreUnavailableError("the key store cannot be read, so this session's key cannot be checked; "
                                           "retry shortly")
        raise AuthenticationError("the key of this session is no longer valid: sign in again")

    def _keyed(self, digest: str) -> KeyPrincipal | None:
        """The caller whose key has this digest: in the config, else in the key store's view (when usable); None
        when unknown; AuthenticationError when revoked."""
        configured = self._configured.get(digest)
        if configured is not None:
            return self._principal(configured.key_id, configured.user, configured.tier, configured,
                                   configured.admin or digest in self._admins)
        if not self.directory.usable:  # never read, or unreadable with state.on_failure: closed
            return None
        view = self.directory.view
        stored = view.active.get(digest)
        if stored is not None:
            return self._stored_principal(stored, digest in self._admins)
        if digest in view.revoked:
            raise AuthenticationError("API key revoked")
        return None

    def _stored_principal(self, key: StoredKey, admin: bool) -> KeyPrincipal:
        own = LimitSettings.model_construct(rpm=key.rpm, tpm=key.tpm, max_concurrent=key.max_concurrent,
                                            daily_budget_usd=key.daily_budget_usd,
                                            monthly_budget_usd=key.monthly_budget_usd)
        return self._principal(key.id, key.user, key.tier, own, admin or key.admin)

    def _principal(self, key_id: str, user: str, tier: str | None, own: LimitSettings, admin: bool) -> KeyPrincipal:
        """A keyed caller and the scopes it is limited in: its key, its user (the tier's limits and budgets, under
        the user's own overrides in `auth.users`) and the tier (`total`)."""
        tier = tier or self.settings.default_tier
        settings = self.settings.tiers.get(tier) if tier is not None else None
        per_user = self._per_user(tier, user) if user in self.settings.users else settings or LimitSettings()
        named = [(f"key:{key_id}", own), (f"user:{user}", per_user)]
        if settings is not None:
            named.append((f"tier:{tier}", settings.total))
        scopes = [Scope(name, limits) for name, limits in ((name, _limits(each)) for name, each in named) if limits.any]
        budgets = [BudgetScope(name, limits) for name, limits in ((name, _budget(each)) for name, each in named)
                   if limits.any]
        return KeyPrincipal(tenant="user:" + user, mode="proxy_key", key_id=key_id, user=user, tier=tier,
                            scopes=tuple(scopes), budgets=tuple(budgets), admin=admin)

    def _per_user(self, tier: str | None, user: str) -> LimitSettings:
        """A user's limits and budgets: the tier's, under the user's own in `auth.users` (built once)."""
        merged = self._merged.get((tier, user))
        if merged is None:
            base = self.settings.tiers[tier].model_dump(exclude={"total"}) if tier in self.settings.tiers else {}
            merged = LimitSettings(**{**base, **self.settings.users[user].model_dump(exclude_none=True)})
            self._merged[(tier, user)] = merged
        return merged

    async def admitted(self, call: ClientCall, handle: Callable[[ClientCall], Awaitable[Answer]]) -> Answer:
        """The answer to a call, or a 429 in its dialect when one of its key's budgets or limits is reached (the
        budgets are checked first: a request they refuse is not counted against the rate limits)."""
        if self.budgets is None:
            return await admitted(self.limiter, call, handle, self._refused)
        return await self.budgets.admitted(
            call, lambda admissible: admitted(self.limiter, admissible, handle, self._refused))

    def _refused(self, principal: KeyPrincipal, decision: Decision) -> None:
        """Count a 429 of the rate limits by the kind of limit and the caller's tier (no key, no user)."""
        if self.metrics is not None:
            self.metrics.inc("cascadeflow_rate_limit_refusals_total", reason=decision.refused_by or "requests",
                             tier=principal.tier or "none")

    async def start(self) -> None:
        """Read the key store once (a failure is logged; requests retry it), and start the budget counters."""
        await self.directory.refresh()
        if self.budgets is not None:
            await self.budgets.start()

    def status(self) -> dict[str, object]:
        """For readiness: the mode, and the key store's state when there is one."""
        status: dict[str, object] = {"ok": True, "required": False, "mode": self.policy}
        if self.directory.store is not None:
            status.update(self.directory.status())
        return status

    async def stop(self) -> None:
        """Close the key store's, the limiter's and the budgets' connections."""
        await self.limiter.close()
        if self.budgets is not None:
            await self.budgets.close()
        await self.directory.close()


def _limits(settings: LimitSettings) -> Limits:
    return Limits(settings.rpm, settings.tpm, settings.max_concurrent)


def _budget(settings: LimitSettings) -> BudgetLimits:
    return BudgetLimits(settings.daily_budget_usd, settings.monthly_budget_usd)


def _pass_through(headers: Mapping[str, str], keys: list[str], *, own_key_only: bool = False) -> Principal:
    """A caller whose own key headers are forwarded to providers of its dialect (`own_key_only`: and who never
    spends a provider's configured key, as in hybrid mode, where only a valid proxy key may)."""
    forwarded = tuple((name, headers[name]) for name in ("x-api-key", "authorization") if headers.get(name))
    tenant = "key:" + hash_key(keys[0])[:16] if keys else "anonymous"
    return Principal(tenant=tenant, mode="pass_through", credential_headers=forwarded, own_key_only=own_key_only)
