"""A reloaded config moves the budgets' worst-case estimate: the next admission holds the output of a reloaded
`max_output_tokens`, and covers the draft and the strong model of a reloaded cascade rule."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from router.auth_keys.admission import KeyPrincipal
from router.budgets.admission import Budgets
from router.budgets.core import BudgetLimits, BudgetScope, MemoryBudgets
from router.observability.settings import ReloadSettings
from router.reload import ConfigReloader, ConfigSource
from router.services import Services
from router.settings import load_settings
from router.types import Answer, ClientCall, Dialect, Endpoint, JSONAnswer

OUTPUT_USD_PER_MILLION = 10.0
SCOPE = BudgetScope("key:reloaded", BudgetLimits(daily_usd=100.0))


def config(folder: Path, max_output: int, rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    prices = {"input": 1.0, "output": OUTPUT_USD_PER_MILLION}
    return {
        "data_dir": str(folder),
        "providers": {"openai": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-oai"}},
        "model_info": {"gpt-4o-mini": {"prices": prices, "max_output_tokens": max_output},
                       "gpt-4o": {"prices": prices, "max_output_tokens": 2000}},
        "cascade_rules": rules or [],
        "embedding": {"enabled": False}, "outcome_log": {"enabled": False}, "learned_router": {"enabled": False},
        "verifier": {"enabled": False}, "cache": {"enabled": False},
    }


def write(path: Path, data: dict[str, Any]) -> None:
    """A new version of the file (its mtime moved on, as a second later)."""
    path.write_text(json.dumps(data))
    stamp = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


def call(model: str) -> ClientCall:
    """A keyed chat completion that sets no output limit (the model's limit is its worst case)."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "How far is the moon?"}]}
    principal = KeyPrincipal(tenant="user:u", mode="proxy_key", key_id="reloaded", user="u", budgets=(SCOPE,))
    return ClientCall(Dialect.OPENAI_CHAT, Endpoint.CHAT, body, orjson.dumps(body), {}, "", principal, "req_reload")


async def held_while_admitted(budgets: Budgets, model: str) -> float:
    """What the budgets hold for a request while it runs (read from inside it), then given back."""
    counters = budgets.counters
    assert isinstance(counters, MemoryBudgets)
    seen: list[float] = []

    async def handle(admitted: ClientCall) -> Answer:
        seen.append(counters.held(SCOPE.name))
        return JSONAnswer(200, {}, b"{}")

    answer = await budgets.admitted(call(model), handle)
    assert isinstance(answer, JSONAnswer) and answer.status == 200 and len(seen) == 1
    assert counters.held(SCOPE.name) == 0.0
    return seen[0]


async def test_the_next_admission_holds_the_reloaded_output_limit_and_rules(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    write(path, config(tmp_path, max_output=1000))
    services = Services.build(load_settings(path, environ={}))
    budgets = services.authenticator.budgets
    assert budgets is not None
    reloader = ConfigReloader(ConfigSource(str(path)), services, ReloadSettings(watch=False))
    before = await held_while_admitted(budgets, "gpt-4o-mini")
    assert before > 1000 * OUTPUT_USD_PER_MILLION / 1e6, "the model's output limit is held, and the input on top"

    write(path, config(tmp_path, max_output=4000))
    result = await reloader.reload("test")
    assert result.status == "applied" and result.applied == ("model_info.gpt-4o-mini.max_output_tokens",)
    after = await held_while_admitted(budgets, "gpt-4o-mini")
    assert after - before == pytest.approx(3000 * OUTPUT_USD_PER_MILLION / 1e6), "3,000 more output tokens held"

    strong_alone = await held_while_admitted(budgets, "gpt-4o")
    rule = {"request_model": "gpt-4o", "draft_model": "gpt-4o-mini", "verifier_model": "gpt-4o",
            "quality_threshold": 0.6}
    write(path, config(tmp_path, max_output=4000, rules=[rule]))
    assert (await reloader.reload("test")).status == "applied"
    cascade = await held_while_admitted(budgets, "gpt-4o")
    assert cascade == pytest.approx(strong_alone + after), "a reloaded rule's draft is held on top of the strong"
