"""Soak test: the proxy at a steady rate for minutes while a third of its clients give up early; its memory over
time, the upstream work left running once the clients have left, and how long a SIGTERM then takes.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 1000] [--variants default cascade] [--cache-max-mb 2]
                                        [--max-slope 1] [--workdir DIR]

Each variant runs `cascadeflow proxy start` (one worker, its state in SQLite under the work directory) in front of
the replay upstream (`router.replay`, scripted answers after `--latency-ms`, streams paced), which runs in this
process and counts the requests it is serving. `default` is the proxy's default configuration with the upstream
as its providers; `cascade` adds a cascade rule per provider family, the semantic cache and the learned router
(and its trained verifier). Requests leave at a fixed rate (`--rate` a minute, each on its own: a slow answer
does not slow the next) and cycle through the fault test's kinds (three dialects, JSON and streams, a cascade
model, pass-through, translated; `faults.py`), asking the labelled data's real questions in turn (each comes round
again after the 1,100-odd others), a quarter of them at temperature 0, which the cache may answer. A third of the
clients give up after a random 10 to 500 ms, closing their connection. The proxy's RSS is sampled every
`--sample-s`, beside the semantic cache's entries and bytes (`/ready`), and fitted by least squares over the last
half of the run (MB a minute: "flat" as a number). The cache legitimately grows until `cache.max_bytes`; the
`cascade` variant runs with `--cache-max-mb` (2 MB by default) so that it reaches its bound within the run and the
fit shows what memory does past it (the default 256 MB would not fill in ten minutes). Once every client has an
answer or has given up, within `--settle-s` the upstream must serve nothing and the proxy hold no request body;
then SIGTERM, timed against `server.shutdown_grace_s`. The exit code is 0 when no answer was a 5xx or broken,
nothing was left running, the stop was graceful and in time, and the fit was within `--max-slope` MB a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Receive, Scope, Send

if __package__ in (None, ""):  # run as a script: benchmarks/soak.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fault_checks import classify  # noqa: E402
from benchmarks.faults import KINDS, PATHS, Kind, Run, free_port, start_proxy, stop_proxy, table  # noqa: E402
from benchmarks.faults import wait_ready as wait_proxy_ready  # noqa: E402
from benchmarks.peers_proc import memory_kb, tree  # noqa: E402
from router.replay.dataset import load_rows  # noqa: E402
from router.replay.runner import BackgroundServer  # noqa: E402
from router.replay.scripted import ScriptedSource  # noqa: E402
from router.replay.server import create_upstream_app  # noqa: E402

VARIANTS = ("default", "cascade")
GIVE_UP_SHARE = 1 / 3
GIVE_UP_S = (0.010, 0.500)
PATIENT_S = 60.0
CACHEABLE_SHARE = 0.25
"""Requests sent at temperature 0, which the semantic cache may answer (the others are sampled: it may not)."""
GRACE_S = 30.0
"""The proxy's `server.shutdown_grace_s` (its default)."""
CACHE_MAX_MB = 2.0
"""The cascade variant's `cache.max_bytes`, in MB: about 400 entries, filled in about 3 minutes at 1,000 a minute."""
MAX_SLOPE_MB_MIN = 1.0
"""The steepest RSS fit over the last half of the run that counts as flat."""


class Counted:
    """An ASGI app and the HTTP requests it is serving (begun, not yet returned)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.in_flight = 0
        self.served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.served += 1


@dataclass
class Soak:
    """One variant's run."""

    variant: str
    seconds: float
    rate_per_min: float
    categories: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    rss_kb: list[tuple[float, int]] = field(default_factory=list)
    cache: list[tuple[float, int, int]] = field(default_factory=list)
    """(seconds, entries, bytes) of the semantic cache at each RSS sample (none with the cache off)."""
    max_slope_mb_min: float = MAX_SLOPE_MB_MIN
    upstream_calls: int = 0
    upstream_in_flight_after: int = -1
    settled_s: float = -1.0
    bodies_held_after: float = -1.0
    stop: dict[str, float] = field(default_factory=dict)
    graceful: bool = False

    @property
    def sent(self) -> int:
        return sum(self.categories.values())

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    @property
    def rss_slope_mb_min(self) -> float:
        """The least-squares slope of RSS over the last half of the run, in MB a minute (0 with too few samples)."""
        return rss_slope(self.rss_kb)

    @property
    def passed(self) -> bool:
        bad = self.categories["bad_body"] + self.categories["broken"] + self.categories["hung"]
        return (self.sent > 0 and self.server_errors == 0 and bad == 0 and self.upstream_in_flight_after == 0
                and self.bodies_held_after == 0 and self.graceful and self.stop.get("stop s", 1e9) <= GRACE_S
                and self.rss_slope_mb_min <= self.max_slope_mb_min)


