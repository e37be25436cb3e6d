"""Token-aware chunking that follows a document's structure.

A heading always starts a new chunk (and is repeated at the top of the chunks of its section, so a
chunk read alone still says what it is about); paragraphs are packed whole while they fit; a paragraph
too long for one chunk is cut at sentence ends, and a sentence too long at word boundaries. When a
section runs over several chunks, each repeats the last sentences of the one before (`overlap`
tokens), so a fact that straddles a cut is whole in one of them. Sizes count the embedding model's own
tokens, so no chunk is truncated by the embedder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

CHUNK_TOKENS = 200
OVERLAP_TOKENS = 40

_HEADING = re.compile(r"^(#{1,6})\s+\S")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


@dataclass(frozen=True)
class Chunk:
    position: int
    text: str
    tokens: int


@dataclass
class _Block:
    text: str
    heading: bool = False


def _blocks(text: str) -> list[_Block]:
    """Headings and paragraphs (blank-line separated; a heading line stands alone)."""
    blocks: list[_Block] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(_Block("\n".join(paragraph).strip()))
            paragraph.clear()

    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line.strip():
            flush()
        elif _HEADING.match(line):
            flush()
            blocks.append(_Block(line.strip(), heading=True))
        else:
            paragraph.append(line.rstrip())
    flush()
    return [b for b in blocks if b.text]


def _pieces(paragraph: str, limit: int, count: Callable[[str], int]) -> list[str]:
    """A paragraph as pieces of at most `limit` tokens: whole sentences, or words of a long one."""
    if count(paragraph) <= limit:
        return [paragraph]
    out: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        if count(sentence) <= limit:
            out.append(sentence)
            continue
        words, current = sentence.split(" "), ""
        for word in words:
            candidate = f"{current} {word}" if current else word
            if current and count(candidate) > limit:
                out.append(current)
                candidate = word
            current = candidate
        if current:
            out.append(current)
    return out


def chunk_text(
    text: str,
    count: Callable[[str], int],
    *,
    size: int = CHUNK_TOKENS,
    overlap: int = OVERLAP_TOKENS,
) -> list[Chunk]:
    """Cut `text` into chunks of at most `size` tokens (as `count` measures them)."""
    chunks: list[Chunk] = []
    heading = ""
    current: list[tuple[str, int]] = []  # (piece, tokens) of the chunk being filled
    fresh = False  # whether `current` holds anything beyond the heading and the overlap

    def used() -> int:
        return sum(n for _, n in current) + len(current)

    def emit() -> None:
        nonlocal fresh
        if fresh:
            body = "\n".join(p for p, _ in current)
            chunks.append(Chunk(len(chunks), body, count(body)))
        fresh = False

    def restart(carry: list[tuple[str, int]]) -> None:
        current.clear()
        if heading:
            current.append((heading, count(heading)))
        current.extend(carry)

    for block in _blocks(text):
        if block.heading:
            emit()
            heading = block.text if count(block.text) <= size // 4 else ""
            restart([])
            if not heading:  # a heading too long to repeat is kept once, as text
                current.append((block.text[:2000], min(count(block.text), size)))
                fresh = True
            continue
        room = size - (count(heading) + 1 if heading else 0)
        for piece in _pieces(block.text, max(room, size // 2), count):
            tokens = count(piece)
            if used() + tokens + 1 > size and fresh:
                # Carry the tail of the full chunk into the next one, whole pieces only.
                tail: list[tuple[str, int]] = []
                body = current[1:] if heading else current
                for p, n in reversed(body):
                    if sum(t for _, t in tail) + n > overlap:
                        break
                    tail.insert(0, (p, n))
                emit()
                restart(tail if sum(t for _, t in tail) + tokens + 1 < size - 8 else [])
            current.append((piece, tokens))
            fresh = True
    emit()
    return chunks
