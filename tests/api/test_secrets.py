"""Secrets stay out of what Convo stores, exports and prints: an upstream's words about a refused key,
and a providers file that does not parse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import make_env
from tests.fakes.upstream import MASKED_KEY, FakeUpstream
from tests.support import Api


def test_a_refused_key_is_not_echoed_into_the_answer_or_its_export(api: Api) -> None:
    thread = api.thread()
    stream = api.send(thread["id"], "[[fake fail=http_401]]")
    assert stream.last.event == "error" and stream.last.data["code"] == "upstream_auth"
    stored = api.get(f"/api/threads/{thread['id']}").json()["messages"][-1]
    message = stored["meta"]["error"]["message"]
    assert "refused the API key" in message
    exported = api.get(f"/api/threads/{thread['id']}/export", params={"format": "json"})
    assert exported.status_code == 200
    for text in (stream.last.data["message"], message, exported.text):
        assert MASKED_KEY not in text and "sk-test" not in text and "****" not in text


def test_a_providers_file_that_does_not_parse_is_named_by_line_without_its_key(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    # An unclosed quote on the key's line: YAML's own message quotes that line.
    broken.write_text('providers:\n  - name: mine\n    type: openai\n    api_key: "sk-live-Zq8Xw3Secret0987\n'
                      "    models: []\n")
    env = make_env(tmp_path, fake_upstream, None, CONVO_PROVIDERS_FILE=str(broken))
    ran = subprocess.run([sys.executable, "-m", "convo.cli", "serve", "--port", "1"], env=env, capture_output=True,
                         text=True, timeout=120)
    output = ran.stdout + ran.stderr
    assert ran.returncode != 0
    assert f"{broken}: not valid YAML near lines 4 and 6" in output, output
    assert "Zq8Xw3Secret0987" not in output and "sk-live" not in output, output
