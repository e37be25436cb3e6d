"""Uploads below the API: what a sweep may delete while an upload of the same user commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from convo.db import migrate
from convo.db.models import Attachment, Thread, User
from convo.db.session import Database
from convo.domain.extraction import Limits
from convo.domain.files import Files
from tests.support import run_async


class NoJobs:
    """Ingestion plays no part here."""

    def register(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def enqueue(self, *args: Any, **kwargs: Any) -> None:
        pass


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_an_upload_that_commits_while_a_sweep_runs_keeps_its_original(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"
    migrate.upgrade(url)

    async def run() -> tuple[int, Attachment, Path, Path]:
        db = Database(url)
        try:
            async with db.write() as session:
                user = User(email="a@example.com", password_hash="x")
                session.add(user)
                await session.flush()
                thread = Thread(user_id=user.id)
                session.add(thread)
            files = Files(db, None, NoJobs(), tmp_path / "data", 1024 * 1024, Limits())  # type: ignore[arg-type]
            folder = files.root / str(user.id)
            folder.mkdir(parents=True)
            orphan = folder / "999999"  # its thread was deleted
            orphan.write_bytes(b"left behind")
            uploaded: list[Attachment] = []
            reads = db.read

            @asynccontextmanager
            async def read_then_upload() -> AsyncIterator[Any]:
                async with reads() as session:
                    yield session
                # Right after the sweep has read the rows it keeps, an upload commits and its file lands.
                monkeypatch.setattr(db, "read", reads)
                uploaded.append(await files.upload(user, thread.id, "tides.txt", _once(b"High water at noon.")))

            monkeypatch.setattr(db, "read", read_then_upload)
            removed = await files.sweep(user.id)
            return removed, uploaded[0], files.root, orphan
        finally:
            await db.close()

    removed, attachment, root, orphan = run_async(run())
    assert (root / attachment.storage_path).read_bytes() == b"High water at noon."
    assert not orphan.exists() and removed == 1
