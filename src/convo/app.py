"""Builds the FastAPI app: routers, error handling, metrics, the web app, and the lifespan."""

from __future__ import annotations

import base64
import gc
import hashlib
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


# An inline <script> (no src attribute) and its exact text, which is what a CSP hash covers.
_INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.S | re.I)


def content_security_policy(index_html: Path) -> str:
    """The web app's policy. Its one inline script (the theme, run before first paint) is allowed by
    hash, computed from the built page at start-up so that editing the script cannot break the page."""
    scripts = ["'self'"]
    if index_html.exists():
        for body in _INLINE_SCRIPT.findall(index_html.read_text(encoding="utf-8")):
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            scripts.append(f"'sha256-{digest}'")
    return ("default-src 'self'; script-src " + " ".join(scripts) + "; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


class SecurityHeaders:
    """Adds the security headers to every response, HTML and JSON alike. A response that sets its own
    (attachment downloads: `CSP: sandbox`) keeps them. The interactive API docs load their script from a
    CDN, so they go without the CSP; they still cannot be framed."""

    def __init__(self, app: ASGIApp, csp: str, *, no_csp: set[str]) -> None:
        self.app = app
        self.no_csp = no_csp
        self.headers = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                        "X-Frame-Options": "DENY"}
        self.csp = csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with_csp = scope["path"] not in self.no_csp

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
                if with_csp:
                    headers.setdefault("Content-Security-Policy", self.csp)
            await send(message)

        await self.app(scope, receive, send_with_headers)


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
        # What start-up built lives as long as the process: out of the collector's sight, a full
        # collection no longer walks it (pauses of 150-500 ms were measured during large imports).
        gc.freeze()
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
        # The web app answers what no route matches. Not a mount at "/": that would also take a request
        # for an API route with a method it lacks, and answer 404 or a 405 allowing GET, for the route.
        app.router.default = WebApp(directory=WEB_DIST, html=True)
    docs = {p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p}
    app.add_middleware(SecurityHeaders, csp=content_security_policy(WEB_DIST / "index.html"), no_csp=docs)
    return MetricsMiddleware(app)  # type: ignore[return-value]
