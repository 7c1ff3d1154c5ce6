"""Where state lives: relative paths in the settings resolve against one base directory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "cascadeflow"
SQLITE_PREFIX = "sqlite:///"


def home_dir(environ: Mapping[str, str]) -> Path:
    """The user's home: HOME of the given environment, else the account's."""
    value = environ.get("HOME")
    return Path(value) if value else Path.home()


def user_data_dir(environ: Mapping[str, str]) -> Path:
    """The per-user data directory: `$XDG_DATA_HOME/cascadeflow`, else `~/.local/share/cascadeflow`."""
    xdg = environ.get("XDG_DATA_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore a relative value
        return Path(xdg) / APP_NAME
    return home_dir(environ) / ".local" / "share" / APP_NAME


def expand_user(value: str, environ: Mapping[str, str]) -> str:
    """`~` or `~/x` with the home of the given environment."""
    if value == "~" or value.startswith("~/"):
        return str(home_dir(environ) / value[2:])
    return value


def state_base(config_path: str | Path | None, data_dir: str | None, environ: Mapping[str, str]) -> Path:
    """The base of relative state paths: `data_dir`, else the config file's directory, else the user data dir."""
    # A relative data_dir is relative to the config file's directory (the working directory without a file).
    # Symbolic links are not resolved: a config mounted through links (a Kubernetes ConfigMap) keeps its directory.
    anchor = Path(os.path.abspath(config_path)).parent if config_path is not None else Path(os.path.abspath("."))
    if data_dir:
        return anchor / expand_user(data_dir, environ)
    if config_path is not None:
        return anchor
    return user_data_dir(environ)


def resolve_path(value: str, base: Path, environ: Mapping[str, str]) -> str:
    """An absolute path for a setting: relative paths are taken under `base`; an empty value stays empty."""
    if not value:
        return value
    path = Path(expand_user(value, environ))
    return str(path if path.is_absolute() else base / path)


def resolve_sqlite_url(url: str, base: Path, environ: Mapping[str, str]) -> str:
    """`sqlite:///relative/path` under `base`; absolute files, `:memory:` and other URLs unchanged."""
    if not url.startswith(SQLITE_PREFIX):
        return url
    path = url[len(SQLITE_PREFIX):]
    if not path or path.startswith((":memory:", "file:")):
        return url
    return SQLITE_PREFIX + resolve_path(path, base, environ)
