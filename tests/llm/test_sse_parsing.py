
from convo.llm.openai_compat import sse_data
from tests.support import run_async


async def _collect(chunks):
    async def gen():
        for c in chunks:
            yield c

    return [d async for d in sse_data(gen())]


def parse(chunks):
    return run_async(_collect(chunks))


def test_events_split_across_chunks_and_line_endings():
    stream = b'data: {"a": 1}\n\n: comment\n\nevent: x\nid: 3\ndata: {"b": 2}\r\n\r\ndata: [DONE]\n\n'
    expected = [b'{"a": 1}', b'{"b": 2}', b"[DONE]"]
    assert parse([stream]) == expected
    assert parse([stream[i:i + 1] for i in range(len(stream))]) == expected, "byte by byte"
    assert parse([b"data: one\r", b"\ndata: two\r\n\r\n"]) == [b"one\ntwo"], "CRLF split between chunks"


def test_unterminated_last_event_still_counts():
    assert parse([b"data: x"]) == [b"x"]
    assert parse([b"data:nospace\n\n"]) == [b"nospace"]
