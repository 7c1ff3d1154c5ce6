"""The real Claude Code CLI through the proxy with local models served by llama.cpp: a plain turn and a Read tool
round trip, with Qwen2.5-Coder-0.5B as the draft of Claude Code's main model.

A: local draft, remote strong model (the scripted Anthropic upstream of tests/e2e, which calls Read when its
prompt says `[[tool:Read ...]]`). B: local models only, Qwen2.5-Coder-1.5B as the strong model.

Neither Qwen2.5-Coder model makes a structured tool call: asked to use a tool, both write the call as text
(`{"name": "Read", "arguments": {...}}`, bare or in a ```json fence, not in the `<tool_call>` tags of their chat
template), and llama.cpp passes it on as text. Such a draft fails the tool-call gate and escalates (a draft that
answers something else instead is judged by the verifier). In A the strong model then calls Read and the round trip
completes; in B the 1.5B writes the call as text too, and Claude Code ends the turn showing it: no tool runs, but
the turn completes without an error.

Claude Code runs with `--tools Read` (about 2k tokens of prompt instead of about 19k for its full tool set, which
fits the 32k window `cascadeflow local-models serve` gives by default but takes minutes a request on two cores) and
`--exclude-dynamic-system-prompt-sections` (the working directory moves out of the system prompt, so llama.cpp
reuses the cached prompt from one test to the next). The servers answer greedily (router/local/worker.py); drafts
are capped at DRAFT_MAX_TOKENS, so one that loops is cut (and escalates) instead of taking minutes on busy cores.

Needs the Claude Code CLI (skipped without it unless CASCADEFLOW_REQUIRE_E2E=1) and
`cascadeflow local-models install --models qwen2.5-coder-0.5b qwen2.5-coder-1.5b` (skipped without them unless
CASCADEFLOW_REQUIRE_LOCAL_MODELS=1). Takes a few minutes on two cores.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.app import create_app
from router.local.catalog import DRAFT_MODEL, STRONG_MODEL, config_snippet, provider_name
from router.local.serve import RunningServer, serve_models
from router.observability.logs import REQUEST_LOGGER
from router.replay.runner import BackgroundServer
from router.settings import Settings
from tests.e2e.test_claude_code import required_claude, run_claude
from tests.local.support import installed_models_dir
from tests.support import marker, received_with

pytestmark = [pytest.mark.slow, pytest.mark.local_models]
CLAUDE_MODEL = "claude-opus-4-8"
"""The main model Claude Code asks for (given with --model, so a new default cannot change the test)."""
CONTEXT = 8192
"""Enough for `--tools Read` (about 2k tokens of prompt) and an answer."""
CLAUDE_ARGS = ("--model", CLAUDE_MODEL, "--tools", "Read", "--exclude-dynamic-system-prompt-sections")
TIMEOUT_S = 900.0
DRAFT_TIMEOUT_S = 600.0
"""Busy cores can take minutes over a draft: a draft cut at the default 120 s would escalate for that instead."""
DRAFT_MAX_TOKENS = 256
WAIT_FOR_THE_PROXY = {"BUN_CONFIG_HTTP_IDLE_TIMEOUT": str(int(TIMEOUT_S)), "API_TIMEOUT_MS": str(int(TIMEOUT_S * 1000)),
                      "CLAUDE_STREAM_IDLE_TIMEOUT_MS": str(int(TIMEOUT_S * 1000))}
"""Claude Code (built on Bun, whose fetch gives up on a socket idle for 300 s) abandons a request after 5 minutes
without a byte and sends it again; the proxy sends nothing until its draft is judged."""
QUIET = {"outcome_log": {"enabled": False}, "cache": {"enabled": False}, "embedding": {"enabled": False},
         "learned_router": {"enabled": False}}
"""Every main turn drafts first (no learned router), nothing is written down."""


@pytest.fixture(scope="module")
def claude_cli() -> str:
    return required_claude()


@pytest.fixture(scope="module")
def servers(claude_cli: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningServer]]:
    """Both models served once for the module (after the CLI is found: a skipped test starts no model), on one
    thread each: on two busy shared cores, two llama.cpp threads wait on each other (4 tokens/s instead of 30)."""
    models_dir = installed_models_dir([DRAFT_MODEL, STRONG_MODEL])
    with serve_models([DRAFT_MODEL, STRONG_MODEL], models_dir=models_dir, port_base=0, ctx_size=CONTEXT, threads=1,
                      log_dir=tmp_path_factory.mktemp("local-model-logs")) as running:
        yield running


def local_config(servers: dict[str, RunningServer], names: list[str]) -> dict[str, Any]:
    """The config `cascadeflow local-models serve` prints for these served models, the draft's answers capped."""
    snippet = config_snippet({name: servers[name].base_url for name in names},
                             context_windows={name: servers[name].context_window for name in names})
    config: dict[str, Any] = yaml.safe_load(snippet)
    config["model_info"][DRAFT_MODEL]["max_output_tokens"] = DRAFT_MAX_TOKENS
    return config


