"""The outcome record: one per request, the same columns in SQLite and PostgreSQL, and its spool form."""

from __future__ import annotations

import base64
import json
import math
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import orjson


@dataclass(frozen=True)
class OutcomeRecord:
    """What happened to one request: the decisions, the costs, the latencies, and the label when known."""

    request_id: str
    created_at: float
    tenant: str
    endpoint: str
    requested_model: str
    route: str
    reason: str = ""
    draft_model: str | None = None
    strong_model: str | None = None
    cache_hit: bool = False
    prediction: float | None = None
    skip_threshold: float | None = None
    artifact_version: str | None = None
    features_version: str | None = None
    features: tuple[float, ...] | None = None
    embedding: bytes | None = None
    confidence: float | None = None
    components: Mapping[str, float] = field(default_factory=dict)
    accepted: bool | None = None
    prompt_sha256: str = ""
    prompt_text: str | None = None
    draft_text: str | None = None
    strong_text: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    draft_input_tokens: int | None = None
    draft_output_tokens: int | None = None
    cost_usd: float | None = None
    strong_only_cost_usd: float | None = None
    latency_ms: float | None = None
    draft_latency_ms: float | None = None
    strong_latency_ms: float | None = None
    label: bool | None = None
    label_source: str | None = None
    label_detail: str | None = None
    verifier_features: tuple[float, ...] | None = None
    """A judged draft's verifier feature row (router/scoring/evidence.py): what `train --verifier --outcomes`
    trains on, since the text alone cannot give the log-probabilities and sample agreement it holds."""
    verifier_features_version: str | None = None
    record_id: str | None = None
    """Unique per record (set when it is submitted): a record written twice (replayed from the journal or the
    spool after a write whose acknowledgement was lost) is stored once."""


def new_record_id() -> str:
    """A record id: 96 random bits."""
    return secrets.token_hex(12)


VERIFIER_COLUMNS: tuple[str, ...] = ("verifier_features", "verifier_features_version")
"""Read by queries where the table has them (a table no proxy of this version has opened yet has not)."""
ADDED_COLUMNS: tuple[str, ...] = ("record_id", *VERIFIER_COLUMNS)
"""Columns added to older tables at start-up."""
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(OutcomeRecord) if f.name not in ADDED_COLUMNS)
"""The columns every version of the table has (what the dashboard reads)."""
STORED_COLUMNS: tuple[str, ...] = (*COLUMNS, *ADDED_COLUMNS)
"""What is written: every column."""
BOOLEAN_COLUMNS = frozenset({"cache_hit", "accepted", "label"})
INTEGER_COLUMNS = frozenset({"input_tokens", "output_tokens", "draft_input_tokens", "draft_output_tokens"})
REAL_COLUMNS = frozenset({"created_at", "prediction", "skip_threshold", "confidence", "cost_usd",
                          "strong_only_cost_usd", "latency_ms", "draft_latency_ms", "strong_latency_ms"})
FEATURE_COLUMNS = frozenset({"features", "verifier_features"})
JSON_COLUMNS = frozenset({*FEATURE_COLUMNS, "components"})
BYTES_COLUMNS = frozenset({"embedding"})
REQUIRED_TEXT_COLUMNS = frozenset({"request_id", "tenant", "endpoint", "requested_model", "route", "reason",
                                   "prompt_sha256"})
LABEL_COLUMNS = ("label", "label_source", "label_detail")


@dataclass(frozen=True)
class LabelUpdate:
    """A label that arrives after its record (judged in the background)."""

    request_id: str
    label: bool
    source: str
    detail: str = ""


def clean_text(value: object) -> str:
    """Text every store accepts: NUL (refused by PostgreSQL) and lone surrogates become U+FFFD."""
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def _number(value: object) -> float | str:
    """A float for JSON: non-finite values as strings ("nan", "inf"), which JSONB refuses as numbers."""
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else repr(number)


def _cell(name: str, value: Any) -> Any:
    """One column's value, coerced to the type both stores hold (raises on values that cannot be)."""
    if value is None:
        if name == "components":
            return "{}"
        if name == "cache_hit":
            return False
        return "" if name in REQUIRED_TEXT_COLUMNS else None
    if name in BOOLEAN_COLUMNS:
        return bool(value)
    if name in INTEGER_COLUMNS:
        return int(value)
    if name in REAL_COLUMNS:  # NaN as NULL: SQLite cannot hold a NaN, so neither does PostgreSQL
        number = float(value)
        return None if math.isnan(number) else number
    if name in BYTES_COLUMNS:
        return bytes(value)
    if name in FEATURE_COLUMNS:
        return json.dumps([_number(v) for v in value])
    if name == "components":
        return json.dumps({clean_text(k): _number(v) for k, v in dict(value).items()}, sort_keys=True)
    return clean_text(value)


def to_row(record: OutcomeRecord) -> tuple[Any, ...]:
    """The record's values in `STORED_COLUMNS` order: plain Python types, JSON columns as text."""
    return tuple(_cell(name, getattr(record, name)) for name in STORED_COLUMNS)


