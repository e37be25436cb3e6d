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


def _term_pattern(tokens: list[str]) -> re.Pattern[str]:
    """A term's tokens in a row, separated by anything else. The boundary before it is checked by the
    caller: a look-behind here would cost the literal-prefix scan (40x slower)."""
    return re.compile(r"[\W_]+".join(re.escape(token) for token in tokens) + r"(?![^\W_])")


@lru_cache(maxsize=64)
def _bm25_weights(
    terms: str, docs: int | None, tokens: int | None, dfs: tuple[int, ...]
) -> tuple[float, list[tuple[re.Pattern[str], float]]]:
    """avgdl and each term's pattern and IDF, once per statement (the arguments repeat on every row)."""
    docs, tokens = docs or 0, tokens or 0
    n = max(docs, *dfs)
    avgdl = max(tokens / docs, 1.0) if docs else 1.0
    return avgdl, [(_term_pattern(words), idf(n, df)) for words, df in zip(json.loads(terms), dfs, strict=True)]


def _varint(data: bytes) -> int:
    value = 0
    for byte in data:
        value = value << 7 | byte & 0x7F
        if byte < 0x80:
            break
    return value


def bm25(body: str | None, size: bytes | None, terms: str, docs: int | None, tokens: int | None, *dfs: int) -> float:
    """BM25 of one indexed text within a collection of `docs` documents and `tokens` tokens, where the
    terms (JSON: each term's tokens) are in `dfs` documents. `size` is the row of FTS5's docsize table,
    whose first varint is the body's length in tokens. A term of several tokens counts where they are
    consecutive, as an FTS5 phrase does. SQL cannot read term frequencies out of FTS5, hence this; it
    runs for each ranked candidate, so it searches for the terms rather than tokenizing the text."""
    if not body:
        return 0.0
    avgdl, weighted = _bm25_weights(terms, docs, tokens, dfs)
    length = _varint(size) if size else len(INDEX_TOKEN.findall(body))
    norm = K1 * (1 - B + B * length / avgdl)
    score = 0.0
    for pattern, weight in weighted:
        tf = sum(1 for m in pattern.finditer(body) if m.start() == 0 or not body[m.start() - 1].isalnum())
        if tf:
            score += weight * tf * (K1 + 1) / (tf + norm)
    return score


def register_sqlite(dbapi_conn: Any) -> None:
    """Make the index triggers' functions (`convo_search_text()`, `convo_search_length()`) and search's
    `convo_bm25()` available on this connection."""
    dbapi_conn.create_function("convo_search_text", 1, index_text, deterministic=True)
    dbapi_conn.create_function("convo_search_length", 1, index_length, deterministic=True)
    dbapi_conn.create_function("convo_bm25", -1, bm25, deterministic=True)
