"""The vector index the database holds, on one user's N chunks: the first query (for exact vectors in
Python, loading the user's matrix), a query after one more chunk (the matrix is loaded again), warm
queries, and the matrix's memory. A new SQLite file, or DATABASE_URL: an empty database, migrated first.

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/convo_bench_vectors bench/vectors.py --chunks 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time

import numpy as np
from sqlalchemy import text

from convo.db import migrate
from convo.db.models import Attachment, Chunk, Thread, User, utcnow
from convo.db.session import Database
from convo.runtime.vectors import EmbeddedVectors, VectorIndex, VectorRow, vector_index


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


async def add_chunks(db: Database, index: VectorIndex, attachment: Attachment, n: int,
                     rng: np.random.Generator) -> None:
    async with db.write() as session:
        chunks = [Chunk(attachment_id=attachment.id, user_id=attachment.user_id, position=i, text="x", tokens=1,
                        length=1, created_at=attachment.created_at) for i in range(n)]
        session.add_all(chunks)
        await session.flush()
        await index.add(session, [VectorRow(c.id, c.user_id, attachment.id, v)
                                  for c, v in zip(chunks, unit(rng, n), strict=True)])


async def seed(db: Database, index: VectorIndex, chunks: int, rng: np.random.Generator) -> Attachment:
    now = utcnow()
    async with db.write() as session:
        user = User(email="bench@example.com", password_hash="!")
        session.add(user)
        await session.flush()
        thread = Thread(user_id=user.id, title="bench")
        session.add(thread)
        await session.flush()
        attachment = Attachment(user_id=user.id, thread_id=thread.id, filename="bench.txt", content_type="text/plain",
                                size=0, sha256="", storage_path="", status="ready", chunk_count=chunks,
                                created_at=now, updated_at=now)
        session.add(attachment)
    for start in range(0, chunks, 2000):
        await add_chunks(db, index, attachment, min(2000, chunks - start), rng)
    return attachment


async def timed(db: Database, index: VectorIndex, user_id: int, query: np.ndarray) -> float:
    started = time.perf_counter()
    async with db.read() as session:
        await index.search(session, user_id, query, 8, None)
    return (time.perf_counter() - started) * 1000


async def run(url: str, chunks: int) -> dict[str, object]:
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database(url)
    rng = np.random.default_rng(1)
    try:
        async with db.read() as session:
            index = await vector_index(session)
        attachment = await seed(db, index, chunks, rng)
        if not db.is_sqlite:  # as autovacuum soon does after inserts: index-only scans need the visibility map
            async with db.engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                    text("VACUUM ANALYZE chunk_vectors"))
        query = unit(rng, 1)[0]
        first = await timed(db, index, attachment.user_id, query)
        warm = [await timed(db, index, attachment.user_id, query) for _ in range(20)]
        await add_chunks(db, index, attachment, 1, rng)
        after_write = await timed(db, index, attachment.user_id, query)
        matrix = chunks * 384 * 4 if isinstance(index, EmbeddedVectors) else 0
        return {"index": index.description, "chunks": chunks, "first_query_ms": round(first, 1),
                "query_after_a_write_ms": round(after_write, 1), "warm_query_p50_ms": round(statistics.median(warm), 1),
                "matrix_mb_per_process": round(matrix / 2**20, 1)}
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=20_000)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    print(json.dumps(asyncio.run(run(url, args.chunks))))


if __name__ == "__main__":
    main()
