"""`cascadeflow proxy start` off a terminal: every line on stderr is JSON (uvicorn's too), one per request, and
SIGHUP reloads the config file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.replay.runner import BackgroundServer

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """\
providers:
  anthropic: {{kind: anthropic, base_url: "{url}", api_key: sk-cli-secret}}
embedding: {{enabled: false}}
outcome_log: {{enabled: false}}
learned_router: {{enabled: false}}
verifier: {{enabled: false}}
reload: {{watch: false}}
cascade_rules:
  - {{name: team, draft_model: claude-haiku-4-5, verifier_model: claude-opus-4-8, quality_threshold: {threshold}}}
"""


def read_lines(process: subprocess.Popen[str], until: str, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Parse stderr lines (each must be JSON) until one whose message contains `until`."""
    assert process.stderr is not None
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw = process.stderr.readline()
        if not raw:
            break
        lines.append(json.loads(raw))  # a line that is not JSON fails here
        if until in lines[-1]["message"]:
            return lines
    raise AssertionError(f"no line with {until!r} in {lines}")


@pytest.mark.slow
def test_the_command_line_logs_json_lines_and_reloads_on_sighup(tmp_path: Path, upstream: BackgroundServer) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(url=upstream.url, threshold=0.6))
    environment = {**os.environ, "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "proxy", "start", "--config", str(config), "--port", "0"],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.split("listening on ")[1].split()[0]
        started = read_lines(process, "Application startup complete")
        assert all(line["level"] in ("INFO", "WARNING") and "time" in line for line in started)
        response = httpx.post(url + "/v1/messages", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                              json={"model": "cascade/team", "max_tokens": 16,
                                    "messages": [{"role": "user", "content": "What is 2+2?"}]}, timeout=30)
        request = read_lines(process, "POST /v1/messages")[-1]
        assert request["request_id"] == response.headers["x-request-id"] and request["route"] == "draft"
        config.write_text(CONFIG.format(url=upstream.url, threshold=0.8))
        process.send_signal(signal.SIGHUP)
        reloaded = read_lines(process, "config reloaded")[-1]
        assert reloaded["trigger"] == "SIGHUP" and reloaded["applied"] == ["cascade_rules.0.quality_threshold"]
    finally:
        process.terminate()
        _, rest = process.communicate(timeout=30)
    assert "sk-cli-secret" not in rest
