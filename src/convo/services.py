"""The running parts of one Convo process, built once from settings and shared by every request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from convo.config import Settings
from convo.db.session import Database
from convo.domain.chat import Chat
from convo.domain.search import Search
from convo.domain.threads import Threads
from convo.domain.users import Users
from convo.domain.versions import Versions
from convo.llm import tokens
from convo.llm.registry import Registry, build_registry
from convo.runtime.cancel import LocalCancelBus
from convo.runtime.streams import MemoryStreamLog


@dataclass
class Services:
    settings: Settings
    db: Database
    registry: Registry
    users: Users
    threads: Threads
    chat: Chat
    versions: Versions
    search: Search

    @classmethod
    def build(cls, settings: Settings) -> Services:
        tokens.configure(settings.tiktoken_dir)
        db = Database(settings.db_url)
        registry = build_registry(settings)
        streams = MemoryStreamLog(settings.stream_retention_seconds)
        chat = Chat(db, registry, streams, LocalCancelBus(), settings)
        return cls(
            settings=settings,
            db=db,
            registry=registry,
            users=Users(db, signup=settings.signup, session_days=settings.session_days),
            threads=Threads(db, registry),
            chat=chat,
            versions=Versions(db, chat),
            search=Search(db),
        )

    async def start(self) -> None:
        await self.chat.start(sole_process=True)
        await asyncio.to_thread(tokens.warm)

    async def stop(self) -> None:
        await self.chat.stop()
        await self.registry.aclose()
        await self.db.close()
