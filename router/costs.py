"""Token usage and USD cost of draft/strong calls, priced offline with genai-prices' bundled data.

Each ``PriceBook`` builds its own ``DataSnapshot`` from the price table shipped inside the installed
``genai-prices`` wheel. It never uses ``genai_prices.calc_price`` (which reads a process-wide snapshot that
``UpdatePrices`` may replace with prices downloaded from GitHub) and never starts ``UpdatePrices``, so
costs come only from that bundled table and never from the network. Importing ``genai_prices`` loads
``httpx2`` but opens no socket and starts no thread.

``TokenUsage.input_tokens`` is the **total** prompt size, cache reads and writes included (as OpenAI
and genai-prices count it). ``cache_read_tokens`` and ``cache_write_tokens`` are the parts of it that
were read from or written to the prompt cache.

Names as genai-prices 0.2.3 resolves them; standard prices (not batch/priority), USD per million tokens:
input / output / cache read / cache write (``-`` = billed at the input price). All are flat (no tiers or dates).

    claude-opus-4-8                              anthropic/claude-opus-4-8     5 / 25 / 0.50 / 6.25
    claude-sonnet-5                              anthropic/claude-sonnet-5     2 / 10 / 0.20 / 2.50
    claude-haiku-4-5 (and -20251001)             anthropic/claude-haiku-4-5    1 / 5 / 0.10 / 1.25
    gpt-4o-mini                                  openai/gpt-4o-mini            0.15 / 0.60 / 0.075 / -
    gpt-4-1106-preview                           openai/gpt-4-turbo            10 / 30 / - / -
    mixtral-8x7b-instruct                        mistral/mixtral-8x7b          0.70 / 0.70 / - / -
    mistralai/Mixtral-8x7B-Instruct-v0.1 (*)     mistral/mixtral-8x7b          0.70 / 0.70 / - / -
      the same, provider_hint="together"         together/mistralai/Mixtral..  0.90 / 0.90 / - / -
    groq/mixtral-8x7b-32768                      groq/mixtral-8x7b-32768       0.24 / 0.24 / - / -

(*) genai-prices alone does not resolve this name (no provider claims the ``mistralai/`` form); the
``mistralai/`` prefix is mapped here to genai-prices' ``mistral`` provider. Cache writes are always priced
at the 5-minute rate (Anthropic's 1-hour writes cost more: 10 / 4 / 2 for Opus 4.8 / Sonnet 5 / Haiku 4.5).
Self-hosted models (e.g. a local Llama) are unknown: give them prices in the config's ``model_info`` section
(or a ``ModelPrice`` override); configured prices win over genai-prices'.
"""

from __future__ import annotations

import fnmatch
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from genai_prices import Usage
from genai_prices.data import providers as _bundled_providers
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import TieredPrices

from router.model_settings import ModelInfo, is_pattern

Rates = tuple[float, float, float, float]
"""USD per input, output, cache-read and cache-write token."""

__all__ = ["CascadeCost", "Cost", "ModelPrice", "PriceBook", "TokenUsage", "cascade_cost", "configured_prices",
           "normalise_model_name"]

_DATE_SUFFIX = re.compile(r"[-@](?:20\d{2}-?\d{2}-?\d{2})$")


