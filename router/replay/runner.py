"""Runs an ASGI app with uvicorn on a free loopback port in a daemon thread (for tests and demos)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

HOST = "127.0.0.1"


class BackgroundServer:
    """A uvicorn server on 127.0.0.1 in a daemon thread; a context manager, or call start() and stop()."""

    def __init__(self, app: ASGIApp, *, log_level: str = "warning", graceful_shutdown_s: int = 2) -> None:
        self.app = app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((HOST, 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        config = uvicorn.Config(app, host=HOST, port=self.port, log_level=log_level, lifespan="on",
                                timeout_graceful_shutdown=graceful_shutdown_s)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    def _run(self) -> None:
        """The thread body: serve on the pre-bound socket until asked to exit."""
        self._server.run(sockets=[self._socket])

    @property
    def running(self) -> bool:
        """Whether the server has started and not yet stopped."""
        return self._server.started and self._thread.is_alive()

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        """Start the thread and wait until the server accepts connections."""
        if self._thread.is_alive():
            return self
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server on {self.url} failed to start")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server on {self.url} did not start within {timeout_s} s")
            time.sleep(0.01)
        with socket.create_connection((HOST, self.port), timeout=timeout_s):
            pass
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the server to exit, wait for the thread, and release the socket."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=timeout_s)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
