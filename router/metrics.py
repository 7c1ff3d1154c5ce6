"""Process metrics on prometheus-client: one table declares every metric; `Metrics` keeps the call API.

A call site names a metric and passes its labels as keywords (`inc`, `advance`, `observe`, `gauge`, `timer`); the
table `METRICS` says its type, help text and label names. An undeclared name, a name of another type or labels other
than the declared ones are logged once and dropped: metrics never fail a request. Each `Metrics` owns its
registry (there is no global one), so several proxies may run in one process (the tests do).

Several uvicorn workers (`cascadeflow proxy start --workers N`): `multiprocess_directory()` sets
PROMETHEUS_MULTIPROC_DIR before the workers start, prometheus-client then keeps each worker's values in files
there, and every scrape aggregates them with its multiprocess collector, built per scrape. Gauges are summed over
the live workers; a worker drops its gauges at shutdown (`close`).

No label may carry a key, a user's text or another unbounded value: labels are route, endpoint, dialect, status,
kinds and outcomes, and model names from the configuration (any other model is counted as `other`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.metrics import MetricWrapperBase

logger = logging.getLogger("router.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# an upstream call: from a few ms (a cache hit, a tiny local model) to minutes (long generations)
LLM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# in-process work (embedding, index search, a classifier): sub-millisecond to seconds under load
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """A metric's type, help text and label names (in the order they are shown: alphabetical)."""

    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = LLM_BUCKETS


def _counter(help_text: str, *labels: str) -> MetricSpec:
    return MetricSpec("counter", help_text, labels)


def _histogram(help_text: str, *labels: str, buckets: tuple[float, ...] = LLM_BUCKETS) -> MetricSpec:
    return MetricSpec("histogram", help_text, labels, buckets)


