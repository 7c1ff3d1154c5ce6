"""Thresholds chosen offline are written into a config as text edits that keep the rest of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.errors import ConfigError
from router.settings import load_settings
from training.thresholds import set_skip_threshold, write_thresholds

CONFIG = """# my proxy
providers:
  anthropic: {kind: anthropic, base_url: https://api.anthropic.com, api_key: ${ANTHROPIC_API_KEY:-}}
models:
  - {match: "claude-*", provider: anthropic}
cascade_rules:
  - request_model: claude-sonnet-4-5
    draft_model: claude-haiku-4-5
    verifier_model: claude-sonnet-4-5
    quality_threshold: 0.7   # tuned by hand
  - name: cheap
    draft_model: claude-haiku-4-5
    verifier_model: claude-opus-4-1
server:
  port: 8000
"""


def test_thresholds_are_added_and_everything_else_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    write_thresholds(path, skip_threshold=0.31234, rule="cheap", quality_threshold=0.65)
    text = path.read_text()
    assert text.startswith("# my proxy\n") and "${ANTHROPIC_API_KEY:-}" in text and "# tuned by hand" in text
    settings = load_settings(path, environ={})
    assert settings.learned_router.skip_threshold == pytest.approx(0.3123)
    assert [rule.quality_threshold for rule in settings.cascade_rules] == [0.7, 0.65]
    assert settings.server.port == 8000


def test_an_existing_threshold_is_replaced_in_place(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("learned_router:\n  models_dir: models\n  skip_threshold: 0.1\nserver:\n  port: 9000\n")
    write_thresholds(path, skip_threshold=0.5, rule="claude-sonnet-4-5", quality_threshold=None)
    text = path.read_text()
    assert text.count("skip_threshold") == 1 and "skip_threshold: 0.5000" in text
    assert load_settings(path, environ={}).learned_router.models_dir == str(path.parent / "models")
    assert set_skip_threshold("learned_router: {}\n", 0.2) == "learned_router:\n  skip_threshold: 0.2000\n"


def test_a_bad_edit_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    with pytest.raises(ValueError, match="no cascade rule 'missing'"):
        write_thresholds(path, skip_threshold=0.3, rule="missing", quality_threshold=0.5)
    with pytest.raises(ConfigError):
        write_thresholds(path, skip_threshold=1.5)
    assert path.read_text() == CONFIG
    assert not list(tmp_path.glob("*.new"))
