"""Settings: YAML with interpolation, validation naming the key path, CLI config check."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.cli import main
from router.errors import ConfigError
from router.settings import interpolate, load_settings

SEED = """
server: {host: 127.0.0.1, port: 8000}
providers:
  anthropic: {base_url: https://api.anthropic.com, api_key: ${ANTHROPIC_API_KEY}}
  openai:    {base_url: https://api.openai.com/v1, api_key: ${OPENAI_API_KEY}}
  groq:      {kind: openai, base_url: https://api.groq.com/openai/v1, api_key: ${GROQ_API_KEY:-}}
cascade_rules:
  - {request_model: claude-opus-4-8, draft_model: claude-haiku-4-5,
     verifier_model: claude-opus-4-8, quality_threshold: 0.7}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_seed_config_loads_with_interpolation(tmp_path: Path) -> None:
    env = {"ANTHROPIC_API_KEY": "sk-ant-1", "OPENAI_API_KEY": "sk-oai-2"}
    settings = load_settings(write(tmp_path, SEED), environ=env)
    anthropic_key = settings.providers["anthropic"].api_key
    assert anthropic_key is not None and anthropic_key.get_secret_value() == "sk-ant-1"
    assert settings.providers["groq"].api_key is None
    assert settings.provider_kind("groq") == "openai"
    assert settings.cascade_rules[0].quality_threshold == 0.7
    assert "sk-ant-1" not in repr(settings)


def test_missing_variable_names_the_key_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"providers\.anthropic\.api_key: environment variable ANTHROPIC_API_KEY"):
        load_settings(write(tmp_path, SEED), environ={"OPENAI_API_KEY": "x"})


def test_interpolation_default_and_nesting() -> None:
    tree = {"a": ["${X:-fallback}", {"b": "pre-${Y}-post"}], "n": 3}
    assert interpolate(tree, {"Y": "mid"}) == {"a": ["fallback", {"b": "pre-mid-post"}], "n": 3}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server: {port: 99999}", r"server\.port"),
        ("providers: {x: {base_url: ftp://nope}}", r"providers\.x"),
        ("cascade_rules: [{request_model: a, draft_model: b, verifier_model: c, quality_threshold: 2}]",
         r"cascade_rules\.0\.quality_threshold"),
        ("models: [{match: 'x-*', provider: nowhere}]", r"models\.0\.provider"),
        ("auth: {keys: [{key_sha256: plaintext, user: bob}]}", r"auth\.keys\.0\.key_sha256"),
        ("serverr: {}", r"serverr"),
        ("- just a list", r"top level must be a mapping"),
    ],
)
def test_invalid_config_names_key_path(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_settings(write(tmp_path, text), environ={})


def test_defaults_without_file_take_keys_from_environment() -> None:
    settings = load_settings(None, environ={"ANTHROPIC_API_KEY": "k"})
    assert set(settings.providers) == {"anthropic", "openai"}
    key = settings.providers["anthropic"].api_key
    assert key is not None and key.get_secret_value() == "k"
    assert settings.providers["openai"].api_key is None


def test_config_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "server: {port: 8123}\n")
    assert main(["config", "check", str(good)]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: -1}\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "server.port" in capsys.readouterr().err


def test_keys_hash_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "hash", "secret"]) == 0
    assert capsys.readouterr().out.strip() == "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