def _count(value: object) -> int:
    """A token count from a JSON usage object: non-negative int, anything else (None, missing, junk) is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return max(int(value), 0)


def _sub(usage: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = usage.get(key)
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class TokenUsage:
    """Tokens of one upstream call. ``input_tokens`` includes the cached parts (see module docstring)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __post_init__(self) -> None:  # on every request: the four fields by name, not through fields()
        for name, value in (("input_tokens", self.input_tokens), ("output_tokens", self.output_tokens),
                            ("cache_read_tokens", self.cache_read_tokens),
                            ("cache_write_tokens", self.cache_write_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError("cache_read_tokens + cache_write_tokens cannot exceed input_tokens (the total)")

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens,
                          self.cache_read_tokens + other.cache_read_tokens,
                          self.cache_write_tokens + other.cache_write_tokens)

    @classmethod
    def from_anthropic(cls, usage: Mapping[str, object]) -> TokenUsage:
        """Anthropic Messages ``usage``: its ``input_tokens`` excludes cache reads and cache writes."""
        read = _count(usage.get("cache_read_input_tokens"))
        write = _count(usage.get("cache_creation_input_tokens"))
        return cls(_count(usage.get("input_tokens")) + read + write, _count(usage.get("output_tokens")), read, write)

    @classmethod
    def from_openai_chat(cls, usage: Mapping[str, object]) -> TokenUsage:
        """OpenAI Chat Completions ``usage``: ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens``."""
        prompt = _count(usage.get("prompt_tokens"))
        cached = min(_count(_sub(usage, "prompt_tokens_details").get("cached_tokens")), prompt)
        return cls(prompt, _count(usage.get("completion_tokens")), cached, 0)

    @classmethod
    def from_openai_responses(cls, usage: Mapping[str, object]) -> TokenUsage:
        """OpenAI Responses ``usage``: ``input_tokens`` includes ``input_tokens_details.cached_tokens``."""
        prompt = _count(usage.get("input_tokens"))
        cached = min(_count(_sub(usage, "input_tokens_details").get("cached_tokens")), prompt)
        return cls(prompt, _count(usage.get("output_tokens")), cached, 0)


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens, for models genai-prices does not know. Cache prices default to ``input``."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"ModelPrice.{f.name} must be a finite non-negative number, got {value!r}")

    def usd(self, usage: TokenUsage) -> float:
        read = self.input if self.cache_read is None else self.cache_read
        write = self.input if self.cache_write is None else self.cache_write
        return (
            usage.uncached_input_tokens * self.input
            + usage.cache_read_tokens * read
            + usage.cache_write_tokens * write
            + usage.output_tokens * self.output
        ) / 1_000_000


@dataclass(frozen=True)
class Cost:
    usd: float
    known: bool
    source: str  # "override", "genai-prices" or "unknown"


_UNKNOWN = Cost(0.0, False, "unknown")


@dataclass(frozen=True)
class _Found:  # the arguments with which genai-prices found a model
    model_ref: str
    provider_id: str | None
    provider_api_url: str | None
    label: str  # "provider/model-id", for logs and reports


def normalise_model_name(name: str) -> str:
    """Lower-case, drop a ``provider/`` prefix, a date suffix (``-20251001``, ``-2024-07-18``, ``@20251001``)
    and ``-latest``. Used for override keys and as the last lookup attempt."""
    name = name.strip().lower().rsplit("/", 1)[-1]
    name = name.removesuffix("-latest")
    return _DATE_SUFFIX.sub("", name)


def configured_prices(model_info: Mapping[str, ModelInfo] | None) -> dict[str, ModelPrice]:
    """The prices of the config's ``model_info`` section, by model name or glob pattern."""
    return {name: ModelPrice(info.prices.input, info.prices.output, info.prices.cache_read, info.prices.cache_write)
            for name, info in (model_info or {}).items() if info.prices is not None}


class PriceBook:
    """Prices token usage per model: config overrides first, then genai-prices' bundled table.

    Overrides are ``overrides`` (which win) and the prices of the config's ``model_info``; a key is a model name
    or a glob pattern (``qwen2.5-*``, matched case-sensitively in order after every exact and normalised name).
    Lookups (model name, provider hint) are memoised in a per-instance LRU of ``cache_size`` entries, so
    client-chosen model names cannot grow memory without bound.
    """

    def __init__(self, overrides: Mapping[str, ModelPrice] | None = None, *,
                 model_info: Mapping[str, ModelInfo] | None = None, cache_size: int = 1024) -> None:
        self._given = dict(overrides or {})
        self._snapshot = DataSnapshot(providers=_bundled_providers, from_auto_update=False)
        self._cache: OrderedDict[tuple[str, str | None], ModelPrice | _Found | None] = OrderedDict()
        self._rates: OrderedDict[tuple[str, str | None, str | None, datetime], Rates | None] = (
            OrderedDict())
        self._cache_size = max(cache_size, 1)
        self._lock = threading.Lock()
        self.reconfigure(model_info)

    def reconfigure(self, model_info: Mapping[str, ModelInfo] | None) -> None:
        """Price by this ``model_info`` from now on (a reloaded config); ``overrides`` still win."""
        configured = {**configured_prices(model_info), **self._given}
        exact = {k: v for k, v in configured.items() if not is_pattern(k)}
        with self._lock:
            self._overrides = exact
            self._normalised_overrides = {normalise_model_name(k): v for k, v in exact.items()}
            self._pattern_overrides = [(k, v) for k, v in configured.items() if is_pattern(k)]
            self._cache.clear()

    def cost(
        self, model: str, usage: TokenUsage, provider_hint: str | None = None, *, at: datetime | None = None
    ) -> Cost:
        """USD cost of ``usage`` on ``model``. ``provider_hint`` is a genai-prices provider id (``"groq"``,
        ``"together"``, ``"azure"``...) or an API base URL; it is preferred but not required. ``at`` is the
        request time for time-dependent prices (default: now)."""
        match = self._resolve(model, provider_hint)
        if match is None:
            return _UNKNOWN
        if isinstance(match, ModelPrice):
            return Cost(match.usd(usage), True, "override")
        try:
            rates = self._linear_rates(match, at)
            if rates is not None:  # flat prices: a dot product, not a walk through the price table
                counts = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens)
                return Cost(sum(c * r for c, r in zip(counts, rates, strict=True)), True, "genai-prices")
            return Cost(self._genai_usd(match, _to_genai_usage(usage), at), True, "genai-prices")
        except (LookupError, ValueError):  # a price table quirk must never break a request
            return _UNKNOWN

    def _genai_usd(self, match: _Found, usage: Usage, at: datetime | None) -> float:
        calc = self._snapshot.calc(usage, match.model_ref, match.provider_id, match.provider_api_url, at)
        return float(calc.total_price)

    def _linear_rates(self, match: _Found, at: datetime | None) -> Rates | None:
        """USD per input, output, cache-read and cache-write token, when the model's prices at this minute are
        flat (no tiers); None otherwise. Cached per model and minute (prices may depend on the time of day)."""
        minute = (at or datetime.now(tz=UTC)).replace(second=0, microsecond=0)
        key = (match.model_ref, match.provider_id, match.provider_api_url, minute)
        with self._lock:
            if key in self._rates:
                return self._rates[key]
        _, info = self._snapshot.find_provider_model(match.model_ref, None, match.provider_id,
                                                     match.provider_api_url)
        rates: Rates | None = None
        if not any(isinstance(price, TieredPrices) for price in vars(info.get_prices(minute)).values()):
            million = 1_000_000

            def usd(**tokens: int) -> float:
                return self._genai_usd(match, Usage(**tokens), minute) / million

            base = usd(input_tokens=million)
            rates = (base, usd(output_tokens=million), usd(input_tokens=million, cache_read_tokens=million) - base,
                     usd(input_tokens=million, cache_write_tokens=million) - base)
        with self._lock:
            self._rates[key] = rates
            while len(self._rates) > self._cache_size:
                self._rates.popitem(last=False)
        return rates

    def describe(self, model: str, provider_hint: str | None = None) -> str | None:
        """What ``model`` is priced as: ``"override"``, ``"provider/model-id"``, or None when unknown."""
        match = self._resolve(model, provider_hint)
        return None if match is None else "override" if isinstance(match, ModelPrice) else match.label

    def _resolve(self, model: str, hint: str | None) -> ModelPrice | _Found | None:
        key = (model, hint)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        found = self._lookup(model, hint)
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found

    def _lookup(self, model: str, hint: str | None) -> ModelPrice | _Found | None:
        override = self._overrides.get(model)
        if override is None:
            override = self._normalised_overrides.get(normalise_model_name(model))
        if override is None:
            override = next((price for pattern, price in self._pattern_overrides
                             if fnmatch.fnmatchcase(model, pattern)), None)
        if override is not None:
            return override
        for ref, provider in self._candidates(model, hint):
            url = provider if provider is not None and provider.startswith(("http://", "https://")) else None
            provider_id = None if url is not None else provider
            try:
                prov, info = self._snapshot.find_provider_model(ref, None, provider_id, url)
            except LookupError:
                continue
            return _Found(ref, provider_id, url, f"{prov.id}/{info.id}")
        return None

    @staticmethod
    def _candidates(model: str, hint: str | None) -> Iterator[tuple[str, str | None]]:
        """(model reference, provider) pairs to try, most specific first, without repeats."""
        name = model.strip()
        first, _, rest = name.partition("/")  # "groq/x", "mistralai/x", "openrouter/org/x"
        bare = name.rsplit("/", 1)[-1]
        names = list(dict.fromkeys(n for n in (name, rest, bare) if n))
        hints: list[str | None] = [hint] if hint else []
        tried: list[tuple[str, str | None]] = [(n, h) for h in hints for n in names]
        if rest:
            tried.append((rest, first))  # a leading segment that names a provider
        tried += [(n, None) for n in names]
        normal = normalise_model_name(name)
        tried += [(normal, h) for h in [*hints, None]]
        yield from dict.fromkeys(tried)


