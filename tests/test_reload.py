"""Live configuration: a good file is applied (what needs a restart is named, not applied), a bad one changes
nothing; reloads come from a change of the file, SIGHUP, or a call."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.observability.settings import ReloadSettings
from router.reload import ConfigReloader, ConfigSource, changed_paths, is_reloadable
from router.services import Services
from router.settings import load_settings
from router.types import Dialect

CONFIG = """\
data_dir: {data}
server: {{port: 8123}}
providers:
  anthropic: {{kind: anthropic, base_url: "http://127.0.0.1:9", api_key: sk-ant-old}}
  openai: {{kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: sk-oai}}
embedding: {{enabled: false}}
outcome_log: {{enabled: false}}
learned_router: {{enabled: false}}
verifier: {{enabled: false}}
logging: {{requests: true}}
cascade_rules:
  - request_model: claude-opus-4-8
    draft_model: claude-haiku-4-5
    verifier_model: claude-opus-4-8
    quality_threshold: {threshold}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(data=tmp_path, threshold=0.6))
    return path


@pytest.fixture
def services(config: Path) -> Iterator[Services]:
    yield Services.build(load_settings(config, environ={}))


def reloader_for(config: Path, services: Services, **settings: object) -> ConfigReloader:
    return ConfigReloader(ConfigSource(str(config)), services, ReloadSettings(**{"watch": False, **settings}))


def rewrite(config: Path, text: str) -> None:
    """A new version of the file (its mtime moved on, as a second later)."""
    config.write_text(text)
    stamp = config.stat().st_mtime_ns + 1_000_000_000
    os.utime(config, ns=(stamp, stamp))


def test_changed_paths_name_leaves_and_split_by_what_reloads(config: Path) -> None:
    old = load_settings(config, environ={})
    rewrite(config, CONFIG.format(data=config.parent, threshold=0.9).replace("sk-ant-old", "sk-ant-new")
            .replace("8123", "8124"))
    new = load_settings(config, environ={})
    changed = changed_paths(old, new)
    assert changed == ["cascade_rules.0.quality_threshold", "providers.anthropic.api_key", "server.port"]
    assert [is_reloadable(path) for path in changed] == [True, False, False]
    assert is_reloadable("models.0.match") and is_reloadable("logging.level") and not is_reloadable("cache.mode")


async def test_a_good_file_is_applied_and_what_needs_a_restart_is_named(
        config: Path, services: Services, caplog: pytest.LogCaptureFixture) -> None:
    reloader, catalog = reloader_for(config, services), services.catalog
    text = CONFIG.format(data=config.parent, threshold=0.95).replace("sk-ant-old", "sk-ant-new").replace(
        "8123", "8124") + "models:\n  - {match: 'claude-*', provider: anthropic}\n  - {match: 'haiku', provider: " \
        "anthropic, upstream_model: claude-haiku-4-5}\n"
    rewrite(config, text)
    with caplog.at_level(logging.INFO, logger="router.reload"):
        result = await reloader.reload("test")
    assert result.status == "applied", result
    assert "cascade_rules.0.quality_threshold" in result.applied and "models.1.match" in result.applied
    assert result.ignored == ("providers.anthropic.api_key", "server.port")
    running = services.settings
    assert running.cascade_rules[0].quality_threshold == 0.95 and running.server.port == 8123
    assert running.providers["anthropic"].api_key is not None
    assert running.providers["anthropic"].api_key.get_secret_value() == "sk-ant-old", "keys wait for a restart"
    assert services.registry.resolve("haiku", Dialect.ANTHROPIC).upstream_model == "claude-haiku-4-5"
    assert services.catalog is not catalog, "the model list names the reloaded rules and routes"
    messages = [record.getMessage() for record in caplog.records]
    assert any("cascade_rules.0.quality_threshold" in message for message in messages)
    assert any("need a restart" in message and "server.port" in message for message in messages)
    assert not any("sk-ant" in message for message in messages), "a changed key is named, never shown"
    assert (await reloader.reload("again")).status == "unchanged"


@pytest.mark.parametrize(("text", "named"), [
    ("cascade_rules:\n  - {request_model: a, draft_model: b, verifier_model: c, quality_treshold: 0.5}\n",
     "quality_treshold"),
    ("cascade_rules: [\n", "config.yaml:"),
    ("cascade_rules:\n  - {request_model: a, draft_model: b, verifier_model: c, quality_threshold: 7}\n",
     "cascade_rules.0.quality_threshold"),
])
async def test_a_bad_file_is_rejected_naming_the_problem_and_the_running_config_kept(
        config: Path, services: Services, caplog: pytest.LogCaptureFixture, text: str, named: str) -> None:
    before = services.settings
    rewrite(config, CONFIG.format(data=config.parent, threshold=0.6).split("cascade_rules:")[0] + text)
    with caplog.at_level(logging.ERROR, logger="router.reload"):
        result = await reloader_for(config, services).reload("test")
    assert result.status == "rejected" and result.error is not None and named in result.error, result.error
    assert services.settings is before
    assert [record.levelname for record in caplog.records] == ["ERROR"] and named in caplog.records[0].getMessage()


async def test_a_rule_on_a_provider_only_a_restart_adds_is_rejected(config: Path, services: Services) -> None:
    text = CONFIG.format(data=config.parent, threshold=0.6).replace(
        "providers:\n", "providers:\n  groq: {kind: openai, base_url: 'http://127.0.0.1:9/v1'}\n").replace(
        "draft_model: claude-haiku-4-5", "draft_model: groq/llama-3.1-8b")
    rewrite(config, text)
    result = await reloader_for(config, services).reload("test")
    assert result.status == "rejected" and result.error is not None
    assert "cascade_rules.0.draft_model: unknown provider 'groq'" in result.error and "restart" in result.error
    assert services.settings.cascade_rules[0].draft_model == "claude-haiku-4-5"


async def test_sighup_reloads_the_file(config: Path, services: Services) -> None:
    reloader = reloader_for(config, services)
    reloader.start()
    try:
        assert reloader.status()["sighup"] is True
        rewrite(config, CONFIG.format(data=config.parent, threshold=0.8))
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):
            if reloader.last is not None:
                break
            await asyncio.sleep(0.01)
    finally:
        await reloader.stop()
    assert reloader.last is not None and reloader.last.trigger == "SIGHUP" and reloader.last.status == "applied"
    assert services.settings.cascade_rules[0].quality_threshold == 0.8


async def test_a_changed_file_is_noticed_and_applied(config: Path, services: Services) -> None:
    reloader = reloader_for(config, services, watch=True, interval_s=0.1)
    reloader.start()
    try:
        await asyncio.sleep(0.15)
        rewrite(config, CONFIG.format(data=config.parent, threshold=0.85))
        for _ in range(300):
            if services.settings.cascade_rules[0].quality_threshold == 0.85:
                break
            await asyncio.sleep(0.01)
    finally:
        await reloader.stop()
    assert services.settings.cascade_rules[0].quality_threshold == 0.85
    assert reloader.last is not None and reloader.last.trigger == "file changed"
