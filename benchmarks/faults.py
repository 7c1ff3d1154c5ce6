"""Fault test: a sustained run through the proxy while its upstream drops connections, stalls, storms 529s and
sends malformed answers; every client request must get an answer or a clean error in its dialect, and no
outcome or spend record may be lost.

    .venv/bin/python benchmarks/faults.py [--seconds 45] [--concurrency 16] [--seed 7] [--workdir DIR]

The proxy runs as `cascadeflow proxy start` (one worker) with a cascade rule per dialect family, retries, a
circuit breaker and short timeouts, its outcome log and spend ledger in SQLite under the work directory. The
upstream (`fault_upstream.py`) and the clients run in this process. Requests cycle through three dialects
(Anthropic Messages, OpenAI Chat Completions and Responses), JSON and streaming, and three routes (the cascade
rule, pass-through in the client's dialect, pass-through translated to the other provider), each with its own
`x-request-id`. After the run the proxy is stopped with SIGTERM (a graceful stop) and the request ids in the
outcome log and the spend ledger are compared with those sent. The counts are printed as tables; the exit code
is 0 when nothing failed and nothing was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

if __package__ in (None, ""):  # run as a script: benchmarks/faults.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fault_checks import BAD, Dialect, classify  # noqa: E402
from benchmarks.fault_upstream import FaultPlan, FaultUpstream  # noqa: E402

PATHS: dict[Dialect, str] = {"anthropic": "/v1/messages", "openai_chat": "/v1/chat/completions",
                             "openai_responses": "/v1/responses"}
MODELS: dict[Dialect, dict[str, str]] = {  # route -> model asked for
    "anthropic": {"cascade": "claude-opus-4-8", "native": "claude-haiku-4-5", "translated": "gpt-4o-mini"},
    "openai_chat": {"cascade": "gpt-4o", "native": "gpt-4o-mini", "translated": "claude-haiku-4-5"},
    "openai_responses": {"cascade": "gpt-4o", "native": "gpt-4o-mini", "translated": "claude-haiku-4-5"},
}
CLIENT_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
MAX_FAILURES_KEPT = 200
ERROR_PAUSE_S = 0.25
SHUTDOWN_LINE = "Application shutdown complete."


@dataclass(frozen=True)
class Kind:
    """One kind of client request."""

    dialect: Dialect
    stream: bool
    route: str

    @property
    def label(self) -> str:
        return f"{self.dialect:<16} {'stream' if self.stream else 'json':<6} {self.route}"

    def body(self, number: int, text: str | None = None) -> dict[str, Any]:
        """The request of this kind asking `text` (default: a question numbered `number`)."""
        model, text = MODELS[self.dialect][self.route], text or f"Question {number}: how do faults spread?"
        if self.dialect == "openai_responses":
            return {"model": model, "stream": self.stream, "input": text, "max_output_tokens": 64}
        return {"model": model, "stream": self.stream, "max_tokens": 64,
                "messages": [{"role": "user", "content": text}]}


KINDS = [Kind(dialect, stream, route) for dialect in PATHS for stream in (False, True)
         for route in ("cascade", "native", "translated")]


@dataclass
class Run:
    """What happened: each request's kind and category, the error statuses, the records found."""

    sent: list[str] = field(default_factory=list)
    categories: dict[str, Counter[str]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    records: dict[str, float] = field(default_factory=dict)
    proxy: dict[str, float] = field(default_factory=dict)
    slowest_s: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)
    """The first failed answers, as received (for `failures.jsonl`)."""

    def count(self, kind: Kind, category: str) -> None:
        self.categories.setdefault(kind.label, Counter())[category] += 1

    @property
    def totals(self) -> Counter[str]:
        return sum(self.categories.values(), Counter())

    @property
    def passed(self) -> bool:
        lost = self.records.get("outcomes missing", 1) + self.records.get("spend missing", 1)
        return not any(self.totals[bad] for bad in BAD) and lost == 0 and self.records.get("graceful stop") == 1