@pytest.fixture(scope="module")
def proxy_a(servers: dict[str, RunningServer], upstream: BackgroundServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """Claude Code's main model drafted by the local 0.5B, escalated to the scripted Anthropic upstream."""
    config = local_config(servers, [DRAFT_MODEL])
    config["providers"]["anthropic"] = {"kind": "anthropic", "base_url": upstream.url, "api_key": "sk-proxy-anthropic"}
    config["models"].append({"match": "claude-*", "provider": "anthropic"})
    config["cascade_rules"] = [{"request_model": CLAUDE_MODEL, "draft_model": DRAFT_MODEL,
                                "verifier_model": CLAUDE_MODEL, "verify": {"profile": "local"},
                                "draft_timeout_s": DRAFT_TIMEOUT_S}]
    settings = Settings(**config | QUIET | {"data_dir": str(tmp_path_factory.mktemp("proxy-a"))})
    with BackgroundServer(create_app(settings)) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def proxy_b(servers: dict[str, RunningServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """The printed local cascade (one draft answer, no agreement samples, to save time) for Claude Code's main
    model; its other Claude models go to the 1.5B."""
    config = local_config(servers, [DRAFT_MODEL, STRONG_MODEL])
    (rule,) = config["cascade_rules"]
    rule |= {"request_model": CLAUDE_MODEL, "verify": rule["verify"] | {"samples": 1},
             "draft_timeout_s": DRAFT_TIMEOUT_S}
    config["models"].append({"match": "claude-*", "provider": provider_name(STRONG_MODEL),
                             "upstream_model": STRONG_MODEL})
    settings = Settings(**config | QUIET | {"data_dir": str(tmp_path_factory.mktemp("proxy-b"))})
    with BackgroundServer(create_app(settings)) as proxy:
        yield proxy


def ask(claude: str, proxy: BackgroundServer, prompt: str, tmp_path: Path) -> dict[str, object]:
    """One `claude -p` session through the proxy in a fresh working directory and home."""
    workdir, home = tmp_path / "work", tmp_path / "home"
    workdir.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    output = run_claude(claude, proxy.url, prompt, workdir, home, *CLAUDE_ARGS, timeout_s=TIMEOUT_S,
                        environment=WAIT_FOR_THE_PROXY)
    print(f"{output['num_turns']} turns in {output['duration_ms']} ms: {output['result']!r}")
    return output


def main_turns(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The proxy's request lines (route, reason, served model) of Claude Code's main turns, in order."""
    lines = [getattr(record, "fields", None) for record in caplog.records if record.name == REQUEST_LOGGER]
    turns = [line for line in lines if isinstance(line, dict) and line.get("requested_model") == CLAUDE_MODEL]
    for turn in turns:
        print({key: turn.get(key) for key in ("route", "reason", "served_model", "duration_ms", "draft_ms")})
    assert all(turn["status"] == 200 for turn in turns), "no request failed (nor was abandoned and retried)"
    return turns


@pytest.fixture
def requests_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=REQUEST_LOGGER)
    return caplog


def read_prompt(tmp_path: Path, tag: str, *, scripted: bool) -> str:
    """A prompt asking for a file to be read (with the scripted upstream's directive to call Read, for A)."""
    target = tmp_path / "work" / "hello.txt"
    target.parent.mkdir(exist_ok=True)
    target.write_text(f"hello file {tag}\n")
    directive = f' [[tool:Read {{"file_path": "{target}"}}]]' if scripted else ""
    return f"{tag} Use the Read tool to read the file {target} and tell me what it says.{directive}"


def test_a_plain_turn_is_drafted_locally(claude_cli: str, proxy_a: BackgroundServer, tmp_path: Path,
                                         requests_logged: pytest.LogCaptureFixture) -> None:
    output = ask(claude_cli, proxy_a, f"say hello {marker()}", tmp_path)
    assert output["is_error"] is False and output["num_turns"] == 1
    (turn,) = main_turns(requests_logged)
    assert turn["draft_model"] == DRAFT_MODEL
    assert turn["draft_status"] in ("accepted", "rejected"), "the local draft answered and was judged"
    if turn["route"] == "draft":
        assert turn["served_model"] == DRAFT_MODEL and str(output["result"]).strip()
    else:
        assert turn["served_model"] == CLAUDE_MODEL and output["result"] == f"Hello from {CLAUDE_MODEL}."


def test_a_tool_round_trip_with_a_local_draft(claude_cli: str, proxy_a: BackgroundServer,
                                             upstream: BackgroundServer, tmp_path: Path,
                                             requests_logged: pytest.LogCaptureFixture) -> None:
    tag = marker()
    output = ask(claude_cli, proxy_a, read_prompt(tmp_path, tag, scripted=True), tmp_path)
    assert output["is_error"] is False and output["num_turns"] == 2, "Read ran and its result was answered"
    first, second = main_turns(requests_logged)
    assert first["draft_status"] in ("accepted", "rejected") and second["draft_status"] in ("accepted", "rejected")
    if first["route"] == "draft":  # a structured call of the draft's, served (Qwen2.5-Coder makes none)
        assert first["served_model"] == DRAFT_MODEL
    else:  # the strong model made the call the draft wrote as text (or did not make)
        assert (first["route"], first["served_model"]) == ("escalated", CLAUDE_MODEL)
    if second["route"] != "draft":
        assert received_with(upstream, f"hello file {tag}"), "the Read result reached the strong model"
        assert "hello file" in str(output["result"])


def test_b_a_plain_turn_on_local_models_only(claude_cli: str, proxy_b: BackgroundServer, tmp_path: Path,
                                            requests_logged: pytest.LogCaptureFixture) -> None:
    output = ask(claude_cli, proxy_b, f"say hello {marker()}", tmp_path)
    assert output["is_error"] is False and output["num_turns"] == 1 and str(output["result"]).strip()
    (turn,) = main_turns(requests_logged)
    assert turn["draft_status"] in ("accepted", "rejected")
    assert turn["served_model"] == (DRAFT_MODEL if turn["route"] == "draft" else STRONG_MODEL)


def test_b_local_models_write_the_tool_call_as_text(claude_cli: str, proxy_b: BackgroundServer, tmp_path: Path,
                                                    requests_logged: pytest.LogCaptureFixture) -> None:
    output = ask(claude_cli, proxy_b, read_prompt(tmp_path, marker(), scripted=False), tmp_path)
    assert output["is_error"] is False, "the turn completes without a proxy error"
    assert output["num_turns"] == 1, "no model made a structured call: Read does not run"
    (turn,) = main_turns(requests_logged)
    assert turn["draft_status"] in ("accepted", "rejected")
    if turn["route"] == "draft":  # a text answer of the draft's, served (it did not write the call)
        assert turn["served_model"] == DRAFT_MODEL
    else:
        assert turn["served_model"] == STRONG_MODEL
        assert '"name": "Read"' in str(output["result"]), "Claude Code shows the 1.5B's call, written as text"
