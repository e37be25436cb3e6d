"""Search at scale: generate N realistic messages into SQLite and PostgreSQL, build the index, time queries.

    .venv/bin/python bench/search.py                        # 1,000,000 messages, both engines
    .venv/bin/python bench/search.py --messages 100000 --engines sqlite
    DATABASE_URL=postgresql+asyncpg://... bench/search.py   # an existing server instead of pgserver

Messages are written straight into the schema of migration 0001 (executemany / COPY, not the API), then
the search migration is applied: its backfill is the index build, so "index build" is what an upgrade
of an existing installation costs. Queries go through the same `Search` class the API uses (SQL,
hydration and snippets), for random users, in classes: common words, rare words, two words, phrases,
prefixes, CJK. Prints p50/p95/p99 per class, index build time and size, and ratios between engines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from convo.db import migrate
from convo.db.models import User
from convo.db.session import Database
from convo.domain.search import Search

TECH_TEXT = """python javascript typescript rust golang docker kubernetes postgres sqlite redis nginx linux
kernel memory thread process async await function class module package import export error exception
stack trace debug logging metrics latency throughput cache index query database schema migration table
column transaction commit rollback deploy deployment server client request response header cookie token
session login password encryption certificate network socket timeout retry queue worker celery batch
stream buffer parser compiler runtime garbage collector pointer reference string integer float array
vector matrix tensor model training inference embedding tokenizer prompt context window gradient loss
optimizer learning rate epoch dataset benchmark test fixture mock assert coverage refactor review merge
branch rebase conflict pull request issue release version changelog license documentation tutorial
example recipe chicken pasta tomato garlic onion butter flour sugar oven bake minutes salt pepper
travel flight hotel booking museum beach mountain train ticket passport weather rain sunny winter summer
budget invoice payment salary meeting calendar deadline project manager team hiring interview resume
essay paragraph summary translate grammar sentence poem story character chapter novel author history
physics chemistry biology equation theorem proof integral derivative probability statistics regression"""
FUNCTION_WORDS = "the a to of and is in it for that you this with on be are not can"
ACCENTED_TEXT = "café naïve résumé Zürich crème brûlée façade São Paulo Ångström Dvořák Łódź jalapeño piñata"
CJK_TEXT = (
    "東京 大阪 京都 北海道 新幹線 旅行 天気 料理 寿司 ラーメン 会議 資料 プログラム データベース "
    "北京 上海 烤鸭 火锅 学习 工作 电脑 手机 数据 模型 "
    "서울 부산 비빔밥 김치 회의 프로그램 데이터 여행 날씨 공부"
)
TECH, ACCENTED, CJK = TECH_TEXT.split(), ACCENTED_TEXT.split(), CJK_TEXT.split()

CJK_TAILS = [
    "に行きました",
    "について教えて",
    "はどうですか",
    "的问题",
    "怎么样",
    "에서",
    "을 먹었어요",
    "는 어때요",
]


def make_vocabulary(rng: random.Random, size: int) -> list[str]:
    """Real words first (they get the frequent ranks), then pronounceable made-up ones."""
    onsets = [*"bcdfghjklmnprstvwz", "br", "cr", "dr", "fr", "gr", "pl", "pr", "st", "tr", "ch", "sh", "th"]
    vowels = [*"aeiou", "ai", "ea", "ou", "io"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng"]
    words = list(dict.fromkeys(TECH))
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(1, 3)))
        word += rng.choice(codas)
        if word not in seen and len(word) > 2:
            seen.add(word)
            words.append(word)
    # Function words at the very top, as in real text.
    return FUNCTION_WORDS.split() + words


@dataclass
class Corpus:
    users: int
    threads: list[tuple[int, int, str, str]] = field(default_factory=list)  # id, user, title, created
    vocab: list[str] = field(default_factory=list)


def generate(n: int, users: int, seed: int = 7):
    """Yield chunks of message rows; fills `corpus.threads` as it goes."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    corpus = Corpus(users=users, vocab=make_vocabulary(rng, 40_000))
    vocab = np.array(corpus.vocab, dtype=object)
    ranks = np.arange(1, len(vocab) + 1)
    weights = 1.0 / ranks**1.05
    weights /= weights.sum()
    start = datetime.now(UTC) - timedelta(days=365)
    step = timedelta(days=365) / n
    message_id, thread_id, in_thread, user = 0, 0, 0, 1
    chunk_size = 50_000

    def rows(count: int):
        nonlocal message_id, thread_id, in_thread, user
        lengths = np.where(
            nrng.random(count) < 0.5, nrng.integers(4, 30, count), nrng.integers(20, 120, count)
        )
        words = nrng.choice(len(vocab), size=int(lengths.sum()), p=weights)
        out = []
        offset = 0
        for i in range(count):
            length = int(lengths[i])
            text = " ".join(vocab[words[offset : offset + length]])
            offset += length
            roll = rng.random()
            if roll < 0.03:
                text += " " + " ".join(rng.sample(ACCENTED, 2))
            elif roll < 0.05:
                text = rng.choice(CJK) + rng.choice(CJK_TAILS) + " " + rng.choice(CJK) + rng.choice(CJK_TAILS)
            if in_thread == 0:
                thread_id += 1
                user = rng.randint(1, users)
                in_thread = rng.randint(4, 40)
                created = (start + step * message_id).strftime("%Y-%m-%d %H:%M:%S.%f")
                corpus.threads.append((thread_id, user, " ".join(text.split()[:5])[:300], created))
            in_thread -= 1
            message_id += 1
            role = "user" if in_thread % 2 == 0 else "assistant"
            created = (start + step * message_id).strftime("%Y-%m-%d %H:%M:%S.%f")
            out.append((message_id, thread_id, user, role, text, created))
        return out

    def chunks():
        done = 0
        while done < n:
            count = min(chunk_size, n - done)
            yield rows(count)
            done += count

    return corpus, chunks()


