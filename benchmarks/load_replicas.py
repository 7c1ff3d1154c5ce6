"""Load test of several replicas: two proxies sharing Redis and PostgreSQL behind a load balancer, at a steady
rate for minutes; every request's status and latency, each replica's memory over time, and the spend ledger
checked against the answers.

    .venv/bin/python benchmarks/load_replicas.py [--minutes 10] [--rate 1000] [--replicas 2]
        [--balancer auto|haproxy|script] [--plot docs/load_replicas.png] [--workdir DIR]

Each replica is `cascadeflow proxy start` (one worker) with `state: redis` (rate limits, concurrency leases and
budgets in the local Redis, under a prefix of its own) and `database: postgresql://.../<a fresh database>` (keys,
spend ledger, outcome log), proxy keys for a few users of one tier whose limits are high enough never to refuse,
a cascade rule per provider family, and the replay upstream (`router.replay`, scripted answers after
`--latency-ms`, streams paced) as its providers, running in this process. The balancer is HAProxy (round robin)
when `haproxy` is on the PATH, else this script's own round robin. Requests leave at a fixed rate (each on its
own: a slow answer does not delay the next), cycling through three dialects, JSON and streams, and three routes
(`faults.py`'s kinds), each with its own `x-request-id`; each answer is read to its end and classified. Each
replica's RSS (its process tree, psutil) is sampled every `--sample-s`. Then the replicas get SIGTERM, and the
ledger must hold exactly one row per whole answer. The summary gives the counts, errors by kind, latency
percentiles, RSS first/last/max and the least-squares slope of RSS over the run's second half per replica, and
the memory plot is written to `--plot`. Exit code 0: no error, a graceful stop, the ledger exact.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

if __package__ in (None, ""):  # run as a script: benchmarks/load_replicas.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fault_checks import classify  # noqa: E402
from benchmarks.faults import KINDS, PATHS, Run, free_port, start_proxy, stop_proxy, wait_ready  # noqa: E402
from benchmarks.load_replicas_report import plot_memory, report  # noqa: E402
from router.auth import hash_key  # noqa: E402
from router.replay.runner import BackgroundServer  # noqa: E402
from router.replay.scripted import ScriptedSource  # noqa: E402
from router.replay.server import create_upstream_app  # noqa: E402

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
USERS = 4
TIER = {"rpm": 5000, "tpm": 50_000_000, "max_concurrent": 500, "daily_budget_usd": 1e6, "monthly_budget_usd": 1e7}
"""Each user's limits: enforced through Redis on every request, high enough never to refuse this load."""
CLIENT_TIMEOUT_S = 60.0
DEFAULT_PLOT = Path(__file__).resolve().parents[1] / "docs" / "load_replicas.png"


@dataclass
class Replica:
    """One proxy process and its RSS samples: (seconds since the load began, bytes)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    rss: list[tuple[float, int]] = field(default_factory=list)
    served: float = -1.0
    stop: dict[str, float] = field(default_factory=dict)
    graceful: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Load:
    """One run: what was sent and how each answer came back."""

    seconds: float
    rate_per_min: float
    balancer: str
    replicas: list[Replica] = field(default_factory=list)
    categories: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    """Of the whole answers, to their last byte."""
    ok_ids: set[str] = field(default_factory=set)
    sent_ids: set[str] = field(default_factory=set)
    elapsed_s: float = 0.0
    ledger: dict[str, int] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return len(self.sent_ids)

    @property
    def errors(self) -> Counter[str]:
        return Counter({kind: count for kind, count in self.categories.items() if kind != "ok"})

    @property
    def passed(self) -> bool:
        exact = self.ledger.get("rows") == len(self.ok_ids) and self.ledger.get("ok without a row") == 0 \
            and self.ledger.get("rows of no whole answer") == 0
        return self.sent > 0 and not self.errors and exact and all(r.graceful for r in self.replicas)


def proxy_config(upstream: str, work: Path, database: str, prefix: str, keys: list[str], admin: str
                 ) -> dict[str, Any]:
    """One replica's config (JSON is YAML): shared state and database, keyed users of one tier, cascade rules."""
    return {
        "data_dir": str(work),
        "providers": {"anthropic": {"kind": "anthropic", "base_url": upstream, "api_key": "sk-load"},
                      "openai": {"kind": "openai", "base_url": upstream + "/v1", "api_key": "sk-load"}},
        "cascade_rules": [{"request_model": strong, "draft_model": draft, "verifier_model": strong}
                          for strong, draft in (("claude-opus-4-8", "claude-haiku-4-5"), ("gpt-4o", "gpt-4o-mini"))],
        "embedding": {"enabled": False}, "cache": {"enabled": False}, "learned_router": {"enabled": False},
        "labels": {"exploration_rate": 0.0}, "reload": {"watch": False},
        "auth": {"mode": "api_key", "redis_prefix": prefix,
                 "keys": [*({"key_sha256": hash_key(key), "user": f"load-user-{index}", "tier": "load"}
                            for index, key in enumerate(keys)),
                          {"key_sha256": hash_key(admin), "user": "ops", "admin": True}]},
        "tiers": {"load": TIER},
        "state": {"redis_url": REDIS},
        "database": {"url": database},
    }


