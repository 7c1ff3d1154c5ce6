"""Benchmark: this proxy against the floor a Python proxy reaches and against its peers, one system at a time.

Systems, each in front of the same fixed-delay fake upstream (20 ms; streams of 10 chunks 2 ms apart):
`direct` (the upstream itself), `floor` (a minimal Starlette + aiohttp pass-through), this proxy as `cfr-pass`
(no cache, encoder, router or log), `cfr-routed` (a cascade rule, the learned router on with a skip threshold that
never skips, the draft accepted, the outcome log on; unique prompts, short and 2,000 characters) and `cfr-cache`
(the same with the cache on: one prompt, so every request after the first is a hit), LiteLLM proxy and
claude-code-router (Anthropic path only). The system under test is pinned to CPU 1, the upstream and the load
client to CPU 0. Measured: added latency p50/p99 against direct, throughput at concurrency 1/16/64, JSON and
streaming, both API paths, CPU ms per request and peak RSS of the system, start-up time to ready, install size.
The peers are installed from PyPI and npm into a scratch folder (once); a failed install skips that system.
Writes docs/benchmarks.md and docs/benchmarks.png (with --quick: into the scratch folder). Figures, not a test.

    .venv/bin/python benchmarks/peers.py                          # the full run (about 30 minutes)
    .venv/bin/python benchmarks/peers.py --quick                  # smoke: few requests, one concurrency
    .venv/bin/python benchmarks/peers.py --systems floor,cfr-pass,litellm
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

from benchmarks import peers_env, peers_proc, peers_report  # noqa: E402

HERE = ROOT / "benchmarks"
APIS = ("openai", "anthropic")
ALL_SYSTEMS = ("direct", "floor", "cfr-pass", "cfr-routed", "cfr-cache", "litellm", "ccr")
FULL_MATRIX = ((1, 500), (16, 2000), (64, 4000))
LONG_CHARS = 2000
UVICORN_FLAGS = ["--host", "127.0.0.1", "--workers", "1", "--loop", "uvloop", "--http", "httptools",
                 "--no-access-log", "--log-level", "warning"]
CFR_BASE = ("server: {{log_level: warning}}\ndata_dir: \"{state}\"\nproviders:\n"
            "  openai: {{base_url: \"http://127.0.0.1:{up}/v1\", api_key: k}}\n"
            "  anthropic: {{base_url: \"http://127.0.0.1:{up}\", api_key: k}}\n")
CFR_ROUTED = ("learned_router: {enabled: true, skip_threshold: 0.0}\noutcome_log: {enabled: true}\n"
              "labels: {exploration_rate: 0.0}\ncascade_rules:\n  - {request_model: fake-model, draft_model: "
              "fake-draft, verifier_model: fake-model, quality_threshold: 0.0}\n")
CFR_MODES = {
    "cfr-pass": "cache: {enabled: false}\nembedding: {enabled: false}\noutcome_log: {enabled: false}\n"
                "learned_router: {enabled: false}\n",
    "cfr-routed": "cache: {enabled: false}\n" + CFR_ROUTED,
    "cfr-cache": "cache: {enabled: true, allow_sampled: true}\n" + CFR_ROUTED,
}


@dataclass
class System:
    """One system under test: how to start it and what to ask of it."""

    name: str
    label: str
    port: int
    command: list[str] | None  # None: the upstream itself, already running
    apis: tuple[str, ...] = APIS
    key: str = "sk-fake-key"
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ready_timeout: float = 60.0
    unique: bool = False  # a different prompt for each request (nothing may be reused between requests)
    long_prompts: bool = False  # also the 2,000-character variant, as `<name>-long`
    install: peers_env.InstallSize = peers_env.InstallSize(None)
    version: str = ""
    state: Path | None = None  # wiped before start


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    matrix: tuple[tuple[int, int], ...]
    cell_seconds: float
    warmup: int | None
    pin: bool


def checkout() -> str:
    """The commit measured, and whether the work tree had changes ('' outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=30, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"({commit}{', modified' if dirty else ''})"


def build_systems(args: argparse.Namespace, envs: peers_env.Environments, scratch: Path) -> dict[str, System]:
    """All systems the environments allow, with their commands, configs and install sizes."""
    up = args.base_port
    harness = [str(envs.harness_python), "-m", "uvicorn", "--app-dir", str(HERE)]
    systems = {"direct": System("direct", "direct (upstream)", up, None),
               "floor": System("floor", "minimal aiohttp proxy (floor)", up + 1,
                               harness + ["peers_floor:app", "--port", str(up + 1), *UVICORN_FLAGS],
                               env={"UPSTREAM": f"http://127.0.0.1:{up}"},
                               install=peers_env.python_install(envs.harness_python,
                                                                list(peers_env.HARNESS_REQUIREMENTS))
                               if envs.harness_own else peers_env.InstallSize(None),
                               version=" ".join(f"{name} {peers_env.version_of(envs.harness_python, name)}"
                                                for name in ("aiohttp", "starlette", "uvicorn")))}
    cfr_bin = Path(args.cfr_bin)
    cfr_python = cfr_bin.parent / "python"
    # an editable install: its own files are the checkout's packages and assets (what a wheel would hold)
    cfr_size = peers_env.python_install(cfr_python, ["cascadeflow-router"], peers_env.tree_bytes(
        *(ROOT / name for name in ("router", "training", "models", "data")), bytecode=False))
    cfr_version = f"{peers_env.version_of(cfr_python, 'cascadeflow-router')} {checkout()}".strip()
    labels = {"cfr-pass": "ours, pass-through", "cfr-routed": "ours, routed (router + draft accepted)",
              "cfr-cache": "ours, cache hit"}
    for mode, body in CFR_MODES.items():
        state = scratch / "cfr" / mode
        config = scratch / "cfr" / f"{mode}.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(CFR_BASE.format(state=state, up=up) + body)
        systems[mode] = System(mode, labels[mode], up + 2, [str(cfr_bin), "proxy", "start", "--config", str(config),
                                                              "--host", "127.0.0.1", "--port", str(up + 2)],
                               env={"HF_HUB_OFFLINE": "1"}, ready_timeout=180.0, unique=mode == "cfr-routed",
                               long_prompts=mode == "cfr-routed", install=cfr_size, state=state,
                               version=cfr_version)
    if envs.litellm_bin is not None and envs.litellm_config is not None:
        systems["litellm"] = System(
            "litellm", "LiteLLM proxy", up + 3,
            [str(envs.litellm_bin), "--config", str(envs.litellm_config), "--host", "127.0.0.1", "--port",
             str(up + 3), "--num_workers", "1"], key=envs.litellm_key, ready_timeout=180.0,
            env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"}, cwd=scratch,
            install=peers_env.python_install(envs.litellm_bin.parent / "python", [peers_env.LITELLM_REQUIREMENT]),
            version=peers_env.version_of(envs.litellm_bin.parent / "python", "litellm"))
    if envs.ccr_dir is not None:
        systems["ccr"] = System(
            "ccr", "claude-code-router", up + 4,
            ["node", "node_modules/@musistudio/claude-code-router/dist/cli.js", "start"], apis=("anthropic",),
            env={"HOME": str(envs.ccr_dir / "home"), "TMPDIR": str(envs.ccr_dir / "tmp")}, cwd=envs.ccr_dir,
            install=peers_env.InstallSize(peers_env.tree_bytes(envs.ccr_dir / "node_modules"), "node_modules"),
            version=peers_env.CCR_PACKAGE.rsplit("@", 1)[1], state=envs.ccr_dir / "home" / ".claude-code-router" /
            ".claude-code-router.pid")
    return systems


def check_mode(system: System) -> str:
    """Whether this proxy did what its mode says (routed: the draft served after a prediction; cache: a hit)."""
    try:
        if system.name == "cfr-routed":
            _, _, headers = peers_proc.post(system.port, "openai", system.key, f"check {uuid.uuid4().hex}")
            good = headers["x-cascadeflow-route"] == "draft" and headers["x-cascadeflow-predicted-good"] != ""
            return ("ok" if good else "UNEXPECTED") + f": route={headers['x-cascadeflow-route'] or '-'}, " \
                f"predicted-good={headers['x-cascadeflow-predicted-good'] or '-'}"
        if system.name == "cfr-cache":
            peers_proc.post(system.port, "openai", system.key, "Say hello in five words.")
            _, _, headers = peers_proc.post(system.port, "openai", system.key, "Say hello in five words.")
            cache = headers["x-cascadeflow-cache"] or "-"
            return ("ok" if cache == "hit" else "UNEXPECTED") + f": second identical request cache={cache}"
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        return f"UNEXPECTED: {exc!r}"[:200]
    return ""


def run_client(system: System, plan: Plan, envs: peers_env.Environments, api: str, stream: bool, c: int, n: int,
               chars: int) -> dict[str, Any]:
    command = [str(envs.harness_python), str(HERE / "peers_client.py"), "--base", f"http://127.0.0.1:{system.port}",
               "--api", api, "-c", str(c), "-n", str(n), "--key", system.key, "--max-seconds", str(plan.cell_seconds)]
    command += ["--stream"] if stream else []
    command += ["--unique"] if system.unique else []
    command += ["--prompt-chars", str(chars)] if chars else []
    command += ["--warmup", str(plan.warmup)] if plan.warmup is not None else []
    pinned = ["taskset", "-c", "0", *command] if plan.pin else command
    done = subprocess.run(pinned, capture_output=True, text=True, timeout=plan.cell_seconds + 120, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-1000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(system: System, process: subprocess.Popen[bytes] | None, plan: Plan, envs: peers_env.Environments,
            out: Path) -> int:
    """Every cell of one running system, appended to `out`; returns the peak RSS (KiB) seen."""
    cells = [(system.name, api, stream, c, n, 0) for api in system.apis for stream in (False, True)
             for c, n in plan.matrix]
    if system.long_prompts:  # the long-prompt target is a throughput one: JSON, the lowest and highest concurrency
        ends = sorted({plan.matrix[0], plan.matrix[-1]})
        cells += [(system.name + "-long", api, False, c, n, LONG_CHARS) for api in system.apis for c, n in ends]
    peak = 0
    for name, api, stream, c, n, chars in cells:
        pids = peers_proc.tree(process.pid) if process else []
        cpu0 = peers_proc.cpu_seconds(pids)
        try:
            row = run_client(system, plan, envs, api, stream, c, n, chars)
        except Exception as exc:  # noqa: BLE001 - one failed cell does not end the run
            print(f"  !! {name} {api} stream={int(stream)} c={c}: client failed: {exc}", flush=True)
            continue
        row.update(kind="cell", system=name, prompt_chars=chars)
        if process:
            pids = peers_proc.tree(process.pid)
            requests = max(1, row["issued"] + row["warmup_issued"])
            row["cpu_ms_per_req"] = round((peers_proc.cpu_seconds(pids) - cpu0) * 1000 / requests, 3)
            row["peak_rss_kb"] = peers_proc.memory_kb(pids, "VmHWM")
            peak = max(peak, row["peak_rss_kb"])
        with out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(f"  {name:16s} {api:9s} stream={int(stream)} c={c:<3d} ok={row['ok']:<5d} err={row['errors']:<4d} "
              f"req/s={row['rps']:<8} p50={row['p50']} p99={row['p99']} cpu/req={row.get('cpu_ms_per_req')}",
              flush=True)
        if row["errors"]:
            print(f"     errors: {row['error_samples'][:1]}", flush=True)
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with code {process.returncode} while measured")
    return peak


def run_system(system: System, plan: Plan, scratch: Path, envs: peers_env.Environments, out: Path) -> None:
    info: dict[str, Any] = {"kind": "system", "system": system.name, "label": system.label,
                            "version": system.version, "install_bytes": system.install.bytes,
                            "install_note": system.install.note}
    process = None
    try:
        if system.command is not None:
            if not peers_proc.port_free(system.port):
                raise RuntimeError(f"port {system.port} is already in use")
            if system.state is not None and system.state.exists():
                shutil.rmtree(system.state) if system.state.is_dir() else system.state.unlink()
            started = time.monotonic()
            process = peers_proc.start(system.command, "1" if plan.pin else None,
                                       scratch / "logs" / f"{system.name}.log", system.env, system.cwd)
            info["ready_s"] = round(peers_proc.wait_ready(system.port, system.apis[0], system.key,
                                                          system.ready_timeout, process, started), 2)
            info["idle_rss_kb"] = peers_proc.memory_kb(peers_proc.tree(process.pid), "VmRSS")
            info["check"] = check_mode(system)
        print(f"== {system.name} {system.version} ready in {info.get('ready_s', 0)} s, idle RSS "
              f"{info.get('idle_rss_kb', 0) // 1024} MB {info.get('check', '')}", flush=True)
        info["peak_rss_kb"] = measure(system, process, plan, envs, out) or None
    except Exception as exc:  # noqa: BLE001 - a system that cannot start is skipped with the reason
        hint = peers_proc.log_hint(scratch / "logs" / f"{system.name}.log") if system.command else ""
        info["skipped"] = f"{'failed' if 'ready_s' in info else 'did not start'}: {exc}"[:300] + (
            f" (log: {hint})" if hint else "")
        print(f"!! {system.name} skipped: {info['skipped']} (log: {scratch / 'logs' / (system.name + '.log')})",
              flush=True)
    finally:
        if process is not None:
            peers_proc.stop(process)
            time.sleep(1)
    with out.open("a") as handle:
        handle.write(json.dumps(info) + "\n")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in peers_proc._read("/proc/cpuinfo").splitlines()
                  if line.startswith("model name")), "unknown CPU")
    memory = next((int(line.split()[1]) // 1024 for line in peers_proc._read("/proc/meminfo").splitlines()
                   if line.startswith("MemTotal:")), 0)
    return f"{os.cpu_count()} cores ({model}), {memory / 1024:.1f} GB RAM, Linux {os.uname().release}, " \
           f"Python {sys.version.split()[0]}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few requests at one concurrency")
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                        help=f"comma-separated, from {','.join(ALL_SYSTEMS)} (direct is always run)")
    parser.add_argument("--concurrency", type=int, nargs="+", help="instead of 1 16 64 (or 16 with --quick)")
    parser.add_argument("--seconds", type=float, help="wall-time bound of one cell (default 15, --quick 5)")
    parser.add_argument("--out", type=Path, help="report path (default docs/benchmarks.md; --quick: scratch)")
    parser.add_argument("--scratch", type=Path, default=ROOT / ".cache" / "peers")
    parser.add_argument("--base-port", type=int, default=18900, help="upstream port; systems use the next four")
    parser.add_argument("--cfr-bin", default=str(ROOT / ".venv" / "bin" / "cascadeflow"))
    parser.add_argument("--report-only", type=Path, help="render the report of an earlier results .jsonl")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    scratch: Path = args.scratch.resolve()
    out_md: Path = args.out or (scratch / "quick" / "benchmarks.md" if args.quick else ROOT / "docs" / "benchmarks.md")
    command = " ".join([".venv/bin/python benchmarks/peers.py", *map(shlex.quote, sys.argv[1:] if argv is None
                                                                      else argv)])
    if args.report_only:
        records = [json.loads(line) for line in args.report_only.read_text().splitlines() if line.strip()]
        meta = next(r for r in records if r.get("kind") == "meta")
        peers_report.write(records, meta, out_md)
        print(f"wrote {out_md}")
        return
    wanted = [name for name in ALL_SYSTEMS if name == "direct" or name in args.systems.split(",")]
    unknown = set(args.systems.split(",")) - set(ALL_SYSTEMS) - {""}
    if unknown:
        sys.exit(f"unknown systems: {', '.join(sorted(unknown))} (known: {', '.join(ALL_SYSTEMS)})")
    concurrency = args.concurrency or ([16] if args.quick else [c for c, _ in FULL_MATRIX])
    sizes = dict(FULL_MATRIX)
    matrix = tuple((c, 60 if args.quick else sizes.get(c, 60 * c)) for c in sorted(concurrency))
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    plan = Plan(matrix, args.seconds or (5.0 if args.quick else 15.0), 16 if args.quick else None, pin)
    if not pin:
        print("!! taskset or a second core is missing: nothing is pinned, ratios mean less", flush=True)
    envs = peers_env.prepare(scratch, set(wanted), args.base_port, args.base_port + 4)
    systems = build_systems(args, envs, scratch)
    results = scratch / "results" / time.strftime("%Y%m%d-%H%M%S.jsonl")
    results.parent.mkdir(parents=True, exist_ok=True)
    meta = {"kind": "meta", "command": command, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
            "quick": args.quick, "pinned": pin, "cell_seconds": plan.cell_seconds, "matrix": matrix,
            "problems": envs.problems}
    results.write_text(json.dumps(meta) + "\n")
    if not peers_proc.port_free(args.base_port):
        sys.exit(f"port {args.base_port} is in use: pick another with --base-port")
    began = time.monotonic()
    up = peers_proc.start([*map(str, [envs.harness_python, "-m", "uvicorn", "--app-dir", HERE]),
                           "peers_upstream:app", "--port", str(args.base_port), *UVICORN_FLAGS],
                          "0" if pin else None, scratch / "logs" / "upstream.log")
    try:
        peers_proc.wait_ready(args.base_port, "openai", "x", 30, up, time.monotonic())
        for name in wanted:
            if name in systems:
                run_system(systems[name], plan, scratch, envs, results)
            else:
                reason = f"skipped: {envs.problems.get(name, 'not available')}"
                print(f"!! {name} {reason}", flush=True)
                with results.open("a") as handle:
                    handle.write(json.dumps({"kind": "system", "system": name, "skipped": reason}) + "\n")
    finally:
        peers_proc.stop(up)
    with results.open("a") as handle:
        handle.write(json.dumps({"kind": "end", "elapsed_s": round(time.monotonic() - began)}) + "\n")
    records = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    peers_report.write(records, meta, out_md)
    print(f"results: {results}\nwrote {out_md} and {out_md.with_suffix('.png')}")


if __name__ == "__main__":
    main()