def label_row(update: LabelUpdate) -> tuple[bool, str, str, str]:
    """A label update's parameters: label, source, detail, then the request id."""
    return bool(update.label), clean_text(update.source), clean_text(update.detail), clean_text(update.request_id)


def from_row(row: Mapping[str, Any]) -> OutcomeRecord:
    """A record from a database row (either backend) or a spool line; the same types whatever the store (the
    columns added since may be missing)."""
    values: dict[str, Any] = {}
    for name in (*COLUMNS, *VERIFIER_COLUMNS):
        value = row[name] if name in COLUMNS else row.get(name)
        if value is not None:
            if name in BOOLEAN_COLUMNS:
                value = bool(value)
            elif name in INTEGER_COLUMNS:
                value = int(value)
            elif name in REAL_COLUMNS:
                value = float(value)
            elif name in BYTES_COLUMNS:
                value = bytes(value)
            elif name in FEATURE_COLUMNS:
                value = tuple(float(v) for v in json.loads(value))
            elif name == "components":
                value = {str(k): float(v) for k, v in sorted(json.loads(value).items())}
        elif name == "components":
            value = {}
        values[name] = value
    return OutcomeRecord(**values, record_id=row.get("record_id"))


def _spool_data(item: OutcomeRecord | LabelUpdate) -> dict[str, Any]:
    if isinstance(item, LabelUpdate):
        label, source, detail, request_id = label_row(item)
        return {"kind": "label", "request_id": request_id, "label": label, "source": source, "detail": detail}
    data = dict(zip(STORED_COLUMNS, to_row(item), strict=True))
    if data["embedding"] is not None:
        data["embedding"] = base64.b64encode(data["embedding"]).decode()
    return {"kind": "record", "record": data}


def to_spool(item: OutcomeRecord | LabelUpdate) -> str:
    """One spool line (JSON) for a record or a label update."""
    return json.dumps(_spool_data(item))


def _bytes_as_base64(value: object) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def journal_line(item: OutcomeRecord | LabelUpdate) -> bytes:
    """A record or label update as one journal line (read by `from_spool`), on the request path: the record's own
    fields through orjson (a few microseconds); the spool's form when they are not plain JSON (lone surrogates)."""
    if isinstance(item, OutcomeRecord):
        try:
            return orjson.dumps({"kind": "fields", "record": item}, default=_bytes_as_base64,
                                option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError:
            pass
    return orjson.dumps(_spool_data(item))


def _from_fields(data: Mapping[str, Any]) -> OutcomeRecord:
    """A record from its journal form (non-finite numbers, written as null, come back as NaN or None)."""
    values = {name: data[name] for name in _FIELD_NAMES if name in data}
    if values.get("embedding") is not None:
        values["embedding"] = base64.b64decode(values["embedding"])
    for name in FEATURE_COLUMNS:
        if values.get(name) is not None:
            values[name] = tuple(math.nan if value is None else float(value) for value in values[name])
    values["components"] = {str(key): math.nan if value is None else float(value)
                            for key, value in (values.get("components") or {}).items()}
    return OutcomeRecord(**values)


_FIELD_NAMES = frozenset(f.name for f in fields(OutcomeRecord))


def from_spool(line: str | bytes) -> OutcomeRecord | LabelUpdate:
    """A record or label update back from its spool (or journal) line."""
    data = json.loads(line)
    if data["kind"] == "label":
        return LabelUpdate(data["request_id"], bool(data["label"]), data["source"], data.get("detail", ""))
    if data["kind"] == "fields":
        return _from_fields(data["record"])
    row = dict(data["record"])
    if row.get("embedding") is not None:
        row["embedding"] = base64.b64decode(row["embedding"])
    return from_row(row)


def split_items(items: Sequence[OutcomeRecord | LabelUpdate]) -> list[list[OutcomeRecord] | list[LabelUpdate]]:
    """Consecutive runs of records and of labels, in order (labels must land after the records before them)."""
    runs: list[list[Any]] = []
    for item in items:
        if runs and isinstance(runs[-1][0], type(item)):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def read_columns(present: Collection[str]) -> tuple[str, ...]:
    """What `query()` reads of a table with these columns: every version's, and the verifier's where present."""
    return (*COLUMNS, *(name for name in VERIFIER_COLUMNS if name in present))


def select_sql(table: str, placeholder: Callable[[int], str], *, columns: Sequence[str] = COLUMNS,
               labelled_only: bool, since: float | None, limit: int | None) -> tuple[str, list[object]]:
    """The SELECT of `query()` for either backend (`placeholder(n)` is `?` or `$n`), and its parameters."""
    where = ["label IS NOT NULL"] if labelled_only else []
    parameters: list[object] = []
    if since is not None:
        parameters.append(since)
        where.append(f"created_at >= {placeholder(len(parameters))}")
    sql = f"SELECT {', '.join(columns)} FROM {table}{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id"
    if limit is not None:
        parameters.append(limit)
        sql += f" LIMIT {placeholder(len(parameters))}"
    return sql, parameters
