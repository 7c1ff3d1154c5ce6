"""The report of `peers.py`: markdown tables (ratios to the floor and to each peer, the targets of the issue with
met or missed) and a PNG plot, from the records of one run. Pure functions but `write` and `plot`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

Record = dict[str, Any]
STREAMED_UPSTREAM = ("cfr-routed", "cfr-routed-long")
"""Modes whose upstream call is a stream whatever the client asked: the proxy always streams the draft (to cut it
when its client leaves and to price what it used). The fake upstream takes 20 ms longer to stream an answer than to
send it whole (10 chunks 2 ms apart), which a real model does not (it generates the same tokens either way), so these
modes' added latency is taken against a direct stream."""
ORDER = ("direct", "floor", "cfr-pass", "cfr-routed", "cfr-routed-long", "cfr-cache", "litellm", "ccr")
LABELS = {"direct": "direct (upstream)", "floor": "minimal aiohttp proxy (floor)", "cfr-pass": "ours, pass-through",
          "cfr-routed": "ours, routed (router + draft accepted)", "cfr-routed-long": "ours, routed, 2,000-char prompts",
          "cfr-cache": "ours, cache hit", "litellm": "LiteLLM proxy", "ccr": "claude-code-router"}
PEERS = (("floor", "floor"), ("litellm", "LiteLLM"), ("ccr", "CCR"))
MIN_ADDED_MS = 0.5  # a reference adding less than this makes a latency ratio meaningless


@dataclass(frozen=True)
class Run:
    """One run's records, indexed."""

    meta: Record
    cells: dict[tuple[str, str, bool, int], Record]
    systems: dict[str, Record]
    concurrency: tuple[int, ...]

    @classmethod
    def of(cls, records: list[Record], meta: Record) -> Run:
        cells = {(r["system"], r["api"], bool(r["stream"]), int(r["c"])): r for r in records if r.get("kind") == "cell"}
        systems = {r["system"]: r for r in records if r.get("kind") == "system"}
        if "cfr-routed" in systems:
            systems["cfr-routed-long"] = systems["cfr-routed"]
        return cls(meta, cells, systems, tuple(sorted({key[3] for key in cells})) or (1,))

    @property
    def low(self) -> int:
        return self.concurrency[0]

    @property
    def high(self) -> int:
        return self.concurrency[-1]

    def cell(self, system: str, api: str, stream: bool, c: int) -> Record | None:
        return self.cells.get((system, api, stream, c))

    def added(self, system: str, api: str, stream: bool, c: int, field: str = "p50") -> float | None:
        """Latency added against direct, same API, streaming mode and concurrency; for the routed modes against a
        direct stream (see STREAMED_UPSTREAM)."""
        base_stream = stream or system in STREAMED_UPSTREAM
        row, base = self.cell(system, api, stream, c), self.cell("direct", api, base_stream, c)
        if system == "direct" or row is None or base is None or row.get(field) is None or base.get(field) is None:
            return None
        value: float = row[field] - base[field]
        return value

    def value(self, system: str, api: str, stream: bool, c: int, field: str) -> float | None:
        row = self.cell(system, api, stream, c)
        return None if row is None else row.get(field)

    def rows(self) -> list[tuple[str, str]]:
        """(system, api) pairs measured, in display order."""
        return [(s, api) for s in ORDER for api in ("openai", "anthropic")
                if any(key[0] == s and key[1] == api for key in self.cells)]

    def label(self, system: str) -> str:
        version = self.systems.get(system, {}).get("version") or ""
        return f"{LABELS.get(system, system)} {version}".strip() if system in ("litellm", "ccr") else \
            LABELS.get(system, system)


def num(value: float | None, digits: int = 1, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:,.{digits}f}"


def ratio(value: float | None, reference: float | None, floor: float = 1e-9) -> float | None:
    """value / reference, None when either is missing or the reference is below `floor`."""
    if value is None or reference is None or reference < floor:
        return None
    return value / reference


def times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def mib(kib: float | None) -> float | None:
    return None if kib is None else kib / 1024


