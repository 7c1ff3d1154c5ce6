"""One local model server process: llama.cpp's HTTP server (xllamacpp) on the loopback interface.

Run by `router.local.serve` as `python -m router.local.worker ...`. It prints one line, `READY_PREFIX` and the
listening address, once the model is loaded and the server listens, then serves until SIGTERM or SIGINT, or
until its standard input closes (the parent is gone), and exits.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any

from router.local.catalog import LOOPBACK

READY_PREFIX = "cascadeflow-local-model listening "
DEFAULT_TEMPERATURE = 0.0
"""The temperature of a request that sets none: greedy, as the local drafts the verifier was trained on
(training/local_data.py), instead of llama.cpp's 0.8. Claude Code sets none (it asks for adaptive thinking)."""


def build_parser() -> argparse.ArgumentParser:
    """The worker's arguments (the parent builds them with `serve.worker_command`)."""
    parser = argparse.ArgumentParser(prog="python -m router.local.worker")
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--alias", required=True, help="the model name the server answers to and reports")
    parser.add_argument("--port", type=int, required=True, help="0: any free port")
    parser.add_argument("--ctx-size", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--cache-ram-mib", type=int, default=2048)
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help="sampling temperature of requests that set none")
    return parser


def server_params(xllamacpp: Any, args: argparse.Namespace) -> Any:
    """xllamacpp CommonParams for one model on the loopback interface."""
    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = [LOOPBACK]
    params.port = args.port
    params.n_ctx = args.ctx_size  # llama.cpp caps it at the model's training context
    params.n_parallel = args.parallel
    params.kv_unified = args.parallel > 1  # parallel slots share the whole window instead of splitting it
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.cache_ram_mib = args.cache_ram_mib
    params.sampling.temp = args.temperature
    params.ui = False
    return params


def _stop_when_stdin_closes(stop: threading.Event) -> None:
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model, serve it, exit on a signal or when the parent goes away."""
    args = build_parser().parse_args(argv)
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    try:
        xllamacpp = importlib.import_module("xllamacpp")
        server = xllamacpp.Server(server_params(xllamacpp, args))
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    print(READY_PREFIX + str(server.listening_address), flush=True)
    # Watched only once loaded: a parent that died meanwhile is seen at once (its end of the pipe is closed).
    threading.Thread(target=_stop_when_stdin_closes, args=(stop,), daemon=True).start()
    stop.wait()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the server's destructor can wait on its main loop; nothing here needs an orderly shutdown


if __name__ == "__main__":
    raise SystemExit(main())
