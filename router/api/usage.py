"""Handler of `GET /v1/usage`: the caller's spend (an admin key: everyone's) per day, from the spend ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from router.api.deps import PrincipalDep, ServicesDep
from router.errors import NotFoundError
from router.spend.query import report, usage_query

router = APIRouter()


@router.get("/v1/usage")
async def usage(request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    """Spend per day: `start`, `end` (UTC dates, both included) or `days` (7), `group_by` (day, user, key), and for
    an admin key `user`."""
    if services.spend is None:
        raise NotFoundError("the spend ledger is off (spend.enabled: false)")
    query = usage_query(principal, request.query_params, datetime.now(tz=UTC).date())
    rows = await services.spend.usage(query)
    return Response(orjson.dumps(report(query, rows)), media_type="application/json")
