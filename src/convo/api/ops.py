from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response

from convo import observability as obs
from convo.api.deps import ServicesDep, bearer_token
from convo.api.errors import error_response

router = APIRouter(tags=["ops"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, services: ServicesDep) -> Response:
    # Model ids, providers, costs and traffic: only for the scraper when CONVO_METRICS_TOKEN is set.
    expected = services.settings.metrics_token
    if expected is not None:
        given = bearer_token(request) or ""
        if not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
            response = error_response(401, "not_authenticated", "GET /metrics needs the metrics bearer token.")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
    body, content_type = obs.render()
    return Response(body, media_type=content_type)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep):
    """Ready to take traffic: the database answers, and Redis too in scale mode."""
    try:
        await services.db.ping()
    except Exception as exc:
        return error_response(503, "not_ready", f"database unavailable: {type(exc).__name__}")
    if services.redis is not None:
        try:
            await services.redis.ping()
        except Exception as exc:
            return error_response(503, "not_ready", f"Redis unavailable: {type(exc).__name__}")
    return {"status": "ready"}
