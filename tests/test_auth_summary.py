"""The start banner's auth line: keys in the key store count, pass-through off loopback is flagged as open."""

from __future__ import annotations

import asyncio
from pathlib import Path

from router.auth_keys.records import new_key
from router.auth_keys.store import open_key_store
from router.auth_summary import OPEN, PASS_THROUGH, describe_auth
from router.cli import _banner
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
    open_relay = load_settings(config(tmp_path, "server: {host: 0.0.0.0, open_without_keys: true}\n"), environ={})
    assert describe_auth(open_relay) == f"{PASS_THROUGH}; {OPEN}"
    (tmp_path / "bad.sqlite").write_text("not a database")
    unreadable = load_settings(config(tmp_path, "auth: {store: 'sqlite:///bad.sqlite'}\n"), environ={})
    line = describe_auth(unreadable)
    assert line.startswith(PASS_THROUGH + " until the key store holds a proxy key") and "cannot be read" in line
