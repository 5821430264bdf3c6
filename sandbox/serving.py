"""How the sandbox serves and stops things: a Werkzeug server on a loopback port on its own thread,
and the stop of a child process group (SIGTERM, a grace period, then SIGKILL).

``with LoopbackServer(app, name="alerts-receiver") as server: server.url`` serves ``app`` on a
free port; pass ``ssl_context`` for HTTPS.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import threading
from collections.abc import Callable

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

KILL_WAIT_SECONDS = 10


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug logs a line per request; drills make thousands, which would drown the sandbox's output."""

    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


class LoopbackServer:
    """One threaded Werkzeug server: the port is bound on construction, served from `start()` on."""

    def __init__(self, app: Callable, *, name: str, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None, quiet: bool = True,
                 poll_interval: float = 0.5) -> None:
        self.wsgi: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=QuietRequestHandler if quiet else None,
            ssl_context=ssl_context,
        )
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://{host}:{self.wsgi.server_port}"
        # serve_forever checks for shutdown every poll_interval, so it bounds how long stop() takes.
        self._thread = threading.Thread(target=self.wsgi.serve_forever, kwargs={"poll_interval": poll_interval},
                                        name=name, daemon=True)

    @property
    def port(self) -> int:
        return self.wsgi.server_port

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.wsgi.shutdown()
        self.wsgi.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process_group(process: subprocess.Popen, *, grace_seconds: float) -> None:
    """Stop a child started with ``start_new_session=True`` and everything it spawned: SIGTERM its
    process group, wait up to `grace_seconds`, then SIGKILL the group."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=KILL_WAIT_SECONDS)
    except ProcessLookupError:
        pass
