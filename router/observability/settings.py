"""Settings of what the proxy tells its operator: log lines, traces, and live reload of the config file."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

LogLevel = Literal["debug", "info", "warning", "error"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoggingSettings(_Strict):
    """The process's log: JSON lines (one object a line) or text, and one line per request."""

    format: Literal["auto", "json", "text"] = "auto"
    """auto: JSON lines when stderr is not a terminal (a container, a service manager), text on a terminal."""
    level: LogLevel | None = None
    """The level of the proxy's own loggers (unset: `server.log_level`)."""
    requests: bool = True
    """One line per request (`router.requests`): id, tenant, route, models, costs, status and timings."""
    include_content: bool = False
    """Debugging only: also log each request's prompt and answer text. Keys are never logged."""


class TracingSettings(_Strict):
    """OpenTelemetry traces: a span per request, a child span per pipeline stage, exported over OTLP/HTTP."""

    enabled: bool = False
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    """The collector's OTLP/HTTP traces URL (protobuf over HTTP, as an OpenTelemetry Collector or Jaeger takes)."""
    service_name: str = Field("cascadeflow-router", min_length=1)
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    """The share of new traces recorded; a request that arrives with a `traceparent` follows its caller's choice."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra headers of each export (e.g. a vendor's API key: masked in /admin/config)."""
    timeout_s: float = Field(10.0, gt=0)

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (the OTLP/HTTP traces URL, e.g. .../v1/traces)")
        return value


class ReloadSettings(_Strict):
    """Live reload of the config file: on change (polled) and on SIGHUP; a file that does not validate is refused."""

    watch: bool = True
    """Poll the config file and apply it when it changes (only when the proxy was started with a file)."""
    interval_s: float = Field(2.0, ge=0.1, le=3600.0)
