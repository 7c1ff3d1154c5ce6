"""The load test's summary and memory plot (benchmarks/load_replicas.py): latency percentiles, each replica's RSS
first/last/max and the least-squares slope of its second half, drawn with matplotlib or, without it, as an SVG
written by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.faults import table

if TYPE_CHECKING:
    from benchmarks.load_replicas import Load

MB = 1024 * 1024
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (`share` in 0..1) of some values (nan for none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def slope_mb_per_min(samples: Sequence[tuple[float, int]], since_s: float) -> float:
    """The least-squares slope of RSS (MB a minute) over the samples taken from `since_s` on (nan below two)."""
    points = [(at / 60.0, rss / MB) for at, rss in samples if at >= since_s]
    if len(points) < 2:
        return math.nan
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else math.nan


def report(load: Load) -> str:
    """The summary table, one RSS row per replica, and PASS or FAIL."""
    errors = ", ".join(f"{kind}: {count}" for kind, count in load.errors.most_common()) or "none"
    rows: list[tuple[str, object]] = [
        ("balancer", load.balancer),
        ("requests sent", f"{load.sent} in {load.elapsed_s:g} s ({load.sent / max(load.elapsed_s, 1e-9) * 60:.0f} "
                          "a minute offered)"),
        ("whole answers (ok)", load.categories["ok"]),
        ("errors by kind", errors),
        ("statuses", ", ".join(f"{status}: {count}" for status, count in sorted(load.statuses.items()))),
        ("latency p50 / p99 / max (ms)", " / ".join(f"{value * 1000:.0f}" for value in (
            percentile(load.latencies_s, 0.5), percentile(load.latencies_s, 0.99),
            max(load.latencies_s, default=math.nan)))),
        ("spend ledger (PostgreSQL)", ", ".join(f"{name}: {count}" for name, count in load.ledger.items())),
    ]
    for replica in load.replicas:
        rss = [value / MB for _, value in replica.rss] or [math.nan]
        slope = slope_mb_per_min(replica.rss, load.elapsed_s / 2)
        rows.append((f"{replica.name}: served", f"{replica.served:g} requests"))
        rows.append((f"{replica.name}: RSS first / last / max (MB)", f"{rss[0]:.1f} / {rss[-1]:.1f} / {max(rss):.1f}"))
        rows.append((f"{replica.name}: RSS slope, 2nd half (MB/min)", f"{slope:+.3f} ({len(replica.rss)} samples)"))
        rows.append((f"{replica.name}: stop after SIGTERM", f"{replica.stop.get('stop s', -1)} s, "
                                                           f"{'graceful' if replica.graceful else 'NOT graceful'}"))
    title = (f"{len(load.replicas)} replicas, {load.seconds / 60:g} min at {load.rate_per_min:g} requests a minute"
             f" ({'PASS' if load.passed else 'FAIL'})")
    return table(title, ["measure", "value"], rows) + "\n\n" + ("PASS" if load.passed else "FAIL")


def plot_memory(load: Load, path: Path) -> Path:
    """Each replica's RSS over the run (and its second-half fit) as an image at `path` (.png or .svg); an SVG by
    hand when matplotlib is not installed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    title = f"RSS of {len(load.replicas)} replicas, {load.rate_per_min:g} requests/min for {load.seconds / 60:g} min"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        path = path.with_suffix(".svg")
        path.write_text(svg(load, title))
        return path
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for replica, colour in zip(load.replicas, COLOURS * 4, strict=False):
        minutes = [at / 60 for at, _ in replica.rss]
        axes.plot(minutes, [rss / MB for _, rss in replica.rss], color=colour, label=replica.name)
        slope = slope_mb_per_min(replica.rss, load.elapsed_s / 2)
        tail = [(at / 60, rss / MB) for at, rss in replica.rss if at >= load.elapsed_s / 2]
        if tail and not math.isnan(slope):
            mean_x, mean_y = sum(x for x, _ in tail) / len(tail), sum(y for _, y in tail) / len(tail)
            ends = [tail[0][0], tail[-1][0]]
            axes.plot(ends, [mean_y + slope * (x - mean_x) for x in ends], color=colour, linestyle="--",
                      label=f"{replica.name} fit, 2nd half: {slope:+.3f} MB/min")
    axes.set_xlabel("minutes since the load began")
    axes.set_ylabel("RSS (MB)")
    axes.set_ylim(bottom=0)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def svg(load: Load, title: str, width: int = 800, height: int = 450) -> str:
    """The RSS lines as a plain SVG (no dependency)."""
    left, right, top, bottom = 60, 20, 40, 40
    samples = [point for replica in load.replicas for point in replica.rss] or [(0.0, 0)]
    span_s = max(max(at for at, _ in samples), 1.0)
    top_mb = max(max(rss for _, rss in samples) / MB * 1.1, 1.0)

    def x(at: float) -> float:
        return left + at / span_s * (width - left - right)

    def y(mb: float) -> float:
        return height - bottom - mb / top_mb * (height - top - bottom)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{width / 2}" y="20" text-anchor="middle">{title}</text>',
             f'<line x1="{left}" y1="{y(0)}" x2="{width - right}" y2="{y(0)}" stroke="black"/>',
             f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{top}" stroke="black"/>',
             f'<text x="{left - 5}" y="{top + 4}" text-anchor="end">{top_mb:.0f} MB</text>',
             f'<text x="{width - right}" y="{height - 10}" text-anchor="end">{span_s / 60:.1f} min</text>']
    for index, (replica, colour) in enumerate(zip(load.replicas, COLOURS * 4, strict=False)):
        points = " ".join(f"{x(at):.1f},{y(rss / MB):.1f}" for at, rss in replica.rss)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        parts.append(f'<text x="{left + 10}" y="{top + 16 * (index + 1)}" fill="{colour}">{replica.name}</text>')
    return "\n".join([*parts, "</svg>"]) + "\n"
