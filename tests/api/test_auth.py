import uuid

import httpx

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
