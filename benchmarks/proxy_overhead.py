"""Benchmark: the proxy's added latency and throughput against direct calls to a local upstream.

Starts a replay upstream (fixed latency before the first byte, streams of several events) and the proxy in
their own processes, then measures the same load twice in one run: straight at the upstream, and through
the proxy. Prints p50/p99 latency and requests per second for each, non-streaming and streaming, at each
concurrency, and the proxy's added latency as the difference. Not a test: figures only.

    .venv/bin/python benchmarks/proxy_overhead.py [--requests 2000] [--concurrency 1 64] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


@contextmanager
def process(args: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def upstream_command(port: int, latency_ms: float, stream_gap_ms: float) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / "upstream_server.py"), "--port", str(port),
            "--latency-ms", str(latency_ms), "--stream-delay-ms", str(stream_gap_ms)]


def proxy_command(port: int, config: Path) -> list[str]:
    return [sys.executable, "-m", "router.cli", "proxy", "start", "--config", str(config), "--port", str(port)]


def chat_body(stream: bool, usage: bool = False) -> bytes:
    import json

    body = {"model": "gpt-4o-mini", "max_tokens": 64, "stream": stream,
            "messages": [{"role": "user", "content": "Say hello in ten short words please, friend."}]}
    if stream and usage:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


async def one_call(session: aiohttp.ClientSession, url: str, body: bytes, stream: bool) -> float:
    start = time.perf_counter()
    async with session.post(url, data=body, headers={"content-type": "application/json",
                                                       "authorization": "Bearer bench"}) as response:
        if stream:
            async for _ in response.content.iter_any():
                pass
        else:
            await response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
    return (time.perf_counter() - start) * 1000.0


async def load(url: str, stream: bool, concurrency: int, requests: int,
               usage: bool = False) -> tuple[list[float], float]:
    body = chat_body(stream, usage)
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(min(50, requests)):
            await one_call(session, url, body, stream)
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                latencies.append(await one_call(session, url, body, stream))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return latencies, requests / elapsed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--stream-delay-ms", type=float, default=2.0)
    parser.add_argument("--usage", action="store_true",
                        help="streaming clients ask for usage (stream_options.include_usage), as the proxy does "
                             "upstream for its ledger when they do not")
    parser.add_argument("--outcome-log", choices=["on", "off"], default="on",
                        help="the outcome log (on by default in the proxy): one record per request")
    parser.add_argument("--journal", choices=["on", "off", "fsync"], default="on",
                        help="the outcome log's and spend ledger's write-ahead journal (on by default; fsync: "
                             "answers also wait for a group fsync)")
    args = parser.parse_args()

    upstream_port, proxy_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    journal = (f"journal: {'false' if args.journal == 'off' else 'true'}, "
               f"journal_fsync: {'true' if args.journal == 'fsync' else 'false'}")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(
            "server: {log_level: warning}\ncache: {enabled: false}\nembedding: {enabled: false}\n"
            f"outcome_log: {{enabled: {'true' if args.outcome_log == 'on' else 'false'}, "
            f"url: 'sqlite:///{tmp}/outcomes.sqlite', spool_path: '{tmp}/spool.jsonl', {journal}}}\n"
            f"spend: {{{journal}}}\n"
            f"providers:\n  anthropic: {{base_url: '{upstream_url}'}}\n"
            f"  openai: {{base_url: '{upstream_url}/v1'}}\n"
        )
        env_note = os.cpu_count()
        with process(upstream_command(upstream_port, args.latency_ms, args.stream_delay_ms), upstream_port), \
                process(proxy_command(proxy_port, config), proxy_port):
            print(f"upstream latency {args.latency_ms:.0f} ms, {args.requests} requests per cell, "
                  f"{env_note} cores, OpenAI chat path, outcome log {args.outcome_log}, journal {args.journal}")
            print(f"{'mode':<10}{'conc':>5}  {'direct p50':>10} {'p99':>7} {'req/s':>7}   "
                  f"{'proxy p50':>9} {'p99':>7} {'req/s':>7}   {'added p50':>9} {'added p99':>9}")
            for stream in (False, True):
                for concurrency in args.concurrency:
                    requests = args.requests if concurrency > 1 else max(200, args.requests // 5)
                    direct, direct_rps = asyncio.run(
                        load(f"{upstream_url}/v1/chat/completions", stream, concurrency, requests, args.usage))
                    proxied, proxy_rps = asyncio.run(
                        load(f"http://127.0.0.1:{proxy_port}/v1/chat/completions", stream, concurrency, requests,
                             args.usage))
                    d50, d99 = statistics.median(direct), percentile(direct, 0.99)
                    p50, p99 = statistics.median(proxied), percentile(proxied, 0.99)
                    mode = "stream" if stream else "json"
                    print(f"{mode:<10}{concurrency:>5}  {d50:>10.1f} {d99:>7.1f} {direct_rps:>7.0f}   "
                          f"{p50:>9.1f} {p99:>7.1f} {proxy_rps:>7.0f}   {p50 - d50:>9.1f} {p99 - d99:>9.1f}")


if __name__ == "__main__":
    main()
