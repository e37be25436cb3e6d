"""Chunk boundaries: headings start chunks, paragraphs stay whole, sizes hold, overlaps carry."""

from __future__ import annotations

import itertools

from convo.domain.retrieval.chunking import chunk_text
from convo.domain.retrieval.embeddings import load_tokenizer

_tokenizer = load_tokenizer(max_tokens=1_000_000)


def count(text: str) -> int:
    return len(_tokenizer.encode(text, add_special_tokens=False).ids)


def words(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


def test_a_short_document_is_one_chunk() -> None:
    chunks = chunk_text("Just a line.\n\nAnd another.", count)
    assert [c.text for c in chunks] == ["Just a line.\nAnd another."]
    assert chunks[0].position == 0 and chunks[0].tokens == count(chunks[0].text)


def test_every_heading_starts_a_chunk_and_heads_its_sections_chunks() -> None:
    text = "# Alpha\n\nFirst section text.\n\n## Beta\n\nSecond section text.\n\n# Gamma\n\nThird."
    chunks = chunk_text(text, count, size=200)
    assert [c.text.split("\n")[0] for c in chunks] == ["# Alpha", "## Beta", "# Gamma"]
    assert "Second" not in chunks[0].text and "First" not in chunks[1].text


def test_no_chunk_exceeds_the_size_in_model_tokens() -> None:
    sentences = " ".join(f"Sentence number {i} talks about topic {i % 7} at some length." for i in range(200))
    text = "# Report\n\n" + sentences + "\n\n" + words(500)
    chunks = chunk_text(text, count, size=120, overlap=30)
    assert len(chunks) > 10
    assert all(c.tokens <= 120 for c in chunks), max(c.tokens for c in chunks)
    assert all(c.text.startswith("# Report") for c in chunks)
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_paragraphs_that_fit_are_never_split() -> None:
    paragraphs = [f"Paragraph {i}. " + " ".join(["filler"] * 30) for i in range(12)]
    chunks = chunk_text("\n\n".join(paragraphs), count, size=100, overlap=0)
    for paragraph in paragraphs:
        assert sum(paragraph in c.text for c in chunks) == 1


def test_consecutive_chunks_overlap_by_whole_sentences() -> None:
    text = " ".join(f"Fact {i} is that the value of item {i} equals {i * 3}." for i in range(80))
    chunks = chunk_text(text, count, size=100, overlap=30)
    assert len(chunks) >= 3
    for before, after in itertools.pairwise(chunks):
        carried = [line for line in after.text.split("\n") if line in before.text.split("\n")]
        assert carried and before.text.endswith(carried[-1]) and after.text.startswith(carried[0])
        assert count(" ".join(carried)) <= 30


def test_a_giant_word_run_is_cut_at_word_boundaries() -> None:
    chunks = chunk_text(words(1000), count, size=64, overlap=0)
    rebuilt = " ".join(c.text for c in chunks).split()
    assert rebuilt == words(1000).split()
    assert all(c.tokens <= 64 for c in chunks)


def test_blank_and_whitespace_documents_give_no_chunks() -> None:
    assert chunk_text("", count) == []
    assert chunk_text("\n\n   \n", count) == []
