"""State paths: relative paths resolve against data_dir, the config file's directory or the user data dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from router.cli import main
from router.paths import resolve_sqlite_url, state_base, user_data_dir
from router.settings import Settings, load_settings

PATHS = """
cache: {directory: cache/semantic}
outcome_log: {url: "sqlite:///db/outcomes.sqlite", spool_path: spool/outcomes.jsonl}
learned_router: {models_dir: models, artifact: models/router-1}
"""


def config(directory: Path, text: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_resolve_against_the_config_files_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    base = tmp_path / "etc" / "cascadeflow"
    settings = load_settings(os.path.relpath(config(base), tmp_path), environ={})
    assert settings.data_dir == str(base)
    assert settings.cache.directory == str(base / ".cache" / "semantic")
    assert settings.outcome_log.url == f"sqlite:///{base}/var/outcomes.sqlite"
    assert settings.outcome_log.spool_path == str(base / "var" / "outcomes.spool.jsonl")
    assert settings.learned_router.models_dir is None, "unset: the shipped models"


def test_configured_relative_paths_resolve_against_the_config(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path / "conf", PATHS), environ={})
    base = tmp_path / "conf"
    assert settings.cache.directory == str(base / "cache" / "semantic")
    assert settings.outcome_log.url == f"sqlite:///{base}/db/outcomes.sqlite"
    assert settings.outcome_log.spool_path == str(base / "spool" / "outcomes.jsonl")
    assert settings.learned_router.models_dir == str(base / "models")
    assert settings.learned_router.artifact == str(base / "models" / "router-1")


@pytest.mark.parametrize(("data_dir", "expected"), [("state", "conf/state"), ("../var/lib/cf", "conf/../var/lib/cf")])
def test_a_relative_data_dir_is_relative_to_the_config(tmp_path: Path, data_dir: str, expected: str) -> None:
    settings = load_settings(config(tmp_path / "conf", PATHS + f"data_dir: {data_dir}\n"), environ={})
    base = tmp_path / expected
    assert settings.data_dir == str(base)
    assert settings.cache.directory == str(base / "cache" / "semantic")
    assert settings.outcome_log.url == f"sqlite:///{base}/db/outcomes.sqlite"
    assert settings.learned_router.models_dir == str(base / "models")


def test_an_absolute_data_dir_from_the_environment(tmp_path: Path) -> None:
    target = tmp_path / "data"
    settings = load_settings(config(tmp_path / "conf", PATHS), environ={"CASCADEFLOW_DATA_DIR": str(target)})
    assert settings.data_dir == str(target)
    assert settings.outcome_log.spool_path == str(target / "spool" / "outcomes.jsonl")


def test_without_a_config_file_state_goes_to_the_user_data_dir(tmp_path: Path) -> None:
    xdg = load_settings(None, environ={"XDG_DATA_HOME": str(tmp_path / "xdg"), "HOME": "/home/nobody"})
    assert xdg.data_dir == str(tmp_path / "xdg" / "cascadeflow")
    assert xdg.cache.directory == str(tmp_path / "xdg" / "cascadeflow" / ".cache" / "semantic")
    home = load_settings(None, environ={"HOME": "/home/u", "XDG_DATA_HOME": "relative/ignored"})
    assert home.data_dir == "/home/u/.local/share/cascadeflow"
    assert home.outcome_log.url == "sqlite:////home/u/.local/share/cascadeflow/var/outcomes.sqlite"


def test_without_a_config_file_a_relative_data_dir_is_relative_to_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={"CASCADEFLOW_DATA_DIR": "state", "HOME": "/home/u"})
    assert settings.data_dir == str(tmp_path / "state")
    tilde = load_settings(None, environ={"CASCADEFLOW_DATA_DIR": "~/cf", "HOME": "/home/u"})
    assert tilde.data_dir == "/home/u/cf"


def test_absolute_paths_memory_and_remote_urls_are_untouched(tmp_path: Path) -> None:
    text = ("cache: {directory: /srv/cache}\noutcome_log: {url: 'sqlite:///:memory:', spool_path: /srv/spool}\n"
            "learned_router: {models_dir: /srv/models}\n")
    settings = load_settings(config(tmp_path, text), environ={})
    assert (settings.cache.directory, settings.outcome_log.url, settings.outcome_log.spool_path,
            settings.learned_router.models_dir) == ("/srv/cache", "sqlite:///:memory:", "/srv/spool", "/srv/models")
    postgres = load_settings(config(tmp_path, "outcome_log: {url: 'postgresql://db/x', spool_path: null}\n"),
                             environ={})
    assert postgres.outcome_log.url == "postgresql://db/x" and postgres.outcome_log.spool_path is None
    assert resolve_sqlite_url("sqlite:////abs/x.db", tmp_path, {}) == "sqlite:////abs/x.db"
    assert resolve_sqlite_url("sqlite:///rel/x.db", Path("/base"), {}) == "sqlite:////base/rel/x.db"


def test_settings_built_directly_keep_literal_paths() -> None:
    settings = Settings(cache={"directory": "rel/cache"}, learned_router={"models_dir": "models"})
    assert settings.cache.directory == "rel/cache" and settings.learned_router.models_dir == "models"
    assert settings.outcome_log.url == "sqlite:///var/outcomes.sqlite" and settings.data_dir is None


def test_a_linked_config_keeps_the_links_directory(tmp_path: Path) -> None:
    real = config(tmp_path / "real")
    (tmp_path / "mounted").mkdir()
    link = tmp_path / "mounted" / "config.yaml"
    link.symlink_to(real)
    assert state_base(link, None, {}) == tmp_path / "mounted"
    assert user_data_dir({"HOME": "/h"}) == Path("/h/.local/share/cascadeflow")


def test_config_check_reports_the_state_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path / "conf", "cache: {enabled: true}\n")
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"state directory: {tmp_path / 'conf'}" in out
    assert f"outcome log: sqlite:///{tmp_path / 'conf' / 'var' / 'outcomes.sqlite'}" in out
    assert f"semantic cache: {tmp_path / 'conf' / '.cache' / 'semantic'}" in out
