"""The web app's own unit tests (Vitest: the SSE parser, sanitized Markdown, the branch store), run from
pytest so `make test` fails when they do. The type check runs in every build (`tsc && vite build`)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import CI
from tests.web.conftest import WEB


def npm(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("npm") is None:
        if CI:
            pytest.fail("npm is required to test the web app")
        pytest.skip("npm is not installed")
    if not (WEB / "node_modules").exists():
        subprocess.run(["make", "-s", "-C", str(WEB), "node_modules/.installed"], check=True)
    return subprocess.run(["npm", *args], cwd=WEB, capture_output=True, text=True, timeout=300)


def test_vitest_component_tests_pass():
    result = npm("test", "--silent")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]