def rss_slope(samples: list[tuple[float, int]]) -> float:
    """MB a minute: the least-squares line through the (seconds, kB) samples of the last half of the run."""
    if len(samples) < 3:
        return 0.0
    half = samples[-1][0] / 2
    late = [(at, kb) for at, kb in samples if at >= half]
    if len(late) < 3 or len({at for at, _ in late}) < 2:
        return 0.0
    slope, _ = statistics.linear_regression([at for at, _ in late], [kb for _, kb in late])
    return slope * 60 / 1024


def proxy_config(variant: str, upstream: str, work: Path, cache_max_mb: float = CACHE_MAX_MB) -> dict[str, Any]:
    """The default configuration with the upstream as its providers; `cascade` adds rules, the cache (bounded at
    `cache_max_mb`) and the learned router."""
    config: dict[str, Any] = {
        "data_dir": str(work),
        "providers": {"anthropic": {"kind": "anthropic", "base_url": upstream, "api_key": "sk-soak"},
                      "openai": {"kind": "openai", "base_url": upstream + "/v1", "api_key": "sk-soak"}},
        "server": {"shutdown_grace_s": GRACE_S},
    }
    if variant == "cascade":
        config["cascade_rules"] = [{"request_model": strong, "draft_model": draft, "verifier_model": strong}
                                   for strong, draft in (("claude-opus-4-8", "claude-haiku-4-5"),
                                                         ("gpt-4o", "gpt-4o-mini"))]
        config["cache"] = {"enabled": True, "max_bytes": int(cache_max_mb * 1024 * 1024)}
        config["learned_router"] = {"enabled": True}
    return config


def prompts(seed: int) -> list[str]:
    """The labelled data's real questions (GSM8K, MT-bench), shuffled: they differ as much as users' do."""
    texts = sorted({row.turns[-1] for row in load_rows()})
    random.Random(seed).shuffle(texts)
    return texts


def body_of(kind: Kind, number: int, texts: list[str], cacheable: bool) -> dict[str, Any]:
    """The kind's request asking the next question (they come round again after all were asked)."""
    body = kind.body(number, texts[number % len(texts)])
    return {**body, "temperature": 0} if cacheable else body


async def one(session: aiohttp.ClientSession, url: str, number: int, body: dict[str, Any], give_up_s: float | None,
              soak: Soak) -> None:
    """One request, read to its end unless its client gives up first."""
    kind = KINDS[number % len(KINDS)]
    headers = {"x-request-id": f"soak-{number:07d}", "x-api-key": "client-key", "anthropic-version": "2023-06-01",
               "authorization": "Bearer client-key"}
    timeout = aiohttp.ClientTimeout(total=give_up_s if give_up_s is not None else PATIENT_S)
    try:
        async with session.post(url + PATHS[kind.dialect], json=body, headers=headers, timeout=timeout) as response:
            answer = await response.read()
            soak.statuses[response.status] += 1
            category = classify(kind.dialect, kind.stream, response.status, response.headers.get("content-type", ""),
                                answer)
    except TimeoutError:
        category = "gave_up" if give_up_s is not None else "hung"
    except aiohttp.ClientError:
        category = "broken"
    soak.categories[category] += 1


async def cache_size(session: aiohttp.ClientSession, url: str) -> tuple[int, int] | None:
    """The semantic cache's entries and bytes (`/ready`), or None when it is off."""
    async with session.get(url + "/ready") as response:
        cache = (await response.json()).get("checks", {}).get("cache")
    return (int(cache["entries"]), int(cache["bytes"])) if isinstance(cache, dict) and "bytes" in cache else None


