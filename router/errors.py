"""The one exception tree of the proxy; router/api/errors.py maps it to HTTP in the client's dialect.

    CascadeFlowError
    ├── ConfigError                 invalid configuration (start-up, `config check`)
    └── ProxyError                  anything answered to a client with an HTTP status
        ├── InvalidRequestError     400  malformed JSON, invalid request
        ├── AuthenticationError     401  missing or unknown key
        ├── PermissionDeniedError   403  a known caller, not allowed this (an admin endpoint)
        ├── NotFoundError           404  unknown path or model
        ├── PayloadTooLargeError    413  body over server.max_body_bytes (or alone over max_inflight_body_bytes)
        ├── BodiesInFlightError     429  the bodies held in memory would pass server.max_inflight_body_bytes
        ├── ClientDisconnectedError 499  the client hung up before its answer began (its work is cancelled)
        ├── DependencyUnavailableError 503  shared state the request must be checked against cannot be read
        │   └── KeyStoreUnavailableError    the key store (a key not in the config cannot be checked)
        ├── ShuttingDownError       503  the answer was still running when the shutdown's grace for answers ended
        └── UpstreamError                the provider could not give an answer
            ├── UpstreamStatusError      the provider answered an error status (relayed as is)
            ├── UpstreamTimeoutError 504 no answer in time
            ├── UpstreamUnreachableError 502 connection failed
            ├── UpstreamMalformedError   502 an answer that is not what its wire format promises
            └── UpstreamUnavailableError 503 the provider's circuit is open: it is not called for now
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

ErrorKind = str
"""A closed vocabulary shared by both dialects (Anthropic error type names)."""


class CascadeFlowError(Exception):
    """Base of every error raised by the router."""


class ConfigError(CascadeFlowError):
    """The configuration is invalid; the message names the key path and the reason."""


class ProxyError(CascadeFlowError):
    """An error answered to the client with an HTTP status and an error kind."""

    status: ClassVar[int] = 500
    kind: ClassVar[ErrorKind] = "api_error"
    retry_after_s: float | None = None
    """When set, the answer's `retry-after` (whole seconds, at least 1)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    @property
    def status_code(self) -> int:
        """The HTTP status to answer with."""
        return self.status


class InvalidRequestError(ProxyError):
    """The request is malformed or invalid; it never reaches a provider."""

    status = 400
    kind = "invalid_request_error"


class AuthenticationError(ProxyError):
    """The client's key is missing or unknown."""

    status = 401
    kind = "authentication_error"


class PermissionDeniedError(ProxyError):
    """The caller is known but may not do this (an admin endpoint without an admin key)."""

    status = 403
    kind = "permission_error"


class NotFoundError(ProxyError):
    """The path or the model does not exist."""

    status = 404
    kind = "not_found_error"


class PayloadTooLargeError(ProxyError):
    """The request body exceeds the configured limit."""

    status = 413
    kind = "request_too_large"


class BodiesInFlightError(ProxyError):
    """The request bodies held in memory would pass `server.max_inflight_body_bytes`: worth retrying shortly,
    once requests in flight have ended (router/bodies.py)."""

    status = 429
    kind = "rate_limit_error"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClientDisconnectedError(ProxyError):
    """The client hung up before its answer began: the calls made for it are cancelled (nginx's 499)."""

    status = 499
    kind = "api_error"


class DependencyUnavailableError(ProxyError):
    """A store the request must be checked against cannot be read, and the config says to refuse rather than serve
    unchecked (`state.on_failure: closed`): worth retrying shortly. `dependency` names what is down as
    `cascadeflow_dependency_errors_total` does (rate_limiter, budgets, key_store)."""

    status = 503
    kind = "api_error"

    def __init__(self, message: str, *, dependency: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.dependency = dependency
        self.retry_after_s = retry_after_s


class KeyStoreUnavailableError(DependencyUnavailableError):
    """The key store could not be read, so a key that is not in the config cannot be checked."""

    def __init__(self, message: str) -> None:
        super().__init__(message, dependency="key_store")


class ShuttingDownError(ProxyError):
    """The proxy is shutting down and the request's answer was still running when the answers' share of
    `server.shutdown_grace_s` ended (router/shutdown.py): worth retrying, on another replica or once restarted."""

    status = 503
    kind = "overloaded_error"

    def __init__(self, message: str = "the proxy is shutting down and could not finish this answer in time; "
                                      "retry it", *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UpstreamError(ProxyError):
    """The provider could not give an answer."""

    status = 502
    kind = "api_error"


class UpstreamStatusError(UpstreamError):
    """The provider answered an error status; relayed with its status, body and retry-after."""

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str], provider_kind: str) -> None:
        super().__init__(f"upstream answered HTTP {status}")
        self.upstream_status = status
        self.body = body
        self.headers = dict(headers)
        self.provider_kind = provider_kind

    @property
    def status_code(self) -> int:
        """The provider's own status."""
        return self.upstream_status


class UpstreamTimeoutError(UpstreamError):
    """The provider did not answer in time."""

    status = 504
    kind = "timeout_error"


class UpstreamUnreachableError(UpstreamError):
    """The provider could not be reached."""

    status = 502
    kind = "api_error"


class UpstreamMalformedError(UpstreamError):
    """The provider's answer could not be decoded (invalid JSON, a missing or impossible field)."""

    status = 502
    kind = "api_error"


class UpstreamUnavailableError(UpstreamError):
    """The provider failed too often lately (its circuit breaker is open): not called until `retry_after_s`."""

    status = 503
    kind = "overloaded_error"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


STATUS_KINDS: dict[int, ErrorKind] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


OPENAI_CODES: Mapping[ErrorKind, str] = MappingProxyType({"rate_limit_error": "rate_limit_exceeded"})
"""The `code` of an OpenAI error body where it is not the error kind itself: OpenAI's own for a rate limit's 429."""


def openai_code(kind: ErrorKind) -> str:
    """The `code` of an OpenAI-dialect error body for an error kind (every 429 the proxy makes says
    `rate_limit_exceeded`, as OpenAI's own do)."""
    return OPENAI_CODES.get(kind, kind)


def kind_for_status(status: int) -> ErrorKind:
    """The error kind for an HTTP status."""
    if status in STATUS_KINDS:
        return STATUS_KINDS[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"
