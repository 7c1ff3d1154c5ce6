"""Shared by the real-model tests: find the installed local models, or skip (or fail when CI requires them)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from router.local.catalog import SERVER_PACKAGE, select_models
from router.local.install import default_models_dir, installed_version, model_status


def missing_reason(models_dir: Path, names: Sequence[str]) -> str | None:
    """Why these models cannot be served from `models_dir`, or None when they can."""
    if installed_version(SERVER_PACKAGE.name) is None:
        return f"{SERVER_PACKAGE.name} is not installed (cascadeflow local-models install)"
    for model in select_models(list(names)):
        if model_status(model, models_dir).state != "verified":
            return (f"{model.name} is not installed in {models_dir} "
                    f"(cascadeflow local-models install --models {model.name})")
    return None


def installed_models_dir(names: Sequence[str]) -> Path:
    """The models directory holding these models; skips the test without them, unless
    CASCADEFLOW_REQUIRE_LOCAL_MODELS=1 makes a missing model a failure."""
    models_dir = default_models_dir(os.environ)
    reason = missing_reason(models_dir, names)
    if reason is not None:
        if os.environ.get("CASCADEFLOW_REQUIRE_LOCAL_MODELS") == "1":
            pytest.fail(f"local models are required: {reason}")
        pytest.skip(reason)
    return models_dir
