"""Benchmark: embedding latency, FAISS lookup latency by cache size, and the proxy's latency on a cache hit and
a miss against pass-through, all measured in this run. Figures only, not a test.

    .venv/bin/python benchmarks/cache_overhead.py [--sizes 10000 100000 1000000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx
import numpy as np

from router.app import create_app
from router.cache.index import VectorIndex
from router.embedding.encoder import Encoder
from router.replay.runner import BackgroundServer
from router.replay.scripted import ScriptedSource
from router.replay.server import create_upstream_app
from router.settings import Settings


def median_ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return f"p50 {statistics.median(ordered) * 1000:7.2f} ms  p99 {p99 * 1000:7.2f} ms"


def embedding(encoder: Encoder) -> None:
    short = "How do I reverse a list in Python?"
    long = "Explain the following code and suggest improvements. " * 40
    for label, texts in (("1 short text", [short]), ("1 long text (2,000 chars)", [long[:2000]]),
                         ("batch of 8 short, per text", [short] * 8), ("batch of 32 short, per text", [short] * 32),
                         ("batch of 64 short, per text", [short] * 64)):
        samples = []
        for _ in range(10):
            start = time.perf_counter()
            encoder.encode_batch(texts)
            samples.append((time.perf_counter() - start) / len(texts))
        print(f"embedding  {label:<32} {median_ms(samples)}")

    async def concurrent(callers: int) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(encoder.embed(f"{short} {i}") for i in range(callers)))
        return callers / (time.perf_counter() - start)

    for callers in (1, 8, 64):
        rate = statistics.median(asyncio.run(concurrent(callers)) for _ in range(5))
        print(f"embed()    {callers:>3} concurrent callers: {rate:8.0f} texts/s (micro-batched)")


def lookups(sizes: list[int], hnsw_sizes: list[int]) -> None:
    rng = np.random.default_rng(0)
    cells = [(size, "flat IP") for size in sizes] + [(size, "HNSW M=32") for size in hnsw_sizes]
    for size, kind in cells:
        index = VectorIndex(384, hnsw_threshold=size + 1 if kind == "flat IP" else 0)
        built = time.perf_counter()
        for start in range(0, size, 100_000):
            count = min(100_000, size - start)
            vectors = rng.normal(size=(count, 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            index.add_many("scope", np.arange(start, start + count, dtype=np.int64), vectors)
        build_s = time.perf_counter() - built
        queries = rng.normal(size=(50, 384)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        samples = []
        for query in queries:
            begin = time.perf_counter()
            index.search("scope", query, 4)
            samples.append(time.perf_counter() - begin)
        print(f"lookup     {size:>9,} entries, one scope ({kind:<9}) {median_ms(samples)}  (built in {build_s:.1f} s)")


def proxy_latency(encoder: Encoder, requests: int) -> None:
    upstream = BackgroundServer(create_upstream_app(ScriptedSource(), latency_s=0.02)).start()
    settings = Settings(providers={"anthropic": {"kind": "anthropic", "base_url": upstream.url, "api_key": "k"},
                                   "openai": {"kind": "openai", "base_url": upstream.url + "/v1", "api_key": "k"}},
                        server={"log_level": "warning"}, outcome_log={"enabled": False})
    proxy = BackgroundServer(create_app(settings, encoder)).start()
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    body = {"model": "claude-sonnet-5", "max_tokens": 64}
    with httpx.Client(timeout=30) as client:
        def timed(content: str, extra: dict[str, str]) -> float:
            start = time.perf_counter()
            response = client.post(proxy.url + "/v1/messages", headers={**headers, **extra},
                                   json={**body, "messages": [{"role": "user", "content": content}]})
            response.raise_for_status()
            return time.perf_counter() - start

        direct = [timed(f"warm {i}", {"x-cascadeflow-cache": "off"}) for i in range(20)]
        passthrough = [timed(f"question {uuid.uuid4()}", {"x-cascadeflow-cache": "off"}) for _ in range(requests)]
        misses = [timed(f"question {uuid.uuid4()}", {}) for _ in range(requests)]
        timed("What is the capital of Australia?", {})
        hits = [timed("What is the capital of Australia?", {}) for _ in range(requests)]
    del direct
    print(f"proxy      pass-through (cache off), 20 ms upstream  {median_ms(passthrough)}")
    print(f"proxy      cache miss (embed + lookup + upstream)     {median_ms(misses)}")
    print(f"proxy      cache hit (embed + lookup, no upstream)    {median_ms(hits)}")
    base = statistics.median(passthrough) * 1000
    print(f"           a miss adds {statistics.median(misses) * 1000 - base:.2f} ms to pass-through; "
          f"a hit answers {base - statistics.median(hits) * 1000:.2f} ms sooner than this 20 ms upstream")
    proxy.stop()
    upstream.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--hnsw-sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    encoder = Encoder()
    encoder.load()
    embedding(encoder)
    lookups(args.sizes, args.hnsw_sizes)
    proxy_latency(encoder, args.requests)


if __name__ == "__main__":
    main()