async def admin_sql(server: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"{server}/postgres", timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def ledger_ids(database: str) -> list[str]:
    """The request ids of the spend ledger's rows."""
    import asyncpg

    connection = await asyncpg.connect(database, timeout=5)
    try:
        return [row[0] for row in await connection.fetch("SELECT request_id FROM cascadeflow_spend")]
    finally:
        await connection.close()


async def drop_redis_prefix(prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def rss_bytes(pid: int) -> int:
    """The resident memory of a process and its children (0 once it is gone)."""
    try:
        process = psutil.Process(pid)
        return int(sum(each.memory_info().rss for each in [process, *process.children(recursive=True)]))
    except psutil.Error:
        return 0


async def sample_rss(replicas: list[Replica], every_s: float, started: float) -> None:
    while True:
        at = round(time.monotonic() - started, 1)
        for replica in replicas:
            replica.rss.append((at, rss_bytes(replica.process.pid)))
        await asyncio.sleep(every_s)


def start_haproxy(ports: list[int], work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """HAProxy in the foreground, round robin over the replicas."""
    port = free_port()
    servers = "\n".join(f"    server replica{index} 127.0.0.1:{each}" for index, each in enumerate(ports))
    config = work / "haproxy.cfg"
    config.write_text(f"""global
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 5m
    timeout server 5m
frontend load
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
{servers}
""")
    with (work / "haproxy.log").open("wb") as out:
        return subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT), port


async def one(session: aiohttp.ClientSession, url: str, number: int, key: str, tag: str, load: Load) -> None:
    """One request of the kind its number picks, read to its end and classified."""
    kind = KINDS[number % len(KINDS)]
    request_id = f"load-{tag}-{number:07d}"
    load.sent_ids.add(request_id)
    headers = {"x-request-id": request_id, "x-api-key": key, "authorization": f"Bearer {key}",
               "anthropic-version": "2023-06-01"}
    started = time.monotonic()
    try:
        async with session.post(url + PATHS[kind.dialect], json=kind.body(number), headers=headers,
                                timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)) as response:
            body = await response.read()
            load.statuses[response.status] += 1
            category = classify(kind.dialect, kind.stream, response.status, response.headers.get("content-type", ""),
                                body)
            if category != "ok":
                category = f"{category} {response.status}"
    except TimeoutError:
        category = "timeout"
    except aiohttp.ClientError as exc:
        category = f"broken ({type(exc).__name__})"
    load.categories[category] += 1
    if category == "ok":
        load.latencies_s.append(time.monotonic() - started)
        load.ok_ids.add(request_id)


async def send(session: aiohttp.ClientSession, urls: list[str], keys: list[str], load: Load) -> None:
    """Requests at a fixed rate, each on its own (round robin over `urls`); then wait for every answer."""
    interval, started, tasks, tag = 60.0 / load.rate_per_min, time.monotonic(), set(), uuid.uuid4().hex[:6]
    for number in itertools.count():
        due = started + number * interval
        if due - started >= load.seconds:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.create_task(one(session, urls[number % len(urls)], number, keys[number % len(keys)], tag,
                                       load))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    load.elapsed_s = round(time.monotonic() - started, 1)


async def served_by(session: aiohttp.ClientSession, replica: Replica, admin: str) -> float:
    """The requests a replica answered (`cascadeflow_requests_total`)."""
    from prometheus_client.parser import text_string_to_metric_families

    async with session.get(replica.url + "/metrics", headers={"authorization": f"Bearer {admin}"}) as response:
        text = await response.text()
        if response.status != 200:
            return -1.0
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "cascadeflow_requests_total")


