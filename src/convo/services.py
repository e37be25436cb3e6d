"""The running parts of one Convo process, built once from settings and shared by every request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from convo.config import Settings
from convo.db.session import Database
from convo.domain.billing import Billing
from convo.domain.chat import Chat
from convo.domain.exports import Exports
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
from convo.runtime.cancel import LocalCancelBus
from convo.runtime.jobs import InProcessJobs, JobRunner
from convo.runtime.pool import BoundedPool
from convo.runtime.ratelimit import Backoff, MemoryLimiter
from convo.runtime.streams import MemoryStreamLog

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
    _housekeeping: asyncio.Task[None] | None = field(default=None, init=False)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        tokens.configure(settings.tiktoken_dir)
        db = Database(settings.db_url)
        registry = build_registry(settings)
        streams = MemoryStreamLog(settings.stream_retention_seconds)
        billing = Billing(db, settings.daily_cost_budget)
        chat = Chat(db, registry, streams, LocalCancelBus(), settings, billing)
        jobs = InProcessJobs()
        retrieval = Retrieval(db, build_embedder(settings), Weights(
            settings.rag_bm25_weight, settings.rag_vec_weight, settings.rag_time_decay))
        files = Files(db, retrieval, jobs, settings.data_dir, settings.max_upload_bytes)
        chat.grounder = Grounder(files)
        return cls(
            settings=settings,
            db=db,
            registry=registry,
            users=Users(db, signup=settings.signup, session_days=settings.session_days,
                        hashing=BoundedPool("hash", threads=settings.hash_threads, queue=8 * settings.hash_threads),
                        limits=build_limits(settings)),
            threads=Threads(db, registry),
            chat=chat,
            billing=billing,
            versions=Versions(db, chat),
            search=Search(db),
            jobs=jobs,
            retrieval=retrieval,
            files=files,
            exports=Exports(db, files.root, jobs, settings.data_dir / "exports"),
            imports=Imports(db, files, registry),
        )

    async def start(self) -> None:
        await self.chat.start(sole_process=True)
        await asyncio.to_thread(tokens.warm)
        await self.jobs.start()
        await self.files.resume()
        await self.files.sweep()
        await self.exports.resume()
        await self.exports.sweep()
        self._housekeeping = asyncio.create_task(self._housekeep())

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
        await self.jobs.stop()
        await self.chat.stop()
        await self.registry.aclose()
        await self.db.close()
        self.users.hashing.close()


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
