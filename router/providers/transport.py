"""The only outbound LLM I/O: one pooled aiohttp session per provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from router.errors import UpstreamError, UpstreamStatusError, UpstreamTimeoutError, UpstreamUnreachableError
from router.observability.tracing import outgoing_headers
from router.settings import ProviderKind, ProviderSettings

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "content-length", "content-encoding", "host"}
)


@dataclass(frozen=True)
class UpstreamReply:
    """A complete non-streaming answer from a provider."""

    status: int
    headers: dict[str, str]
    body: bytes


OnStreamFailure = Callable[[UpstreamError], object]


class UpstreamStream:
    """An open streaming answer: iterate raw byte chunks as they arrive (the first one already read), then close."""

    def __init__(self, response: aiohttp.ClientResponse, read_timeout_s: float, first: bytes = b"",
                 on_failure: OnStreamFailure | None = None) -> None:
        self.status = response.status
        self.headers = relayable_headers(response.headers)
        self._response = response
        self._read_timeout_s = read_timeout_s
        self._first = first
        self._on_failure = on_failure

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives; raise UpstreamError subclasses on failure (told to `on_failure` too)."""
        try:
            if self._first:
                yield self._first
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise self._failed(UpstreamTimeoutError("the upstream stream stalled")) from exc
        except aiohttp.ClientError as exc:
            raise self._failed(UpstreamUnreachableError(f"the upstream stream broke: {type(exc).__name__}")) from exc
        finally:
            self._response.release()

    def _failed(self, error: UpstreamError) -> UpstreamError:
        if self._on_failure is not None:
            self._on_failure(error)
        return error

    def close(self) -> None:
        """Drop the connection (used when the client goes away)."""
        self._response.close()


_OWN_HEADERS = frozenset({"date", "server"})  # the proxy's server sends its own


def relayable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Response headers worth relaying to the client, lower-cased, hop-by-hop and the server's own removed."""
    return {key.lower(): value for key, value in headers.items()
            if key.lower() not in HOP_BY_HOP and key.lower() not in _OWN_HEADERS}


class Provider:
    """An upstream API of one kind (anthropic or openai-compatible) with its own pooled session."""

    def __init__(self, name: str, kind: ProviderKind, settings: ProviderSettings) -> None:
        self.name = name
        self.kind = kind
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Open the pooled session (at application start-up)."""
        connector = aiohttp.TCPConnector(limit=self.settings.max_connections, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=self.settings.total_timeout_s,
                                        sock_connect=self.settings.connect_timeout_s,
                                        sock_read=self.settings.read_timeout_s)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=True, skip_auto_headers=("User-Agent",)
        )

    async def close(self) -> None:
        """Close the pooled session (at shutdown)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def is_open(self) -> bool:
        """Whether the pooled session is open."""
        return self._session is not None and not self._session.closed

    def url(self, path: str) -> str:
        """The absolute URL of an API path; OpenAI-compatible base URLs already end in /v1."""
        if self.kind == "openai" and path.startswith("/v1/"):
            path = path[3:]
        return self.settings.base_url + path

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"provider {self.name} is not open")
        return self._session

    async def _send(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str],
                    timeout_s: float | None = None) -> aiohttp.ClientResponse:
        session = self._require_session()
        options: dict[str, Any] = {}
        if timeout_s is not None:
            options["timeout"] = aiohttp.ClientTimeout(total=timeout_s)
        try:
            response = await session.request(method, self.url(path), data=body, headers=outgoing_headers(headers),
                                             **options)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeoutError(f"provider {self.name} did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachableError(
                f"provider {self.name} is unreachable ({type(exc).__name__})"
            ) from exc
        if response.status >= 400:
            try:
                error_body = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                error_body = b""
            finally:
                response.release()
            raise UpstreamStatusError(response.status, error_body, relayable_headers(response.headers), self.kind)
        return response

    async def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str],
                      timeout_s: float | None = None) -> UpstreamReply:
        """Send a request and read the whole answer; error statuses raise UpstreamStatusError."""
        response = await self._send(method, path, body, headers, timeout_s)
        try:
            payload = await response.read()
        except TimeoutError as exc:
            raise UpstreamTimeoutError(f"provider {self.name} did not finish in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachableError(f"provider {self.name} broke the answer") from exc
        finally:
            response.release()
        return UpstreamReply(response.status, relayable_headers(response.headers), payload)

    async def stream(self, path: str, body: bytes, headers: Mapping[str, str],
                     on_failure: OnStreamFailure | None = None) -> UpstreamStream:
        """Send a streaming request and return once the status, headers and first bytes have arrived (within
        `first_byte_timeout_s`): until then nothing has reached the client, so the call may still be retried.
        `on_failure` hears of a failure while the rest is read."""
        limit = self.settings.first_byte_timeout_s
        response: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(limit):
                response = await self._send("POST", path, body, headers)
                first = await _first_chunk(response)
        except TimeoutError as exc:
            if response is not None:
                response.close()
            raise UpstreamTimeoutError(f"provider {self.name} sent no first byte within {limit:g}s") from exc
        except aiohttp.ClientError as exc:
            assert response is not None  # _send maps its own errors
            response.close()
            raise UpstreamUnreachableError(f"provider {self.name} broke the answer before its first byte") from exc
        return UpstreamStream(response, self.settings.read_timeout_s, first, on_failure)


async def _first_chunk(response: aiohttp.ClientResponse) -> bytes:
    """The first bytes of a body as they arrive (b"" for an empty one)."""
    async for chunk in response.content.iter_any():
        return chunk
    return b""


def is_connect_timeout(error: UpstreamError) -> bool:
    """Whether a timeout struck before a connection was made (nothing reached the provider)."""
    return isinstance(error.__cause__, aiohttp.ConnectionTimeoutError)
