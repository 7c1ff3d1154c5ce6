"""Model references naming an unknown provider are refused by the settings and by `cascadeflow config check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.cli import main
from router.errors import ConfigError
from router.settings import load_settings

PROVIDERS = """
providers:
  anthropic: {base_url: https://api.anthropic.com}
  openai: {base_url: https://api.openai.com/v1}
"""


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(PROVIDERS + text)
    return path


def rule(draft: str = "claude-haiku-4-5", verifier: str = "claude-opus-4-1", request: str = "claude-opus-4-1") -> str:
    return f"  - {{request_model: {request}, draft_model: '{draft}', verifier_model: '{verifier}'}}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cascade_rules:\n" + rule(draft="groq/llama-3.1-8b"),
         "cascade_rules.0.draft_model: unknown provider 'groq' (configured: anthropic, openai)"),
        ("cascade_rules:\n" + rule() + rule(request="gpt-5", verifier="together/qwen"),
         "cascade_rules.1.verifier_model: unknown provider 'together' (configured: anthropic, openai)"),
        ("labels: {grader_model: 'mistral/large'}\n",
         "labels.grader_model: unknown provider 'mistral' (configured: anthropic, openai)"),
    ],
)
def test_unknown_provider_references_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(config(tmp_path, text), environ={})
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "text",
    [
        "cascade_rules:\n" + rule(draft="openai/gpt-5-mini", verifier="anthropic/claude-opus-4-1"),
        "cascade_rules:\n" + rule(draft="mixtral-8x7b"),
        "models: [{match: 'mistralai/*', provider: openai}]\ncascade_rules:\n" + rule(draft="mistralai/mixtral-8x7b"),
        "cascade_rules:\n  - {name: cheap, draft_model: claude-haiku-4-5, verifier_model: claude-opus-4-1}\n"
        "labels: {grader_model: anthropic/claude-opus-4-1}\n",
    ],
)
def test_configured_providers_routes_and_bare_names_are_accepted(tmp_path: Path, text: str) -> None:
    load_settings(config(tmp_path, text), environ={})


def test_config_check_refuses_an_unknown_provider(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path, "cascade_rules:\n" + rule(draft="groq/llama-3.1-8b"))
    assert main(["config", "check", str(path)]) == 2
    assert "cascade_rules.0.draft_model: unknown provider 'groq' (configured: anthropic, openai)" in (
        capsys.readouterr().err)
