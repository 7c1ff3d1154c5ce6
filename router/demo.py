"""`cascadeflow demo`: the proxy and a replay upstream on loopback, real answers from labelled data, the bill."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import openai
from tqdm import tqdm

from router.app import create_app
from router.replay.dataset import DatasetSource, LabelledRow, load_rows, sample_rows
from router.replay.runner import BackgroundServer
from router.replay.server import create_upstream_app
from router.settings import Settings

REQUEST_MODEL = "gpt-4-1106-preview"
DRAFT_MODEL = "mixtral-8x7b-instruct"
WHAT_IF_THRESHOLDS = (0.0, 0.8, 0.9, 0.95, 0.97, 0.99, 1.01)


@dataclass(frozen=True)
class Served:
    """One request of the demo: its labels and what the proxy reported."""

    row: LabelledRow
    accepted: bool
    skipped: bool
    confidence: float
    draft_cost: float
    strong_only_cost: float


@dataclass(frozen=True)
class DemoReport:
    """Everything the demo measured."""

    threshold: float
    served: tuple[Served, ...]
    learned: bool = False


def demo_settings(upstream_url: str, threshold: float, learned: bool = False) -> Settings:
    """A proxy whose one cascade rule serves GPT-4 requests with a Mixtral draft first (and, if `learned`, the
    shipped router artifact skips the draft for requests it expects the draft to fail)."""
    return Settings(
        providers={"openai": {"kind": "openai", "base_url": upstream_url + "/v1", "api_key": "demo"},
                   "anthropic": {"kind": "anthropic", "base_url": upstream_url, "api_key": "demo"}},
        models=[{"match": "mixtral-*", "provider": "openai"}, {"match": "gpt-4-*", "provider": "openai"}],
        cascade_rules=[{"request_model": REQUEST_MODEL, "draft_model": DRAFT_MODEL, "verifier_model": REQUEST_MODEL,
                        "quality_threshold": threshold}],
        embedding={"enabled": learned}, cache={"enabled": False}, outcome_log={"enabled": False},
        learned_router={"enabled": learned, "required": learned},  # models_dir unset: the shipped artifact
    )


def _messages(row: LabelledRow) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for index, turn in enumerate(row.turns):
        if index:
            messages.append({"role": "assistant", "content": "(earlier answer)"})
        messages.append({"role": "user", "content": turn})
    return messages


def _send(client: openai.OpenAI, row: LabelledRow) -> Served:
    raw = client.chat.completions.with_raw_response.create(model=REQUEST_MODEL, messages=_messages(row),  # type: ignore[arg-type]
                                                           max_tokens=1024)
    headers = raw.headers
    accepted = headers.get("x-cascadeflow-draft-accepted") == "true"
    skipped = headers.get("x-cascadeflow-draft-accepted") == "skipped"
    actual = float(headers.get("x-cascadeflow-actual-cost", 0))
    original = float(headers.get("x-cascadeflow-original-cost", 0))
    wasted = float(headers.get("x-cascadeflow-draft-cost-wasted", 0))
    return Served(row, accepted, skipped, float(headers.get("x-cascadeflow-confidence", 0)),
                  actual if accepted else wasted, original)


def run_demo(*, limit_per_source: int = 60, threshold: float = 0.95, concurrency: int = 8, latency_ms: float = 0.0,
             sources: Sequence[str] = ("gsm8k", "mt_bench"), data: Path | None = None,
             progress: bool = True, learned: bool = False) -> DemoReport:
    """Send sampled prompts through the proxy with the official SDK and collect the cascade's decisions.

    With `learned`, only prompts of the held-out test split are sent (the shipped artifact never saw them)."""
    rows = load_rows(data)
    if learned:
        from training.dataset import split_of

        rows = [row for row in rows if split_of(row.id) == "test"]
    rows = sample_rows(rows, sources, limit_per_source)
    upstream_app = create_upstream_app(DatasetSource(rows), latency_s=latency_ms / 1000.0)
    with BackgroundServer(upstream_app) as upstream, BackgroundServer(
            create_app(demo_settings(upstream.url, threshold, learned))) as proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="demo", max_retries=0)
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = pool.map(lambda row: _send(client, row), rows)
            served = tuple(tqdm(results, total=len(rows), desc="demo", unit="req", disable=not progress))
    return DemoReport(threshold, served, learned)


def _quality(items: Sequence[Served], accept: Sequence[bool]) -> float:
    """Served quality over strong quality; across sources (0/1 and 1-10 scales) the request-weighted mean."""
    sources = {item.row.source for item in items}
    if len(sources) > 1:
        parts = [[(item, ok) for item, ok in zip(items, accept, strict=True) if item.row.source == source]
                 for source in sorted(sources)]
        return sum(len(part) * _quality([i for i, _ in part], [ok for _, ok in part]) for part in parts) / len(items)
    strong = statistics.fmean(item.row.strong_score for item in items)
    pairs = zip(items, accept, strict=True)
    kept = statistics.fmean(item.row.draft_score if ok else item.row.strong_score for item, ok in pairs)
    return kept / strong if strong else 1.0


def _cost(items: Sequence[Served], accept: Sequence[bool]) -> float:
    return sum(item.draft_cost + (0.0 if ok else item.strong_only_cost) for item, ok in zip(items, accept, strict=True))


def format_report(report: DemoReport) -> str:
    """The demo's tables: the run at its threshold, then what other thresholds would have done."""
    groups = {"overall": list(report.served)}
    for item in report.served:
        groups.setdefault(item.row.source, []).append(item)
    router = " with the learned router (held-out test prompts)" if report.learned else ""
    lines = [f"Cascade {DRAFT_MODEL} -> {REQUEST_MODEL}{router}, threshold {report.threshold:g} "
             "(replayed answers of the RouteLLM data; costs from genai-prices, tokens estimated from text length)",
             "",
             f"{'source':<10}{'requests':>9}{'skipped':>9}{'accepted':>10}{'always-strong $':>17}{'cascade $':>11}"
             f"{'saved':>8}{'quality kept':>14}{'always-draft q.':>17}"]
    for name, items in groups.items():
        accepted = [item.accepted for item in items]
        strong_cost = sum(item.strong_only_cost for item in items)
        cost = _cost(items, accepted)
        saved = 1 - cost / strong_cost if strong_cost else 0.0
        skipped = sum(item.skipped for item in items) / len(items)
        lines.append(f"{name:<10}{len(items):>9}{skipped:>9.1%}{sum(accepted) / len(items):>10.1%}"
                     f"{strong_cost:>17.4f}{cost:>11.4f}{saved:>8.1%}{_quality(items, accepted):>14.1%}"
                     f"{_quality(items, [True] * len(items)):>17.1%}")
    lines += ["", "What other thresholds would have done (same confidences; skipped requests stay skipped):",
              f"{'threshold':<10}" + "".join(f"{name + ' acc/saved/quality':>34}" for name in groups)]
    for threshold in WHAT_IF_THRESHOLDS:
        cells = []
        for items in groups.values():
            accept = [not item.skipped and item.confidence >= threshold for item in items]
            strong_cost = sum(item.strong_only_cost for item in items)
            saved = 1 - _cost(items, accept) / strong_cost if strong_cost else 0.0
            cells.append(f"{sum(accept) / len(items):>12.1%} {saved:>9.1%} {_quality(items, accept):>10.1%}")
        lines.append(f"{threshold:<10g}" + "".join(f"{cell:>34}" for cell in cells))
    return "\n".join(lines)
