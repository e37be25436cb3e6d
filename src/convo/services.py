"""The running parts of one Convo process, built once from settings and shared by every request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

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
from convo.domain.users import Users
from convo.domain.versions import Versions
from convo.llm import tokens
from convo.llm.registry import Registry, build_registry
from convo.runtime.cancel import LocalCancelBus
from convo.runtime.jobs import InProcessJobs, JobRunner
from convo.runtime.streams import MemoryStreamLog


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
            users=Users(db, signup=settings.signup, session_days=settings.session_days),
            threads=Threads(db, registry),
            chat=chat,
            billing=billing,
            versions=Versions(db, chat),
            search=Search(db),
            jobs=jobs,
            retrieval=retrieval,
            files=files,
            exports=Exports(db, files.root, jobs, settings.data_dir / "exports", settings.export_sweep_seconds),
            imports=Imports(db, files, registry),
        )

    async def start(self) -> None:
        await self.chat.start(sole_process=True)
        await asyncio.to_thread(tokens.warm)
        await self.jobs.start()
        await self.files.resume()
        await self.files.sweep()
        await self.exports.start()

    async def stop(self) -> None:
        await self.exports.stop()
        await self.jobs.stop()
        await self.chat.stop()
        await self.registry.aclose()
        await self.db.close()


def build_embedder(settings: Settings) -> Embedder:
    if settings.embeddings_base_url:
        return OpenAIEmbeddings(settings.embeddings_base_url, settings.embeddings_model, settings.embeddings_api_key)
    return MiniLM()
