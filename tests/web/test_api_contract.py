"""The web app calls only what the server offers: every API path in web/src exists in /openapi.json
(the generated types catch shapes at build time; this catches a client left behind by a server change)."""

from __future__ import annotations

import re

import httpx

from tests.web.conftest import WEB

LITERAL = re.compile(r"""["'`](/api/[^"'`\s?]*)""")


def client_paths() -> set[str]:
    paths: set[str] = set()
    for source in (WEB / "src").rglob("*.ts*"):
        if source.name.endswith((".d.ts", ".test.ts", ".test.tsx")):
            continue
        for path in LITERAL.findall(source.read_text()):
            paths.add(re.sub(r"\$\{[^}]+\}|\{[^}]+\}", "{}", path))
    return paths


def test_every_api_path_the_web_app_uses_exists(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    offered = {re.sub(r"\{[^}]+\}", "{}", path) for path in spec["paths"]}
    used = client_paths()
    assert len(used) >= 10, used
    assert used <= offered, f"the web app calls paths the server does not offer: {sorted(used - offered)}"
