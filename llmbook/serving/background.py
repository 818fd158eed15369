"""Run the server in a background thread of this process (notebooks, tests, benchmarks).

``python -m llmbook serve`` blocks its terminal.  A notebook or a test needs the same
server *beside* its own code: :class:`BackgroundServer` binds a free port on 127.0.0.1,
runs uvicorn in a daemon thread and stops it (closing the app's batcher) afterwards::

    app = create_app(shipped_checkpoint("gpt-poetry"))
    with BackgroundServer(app) as server:
        openai.OpenAI(base_url=server.url + "/v1", api_key="none").models.list()

or, across notebook cells, ``server = BackgroundServer(app).start()`` … ``server.stop()``.
Only loopback addresses may be bound: a server started from a notebook has no
authentication and must not be reachable from other machines.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from types import TracebackType
from typing import Any

__all__ = ["BackgroundServer"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BackgroundServer:
    """uvicorn serving ``app`` on ``host`` (loopback only) in a daemon thread.

    ``port=0`` (the default) lets the system pick a free port; :attr:`url` is then known
    after :meth:`start`.  :meth:`start` returns once the server accepts connections (or
    raises :class:`RuntimeError` after ``start_timeout_s``); :meth:`stop` asks uvicorn to
    exit, which runs the app's shutdown (the batcher's worker thread ends), and joins the
    thread.  Both are idempotent; the object is also a context manager.  An app serves
    once: after :meth:`stop` its batcher is closed (requests would get 503), so serve a
    new :func:`~llmbook.serving.server.create_app` to start again.
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 10.0
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(
                f"BackgroundServer binds loopback addresses only, got host={host!r}; "
                "use 127.0.0.1 (or run `python -m llmbook serve --host ...` on purpose)"
            )
        if not 0 <= port < 65536:
            raise ValueError(f"port must be in 0 … 65535 (0: a free port), got {port}")
        self.app = app
        self.host = host
        self.port = port
        self.start_timeout_s = start_timeout_s
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the base URL; the OpenAI API is under ``/v1``)."""
        if self._sock is None:
            raise RuntimeError("the server is not running: call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> BackgroundServer:
        """Bind the port, start uvicorn in a thread, wait until it serves; returns ``self``."""
        if self.running:
            return self
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="error"))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"llmbook-serve-{self.port}",
            daemon=True,
        )
        self._thread.start()
        end = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                self.stop()
                raise RuntimeError(
                    f"the server on {self.host}:{self.port} did not start within "
                    f"{self.start_timeout_s:g} s (see the errors printed above)"
                )
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask uvicorn to exit and wait for its thread (at most ``timeout_s``)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._sock is not None:
            self._sock.close()
        self._server, self._thread, self._sock = None, None, None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
