"""Prometheus metrics and logging.

With several worker processes, `convo serve` sets PROMETHEUS_MULTIPROC_DIR before the workers start,
so each process writes its samples to files there and /metrics adds them up.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

SSE_SESSIONS = Gauge(
    "convo_sse_sessions_active", "SSE streams open to clients", multiprocess_mode="livesum"
)
COST = Counter("convo_cost_usd", "Cost of generations in USD", ["model"])
TOKENS = Counter("convo_tokens", "Tokens processed", ["model", "kind"])
TTFT = Histogram("convo_ttft_seconds", "Time from request to first token", buckets=_LATENCY)
GENERATION = Histogram("convo_generation_seconds", "Duration of a whole generation", buckets=_LATENCY)
HTTP_DURATION = Histogram(
    "convo_http_request_duration_seconds",
    "HTTP requests by route template",
    ["route", "method", "status"],
    buckets=_LATENCY,
)
UPSTREAM_ERRORS = Counter("convo_upstream_errors", "Failed generations by provider", ["provider", "code"])
BUDGET_REJECTIONS = Counter("convo_budget_rejections", "Generations refused by the daily budget")
EXPORT_JOBS = Counter("convo_export_jobs", "Export jobs by final status", ["status"])
SEARCH = Histogram("convo_search_seconds", "Search query time", buckets=_LATENCY)
RAG_RETRIEVAL = Histogram("convo_rag_retrieval_seconds", "Retrieval time", buckets=_LATENCY)
# Scale mode: how long one pipeline of stream events takes to reach Redis, and what failed there.
STREAM_FLUSH = Histogram("convo_stream_flush_seconds", "Time to send pending stream events to Redis",
                         buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
REDIS_ERRORS = Counter("convo_redis_errors", "Redis operations that failed, by what was attempted", ["operation"])
RUNS_REAPED = Counter("convo_runs_reaped", "Answers ended by the reaper because their process died", ["status"])


def render() -> tuple[bytes, str]:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        forget_dead_processes(Path(folder))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def forget_dead_processes(folder: Path) -> None:
    """Drop the live gauges of worker processes that are gone, killed ones included (nothing else would:
    uvicorn tells no one when it replaces a worker). Counters stay: their sums must never go back."""
    for path in folder.glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(folder))
        except PermissionError:
            pass


def process_exiting() -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        multiprocess.mark_process_dead(os.getpid(), folder)


class MetricsMiddleware:
    """Times every HTTP request by its route template (not its raw path, which would explode labels).
    A pure ASGI middleware, so streamed responses pass through untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            HTTP_DURATION.labels(template, scope["method"], str(status)).observe(time.perf_counter() - started)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
