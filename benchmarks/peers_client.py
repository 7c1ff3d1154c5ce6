"""The bounded load client of `peers.py` (aiohttp + uvloop when installed; no project imports).

Sends N requests at concurrency C after a warm-up and prints one JSON line: latency percentiles (ms), requests
per second, time to the first body byte for streams, and how many requests the warm-up and the measured phase
issued. A request counts only with status 200 and the expected text (streams: the last token and the end
marker). Every run is bounded by count and by wall time; only loopback targets are accepted.

    python benchmarks/peers_client.py --base http://127.0.0.1:18900 --api openai -n 2000 -c 16 [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import urlparse

import aiohttp

FILLER = ("Explain the following situation in detail and give a short, well-reasoned answer at the end. "
          "A farmer has several fields of different sizes and rotates crops between them every season. ")
SHORT = "Say hello in five words."
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


def percentile(ordered: list[float], share: float) -> float | None:
    """Linear-interpolated percentile of sorted values (share in 0..100)."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * share / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def prompt_text(index: int | None = None, chars: int = 0) -> str:
    """The user prompt: fixed, or numbered per request (`index`), padded to exactly `chars` when given."""
    text = SHORT if index is None else f"Request {index}: {SHORT.lower()}"
    while len(text) < chars:
        text += " " + FILLER
    return text[:chars] if chars else text


def request_body(api: str, model: str, stream: bool, text: str) -> bytes:
    """The JSON body: the same shape on both API paths."""
    return json.dumps({"model": model, "max_tokens": 16, "stream": stream,
                       "messages": [{"role": "user", "content": text}]}).encode()


def headers_for(key: str) -> dict[str, str]:
    return {"content-type": "application/json", "authorization": "Bearer " + key, "x-api-key": key,
            "anthropic-version": "2023-06-01"}


def valid(api: str, stream: bool, status: int, text: str) -> bool:
    """Whether an answer is the fake upstream's (a replayed draft or cache hit may carry the streamed text)."""
    if status != 200:
        return False
    if "Hello from the fake upstream." not in text and "tok9" not in text:
        return False
    if not stream:
        return True
    return "[DONE]" in text if api == "openai" else "message_stop" in text


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = args.base.rstrip("/") + PATHS[args.api]
    headers = headers_for(args.key)
    fixed = request_body(args.api, args.model, args.stream, prompt_text(None, args.prompt_chars))
    latencies: list[float] = []
    first_bytes: list[float] = []
    errors: list[str] = []
    sequence = [0]

    async def one(session: aiohttp.ClientSession, record: bool) -> None:
        body = fixed
        if args.unique:
            sequence[0] += 1
            body = request_body(args.api, args.model, args.stream, prompt_text(sequence[0], args.prompt_chars))
        start = time.perf_counter()
        first: float | None = None
        try:
            async with session.post(url, data=body, headers=headers) as response:
                chunks = []
                async for chunk in response.content.iter_any():
                    if first is None:
                        first = time.perf_counter()
                    chunks.append(chunk)
                text = b"".join(chunks).decode("utf-8", "replace")
                ok, status = valid(args.api, args.stream, response.status, text), response.status
        except Exception as exc:  # noqa: BLE001 - every failure is a counted error
            ok, status, text = False, -1, repr(exc)
        end = time.perf_counter()
        if not record:
            return
        if ok:
            latencies.append((end - start) * 1000.0)
            if first is not None:
                first_bytes.append((first - start) * 1000.0)
        else:
            errors.append(f"{status}: {text[:300]}")

    async def phase(session: aiohttp.ClientSession, total: int, record: bool, deadline: float) -> int:
        issued = [0]

        async def worker() -> None:
            while issued[0] < total and time.perf_counter() < deadline:
                issued[0] += 1
                await one(session, record)

        await asyncio.gather(*(worker() for _ in range(min(args.c, total))))
        return issued[0]

    connector = aiohttp.TCPConnector(limit=args.c, limit_per_host=args.c, ttl_dns_cache=3600)
    timeout = aiohttp.ClientTimeout(total=args.req_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warm = await phase(session, args.warmup, False, time.perf_counter() + args.warmup_seconds)
        start = time.perf_counter()
        issued = await phase(session, args.n, True, start + args.max_seconds)
        wall = time.perf_counter() - start
    latencies.sort()
    first_bytes.sort()
    result: dict[str, Any] = {
        "api": args.api, "stream": args.stream, "c": args.c, "n": args.n, "warmup_issued": warm,
        "issued": issued, "ok": len(latencies), "errors": len(errors), "error_samples": errors[:3],
        "wall_s": round(wall, 3), "rps": round(len(latencies) / wall, 1) if wall > 0 else 0.0,
        "truncated": issued < args.n,
    }
    for name, values, share in (("p50", latencies, 50), ("p90", latencies, 90), ("p99", latencies, 99),
                                ("ttfb_p50", first_bytes, 50), ("ttfb_p99", first_bytes, 99)):
        value = percentile(values, share) if (args.stream or not name.startswith("ttfb")) else None
        result[name] = None if value is None else round(value, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", required=True)
    parser.add_argument("--api", choices=sorted(PATHS), default="openai")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("-c", type=int, default=1)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--key", default="sk-fake-key", help="sent as Bearer and x-api-key")
    parser.add_argument("--warmup", type=int, default=None, help="requests first, not measured (max(50, 4c))")
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=15.0)
    parser.add_argument("--req-timeout", type=float, default=30.0)
    parser.add_argument("--unique", action="store_true", help="a different prompt for every request")
    parser.add_argument("--prompt-chars", type=int, default=0, help="pad the prompt to this many characters")
    args = parser.parse_args()
    if urlparse(args.base).hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"refusing a non-loopback target: {args.base}")
    if args.warmup is None:
        args.warmup = max(50, 4 * args.c)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