USER_SQL = (
    "INSERT INTO users (id, email, name, password_hash, role, disabled, created_at) "
    "VALUES ({p}, {p}, '', 'x', 'user', false, '2025-01-01 00:00:00')"
)


def load_sqlite(path: Path, corpus: Corpus, chunks) -> float:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.executemany(USER_SQL.format(p="?"), [(u, f"u{u}@example.com") for u in range(1, corpus.users + 1)])
    started = time.perf_counter()
    threads_done = 0
    for chunk in chunks:
        new_threads = corpus.threads[threads_done:]
        threads_done = len(corpus.threads)
        conn.executemany(
            "INSERT INTO threads (id, user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            [(t, u, title, c, c) for t, u, title, c in new_threads],
        )
        conn.executemany(
            "INSERT INTO messages (id, thread_id, user_id, role, content, status, meta, event_seq, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'complete', '{}', 0, ?, ?)",
            [(*row, row[-1]) for row in chunk],
        )
        conn.commit()
    conn.close()
    return time.perf_counter() - started


def load_postgres(url: str, corpus: Corpus, chunks) -> float:
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(url.replace("postgresql+asyncpg://", "postgresql://")) as conn:
        conn.execute("SET synchronous_commit = off")
        with conn.cursor() as cur:
            cur.executemany(
                USER_SQL.format(p="%s"), [(u, f"u{u}@example.com") for u in range(1, corpus.users + 1)]
            )
        threads_done = 0
        for chunk in chunks:
            new_threads = corpus.threads[threads_done:]
            threads_done = len(corpus.threads)
            with conn.cursor() as cur:
                with cur.copy("COPY threads (id, user_id, title, created_at, updated_at) FROM STDIN") as copy:
                    for t, u, title, c in new_threads:
                        copy.write_row((t, u, title, c + "+00", c + "+00"))
                with cur.copy(
                    "COPY messages (id, thread_id, user_id, role, content, status, meta, event_seq, created_at, "
                    "updated_at) FROM STDIN"
                ) as copy:
                    for mid, tid, uid, role, text, c in chunk:
                        copy.write_row((mid, tid, uid, role, text, "complete", "{}", 0, c + "+00", c + "+00"))
            conn.commit()
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE threads")
        conn.execute("VACUUM ANALYZE messages")
    return time.perf_counter() - started


