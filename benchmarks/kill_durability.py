"""The kill -9 durability run: a proxy answering a sustained concurrent load is killed with SIGKILL, started again,
then stopped; every request it had answered must have exactly one outcome record and one spend row.

A request counts as answered (acknowledged) when the client has read its whole response: a JSON body, or a stream
to the end of its body. The outcome log and spend ledger flush only every few seconds here, so without the
write-ahead journal (router/storage/journal.py) the records of the last seconds are lost.

    python -m benchmarks.kill_durability --rounds 5 --requests 2000
    python -m benchmarks.kill_durability --rounds 5 --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 32
FLUSH_MS = 3000


@dataclass(frozen=True)
class Round:
    """One kill: what the client saw answered, and what the stores hold for those requests."""

    acknowledged: int
    outcome_missing: int
    outcome_duplicates: int
    spend_missing: int
    recovered_outcomes: int
    recovered_spend: int

    @property
    def lost(self) -> int:
        """Answered requests without their outcome record or spend row."""
        return self.outcome_missing + self.spend_missing


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(directory: Path, port: int, upstream: str, outcome_url: str, spend_url: str, *,
                 journal: bool = True) -> Path:
    """A proxy config: pass-through to the upstream, outcome log and spend ledger that flush rarely."""
    config = directory / "config.yaml"
    on = "true" if journal else "false"
    config.write_text(
        f"data_dir: \"{directory}\"\n"
        f"server: {{host: 127.0.0.1, port: {port}, shutdown_grace_s: 5}}\n"
        f"providers:\n  anthropic: {{base_url: \"{upstream}\", api_key: sk-proxy}}\n"
        "embedding: {enabled: false}\nlearned_router: {enabled: false}\nverifier: {enabled: false}\n"
        f"outcome_log: {{enabled: true, url: \"{outcome_url}\", flush_interval_ms: {FLUSH_MS}, batch_size: 100000,"
        f" queue_size: 100000, journal: {on}}}\n"
        f"spend: {{url: \"{spend_url}\", flush_interval_ms: {FLUSH_MS}, batch_size: 100000, queue_size: 100000,"
        f" journal: {on}}}\n")
    return config


def start_proxy(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`cascadeflow proxy start --config <config>` in a subprocess, its output appended to `log`."""
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", "router.cli", "proxy", "start", "--config", str(config)],
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=output,
                                stderr=subprocess.STDOUT)


def wait_ready(base: str, proxy: subprocess.Popen[bytes], timeout_s: float = 120.0) -> dict[str, object]:
    """The proxy's /ready body once it answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proxy.poll() is not None:
            raise RuntimeError(f"the proxy exited with {proxy.returncode} before it was ready")
        try:
            reply = httpx.get(base + "/ready", timeout=2)
            if reply.status_code in (200, 503):
                body: dict[str, object] = reply.json()
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the proxy did not become ready")


async def _one(client: httpx.AsyncClient, request_id: str, index: int) -> bool:
    """Whether the request was answered whole (a stream read to the end of its body)."""
    body = {"model": "claude-sonnet-4-5", "max_tokens": 32, "stream": index % 2 == 0,
            "messages": [{"role": "user", "content": f"durability {index}"}]}
    headers = {"x-request-id": request_id, "x-api-key": "sk-client", "anthropic-version": "2023-06-01"}
    try:
        async with client.stream("POST", "/v1/messages", json=body, headers=headers) as reply:
            content = await reply.aread()
        return reply.status_code == 200 and (not body["stream"] or b"message_stop" in content)
    except httpx.HTTPError:
        return False


async def drive(base: str, proxy: subprocess.Popen[bytes], requests: int, kill_after: int) -> list[str]:
    """Send `requests` requests, `CONCURRENCY` at a time; SIGKILL the proxy once `kill_after` are answered."""
    tag = uuid.uuid4().hex[:8]
    answered: list[str] = []
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> None:
        async with slots:
            if proxy.poll() is not None:
                return
            request_id = f"kill-{tag}-{index}"
            if await _one(client, request_id, index):
                answered.append(request_id)
            if len(answered) >= kill_after and proxy.poll() is None:
                proxy.send_signal(signal.SIGKILL)  # mid-load: other requests are in flight

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        await asyncio.gather(*(one(index) for index in range(requests)))
    return answered


async def stored_ids(url: str, table: str) -> list[str]:
    """The request ids of a table (one per row)."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not Path(path).exists():
            return []
        connection = sqlite3.connect(path)
        try:
            return [row[0] for row in connection.execute(f"SELECT request_id FROM {table}")]
        finally:
            connection.close()
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        return [row["request_id"] for row in await connection.fetch(f"SELECT request_id FROM {table}")]
    finally:
        await connection.close()


