"""`convo rag-eval`: index a BEIR-format dataset through the app's own ingestion and retrieval code,
then score the rankings (nDCG@10, recall@100, MRR@10) and time them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from convo.db.models import Attachment, Thread, User, utcnow
from convo.db.session import Database
from convo.domain.retrieval import Mode, Retrieval, Weights
from convo.domain.retrieval.embeddings import Embedder

# Chunks fetched per query: documents are ranked by their best chunk, and recall@100 needs 100 documents.
CHUNKS_PER_QUERY = 300


def load_dataset(folder: Path, split: str) -> tuple[dict[str, dict], dict[str, str], dict[str, dict[str, int]]]:
    corpus = {}
    with (folder / "corpus.jsonl").open() as f:
        for line in f:
            doc = json.loads(line)
            corpus[str(doc["_id"])] = doc
    queries = {}
    with (folder / "queries.jsonl").open() as f:
        for line in f:
            query = json.loads(line)
            queries[str(query["_id"])] = query["text"]
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        qrels_path = folder / f"qrels_{split}.tsv"
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open() as f:
        for n, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or (n == 0 and not parts[2].lstrip("-").isdigit()):
                continue
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return corpus, {q: t for q, t in queries.items() if q in qrels}, qrels


def ndcg(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    dcg = sum((2 ** relevant.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((r for r in relevant.values() if r > 0), reverse=True)[:k]
    idcg = sum((2 ** r - 1) / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    positives = {d for d, r in relevant.items() if r > 0}
    return len(positives & set(ranked[:k])) / len(positives) if positives else 0.0


def mrr(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if relevant.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def _embed_cached(embedder: Embedder, texts: list[str], cache_dir: Path | None) -> np.ndarray:
    """Embeddings of the chunks, kept on disk by the model and the exact texts, so evaluating another
    mode or weighting of the same corpus does not embed it again (the index time reported then
    excludes embedding, which `embedded: false` says)."""
    if cache_dir is None:
        return embedder.embed(texts)
    digest = hashlib.sha256(embedder.name.encode())
    for t in texts:
        digest.update(t.encode() + b"\x00")
    path = cache_dir / f"{digest.hexdigest()[:32]}.npy"
    if path.exists():
        return np.load(path)
    vectors = embedder.embed(texts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


async def _run(folder: Path, mode: Mode, split: str, k: int, db_url: str, embedder: Embedder,
               weights: Weights, cache_dir: Path | None) -> dict[str, Any]:
    from convo.db import migrate

    await asyncio.to_thread(migrate.upgrade, db_url)
    corpus, queries, qrels = load_dataset(folder, split)
    db = Database(db_url)
    retrieval = Retrieval(db, embedder, weights)
    try:
        await retrieval.start()
        now = utcnow()
        async with db.write() as session:
            user = User(email=f"rag-eval-{time.time_ns()}@localhost", name="rag-eval", password_hash="!")
            session.add(user)
            await session.flush()
            thread = Thread(user_id=user.id, title=f"rag-eval {folder.name}")
            session.add(thread)
            await session.flush()
            attachments = [Attachment(user_id=user.id, thread_id=thread.id, filename=doc_id, content_type="text/plain",
                                      size=0, sha256="", storage_path="", status="processing", chunk_count=0,
                                      created_at=now, updated_at=now) for doc_id in corpus]
            session.add_all(attachments)
        doc_of = {a.id: a.filename for a in attachments}

        started = time.perf_counter()
        embed = mode != "bm25"
        texts = [f"{doc.get('title', '')}\n\n{doc.get('text', '')}".strip() for doc in corpus.values()]
        # The app's ingestion, one document at a time, but embedding many documents' chunks per call.
        prepared = [(await asyncio.to_thread(retrieval.prepare, t, embed=False))[0] for t in texts]
        vectors = None
        embed_seconds = 0.0
        if embed:
            flat = [c.text for chunks in prepared for c in chunks]
            embed_started = time.perf_counter()
            vectors = await asyncio.to_thread(_embed_cached, embedder, flat, cache_dir)
            embed_seconds = time.perf_counter() - embed_started
        offset = 0
        for start in range(0, len(attachments), 500):
            async with db.write() as session:
                for attachment, chunks in zip(attachments[start:start + 500], prepared[start:start + 500],
                                              strict=True):
                    part = vectors[offset:offset + len(chunks)] if vectors is not None else None
                    offset += len(chunks)
                    attachment.chunk_count = await retrieval.store(session, attachment, chunks, part)
        index_seconds = time.perf_counter() - started
        scores: dict[str, list[float]] = {"ndcg": [], "recall": [], "mrr": []}
        latencies = []
        for query_id, query in queries.items():
            began = time.perf_counter()
            hits = await retrieval.search(user.id, query, k=CHUNKS_PER_QUERY, mode=mode)
            latencies.append((time.perf_counter() - began) * 1000)
            ranked = list(dict.fromkeys(doc_of[h.attachment_id] for h in hits))
            relevant = qrels[query_id]
            scores["ndcg"].append(ndcg(ranked, relevant, k))
            scores["recall"].append(recall(ranked, relevant, 100))
            scores["mrr"].append(mrr(ranked, relevant, k))
        latencies.sort()
        return {
            "dataset": folder.name,
            "mode": mode,
            "split": split,
            f"ndcg@{k}": round(statistics.fmean(scores["ndcg"]), 4),
            "recall@100": round(statistics.fmean(scores["recall"]), 4),
            f"mrr@{k}": round(statistics.fmean(scores["mrr"]), 4),
            "docs": len(corpus),
            "chunks": sum(len(c) for c in prepared),
            "queries": len(queries),
            "index_seconds": round(index_seconds, 2),
            "embed_seconds": round(embed_seconds, 2),
            "query_p50_ms": round(latencies[len(latencies) // 2], 2),
            "query_p95_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))], 2),
            "embedder": embedder.name if embed else None,
            "weights": {"bm25": weights.bm25, "vector": weights.vector},
        }
    finally:
        await db.close()


def run_eval(folder: Path, *, mode: Mode, split: str, k: int, embedder: Embedder, weights: Weights,
             db_url: str | None = None, cache_dir: Path | None = None) -> dict[str, Any]:
    """Index into `db_url` (default: a fresh SQLite file in a temporary folder) and evaluate."""
    if db_url:
        return asyncio.run(_run(folder, mode, split, k, db_url, embedder, weights, cache_dir))
    with tempfile.TemporaryDirectory(prefix="convo-rag-eval-") as tmp:
        return asyncio.run(_run(folder, mode, split, k, f"sqlite+aiosqlite:///{tmp}/eval.db", embedder, weights,
                                cache_dir))