async def run_load(seconds: float, rate_per_min: float, work: Path, *, replicas: int = 2, balancer: str = "auto",
                   latency_s: float = 0.2, sample_s: float = 5.0, keep_database: bool = False) -> Load:
    """Upstream, database, replicas, balancer, load, stop, ledger check."""
    use_haproxy = balancer == "haproxy" or (balancer == "auto" and shutil.which("haproxy") is not None)
    load = Load(seconds, rate_per_min, "haproxy (round robin)" if use_haproxy else "this script (round robin)")
    name, prefix = f"cf_load_{uuid.uuid4().hex[:8]}", f"cascadeflow-load:{uuid.uuid4().hex[:8]}"
    database = f"{POSTGRES}/{name}"
    keys, admin = [f"load-key-{uuid.uuid4().hex}" for _ in range(USERS)], f"load-admin-{uuid.uuid4().hex}"
    await admin_sql(POSTGRES, f"CREATE DATABASE {name}")
    balancer_process: subprocess.Popen[bytes] | None = None
    upstream = create_upstream_app(ScriptedSource(), latency_s=latency_s, stream_delay_s=0.01)
    try:
        with BackgroundServer(upstream) as server:
            for index in range(replicas):
                home = work / f"replica{index}"
                home.mkdir(parents=True, exist_ok=True)
                config = home / "config.yaml"
                config.write_text(json.dumps(proxy_config(server.url, home, database, prefix, keys, admin), indent=1))
                port, log = free_port(), home / "proxy.log"
                load.replicas.append(Replica(f"replica{index}", port, start_proxy(config, port, log), log))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                for replica in load.replicas:
                    await wait_ready(session, replica.url, replica.process)
                urls = [replica.url for replica in load.replicas]
                if use_haproxy:
                    balancer_process, port = start_haproxy([replica.port for replica in load.replicas], work)
                    urls = [f"http://127.0.0.1:{port}"]
                    await wait_ready(session, urls[0], balancer_process)
                sampler = asyncio.create_task(sample_rss(load.replicas, sample_s, time.monotonic()))
                try:
                    await send(session, urls, keys, load)
                finally:
                    sampler.cancel()
                for replica in load.replicas:
                    replica.rss.append((load.elapsed_s, rss_bytes(replica.process.pid)))
                    replica.served = await served_by(session, replica, admin)
            for replica in load.replicas:
                stopped = Run()
                await asyncio.to_thread(stop_proxy, replica.process, replica.log, stopped)
                replica.stop, replica.graceful = stopped.proxy, stopped.records["graceful stop"] == 1
        ids = await ledger_ids(database)
        load.ledger = {"rows": len(ids), "duplicated": len(ids) - len(set(ids)),
                       "ok without a row": len(load.ok_ids - set(ids)),
                       "rows of no whole answer": len(set(ids) - load.ok_ids)}
    finally:
        for process in [balancer_process, *(replica.process for replica in load.replicas)]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        await drop_redis_prefix(prefix)
        if not keep_database:
            await admin_sql(POSTGRES, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (default: 10)")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests a minute (default: 1000)")
    parser.add_argument("--replicas", type=int, default=2, help="proxy processes (default: 2)")
    parser.add_argument("--balancer", choices=["auto", "haproxy", "script"], default="auto",
                        help="auto: HAProxy when installed, else this script's round robin (default: auto)")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="the upstream's latency (default: 200)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling interval (default: 5)")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help=f"memory plot (default: {DEFAULT_PLOT})")
    parser.add_argument("--keep-database", action="store_true", help="keep the run's PostgreSQL database")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where configs and logs go (default: a temporary directory)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cascadeflow-load-"))
    work.mkdir(parents=True, exist_ok=True)
    load = asyncio.run(run_load(args.minutes * 60, args.rate, work, replicas=args.replicas, balancer=args.balancer,
                                latency_s=args.latency_ms / 1000, sample_s=args.sample_s,
                                keep_database=args.keep_database))
    print(report(load))
    print(f"\nmemory plot: {plot_memory(load, args.plot)}\nwork directory: {work}")
    return 0 if load.passed else 1


if __name__ == "__main__":
    sys.exit(main())
