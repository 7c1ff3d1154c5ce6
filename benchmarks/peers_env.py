"""The environments of `peers.py`, built in a scratch folder from PyPI and npm by package name.

A venv for the harness (upstream, load client, the minimal aiohttp proxy), a venv for LiteLLM, an npm install of
claude-code-router, and their config files. Each install is done once (a marker file records it) and may fail
without stopping the benchmark: the system is then skipped with the reason. Also measures install sizes: the
files of a Python distribution and everything it requires, or a node_modules folder.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LITELLM_REQUIREMENT = "litellm[proxy]==1.108.7"
CCR_PACKAGE = "@musistudio/claude-code-router@2.0.0"
HARNESS_REQUIREMENTS = ("uvicorn", "starlette", "aiohttp", "uvloop", "httptools")
INSTALL_TIMEOUT_S = 1200

# Run by a venv's own python: the bytes of the files of some distributions and of all they require (their extras
# included), from the installed metadata alone.
CLOSURE_SIZE = r"""
import json, os, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name
seen, todo = {}, [Requirement(r) for r in json.loads(sys.argv[1])]
while todo:
    req = todo.pop()
    try:
        dist = metadata.distribution(req.name)
    except metadata.PackageNotFoundError:
        continue
    key, extras = canonicalize_name(req.name), set(req.extras)
    if key in seen and extras <= seen[key]:
        continue
    seen.setdefault(key, set()).update(extras)
    for spec in dist.requires or []:
        sub = Requirement(spec)
        if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (extras or {""})):
            todo.append(sub)
sizes = {}
for key in seen:
    dist = metadata.distribution(key)
    sizes[key] = 0
    for name in dist.files or []:
        try:
            sizes[key] += os.path.getsize(dist.locate_file(name))
        except OSError:
            pass