def summary_table(run: Run) -> list[str]:
    lat = [f"+p50 ms c={run.low}", f"+p99 ms c={run.low}"] + ([f"+p99 ms c={run.high}"] if run.high != run.low else [])
    thr = [f"req/s c={c}" for c in run.concurrency] + [f"stream req/s c={c}" for c in run.concurrency]
    head = ["system", "API", *lat, *thr, f"CPU ms/req c={run.high}"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, api in run.rows():
        cells = [num(run.added(system, api, False, run.low), sign=True),
                 num(run.added(system, api, False, run.low, "p99"), sign=True)]
        if run.high != run.low:
            cells.append(num(run.added(system, api, False, run.high, "p99"), sign=True))
        cells += [num(run.value(system, api, stream, c, "rps")) for stream in (False, True) for c in run.concurrency]
        cells.append(num(run.value(system, api, False, run.high, "cpu_ms_per_req"), 2))
        out.append(f"| {run.label(system)} | {api} | " + " | ".join(cells) + " |")
    return out


def footprint_table(run: Run) -> list[str]:
    out = ["| system | version | start-up to ready s | idle RSS MB | peak RSS MB | install MB | install | note |",
           "|---|---|---|---|---|---|---|---|"]
    for system in ORDER:
        info = run.systems.get(system)
        if info is None or system in ("direct", "cfr-routed-long"):
            continue
        install = info.get("install_bytes")
        note = info.get("skipped") or info.get("check") or ""
        out.append(f"| {run.label(system)} | {info.get('version') or '–'} | {num(info.get('ready_s'), 2)} | "
                   f"{num(mib(info.get('idle_rss_kb')), 0)} | {num(mib(info.get('peak_rss_kb')), 0)} | "
                   f"{num(None if install is None else install / 2**20, 0)} | {info.get('install_note') or ''} | "
                   f"{note} |")
    return out


def ratio_table(run: Run) -> list[str]:
    c, low = run.high, run.low
    head = ["system", "API"]
    for _, name in PEERS:
        head += [f"req/s ÷ {name}", f"stream req/s ÷ {name}", f"+p50 c={low} ÷ {name}"]
    head.append("CPU/req ÷ floor")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, api in run.rows():
        if system == "direct":
            continue
        cells = []
        for peer, _ in PEERS:
            for stream in (False, True):
                mine, theirs = run.value(system, api, stream, c, "rps"), run.value(peer, api, stream, c, "rps")
                cells.append(times(ratio(mine, theirs)))
            cells.append(times(ratio(run.added(system, api, False, low), run.added(peer, api, False, low),
                                     MIN_ADDED_MS)))
        cells.append(times(ratio(run.value(system, api, False, c, "cpu_ms_per_req"),
                                 run.value("floor", api, False, c, "cpu_ms_per_req"))))
        out.append(f"| {run.label(system)} | {api} | " + " | ".join(cells) + " |")
    return out


@dataclass(frozen=True)
class Target:
    """One target of the issue: a number measured on one system (`metric`: added p50, req/s, req/s ÷ floor, or a
    system-level field) and its bound."""

    text: str
    system: str
    metric: str
    bound: float
    at_most: bool
    unit: str
    api: str = "openai"
    stream: bool = False
    c: int = 1

    def measure(self, run: Run) -> float | None:
        if self.metric == "added_p50":
            return run.added(self.system, self.api, self.stream, self.c)
        if self.metric == "rps":
            return run.value(self.system, self.api, self.stream, self.c, "rps")
        if self.metric == "rps_vs_floor":
            return ratio(run.value(self.system, self.api, self.stream, self.c, "rps"),
                         run.value("floor", self.api, self.stream, self.c, "rps"))
        value = run.systems.get(self.system, {}).get(self.metric)
        return mib(value) if self.metric.endswith("_kb") else value


def _targets() -> list[Target]:
    targets = []
    for api in ("openai", "anthropic"):
        targets += [
            Target(f"routed, short prompt, {api}: ≤ 10 ms added at p50, c=1 (against a direct stream)",
                   "cfr-routed", "added_p50", 10.0, True,
                   "ms", api),
            Target(f"routed, short prompt, {api}: ≥ 300 req/s at c=64", "cfr-routed", "rps", 300.0, False, "req/s",
                   api, c=64),
            Target(f"routed, 2,000-char prompt, {api}: ≥ 50 req/s at c=64", "cfr-routed-long", "rps", 50.0, False,
                   "req/s", api, c=64),
            Target(f"cache hit, {api}: ≤ 2 ms added at p50, c=1", "cfr-cache", "added_p50", 2.0, True, "ms", api)]
        for stream, mode in ((False, "JSON"), (True, "streaming")):
            targets += [
                Target(f"pass-through, {api}, {mode}: ≥ 90% of the floor's req/s at c=64", "cfr-pass", "rps_vs_floor",
                       0.9, False, "× floor", api, stream, 64),
                Target(f"pass-through, {api}, {mode}: ≤ 1.5 ms added at p50, c=1", "cfr-pass", "added_p50", 1.5, True,
                       "ms", api, stream)]
    return targets + [
        Target("start-up to ready ≤ 3 s (cache and router on)", "cfr-cache", "ready_s", 3.0, True, "s"),
        Target("peak resident memory ≤ 300 MB (cache and router on)", "cfr-cache", "peak_rss_kb", 300.0, True, "MB")]


TARGETS = _targets()


def target_table(run: Run) -> list[str]:
    out = ["| target (issue 11) | measured | status |", "|---|---|---|"]
    for target in TARGETS:
        value = target.measure(run)
        if value is None:
            status = "not measured"
        else:
            met = value <= target.bound if target.at_most else value >= target.bound
            status = "met" if met else "**missed**"
        out.append(f"| {target.text} | {num(value, 2)} {target.unit if value is not None else ''} | {status} |")
    return out


def cells_table(run: Run) -> list[str]:
    out = ["| system | API | stream | c | ok/err | req/s | p50 | p99 | +p50 | +p99 | TTFB p50 | CPU ms/req | "
           "peak RSS MB |", "|" + "---|" * 13]
    for system, api in run.rows():
        for stream in (False, True):
            for c in run.concurrency:
                r = run.cell(system, api, stream, c)
                if r is None:
                    continue
                cut = " (time-bound)" if r.get("truncated") else ""
                out.append(
                    f"| {run.label(system)} | {api} | {'yes' if stream else 'no'} | {c} | {r['ok']}/{r['errors']}{cut} "
                    f"| {num(r.get('rps'))} | {num(r.get('p50'))} | {num(r.get('p99'))} | "
                    f"{num(run.added(system, api, stream, c), sign=True)} | "
                    f"{num(run.added(system, api, stream, c, 'p99'), sign=True)} | {num(r.get('ttfb_p50'))} | "
                    f"{num(r.get('cpu_ms_per_req'), 3)} | {num(mib(r.get('peak_rss_kb')), 0)} |")
    return out


def render(records: list[Record], meta: Record, plot_name: str | None = None) -> str:
    """The whole markdown report."""
    run = Run.of(records, meta)
    elapsed = next((r["elapsed_s"] for r in records if r.get("kind") == "end"), None)
    took = f" (the run took {elapsed / 60:.0f} min)" if elapsed is not None else ""
    title = "# Benchmarks: this proxy against the floor and its peers"
    smoke = ["", "> **Smoke run (`--quick`)**: few requests at one concurrency; these numbers prove the harness "
                 "works, they measure nothing.", ""] if meta.get("quick") else [""]
    problems = [f"- {name}: {text}" for name, text in (meta.get("problems") or {}).items()]
    skipped = [f"- {s}: {info['skipped']}" for s, info in run.systems.items() if info.get("skipped")]
    errors = [f"- {run.label(r['system'])} {r['api']} stream={r['stream']} c={r['c']}: {r['errors']} errors, "
              f"e.g. `{(r.get('error_samples') or [''])[0][:160]}`" for r in run.cells.values() if r.get("errors")]
    lines = [
        title, *smoke,
        f"Produced by `{meta.get('command', '')}` on {meta.get('date', '')}{took}; machine: {meta.get('machine', '')}. "
        + ("The system under test ran pinned to CPU 1, the upstream and the load client to CPU 0, one system at a "
           "time." if meta.get("pinned") else "Nothing was pinned (taskset or a second core missing)."),
        "",
        "Every system stands in front of the same fake upstream on loopback (20 ms before it answers; streams are "
        "10 chunks 2 ms apart). A request counts only with status 200 and the upstream's text (streams: the last "
        "token and the end marker). `+p50`/`+p99` = latency added against direct at the same API path, streaming "
        "mode and concurrency; for the routed modes against a direct stream, because the proxy always streams the "
        "draft and this upstream takes 20 ms longer to stream an answer than to send it whole (a real model does "
        "not). Each cell is bounded by a request count and "
        f"{num(meta.get('cell_seconds'), 0)} s of wall time; req/s is what completed. CPU ms/req = the system's "
        "user + system CPU time over the cell (warm-up included) per request. Peak RSS = VmHWM summed over the "
        "system's processes. Install = the files of the system's own distribution and all it requires (Python), or "
        "its node_modules (Node). Routed mode sends a different prompt with every request; the cache-hit mode the "
        "same one.",
        "", "## Summary", "", *summary_table(run),
        "", "## Ratios", "",
        f"Throughput ratios at c={run.high} (system ÷ reference, same API path; > 1 is faster); added-latency ratios "
        f"at c={run.low} (system ÷ reference; < 1 adds less; – where the reference adds under {MIN_ADDED_MS} ms).",
        "", *ratio_table(run),
        "", "## Targets of issue 11", "",
        "Added latency at c=1 and throughput at c=64, JSON unless noted; start-up and memory of the cache-hit mode "
        "(cache, encoder and router loaded). A target is `not measured` when the run had no such cell (`--quick` "
        "measures one concurrency).", "", *target_table(run),
        "", "## Start-up, memory, install", "", *footprint_table(run),
    ]
    if plot_name:
        lines += ["", f"![added latency, throughput, CPU per request and memory per system]({plot_name})"]
    lines += ["", "## Every cell", "", *cells_table(run)]
    if problems or skipped or errors:
        lines += ["", "## Problems", "", *problems, *skipped, *errors]
    return "\n".join(lines) + "\n"


def plot(records: list[Record], meta: Record, path: Path) -> None:
    """Four panels: added p50 (JSON, lowest c), req/s (highest c), CPU ms/req, peak RSS and install size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Run.of(records, meta)
    rows = run.rows()
    names = [f"{run.label(s)} ({api})" for s, api in rows]
    figure, axes = plt.subplots(2, 2, figsize=(16, max(6.0, 0.42 * len(rows) + 3)))
    y = list(range(len(rows)))
    panels = ((axes[0][0], f"added p50 ms, JSON, c={run.low} (symlog)", "symlog", [("JSON", [
                  run.added(s, a, False, run.low) for s, a in rows])]),
              (axes[0][1], f"req/s at c={run.high} (log)", "log", [
                  ("JSON", [run.value(s, a, False, run.high, "rps") for s, a in rows]),
                  ("streaming", [run.value(s, a, True, run.high, "rps") for s, a in rows])]),
              (axes[1][0], f"CPU ms per request, JSON, c={run.high} (log)", "log", [("JSON", [
                  run.value(s, a, False, run.high, "cpu_ms_per_req") for s, a in rows])]))
    for axis, title, scale, series in panels:
        height = 0.8 / len(series)
        for index, (name, values) in enumerate(series):
            places = [v + index * height for v in y]
            axis.barh(places, [v or 0.0 for v in values], height, label=name)
            for place, value in zip(places, values, strict=True):
                if value is not None:
                    axis.annotate(f"{value:,.1f}", (value, place), fontsize=7, va="center", xytext=(2, 0),
                                  textcoords="offset points")
        axis.set_xscale(scale, **({"linthresh": 1.0} if scale == "symlog" else {}))
        axis.set_title(title)
        axis.set_yticks([v + 0.4 - height / 2 for v in y], names, fontsize=8)
        axis.invert_yaxis()
        if len(series) > 1:
            axis.legend(fontsize=8)
    systems = [s for s in ORDER if s in run.systems and s not in ("direct", "cfr-routed-long")]
    memory = axes[1][1]
    for index, (name, values) in enumerate((
            ("peak RSS MB", [mib(run.systems[s].get("peak_rss_kb")) or 0.0 for s in systems]),
            ("install MB", [(run.systems[s].get("install_bytes") or 0) / 2**20 for s in systems]))):
        memory.barh([v + index * 0.4 for v in range(len(systems))], values, 0.4, label=name)
    memory.set_yticks([v + 0.2 for v in range(len(systems))], [run.label(s) for s in systems], fontsize=8)
    memory.invert_yaxis()
    memory.set_title("memory and install size (MB)")
    memory.legend(fontsize=8)
    figure.suptitle(("SMOKE RUN (--quick), not a measurement: " if meta.get("quick") else "")
                    + f"{meta.get('date', '')}, {str(meta.get('machine', '')).split(',')[0]}")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write(records: list[Record], meta: Record, markdown: Path) -> None:
    """The report at `markdown` and its plot beside it (same name, .png)."""
    markdown.parent.mkdir(parents=True, exist_ok=True)
    image = markdown.with_suffix(".png")
    plot(records, meta, image)
    markdown.write_text(render(records, meta, image.name))
