"""`convo serve | migrate | user create`."""

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
    if args.workers > 1 and not settings.redis_url:
        sys.exit("--workers above 1 needs REDIS_URL, so the workers share streams and cancels.")
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


def migrate(_: argparse.Namespace) -> None:
    _prepare_database(get_settings(), migrate=True)
    print("database is at the latest schema")


def user_create(args: argparse.Namespace) -> None:
    from convo.db.session import Database
    from convo.domain.users import Users
    from convo.errors import ConvoError

    settings = get_settings()
    _prepare_database(settings, migrate=False)

    async def run() -> None:
        db = Database(settings.db_url)
        try:
            user = await Users(db, signup="open", session_days=1).create(
                args.email, args.password, args.name, admin=args.admin
            )
            print(f"created {user.role} {user.email} (id {user.id})")
        finally:
            await db.close()

    try:
        asyncio.run(run())
    except ConvoError as exc:
        sys.exit(exc.message)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="convo", description="Self-hosted LLM chat workspace")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="serve the API and web app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=serve)

    p = commands.add_parser("migrate", help="upgrade the database schema to the latest version")
    p.set_defaults(func=migrate)

    user = commands.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    p = user.add_parser("create", help="create a user")
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--admin", action="store_true")
    p.set_defaults(func=user_create)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