async def sample_rss(session: aiohttp.ClientSession, url: str, pid: int, every_s: float, soak: Soak,
                     started: float) -> None:
    while True:
        at = round(time.monotonic() - started, 1)
        soak.rss_kb.append((at, memory_kb(tree(pid), "VmRSS")))
        if (size := await cache_size(session, url)) is not None:
            soak.cache.append((at, *size))
        await asyncio.sleep(every_s)


async def load(session: aiohttp.ClientSession, url: str, soak: Soak, seed: int) -> None:
    """Requests at a fixed rate, each on its own; then wait until each has its answer or has given up."""
    chance, texts = random.Random(seed), prompts(seed)
    interval, started, tasks = 60.0 / soak.rate_per_min, time.monotonic(), set()
    for number in itertools.count():
        due = started + number * interval
        if due - started >= soak.seconds:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        body = body_of(KINDS[number % len(KINDS)], number, texts, chance.random() < CACHEABLE_SHARE)
        give_up = chance.uniform(*GIVE_UP_S) if chance.random() < GIVE_UP_SHARE else None
        task = asyncio.create_task(one(session, url, number, body, give_up, soak))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


async def held_body_bytes(session: aiohttp.ClientSession, url: str) -> float:
    """The proxy's `cascadeflow_inflight_body_bytes` (sampled at the scrape)."""
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "cascadeflow_inflight_body_bytes")


async def settle(session: aiohttp.ClientSession, url: str, upstream: Counted, within_s: float, soak: Soak) -> None:
    """Wait until the upstream serves nothing and the proxy holds no request body (a client may have read its
    answer's last byte a moment before the proxy ends the request), for at most `within_s`."""
    started = time.monotonic()
    while True:
        soak.upstream_in_flight_after = upstream.in_flight
        soak.bodies_held_after = await held_body_bytes(session, url)
        if not (soak.upstream_in_flight_after or soak.bodies_held_after) or time.monotonic() - started >= within_s:
            break
        await asyncio.sleep(0.05)
    soak.settled_s = round(time.monotonic() - started, 2)


async def run_soak(variant: str, seconds: float, rate_per_min: float, work: Path, *, seed: int = 7,
                   latency_s: float = 0.2, stream_delay_s: float = 0.01, sample_s: float = 5.0,
                   settle_s: float = 5.0, cache_max_mb: float = CACHE_MAX_MB,
                   max_slope_mb_min: float = MAX_SLOPE_MB_MIN) -> Soak:
    """One variant: upstream, proxy, load, settling, SIGTERM."""
    soak = Soak(variant, seconds, rate_per_min, max_slope_mb_min=max_slope_mb_min)
    upstream = Counted(create_upstream_app(ScriptedSource(), latency_s=latency_s, stream_delay_s=stream_delay_s))
    with BackgroundServer(upstream) as server:
        config = work / "config.yaml"
        config.write_text(json.dumps(proxy_config(variant, server.url, work, cache_max_mb), indent=2))
        port = free_port()
        url, log = f"http://127.0.0.1:{port}", work / "proxy.log"
        proxy = start_proxy(config, port, log)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                await wait_proxy_ready(session, url, proxy)
                sampler = asyncio.create_task(sample_rss(session, url, proxy.pid, sample_s, soak, time.monotonic()))
                calls_before = upstream.served
                await load(session, url, soak, seed)
                await settle(session, url, upstream, settle_s, soak)
                soak.upstream_calls = upstream.served - calls_before
                sampler.cancel()
                soak.rss_kb.append((soak.rss_kb[-1][0] if soak.rss_kb else 0.0, memory_kb(tree(proxy.pid), "VmRSS")))
            stopped = Run()
            await asyncio.to_thread(stop_proxy, proxy, log, stopped)
            soak.stop, soak.graceful = stopped.proxy, stopped.records["graceful stop"] == 1
        finally:
            if proxy.poll() is None:
                proxy.kill()
    return soak


def _cache_row(soak: Soak) -> str:
    if not soak.cache:
        return "cache off"
    (_, first, first_bytes), (_, last, last_bytes) = soak.cache[0], soak.cache[-1]
    return f"{first} / {first_bytes / 2**20:.1f} -> {last} / {last_bytes / 2**20:.1f}"


