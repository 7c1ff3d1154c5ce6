"""Client authentication: pass-through and hashed proxy keys."""

from __future__ import annotations

import pytest

from router.auth import Authenticator, hash_key, presented_keys
from router.errors import AuthenticationError
from router.settings import AuthSettings, ProxyKey


def test_presented_keys_from_either_header() -> None:
    assert presented_keys({"x-api-key": "a"}) == ["a"]
    assert presented_keys({"authorization": "Bearer b"}) == ["b"]
    assert presented_keys({"x-api-key": "a", "authorization": "bearer  b "}) == ["a", "b"]
    assert presented_keys({"authorization": "Basic zzz"}) == []


def test_pass_through_forwards_client_credentials_and_hides_them() -> None:
    principal = Authenticator(AuthSettings()).authenticate({"x-api-key": "sk-client", "authorization": "Bearer t"})
    assert principal.mode == "pass_through"
    assert dict(principal.credential_headers) == {"x-api-key": "sk-client", "authorization": "Bearer t"}
    assert principal.tenant.startswith("key:") and "sk-client" not in principal.tenant
    assert "sk-client" not in repr(principal)


def test_proxy_keys_map_to_users_by_digest() -> None:
    auth = Authenticator(AuthSettings(keys=[ProxyKey(key_sha256=hash_key("alice-key"), user="alice")]))
    assert auth.mode == "proxy_key"
    assert auth.authenticate({"authorization": "Bearer alice-key"}).tenant == "user:alice"
    assert auth.authenticate({"x-api-key": "wrong", "authorization": "Bearer alice-key"}).tenant == "user:alice"
    assert auth.authenticate({"x-api-key": "alice-key"}).credential_headers == ()
    with pytest.raises(AuthenticationError, match="invalid"):
        auth.authenticate({"x-api-key": "bob-key"})
    with pytest.raises(AuthenticationError, match="missing"):
        auth.authenticate({})
