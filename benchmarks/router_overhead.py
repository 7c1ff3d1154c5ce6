"""Benchmark: what the learned router and the outcome log add to a cascaded request, all measured in this run.

Three proxies in front of the same scripted upstream (20 ms before the first byte), one cascade rule each:
the plain cascade (no embedding, no router, no log), the cascade with the shipped router artifact (embed the
request, predict, then draft), and the same with the outcome log on. Prints p50/p99 latency of sequential
requests and each configuration's added latency against the plain cascade. Figures only, not a test.

    .venv/bin/python benchmarks/router_overhead.py [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from router.app import create_app
from router.embedding.encoder import Encoder
from router.replay.runner import BackgroundServer
from router.replay.scripted import ScriptedSource
from router.replay.server import create_upstream_app
from router.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RULE = {"request_model": "claude-opus-4-8", "draft_model": "claude-haiku-4-5", "verifier_model": "claude-opus-4-8",
        "quality_threshold": 0.5}


def settings(upstream_url: str, tmp: str, *, router: bool, log: bool) -> Settings:
    return Settings(
        providers={"anthropic": {"kind": "anthropic", "base_url": upstream_url, "api_key": "k"}},
        models=[{"match": "claude-*", "provider": "anthropic"}], cascade_rules=[RULE], server={"log_level": "warning"},
        cache={"enabled": False}, embedding={"enabled": router},
        learned_router={"enabled": router, "models_dir": str(ROOT / "models"), "skip_threshold": 0.0},
        outcome_log={"enabled": log, "url": f"sqlite:///{tmp}/outcomes.sqlite", "spool_path": f"{tmp}/spool.jsonl"},
        labels={"exploration_rate": 0.0})


def latencies(url: str, requests: int) -> list[float]:
    body: dict[str, Any] = {"model": "claude-opus-4-8", "max_tokens": 64}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    samples = []
    with httpx.Client(timeout=30) as client:
        for index in range(requests + 10):
            prompt = f"How many days are there in {index % 12 + 1} weeks? Explain briefly. {uuid.uuid4().hex[:6]}"
            start = time.perf_counter()
            reply = client.post(url + "/v1/messages", headers=headers,
                                json={**body, "messages": [{"role": "user", "content": prompt}]})
            reply.raise_for_status()
            if index >= 10:  # warm-up excluded
                samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    encoder = Encoder()
    encoder.load()
    upstream = BackgroundServer(create_upstream_app(ScriptedSource(), latency_s=0.02)).start()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, router, log in (("plain cascade", False, False), ("+ learned router", True, False),
                                  ("+ learned router + outcome log", True, True)):
            proxy = BackgroundServer(create_app(settings(upstream.url, tmp, router=router, log=log), encoder)).start()
            results[name] = latencies(proxy.url, args.requests)
            proxy.stop()
    upstream.stop()
    base = statistics.median(results["plain cascade"]) * 1000
    print(f"{args.requests} sequential cascaded requests (draft accepted), 20 ms upstream, shipped router artifact")
    for name, samples in results.items():
        ordered = sorted(samples)
        p50, p99 = statistics.median(ordered) * 1000, ordered[int(0.99 * (len(ordered) - 1))] * 1000
        print(f"{name:<32} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  added p50 {p50 - base:6.2f} ms")


if __name__ == "__main__":
    main()
