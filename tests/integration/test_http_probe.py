"""The blue-green HTTP probe adapter against a real local HTTP server (Werkzeug, a free port, a thread):
the status it answers, redirects followed only to http(s), refusals, unreachable and silent services."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from upgrade.adapters.http_probe import MAX_REDIRECTS, http_status
from upgrade.errors import NotAllowed, PermanentError

PROBE_TIMEOUT = 0.5  # seconds; only the silent route waits, and it outlasts this by far


class ProbeTarget:
    """A service on green as a probe sees it: each path answers one way."""

    def __init__(self) -> None:
        self.release = threading.Event()  # frees the silent route's handlers when the test ends
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="probe-target", daemon=True)

    def app(self, environ, start_response):
        request = Request(environ)
        path = request.path
        if path == "/healthz":
            response = Response("ok", status=200)
        elif path == "/broken":
            response = Response("down", status=503)
        elif path == "/moved":
            response = Response(status=302, headers={"Location": "/healthz"})
        elif path == "/moved-absolute":
            response = Response(status=301, headers={"Location": f"{self.base}/broken"})
        elif path.startswith("/to-"):  # /to-file, /to-ftp, /to-data: a redirect off http
            target = {"/to-file": "file:///etc/passwd", "/to-ftp": "ftp://127.0.0.1/x",
                      "/to-data": "data:text/plain,hi"}[path]
            response = Response(status=307, headers={"Location": target})
        elif path == "/loop":
            response = Response(status=302, headers={"Location": "/loop"})
        elif path == "/silent":
            self.release.wait(30)  # never answers within the probe's timeout
            response = Response("late", status=200)
        else:
            response = Response("no such page", status=404)
        return response(environ, start_response)

    def __enter__(self) -> ProbeTarget:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def target() -> Iterator[ProbeTarget]:
    with ProbeTarget() as running:
        yield running


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound on loopback that nobody listens on: connecting is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.mark.parametrize(("path", "expected"), [
    ("/healthz", 200),
    ("/broken", 503),  # an error status is an answer, compared with the expected one by validation
    ("/nowhere", 404),
    ("/moved", 200),  # a relative redirect on the same server is followed
    ("/moved-absolute", 503),
])
def test_probe_reports_the_status_the_service_answers(target, path, expected):
    # GIVEN a service on a free port / WHEN probed / THEN the probe reports its final status
    assert http_status(target.base + path, PROBE_TIMEOUT) == expected


@pytest.mark.parametrize("path", ["/to-file", "/to-ftp", "/to-data"])
def test_a_redirect_off_http_is_refused_not_followed(target, path):
    with pytest.raises(NotAllowed) as refused:
        http_status(target.base + path, PROBE_TIMEOUT)
    assert f"{target.base}{path} redirects to" in str(refused.value) and "http and https only" in str(refused.value)


def test_a_redirect_loop_ends_with_the_redirect_status(target):
    # GIVEN a page that redirects to itself / THEN the probe stops after a few hops with the 3xx it got
    assert MAX_REDIRECTS <= 10
    assert http_status(target.base + "/loop", PROBE_TIMEOUT) == 302


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "ftp://127.0.0.1/x",
    "data:text/plain,hi",
    "gopher://127.0.0.1/",
    "/healthz",  # no scheme
])
def test_only_http_and_https_urls_are_probed(url):
    with pytest.raises(NotAllowed, match="http and https only"):
        http_status(url, PROBE_TIMEOUT)


@pytest.mark.parametrize("url", ["http://127.0.0.1:notaport/", "http://[::1/"])
def test_a_malformed_url_is_a_permanent_error(url):
    with pytest.raises(PermanentError, match="malformed"):
        http_status(url, PROBE_TIMEOUT)


def test_a_refused_connection_is_unreachable(closed_port):
    with pytest.raises(OSError):
        http_status(f"http://127.0.0.1:{closed_port}/healthz", PROBE_TIMEOUT)


@pytest.fixture
def not_http_port() -> Iterator[int]:
    """A loopback port whose listener answers with something that is not HTTP (an SSH banner)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)  # the thread ends even if no probe ever connects

    def answer_once() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(4096)
            connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    thread = threading.Thread(target=answer_once, name="not-http", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(timeout=10)


def test_a_service_that_does_not_speak_http_is_unreachable(not_http_port):
    with pytest.raises(OSError, match="not an HTTP answer"):
        http_status(f"http://127.0.0.1:{not_http_port}/healthz", PROBE_TIMEOUT)


def test_a_service_that_never_answers_is_unreachable_after_the_timeout(target):
    # GIVEN a service that accepts the connection but never answers / THEN the probe gives up (OSError)
    with pytest.raises(OSError) as silent:
        http_status(target.base + "/silent", PROBE_TIMEOUT)
    assert "timed out" in str(silent.value)
