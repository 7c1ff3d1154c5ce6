"""The real Claude Code CLI through the proxy: a Read tool round trip, on an Anthropic and an OpenAI upstream."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from router.embedding.encoder import Encoder
from router.replay.runner import BackgroundServer
from tests.support import ProxyFactory, item_body, marker, proxy_settings, received_with

ROOT = Path(__file__).resolve().parents[2]


def claude_binary() -> str | None:
    local = ROOT / ".cache" / "claude-code" / "node_modules" / ".bin" / "claude"
    if local.exists():
        return str(local)
    return shutil.which("claude")


def required_claude() -> str:
    """The Claude Code CLI; skips the test without it, unless CASCADEFLOW_REQUIRE_E2E=1 makes that a failure."""
    binary = claude_binary()
    if binary is None:
        if os.environ.get("CASCADEFLOW_REQUIRE_E2E") == "1":
            pytest.fail("the Claude Code CLI is required (./scripts/setup installs it)")
        pytest.skip("Claude Code CLI not installed (./scripts/setup installs it)")
    return binary


@pytest.fixture(scope="module")
def claude() -> str:
    return required_claude()


def run_claude(binary: str, base_url: str, prompt: str, workdir: Path, home: Path, *extra_args: str,
               timeout_s: float = 180, environment: Mapping[str, str] | None = None) -> dict[str, object]:
    """`claude -p` through the proxy at `base_url` (Read allowed, JSON output, `extra_args` after; `environment`
    added to its variables), its result."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-claude-code-test",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CI": "true",
        **(environment or {}),
    }
    result = subprocess.run(
        [binary, "-p", prompt, "--allowedTools", "Read", "--output-format", "json", *extra_args],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s,
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


CASCADE = [{"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5",
            "verifier_model": "claude-opus-4-8", "quality_threshold": 0.6}]


def main_turn_models(upstream: BackgroundServer, tag: str) -> list[str]:
    return [item_body(item)["model"] for item in received_with(upstream, tag) if item_body(item).get("tools")]


def test_cascade_draft_answers_a_simple_turn(claude: str, upstream: BackgroundServer, proxy_factory: ProxyFactory,
                                             tmp_path: Path) -> None:
    proxy = proxy_factory(proxy_settings(upstream.url, cascade_rules=CASCADE))
    tag = marker()
    (tmp_path / "home").mkdir()
    output = run_claude(claude, proxy.url, f"say hello {tag}", tmp_path, tmp_path / "home")
    assert output["is_error"] is False
    assert output["result"] == "Hello from claude-haiku-4-5."
    assert main_turn_models(upstream, tag) == ["claude-haiku-4-5"]


def test_cascade_escalates_a_draft_tool_call_that_fails_its_schema(
        claude: str, upstream: BackgroundServer, proxy_factory: ProxyFactory, tmp_path: Path) -> None:
    proxy = proxy_factory(proxy_settings(upstream.url, cascade_rules=CASCADE))
    tag = marker()
    target = tmp_path / "hello.txt"
    target.write_text(f"hello file {tag}\n")
    (tmp_path / "home").mkdir()
    prompt = f'{tag} read [[badtool:claude-haiku-4-5]] [[tool:Read {{"file_path": "{target}"}}]]'
    output = run_claude(claude, proxy.url, prompt, tmp_path, tmp_path / "home")
    assert output["is_error"] is False and output["num_turns"] == 2
    assert "hello file" in str(output["result"])
    first_turn = main_turn_models(upstream, tag)[:2]
    assert first_turn == ["claude-haiku-4-5", "claude-opus-4-8"], "the invalid draft tool call must escalate"


def test_claude_code_through_the_learned_router_and_the_outcome_log(
        claude: str, upstream: BackgroundServer, proxy_factory: ProxyFactory, encoder: Encoder,
        tmp_path: Path) -> None:
    from router.policy.features import FEATURE_NAMES
    from tests.learned.support import wait_for

    url = f"sqlite:///{tmp_path}/outcomes.sqlite"
    proxy = proxy_factory(proxy_settings(
        upstream.url, cascade_rules=CASCADE, embedding={"enabled": True},
        learned_router={"models_dir": str(Path(__file__).resolve().parents[2] / "models"), "skip_threshold": 1.0},
        outcome_log={"url": url, "flush_interval_ms": 20, "spool_path": str(tmp_path / "spool.jsonl")},
        labels={"exploration_rate": 1.0}), encoder)
    tag = marker()
    (tmp_path / "home").mkdir()
    output = run_claude(claude, proxy.url, f"say hello {tag}", tmp_path, tmp_path / "home")
    assert output["is_error"] is False
    assert output["result"] == "Hello from claude-opus-4-8."  # every request skips the draft at threshold 1.0
    records = wait_for(url, lambda found: any(r.route == "strong" and r.label is not None for r in found))
    main = next(r for r in records if r.route == "strong" and r.features is not None)
    features = dict(zip(FEATURE_NAMES, main.features or (), strict=True))
    assert features["tools_present"] == 1.0 and features["system_chars_log"] > 5  # Claude Code's tools and prompt
    assert main.prediction is not None and main.reason.startswith("learned router")
    assert main.label_source is not None and main.label_source.startswith("agreement:")  # the draft, explored
