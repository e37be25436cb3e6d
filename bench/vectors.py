"""The vector index the database holds, on one user's N chunks: the first query (for exact vectors in
Python, loading the user's matrix), a query after one more chunk (the matrix is loaded again), warm
queries, and the matrix's memory. The database must be empty; it is migrated first.

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/convo_bench_vectors bench/vectors.py --chunks 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

import numpy as np
from sqlalchemy import text

from convo.db import migrate
from convo.db.session import Database
from convo.runtime.vectors import EmbeddedVectors, VectorIndex, VectorRow, vector_index


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


async def seed(db: Database, index: VectorIndex, chunks: int, rng: np.random.Generator) -> None:
    async with db.write() as session:
        await session.execute(text(
            "INSERT INTO users (id, email, name, password_hash, role, disabled, created_at) "
            "VALUES (1, 'bench@example.com', '', '!', 'user', false, now())"))
        await session.execute(text("INSERT INTO threads (id, user_id, title, created_at, updated_at) "
                                   "VALUES (1, 1, 'bench', now(), now())"))
        await session.execute(text(
            "INSERT INTO attachments (id, user_id, thread_id, filename, content_type, size, sha256, storage_path, "
            "status, chunk_count, created_at, updated_at) "
            "VALUES (1, 1, 1, 'bench.txt', 'text/plain', 0, '', '', 'ready', 0, now(), now())"))
    for start in range(0, chunks, 2000):
        n = min(2000, chunks - start)
        async with db.write() as session:
            ids = (await session.execute(text(
                "INSERT INTO chunks (attachment_id, user_id, position, text, tokens, length, created_at) "
                "SELECT 1, 1, g, 'x', 1, 1, now() FROM generate_series(1, :n) AS g RETURNING id"), {"n": n})).scalars()
            await index.add(session, [VectorRow(c, 1, 1, v) for c, v in zip(ids, unit(rng, n), strict=True)])


async def timed(db: Database, index: VectorIndex, query: np.ndarray) -> float:
    started = time.perf_counter()
    async with db.read() as session:
        await index.search(session, 1, query, 8, None)
    return (time.perf_counter() - started) * 1000


async def run(url: str, chunks: int) -> dict[str, object]:
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database(url)
    rng = np.random.default_rng(1)
    try:
        async with db.read() as session:
            index = await vector_index(session)
        await seed(db, index, chunks, rng)
        if not db.is_sqlite:  # as autovacuum soon does after inserts: index-only scans need the visibility map
            async with db.engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                    text("VACUUM ANALYZE chunk_vectors"))
        query = unit(rng, 1)[0]
        first = await timed(db, index, query)
        warm = [await timed(db, index, query) for _ in range(20)]
        async with db.write() as session:
            chunk = (await session.execute(text(
                "INSERT INTO chunks (attachment_id, user_id, position, text, tokens, length, created_at) "
                "VALUES (1, 1, 0, 'x', 1, 1, now()) RETURNING id"))).scalar_one()
            await index.add(session, [VectorRow(chunk, 1, 1, unit(rng, 1)[0])])
        after_write = await timed(db, index, query)
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
    print(json.dumps(asyncio.run(run(os.environ["DATABASE_URL"], args.chunks))))


if __name__ == "__main__":
    main()
