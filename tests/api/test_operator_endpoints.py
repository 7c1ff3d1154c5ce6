"""The operators' endpoints with proxy keys: `/metrics` and the details of `/ready` are for admin keys (the same
check as the admin endpoints); `/ready` still answers its status code to anyone, and `/health` stays open.
Without proxy keys (pass-through) all of them answer anyone, as before."""

from __future__ import annotations

import httpx
import pytest

from router.auth import hash_key
from router.replay.runner import BackgroundServer
from tests.support import ProxyFactory, marker, proxy_settings

ADMIN, USER = "key-admin-" + marker(), "key-user-" + marker()
CALLERS = {"no key": {}, "a bad key": {"authorization": "Bearer key-nobody"},
           "a user key": {"authorization": f"Bearer {USER}"}, "an admin key": {"x-api-key": ADMIN}}


@pytest.fixture(scope="module")
def keyed(proxy_factory: ProxyFactory, upstream: BackgroundServer) -> BackgroundServer:
    keys = [{"key_sha256": hash_key(ADMIN), "user": "ops", "admin": True},
            {"key_sha256": hash_key(USER), "user": "dev"}]
    return proxy_factory(proxy_settings(upstream.url, auth={"keys": keys}))


@pytest.mark.parametrize(("caller", "status"), [("no key", 401), ("a bad key", 401), ("a user key", 403),
                                                ("an admin key", 200)])
def test_metrics_need_an_admin_key(keyed: BackgroundServer, caller: str, status: int) -> None:
    scraped = httpx.get(keyed.url + "/metrics", headers=CALLERS[caller])
    assert scraped.status_code == status, scraped.text
    if status == 200:
        assert "cascadeflow_requests_total" in scraped.text and "cascadeflow_inflight_body_bytes" in scraped.text
    else:
        assert "cascadeflow_" not in scraped.text, "spend and traffic are not for any caller"
        assert scraped.json()["error"]["type"] == ("authentication_error" if status == 401 else "permission_error")


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_ready_answers_its_status_to_anyone_and_its_checks_to_admins(keyed: BackgroundServer, caller: str) -> None:
    ready = httpx.get(keyed.url + "/ready", headers=CALLERS[caller])
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    if caller == "an admin key":
        assert body["checks"]["provider:anthropic"]["ok"] is True and body["checks"]["auth"]["mode"] == "api_key"
    else:
        assert body == {"status": "ready"}, "no checks without an admin key"


def test_health_stays_open(keyed: BackgroundServer) -> None:
    assert httpx.get(keyed.url + "/health").json() == {"status": "ok"}


def test_without_proxy_keys_anyone_reads_both(proxy: BackgroundServer) -> None:
    assert httpx.get(proxy.url + "/metrics").status_code == 200
    assert "checks" in httpx.get(proxy.url + "/ready").json()
