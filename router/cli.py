"""The `cascadeflow` command line: proxy start, config check, keys (create, list, revoke, hash), usage."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from router.auth_keys.cli import add_keys_commands
from router.auth_keys.store import KeyView
from router.auth_summary import describe_auth, start_warnings, stored_keys
from router.config_errors import ConfigFileError
from router.errors import ConfigError
from router.local.cli import add_local_models_commands
from router.settings import Settings, load_settings
from router.shutdown import ShutdownPlan
from router.spend.cli import add_usage_command

logger = logging.getLogger("router.cli")


def _banner(settings: Settings, port: int, stored: KeyView | str | None = None) -> str:
    server = settings.server
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::") else server.host.strip("[]")
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    mode = describe_auth(settings, stored)  # reads the key store (unless given): keys made at run time count too
    return "\n".join([
        f"CascadeFlow Router listening on {base}  (auth: {mode})",
        "",
        "Claude Code:     export ANTHROPIC_BASE_URL=" + base,
        "Anthropic SDK:   anthropic.Anthropic(base_url=\"" + base + "\")",
        "OpenAI SDK:      openai.OpenAI(base_url=\"" + base + "/v1\")",
        "",
    ])


def _config_problem(exc: ConfigError, file: str | None) -> str:
    """A config error for the terminal: every issue on its own line, each naming the file (and line)."""
    if isinstance(exc, ConfigFileError):
        return exc.describe(separator="\n  ")
    text = str(exc)
    return text if file is None or file in text else f"{file}: {text}"


def bind_listener(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A TCP socket bound to host:port and listening, as uvicorn would open it (SO_REUSEADDR; IPv6 for a host
    with `:`); raises OSError when the address cannot be had (in use, not local, no permission)."""
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    """One line: why the proxy cannot listen on host:port."""
    if exc.errno == errno.EADDRINUSE:
        reason = "the address is already in use (another process listens there; pick another --port)"
    elif exc.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need privileges; pick another --port)"
    else:
        reason = exc.strerror or str(exc)
    return f"cascadeflow: cannot listen on {host}:{port}: {reason}"


def _start(args: argparse.Namespace) -> int:
    from router.observability.logs import logging_configured
    from router.observability.tracing import check_available

    overrides = {"server": {"host": args.host, "port": args.port, "workers": args.workers}}
    try:
        settings = load_settings(args.config, **overrides)
        check_available(settings.tracing)
    except ConfigError as exc:
        print(f"cascadeflow: invalid configuration: {_config_problem(exc, args.config)}", file=sys.stderr)
        return 2
    with logging_configured(settings.logging, settings.server.log_level):  # uvicorn's too (log_config=None)
        return _serve(args, settings, overrides)


def _serve(args: argparse.Namespace, settings: Settings, overrides: dict[str, dict[str, Any]]) -> int:
    import uvicorn

    server = settings.server
    try:  # bound before the banner and before the app starts (loading models takes seconds)
        sock = bind_listener(server.host, server.port)
    except OSError as exc:
        print(_bind_problem(server.host, server.port, exc), file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    answers_s = ShutdownPlan.of(server.shutdown_grace_s).answers_s  # the rest of the grace is the stop's
    stored = stored_keys(settings.auth)
    address = f"[{server.host.strip('[]')}]:{port}" if ":" in server.host else f"{server.host}:{port}"
    for warning in start_warnings(settings, address, stored):
        logger.warning(warning)
    if server.workers > 1:
        sock.close()  # uvicorn binds it again in this process, at once, before starting the workers
        print(_banner(settings, port, stored), flush=True)
        if args.config:
            os.environ["CASCADEFLOW_CONFIG"] = os.path.abspath(args.config)
        os.environ["CASCADEFLOW_SERVER__HOST"] = server.host
        os.environ["CASCADEFLOW_SERVER__PORT"] = str(port)
        from router.metrics import multiprocess_directory

        with multiprocess_directory():  # PROMETHEUS_MULTIPROC_DIR: /metrics sums every worker's values
            uvicorn.run("router.app:create_app_from_environment", factory=True, host=server.host,
                        port=port, workers=server.workers, log_level=server.log_level, log_config=None,
                        access_log=False,
                        timeout_graceful_shutdown=answers_s)
        return 0
    print(_banner(settings, port, stored), flush=True)
    from router.app import create_app
    from router.reload import ConfigSource

    source = ConfigSource(args.config, overrides) if args.config else None
    config = uvicorn.Config(create_app(settings, config=source, server_process=True), host=server.host, port=port,
                            log_level=server.log_level, log_config=None, access_log=False,
                            timeout_graceful_shutdown=answers_s)  # streams finish, within the grace
    runner = uvicorn.Server(config)
    try:
        runner.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0 if runner.started else 3


def _check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.file)
    except ConfigError as exc:
        print(f"cascadeflow: invalid configuration: {_config_problem(exc, args.file)}", file=sys.stderr)
        return 2
    print(f"{args.file}: valid ({len(settings.providers)} providers, {len(settings.models)} model routes, "
          f"{len(settings.cascade_rules)} cascade rules, {len(settings.auth.keys)} proxy keys)")
    print("\n".join(_state_paths(settings)))
    status = _check_artifact(settings) if settings.learned_router.enabled and settings.cascade_rules else 0
    if settings.cascade_rules:
        status = max(status, _check_verifier(settings))
    return status