largest = sorted(sizes.items(), key=lambda item: -item[1])[:3]
print(json.dumps({"bytes": sum(sizes.values()), "distributions": len(seen), "largest": largest}))
"""


@dataclass(frozen=True)
class Environments:
    """What the set-up produced; None where an install failed (the reason is in `problems`)."""

    harness_python: Path
    harness_own: bool
    litellm_bin: Path | None
    litellm_config: Path | None
    litellm_key: str
    ccr_dir: Path | None
    problems: dict[str, str]


def _run(command: list[str], log: Path, cwd: Path | None = None) -> bool:
    with log.open("ab") as out:
        try:
            done = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            out.write(f"\n{exc!r}\n".encode())
            return False
    return done.returncode == 0


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-3:])[-400:]


def _venv(folder: Path, requirements: list[str], log: Path) -> bool:
    """A venv with these requirements, installed once (the marker file says it is complete)."""
    marker = folder / ".installed.json"
    if marker.exists() and json.loads(marker.read_text()) == requirements:
        return True
    python = folder / "bin" / "python"
    ok = (python.exists() or _run([sys.executable, "-m", "venv", "--clear", str(folder)], log)) and _run(
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], log) and _run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements], log)
    if ok:
        marker.write_text(json.dumps(requirements))
    return ok


def _ccr(folder: Path, upstream_port: int, ccr_port: int, log: Path) -> bool:
    marker = folder / ".installed.json"
    if not (marker.exists() and json.loads(marker.read_text()) == [CCR_PACKAGE]):
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "package.json").exists():
            (folder / "package.json").write_text('{"name": "peers-ccr", "private": true}\n')
        if not _run(["npm", "install", "--no-audit", "--no-fund", CCR_PACKAGE], log, cwd=folder):
            return False
        marker.write_text(json.dumps([CCR_PACKAGE]))
    # claude-code-router reads $HOME/.claude-code-router/config.json: HOME is this folder's home/ when it runs
    home = folder / "home" / ".claude-code-router"
    home.mkdir(parents=True, exist_ok=True)
    (folder / "tmp").mkdir(exist_ok=True)
    config = {"LOG": False, "APIKEY": "sk-fake-key", "NON_INTERACTIVE_MODE": True, "HOST": "127.0.0.1",
              "PORT": ccr_port, "Router": {"default": "fake,fake-model"},
              "Providers": [{"name": "fake", "api_base_url": f"http://127.0.0.1:{upstream_port}/v1/chat/completions",
                             "api_key": "sk-fake", "models": ["fake-model"]}]}
    (home / "config.json").write_text(json.dumps(config, indent=1))
    return True


def litellm_config(key: str, upstream_port: int) -> str:
    """LiteLLM's config: the fake model on the upstream's OpenAI path, and its Anthropic path on chat completions."""
    return (f"model_list:\n  - model_name: fake-model\n    litellm_params:\n      model: openai/fake-model\n"
            f"      api_base: http://127.0.0.1:{upstream_port}/v1\n      api_key: sk-fake-key\n"
            f"general_settings:\n  master_key: {key}\n"
            "litellm_settings:\n  # openai/* models are otherwise bridged to the Responses API for /v1/messages\n"
            "  use_chat_completions_url_for_anthropic_messages: true\n")


def prepare(scratch: Path, wanted: set[str], upstream_port: int, ccr_port: int) -> Environments:
    """Install what the wanted systems need (once) and write their configs; failures are reported, not raised."""
    logs = scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    problems: dict[str, str] = {}
    harness = scratch / "venv-harness"
    print("setting up the harness venv ...", flush=True)
    own = _venv(harness, list(HARNESS_REQUIREMENTS), logs / "install-harness.log")
    if not own:
        problems["harness"] = f"harness venv install failed ({_tail(logs / 'install-harness.log')}); " \
                              "the harness runs on this interpreter and the floor has no install size"
        print("!! " + problems["harness"], flush=True)
    litellm_bin = litellm_cfg = ccr_dir = None
    key_file = scratch / "litellm_master_key.txt"
    if not key_file.exists():
        key_file.write_text("sk-" + secrets.token_hex(32))
    key = key_file.read_text().strip()
    if "litellm" in wanted:
        print(f"setting up LiteLLM ({LITELLM_REQUIREMENT}) ...", flush=True)
        if _venv(scratch / "venv-litellm", [LITELLM_REQUIREMENT], logs / "install-litellm.log"):
            litellm_bin = scratch / "venv-litellm" / "bin" / "litellm"
            litellm_cfg = scratch / "litellm_config.yaml"
            litellm_cfg.write_text(litellm_config(key, upstream_port))
        else:
            problems["litellm"] = f"install failed: {_tail(logs / 'install-litellm.log')}"
    if "ccr" in wanted:
        print(f"setting up claude-code-router ({CCR_PACKAGE}) ...", flush=True)
        if _ccr(scratch / "ccr", upstream_port, ccr_port, logs / "install-ccr.log"):
            ccr_dir = scratch / "ccr"
        else:
            problems["ccr"] = f"npm install failed: {_tail(logs / 'install-ccr.log')}"
    python = harness / "bin" / "python" if own else Path(sys.executable)
    return Environments(python, own, litellm_bin, litellm_cfg, key, ccr_dir, problems)


def tree_bytes(*folders: Path, bytecode: bool = True) -> int:
    """The bytes of the files under some folders (without compiled-bytecode folders unless `bytecode`)."""
    total = 0
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [name for name in dirs if bytecode or name != "__pycache__"]
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    pass
    return total


@dataclass(frozen=True)
class InstallSize:
    """A system's own install: its bytes, and what stands out."""

    bytes: int | None
    note: str = ""


def mb(size: int) -> str:
    return f"{size / 2**20:,.0f} MB"


def python_install(python: Path, requirements: list[str], extra: int = 0) -> InstallSize:
    """The installed bytes of these requirements and all they require in the venv of `python` (+ `extra`), the
    largest distributions among them, and the whole venv's size for comparison."""
    try:
        done = subprocess.run([str(python), "-c", CLOSURE_SIZE, json.dumps(requirements)], capture_output=True,
                              text=True, timeout=120, check=True)
        found = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return InstallSize(None, "size unknown")
    largest = ", ".join(f"{name} {mb(size)}" for name, size in found["largest"])
    venv = tree_bytes(python.parent.parent)
    return InstallSize(found["bytes"] + extra, f"{found['distributions']} distributions, largest {largest}; "
                                               f"whole venv {mb(venv)}")


def version_of(python: Path, distribution: str) -> str:
    """An installed distribution's version in the venv of `python` ('?' when unknown)."""
    code = f"from importlib.metadata import version; print(version({distribution!r}))"
    try:
        return subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
