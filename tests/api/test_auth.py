import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, _fresh_pg_database, make_env
from tests.fakes.upstream import FakeUpstream
from tests.support import Api


def email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"


def test_signup_login_me_logout(server):
    api = Api(server.url)
    address = email()
    body = api.signup(address)
    assert body["user"]["email"] == address
    assert api.get("/api/auth/me").json()["email"] == address

    login = api.http.post("/api/auth/login", json={"email": address.upper(), "password": "correct horse battery"})
    assert login.status_code == 200
    token = login.json()["token"]
    assert token != api.token

    assert api.post("/api/auth/logout").status_code == 204
    assert api.get("/api/auth/me").status_code == 401
    other = Api(server.url, token)
    assert other.get("/api/auth/me").status_code == 200, "logging out one session keeps the others"


def test_first_user_is_admin_later_users_are_not(own_server):
    first = own_server.api()
    second = own_server.api()
    assert first.user["role"] == "admin"
    assert second.user["role"] == "user"


def test_bad_signups_and_logins_are_clear_4xx(server):
    http = httpx.Client(base_url=server.url)
    address = email()
    assert http.post("/api/auth/signup", json={"email": address, "password": "long enough"}).status_code == 201
    dup = http.post("/api/auth/signup", json={"email": address.upper(), "password": "long enough"})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "email_taken"
    short = http.post("/api/auth/signup", json={"email": email(), "password": "short"})
    assert short.status_code == 422 and short.json()["error"]["code"] == "invalid_request"
    assert "password" in short.json()["error"]["message"]
    assert http.post("/api/auth/signup", json={"email": "not-an-email", "password": "long enough"}).status_code == 422
    assert http.post("/api/auth/signup", content=b"{broken", headers={"content-type": "application/json"}
                     ).status_code == 422
    wrong = http.post("/api/auth/login", json={"email": address, "password": "wrong password"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_credentials"
    nobody = http.post("/api/auth/login", json={"email": email(), "password": "whatever1"})
    assert nobody.status_code == 401


def test_requests_without_valid_token_are_401(server):
    http = httpx.Client(base_url=server.url)
    assert http.get("/api/threads").json()["error"]["code"] == "not_authenticated"
    bad = http.get("/api/threads", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "session_expired"


def test_cookie_session_needs_csrf_token_for_unsafe_methods(server):
    http = httpx.Client(base_url=server.url)
    signup = http.post("/api/auth/signup", json={"email": email(), "password": "long enough"})
    csrf = signup.json()["csrf_token"]
    assert http.cookies.get("convo_csrf") == csrf
    assert http.get("/api/threads").status_code == 200, "safe methods need only the cookie"
    refused = http.post("/api/threads", json={"title": "x"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    forged = http.post("/api/threads", json={"title": "x"}, headers={"X-CSRF-Token": "guess"})
    assert forged.status_code == 403
    ok = http.post("/api/threads", json={"title": "x"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201


def test_signup_can_be_closed(own_server):
    own_server.api()  # the first account is always possible, so a new server can get an admin
    own_server.stop()
    own_server.env["CONVO_SIGNUP"] = "closed"
    own_server.start()
    refused = httpx.post(own_server.url + "/api/auth/signup", json={"email": email(), "password": "long enough"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "signup_closed"
    result = own_server.convo("user", "create", "--email", "made@example.com", "--password", "long enough")
    assert result.returncode == 0, result.stderr
    login = httpx.post(own_server.url + "/api/auth/login",
                       json={"email": "made@example.com", "password": "long enough"})
    assert login.status_code == 200 and login.json()["user"]["role"] == "user"


# -- limits, sessions, first account ---------------------------------------------------------------

PASSWORD = "correct horse battery"


@pytest.fixture
def start_server(backend_url: str | None, fake_upstream: FakeUpstream, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts a server of the test's own with extra settings (short lock times, sign-up closed...)."""
    started: list[Server] = []

    def start(**env: str) -> Server:
        url = backend_url and _fresh_pg_database(backend_url, f"convo_own_{os.getpid()}")
        srv = Server(tmp_path, make_env(tmp_path, fake_upstream, url, **env))
        if url:
            assert srv.convo("migrate").returncode == 0
        started.append(srv.start())
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def limited(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """SQLite only: the counts live in the process, whatever the database. Requests name their client
    address in X-Forwarded-For, which uvicorn honours from 127.0.0.1 as it would from a local nginx."""
    folder = tmp_path_factory.mktemp("limited")
    srv = Server(folder, make_env(folder, fake_upstream, None, CONVO_LOGIN_MAX_FAILURES="3",
                                  CONVO_LOGIN_ADDRESS_MAX_FAILURES="3", CONVO_SIGNUP_PER_ADDRESS="2",
                                  CONVO_LOGIN_LOCK_SECONDS="2", CONVO_LOGIN_MAX_LOCK_SECONDS="3",
                                  CONVO_LOGIN_WINDOW_SECONDS="60")).start()
    yield srv
    srv.stop()


_addresses = itertools.count(1)


def address() -> str:
    n = next(_addresses)
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def signup_from(srv: Server, where: str, who: str | None = None) -> httpx.Response:
    return httpx.post(srv.url + "/api/auth/signup", json={"email": who or email(), "password": PASSWORD},
                      headers={"X-Forwarded-For": where})


def login_from(srv: Server, where: str, who: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(srv.url + "/api/auth/login", json={"email": who, "password": password},
                      headers={"X-Forwarded-For": where}, timeout=60)


def test_failed_logins_lock_the_account_for_a_while_that_grows_to_a_cap(limited):
    victim = email()
    assert signup_from(limited, address(), victim).status_code == 201
    for _ in range(3):  # each from a new address: the account's own count locks it
        assert login_from(limited, address(), victim, "wrong password").status_code == 401
    locked = login_from(limited, address(), victim)
    assert locked.status_code == 429, "even the right password waits out the lock"
    assert locked.json()["error"]["code"] == "too_many_attempts"
    assert locked.headers["Retry-After"] == "2" and locked.json()["error"]["retry_after"] == 2

    time.sleep(2.2)
    assert login_from(limited, address(), victim).status_code == 200, "the lock ends; the right password works"
    for _ in range(2):
        assert login_from(limited, address(), victim, "wrong password").status_code == 401
    assert login_from(limited, address(), victim).status_code == 200, "a success started the count again"

    for _ in range(3):
        assert login_from(limited, address(), victim, "wrong password").status_code == 401  # the 3rd locks: 2 s
    time.sleep(2.2)
    assert login_from(limited, address(), victim, "wrong password").status_code == 401  # doubles: 4 s, cap 3 s
    capped = login_from(limited, address(), victim)
    assert capped.status_code == 429 and capped.headers["Retry-After"] == "3", "longer, but no longer than the cap"
    time.sleep(3.2)
    assert login_from(limited, address(), victim).status_code == 200

    nobody = email()  # an unknown email locks the same way, so a lock tells nothing about who has an account
    for _ in range(3):
        assert login_from(limited, address(), nobody, "wrong password").status_code == 401
    assert login_from(limited, address(), nobody, "wrong password").status_code == 429


def test_failed_logins_and_signups_are_limited_per_address(limited):
    guesser, bystander = address(), address()
    victim = email()
    assert signup_from(limited, bystander, victim).status_code == 201
    for _ in range(3):  # a new email each time: only the address's count grows
        assert login_from(limited, guesser, email(), "wrong password").status_code == 401
    refused = login_from(limited, guesser, victim)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert login_from(limited, bystander, victim).status_code == 200, "other addresses are not affected"

    spammer = address()
    assert signup_from(limited, spammer).status_code == 201
    assert signup_from(limited, spammer).status_code == 201
    third = signup_from(limited, spammer)
    assert third.status_code == 429 and third.headers["Retry-After"] == "2"
    assert signup_from(limited, address()).status_code == 201


def test_a_login_flood_is_turned_away_without_stalling_other_requests(sqlite_server):
    """40 parallel logins with the right password: the hashing pool (2 threads, 16 waiting) takes what it
    can hold and answers the rest 503 at once; requests that need the event loop or its default thread
    pool (token counting) stay quick meanwhile."""
    user = sqlite_server.api()
    who = user.user["email"]
    probes: dict[str, list[float]] = {"healthz": [], "threads": [], "tokens": []}

    def probe() -> None:
        for name, call in (("healthz", lambda: user.http.get("/healthz")),
                           ("threads", lambda: user.get("/api/threads")),
                           ("tokens", lambda: user.post("/api/tokens/count", json={"text": "hello there"}))):
            started = time.perf_counter()
            assert call().status_code == 200
            probes[name].append(time.perf_counter() - started)

    probe()  # connected and warm before the flood
    # One client for the whole flood: a client per request would spend the test's own CPU on TLS set-up.
    with httpx.Client(base_url=sqlite_server.url, timeout=60, limits=httpx.Limits(max_connections=40)) as flood, \
            ThreadPoolExecutor(40) as pool:
        logins = [pool.submit(flood.post, "/api/auth/login", json={"email": who, "password": PASSWORD})
                  for _ in range(40)]
        time.sleep(0.5)  # the flood is in
        for _ in range(5):
            probe()
            time.sleep(0.2)
        answers = [f.result() for f in logins]
    statuses = [a.status_code for a in answers]
    busy = [a for a in answers if a.status_code == 503]
    print("login statuses", {s: statuses.count(s) for s in set(statuses)},
          {k: [round(t * 1000) for t in v[1:]] for k, v in probes.items()})
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 2
    assert busy and busy[0].json()["error"]["code"] == "busy" and busy[0].headers["Retry-After"] == "1"
    for name, times in probes.items():
        assert max(times) < 1.0, f"{name} took {max(times):.2f}s during the flood"


def test_password_change_ends_other_sessions(server):
    api = server.api()
    who = api.user["email"]
    others = [Api(server.url, httpx.post(server.url + "/api/auth/login", json={"email": who, "password": PASSWORD}
                                         ).json()["token"]) for _ in range(2)]
    assert all(o.get("/api/auth/me").status_code == 200 for o in others)

    wrong = api.post("/api/auth/password", json={"current_password": "not it", "new_password": "a new secret"})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_password"
    short = api.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 422
    assert all(o.get("/api/auth/me").status_code == 200 for o in others), "a refused change ends nothing"

    changed = api.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": "a new secret"})
    assert changed.status_code == 204
    assert api.get("/api/auth/me").status_code == 200, "the session that changed it stays signed in"
    assert all(o.get("/api/auth/me").status_code == 401 for o in others)
    old = httpx.post(server.url + "/api/auth/login", json={"email": who, "password": PASSWORD})
    assert old.status_code == 401
    assert httpx.post(server.url + "/api/auth/login", json={"email": who, "password": "a new secret"}
                      ).status_code == 200


def test_logout_all_ends_every_session(server):
    api = server.api()
    other = Api(server.url, httpx.post(server.url + "/api/auth/login",
                                       json={"email": api.user["email"], "password": PASSWORD}).json()["token"])
    bystander = server.api()
    assert api.post("/api/auth/logout-all").status_code == 204
    assert api.get("/api/auth/me").status_code == 401
    assert other.get("/api/auth/me").status_code == 401
    assert bystander.get("/api/auth/me").status_code == 200, "only that user's sessions end"


def test_closed_signup_does_not_make_the_first_visitor_admin(start_server):
    srv = start_server(CONVO_SIGNUP="closed")
    refused = httpx.post(srv.url + "/api/auth/signup", json={"email": email(), "password": PASSWORD})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "signup_closed"
    made = srv.convo("user", "create", "--email", "root@example.com", "--password", PASSWORD, "--admin")
    assert made.returncode == 0, made.stderr
    login = httpx.post(srv.url + "/api/auth/login", json={"email": "root@example.com", "password": PASSWORD})
    assert login.status_code == 200 and login.json()["user"]["role"] == "admin"


def test_session_cookie_is_secure_when_the_request_came_over_https(server):
    who = email()
    plain = httpx.post(server.url + "/api/auth/signup", json={"email": who, "password": PASSWORD})
    assert all("secure" not in c.lower() for c in plain.headers.get_list("set-cookie"))
    https = httpx.post(server.url + "/api/auth/login", json={"email": who, "password": PASSWORD},
                       headers={"X-Forwarded-Proto": "https"})
    cookies = https.headers.get_list("set-cookie")
    assert len(cookies) == 2 and all("; secure" in c.lower() for c in cookies)
