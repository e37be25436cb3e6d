"""Builds the FastAPI app: routers, error handling, metrics, the web app, and the lifespan."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from convo import __version__
from convo.api import (
    admin,
    auth,
    budget,
    errors,
    exports,
    files,
    imports,
    messages,
    models,
    ops,
    rag,
    search,
    threads,
    tokens,
    versions,
)
from convo.config import Settings, get_settings
from convo.observability import MetricsMiddleware, process_exiting, setup_logging
from convo.services import Services

WEB_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"


class WebApp(StaticFiles):
    """The built web app. Its client-side routes (/t/12) are pages the browser may reload, so a missing
    path answers index.html; API paths and missing files (anything with a suffix) stay a JSON 404."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            leaf = path.rsplit("/", 1)[-1]
            if exc.status_code != 404 or path.split("/", 1)[0] == "api" or "." in leaf:
                raise
            return await super().get_response("index.html", scope)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_logging(settings.log_level)
    # Database calls hop to driver threads and back. With the default 5 ms GIL switch interval a busy
    # event loop makes every hop wait that long; a shorter interval keeps queries quick under load.
    sys.setswitchinterval(0.0005)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(settings)
        app.state.services = services
        await services.start()
        try:
            yield
        finally:
            await services.stop()
            process_exiting()

    app = FastAPI(title="Convo", version=__version__, lifespan=lifespan)
    errors.install(app)
    for module in (auth, models, threads, messages, versions, tokens, search, files, rag, budget, exports, imports,
                   admin, ops):
        app.include_router(module.router)
    if (WEB_DIST / "index.html").exists():
        app.mount("/", WebApp(directory=WEB_DIST, html=True), name="web")
    return MetricsMiddleware(app)  # type: ignore[return-value]
