"""The process's log: JSON lines or text on stderr, every line with the id of the request it belongs to, and
the one line per request (`router.requests`) with its route, models, costs, status and timings.

JSON lines go through python-json-logger's orjson formatter on the standard `logging` module, which every
module here and uvicorn already log through; nothing else needs to change to be collected.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from pythonjsonlogger.orjson import OrjsonFormatter

from router.auth_keys.admission import KeyPrincipal
from router.embedding.text import embedding_text
from router.observability.context import RequestRecord, current_request_id
from router.observability.settings import LoggingSettings
from router.protocol.hub import to_hub_request
from router.scoring.extract import answer_text

REQUEST_LOGGER = "router.requests"
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics", "/"})
"""Probes and scrapes: their lines are logged at debug level unless they fail."""
_ERROR_CHARS = 300
_CONTENT_CHARS = 4000


class RequestIdFilter(logging.Filter):
    """Adds the id of the request being served (if any) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class JsonLines(OrjsonFormatter):
    """One JSON object a line: time, level, logger, message, request id, and a request line's fields."""

    def __init__(self) -> None:
        super().__init__(["levelname", "name", "message"], rename_fields={"levelname": "level", "name": "logger"},
                         timestamp="time")

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        if log_data.get("request_id") is None:
            log_data.pop("request_id", None)
        fields = log_data.pop("fields", None)
        if isinstance(fields, dict):
            log_data.update(fields)


class TextLines(logging.Formatter):
    """A line for a person at a terminal; a request line's fields follow as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields.get("event") == "request":
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items()
                                   if key not in ("event", "method", "path", "status"))
        elif request_id is not None:
            line += f" [{request_id}]"
        return line


class _ProxyHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` installs (found again to be replaced on reconfiguration)."""


def effective_level(settings: LoggingSettings, server_level: str) -> int:
    """The level of the proxy's loggers: `logging.level`, else `server.log_level`."""
    return logging.getLevelNamesMapping()[(settings.level or server_level).upper()]


