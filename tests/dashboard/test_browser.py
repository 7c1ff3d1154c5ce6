"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright; nothing downloaded): a
replay run of labelled prompts goes through a keyed proxy with the outcome log, the spend ledger, the semantic
cache, the learned router and exploration labels; the admin signs in, the charts render, the numbers in the page
are the API's, and a screenshot is written to docs/dashboard.png.

The replay run's records are re-timed over the last seven days (their created_at moved back in the two stores)
so the time charts have a shape; every other value is what the run recorded. Skips without chromium or
playwright, unless CASCADEFLOW_REQUIRE_E2E=1 (then it fails).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from router.app import create_app
from router.auth import hash_key
from router.demo import DRAFT_MODEL, REQUEST_MODEL
from router.embedding.encoder import Encoder
from router.replay.dataset import DatasetSource, LabelledRow, load_rows, sample_rows
from router.replay.runner import BackgroundServer
from router.replay.server import create_upstream_app
from router.settings import Settings
from router.spend.records import utc_day
from tests.support import NO_RETRIES_NOR_BREAKER

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "dashboard.png"
ADMIN = "cfr-admin-" + "e5" * 16
USERS = {"alice": "cfr-alice-" + "a1" * 16, "bob": "cfr-bob-" + "b2" * 16, "carol": "cfr-carol-" + "c3" * 16}
CHARTS = ("#chart-savings", "#chart-routes", "#chart-rates", "#chart-quality", "#chart-rules", "#chart-models",
          "#chart-users")
DAY = 86400.0


def chromium_or_skip() -> str:
    """Debian's chromium, once Playwright can drive it; else skip (fail when the e2e tests are required)."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    missing = [] if Path(path).exists() else ["Debian's chromium (apt-get install -y chromium)"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CASCADEFLOW_REQUIRE_E2E") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def settings(upstream: str, folder: Path) -> Settings:
    """The demo's cascade (a Mixtral draft before GPT-4) behind proxy keys, with everything the dashboard reads."""
    keys = [{"key_sha256": hash_key(ADMIN), "user": "ops", "admin": True}] + [
        {"key_sha256": hash_key(key), "user": user} for user, key in USERS.items()]
    return Settings(
        providers={"openai": {"kind": "openai", "base_url": upstream + "/v1", "api_key": "demo"}},
        models=[{"match": "mixtral-*", "provider": "openai"}, {"match": "gpt-4-*", "provider": "openai"}],
        cascade_rules=[{"request_model": REQUEST_MODEL, "draft_model": DRAFT_MODEL, "verifier_model": REQUEST_MODEL,
                        "quality_threshold": 0.9, "semantic_cache": True}],
        auth={"keys": keys}, resilience=NO_RETRIES_NOR_BREAKER, labels={"exploration_rate": 1.0},
        learned_router={"skip_threshold": 0.75}, verifier={"accept_threshold": 0.8},  # a mix of all three routes
        cache={"directory": str(folder / "cache")},
        outcome_log={"url": f"sqlite:///{folder}/outcomes.sqlite", "spool_path": None, "flush_interval_ms": 20},
        spend={"url": f"sqlite:///{folder}/spend.sqlite", "spool_path": None, "flush_interval_ms": 20})


def send(proxy: str, user: str, row: LabelledRow) -> None:
    client = openai.OpenAI(base_url=proxy + "/v1", api_key=USERS[user], max_retries=0, timeout=60)
    messages: list[Any] = []
    for index, turn in enumerate(row.turns):
        messages += [{"role": "assistant", "content": "(earlier answer)"}] if index else []
        messages.append({"role": "user", "content": turn})
    client.chat.completions.create(model=REQUEST_MODEL, messages=messages, max_tokens=1024, temperature=0)


def summary(proxy: str, days: int = 7) -> dict[str, Any]:
    response = httpx.get(proxy + "/dashboard/api/summary", params={"days": days},
                         headers={"authorization": f"Bearer {ADMIN}"}, timeout=60)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def settled(proxy: str) -> dict[str, Any]:
    """The summary once the background labels stop arriving."""
    last, deadline = -1, time.monotonic() + 90
    while True:
        data = summary(proxy)
        labels = data["quality"]["served"]["n"] + data["quality"]["escalated"]["n"]
        if labels == last and labels > 0 or time.monotonic() > deadline:
            return data
        last = labels
        time.sleep(1.5)