def report(soaks: list[Soak]) -> str:
    """The summary of each variant, and PASS or FAIL."""
    parts = []
    for soak in soaks:
        rss = [kb for _, kb in soak.rss_kb] or [0]
        answered = soak.sent - soak.categories["gave_up"] - soak.categories["hung"] - soak.categories["broken"]
        rows = [
            ("requests sent", soak.sent),
            ("answered (read to the end)", answered),
            ("  whole answers", soak.categories["ok"]),
            ("  clean errors (JSON, stream event)", soak.categories["error_json"] + soak.categories["error_event"]),
            ("  statuses", ", ".join(f"{status}: {count}" for status, count in sorted(soak.statuses.items()))),
            ("  5xx", soak.server_errors),
            ("client timeouts (gave up, 10-500 ms)", soak.categories["gave_up"]),
            ("broken / hung / bad bodies", f"{soak.categories['broken']} / {soak.categories['hung']} / "
                                           f"{soak.categories['bad_body']}"),
            ("upstream calls", soak.upstream_calls),
            ("RSS first / last / max (MB)", f"{rss[0] / 1024:.0f} / {rss[-1] / 1024:.0f} / {max(rss) / 1024:.0f}"),
            ("RSS fit over the last half (MB/min)", f"{soak.rss_slope_mb_min:+.2f} (flat: within "
                                                    f"{soak.max_slope_mb_min:g})"),
            ("cache entries / MB first / last", _cache_row(soak)),
            ("upstream in flight after the clients left", soak.upstream_in_flight_after),
            ("request body bytes held by the proxy after", f"{soak.bodies_held_after:g}"),
            ("  both settled within (s)", soak.settled_s),
            ("shutdown after SIGTERM (s)", f"{soak.stop.get('stop s', -1)} of a {GRACE_S:g} s grace, exit code "
                                           f"{soak.stop.get('exit code', '?')}, "
                                           f"{'graceful' if soak.graceful else 'NOT graceful'}"),
        ]
        title = (f"soak, {soak.variant}: {soak.seconds / 60:g} min at {soak.rate_per_min:g} requests a minute"
                 f" ({'PASS' if soak.passed else 'FAIL'})")
        parts.append(table(title, ["measure", "value"], rows))
        cache = {at: (entries, size) for at, entries, size in soak.cache}
        samples = ", ".join(f"{at:g}s {kb / 1024:.0f}" + (f" ({cache[at][0]} entries, {cache[at][1] / 2**20:.1f})"
                                                           if at in cache else "")
                            for at, kb in soak.rss_kb[:: max(1, len(soak.rss_kb) // 12)])
        parts.append(f"RSS samples (MB{', cache entries and MB' if cache else ''}): {samples}")
    parts.append("PASS" if all(soak.passed for soak in soaks) else "FAIL")
    return "\n\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of each variant's load (default: 10)")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests a minute (default: 1000)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="proxy configurations, run one after the other (default: default cascade)")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="the upstream's latency (default: 200)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling interval (default: 5)")
    parser.add_argument("--settle-s", type=float, default=5.0,
                        help="how long the upstream may still be busy after the clients left (default: 5)")
    parser.add_argument("--cache-max-mb", type=float, default=CACHE_MAX_MB,
                        help=f"the cascade variant's cache.max_bytes in MB (default: {CACHE_MAX_MB:g})")
    parser.add_argument("--max-slope", type=float, default=MAX_SLOPE_MB_MIN,
                        help=f"the steepest RSS fit over the last half, MB a minute, that passes as flat "
                             f"(default: {MAX_SLOPE_MB_MIN:g})")
    parser.add_argument("--seed", type=int, default=7, help="seed of the clients' timeouts (default: 7)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where configs, logs and databases go (default: a temporary directory)")
    args = parser.parse_args()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="cascadeflow-soak-"))
    soaks = []
    for variant in args.variants:
        work = base / variant
        work.mkdir(parents=True, exist_ok=True)
        soaks.append(asyncio.run(run_soak(variant, args.minutes * 60, args.rate, work, seed=args.seed,
                                          latency_s=args.latency_ms / 1000, sample_s=args.sample_s,
                                          settle_s=args.settle_s, cache_max_mb=args.cache_max_mb,
                                          max_slope_mb_min=args.max_slope)))
    print(report(soaks))
    print(f"\nwork directory: {base}")
    return 0 if all(soak.passed for soak in soaks) else 1


if __name__ == "__main__":
    sys.exit(main())