def configure_logging(settings: LoggingSettings, server_level: str, stream: IO[str] | None = None) -> None:
    """Send every logger's records to stderr as JSON lines or text (a process-wide setting: the command line's
    and each worker's start call it, tests and embedding applications need not)."""
    target = stream if stream is not None else sys.stderr
    use_json = settings.format == "json" or (settings.format == "auto" and not _is_terminal(target))
    handler = _ProxyHandler(target)
    handler.setFormatter(JsonLines() if use_json else TextLines())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in [each for each in root.handlers if isinstance(each, _ProxyHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(effective_level(settings, server_level))
    logging.getLogger(REQUEST_LOGGER).disabled = not settings.requests


@contextmanager
def logging_configured(settings: LoggingSettings, server_level: str) -> Iterator[None]:
    """`configure_logging` for the length of a block (the command line's serving), the logging as before after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging(settings, server_level)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def reconfigure_logging(settings: LoggingSettings, server_level: str) -> bool:
    """Apply changed logging settings when `configure_logging` set the process up (else leave it alone)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _ProxyHandler):
            configure_logging(settings, server_level, handler.stream)
            return True
    return False


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def log_request(record: RequestRecord, settings: LoggingSettings) -> None:
    """The request's one line: info (debug for a probe that succeeded, warning for a 5xx)."""
    logger = logging.getLogger(REQUEST_LOGGER)
    status = record.status or 500
    level = logging.WARNING if status >= 500 else (
        logging.DEBUG if record.path in QUIET_PATHS and status < 400 else logging.INFO)
    if not logger.isEnabledFor(level):
        return
    fields = request_fields(record, include_content=settings.include_content)
    route = f" {record.route}" if record.route else ""
    arguments = (record.method, record.path, status, route, fields["duration_ms"])
    # made directly: `logger.log` would walk the stack for a caller every line names anyway (60 us a request)
    logger.handle(logger.makeRecord(logger.name, level, __file__, 0, "%s %s %d%s %.0f ms", arguments, None,
                                    extra={"fields": fields, "request_id": record.request_id}))


def request_fields(record: RequestRecord, *, include_content: bool = False) -> dict[str, Any]:
    """What the operator learns of one request: never a key, never text unless `include_content`."""
    fields: dict[str, Any] = {"event": "request", "request_id": record.request_id, "method": record.method,
                              "path": record.path, "status": record.status or 500,
                              "duration_ms": round(record.elapsed_ms(), 1)}
    if record.first_byte_ms is not None:
        fields["first_byte_ms"] = round(record.first_byte_ms, 1)
    if record.status is not None and not record.complete:
        fields["complete"] = False  # the client left (or the connection broke) before the answer's end
    call = record.call
    principal = call.principal if call is not None else record.principal
    if principal is not None:
        fields["tenant"] = principal.tenant
        if isinstance(principal, KeyPrincipal):
            fields["key_id"], fields["user"] = principal.key_id, principal.user
    if call is not None:
        fields.update(endpoint=call.endpoint.value, dialect=call.dialect.value, stream=call.stream,
                      requested_model=call.model)
    if record.route is not None:
        fields["route"] = record.route
    if record.outcome is not None:
        fields.update(_outcome_fields(record))
    if record.stages_ms:
        fields["stages_ms"] = {name: round(ms, 1) for name, ms in record.stages_ms.items()}
    if record.upstream_request_id is not None:
        fields["upstream_request_id"] = record.upstream_request_id
    if include_content and record.outcome is not None:
        fields["content"] = _content(record)
    return fields


def _outcome_fields(record: RequestRecord) -> dict[str, Any]:
    outcome = record.outcome
    assert outcome is not None
    plan, ledger = outcome.plan, outcome.ledger
    fields: dict[str, Any] = {"reason": plan.reason, "cache_hit": outcome.cache_hit,
                              "cost_usd": round(ledger.actual_usd, 8), "priced": ledger.priced}
    if plan.rule is not None:
        fields.update(rule=plan.rule.name or plan.rule.request_model, draft_model=plan.rule.draft_model,
                      strong_model=plan.rule.strong_model, draft_status=plan.draft_status)
    if ledger.served is not None:
        fields.update(served_model=ledger.served.model, input_tokens=ledger.served.usage.input_tokens,
                      output_tokens=ledger.served.usage.output_tokens)
    if ledger.strong_only_usd is not None:
        fields["strong_only_usd"] = round(ledger.strong_only_usd, 8)
        fields["saved_usd"] = round(ledger.strong_only_usd - ledger.actual_usd, 8)
    if ledger.wasted_draft is not None:
        fields["wasted_draft_usd"] = round(ledger.wasted_usd, 8)
    if plan.draft is not None:
        fields["draft_ms"] = round(plan.draft.latency_ms, 1)
    if plan.verdict is not None:
        fields["confidence"] = round(plan.verdict.score.value, 4)
    prediction = outcome.features.prediction
    if prediction is not None:
        fields["predicted_good"] = round(prediction.p_good, 4)
    if outcome.error is not None:
        fields["error"] = outcome.error[:_ERROR_CHARS]
    return fields


def _content(record: RequestRecord) -> dict[str, str]:
    """The prompt (the text the cascade embeds) and the served answer's text, bounded; debugging only."""
    outcome = record.outcome
    assert outcome is not None
    content: dict[str, str] = {}
    hub = outcome.hub_request
    if hub is None:
        try:  # a pass-through request was never translated
            hub = to_hub_request(outcome.call)
        except Exception:  # a body the translation refuses: no prompt in the line
            hub = None
    if hub is not None:
        content["prompt"] = embedding_text(hub, _CONTENT_CHARS)
    message = outcome.served.message if outcome.served is not None else None
    if message is not None:
        content["answer"] = answer_text(message)[:_CONTENT_CHARS]
    return content
