"""The vector index: chunk embeddings by owner, searched by cosine similarity.

Two implementations with one small interface: `EmbeddedVectors` keeps float32 blobs (SQLite, or a
PostgreSQL without pgvector) and scores them with numpy against a per-user matrix cached in memory;
`PgVectors` uses pgvector with an HNSW index. `vector_index` picks the one the schema was migrated
for. Rows go away with their chunk (ON DELETE CASCADE on every backend).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class VectorRow:
    chunk_id: int
    user_id: int
    attachment_id: int
    vector: np.ndarray


class VectorIndex(Protocol):
    description: str  # what retrieval uses, for the start-up log

    async def add(self, session: AsyncSession, rows: list[VectorRow]) -> None: ...

    async def search(
        self, session: AsyncSession, user_id: int, query: np.ndarray, k: int, attachment_ids: list[int] | None
    ) -> list[tuple[int, float]]:
        """The `k` most similar chunks of the user (within `attachment_ids` if given), best first."""
        ...

    async def scores(
        self, session: AsyncSession, user_id: int, query: np.ndarray, chunk_ids: list[int]
    ) -> dict[int, float]:
        """The cosine of each of these chunks (the user's only) to the query."""
        ...


@dataclass
class _Matrix:
    signature: tuple[int, int]
    chunk_ids: np.ndarray
    attachment_ids: np.ndarray
    vectors: np.ndarray
    rows: dict[int, int]


class EmbeddedVectors:
    """Brute force over the user's vectors: exact, and at 384 float32 numbers per chunk a user with
    100,000 chunks is a 150 MB matrix in each process, scored in about 40 ms (bench/vectors.py). The
    cached matrix is checked against (count, max chunk id) on every query; chunk ids are never reused
    (AUTOINCREMENT on SQLite, a sequence on PostgreSQL), so any insert or delete, by any process,
    changes that signature."""

    description = "exact vectors in Python, no pgvector"

    def __init__(self) -> None:
        self._cache: dict[int, _Matrix] = {}
        self._lock = threading.Lock()

    async def add(self, session: AsyncSession, rows: list[VectorRow]) -> None:
        if not rows:
            return
        await session.execute(
            text("INSERT INTO chunk_vectors (chunk_id, user_id, attachment_id, embedding) "
                 "VALUES (:c, :u, :a, :e)"),
            [{"c": r.chunk_id, "u": r.user_id, "a": r.attachment_id,
              "e": np.asarray(r.vector, dtype=np.float32).tobytes()} for r in rows],
        )

    async def _matrix(self, session: AsyncSession, user_id: int) -> _Matrix:
        count, top = (await session.execute(
            text("SELECT count(*), coalesce(max(chunk_id), 0) FROM chunk_vectors WHERE user_id = :u"),
            {"u": user_id},
        )).one()
        cached = self._cache.get(user_id)
        if cached is not None and cached.signature == (count, top):
            return cached
        result = await session.execute(
            text("SELECT chunk_id, attachment_id, embedding FROM chunk_vectors WHERE user_id = :u ORDER BY chunk_id"),
            {"u": user_id},
        )
        rows = result.all()

        def build() -> _Matrix:
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            attachments = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
            vectors = (np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1)
                       if rows else np.zeros((0, 0), dtype=np.float32))
            # Signed by the rows it holds, not the count above: a write committed between the two
            # statements must not leave a matrix that a later, equal count would pass as current.
            signature = (len(rows), int(ids[-1]) if rows else 0)
            return _Matrix(signature, ids, attachments, vectors, {int(c): i for i, c in enumerate(ids)})

        matrix = await asyncio.to_thread(build)
        with self._lock:
            self._cache[user_id] = matrix
        return matrix

    async def search(
        self, session: AsyncSession, user_id: int, query: np.ndarray, k: int, attachment_ids: list[int] | None
    ) -> list[tuple[int, float]]:
        matrix = await self._matrix(session, user_id)
        if not len(matrix.chunk_ids):
            return []

        def score() -> list[tuple[int, float]]:
            sims = matrix.vectors @ query.astype(np.float32)
            if attachment_ids is not None:
                sims = np.where(np.isin(matrix.attachment_ids, attachment_ids), sims, -np.inf)
            n = min(k, len(sims))
            top = np.argpartition(-sims, n - 1)[:n]
            top = top[np.argsort(-sims[top])]
            return [(int(matrix.chunk_ids[i]), float(sims[i])) for i in top if np.isfinite(sims[i])]

        return await asyncio.to_thread(score) if len(matrix.chunk_ids) > 20_000 else score()

    async def scores(
        self, session: AsyncSession, user_id: int, query: np.ndarray, chunk_ids: list[int]
    ) -> dict[int, float]:
        matrix = await self._matrix(session, user_id)
        rows = [(c, matrix.rows[c]) for c in chunk_ids if c in matrix.rows]
        if not rows:
            return {}
        sims = matrix.vectors[[i for _, i in rows]] @ query.astype(np.float32)
        return {c: float(s) for (c, _), s in zip(rows, sims, strict=True)}


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(vector, dtype=np.float32)) + "]"


