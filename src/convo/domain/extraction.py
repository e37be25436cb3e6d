"""Text extraction from uploads, under limits: a text budget checked while the text grows, caps on what a
PDF or Word file may unpack to, and a child process with memory, CPU and wall-clock limits, so a hostile
file fails on its own instead of taking the server (and every restart after) down with it.

`python -m convo.domain.extraction PATH CONTENT_TYPE MEMORY_BYTES CPU_SECONDS` is that child: it prints
the text, or the reason it could not, with exit status 2. It imports nothing of Convo but this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import re
import resource
import signal
import sys
import traceback
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convo.errors import ConvoError

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 5_000_000  # about 1,000 pages; more is refused rather than indexed half
MAX_LABEL_CHARS = 60  # a CSV column name or JSON key is repeated on every row, so it is cut
MAX_PATH_CHARS = 200  # a JSON key path keeps its last characters
MAX_PDF_PAGES = 2_000
MAX_PAGE_CHARS = 100_000  # a dense page in small print has about 10,000
DOCX_MAX_MEMBERS = 2_000
DOCX_MAX_UNPACKED_BYTES = 50 * 1024 * 1024  # python-docx holds every part in memory
DOCX_MAX_RATIO = 100  # document XML packs 5-20×, a zip bomb about 1,000×
DOCX_RATIO_FROM_BYTES = 1024 * 1024  # below this a ratio says nothing

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_FAILED = 2  # child exit status: stdout holds the reason
_OUT_OF_MEMORY = 3


class ExtractionError(ConvoError):
    """A file whose type is fine but whose text cannot be had; the message is shown to the user."""

    status = 422
    code = "extraction_failed"


def decode_text(data: bytes) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


# -- text under a budget -------------------------------------------------------------------------


class _Text:
    """A file's paragraphs, counted as they come: a small file must not build a huge text before
    anything is checked."""

    def __init__(self) -> None:
        self.paragraphs: list[str] = []
        self.left = MAX_TEXT_CHARS

    def check(self, size: int) -> None:
        """Refuse a paragraph while it is being built, once it has `size` characters."""
        if size > self.left:
            raise ExtractionError(f"This file has more than {MAX_TEXT_CHARS:,} characters of text; split it up.")

    def add(self, paragraph: str) -> None:
        if paragraph:
            self.check(len(paragraph))
            self.left -= len(paragraph) + 2
            self.paragraphs.append(paragraph)


def _label(name: str) -> str:
    return name if len(name) <= MAX_LABEL_CHARS else name[:MAX_LABEL_CHARS - 1] + "…"


def _pdf_text(data: bytes, text: _Text) -> None:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("This PDF is password-protected.")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise ExtractionError(f"This PDF has {len(reader.pages):,} pages; Convo reads at most "
                                  f"{MAX_PDF_PAGES:,}, so split it up.")
        for number, page in enumerate(reader.pages, 1):
            page_text = (page.extract_text() or "").strip()
            if len(page_text) > MAX_PAGE_CHARS:
                raise ExtractionError(f"Page {number} of this PDF has more than {MAX_PAGE_CHARS:,} characters "
                                      "of text, more than a page can show.")
            text.add(page_text)
    except PdfReadError as exc:
        raise ExtractionError(f"This PDF could not be read: {exc}") from exc
    if not text.paragraphs:
        raise ExtractionError("This PDF has no text layer (a scan?); Convo does not run OCR.")


def _check_docx_zip(data: bytes) -> None:
    """Refuse a Word file whose parts unpack to far more than it weighs, before python-docx unpacks them
    all into memory. Reads are bounded by the declared sizes (zipfile stops there), so these are enough."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ExtractionError(f"This Word document is not a valid zip file: {exc}") from exc
    if len(members) > DOCX_MAX_MEMBERS:
        raise ExtractionError(f"This Word document has {len(members):,} parts; Convo reads at most "
                              f"{DOCX_MAX_MEMBERS:,}.")
    unpacked = sum(m.file_size for m in members)
    if unpacked > DOCX_MAX_UNPACKED_BYTES:
        raise ExtractionError(f"This Word document unpacks to {unpacked / 2**20:,.0f} MB; Convo reads at most "
                              f"{DOCX_MAX_UNPACKED_BYTES // 2**20} MB.")
    for member in members:
        if member.file_size > DOCX_RATIO_FROM_BYTES and member.file_size > DOCX_MAX_RATIO * member.compress_size:
            raise ExtractionError(f"This Word document's {member.filename[:100]} is packed "
                                  f"{member.file_size // max(member.compress_size, 1):,} to 1, far more than a "
                                  "real document; it looks like a zip bomb.")