def retime(folder: Path, now: float) -> None:
    """Spread the run's records over the last seven days, oldest first, in both stores."""
    today, rng = now - now % DAY, random.Random(14)
    with sqlite3.connect(folder / "outcomes.sqlite") as outcomes:
        ids = [row[0] for row in outcomes.execute("SELECT request_id FROM outcomes ORDER BY id")]
        days = [index * 7 // len(ids) for index in range(len(ids))]  # 0 (six days ago) .. 6 (today, until now)
        moments = {rid: today - (6 - day) * DAY + rng.uniform(0, DAY if day < 6 else max(now - today - 60, 1))
                   for rid, day in zip(ids, days, strict=True)}
        outcomes.executemany("UPDATE outcomes SET created_at = ? WHERE request_id = ?",
                             [(moment, rid) for rid, moment in moments.items()])
    with sqlite3.connect(folder / "spend.sqlite") as spend:
        spend.executemany("UPDATE cascadeflow_spend SET created_at = ?, day = ? WHERE request_id = ?",
                          [(moment, utc_day(moment), rid) for rid, moment in moments.items()])


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[str]:
    """A proxy that served a replay run (its URL)."""
    chromium_or_skip()
    encoder: Encoder = request.getfixturevalue("encoder")  # loaded only when the browser is there
    folder = tmp_path_factory.mktemp("dashboard-e2e")
    rows = sample_rows(load_rows(), ("gsm8k", "mt_bench"), 45)
    users = [("alice", "bob", "alice", "carol", "alice", "bob")[index % 6] for index in range(len(rows))]
    repeats = [("alice", rows[index]) for index in range(0, 24, 2)]  # asked again: the semantic cache answers
    with BackgroundServer(create_upstream_app(DatasetSource(rows))) as upstream, \
            BackgroundServer(app := create_app(settings(upstream.url, folder), encoder)) as proxy:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda pair: send(proxy.url, *pair), zip(users, rows, strict=True)))
        for user, row in repeats:
            send(proxy.url, user, row)
        settled(proxy.url)
        retime(folder, time.time())
        app.state.services.dashboard.summaries.clear()  # the stores changed behind the proxy's back
        yield proxy.url


def number(text: str) -> float:
    return float(text.replace("$", "").replace("%", "").replace(",", ""))


def test_the_dashboard_renders_the_replay_run_in_chromium(replayed: str) -> None:
    from playwright.sync_api import sync_playwright

    chromium = chromium_or_skip()
    requested: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error"
                    and "status of 401" not in message.text else None)  # the sign-in page answers 401
            page.goto(replayed + "/dashboard")
            assert page.locator("#key").is_visible(), "the sign-in form first"
            page.fill("#key", ADMIN)
            with page.expect_response(lambda response: "/dashboard/api/summary" in response.url) as answered:
                page.click("button[type=submit]")
            drawn: dict[str, Any] = answered.value.json()
            page.wait_for_selector("body[data-loaded=true]", timeout=30_000)
            for chart in CHARTS:
                box = page.locator(f"{chart} svg").bounding_box()
                assert box is not None and box["width"] > 200 and box["height"] > 60, chart
                marks = page.locator(f"{chart} svg :is(path.line, rect.bar, polygon.band, circle.dot)").count()
                assert marks > 0, f"{chart} drew nothing"
            check_numbers(page, drawn, summary(replayed))
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert not problems, problems
    assert requested and all(url.startswith(replayed) for url in requested), "no request leaves the proxy"
    assert SCREENSHOT.stat().st_size > 20_000


def check_numbers(page: Any, drawn: dict[str, Any], fresh: dict[str, Any]) -> None:
    """The page shows what the API answered (to its rounding), and the API answers the same again."""
    totals, quality = drawn["totals"], drawn["quality"]["served"]
    shown = {name: page.locator(f'[data-kpi="{name}"]').first.inner_text() for name in (
        "saved_usd", "actual_usd", "strong_only_usd", "requests", "acceptance_rate", "escalation_rate",
        "cache_hit_rate", "quality_share", "quality_low", "quality_high", "quality_n")}
    expected = {"saved_usd": totals["saved_usd"], "actual_usd": totals["actual_usd"],
                "strong_only_usd": totals["strong_only_usd"], "requests": totals["requests"],
                "acceptance_rate": 100 * totals["acceptance_rate"], "escalation_rate": 100 * totals["escalation_rate"],
                "cache_hit_rate": 100 * totals["cache_hit_rate"], "quality_share": 100 * quality["share"],
                "quality_low": 100 * quality["low"], "quality_high": 100 * quality["high"], "quality_n": quality["n"]}
    for name, value in expected.items():
        assert number(shown[name]) == pytest.approx(value, abs=0.051 if "%" in shown[name] else 0.0051), name
    assert totals["requests"] == fresh["totals"]["requests"] >= 90 and totals["saved_usd"] > 0
    assert totals["cache_hits"] > 0 and totals["routes"]["escalated"] > 0 and totals["routes"]["draft"] > 0
    assert 0 < quality["low"] < quality["share"] < quality["high"] <= 1 and quality["n"] >= 10
    assert sum(point["requests"] > 0 for point in drawn["series"]) == 7, "the run spans the week"
    rows = page.locator("#decisions tbody tr")
    assert rows.count() == len(drawn["decisions"]) == 50
    assert rows.first.get_attribute("data-request-id") == drawn["decisions"][0]["request_id"]
    users = [label.get_attribute("data-label") for label in page.locator("#chart-users .row-label").all()]
    assert sorted(users) == ["alice", "bob", "carol"] and drawn["spend_by_user"]["source"] == "spend_ledger"
    rules = [label.get_attribute("data-label") for label in page.locator("#chart-rules .row-label").all()]
    assert rules == [REQUEST_MODEL]