class PgVectors:
    """pgvector: cosine distance (`<=>`) over an HNSW index."""

    description = "pgvector HNSW"

    # HNSW returns up to ef_search candidates before filters; a wide beam keeps filtered searches full.
    EF_SEARCH = 200

    async def add(self, session: AsyncSession, rows: list[VectorRow]) -> None:
        if not rows:
            return
        await session.execute(
            text("INSERT INTO chunk_vectors (chunk_id, user_id, attachment_id, embedding) "
                 "VALUES (:c, :u, :a, CAST(:e AS vector))"),
            [{"c": r.chunk_id, "u": r.user_id, "a": r.attachment_id, "e": _literal(r.vector)} for r in rows],
        )

    async def search(
        self, session: AsyncSession, user_id: int, query: np.ndarray, k: int, attachment_ids: list[int] | None
    ) -> list[tuple[int, float]]:
        await session.execute(text(f"SET LOCAL hnsw.ef_search = {max(self.EF_SEARCH, min(k, 1000))}"))
        where = "user_id = :u"
        params: dict[str, object] = {"u": user_id, "q": _literal(query), "k": k}
        if attachment_ids is not None:
            where += " AND attachment_id = ANY(:a)"
            params["a"] = list(attachment_ids)
        rows = await session.execute(
            text(f"SELECT chunk_id, 1 - (embedding <=> CAST(:q AS vector)) FROM chunk_vectors WHERE {where} "
                 "ORDER BY embedding <=> CAST(:q AS vector) LIMIT :k"),
            params,
        )
        return [(int(c), float(s)) for c, s in rows]

    async def scores(
        self, session: AsyncSession, user_id: int, query: np.ndarray, chunk_ids: list[int]
    ) -> dict[int, float]:
        if not chunk_ids:
            return {}
        rows = await session.execute(
            text("SELECT chunk_id, 1 - (embedding <=> CAST(:q AS vector)) FROM chunk_vectors "
                 "WHERE user_id = :u AND chunk_id IN :ids").bindparams(bindparam("ids", expanding=True)),
            {"u": user_id, "q": _literal(query), "ids": list(chunk_ids)},
        )
        return {int(c): float(s) for c, s in rows}


async def vector_index(session: AsyncSession) -> VectorIndex:
    """pgvector where migration 0003 made `embedding` a `vector` column, else blobs searched in Python.
    Decided by the column, not by the extension: a PostgreSQL that gains pgvector later keeps its
    blobs until they are converted (docs/retrieval.md)."""
    if session.get_bind().dialect.name != "postgresql":
        return EmbeddedVectors()
    column_type = await session.scalar(text(
        "SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = 'chunk_vectors'::regclass AND a.attname = 'embedding'"))
    return PgVectors() if column_type == "vector" else EmbeddedVectors()
