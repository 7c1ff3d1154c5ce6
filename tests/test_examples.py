"""Every example config in examples/ loads with the code `cascadeflow config check` runs, and says what it shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.cli import main
from router.local.catalog import DEFAULT_CTX_SIZE, DEFAULT_PORT_BASE, DRAFT_MODEL, STRONG_MODEL
from router.settings import Settings, is_loopback, load_settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPECTED = {"pass-through.yaml", "claude-code-haiku-draft.yaml", "openai-cascade.yaml", "local-models.yaml",
            "team.yaml"}
DUMMY_ENVIRONMENT = {"ANTHROPIC_API_KEY": "sk-ant-dummy", "OPENAI_API_KEY": "sk-openai-dummy",
                     "HOME": "/nonexistent-home"}
"""Every variable the examples require, with dummy values (the others have `${VAR:-default}` defaults)."""


def example_paths() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


def load(name: str) -> Settings:
    return load_settings(EXAMPLES / name, environ=DUMMY_ENVIRONMENT)


def test_the_examples_are_all_there_and_described() -> None:
    names = {path.name for path in example_paths()}
    assert EXPECTED <= names
    readme = (EXAMPLES / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in names), "each example has its paragraph in examples/README.md"


@pytest.mark.parametrize("path", example_paths(), ids=lambda path: path.name)
def test_every_example_is_valid(path: Path) -> None:
    load_settings(path, environ=DUMMY_ENVIRONMENT)  # raises ConfigError, naming file, line and key, if invalid


@pytest.mark.parametrize("path", example_paths(), ids=lambda path: path.name)
def test_config_check_accepts_every_example(path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in DUMMY_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    assert main(["config", "check", str(path)]) == 0, capsys.readouterr().err
    assert f"{path}: valid" in capsys.readouterr().out


def test_a_required_key_that_is_unset_stops_config_check(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-dummy")
    assert main(["config", "check", str(EXAMPLES / "team.yaml")]) == 2
    assert "providers.anthropic.api_key: environment variable ANTHROPIC_API_KEY is not set" in capsys.readouterr().err


def test_pass_through_forwards_without_a_cascade() -> None:
    settings = load("pass-through.yaml")
    assert settings.cascade_rules == [] and settings.auth.keys == []
    assert {route.provider for route in settings.models} == {"anthropic", "openai"}
    assert is_loopback(settings.server.host) and not settings.embedding.enabled


def test_claude_code_drafts_on_haiku() -> None:
    rules = load("claude-code-haiku-draft.yaml").cascade_rules
    assert rules and all(rule.draft_model.startswith("claude-haiku") for rule in rules)
    assert {rule.strong_model.split("-")[1] for rule in rules} <= {"sonnet", "opus"}


def test_openai_cascade_drafts_on_the_mini_model() -> None:
    (rule,) = load("openai-cascade.yaml").cascade_rules
    assert (rule.request_model, rule.draft_model, rule.strong_model) == ("gpt-4o", "gpt-4o-mini", "gpt-4o")


def test_local_models_match_what_local_models_serve_runs() -> None:
    settings = load("local-models.yaml")
    (rule,) = settings.cascade_rules
    assert (rule.draft_model, rule.strong_model) == (DRAFT_MODEL, STRONG_MODEL)
    ports = {DRAFT_MODEL: DEFAULT_PORT_BASE, STRONG_MODEL: DEFAULT_PORT_BASE + 1}  # `serve --models DRAFT STRONG`
    for route in settings.models:
        assert settings.providers[route.provider].base_url == f"http://127.0.0.1:{ports[route.match]}/v1"
    info = settings.model_info["qwen2.5-coder-*"]
    assert info.context_window == DEFAULT_CTX_SIZE and info.logprobs.supported is True
    assert info.prices is not None and (info.prices.input, info.prices.output) == (0.0, 0.0)


def test_team_has_proxy_keys_redis_and_postgres() -> None:
    settings = load("team.yaml")
    assert len(settings.auth.keys) >= 2 and not is_loopback(settings.server.host)
    assert settings.cache.mode == "redis" and settings.cache.redis_url == settings.state.redis_url
    assert settings.auth.limiter_redis_url == settings.state.redis_url and settings.auth.admin_keys
    assert (settings.state.redis_url or "").startswith("redis://") and settings.state.on_failure == "open"
    assert settings.outcome_log.url.startswith("postgresql://")
    assert settings.auth.store == settings.spend.url == settings.outcome_log.url == settings.database.url
    assert settings.auth.tiers["pro"].daily_budget_usd == 20 and settings.auth.users["alice"].daily_budget_usd == 5
