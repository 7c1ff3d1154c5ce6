"""Client authentication: pass-through of the client's own key, or proxy keys kept as SHA-256 digests."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from router.errors import AuthenticationError
from router.settings import AuthSettings
from router.types import AuthMode, Principal


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which a proxy key is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


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


class Authenticator:
    """Maps a request's headers to a Principal or raises AuthenticationError."""

    def __init__(self, settings: AuthSettings) -> None:
        self._users_by_digest = {entry.key_sha256: entry.user for entry in settings.keys}

    @property
    def mode(self) -> AuthMode:
        """pass_through when no proxy keys are configured."""
        return "proxy_key" if self._users_by_digest else "pass_through"

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """Identify the caller; in proxy-key mode an unknown or missing key is refused."""
        keys = presented_keys(headers)
        if self.mode == "pass_through":
            forwarded = tuple(
                (name, headers[name]) for name in ("x-api-key", "authorization") if headers.get(name)
            )
            tenant = "key:" + hash_key(keys[0])[:16] if keys else "anonymous"
            return Principal(tenant=tenant, mode="pass_through", credential_headers=forwarded)
        if not keys:
            raise AuthenticationError("missing API key: send it in x-api-key or Authorization: Bearer")
        for key in keys:
            user = self._users_by_digest.get(hash_key(key))
            if user is not None:
                return Principal(tenant="user:" + user, mode="proxy_key")
        raise AuthenticationError("invalid API key")
