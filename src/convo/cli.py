"""`convo serve | migrate | user create | rag-eval`."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys

from convo.config import Settings, get_settings


def _prepare_database(settings: Settings, *, migrate: bool) -> None:
    from convo.db import migrate as migrations

    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrations.upgrade(settings.db_url)
    elif migrate:
        migrations.upgrade(settings.db_url)
    elif not migrations.is_current(settings.db_url):
        sys.exit("The database schema is not current: run `convo migrate` first.")


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    settings = get_settings()
    if args.workers > 1 and (settings.is_sqlite or not settings.redis_url):
        # Answers in progress are shared through Redis, and SQLite takes one writing process.
        sys.exit("--workers above 1 needs scale mode: a PostgreSQL DATABASE_URL and REDIS_URL.")
    _prepare_database(settings, migrate=False)
    if args.workers > 1:
        metrics_dir = settings.data_dir.resolve() / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    uvicorn.run(
        "convo.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=3,
        access_log=False,
    )


def worker(args: argparse.Namespace) -> None:
    settings = get_settings()
    if not (settings.scale_mode and settings.broker_url) or settings.is_sqlite:
        sys.exit("convo worker runs jobs in scale mode: set a PostgreSQL DATABASE_URL and REDIS_URL "
                 "(and CELERY_BROKER_URL for another broker).")
    _prepare_database(settings, migrate=False)
    if settings.worker_metrics_port:
        # Before anything imports prometheus_client: its children then write their samples to files here.
        metrics_dir = settings.data_dir.resolve() / f"metrics-worker-{os.getpid()}"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from convo import worker as celery_worker

    celery_worker.main(args.concurrency, settings.log_level, settings.worker_metrics_port)


def migrate(_: argparse.Namespace) -> None:
    _prepare_database(get_settings(), migrate=True)
    print("database is at the latest schema")


def user_create(args: argparse.Namespace) -> None:
    from convo.db.session import Database
    from convo.domain.users import Users
    from convo.errors import ConvoError
    from convo.runtime.pool import BoundedPool

    settings = get_settings()
    _prepare_database(settings, migrate=False)

    async def run() -> None:
        db = Database(settings.db_url)
        hashing = BoundedPool("hash", threads=1, queue=0)
        try:
            user = await Users(db, signup="open", session_days=1, hashing=hashing).create(
                args.email, args.password, args.name, admin=args.admin
            )
            print(f"created {user.role} {user.email} (id {user.id})")
        finally:
            hashing.close()
            await db.close()

    try:
        asyncio.run(run())
    except ConvoError as exc:
        sys.exit(exc.message)


def rag_eval(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from convo.domain.retrieval import Weights
    from convo.domain.retrieval.evaluate import run_eval
    from convo.services import build_embedder

    settings = get_settings()
    folder = Path(args.dataset)
    if not (folder / "corpus.jsonl").is_file() or not (folder / "queries.jsonl").is_file():
        sys.exit(f"{folder} is not a BEIR dataset: it needs corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    weights = Weights(settings.rag_bm25_weight, settings.rag_vec_weight, 0.0)
    result = run_eval(folder, mode=args.mode, split=args.split, k=args.k, embedder=build_embedder(settings),
                      weights=weights, db_url=args.database_url,
                      cache_dir=None if args.no_cache else settings.data_dir / "cache" / "rag-eval")
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="convo", description="Self-hosted LLM chat workspace")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="serve the API and web app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=serve)

    p = commands.add_parser("worker", help="run background jobs (file ingestion, exports) in scale mode")
    p.add_argument("--concurrency", type=int, default=2, help="jobs at a time (worker processes)")
    p.set_defaults(func=worker)

    p = commands.add_parser("migrate", help="upgrade the database schema to the latest version")
    p.set_defaults(func=migrate)

    user = commands.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    p = user.add_parser("create", help="create a user")
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--admin", action="store_true")
    p.set_defaults(func=user_create)

    p = commands.add_parser("rag-eval", help="evaluate retrieval on a BEIR-format dataset")
    p.add_argument("dataset", metavar="DATASET_DIR")
    p.add_argument("--mode", choices=["hybrid", "bm25", "vector", "rrf"], default="hybrid")
    p.add_argument("--split", default="test")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--database-url", default=None,
                   help="index into this (empty) database instead of a temporary SQLite file")
    p.add_argument("--no-cache", action="store_true", help="embed the corpus even if its vectors are cached")
    p.set_defaults(func=rag_eval)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
