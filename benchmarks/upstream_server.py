"""A scripted replay upstream in the foreground, for benchmarks: fixed latency, paced streams."""

from __future__ import annotations

import argparse

import uvicorn

from router.replay.scripted import ScriptedSource
from router.replay.server import create_upstream_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--stream-delay-ms", type=float, default=2.0)
    args = parser.parse_args()
    app = create_upstream_app(ScriptedSource(), latency_s=args.latency_ms / 1000.0,
                              stream_delay_s=args.stream_delay_ms / 1000.0)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
