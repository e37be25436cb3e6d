"""`convo worker`: a Celery worker that runs Convo's background jobs (file ingestion, exports) in scale mode.

Each worker child builds its own Services on one event loop of its own and runs every job on it
(the database engine belongs to the loop it was made on; a new loop per job would break it). Jobs are
acknowledged after they finish, and a child that dies mid-job has its job delivered again, so a crash
loses nothing; the handlers count attempts on their rows, so a job that kills its worker every time
ends `failed` instead of looping.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from convo.config import Settings, get_settings
from convo.runtime.jobs import CELERY_TASK, CeleryJobs

log = logging.getLogger(__name__)

MAX_TRIES = 3


def celery_app(settings: Settings) -> Celery:
    app = Celery("convo", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # the job's row is its result
        task_acks_late=True,
        # Without this a child killed mid-job (OOM, kill -9) has its message acknowledged anyway.
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A child builds its Services before it reports in; on a busy host that takes longer than
        # Celery's 4 s, which would kill replacement children over and over.
        worker_proc_alive_timeout=60,
        task_time_limit=settings.job_time_limit_seconds,
        # Longer than any job: Redis hands an unacknowledged message to another worker after this.
        broker_transport_options={"visibility_timeout": int(settings.job_time_limit_seconds * 2)},
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_default_queue=f"{settings.redis_prefix}jobs",
    )
    return app


app = celery_app(get_settings())


class _Child:
    """What one worker child holds: its event loop and its Services."""

    loop: asyncio.AbstractEventLoop | None = None
    services: Any = None


@worker_process_init.connect
def _start_child(**_: Any) -> None:
    from convo.services import Services

    _Child.loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_Child.loop)
    _Child.services = Services.build(get_settings(), jobs=CeleryJobs(app))
    _Child.loop.run_until_complete(_Child.services.start_worker())


@worker_process_shutdown.connect
def _stop_child(**_: Any) -> None:
    if _Child.loop is not None and _Child.services is not None:
        _Child.loop.run_until_complete(_Child.services.stop())


@app.task(name=CELERY_TASK, bind=True, max_retries=MAX_TRIES - 1)
def run_job(self: Any, name: str, args: dict[str, Any]) -> None:
    assert _Child.loop is not None and _Child.services is not None
    jobs: CeleryJobs = _Child.services.jobs
    last_try = self.request.retries >= MAX_TRIES - 1
    try:
        _Child.loop.run_until_complete(jobs.run(name, args, last_try=last_try))
    except Exception as exc:
        raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc


def main(concurrency: int, loglevel: str, metrics_port: int | None) -> None:
    if metrics_port:
        _serve_metrics(metrics_port)
    app.worker_main(["worker", "--pool=prefork", f"--concurrency={concurrency}", f"--loglevel={loglevel}",
                     "--without-gossip", "--without-mingle"])


def _serve_metrics(port: int) -> None:
    """The children's job metrics (`convo_export_jobs_total`, ...) summed and served by the main process."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr="127.0.0.1", registry=registry)


@worker_process_shutdown.connect
def _forget_child_metrics(**_: Any) -> None:
    from convo.observability import process_exiting

    process_exiting()
