"""Structure rules of the code base: file sizes, pure decision modules, import without side effects."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PURE_PACKAGES = ("router/policy", "router/scoring", "router/protocol")
IO_MODULES = ("aiohttp", "httpx", "fastapi", "starlette", "redis", "asyncpg", "socket", "uvicorn")


def python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))]


def test_no_source_file_over_400_lines() -> None:
    too_long = {str(path.relative_to(ROOT)): n for path in python_files("router", "training")
                if (n := len(path.read_text().splitlines())) > 400}
    assert too_long == {}


def test_decision_and_protocol_modules_do_no_io() -> None:
    offenders = []
    for path in python_files(*PURE_PACKAGES):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.split(".")[0] in IO_MODULES]
    assert offenders == []


def test_importing_the_app_has_no_side_effects() -> None:
    code = ("import socket, threading\n"
            "socket.socket.connect = lambda *a, **k: (_ for _ in ()).throw(AssertionError('network at import'))\n"
            "before = threading.active_count()\n"
            "import router.app, router.cli, router.pipeline\n"
            "assert threading.active_count() == before\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_only_the_provider_adapters_know_a_provider_kind() -> None:
    """Request building and answer decoding per provider live in router/providers/ alone."""
    offenders = []
    for path in python_files("router"):
        relative = str(path.relative_to(ROOT))
        if relative.startswith(("router/providers/", "router/settings.py")):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "provider.kind" in line or "provider_kind ==" in line.replace("exc.provider_kind == client_kind", ""):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []


def test_the_pipeline_is_a_package_of_steps() -> None:
    steps = {path.stem for path in (ROOT / "router" / "pipeline").glob("*.py")}
    assert {"cache", "predict", "draft", "verify", "record", "flow", "outcome"} <= steps
    assert not (ROOT / "router" / "pipeline.py").exists()
