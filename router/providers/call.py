"""The one upstream call: relay an answer to the client as it arrives, or buffer a complete one.

Relay: the client's own dialect is forwarded raw (only the model name may change) and observed once by the
wire's decoder; another dialect is decoded once into hub events and encoded into the client's frames. Either
way the answer ends in one `Completion` (message and usage): at once for JSON, at the end of a stream (also a
broken or abandoned one) through `on_done`. Buffer: a complete answer that the client never sees (a draft,
an exploration, a grader's verdict).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from router.errors import UpstreamError, UpstreamMalformedError
from router.protocol.hub import from_hub_message, to_hub_request
from router.protocol.sse import SSEDecoder, SSEEvent
from router.protocol.streams import EARLY_END, ClientEncoder, error_frame, rewrite_model
from router.protocol.tokens import estimate_input_tokens
from router.providers.registry import NoCredentials, Target, upstream_headers
from router.providers.resilience import UpstreamGuard
from router.providers.transport import UpstreamReply, UpstreamStream
from router.providers.wire import Completion, MalformedAnswer, StreamDecoder, StreamMode
from router.types import Answer, ClientCall, Dialect, Endpoint, JSONAnswer, JSONObject, StreamAnswer, client_family

_JSON = {"content-type": "application/json"}
_SSE = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
_DECODE_ERRORS = (MalformedAnswer, orjson.JSONDecodeError, ValueError, TypeError, KeyError, AttributeError)

OnDone = Callable[[Completion], object]
T = TypeVar("T")


@dataclass(frozen=True)
class Relayed:
    """An answer for the client; its completion now (JSON) or None (a stream hands it to `on_done` at its end)."""

    answer: Answer
    completion: Completion | None


@dataclass(frozen=True)
class Buffered:
    """A complete answer nobody has seen yet, and how long it took."""

    completion: Completion
    latency_ms: float


class Upstream:
    """Calls providers through their wire adapters, under each provider's retries and circuit breaker (`guard`)."""

    def __init__(self, *, spend_client_keys: bool = False, guard: UpstreamGuard | None = None) -> None:
        self._spend_client_keys = spend_client_keys
        self._guard = guard

    def reconfigure(self, *, spend_client_keys: bool) -> None:
        """Whether background calls may spend a client's own key, from now on (a reloaded `labels`)."""
        self._spend_client_keys = spend_client_keys

    async def _guarded(self, target: Target, attempt: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """One call, before any of its answer reached the client: under the guard when there is one."""
        if self._guard is None:
            return await attempt()
        return await self._guard.call(target.provider.name, attempt, retry=retry)

    async def _post(self, target: Target, path: str, body: bytes, headers: dict[str, str]) -> UpstreamReply:
        """A JSON answer, retried."""
        return await self._guarded(target, lambda: target.provider.request("POST", path, body, headers))

    async def _open(self, target: Target, path: str, body: bytes, headers: dict[str, str], *,
                    retry: bool = True) -> UpstreamStream:
        """A stream up to its first bytes (retried when `retry`); a later break is told to the breaker."""
        if self._guard is None:
            return await target.provider.stream(path, body, headers)
        failed = self._guard.stream_failed(target.provider.name)
        return await self._guard.call(target.provider.name,
                                      lambda: target.provider.stream(path, body, headers, on_failure=failed),
                                      retry=retry)

    def _headers(self, call: ClientCall, target: Target, *, background: bool = False) -> dict[str, str]:
        return upstream_headers(target.provider, call.headers, call.principal,
                                client_family=client_family(call.dialect), background=background,
                                spend_client_keys=self._spend_client_keys)

    async def count_tokens(self, call: ClientCall, target: Target) -> Answer:
        """Anthropic counts natively; other providers get an estimate."""
        if not target.native:
            count = estimate_input_tokens(call.body)
            return JSONAnswer(200, {**_JSON, "x-cascadeflow-token-count": "estimate"},
                              orjson.dumps({"input_tokens": count}))
        body = orjson.dumps({**call.body, "model": target.upstream_model})
        path = target.wire.path(call.endpoint, call.query)
        reply = await self._post(target, path, body, self._headers(call, target))
        return JSONAnswer(reply.status, {**reply.headers, **_JSON}, reply.body)

    async def relay(self, call: ClientCall, target: Target, *, needs_message: bool, on_done: OnDone) -> Relayed:
        """Serve the call from the target, in the client's dialect."""
        if target.native:
            return await self._relay_raw(call, target, needs_message, on_done)
        return await self._relay_translated(call, target, on_done)

    async def _relay_raw(self, call: ClientCall, target: Target, needs_message: bool, on_done: OnDone) -> Relayed:
        renamed = target.upstream_model != call.model
        changes: JSONObject = {"model": target.upstream_model} if renamed else {}
        asks_usage = call.stream and target.wire.dialect is Dialect.OPENAI_CHAT and not _asks_usage(call.body)
        if asks_usage:  # the ledger needs the stream's usage even when the client did not ask for it
            options = call.body.get("stream_options")
            changes["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        body = orjson.dumps({**call.body, **changes}) if changes else call.raw_body
        path = target.wire.path(call.endpoint, call.query)
        headers = self._headers(call, target)
        if call.stream:
            upstream = await self._open(target, path, body, headers)
            decoder = target.wire.decoder(StreamMode(events=False, message=needs_message, model=call.model))
            reframe = Reframe(call.model if renamed else None, drop_usage_chunk=asks_usage)
            frames = _raw_frames(call, upstream, decoder, reframe, on_done)
            return Relayed(StreamAnswer(upstream.status, _stream_headers(upstream), frames), None)
        reply = await self._post(target, path, body, headers)
        try:
            data: Any = orjson.loads(reply.body)
            completion = target.wire.decode(data)
        except _DECODE_ERRORS as exc:
            if renamed or isinstance(exc, orjson.JSONDecodeError):  # not JSON at all: no answer a client can read
                raise UpstreamMalformedError(f"the upstream answer could not be decoded: {exc}") from exc
            return Relayed(JSONAnswer(reply.status, {**reply.headers, **_JSON}, reply.body),
                           Completion(None, None, error=f"undecodable answer: {exc}"))
        payload = reply.body
        if renamed:
            rewrite_model(data, call.model)
            payload = orjson.dumps(data)
        return Relayed(JSONAnswer(reply.status, {**reply.headers, **_JSON}, payload), completion)

    async def _relay_translated(self, call: ClientCall, target: Target, on_done: OnDone) -> Relayed:
        hub = to_hub_request(call)
        body = orjson.dumps(target.wire.build(hub, target.upstream_model))
        path = target.wire.path(call.endpoint, call.query)
        headers = self._headers(call, target)
        if call.stream:
            upstream = await self._open(target, path, body, headers)
            decoder = target.wire.decoder(StreamMode(events=True, message=True, model=call.model))
            encoder = ClientEncoder(call.dialect, call.model, call.body)
            frames = _translated_frames(upstream, decoder, encoder, on_done)
            return Relayed(StreamAnswer(upstream.status, _stream_headers(upstream), frames), None)
        reply = await self._post(target, path, body, headers)
        try:
            completion = target.wire.decode(orjson.loads(reply.body))
        except _DECODE_ERRORS as exc:
            raise UpstreamMalformedError(f"the upstream answer could not be decoded: {exc}") from exc
        assert completion.message is not None
        payload = orjson.dumps(from_hub_message(call, completion.message))
        passable = {k: v for k, v in reply.headers.items() if k != "content-type"}
        return Relayed(JSONAnswer(reply.status, {**passable, **_JSON}, payload), completion)

    async def buffer(self, call: ClientCall, target: Target, request: JSONObject, *, native: bool,
                     timeout_s: float, background: bool = False, beta: str | None = None,
                     logprobs: bool = False, on_cancel: OnDone | None = None) -> Buffered:
        """A complete answer, streamed from the provider and never shown. `request` is a hub request, or a body of
        the target's own wire when `native`. A failed call (error, broken stream, timeout) is an incomplete
        completion that keeps the usage seen before it failed; raises NoCredentials. A cancelled call closes its
        connection and hands what it had spent to `on_cancel` before the cancellation goes on."""
        started = time.perf_counter()
        body = dict(request) if native else target.wire.build(request, target.upstream_model)
        body.update(model=target.upstream_model, stream=True)
        if target.wire.dialect is Dialect.OPENAI_CHAT:
            body["stream_options"] = {"include_usage": True}
            if logprobs:
                body["logprobs"] = True
        headers = self._headers(call, target, background=background)
        if beta is not None and "anthropic-beta" in headers:  # the draft's own betas; none left drops the header
            if beta:
                headers["anthropic-beta"] = beta
            else:
                del headers["anthropic-beta"]
        decoder = target.wire.decoder(StreamMode(events=False, message=True, logprobs=logprobs, model=call.model))
        try:
            async with asyncio.timeout(timeout_s):
                upstream = await self._open(target, target.wire.path(Endpoint.MESSAGES, _beta_query(call)),
                                            orjson.dumps(body), headers, retry=False)
                try:
                    await _drain(upstream, decoder)
                finally:
                    upstream.close()
            completion = decoder.completion()
        except TimeoutError:  # what arrived before the deadline was spent all the same
            completion = _ended(decoder, f"no complete answer within {timeout_s:g}s")
        except UpstreamError as exc:
            completion = _ended(decoder, exc.message)
        except asyncio.CancelledError:  # nobody waits for it any more: what it spent is still accounted for
            if on_cancel is not None:
                on_cancel(_ended(decoder, "cancelled"))
            raise
        return Buffered(completion, (time.perf_counter() - started) * 1000.0)


def _asks_usage(body: JSONObject) -> bool:
    """Whether a chat client asked for its stream's usage."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _beta_query(call: ClientCall) -> str:
    return "beta=true" if "beta=true" in call.query else ""


def _stream_headers(upstream: UpstreamStream) -> dict[str, str]:
    return {**{k: v for k, v in upstream.headers.items() if k != "content-type"}, **_SSE}


async def _events(upstream: UpstreamStream) -> AsyncIterator[tuple[bytes, list[SSEEvent]]]:
    """The one SSE decoding loop: each raw chunk with the events it completed, then b"" with the last ones."""
    sse = SSEDecoder()
    async for chunk in upstream.chunks():
        yield chunk, sse.feed(chunk)
    yield b"", sse.flush()


async def _drain(upstream: UpstreamStream, decoder: StreamDecoder) -> None:
    try:
        async for _, events in _events(upstream):
            for event in events:
                decoder.feed(event)
        decoder.finish()
    except _DECODE_ERRORS as exc:
        raise UpstreamMalformedError(f"the upstream stream could not be decoded: {exc}") from exc


_MODEL_FIELD = re.compile(r'"model": ?"(?:[^"\\]|\\.)*"')
_USAGE_ONLY = re.compile(r'"choices": ?\[\]')


@dataclass(frozen=True)
class Reframe:
    """How a raw stream's events are changed on their way: the model renamed, the usage chunk the proxy asked
    for (and the client did not) dropped. Without either, chunks pass untouched."""

    rename_to: str | None = None
    drop_usage_chunk: bool = False

    @property
    def active(self) -> bool:
        """Whether events are re-framed at all."""
        return self.rename_to is not None or self.drop_usage_chunk

    def frames(self, events: list[SSEEvent]) -> bytes:
        """The events re-framed (a JSON key is never preceded by a backslash, so text inside strings is left
        alone: no JSON decoding)."""
        field = '"model":' + orjson.dumps(self.rename_to).decode() if self.rename_to is not None else None
        out = []
        for event in events:
            data = event.data
            if self.drop_usage_chunk and '"usage"' in data and _USAGE_ONLY.search(data):
                continue
            if field is not None:
                data = _MODEL_FIELD.sub(lambda _: field, data)
            prefix = f"event: {event.event}\n" if event.event else ""
            out.append(f"{prefix}data: {data}\n\n".encode())
        return b"".join(out)


def _whole_events(data: bytes) -> int:
    """How many leading bytes end with a whole event (a blank line)."""
    lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def _malformed(events: list[SSEEvent]) -> str | None:
    """An event whose data cannot be a JSON object nor `[DONE]` (cut short, or garbage), checked by its framing
    alone: the relay does not parse what it forwards."""
    for event in events:
        data = event.data.strip()
        if data and data != "[DONE]" and not (data[0] == "{" and data[-1] == "}"):
            return f"a malformed event ({data[:40]!r})"
    return None


def _observe(decoder: StreamDecoder, events: list[SSEEvent]) -> str | None:
    """Feed the decoder; the reason the answer can no longer be decoded, if it cannot."""
    try:
        for event in events:
            decoder.feed(event)
    except _DECODE_ERRORS as exc:
        return f"undecodable stream event: {exc}"
    return None


def _ended(decoder: StreamDecoder, broken: str | None) -> Completion:
    """The decoder's completion; incomplete (keeping the usage seen so far) when the stream broke."""
    try:
        decoder.finish()
        completion = decoder.completion()
    except _DECODE_ERRORS as exc:
        return Completion(None, None, error=f"undecodable stream: {exc}")
    if broken is not None:
        return Completion(None, completion.usage, completion.logprobs, broken)
    return completion


async def _raw_frames(call: ClientCall, upstream: UpstreamStream, decoder: StreamDecoder, reframe: Reframe,
                      on_done: OnDone) -> AsyncIterator[bytes]:
    """The client's own stream, relayed as it arrives (renamed if needed) and observed once. Only whole events
    are relayed (an event cut by a failure is never half sent), and a malformed one ends the stream."""
    broken: str | None = None
    completion: Completion | None = None
    pending = b""  # the start of an event not yet complete
    try:
        async for chunk, events in _events(upstream):
            if (malformed := _malformed(events)) is not None:
                upstream.close()
                raise UpstreamMalformedError(f"the upstream stream could not be decoded: {malformed}")
            if broken is None:
                broken = _observe(decoder, events)
            if reframe.active:
                if events:
                    yield reframe.frames(events)
            elif chunk:
                pending += chunk
                if whole := _whole_events(pending):
                    yield pending[:whole]
                    pending = pending[whole:]
        completion = _ended(decoder, broken)
        if completion.error == EARLY_END:  # the upstream never ended its answer: say so in the client's dialect
            yield error_frame(call.dialect, "api_error", EARLY_END)
        elif pending:
            yield pending
    except UpstreamError as exc:
        completion = _ended(decoder, exc.message)
        yield error_frame(call.dialect, exc.kind, exc.message)
    finally:
        if completion is None:  # the client went away: account for what was spent so far
            upstream.close()
            on_done(_ended(decoder, broken or "the client disconnected"))
    on_done(completion)


async def _translated_frames(upstream: UpstreamStream, decoder: StreamDecoder, encoder: ClientEncoder,
                             on_done: OnDone) -> AsyncIterator[bytes]:
    """Provider events decoded once into hub events and encoded into the client's frames."""
    completion: Completion | None = None
    try:
        async for _, events in _events(upstream):
            for event in events:
                for hub_event in decoder.feed(event):
                    for frame in encoder.feed(hub_event):
                        yield frame
        for hub_event in decoder.finish():
            for frame in encoder.feed(hub_event):
                yield frame
        completion = decoder.completion()
    except UpstreamError as exc:
        completion = _ended(decoder, exc.message)
        for frame in encoder.fail(exc):
            yield frame
    except _DECODE_ERRORS as exc:
        completion = _ended(decoder, f"undecodable stream: {exc}")
        for frame in encoder.fail(UpstreamMalformedError("the upstream stream could not be decoded")):
            yield frame
    finally:
        upstream.close()
        if completion is None:  # the client went away mid-stream: account for what was spent so far
            on_done(_ended(decoder, "the client disconnected"))
    for frame in encoder.finish():
        yield frame
    on_done(completion)


__all__ = ["Buffered", "NoCredentials", "OnDone", "Relayed", "Upstream"]
