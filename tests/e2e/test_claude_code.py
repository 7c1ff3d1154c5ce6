"""The real Claude Code CLI through the proxy: a Read tool round trip, on an Anthropic and an OpenAI upstream."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from router.replay.runner import BackgroundServer
from tests.support import ProxyFactory, item_body, marker, proxy_settings, received_with

ROOT = Path(__file__).resolve().parents[2]


def claude_binary() -> str | None:
    local = ROOT / ".cache" / "claude-code" / "node_modules" / ".bin" / "claude"
    if local.exists():
        return str(local)
    return shutil.which("claude")


@pytest.fixture(scope="module")
def claude() -> str:
    binary = claude_binary()
    if binary is None:
        if os.environ.get("CASCADEFLOW_REQUIRE_E2E") == "1":
            pytest.fail("the Claude Code CLI is required (./scripts/setup installs it)")
        pytest.skip("Claude Code CLI not installed (./scripts/setup installs it)")
    return binary


def run_claude(binary: str, base_url: str, prompt: str, workdir: Path, home: Path) -> dict[str, object]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-claude-code-test",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CI": "true",
    }
    result = subprocess.run(
        [binary, "-p", prompt, "--allowedTools", "Read", "--output-format", "json"],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, f"claude failed: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    output: dict[str, object] = json.loads(result.stdout)
    return output


@pytest.mark.parametrize("upstream_kind", ["anthropic", "openai"])
def test_read_tool_round_trip(claude: str, upstream: BackgroundServer, proxy_factory: ProxyFactory,
                              tmp_path: Path, upstream_kind: str) -> None:
    if upstream_kind == "anthropic":
        proxy = proxy_factory()
    else:
        proxy = proxy_factory(proxy_settings(upstream.url, models=[{"match": "claude-*", "provider": "openai"}]))
    tag = marker()
    workdir, home = tmp_path / "work", tmp_path / "home"
    workdir.mkdir()
    home.mkdir()
    target = workdir / "hello.txt"
    target.write_text(f"hello file {tag}\n")
    prompt = f'{tag} read the file [[tool:Read {{"file_path": "{target}"}}]]'

    output = run_claude(claude, proxy.url, prompt, workdir, home)

    assert output["is_error"] is False and output["num_turns"] == 2
    assert str(output["result"]).startswith("Tool result received:")
    assert "hello file" in str(output["result"])
    follow_up = received_with(upstream, f"hello file {tag}")
    assert follow_up, "the follow-up with the tool result must reach the upstream"
    seen = follow_up[-1]
    body = item_body(seen)
    if upstream_kind == "anthropic":
        assert seen["path"] == "/v1/messages" and seen["query"] == "beta=true"
        result_block = body["messages"][-1]["content"][0]
        assert result_block["type"] == "tool_result" and tag in json.dumps(result_block["content"])
        assert "claude-code-20250219" in seen["headers"]["anthropic-beta"]
    else:
        assert seen["path"] == "/v1/chat/completions"
        tool_messages = [m for m in body["messages"] if m["role"] == "tool"]
        assert tool_messages and tag in json.dumps(tool_messages[-1]["content"])
        assistant = next(m for m in body["messages"] if m.get("tool_calls"))
        assert assistant["tool_calls"][0]["function"]["name"] == "Read"
        assert seen["headers"]["authorization"] == "Bearer sk-proxy-openai"