METRICS: Mapping[str, MetricSpec] = MappingProxyType({
    # requests and routing
    "cascadeflow_requests_total": _counter(
        "Client requests by dialect, endpoint, HTTP status and route (cache, pass_through, draft, escalated, strong, "
        "failed, rejected: refused before routing, by a key, the body, a rate limit or a budget).",
        "dialect", "endpoint", "route", "status"),
    "cascadeflow_drafts_total": _counter(
        "Drafts by outcome (accepted, rejected, failed); acceptance rate = accepted / all.", "outcome"),
    "cascadeflow_cache_lookups_total": _counter(
        "Semantic cache lookups by result (hit, miss, skipped, error).", "result"),
    "cascadeflow_upstream_errors_total": _counter(
        "Upstream errors that failed a request before its answer began, by error kind and HTTP status.",
        "kind", "status"),
    "cascadeflow_upstream_call_errors_total": _counter(
        "Failed upstream calls (every attempt, retried or not, and breaks after the first byte), by provider and "
        "reason (an HTTP status, connection, connect_timeout, timeout, malformed, circuit_open).",
        "provider", "reason"),
    "cascadeflow_upstream_retries_total": _counter(
        "Upstream calls retried, by provider and the reason the attempt before failed.", "provider", "reason"),
    "cascadeflow_upstream_circuit_transitions_total": _counter(
        "Circuit breaker changes by provider and the state entered (open, half_open, closed).", "provider", "state"),
    "cascadeflow_fallbacks_total": _counter(
        "Requests handed to a fallback model after the model before it failed, by the fallback model.", "model"),
    "cascadeflow_config_reloads_total": _counter(
        "Config file reloads by result (applied, unchanged, rejected).", "result"),
    "cascadeflow_dependency_errors_total": _counter(
        "Dependency failures that degraded service (cache, encoder, outcome_log, router, verifier) or that served "
        "or refused a request unchecked against the shared state: rate_limiter and budgets (each Redis call that "
        "failed or was skipped while Redis is down), key_store (each failed read).", "dependency"),
    # spend
    "cascadeflow_cost_usd_total": _counter(
        "Spend in USD by kind: actual, original (the strong model alone), wasted_draft, and background spend "
        "(exploration, grading).", "kind"),
    "cascadeflow_tokens_total": _counter("Tokens by kind (input, output) and tier (served, draft_wasted).",
                                         "kind", "tier"),
    "cascadeflow_model_cost_usd_total": _counter(
        "Request spend in USD by model (a configured name, else other) and kind: actual (served answers and wasted "
        "drafts, on the model that answered) and original (the strong model alone, on the model it would have "
        "been).", "kind", "model"),
    "cascadeflow_model_tokens_total": _counter(
        "Request tokens by model (a configured name, else other) and kind (input, output): served answers and "
        "wasted drafts.", "kind", "model"),
    "cascadeflow_rate_limit_refusals_total": _counter(
        "Requests refused with 429 by the proxy's own rate limits, by the limit that refused (requests, tokens, "
        "concurrent, too_large: one request over a whole minute of tokens) and the caller's tier (none without one).",
        "reason", "tier"),
    "cascadeflow_budget_refusals_total": _counter(
        "Requests refused by a USD budget, by period (daily, monthly), reason (exhausted; held: the rest is held by "
        "requests in flight), scope kind (key, user, tier) and the caller's tier (none without one).",
        "period", "reason", "scope", "tier"),
    "cascadeflow_body_refusals_total": _counter(
        "Requests refused while their body was read, by reason: too_large (413: over server.max_body_bytes, or alone "
        "over server.max_inflight_body_bytes), in_flight (429: the bodies held would pass "
        "server.max_inflight_body_bytes).", "reason"),
    "cascadeflow_spend_records_total": _counter(
        "Spend ledger rows by result (written, spooled while the database is down, dropped).", "result"),
    # learning
    "cascadeflow_router_predictions_total": _counter(
        "Learned router predictions, by whether the draft was skipped.", "skip"),
    "cascadeflow_router_predict_seconds_total": _counter("Time spent in learned router predictions."),
    "cascadeflow_verifier_predict_seconds_total": _counter("Time spent in trained verifier predictions."),
    "cascadeflow_router_artifact_loads_total": _counter("Router artifacts loaded (start-up and hot reloads)."),
    "cascadeflow_router_artifact_refusals_total": _counter("Router artifacts refused (mismatched or corrupt)."),
    "cascadeflow_verifier_artifact_loads_total": _counter("Verifier artifacts loaded (start-up and hot reloads)."),
    "cascadeflow_verifier_artifact_refusals_total": _counter("Verifier artifacts refused (mismatched or corrupt)."),
    "cascadeflow_outcomes_total": _counter(
        "Outcome records by result at the log's queue (queued; dropped: the queue was full or stopped).", "result"),
    "cascadeflow_outcome_log_records_total": _counter(
        "Outcome log records by what the writer did with them (written, spooled while the store is down, rejected "
        "by the store and set aside, dropped: lost, refusals at the queue included); read from the log at each "
        "scrape.", "result"),
    "cascadeflow_labels_total": _counter(
        "Labels of live traffic by how they were obtained and their value.", "label", "source"),
    "cascadeflow_explorations_total": _counter(
        "Background calls made to label requests, by tier and result.", "result", "tier"),
    # state, sampled at each scrape (and every few seconds in each worker)
    "cascadeflow_cache_entries": MetricSpec("gauge", "Entries in the semantic cache (summed over workers)."),
    "cascadeflow_outcome_log_queue_depth": MetricSpec(
        "gauge", "Outcome records waiting in the log's write queue (summed over workers)."),
    "cascadeflow_inflight_body_bytes": MetricSpec(
        "gauge", "Bytes of request bodies held by the requests in flight (summed over workers)."),
    "cascadeflow_upstream_circuit_open": MetricSpec(
        "gauge", "1 while a provider's circuit is open and its calls are refused (summed over workers).",
        ("provider",)),
    # latencies
    "cascadeflow_request_duration_seconds": _histogram(
        "Whole requests, arrival to the last byte of the answer (or the failure).",
        "dialect", "endpoint", "route", "status"),
    "cascadeflow_stream_first_byte_seconds": _histogram(
        "Streamed answers: arrival to the first byte sent to the client.", "dialect", "endpoint", "route"),
    "cascadeflow_draft_duration_seconds": _histogram(
        "Draft calls (buffered to completion), by draft model and outcome.", "model", "outcome"),
    "cascadeflow_strong_duration_seconds": _histogram(
        "Strong model answers of cascade rules (the request's time after its draft), by model and route.",
        "model", "route"),
    "cascadeflow_embedding_duration_seconds": _histogram(
        "Embedding a request, by the step that needed it (cache, predict).", "step", buckets=FAST_BUCKETS),
    "cascadeflow_cache_lookup_duration_seconds": _histogram(
        "Semantic cache searches for a similar entry.", buckets=FAST_BUCKETS),
    "cascadeflow_router_predict_duration_seconds": _histogram(
        "Learned router (classifier) predictions.", buckets=FAST_BUCKETS),
    "cascadeflow_verifier_predict_duration_seconds": _histogram(
        "Trained verifier predictions.", buckets=FAST_BUCKETS),
})
"""Every metric of the proxy: name → type, help, labels."""

M = TypeVar("M", bound=MetricWrapperBase)


def shared_directory() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR when this process's values live there (prometheus-client reads the variable once,
    when it is imported); None for values kept in memory."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return None
    if not getattr(values.ValueClass, "_multiprocess", False):
        logger.warning("%s was set after prometheus_client was imported: this process's metrics stay in memory",
                       MULTIPROC_ENV)
        return None
    return directory