def _state_paths(settings: Settings) -> list[str]:
    """Where the proxy would keep its state, as resolved from the config."""
    lines = [f"state directory: {settings.data_dir}"]
    log = settings.outcome_log
    if log.enabled:
        lines.append(f"  outcome log: {log.url}" + (f" (spool {log.spool_path})" if log.spool_path else ""))
    if settings.semantic_cache_wanted:
        lines.append(f"  semantic cache: {settings.cache.directory or 'in memory only'}")
    return lines


def _check_artifact(settings: Settings) -> int:
    """Whether the router artifact the proxy would load matches this code (metadata only: nothing unpickled)."""
    from router.artifacts import ArtifactSource, candidate_dir, checked_metadata
    from router.embedding.encoder import DIMENSION, MODEL_NAME
    from router.learned import router_spec
    from router.policy.classifier import ArtifactMismatch

    learned, spec = settings.learned_router, router_spec(MODEL_NAME, DIMENSION)
    source = ArtifactSource.of(learned)
    directory = candidate_dir(spec, source)
    if directory is None:
        print(f"learned router: no artifact under {source.models_dir}; every cascade request drafts first")
        return 2 if learned.required else 0
    try:
        metadata = checked_metadata(spec, directory)
    except ArtifactMismatch as exc:
        print(f"learned router: {directory} refused: {exc}", file=sys.stderr)
        return 2
    threshold = learned.skip_threshold if learned.skip_threshold is not None else metadata.thresholds.get(
        "skip_threshold")
    print(f"learned router: {directory} (version {metadata.version}, skip threshold {threshold})")
    return 0


