"""The incremental SSE decoder."""

from __future__ import annotations

from router.protocol.sse import SSEDecoder, SSEEvent


def test_events_split_across_chunks_and_crlf() -> None:
    decoder = SSEDecoder()
    stream = b"event: a\r\ndata: {\"x\":1}\r\n\r\n: comment\n\nevent: b\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n"
    events: list[SSEEvent] = []
    for i in range(0, len(stream), 7):
        events.extend(decoder.feed(stream[i : i + 7]))
    events.extend(decoder.flush())
    assert events == [SSEEvent("a", '{"x":1}'), SSEEvent("b", "line1\nline2"), SSEEvent(None, "[DONE]")]


def test_flush_returns_unterminated_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: x\ndata: 1") == []
    assert decoder.flush() == [SSEEvent("x", "1")]