def proxy_config(upstream: str, work: Path) -> dict[str, Any]:
    """The proxy's config (JSON is YAML): short timeouts, retries, a breaker, a rule per provider family."""
    timeouts = {"connect_timeout_s": 1.0, "first_byte_timeout_s": 2.0, "read_timeout_s": 2.0, "total_timeout_s": 15.0}
    return {
        "providers": {"anthropic": {"kind": "anthropic", "base_url": upstream, "api_key": "sk-fault", **timeouts},
                      "openai": {"kind": "openai", "base_url": upstream + "/v1", "api_key": "sk-fault", **timeouts}},
        "cascade_rules": [{"request_model": strong, "draft_model": draft, "verifier_model": strong}
                          for strong, draft in (("claude-opus-4-8", "claude-haiku-4-5"), ("gpt-4o", "gpt-4o-mini"))],
        "embedding": {"enabled": False}, "cache": {"enabled": False}, "learned_router": {"enabled": False},
        "labels": {"exploration_rate": 0.0},
        "outcome_log": {"url": f"sqlite:///{work}/outcomes.sqlite", "spool_path": str(work / "outcomes.spool.jsonl")},
        "spend": {"url": f"sqlite:///{work}/spend.sqlite", "spool_path": str(work / "spend.spool.jsonl")},
        "resilience": {"retry": {"max_retries": 2, "initial_backoff_s": 0.05, "max_backoff_s": 0.5,
                                 "max_elapsed_s": 5.0},
                       "breaker": {"failure_threshold": 10, "cooldown_s": 0.5}},
        "reload": {"watch": False},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_proxy(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`cascadeflow proxy start` of this interpreter's environment."""
    command = [str(Path(sys.executable).parent / "cascadeflow"), "proxy", "start", "--config", str(config),
               "--port", str(port)]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


async def wait_ready(session: aiohttp.ClientSession, url: str, proxy: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proxy.poll() is not None:
            raise RuntimeError(f"the proxy exited with code {proxy.returncode} before it was ready")
        try:
            async with session.get(url + "/") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the proxy was not ready within 120 s")


async def one(session: aiohttp.ClientSession, url: str, kind: Kind, number: int, run: Run) -> str:
    """Send one request, read its whole answer, classify it and return its category."""
    request_id = f"fault-{number:06d}"
    run.sent.append(request_id)
    headers = {"x-request-id": request_id, "x-api-key": "client-key", "anthropic-version": "2023-06-01",
               "authorization": "Bearer client-key"}
    started = time.monotonic()
    try:
        async with session.post(url + PATHS[kind.dialect], json=kind.body(number), headers=headers,
                                timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)) as response:
            body = await response.read()
            category = classify(kind.dialect, kind.stream, response.status,
                                response.headers.get("content-type", ""), body)
            if response.headers.get("x-request-id") != request_id:
                category = "bad_body"
            if category == "error_json":
                run.statuses[str(response.status)] += 1
            seen = {"status": response.status, "headers": dict(response.headers), "body": body[-2500:].decode(
                "utf-8", "replace")}
    except TimeoutError:
        category, seen = "hung", {}
    except aiohttp.ClientError as exc:
        category, seen = "broken", {"error": repr(exc)}
    run.slowest_s = max(run.slowest_s, time.monotonic() - started)
    run.count(kind, category)
    if category in BAD and len(run.failures) < MAX_FAILURES_KEPT:
        run.failures.append({"request_id": request_id, "kind": kind.label, "category": category, **seen})
    return category


async def load(session: aiohttp.ClientSession, url: str, seconds: float, concurrency: int, run: Run) -> None:
    """`concurrency` clients, each sending the next kind of request as soon as its last one is answered."""
    numbers = itertools.count()
    deadline = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < deadline:
            number = next(numbers)
            if await one(session, url, KINDS[number % len(KINDS)], number, run) != "ok":
                await asyncio.sleep(ERROR_PAUSE_S)  # as an SDK backs off before its next call

    await asyncio.gather(*(client() for _ in range(concurrency)))


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """What the proxy counted: retries, failed upstream calls, circuits opened, requests failed upstream."""
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    wanted = {"cascadeflow_upstream_retries_total": "upstream retries",
              "cascadeflow_upstream_call_errors_total": "failed upstream calls",
              "cascadeflow_upstream_errors_total": "requests failed upstream",
              "cascadeflow_fallbacks_total": "fallbacks"}
    found = dict.fromkeys([*wanted.values(), "circuits opened"], 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                found[wanted[sample.name]] += sample.value
            if sample.name == "cascadeflow_upstream_circuit_transitions_total" and sample.labels["state"] == "open":
                found["circuits opened"] += sample.value
    return found


def stop_proxy(proxy: subprocess.Popen[bytes], log: Path, run: Run) -> None:
    """SIGTERM, as an orchestrator stops it. Graceful: the application's shutdown completed (uvicorn then exits by
    the signal it caught, -15) within STOP_TIMEOUT_S; else it is killed and the stop counts as a failure."""
    started = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    try:
        code = proxy.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proxy.kill()
        code = proxy.wait()
    run.proxy["stop s"] = round(time.monotonic() - started, 2)
    run.proxy["exit code"] = code
    completed = SHUTDOWN_LINE in log.read_text(errors="replace")
    run.records["graceful stop"] = 1 if code in (0, -signal.SIGTERM) and completed else 0


def request_ids(database: Path, table: str) -> list[str]:
    if not database.exists():
        return []
    with sqlite3.connect(database) as db:
        return [row[0] for row in db.execute(f"SELECT request_id FROM {table}")]  # noqa: S608 - our own table


def spooled(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.exists() else 0


def count_records(work: Path, run: Run) -> None:
    """Outcome rows and spend rows against the request ids sent."""
    sent = set(run.sent)
    for name, database, table, spool in (("outcomes", "outcomes.sqlite", "outcomes", "outcomes.spool.jsonl"),
                                         ("spend", "spend.sqlite", "cascadeflow_spend", "spend.spool.jsonl")):
        ids = request_ids(work / database, table)
        run.records[f"{name} rows"] = len(ids)
        run.records[f"{name} missing"] = len(sent - set(ids))
        run.records[f"{name} duplicated"] = len(ids) - len(set(ids))
        run.records[f"{name} unknown ids"] = len(set(ids) - sent)
        run.records[f"{name} spooled"] = spooled(work / spool)


async def run_faults(seconds: float, concurrency: int, seed: int, work: Path) -> Run:
    """The whole test: upstream, proxy, load, graceful stop, records."""
    run = Run()
    upstream = FaultUpstream(FaultPlan(seed=seed))
    config = work / "config.yaml"
    config.write_text(json.dumps(proxy_config(await upstream.start(), work), indent=2))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proxy = start_proxy(config, port, work / "proxy.log")
    try:
        connector = aiohttp.TCPConnector(limit=concurrency + 4)
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_ready(session, url, proxy)
            upstream.counts.clear()
            started = time.monotonic()
            await load(session, url, seconds, concurrency, run)
            run.proxy["load s"] = round(time.monotonic() - started, 1)
            run.proxy.update(await scrape(session, url))
        await asyncio.to_thread(stop_proxy, proxy, work / "proxy.log", run)
    finally:
        if proxy.poll() is None:
            proxy.kill()
        await upstream.stop()
    run.faults = Counter(upstream.counts)
    count_records(work, run)
    (work / "failures.jsonl").write_text("".join(json.dumps(failure) + "\n" for failure in run.failures))
    return run


def table(title: str, header: list[str], rows: Sequence[Sequence[Any]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join("{:<%d}" % width for width in widths)  # noqa: UP031 - widths computed at run time
    return "\n".join([title, line.format(*header), line.format(*("-" * width for width in widths)),
                      *(line.format(*(str(cell) for cell in row)) for row in rows)])


def report(run: Run, seconds: float, concurrency: int) -> str:
    columns = ["ok", "error_json", "error_event", *BAD]
    rows = [[label, sum(counts.values()), *(counts[name] for name in columns)]
            for label, counts in sorted(run.categories.items())]
    totals = run.totals
    rows.append(["all", sum(totals.values()), *(totals[name] for name in columns)])
    parts = [
        f"fault test: {seconds:g} s at concurrency {concurrency}, {len(run.sent)} requests, "
        f"slowest answer {run.slowest_s:.1f} s",
        table("client answers (dialect, mode, route)", ["kind", "sent", *columns], rows),
        table("error statuses answered (clean error JSON)", ["status", "count"], sorted(run.statuses.items())),
        table("upstream calls by injected fault", ["fault", "calls"], sorted(run.faults.items())),
        table("what the proxy counted (/metrics)", ["metric", "value"], sorted(run.proxy.items())),
        table("records after the graceful stop", ["record", "count"],
              [("requests sent", len(run.sent)), *sorted(run.records.items())]),
        "PASS: every request answered or cleanly refused, no record lost" if run.passed else "FAIL",
    ]
    return "\n\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="length of the load (default: 45)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients in flight (default: 16)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the fault draws (default: 7)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the config, logs and databases go (default: a temporary directory)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cascadeflow-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    run = asyncio.run(run_faults(args.seconds, args.concurrency, args.seed, work))
    print(report(run, args.seconds, args.concurrency))
    print(f"\nwork directory: {work}")
    return 0 if run.passed else 1


if __name__ == "__main__":
    sys.exit(main())