def _check_verifier(settings: Settings) -> int:
    """Which verifier judges drafts: the trained artifact (checked, metadata only) or the hand-weighted score."""
    from router.artifacts import ArtifactSource, candidate_dir, checked_metadata
    from router.policy.classifier import ArtifactMismatch
    from router.verifier import VERIFIER_SPEC

    verifier = settings.verifier
    source = ArtifactSource.of(verifier)
    directory = candidate_dir(VERIFIER_SPEC, source)
    if not verifier.enabled or directory is None:
        why = "disabled" if not verifier.enabled else f"no verifier artifact under {source.models_dir}"
        print(f"verifier: hand-weighted score against each rule's quality_threshold ({why})")
        return 2 if verifier.enabled and verifier.required else 0
    try:
        metadata = checked_metadata(VERIFIER_SPEC, directory)
    except ArtifactMismatch as exc:
        print(f"verifier: {directory} refused: {exc}; the hand-weighted score judges drafts", file=sys.stderr)
        return 2
    threshold = verifier.accept_threshold if verifier.accept_threshold is not None else metadata.thresholds.get(
        "accept_threshold")
    print(f"verifier: trained, {directory} (version {metadata.version}, accept threshold {threshold})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import time

    from router.demo import format_report, run_demo

    started = time.perf_counter()
    report = run_demo(limit_per_source=args.limit, threshold=args.threshold, concurrency=args.concurrency,
                      latency_ms=args.latency_ms, sources=args.source, learned=args.learned)
    print(format_report(report))
    print(f"\n{len(report.served)} requests in {time.perf_counter() - started:.1f} s")
    return 0


def _replay_upstream(args: argparse.Namespace) -> int:
    import uvicorn

    from router.replay.answers import AnswerSource
    from router.replay.dataset import DatasetSource, load_rows
    from router.replay.scripted import ScriptedSource
    from router.replay.server import create_upstream_app

    source: AnswerSource = ScriptedSource()
    if args.source == "dataset":
        source = DatasetSource(load_rows(args.data))
    app = create_upstream_app(source, latency_s=args.latency_ms / 1000.0, stream_delay_s=args.stream_delay_ms / 1000.0)
    print(f"replay upstream ({args.source}) on http://{args.host}:{args.port}  (OpenAI base URL: .../v1)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _training_command(name: str, arguments: list[str]) -> int:
    """`eval` and `train` run the training package's own command lines (they import scikit-learn)."""
    if name == "eval":
        from training.evaluate import main as evaluate

        evaluate(arguments)
    elif "--encoder" in arguments:
        from training.export_encoder import main as export_encoder

        export_encoder([argument for argument in arguments if argument != "--encoder"])
    elif "--verifier" in arguments:
        from training.train_verifier import main as train_verifier

        train_verifier([argument for argument in arguments if argument != "--verifier"])
    else:
        from training.train_router import main as train

        train(arguments)
    return 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless the help already states one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "default" in (action.help or "").lower():
            return action.help
        return super()._get_help_string(action)


def iter_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """A parser and every sub-command parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from iter_parsers(child)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command; every option's help states its default."""
    parser = argparse.ArgumentParser(prog="cascadeflow", description="CascadeFlow Router")
    commands = parser.add_subparsers(dest="command", required=True)
    override = "overrides the config's server.{} and CASCADEFLOW_SERVER__{} (default: the config's, else {})"

    proxy = commands.add_parser("proxy", help="run the proxy").add_subparsers(dest="action", required=True)
    start = proxy.add_parser("start", help="start the proxy server")
    start.add_argument("--config", help="YAML config file (default: none: built-in settings, provider keys from "
                       "ANTHROPIC_API_KEY and OPENAI_API_KEY)")
    start.add_argument("--host", help="listen address; " + override.format("host", "HOST", "127.0.0.1"))
    start.add_argument("--port", type=int, help="listen port, 0 for any free one; "
                       + override.format("port", "PORT", 8000))
    start.add_argument("--workers", type=int, help="uvicorn worker processes; "
                       + override.format("workers", "WORKERS", 1))
    start.set_defaults(handler=_start)

    config = commands.add_parser("config", help="configuration").add_subparsers(dest="action", required=True)
    check = config.add_parser("check", help="validate a config file without starting")
    check.add_argument("file", help="the YAML config file to check")
    check.set_defaults(handler=_check)

    demo = commands.add_parser("demo", help="no-key demo: cascade on real answers from labelled data")
    demo.add_argument("--limit", type=int, default=60, help="prompts per source")
    demo.add_argument("--threshold", type=float, default=0.95, help="the cascade rule's quality_threshold")
    demo.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    demo.add_argument("--latency-ms", type=float, default=0.0, help="added latency of each upstream answer (ms)")
    demo.add_argument("--source", nargs="+", default=["gsm8k", "mt_bench"], choices=["gsm8k", "mt_bench"],
                      help="labelled data sets the prompts come from (default: gsm8k mt_bench)")
    demo.add_argument("--learned", action="store_true",
                      help="with the shipped learned router, on held-out prompts (loads the embedding model; "
                      "default: off)")
    demo.set_defaults(handler=_demo)

    replay = commands.add_parser("replay-upstream", help="a local upstream speaking the providers' wire formats")
    replay.add_argument("--host", default="127.0.0.1", help="listen address")
    replay.add_argument("--port", type=int, default=8100, help="listen port")
    replay.add_argument("--latency-ms", type=float, default=0.0, help="added latency of each answer (ms)")
    replay.add_argument("--stream-delay-ms", type=float, default=0.0, help="delay between stream events (ms)")
    replay.add_argument("--source", choices=["scripted", "dataset"], default="dataset",
                        help="scripted: the test upstream's canned answers; dataset: real answers of labelled data")
    replay.add_argument("--data", type=Path, default=None, help="labelled JSONL (default: the shipped RouteLLM data)")
    replay.set_defaults(handler=_replay_upstream)

    commands.add_parser("eval", help="offline evaluation: replay the routing policy on labelled data "
                        "(APGR, CPT, cost saved; `cascadeflow eval --help`)", add_help=False)
    commands.add_parser("train", help="train a router artifact (or with --verifier, a verifier artifact) from "
                        "data sets and/or the outcome log; --encoder re-exports the embedding graph "
                        "(`cascadeflow train --help`)", add_help=False)

    add_keys_commands(commands)
    add_usage_command(commands)

    add_local_models_commands(commands)
    for each in iter_parsers(parser):
        each.formatter_class = _HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cascadeflow` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in ("eval", "train"):
        return _training_command(arguments[0], arguments[1:])
    args = build_parser().parse_args(arguments)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
