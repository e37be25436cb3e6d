"""`convo serve` serves the built web app at /, and a reload on a client route gets the app too."""

from __future__ import annotations

import httpx


def test_app_and_client_routes_serve_index_html(server):
    root = httpx.get(server.url + "/")
    assert root.status_code == 200 and '<div id="root">' in root.text
    deep = httpx.get(server.url + "/t/12345")
    assert deep.status_code == 200 and deep.text == root.text
    asset = root.text.split('src="', 1)[1].split('"', 1)[0]
    assert httpx.get(server.url + asset).headers["content-type"].startswith("text/javascript")


def test_api_and_missing_files_still_answer_a_json_404(server):
    for path in ("/api/nothing-here", "/api/threads/1/nothing", "/assets/missing.js", "/favicon.ico"):
        response = httpx.get(server.url + path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found", path