def _docx_text(data: bytes, text: _Text) -> None:
    _check_docx_zip(data)
    import docx

    document = docx.Document(io.BytesIO(data))
    for block in document.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = docx.text.paragraph.Paragraph(block, document)
            line = paragraph.text.strip()
            if not line:
                continue
            style = (paragraph.style.name if paragraph.style is not None else "") or ""
            level = re.match(r"Heading (\d)", style)
            if level:
                line = "#" * int(level.group(1)) + " " + line
            elif style == "Title":
                line = "# " + line
            text.add(line)
        elif tag == "tbl":
            # Merged cells repeat in every grid column they span, so the table is counted cell by cell.
            rows, size = [], 0
            for row in docx.table.Table(block, document).rows:
                cells = []
                for cell in row.cells:
                    cells.append(cell.text.strip())
                    size += len(cells[-1]) + 3
                    text.check(size)
                rows.append(" | ".join(cells))
            text.add("\n".join(rows))


def _html_text(data: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg", "head"]):
        tag.decompose()
    for n in range(1, 7):
        for heading in soup.find_all(f"h{n}"):
            heading.replace_with(f"\n\n{'#' * n} {heading.get_text(' ', strip=True)}\n\n")
    for block in soup.find_all(["p", "div", "li", "tr", "pre", "blockquote", "section", "article", "br", "table"]):
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in soup.get_text().split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _csv_text(data: str, text: _Text) -> None:
    """One paragraph per row, each value under its column's (shortened) name, so a row is retrieved whole."""
    try:
        dialect = csv.Sniffer().sniff(data[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = csv.reader(io.StringIO(data), dialect)
    try:
        header = next(rows, None)
        if header is None:
            return
        labels = [_label(name.strip()) for name in header]
        body = False
        for row in rows:
            body = True
            cells, size = [], 0
            for i, value in enumerate(row):
                if value := value.strip():
                    cells.append(f"{labels[i] if i < len(labels) else f'column {i + 1}'}: {value}")
                    size += len(cells[-1]) + 2
                    text.check(size)
            text.add("; ".join(cells))
        if not body:
            text.add(", ".join(header))
    except csv.Error as exc:
        raise ExtractionError(f"This CSV could not be read (line {rows.line_num:,}): {exc}") from exc


def _json_text(data: str, text: _Text) -> None:
    """`path: value` lines, one paragraph per top-level entry."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ExtractionError("This JSON is nested too deeply to read.") from None
    except ValueError as exc:
        raise ExtractionError(f"This file is not valid JSON: {exc}") from None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else [("", value)]
    for key, child in items:
        lines, size = [], 0
        for line in _json_lines(child, f"[{key}]" if isinstance(key, int) else _label(str(key))):
            lines.append(line)
            size += len(line) + 1
            text.check(size)
        text.add("\n".join(lines))


def _json_lines(root: Any, root_path: str) -> Iterator[str]:
    """The leaves under `root`, depth first, with a stack of iterators instead of recursion (deep JSON
    is valid JSON)."""
    stack = [iter([(root_path, root)])]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path, node = entry
        if isinstance(node, dict | list):
            stack.append(_json_children(path, node))
        else:
            yield f"{path}: {node}" if path else str(node)


def _json_children(path: str, node: dict[Any, Any] | list[Any]) -> Iterator[tuple[str, Any]]:
    """A container's entries with their paths, made one at a time and cut to their end, as every line
    repeats its path."""
    if isinstance(node, dict):
        pairs = ((f"{path}.{_label(str(k))}" if path else _label(str(k)), v) for k, v in node.items())
    else:
        pairs = ((f"{path}[{i}]", v) for i, v in enumerate(node))
    for child_path, child in pairs:
        yield (child_path if len(child_path) <= MAX_PATH_CHARS else "…" + child_path[1 - MAX_PATH_CHARS:]), child


def extract(data: bytes, content_type: str) -> str:
    """The text of a file of a detected type, in this process (blocking); `extract_file` runs it in a
    child under limits."""
    text = _Text()
    if content_type == "application/pdf":
        _pdf_text(data, text)
    elif content_type == DOCX:
        _docx_text(data, text)
    else:
        decoded = decode_text(data) or ""
        if content_type == "text/html":
            text.add(_html_text(decoded))
        elif content_type == "text/csv":
            _csv_text(decoded, text)
        elif content_type == "application/json":
            _json_text(decoded, text)
        else:
            text.add(decoded)
    body = "\n\n".join(text.paragraphs).replace("\x00", "")
    if not body.strip():
        raise ExtractionError("This file has no text.")
    return body


# -- the child process ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What reading one file may take. Memory is address space on top of the child's interpreter; the
    CPU limit also ends a child whose parent is gone."""

    memory_bytes: int = 1024 * 1024 * 1024
    cpu_seconds: int = 120
    wall_seconds: float = 120.0


def _too_slow(seconds: float) -> str:
    return f"Reading this file took longer than {seconds:g} s, so Convo stopped it."


def _too_big(limits: Limits) -> str:
    return (f"This file needs more memory than Convo allows for reading one file "
            f"({limits.memory_bytes / 2**20:,.0f} MB).")


async def extract_file(path: Path, content_type: str, limits: Limits) -> str:
    """The text of a stored file, read by a child process under `limits`: a file that would exhaust
    memory or time ends only the child, and fails with a reason a user can read."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convo.domain.extraction", str(path), content_type, str(limits.memory_bytes),
        str(limits.cpu_seconds), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), limits.wall_seconds)
    except TimeoutError:
        raise ExtractionError(_too_slow(limits.wall_seconds)) from None
    finally:
        if process.returncode is None:  # timed out or cancelled
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    code = process.returncode
    if code == 0:
        return out.decode("utf-8")
    if code == _FAILED:
        raise ExtractionError(out.decode("utf-8", "replace"))
    if code == -signal.SIGXCPU:
        raise ExtractionError(_too_slow(limits.cpu_seconds))
    if code in (_OUT_OF_MEMORY, -signal.SIGKILL):  # SIGKILL that is not ours: the kernel's OOM killer
        raise ExtractionError(_too_big(limits))
    log.warning("reading %s (%s) ended with status %s: %s", path, content_type, code,
                err.decode("utf-8", "replace")[-2000:])
    what = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
    raise ExtractionError(f"The reader stopped unexpectedly on this file ({what}); it may be damaged.")


def _mapped_bytes() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _cap(kind: int, soft: int, hard: int) -> None:
    _, ceiling = resource.getrlimit(kind)
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(kind, (soft, hard))


def _limit(memory_bytes: int, cpu_seconds: int) -> None:
    """Cap this process: address space on top of what the interpreter maps already, CPU time (SIGXCPU
    ends it, SIGKILL a second later), and no core files."""
    size = _mapped_bytes() + memory_bytes
    _cap(resource.RLIMIT_AS, size, size)
    _cap(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    _cap(resource.RLIMIT_CORE, 0, 0)


def main(argv: list[str]) -> int:
    path, content_type, memory_bytes, cpu_seconds = argv
    _limit(int(memory_bytes), int(cpu_seconds))
    logging.disable(logging.WARNING)  # pypdf warns about every damaged object; stderr is for crashes
    try:
        # A PDF's text can hold lone surrogates, which neither the pipe nor PostgreSQL take.
        sys.stdout.buffer.write(extract(Path(path).read_bytes(), content_type).encode("utf-8", "replace"))
        return 0
    except ExtractionError as exc:
        reason = str(exc)
    except MemoryError:
        return _OUT_OF_MEMORY
    except Exception as exc:
        traceback.print_exc()
        reason = f"This file could not be read ({type(exc).__name__}); it may be damaged."
    sys.stdout.write(reason)
    return _FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
