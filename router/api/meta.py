"""Handlers of the non-LLM endpoints: models, liveness, readiness, metrics, root."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from router.api.admin import OperatorDep, operator
from router.api.deps import PrincipalDep, ServicesDep, authenticate
from router.api.errors import request_dialect
from router.errors import NotFoundError, ProxyError
from router.metrics import CONTENT_TYPE
from router.services import Services
from router.types import client_family

router = APIRouter()


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


@router.get("/v1/models")
@router.get("/models", include_in_schema=False)
async def list_models(request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    """Models a client may ask for, in a shape both SDKs accept."""
    family = client_family(request_dialect(request))
    return _json(await services.catalog.listing(principal, request.headers, family))


@router.get("/v1/models/{model_id:path}")
@router.get("/models/{model_id:path}", include_in_schema=False)
async def get_model(model_id: str, request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    """One model."""
    family = client_family(request_dialect(request))
    listing = await services.catalog.listing(principal, request.headers, family)
    for entry in listing["data"]:
        if entry["id"] == model_id:
            return _json(entry)
    raise NotFoundError(f"model {model_id!r} not found", param="model")


@router.get("/health")
async def health() -> Response:
    """Liveness: the process answers."""
    return _json({"status": "ok"})


@router.get("/ready")
async def ready(request: Request, services: ServicesDep) -> Response:
    """Readiness: every dependency the proxy needs is usable (200, else 503, for any caller); the checks behind
    it are shown to those who may read `/metrics`, and no key (or a bad one) is no reason to fail a probe."""
    checks = {name: _public(check) for name, check in services.readiness().items()}
    is_ready = all(check["ok"] for check in checks.values() if check.get("required"))
    degraded = any(not check["ok"] for check in checks.values())
    status = "unavailable" if not is_ready else ("degraded" if degraded else "ready")
    body: dict[str, object] = {"status": status}
    if await _sees_details(request, services):
        body["checks"] = checks
    return _json(body, 200 if is_ready else 503)


async def _sees_details(request: Request, services: Services) -> bool:
    """Whether the caller may read the operators' endpoints (router/api/admin.py's `operator`)."""
    try:
        await operator(request, services, await authenticate(request, services))
    except ProxyError:  # no key, a bad one, a user's, or a key store that cannot be read now
        return False
    return True


_PRIVATE = frozenset({"base_url", "last_error"})


def _public(check: dict[str, object]) -> dict[str, object]:
    """A check as anyone may see it: no provider URLs, no upstream error text, no artifact paths (the logs
    have them)."""
    public = {key: value for key, value in check.items() if key not in _PRIVATE}
    if isinstance(public.get("refused"), dict):
        public["refused"] = len(public["refused"])  # type: ignore[arg-type]
    return public


@router.get("/metrics")
async def metrics(services: ServicesDep, _: OperatorDep) -> Response:
    """Prometheus metrics: this process's, or every worker's when several run (see router/metrics.py). With proxy
    keys a scraper sends an admin key (`authorization: Bearer ...`): spend and traffic are everyone's."""
    sample_gauges(services)
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE)


def sample_gauges(services: Services) -> None:
    """Set the state gauges (cache entries, outcome log queue depth, request bodies held) and the outcome log's own
    counts from the dependencies' status."""
    services.metrics.gauge("cascadeflow_inflight_body_bytes", float(services.bodies.in_flight))
    checks = services.readiness()
    for check, field, gauge in (("cache", "entries", "cascadeflow_cache_entries"),
                                ("outcome_log", "queued", "cascadeflow_outcome_log_queue_depth")):
        value = checks.get(check, {}).get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            services.metrics.gauge(gauge, float(value))
    log = checks.get("outcome_log", {})
    for result in ("written", "spooled", "rejected", "dropped"):
        total = log.get(result)
        if isinstance(total, int) and not isinstance(total, bool):
            services.metrics.advance("cascadeflow_outcome_log_records_total", float(total), result=result)


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> Response:
    """Connectivity probe (Claude Code sends HEAD / on start)."""
    return _json({"name": "cascadeflow-router", "status": "ok"})
