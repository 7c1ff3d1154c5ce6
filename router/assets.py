"""Files shipped with the proxy: the router artifact under `models/` and the RouteLLM data under `data/routellm/`.

In a source checkout (or an editable install) they are the repository's top-level `models/` and `data/`; an
installed wheel carries the same files in the `router_assets` package (see pyproject.toml).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ASSETS_PACKAGE = "router_assets"


def _checkout_root() -> Path | None:
    """The source checkout this code runs from, if it does."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "models").is_dir() else None


def _installed_root() -> Path | None:
    """The installed `router_assets` package, if any."""
    spec = importlib.util.find_spec(ASSETS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def assets_root() -> Path:
    """The directory holding the shipped `models/` and `data/` (the checkout's, else the installed package's)."""
    root = _checkout_root() or _installed_root()
    return root if root is not None else Path(__file__).resolve().parents[1] / ASSETS_PACKAGE


def shipped_models_dir() -> Path:
    """The shipped router artifacts' directory (`router-<version>/` inside)."""
    return assets_root() / "models"


def shipped_routellm_data() -> Path:
    """The shipped RouteLLM labelled data set (`data/routellm/dev.jsonl`)."""
    return assets_root() / "data" / "routellm" / "dev.jsonl"


def models_dir_of(configured: str | None) -> Path:
    """The artifact directory a `learned_router.models_dir` setting means (None: the shipped one)."""
    return Path(configured) if configured else shipped_models_dir()
