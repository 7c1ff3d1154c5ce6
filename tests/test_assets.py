"""Shipped assets: the router artifact and the demo data are found in a checkout and inside a built wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from setuptools import find_namespace_packages

from router.assets import models_dir_of, shipped_models_dir, shipped_routellm_data
from router.learned import LearnedRouter
from router.learning_settings import LearnedRouterSettings
from router.metrics import Metrics
from router.policy.classifier import latest_artifact_dir, read_metadata

ROOT = Path(__file__).resolve().parent.parent
ASSET_FILES = ("models/README.md", "data/README.md", "data/routellm/README.md", "data/routellm/dev.jsonl")
ARTIFACT_FILES = ("model.joblib", "metadata.json", "report.md")


def test_the_helper_finds_the_shipped_artifact_and_demo_data() -> None:
    assert shipped_models_dir() == ROOT / "models" and models_dir_of(None) == ROOT / "models"
    assert models_dir_of("/srv/models") == Path("/srv/models")
    artifact = latest_artifact_dir(shipped_models_dir())
    assert artifact is not None and read_metadata(artifact).version
    assert shipped_routellm_data() == ROOT / "data" / "routellm" / "dev.jsonl" and shipped_routellm_data().is_file()


def test_the_learned_router_defaults_to_the_shipped_models() -> None:
    router = LearnedRouter(LearnedRouterSettings(), Metrics(), dimension=384, embedding_model="x")
    assert router.models_dir == shipped_models_dir()


def test_the_package_list_covers_every_source_package() -> None:
    configured = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = find_namespace_packages(where=str(ROOT), include=["router", "router.*", "training", "training.*"],
                                    exclude=["*.__pycache__"])
    assert sorted(found) == sorted(name for name in configured if not name.startswith("router_assets")), (
        "add new packages to [tool.setuptools] packages in pyproject.toml")


def test_a_built_wheel_carries_the_assets_and_finds_them(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("router", "training", "models", "data"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    expected = {f"router_assets/{name}" for name in ASSET_FILES}
    for artifact in (ROOT / "models").glob("router-*"):
        expected |= {f"router_assets/models/{artifact.name}/{name}" for name in ARTIFACT_FILES}
    assert expected - names == set()
    assert {"router/assets.py", "router/settings.py", "training/__init__.py"} <= names
    code = ("from router.assets import shipped_models_dir, shipped_routellm_data\n"
            "print(shipped_models_dir()); print(shipped_routellm_data())\n")
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path / "site")}, timeout=60, check=True)
    models, data = result.stdout.split()
    assert models == str(tmp_path / "site" / "router_assets" / "models")
    assert data == str(tmp_path / "site" / "router_assets" / "data" / "routellm" / "dev.jsonl")
    assert latest_artifact_dir(Path(models)) is not None and Path(data).is_file()
