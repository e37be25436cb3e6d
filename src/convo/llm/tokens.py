"""Token counting with tiktoken, offline.

tiktoken downloads its BPE files on first use, which a machine without internet cannot do; `make`
installs them into `Settings.tiktoken_dir` and this module points tiktoken's cache there.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

import tiktoken

log = logging.getLogger(__name__)


def configure(cache_dir: Path) -> None:
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache_dir))


def encoding_name(model: str) -> str:
    """o200k for the GPT-4o/4.1/o-series families, cl100k for older OpenAI and unknown models."""
    try:
        return tiktoken.encoding_name_for_model(model)
    except KeyError:
        return "cl100k_base"


@lru_cache(maxsize=8)
def _encoding(name: str) -> tiktoken.Encoding | None:
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # the BPE file is missing and cannot be fetched
        log.warning("tiktoken encoding %s unavailable (%s); counting tokens approximately", name, exc)
        return None


def warm() -> None:
    """Load the common encodings now, not on a user's first message (it takes a few hundred ms)."""
    for name in ("o200k_base", "cl100k_base"):
        _encoding(name)


def count(model: str, text: str) -> int:
    if not text:
        return 0
    enc = _encoding(encoding_name(model))
    if enc is None:
        return max(1, len(text) // 4)
    return len(enc.encode(text, disallowed_special=()))


def count_messages(model: str, messages: list[tuple[str, str]]) -> int:
    """Prompt tokens of a chat, with OpenAI's per-message framing (3 tokens a message, 3 to prime)."""
    return sum(3 + count(model, content) + 1 for _role, content in messages) + 3
