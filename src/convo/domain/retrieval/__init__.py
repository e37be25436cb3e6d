"""Retrieval over uploaded files: index an attachment's text, and find its best chunks for a query.

Ranking (documented with numbers in docs/retrieval.md):
- bm25: the keyword index's BM25 score.
- vector: cosine similarity of the query's embedding to the chunk's.
- hybrid (weighted fusion): candidates are the union of both top lists; each side is min-max
  normalised over the candidates, s = (w_b·bm25' + w_v·cos') / (w_b + w_v), with w_b = RAG_BM25_WEIGHT
  and w_v = RAG_VEC_WEIGHT.
- rrf (reciprocal rank fusion): s = w_b / (60 + rank_bm25) + w_v / (60 + rank_vector).
- Time decay: every score is multiplied by exp(-RAG_TIME_DECAY · age in days), so RAG_TIME_DECAY is a
  rate per day (0.01 halves the weight of a chunk 69 days older than another).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from convo import observability as obs
from convo.db.models import Attachment, Chunk, utcnow
from convo.db.session import Database
from convo.domain.retrieval.chunking import CHUNK_TOKENS, OVERLAP_TOKENS, chunk_text
from convo.domain.retrieval.chunking import Chunk as TextChunk
from convo.domain.retrieval.embeddings import Embedder, load_tokenizer
from convo.domain.retrieval.keyword import TermKeywords, query_terms, terms
from convo.runtime.vectors import VectorIndex, VectorRow, vector_index

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "bm25", "vector", "rrf"]
MODES: tuple[str, ...] = ("hybrid", "bm25", "vector", "rrf")
RRF_K = 60
MIN_CANDIDATES = 100


@dataclass
class Hit:
    chunk_id: int
    attachment_id: int
    filename: str
    text: str
    position: int
    score: float
    bm25_score: float | None
    vector_score: float | None
    created_at: datetime


@dataclass(frozen=True)
class Weights:
    bm25: float = 0.5
    vector: float = 0.5
    time_decay: float = 0.0  # per day


def _minmax(values: dict[int, float], ids: list[int]) -> dict[int, float]:
    """Scores scaled to [0, 1] over the candidates; a candidate missing on this side scores 0."""
    present = [values[i] for i in ids if i in values]
    if not present:
        return {i: 0.0 for i in ids}
    low, high = min(present), max(present)
    span = high - low
    return {i: ((values[i] - low) / span if span > 0 else 1.0) if i in values else 0.0 for i in ids}


def fuse(
    bm25: dict[int, float], vector: dict[int, float], *, mode: Mode, weights: Weights,
    bm25_order: list[int], vector_order: list[int],
) -> dict[int, float]:
    """Hybrid scores of the union of both candidate lists (formulas in the module docstring)."""
    ids = list(dict.fromkeys(bm25_order + vector_order))
    total = (weights.bm25 + weights.vector) or 1.0
    if mode == "rrf":
        rank_b = {c: r for r, c in enumerate(bm25_order, 1)}
        rank_v = {c: r for r, c in enumerate(vector_order, 1)}
        return {c: (weights.bm25 / (RRF_K + rank_b[c]) if c in rank_b else 0.0)
                + (weights.vector / (RRF_K + rank_v[c]) if c in rank_v else 0.0) for c in ids}
    nb, nv = _minmax(bm25, ids), _minmax(vector, ids)
    return {c: (weights.bm25 * nb[c] + weights.vector * nv[c]) / total for c in ids}


class Retrieval:
    def __init__(self, db: Database, embedder: Embedder, weights: Weights) -> None:
        self.db = db
        self.embedder = embedder
        self.weights = weights
        self.keywords = TermKeywords(db.is_sqlite)
        self._vectors: VectorIndex | None = None
        self._tokenizer = None

    async def start(self) -> None:
        """Picks the vector index the schema holds; call once the database is migrated."""
        async with self.db.read() as session:
            self._vectors = await vector_index(session)
        log.info("retrieval: %s", self._vectors.description)

    @property
    def vectors(self) -> VectorIndex:
        if self._vectors is None:
            raise RuntimeError("Retrieval.start() has not run")
        return self._vectors

    # -- indexing --------------------------------------------------------------------------------

    def _count(self, content: str) -> int:
        if self._tokenizer is None:
            # Counting without truncation: the chunker must see a paragraph's true length.
            self._tokenizer = load_tokenizer(max_tokens=1_000_000)
        return len(self._tokenizer.encode(content, add_special_tokens=False).ids)

    def prepare(self, content: str, *, embed: bool = True) -> tuple[list[TextChunk], np.ndarray | None]:
        """Chunks of a text and their embeddings. Blocking (tokenizer and model): run in a thread."""
        chunks = chunk_text(content, self._count, size=CHUNK_TOKENS, overlap=OVERLAP_TOKENS)
        vectors = self.embedder.embed([c.text for c in chunks]) if embed and chunks else None
        return chunks, vectors

    async def store(
        self, session: AsyncSession, attachment: Attachment, chunks: list[TextChunk], vectors: np.ndarray | None
    ) -> int:
        """Write the chunks with their keyword and vector entries, inside the caller's transaction."""
        now = utcnow()
        rows = [Chunk(attachment_id=attachment.id, user_id=attachment.user_id, position=c.position, text=c.text,
                      tokens=c.tokens, length=0, created_at=attachment.created_at or now) for c in chunks]
        words = [terms(c.text) for c in chunks]
        for row, w in zip(rows, words, strict=True):
            row.length = len(w)
        session.add_all(rows)
        await session.flush()
        await self.keywords.add(session, attachment.user_id, [(r.id, w) for r, w in zip(rows, words, strict=True)])
        if vectors is not None:
            await self.vectors.add(session, [VectorRow(r.id, attachment.user_id, attachment.id, vectors[i])
                                             for i, r in enumerate(rows)])
        return len(rows)

    # -- search ----------------------------------------------------------------------------------

    async def embed_query(self, q: str) -> np.ndarray:
        return (await asyncio.to_thread(self.embedder.embed, [q]))[0]

    async def search(
        self,
        user_id: int,
        q: str,
        *,
        k: int = 8,
        mode: Mode = "hybrid",
        attachment_ids: list[int] | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """The user's best `k` chunks for `q` (within `attachment_ids` when given), best first."""
        started = time.perf_counter()
        try:
            return await self._search(user_id, q, k, mode, attachment_ids, query_vector)
        finally:
            obs.RAG_RETRIEVAL.observe(time.perf_counter() - started)

    async def _search(
        self, user_id: int, q: str, k: int, mode: Mode, attachment_ids: list[int] | None,
        query_vector: np.ndarray | None,
    ) -> list[Hit]:
        if attachment_ids is not None and not attachment_ids:
            return []
        q_terms = query_terms(q)
        use_bm25 = mode != "vector"
        use_vector = mode != "bm25"
        if use_vector and query_vector is None:
            query_vector = await self.embed_query(q)
        depth = k if mode in ("bm25", "vector") else max(k, MIN_CANDIDATES)
        async with self.db.read() as session:
            bm25_top = await self.keywords.search(session, user_id, q_terms, depth, attachment_ids) if use_bm25 else []
            vector_top = (await self.vectors.search(session, user_id, query_vector, depth, attachment_ids)
                          if use_vector else [])
            bm25 = dict(bm25_top)
            vector = dict(vector_top)
            if use_bm25 and use_vector:
                # Exact scores on both sides for every candidate, so fusion compares like with like.
                vector.update(await self.vectors.scores(session, user_id, query_vector,
                                                        [c for c in bm25 if c not in vector]))
                bm25.update(await self.keywords.scores(session, user_id, q_terms,
                                                       [c for c in vector if c not in bm25]))
                scores = fuse(bm25, vector, mode=mode, weights=self.weights,
                              bm25_order=[c for c, _ in bm25_top], vector_order=[c for c, _ in vector_top])
            else:
                scores = dict(bm25_top or vector_top)
            if not scores:
                return []
            rows = (await session.execute(
                select(Chunk.id, Chunk.attachment_id, Chunk.text, Chunk.position, Chunk.created_at,
                       Attachment.filename)
                .join(Attachment, Attachment.id == Chunk.attachment_id)
                .where(Chunk.id.in_(list(scores)), Chunk.user_id == user_id)
            )).all()
        now = utcnow()
        hits = []
        for chunk_id, attachment_id, body, position, created_at, filename in rows:
            score = scores[chunk_id]
            if self.weights.time_decay > 0:
                age_days = max((now - created_at).total_seconds(), 0.0) / 86400
                score *= math.exp(-self.weights.time_decay * age_days)
            hits.append(Hit(chunk_id, attachment_id, filename, body, position, score, bm25.get(chunk_id),
                            vector.get(chunk_id), created_at))
        hits.sort(key=lambda h: (-h.score, h.chunk_id))
        return hits[:k]
