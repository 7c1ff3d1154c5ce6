"""The start banner's auth line: keys in the key store count, pass-through off loopback is flagged as open; the
warnings `proxy start` logs for an open proxy (`auth.mode: open`) and for the deprecated
`server.open_without_keys`."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from router.auth import Authenticator
from router.auth_keys.records import new_key
from router.auth_keys.store import KeyView, open_key_store
from router.auth_summary import OPEN, PASS_THROUGH, describe_auth, start_warnings, stored_keys
from router.cli import _banner, main
from router.settings import load_settings


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"data_dir: {tmp_path}\n{text}")
    return path


def test_keys_made_at_run_time_are_reported(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, "auth: {store: 'sqlite:///keys.sqlite'}\n"), environ={})
    assert describe_auth(settings) == PASS_THROUGH and not (tmp_path / "keys.sqlite").exists()
    store = open_key_store(f"sqlite:///{tmp_path}/keys.sqlite")
    _, record = new_key("alice")
    asyncio.run(store.create(record))
    asyncio.run(store.close())
    banner = _banner(settings, 8000)
    assert "auth: proxy keys (1 in the key store)" in banner and "pass-through" not in banner
    asyncio.run(open_key_store(f"sqlite:///{tmp_path}/keys.sqlite").revoke(record.id))
    assert describe_auth(settings) == "proxy keys (none active: every request is refused)"


def test_modes_and_exposure(tmp_path: Path) -> None:
    digest = "ab" * 32
    keyed = load_settings(config(tmp_path, f"auth: {{keys: [{{key_sha256: '{digest}', user: u}}]}}\n"), environ={})
    assert describe_auth(keyed) == "proxy keys (1 in the config)"
    hybrid = load_settings(config(tmp_path, "auth: {mode: hybrid}\n"), environ={})
    assert describe_auth(hybrid).startswith("hybrid: proxy keys (none active")
    api_key = load_settings(config(tmp_path, "server: {host: 0.0.0.0}\nauth: {mode: api_key}\n"), environ={})
    assert describe_auth(api_key).startswith("proxy keys")
    open_relay = load_settings(config(tmp_path, "server: {host: 0.0.0.0}\nauth: {mode: open}\n"), environ={})
    assert describe_auth(open_relay) == f"{PASS_THROUGH}; {OPEN}"
    old_spelling = load_settings(config(tmp_path, "server: {host: 0.0.0.0, open_without_keys: true}\n"), environ={})
    assert describe_auth(old_spelling) == f"{PASS_THROUGH}; {OPEN}"
    (tmp_path / "bad.sqlite").write_text("not a database")
    unreadable = load_settings(config(tmp_path, "auth: {store: 'sqlite:///bad.sqlite'}\n"), environ={})
    line = describe_auth(unreadable)
    assert line.startswith(PASS_THROUGH + " until the key store holds a proxy key") and "cannot be read" in line


def stored_key(tmp_path: Path) -> str:
    """A key store under tmp_path holding one active key; its URL."""
    store = open_key_store(f"sqlite:///{tmp_path}/keys.sqlite")
    asyncio.run(store.create(new_key("alice")[1]))
    asyncio.run(store.close())
    return "sqlite:///keys.sqlite"


def test_an_open_proxy_is_warned_about_at_start(tmp_path: Path) -> None:
    text = "providers: {anthropic: {base_url: 'https://api.anthropic.com', api_key: sk-a}}\n"
    opened = load_settings(config(tmp_path, text + "server: {host: 0.0.0.0}\nauth: {mode: open}\n"), environ={})
    (warning,) = start_warnings(opened, "0.0.0.0:8000", KeyView())
    assert warning.startswith("the proxy is open on 0.0.0.0:8000: no proxy key is needed, so anyone who reaches")
    assert "spends the configured provider keys (anthropic)" in warning
    loopback = load_settings(config(tmp_path, text + "auth: {mode: open}\n"), environ={})
    assert start_warnings(loopback, "127.0.0.1:8000", KeyView()) == []
    old = load_settings(config(tmp_path, text + "server: {host: 0.0.0.0, open_without_keys: true}\n"), environ={})
    deprecated, exposed = start_warnings(old, "0.0.0.0:8000", KeyView())
    assert "server.open_without_keys is deprecated: write auth.mode: open" in deprecated and "is open on" in exposed


def test_the_old_flag_still_requires_keys_made_at_run_time_and_open_does_not(tmp_path: Path) -> None:
    store = stored_key(tmp_path)
    old = load_settings(config(tmp_path, f"server: {{host: 0.0.0.0, open_without_keys: true}}\nauth: {{store: "
                                         f"'{store}'}}\n"), environ={})
    view = stored_keys(old.auth)
    assert describe_auth(old, view) == "proxy keys (1 in the key store)"
    (deprecated,) = start_warnings(old, "0.0.0.0:8000", view)  # keyed by the store: not open, as before
    assert "deprecated" in deprecated
    opened = load_settings(config(tmp_path, f"server: {{host: 0.0.0.0}}\nauth: {{mode: open, store: '{store}'}}\n"),
                           environ={})
    assert describe_auth(opened, view) == f"{PASS_THROUGH}; {OPEN}" and len(start_warnings(opened, "a:1", view)) == 1
    assert Authenticator(opened.auth).authenticate({}).mode == "pass_through", "open: no key needed"


def test_proxy_start_logs_the_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Server:  # uvicorn's, which would serve: started at once, stopped at once
        started = True

        def __init__(self, config: uvicorn.Config) -> None:
            pass

        def run(self, sockets: Any = None) -> None:
            pass

    class Kept(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    seen: list[logging.LogRecord] = []
    monkeypatch.setattr(uvicorn, "Server", Server)
    handler = Kept(logging.WARNING)
    logging.getLogger("router.cli").addHandler(handler)  # the command line sets up the root logger its own way
    try:
        path = config(tmp_path, "server: {host: 0.0.0.0}\nauth: {mode: open}\noutcome_log: {enabled: false}\n"
                                "embedding: {enabled: false}\n")
        assert main(["proxy", "start", "--config", str(path), "--port", "0"]) == 0
    finally:
        logging.getLogger("router.cli").removeHandler(handler)
    (record,) = seen
    assert record.levelno == logging.WARNING and record.getMessage().startswith("the proxy is open on 0.0.0.0:")