def make_queries(
    corpus: Corpus, sample_texts: list[str], per_class: int, seed: int = 11
) -> dict[str, list[str]]:
    rng = random.Random(seed)
    vocab = corpus.vocab
    common = vocab[40:300]  # frequent content words (ranks below the function words)
    medium = vocab[300:3000]
    rare = vocab[8000:40000]
    latin = [t for t in sample_texts if t.isascii()]
    phrases = []
    while len(phrases) < per_class:
        words = rng.choice(latin).split()
        if len(words) >= 3:
            i = rng.randrange(len(words) - 1)
            phrases.append(f'"{words[i]} {words[i + 1]}"')
    return {
        "common word": [rng.choice(common) for _ in range(per_class)],
        "rare word": [rng.choice(rare) for _ in range(per_class)],
        "two words": [f"{rng.choice(common)} {rng.choice(medium)}" for _ in range(per_class)],
        "phrase": phrases,
        "prefix": [rng.choice([w for w in medium if len(w) >= 5])[:4] + "*" for _ in range(per_class)],
        "accented": [
            rng.choice(["cafe", "creme brulee", "zurich", "resume", "naive", "Łódź"])
            for _ in range(per_class)
        ],
        "CJK": [rng.choice(CJK) + rng.choice(["", " " + rng.choice(CJK)]) for _ in range(per_class)],
    }


