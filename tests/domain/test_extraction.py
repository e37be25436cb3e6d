"""Extraction under limits: the text budget while text is produced, caps on what CSV, JSON, Word and PDF
files may turn into, and the child process that reads a file under memory, CPU and time limits."""

from __future__ import annotations

import asyncio
import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from convo.domain import extraction
from convo.domain.extraction import DOCX, ExtractionError, Limits, extract, extract_file
from tests.api.test_files import make_docx, make_docx_bomb, make_long_pdf
from tests.support import run_async

TOO_MUCH = "more than 5,000,000 characters"


def test_text_over_the_budget_is_refused() -> None:
    with pytest.raises(ExtractionError, match=TOO_MUCH):
        extract(b"a" * 5_000_001, "text/plain")
    assert len(extract(b"a" * 5_000_000, "text/plain")) == 5_000_000


def test_a_csv_header_repeated_on_every_row_cannot_blow_up() -> None:
    bomb = b"h" * 100_000 + b"\n" + b"x\n" * 200_000
    with pytest.raises(ExtractionError, match=TOO_MUCH):
        extract(bomb, "text/csv")


def test_long_csv_column_names_are_cut() -> None:
    body = extract(b"n" * 100 + b",port\nAurora,Lisbon\n", "text/csv")
    assert body == "n" * 59 + "…: Aurora; port: Lisbon"


def test_a_json_key_repeated_on_every_line_cannot_blow_up() -> None:
    bomb = json.dumps({"k" * 100_000: [0] * 200_000}).encode()
    with pytest.raises(ExtractionError, match=TOO_MUCH):
        extract(bomb, "application/json")


def test_deep_json_keeps_the_end_of_its_path() -> None:
    deep = json.dumps(json.loads('{"level": ' * 600 + '"bottom"' + "}" * 600)).encode()
    body = extract(deep, "application/json")
    path, value = body.split(": ")
    assert value == "bottom" and len(path) == 200 and path.startswith("…") and path.endswith(".level.level")


def test_json_nested_deeper_than_the_parser_goes_fails_clearly() -> None:
    with pytest.raises(ExtractionError, match="nested too deeply"):
        extract(b"[" * 100_000 + b"]" * 100_000, "application/json")


def test_a_docx_zip_bomb_is_refused_before_python_docx_opens_it() -> None:
    with pytest.raises(ExtractionError, match="unpacks to 200 MB; Convo reads at most 50 MB"):
        extract(make_docx_bomb(200), DOCX)
    with pytest.raises(ExtractionError, match=r"packed .* to 1.*zip bomb"):
        extract(make_docx_bomb(40), DOCX)  # under the size cap, but no document packs like that


def test_a_docx_of_too_many_parts_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
        for n in range(extraction.DOCX_MAX_MEMBERS):
            archive.writestr(f"word/media/{n}.bin", b"")
    with pytest.raises(ExtractionError, match="2,001 parts"):
        extract(out.getvalue(), DOCX)


def test_a_docx_table_with_huge_merged_cells_fails_while_it_is_read() -> None:
    import docx

    document = docx.Document()
    table = document.add_table(rows=100, cols=10)
    table.cell(0, 0).merge(table.cell(99, 9)).text = "w" * 100_000  # read once per grid cell: 100 M characters
    out = io.BytesIO()
    document.save(out)
    tracemalloc.start()
    try:
        with pytest.raises(ExtractionError, match=TOO_MUCH):
            extract(out.getvalue(), DOCX)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024  # stopped near the 5 M character budget
    assert "cell alpha | cell omega" in extract(make_docx("Notes", ["A paragraph."]), DOCX)


def test_a_pdf_over_the_page_cap_is_refused_before_its_pages_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extraction, "MAX_PDF_PAGES", 3)
    with pytest.raises(ExtractionError, match="4 pages; Convo reads at most 3"):
        extract(make_long_pdf(4), "application/pdf")
    assert "Page 3 of the harbour log." in extract(make_long_pdf(3), "application/pdf")


def test_a_pdf_page_over_the_page_budget_is_refused() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=1)
    pdf.text(1, 10, "word " * 25_000)  # one line, far off the page's edge
    with pytest.raises(ExtractionError, match="Page 1 of this PDF has more than 100,000 characters"):
        extract(bytes(pdf.output()), "application/pdf")


# -- the child process ---------------------------------------------------------------------------


def read(path: Path, content_type: str, limits: Limits | None = None) -> str:
    return run_async(extract_file(path, content_type, limits or Limits()))


def test_the_child_returns_the_text_or_the_reason(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("Grüße from the lighthouse.")
    assert read(tmp_path / "notes.txt", "text/plain") == "Grüße from the lighthouse."
    (tmp_path / "blank.txt").write_text("   \n")
    with pytest.raises(ExtractionError, match="This file has no text"):
        read(tmp_path / "blank.txt", "text/plain")


def test_a_child_over_its_memory_limit_fails_with_a_readable_reason(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_bytes(b"a" * (96 * 1024 * 1024))
    with pytest.raises(ExtractionError, match=r"needs more memory than Convo allows for reading one file \(32 MB\)"):
        read(tmp_path / "big.txt", "text/plain", Limits(memory_bytes=32 * 1024 * 1024))


@pytest.fixture
def slow_html(tmp_path: Path) -> Path:
    """HTML that takes BeautifulSoup a minute or so."""
    path = tmp_path / "slow.html"
    path.write_bytes(b"<html><body>" + b"<p>x</p>" * (2 * 1024 * 1024) + b"</body></html>")
    return path


def test_a_child_over_its_cpu_limit_is_stopped(slow_html: Path) -> None:
    with pytest.raises(ExtractionError, match="took longer than 1 s"):
        read(slow_html, "text/html", Limits(cpu_seconds=1, wall_seconds=100))


def test_a_child_over_its_wall_clock_limit_is_killed(slow_html: Path) -> None:
    with pytest.raises(ExtractionError, match="took longer than 2 s"):
        read(slow_html, "text/html", Limits(wall_seconds=2))


def test_a_cancelled_read_kills_its_child(slow_html: Path) -> None:
    def children() -> list[str]:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(slow_html).encode() in cmdline.read_bytes():
                    found.append(cmdline.parent.name)
            except OSError:  # ended meanwhile
                pass
        return found

    async def cancel_midway() -> list[str]:
        task = asyncio.create_task(extract_file(slow_html, "text/html", Limits()))
        await asyncio.sleep(1)
        running = children()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return running

    assert len(run_async(cancel_midway())) == 1  # a server stopping cancels its jobs
    assert children() == []
