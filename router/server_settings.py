"""Where the proxy listens, how much it accepts and how it keeps slow answers' connections alive."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


def is_loopback(host: str) -> bool:
    """Whether a listen address is on loopback only (`localhost`, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServerSettings(BaseModel):
    """Where the proxy listens and how much it accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    open_without_keys: bool = False
    """Deprecated: `auth.mode: open`. True lets a proxy without proxy keys in its config listen off loopback (it
    stays pass-through only while the key store holds no key either)."""
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    """Larger request bodies get 413 before they are read whole (Anthropic's own limit is 32 MB)."""
    max_inflight_body_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    """All request bodies held at once in this process (each worker): past it 429, or 413 for one body alone over it
    (router/bodies.py). With its decoded JSON a body takes two to three times its size (more when made of many
    tiny strings), so 256 MB keeps bodies under about 1 GB and still admits eight of the 32 MB maximum at once."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace_s: float = Field(30.0, ge=0, le=3600)
    """The whole shutdown, SIGTERM to exit: answers in flight (streams too) get it less a quarter (at most 5 s), the
    writers and connections that quarter (router/shutdown.py)."""
    stream_keepalive_s: float = Field(10.0, ge=0, le=3600)
    """A streamed request on a cascade rule whose answer has not begun after this long (the draft is still being
    made or judged) gets its 200 and event-stream headers at once, then an SSE comment every this many seconds until
    the answer flows, so clients with an idle timeout (Claude Code's is 300 s) keep waiting. Such an answer carries
    no `x-cascadeflow-*` headers (the outcome log has the route), and a failure after that point ends the stream
    with an error event in the client's dialect instead of an HTTP error status. 0 turns it off."""