def _to_genai_usage(usage: TokenUsage) -> Usage:
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )


@dataclass(frozen=True)
class CascadeCost:
    """What a request cost, what strong-only would have cost, and the draft spend that was thrown away."""

    actual_usd: float
    strong_only_usd: float
    wasted_draft_usd: float
    known: bool = True  # False when a model involved had no price (its part counted as 0.0)

    @property
    def saved_usd(self) -> float:
        """Negative when escalation made the request dearer than going to the strong model directly."""
        return self.strong_only_usd - self.actual_usd


def cascade_cost(
    book: PriceBook,
    *,
    draft_model: str,
    strong_model: str,
    draft_usage: TokenUsage | None,
    strong_usage: TokenUsage | None,
    accepted: bool,
    strong_only_usage: TokenUsage | None = None,
    at: datetime | None = None,
) -> CascadeCost:
    """Cost of one cascaded request.

    ``actual`` is draft + strong (whichever ran). Accepted: nothing is wasted, and strong-only is estimated as
    the strong model answering with the draft's token counts (cache split included), unless the strong model
    also ran (its real usage is used) or ``strong_only_usage`` is given. Escalated: the draft cost is wasted and
    strong-only is the strong call's own cost (or ``strong_only_usage``).
    """
    none = Cost(0.0, True, "none")
    draft = book.cost(draft_model, draft_usage, at=at) if draft_usage is not None else none
    strong = book.cost(strong_model, strong_usage, at=at) if strong_usage is not None else none
    estimate = strong_only_usage if strong_only_usage is not None else strong_usage
    if estimate is None and accepted:
        estimate = draft_usage
    strong_only = book.cost(strong_model, estimate, at=at) if estimate is not None else none
    return CascadeCost(
        actual_usd=draft.usd + strong.usd,
        strong_only_usd=strong_only.usd,
        wasted_draft_usd=0.0 if accepted else draft.usd,
        known=draft.known and strong.known and strong_only.known,
    )
