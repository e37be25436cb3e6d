"""Shared fixtures: the fake model server, a PostgreSQL server, and real `convo serve` processes.

Every API test runs twice, against a server on SQLite and one on PostgreSQL. With CI=true a missing
PostgreSQL (with pgvector, or the plain one without it) is a failure, not a skip.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream, free_port
from tests.support import Api

ROOT = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_emails = itertools.count()


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


def _start_pgserver(folder: Path) -> str:
    import pgserver

    server = pgserver.get_server(folder, cleanup_mode="stop")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/tmp/...
    server.psql("CREATE DATABASE convo_test;")
    return uri.replace("/postgres?", "/convo_test?")


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PostgreSQL database with pgvector: CONVO_TEST_DATABASE_URL, or a private server from pgserver."""
    url = os.environ.get("CONVO_TEST_DATABASE_URL")
    if url:
        return url
    try:
        # pgserver wants a short path: its socket lives in the data folder.
        return _start_pgserver(Path(tempfile.mkdtemp(prefix="cvpg")))
    except Exception as exc:  # not installed, or cannot start here
        if CI:
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"no PostgreSQL for tests: {exc}")


@pytest.fixture(scope="session")
def plain_pg_url() -> str:
    """A PostgreSQL without pgvector, as many self-hosters have: CONVO_TEST_PLAIN_DATABASE_URL, or the
    machine's own server. Tests make their own databases in it and drop them."""
    import psycopg

    url = os.environ.get("CONVO_TEST_PLAIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            pgvector = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    except psycopg.Error as exc:
        if CI:
            pytest.fail(f"a PostgreSQL without pgvector is required in CI: {exc}")
        pytest.skip(f"no plain PostgreSQL for tests: {exc}")
    if pgvector:
        # It would take the pgvector path, and the fallback would go untested.
        if CI:
            pytest.fail(f"{url} has pgvector; the fallback tests need a PostgreSQL without it")
        pytest.skip(f"{url} has pgvector")
    return url


def providers_file(folder: Path, fake: FakeUpstream) -> Path:
    path = folder / "providers.yaml"
    path.write_text(
        f"""
providers:
  - name: fakeai
    type: openai
    base_url: {fake.base_url}
    api_key: sk-test
    models:
      - id: fake-gpt
        label: Fake GPT
        context_window: 8192
        input_usd_per_mtok: 2.0
        output_usd_per_mtok: 8.0
      - id: fake-mini
        label: Fake mini
        context_window: 256
        input_usd_per_mtok: 0.5
        output_usd_per_mtok: 1.0
  - name: deadai
    type: openai
    base_url: http://127.0.0.1:{free_port()}/v1
    models:
      - id: dead-model
        context_window: 4096
  - name: fakeanthropic
    type: anthropic
    base_url: {fake.anthropic_url}
    api_key: sk-ant-test
    models:
      - id: claude-fake
        label: Claude Fake
        context_window: 200000
        input_usd_per_mtok: 3.0
        output_usd_per_mtok: 15.0
"""
    )
    return path


class Server:
    """`convo serve` in a subprocess, as a user runs it."""

    def __init__(self, folder: Path, env: dict[str, str], *, workers: int = 1) -> None:
        self.folder = folder
        self.env = env
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def convo(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "convo.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=120)

    def start(self) -> Server:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "convo.cli", "serve", "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, *, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def api(self, email: str | None = None) -> Api:
        """A client signed up as a new user."""
        api = Api(self.url)
        api.signup(email or f"user{next(_emails)}-{os.getpid()}@example.com")
        return api


def make_env(folder: Path, fake: FakeUpstream, database_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVO_", "OPENAI_", "ANTHROPIC_"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update(
        CONVO_DATA_DIR=str(folder / "data"),
        CONVO_PROVIDERS_FILE=str(providers_file(folder, fake)),
        CONVO_DEFAULT_MODEL="fake-gpt",
        CONVO_SSE_PING_SECONDS="1",
        CONVO_UPSTREAM_TIMEOUT="3",
        CONVO_CHECKPOINT_SECONDS="0.2",
        CONVO_LOG_LEVEL="warning",
        # Every test signs up from 127.0.0.1; the per-address sign-up limit has tests of its own.
        CONVO_SIGNUP_PER_ADDRESS="0",
        PYTHONPATH=str(ROOT / "src"),
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def _fresh_pg_database(pg_url: str, name: str) -> str:
    import psycopg

    admin = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        # FORCE: a server killed by the previous test may still hold a session for a moment.
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


def _drop_pg_database(pg_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def backend_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    pg = request.getfixturevalue("pg_url")
    url = _fresh_pg_database(pg, f"convo_{request.param}_{os.getpid()}")
    if request.param == "scale":
        _SCALE_DATABASES.add(url)
    return url


# The databases of the "scale" backend: their servers run with Redis and a Celery worker.
_SCALE_DATABASES: set[str] = set()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Anything that uses a server runs on both databases; modules about answers and jobs, whose moving
    # parts differ in scale mode (Redis streams and cancel, Celery workers), run there too: whole modules
    # (SCALE_MODE = True) or single tests (@pytest.mark.scale_mode).
    if "backend_url" in metafunc.fixturenames:
        scale = getattr(metafunc.module, "SCALE_MODE", False) or metafunc.definition.get_closest_marker("scale_mode")
        backends = ["sqlite", "postgresql"] + (["scale"] if scale else [])
        metafunc.parametrize("backend_url", backends, indirect=True, scope="session")


def _scale_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Scale mode: the machine's Redis under a prefix of its own, and a short lease (2 s) for reaping."""
    redis_url = request.getfixturevalue("redis_url")
    return {"REDIS_URL": redis_url, "CONVO_REDIS_PREFIX": f"t{uuid.uuid4().hex[:12]}:",
            "CONVO_RUN_LEASE_SECONDS": "2"}


def start_worker(folder: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`convo worker` with one child, returned once Celery says it is ready."""
    log_path = folder / "worker.log"
    log = log_path.open("ab")
    # At info, Celery says when it is ready.
    process = subprocess.Popen([sys.executable, "-m", "convo.cli", "worker", "--concurrency", "1"],
                               env={**env, "CONVO_LOG_LEVEL": "info"}, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while " ready." not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    return process


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def server(backend_url: str | None, fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("server")
    scale = backend_url in _SCALE_DATABASES
    srv = Server(folder, make_env(folder, fake_upstream, backend_url, **(_scale_env(request) if scale else {})))
    if backend_url:
        result = srv.convo("migrate")
        assert result.returncode == 0, result.stderr
    srv.start()
    worker = start_worker(folder, srv.env) if scale else None
    yield srv
    srv.stop()
    if worker is not None:
        stop_worker(worker)


@pytest.fixture
def own_server(backend_url: str | None, fake_upstream: FakeUpstream, tmp_path: Path,
               request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server of the test's own, for tests that restart or stop it."""
    url = backend_url
    if url:
        url = _fresh_pg_database(url, f"convo_own_{os.getpid()}")
    scale = backend_url in _SCALE_DATABASES
    srv = Server(tmp_path, make_env(tmp_path, fake_upstream, url, **(_scale_env(request) if scale else {})))
    if url:
        assert srv.convo("migrate").returncode == 0
    srv.start()
    worker = start_worker(tmp_path, srv.env) if scale else None
    yield srv
    srv.stop()
    if worker is not None:
        stop_worker(worker)
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


@pytest.fixture
def plain_pg_server(plain_pg_url: str, fake_upstream: FakeUpstream, tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own on a fresh database in the PostgreSQL without pgvector, logging at
    info so its start-up line says what retrieval uses."""
    name = f"convo_nopgvector_{os.getpid()}"
    url = _fresh_pg_database(plain_pg_url, name)
    srv = Server(tmp_path, make_env(tmp_path, fake_upstream, url, CONVO_LOG_LEVEL="info"))
    try:
        migrated = srv.convo("migrate")
        assert migrated.returncode == 0, migrated.stderr
        yield srv.start()
    finally:
        srv.stop()
        _drop_pg_database(plain_pg_url, name)


@pytest.fixture
def sqlite_server(fake_upstream: FakeUpstream, tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own on SQLite only, for behaviour that does not depend on the database."""
    srv = Server(tmp_path, make_env(tmp_path, fake_upstream, None)).start()
    yield srv
    srv.stop()


@pytest.fixture
def api(server: Server) -> Iterator[Api]:
    client = server.api()
    yield client
    client.close()


@pytest.fixture
def admin(server: Server) -> Iterator[Api]:
    """An admin account on the shared server, made with `convo user create --admin`."""
    email, password = f"admin-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery"
    created = server.convo("user", "create", "--email", email, "--password", password, "--admin")
    assert created.returncode == 0, created.stderr
    api = Api(server.url)
    response = api.http.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    api.token, api.user = response.json()["token"], response.json()["user"]
    api.http.cookies.clear()
    yield api
    api.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis (CONVO_TEST_REDIS_URL or 127.0.0.1:6379); tests keep to their own key prefix."""
    import redis

    url = os.environ.get("CONVO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if CI:
            pytest.fail(f"Redis is required in CI: {exc}")
        pytest.skip(f"no Redis for tests: {exc}")
    return url


class PrivateRedis:
    """A `redis-server` of the test's own, on a free port, for tests that stop or restart it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        import redis

        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not (shutil.which("redis-server") or Path("/usr/bin/redis-server").exists()):
        if CI:
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


class Cluster:
    """Scale mode on one machine: API processes A and B on one PostgreSQL database, one Redis and one
    data folder, as several hosts behind nginx would share them."""

    def __init__(self, folder: Path, fake: FakeUpstream, database_url: str, redis_url: str, **extra: str) -> None:
        self.folder = folder
        self.prefix = f"t{uuid.uuid4().hex[:12]}:"
        self.env = make_env(folder, fake, database_url, REDIS_URL=redis_url, CONVO_REDIS_PREFIX=self.prefix,
                            CONVO_RUN_LEASE_SECONDS="2", **extra)
        self.servers: list[Server] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.worker_metrics: list[str] = []
        self.database_url = database_url

    def add(self, *, workers: int = 1) -> Server:
        folder = self.folder / f"p{len(self.servers)}"
        folder.mkdir()
        server = Server(folder, self.env, workers=workers)
        self.servers.append(server)
        return server.start()

    def add_worker(self) -> subprocess.Popen[bytes]:
        folder = self.folder / f"w{len(self.workers)}"
        folder.mkdir()
        port = free_port()
        process = start_worker(folder, {**self.env, "CONVO_WORKER_METRICS_PORT": str(port)})
        self.workers.append(process)
        self.worker_metrics.append(f"http://127.0.0.1:{port}/metrics")
        return process

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        for process in self.workers:
            stop_worker(process)


@pytest.fixture
def make_cluster(pg_url: str, fake_upstream: FakeUpstream, tmp_path: Path) -> Iterator[Any]:
    """Builds a Cluster of two started API processes on a fresh database and the given Redis."""
    made: list[Cluster] = []

    def build(redis: str, **extra: str) -> Cluster:
        database = _fresh_pg_database(pg_url, f"convo_scale_{os.getpid()}_{len(made)}")
        folder = tmp_path / f"cluster{len(made)}"
        folder.mkdir()
        group = Cluster(folder, fake_upstream, database, redis, **extra)
        made.append(group)
        migrated = Server(folder, group.env).convo("migrate")
        assert migrated.returncode == 0, migrated.stderr
        group.add()
        group.add()
        group.add_worker()
        return group

    yield build
    for group in made:
        group.stop()


@pytest.fixture
def cluster(make_cluster: Any, redis_url: str) -> Cluster:
    return make_cluster(redis_url)