def _recovered(ready: dict[str, object], check: str) -> int:
    checks = ready.get("checks")
    found = checks.get(check) if isinstance(checks, dict) else None
    value = found.get("recovered") if isinstance(found, dict) else None
    return value if isinstance(value, int) else 0


def run_round(upstream: str, directory: Path, outcome_url: str, spend_url: str, *, requests: int,
              kill_after: int, journal: bool = True) -> Round:
    """Start a proxy, load it, kill it, start it again (it writes its journals), stop it, and count."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(directory, port, upstream, outcome_url, spend_url, journal=journal)
    output = directory / "proxy.log"
    proxy = start_proxy(config, output)
    try:
        wait_ready(base, proxy)
        answered = asyncio.run(drive(base, proxy, requests, kill_after))
    finally:
        if proxy.poll() is None:
            proxy.send_signal(signal.SIGKILL)
        proxy.wait()
    again = start_proxy(config, output)
    try:
        ready = wait_ready(base, again)
    finally:
        again.send_signal(signal.SIGTERM)  # a clean stop writes what is queued
        again.wait(timeout=60)
    outcomes = Counter(asyncio.run(stored_ids(outcome_url, _outcome_table(outcome_url))))
    spend = Counter(asyncio.run(stored_ids(spend_url, "cascadeflow_spend")))
    return Round(acknowledged=len(answered),
                 outcome_missing=sum(1 for request_id in answered if outcomes[request_id] == 0),
                 outcome_duplicates=sum(1 for request_id in answered if outcomes[request_id] > 1),
                 spend_missing=sum(1 for request_id in answered if spend[request_id] == 0),
                 recovered_outcomes=_recovered(ready, "outcome_log"), recovered_spend=_recovered(ready, "spend_ledger"))


def _outcome_table(url: str) -> str:
    return "outcomes" if url.startswith("sqlite:///") else "cascadeflow_outcomes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000, help="requests sent per round")
    parser.add_argument("--kill-after", type=int, default=1000, help="answered requests before the kill")
    parser.add_argument("--postgres", help="a PostgreSQL database for both stores (default: SQLite files)")
    parser.add_argument("--directory", default=".cache/kill-durability", help="where each round's state goes")
    parser.add_argument("--no-journal", action="store_true", help="turn the journals off (what a kill loses without)")
    args = parser.parse_args()
    from router.replay.runner import BackgroundServer
    from router.replay.scripted import ScriptedSource
    from router.replay.server import create_upstream_app

    root = Path(args.directory).resolve()
    failed = False
    with BackgroundServer(create_upstream_app(ScriptedSource(), latency_s=0.02, stream_delay_s=0.002)) as upstream:
        print("round  acknowledged  outcome missing  duplicates  spend missing  recovered (outcomes, spend)")
        for number in range(1, args.rounds + 1):
            directory = root / f"round-{number}-{uuid.uuid4().hex[:6]}"
            outcome_url = args.postgres or f"sqlite:///{directory}/outcomes.sqlite"
            spend_url = args.postgres or f"sqlite:///{directory}/spend.sqlite"
            result = run_round(upstream.url, directory, outcome_url, spend_url, requests=args.requests,
                               kill_after=args.kill_after, journal=not args.no_journal)
            failed = failed or result.lost > 0 or result.outcome_duplicates > 0
            print(f"{number:>5}  {result.acknowledged:>12}  {result.outcome_missing:>15}  "
                  f"{result.outcome_duplicates:>10}  {result.spend_missing:>13}  "
                  f"({result.recovered_outcomes}, {result.recovered_spend})", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