class Metrics:
    """The metrics of one process, in a registry of its own."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        """`multiprocess_dir`: scrape the values every process wrote there (default: PROMETHEUS_MULTIPROC_DIR,
        when this process writes its own values there too)."""
        self.multiprocess_dir = multiprocess_dir if multiprocess_dir is not None else shared_directory()
        self._registry = CollectorRegistry(auto_describe=True)
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._histograms: dict[str, Histogram] = {}
        self._children: dict[tuple[str, tuple[tuple[str, str], ...]], MetricWrapperBase] = {}
        self._dropped: set[str] = set()
        self._totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for name, spec in METRICS.items():
            if spec.kind == "counter":
                self._counters[name] = Counter(name, spec.help, spec.labels, registry=self._registry)
            elif spec.kind == "gauge":
                self._gauges[name] = Gauge(name, spec.help, spec.labels, registry=self._registry,
                                           multiprocess_mode="livesum")
            else:
                self._histograms[name] = Histogram(name, spec.help, spec.labels, registry=self._registry,
                                                   buckets=spec.buckets)

    @property
    def shared(self) -> bool:
        """Whether the scrape aggregates several processes."""
        return self.multiprocess_dir is not None

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        if amount < 0:
            self._drop(name, f"a counter only grows ({amount} was added)")
            return
        counter = self._child(self._counters, name, labels)
        if counter is not None:
            counter.inc(amount)

    def observe(self, name: str, amount: float, **labels: str) -> None:
        """Observe a value (seconds, for the latencies) in a histogram."""
        histogram = self._child(self._histograms, name, labels)
        if histogram is not None:
            histogram.observe(amount)

    def advance(self, name: str, total: float, **labels: str) -> None:
        """Bring a counter up to a running total that a dependency keeps itself (read at each scrape); a total
        that went down (the dependency started over) is taken as the new base."""
        counter = self._child(self._counters, name, labels)
        if counter is None:
            return
        key = (name, tuple(sorted(labels.items())))
        seen = self._totals.get(key, 0.0)
        if total > seen:
            counter.inc(total - seen)
        self._totals[key] = total

    def gauge(self, name: str, amount: float, **labels: str) -> None:
        """Set a gauge."""
        gauge = self._child(self._gauges, name, labels)
        if gauge is not None:
            gauge.set(amount)

    @contextmanager
    def timer(self, name: str, **labels: str) -> Iterator[None]:
        """Observe the seconds the block took in a histogram (also when it raised)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe(name, time.perf_counter() - started, **labels)

    def value(self, name: str, **labels: str) -> float:
        """A sample's value in this process, 0 when never set: a counter by its name (`..._total`), a histogram's
        `..._count` or `..._sum`, a gauge."""
        found = self._registry.get_sample_value(name, labels)
        return found if found is not None else 0.0

    def exposition(self) -> bytes:
        """The Prometheus exposition text: this process's metrics, or every worker's when they are shared."""
        if self.multiprocess_dir is None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def render(self) -> str:
        """The exposition text as a string."""
        return self.exposition().decode()

    def close(self) -> None:
        """At a worker's shutdown: its gauges leave the shared sums (its counters stay counted)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def _child(self, family: Mapping[str, M], name: str, labels: Mapping[str, str]) -> M | None:
        """The labelled metric; None (logged once) for an undeclared name or other labels. Children are kept by
        their labels: prometheus-client's own lookup (validation and a lock) costs several times the update."""
        metric = family.get(name)
        if metric is None:
            spec = METRICS.get(name)
            self._drop(name, f"it is declared as a {spec.kind}" if spec else "it is not declared in METRICS")
            return None
        key = (name, tuple(labels.items()))  # a call site passes its labels in one order
        child = self._children.get(key)
        if child is not None:
            return cast(M, child)
        declared = METRICS[name].labels
        if set(labels) != set(declared):
            self._drop(name, f"labels {sorted(labels)} were given, {list(declared)} are declared")
            return None
        child = metric.labels(**{label: str(value) for label, value in labels.items()}) if declared else metric
        self._children[key] = child
        return child

    def _drop(self, name: str, why: str) -> None:
        if name not in self._dropped:
            self._dropped.add(name)
            logger.warning("metric %s dropped: %s (logged once)", name, why)


@contextmanager
def multiprocess_directory() -> Iterator[str]:
    """A fresh PROMETHEUS_MULTIPROC_DIR for the workers about to start, removed when they have stopped. One set
    already in the environment is used as it is (and kept)."""
    existing = os.environ.get(MULTIPROC_ENV)
    if existing:
        yield existing
        return
    directory = tempfile.mkdtemp(prefix="cascadeflow-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