async def run_queries(
    url: str, users: int, queries: dict[str, list[str]], seed: int = 5
) -> dict[str, list[float]]:
    rng = random.Random(seed)
    db = Database(url)
    search = Search(db)
    timings: dict[str, list[float]] = {}
    hits: dict[str, int] = {}
    try:
        # Warm up as a server that has been running would be: every query once, untimed, for another
        # user. (On these machines the kernel also reclaims idle page cache, so a cold file is slow.)
        for items in queries.values():
            for q in items:
                await search.search(User(id=rng.randint(1, users)), q)
        for kind, items in queries.items():
            timings[kind] = []
            hits[kind] = 0
            for q in items:
                user = User(id=rng.randint(1, users))
                started = time.perf_counter()
                found, _ = await search.search(user, q, limit=20)
                timings[kind].append((time.perf_counter() - started) * 1000)
                hits[kind] += bool(found)
    finally:
        await db.close()
    for kind in list(timings):
        timings[kind + " (hit rate)"] = [hits[kind] / len(queries[kind])]
    return timings


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def pg_server_url(keep: Path | None = None, shared_buffers: str = "") -> tuple[str, object | None]:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, None
    import pgserver
    from pgserver._commands import pg_ctl

    folder = keep / "pgdata" if keep else tempfile.mkdtemp(prefix="cvbench")
    server = pgserver.get_server(folder, cleanup_mode="stop" if keep else "delete")
    if shared_buffers and server.psql("SHOW shared_buffers;").split()[2] != shared_buffers:
        # pgserver starts with PostgreSQL's 128 MB; a server set up for its machine gives more.
        server.psql(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}';")
        pg_ctl(["-w", "-l", str(server.log), "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    if not (keep and (keep / "built").exists()):
        server.psql("CREATE DATABASE convo_bench;")
    uri = server.get_uri().replace("/postgres?", "/convo_bench?")
    return uri.replace("postgresql://", "postgresql+asyncpg://"), server


def sqlite_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.stat().st_size


def bench_engine(engine: str, args: argparse.Namespace) -> dict[str, object]:
    corpus, chunks = generate(args.messages, args.users)
    samples: list[str] = []

    def sampled(chunks):
        for chunk in chunks:
            samples.extend(row[4] for row in chunk[:: max(1, len(chunk) // 200)])
            yield chunk

    result: dict[str, object] = {"engine": engine}
    server = None
    keep = Path(args.keep) / engine if args.keep else None
    if keep is not None and (keep / "built").exists():
        # A kept database from an earlier run: only the queries are timed (samples are regenerated).
        for _ in sampled(chunks):
            pass
        if engine == "sqlite":
            url = f"sqlite+aiosqlite:///{keep / 'convo.db'}"
        else:
            url, server = pg_server_url(keep, args.pg_shared_buffers)
        result.update(load_s=0.0, index_s=0.0, index_mb=0.0, data_mb=0.0)
        queries = make_queries(corpus, samples, args.queries)
        result["timings"] = asyncio.run(run_queries(url, args.users, queries))
        return result
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    if engine == "sqlite":
        folder = keep or Path(tempfile.mkdtemp(prefix="cvbench"))
        path = folder / "convo.db"
        url = f"sqlite+aiosqlite:///{path}"
        migrate.upgrade(url, "0001")
        result["load_s"] = load_sqlite(path, corpus, sampled(chunks))
        before = sqlite_size(path)
        started = time.perf_counter()
        migrate.upgrade(url)
        result["index_s"] = time.perf_counter() - started
        result["index_mb"] = (sqlite_size(path) - before) / 1e6
        result["data_mb"] = before / 1e6
    else:
        url, server = pg_server_url(keep, args.pg_shared_buffers)
        import psycopg

        migrate.upgrade(url, "0001")
        result["load_s"] = load_postgres(url, corpus, sampled(chunks))
        started = time.perf_counter()
        migrate.upgrade(url)
        result["index_s"] = time.perf_counter() - started
        with psycopg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE search_docs")
            result["index_mb"] = (
                conn.execute("SELECT pg_total_relation_size('search_docs')").fetchone()[0] / 1e6
            )
            result["gin_mb"] = (
                conn.execute("SELECT pg_relation_size('ix_search_docs_tsv')").fetchone()[0] / 1e6
            )
            result["data_mb"] = conn.execute("SELECT pg_total_relation_size('messages')").fetchone()[0] / 1e6
    if keep is not None:
        (keep / "built").touch()
    queries = make_queries(corpus, samples, args.queries)
    result["timings"] = asyncio.run(run_queries(url, args.users, queries))
    if server is not None:
        if keep is None:
            server.cleanup()
    elif engine == "sqlite" and keep is None:
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    return result


def report(results: list[dict[str, object]], args: argparse.Namespace) -> None:
    print(
        f"\nSearch benchmark: {args.messages:,} messages, {args.users} users, {args.queries} queries a class, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; PostgreSQL shared_buffers "
        f"{args.pg_shared_buffers or 'default (128MB)'}\n"
    )
    print(f"{'engine':<11}{'load s':>9}{'index s':>9}{'index MB':>10}{'data MB':>9}")
    for r in results:
        print(
            f"{r['engine']:<11}{r['load_s']:>9.1f}{r['index_s']:>9.1f}{r['index_mb']:>10.1f}{r['data_mb']:>9.1f}"
        )
    print()
    header = f"{'query class':<14}" + "".join(
        f"{r['engine'] + ' p50/p95/p99 ms':>30}{'hits':>6}" for r in results
    )
    print(header)
    classes = [k for k in results[0]["timings"] if not k.endswith("(hit rate)")]  # type: ignore[union-attr]
    everything: dict[str, list[float]] = {r["engine"]: [] for r in results}  # type: ignore[misc]
    for kind in classes:
        line = f"{kind:<14}"
        for r in results:
            values = r["timings"][kind]  # type: ignore[index]
            everything[r["engine"]] += values  # type: ignore[index]
            rate = r["timings"][kind + " (hit rate)"][0]  # type: ignore[index]
            figures = (
                f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f} / {percentile(values, 99):.1f}"
            )
            line += f"{figures:>30}{rate:>6.0%}"
        print(line)
    line = f"{'all':<14}"
    for r in results:
        values = everything[r["engine"]]  # type: ignore[index]
        line += f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f} / {percentile(values, 99):.1f}".rjust(
            30
        )
        line += f"{'':>6}"
    print(line)
    if len(results) == 2:
        a, b = results
        pa = percentile(everything[a["engine"]], 95)  # type: ignore[index]
        pb = percentile(everything[b["engine"]], 95)  # type: ignore[index]
        line = f"\np95 {b['engine']}/{a['engine']}: {pb / pa:.2f}x"
        if a["index_s"] and b["index_s"]:  # not timed when --keep reused the databases
            line += (
                f"; index build {b['engine']}/{a['engine']}: {b['index_s'] / a['index_s']:.2f}x"  # type: ignore[operator]
                f"; index size {b['index_mb'] / a['index_mb']:.2f}x"  # type: ignore[operator]
            )
        print(line)
    for r in results:
        values = everything[r["engine"]]  # type: ignore[index]
        print(
            f"{r['engine']}: p95 {percentile(values, 95):.1f} ms against a goal of 30 ms: "
            f"{'met' if percentile(values, 95) <= 30 else 'NOT met'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200, help="queries per class")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument(
        "--pg-shared-buffers",
        default="1GB",
        help="shared_buffers of the bundled PostgreSQL ('' keeps its 128MB default; PostgreSQL's docs "
        "suggest 25%% of RAM for a dedicated server)",
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="build the databases in DIR once and reuse them on later runs"
    )
    args = parser.parse_args()
    results = []
    for engine in args.engines.split(","):
        started = time.perf_counter()
        results.append(bench_engine(engine.strip(), args))
        print(f"[{engine}: {time.perf_counter() - started:.0f} s in all]", file=sys.stderr, flush=True)
    report(results, args)


if __name__ == "__main__":
    main()
