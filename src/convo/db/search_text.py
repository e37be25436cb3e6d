"""The text a search index holds: folded (lower case, accents stripped) and with CJK runs cut into bigrams.

Both engines tokenize on spaces and punctuation, which leaves a Chinese, Japanese or Korean run as one
long token that no word query could ever match. Each run is therefore written as its overlapping
bigrams followed by its last character ("東京都" -> "東京 京都 都"): a query of two or more characters
becomes a phrase of bigrams, a single character a prefix that matches the bigram it starts or the
trailing character. Accents are folded here rather than by the engine, so SQLite and PostgreSQL (whose
`unaccent` is a contrib module many servers lack) agree, and the PostgreSQL trigger function built from
`FOLD_FROM`/`FOLD_TO` folds exactly as `fold()` does.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from functools import lru_cache
from typing import Any

# Hiragana, Katakana (with phonetic extensions and the half-width forms), CJK ideographs (unified,
# extension A, compatibility) and Hangul syllables.
CJK_CLASS = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
CJK_RUN = re.compile(f"[{CJK_CLASS}]+")

# Letters without a decomposition that readers still expect to fold.
_EXTRA_SINGLE = {"ø": "o", "đ": "d", "ł": "l", "ħ": "h", "ı": "i", "ŧ": "t"}
_MULTI = {"ß": "ss", "æ": "ae", "œ": "oe", "þ": "th"}


def _fold_table() -> dict[str, str]:
    """Lower-case Latin and Greek letters that fold to one different letter (é -> e, ά -> α)."""
    table: dict[str, str] = {}
    ranges = [(0x00C0, 0x024F), (0x1E00, 0x1EFF), (0x0370, 0x03FF)]
    for start, end in ranges:
        for code in range(start, end + 1):
            ch = chr(code).lower()
            if len(ch) != 1:
                continue
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            if len(base) == 1 and base != ch:
                table[ch] = base
    table.update(_EXTRA_SINGLE)
    return table


_SINGLE = _fold_table()
FOLD_FROM = "".join(_SINGLE)
FOLD_TO = "".join(_SINGLE.values())
MULTI_FOLDS = dict(_MULTI)
_TRANSLATE = str.maketrans({**_SINGLE, **_MULTI})


def fold(text: str) -> str:
    """Lower case without accents; ASCII text (most of it) takes the fast path."""
    text = text.lower()
    return text if text.isascii() else text.translate(_TRANSLATE)


def cjk_bigrams(run: str) -> str:
    return " ".join([run[i : i + 2] for i in range(len(run) - 1)] + [run[-1]])


def index_text(text: str | None) -> str:
    """What the index stores for `text`."""
    if not text:
        return ""
    text = fold(text.replace("\x00", " "))
    if text.isascii():
        return text
    return CJK_RUN.sub(lambda m: f" {cjk_bigrams(m.group())} ", text)


# Okapi BM25 as FTS5 has it (k1 = 1.2, b = 0.75), with the Lucene IDF, which is never negative.
K1, B = 1.2, 0.75
# A token of indexed text, as FTS5's unicode61 tokenizer cuts it (indexed text is already folded).
INDEX_TOKEN = re.compile(r"[^\W_]+")


def idf(n: float, df: float) -> float:
    """ln(1 + (N - df + 0.5) / (df + 0.5)) for a term in df of N documents."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def index_length(text: str | None) -> int:
    """How many tokens the index holds for `text`: BM25's document length."""
    return len(INDEX_TOKEN.findall(index_text(text)))


@lru_cache(maxsize=64)
def _bm25_spec(spec: str) -> tuple[float, list[tuple[tuple[str, ...], float]]]:
    avgdl, weighted = json.loads(spec)
    return float(avgdl), [(tuple(tokens), float(weight)) for tokens, weight in weighted]


def bm25(body: str | None, spec: str) -> float:
    """BM25 of one indexed text, from statistics computed by the caller: `spec` is JSON
    `[avgdl, [[tokens of a term, its IDF], ...]]`. A term of several tokens counts where they are
    consecutive, as an FTS5 phrase does. SQL cannot read term frequencies out of FTS5, hence this."""
    avgdl, weighted = _bm25_spec(spec)
    tokens = INDEX_TOKEN.findall(body or "")
    norm = K1 * (1 - B + B * len(tokens) / avgdl)
    score = 0.0
    for words, weight in weighted:
        if len(words) == 1:
            tf = tokens.count(words[0])
        else:
            size = len(words)
            tf = sum(1 for i, token in enumerate(tokens) if token == words[0] and tuple(tokens[i:i + size]) == words)
        if tf:
            score += weight * tf * (K1 + 1) / (tf + norm)
    return score


def register_sqlite(dbapi_conn: Any) -> None:
    """Make the index triggers' functions (`convo_search_text()`, `convo_search_length()`) and search's
    `convo_bm25()` available on this connection."""
    dbapi_conn.create_function("convo_search_text", 1, index_text, deterministic=True)
    dbapi_conn.create_function("convo_search_length", 1, index_length, deterministic=True)
    dbapi_conn.create_function("convo_bm25", 2, bm25, deterministic=True)
