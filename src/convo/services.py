"""The running parts of one Convo process, built once from settings and shared by every request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass, field
from datetime import timedelta

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from convo.config import Settings
from convo.db.models import utcnow
from convo.db.session import Database
from convo.domain.billing import Billing
from convo.domain.chat import Chat
from convo.domain.exports import Exports
from convo.domain.extraction import Limits
from convo.domain.files import Files
from convo.domain.imports import Imports
from convo.domain.retrieval import Retrieval, Weights
from convo.domain.retrieval.embeddings import Embedder, MiniLM, OpenAIEmbeddings
from convo.domain.retrieval.grounding import Grounder
from convo.domain.search import Search
from convo.domain.threads import Threads
from convo.domain.users import AuthLimits, Users
from convo.domain.versions import Versions
from convo.llm import tokens
from convo.llm.registry import Registry, build_registry
from convo.runtime.cancel import CancelBus, LocalCancelBus, RedisCancelBus
from convo.runtime.jobs import CeleryJobs, InProcessJobs, JobRunner
from convo.runtime.pool import BoundedPool
from convo.runtime.ratelimit import Backoff, MemoryLimiter
from convo.runtime.redis_streams import RedisStreamLog
from convo.runtime.streams import MemoryStreamLog, StreamLog

log = logging.getLogger(__name__)
HOUSEKEEPING_SECONDS = 3600.0


@dataclass
class Services:
    settings: Settings
    db: Database
    registry: Registry
    users: Users
    threads: Threads
    chat: Chat
    billing: Billing
    versions: Versions
    search: Search
    jobs: JobRunner
    retrieval: Retrieval
    files: Files
    exports: Exports
    imports: Imports
    redis: Redis | None = None  # scale mode only
    _housekeeping: asyncio.Task[None] | None = field(default=None, init=False)

    @classmethod
    def build(cls, settings: Settings, *, jobs: JobRunner | None = None) -> Services:
        tokens.configure(settings.tiktoken_dir)
        db = Database(settings.db_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
        registry = build_registry(settings)
        streams, cancels, redis = build_bus(settings)
        billing = Billing(db, settings.daily_cost_budget)
        chat = Chat(db, registry, streams, cancels, settings, billing)
        jobs = jobs or build_jobs(settings)
        retrieval = Retrieval(db, build_embedder(settings), Weights(
            settings.rag_bm25_weight, settings.rag_vec_weight, settings.rag_time_decay))
        files = Files(db, retrieval, jobs, settings.data_dir, settings.max_upload_bytes, Limits(
            settings.extract_memory_mb * 1024 * 1024, math.ceil(settings.extract_seconds), settings.extract_seconds),
            quota_bytes=settings.user_storage_bytes)
        chat.grounder = Grounder(files)
        return cls(
            settings=settings,
            db=db,
            registry=registry,
            users=Users(db, signup=settings.signup, session_days=settings.session_days,
                        idle_days=settings.session_idle_days,
                        hashing=BoundedPool("hash", threads=settings.hash_threads, queue=8 * settings.hash_threads),
                        limits=build_limits(settings)),
            threads=Threads(db, registry, cancels),
            chat=chat,
            billing=billing,
            versions=Versions(db, chat),
            search=Search(db),
            jobs=jobs,
            retrieval=retrieval,
            files=files,
            exports=Exports(db, files.root, jobs, settings.data_dir / "exports", settings.export_sweep_seconds),
            imports=Imports(db, files, registry),
            redis=redis,
        )

    async def start(self) -> None:
        await self.retrieval.start()
        await self.chat.start(sole_process=not self.settings.scale_mode)
        await asyncio.to_thread(tokens.warm)
        await self.jobs.start()
        if self.jobs.in_process:  # else the workers own the jobs (start_worker)
            await self.files.resume()
        await self.files.sweep()
        await self.exports.start(sole_process=not self.settings.scale_mode)
        self._housekeeping = asyncio.create_task(self._housekeep())

    async def start_worker(self) -> None:
        """A `convo worker` child: jobs only. The first child to start after a while also queues again
        what was left unqueued (a broker restarted without its data, a process that died before it
        could enqueue); a job that is merely slow is not touched, and handlers ignore a second delivery."""
        await self.retrieval.start()
        await self.jobs.start()
        assert self.redis is not None
        if await self.redis.set(f"{self.settings.redis_prefix}lock:resume", b"1", nx=True, ex=60):
            now = utcnow()
            stale = now - timedelta(minutes=2), now - timedelta(seconds=self.settings.job_time_limit_seconds)
            await self.files.resume(queued_before=stale[0], started_before=stale[1])
            await self.exports.resume(queued_before=stale[0], started_before=stale[1])

    async def _housekeep(self) -> None:
        """Hourly: expired sessions out of the database, forgotten attempt counts out of memory."""
        while True:
            try:
                await self.users.purge_expired()
                if self.users.limits:
                    await self.users.limits.prune()
            except Exception:
                log.exception("housekeeping failed; trying again next time")
            await asyncio.sleep(HOUSEKEEPING_SECONDS)

    async def stop(self) -> None:
        if self._housekeeping:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await self.exports.stop()
        await self.jobs.stop()
        await self.chat.stop()
        await self.registry.aclose()
        await self.db.close()
        self.users.hashing.close()
        self.imports.close()
        if self.redis is not None:
            await self.redis.aclose()


def build_jobs(settings: Settings) -> JobRunner:
    """In this process, or on Celery workers when a broker is configured (scale mode)."""
    if settings.scale_mode and settings.broker_url:
        from convo.worker import celery_app

        return CeleryJobs(celery_app(settings))
    return InProcessJobs()


def build_bus(settings: Settings) -> tuple[StreamLog, CancelBus, Redis | None]:
    """Where answers in progress are shared: this process's memory, or Redis in scale mode."""
    budget = int(settings.stream_memory_mb * 1024 * 1024)
    if not settings.redis_url:
        return MemoryStreamLog(settings.stream_retention_seconds, budget), LocalCancelBus(), None
    # One quick retry (a pooled connection may have gone stale), not redis-py's default of ten with
    # growing pauses: callers fall back at once (memory, the database) and try again on their own.
    options = {"socket_connect_timeout": 2, "health_check_interval": 10, "retry": Retry(NoBackoff(), 1)}
    redis = Redis.from_url(settings.redis_url, socket_timeout=2, **options)
    # Blocking reads wait up to a heartbeat period; their socket timeout must be longer.
    reader = Redis.from_url(settings.redis_url, socket_timeout=settings.sse_ping_seconds + 5, **options)
    streams = RedisStreamLog(redis, reader, settings.redis_prefix, settings.stream_retention_seconds,
                             settings.stream_flush_ms / 1000, budget)
    return streams, RedisCancelBus(redis, settings.redis_prefix), redis


def build_embedder(settings: Settings) -> Embedder:
    if settings.embeddings_base_url:
        return OpenAIEmbeddings(settings.embeddings_base_url, settings.embeddings_model, settings.embeddings_api_key)
    return MiniLM()


def build_limits(settings: Settings) -> AuthLimits:
    def limiter(limit: int) -> MemoryLimiter:
        return MemoryLimiter(Backoff(limit, settings.login_window_seconds, settings.login_lock_seconds,
                                     settings.login_max_lock_seconds))

    return AuthLimits(account=limiter(settings.login_max_failures),
                      address=limiter(settings.login_address_max_failures),
                      signup=limiter(settings.signup_per_address))
