"""The blue-green HTTP probe adapter against a real local HTTP server (Werkzeug, a free port, a thread):
the status it answers, redirects followed only where the rules allow, refusals after DNS resolution
and on every redirect (one leads to the metadata address), unreachable and silent services, and no
server text in any answer.

The target listens on this machine's non-loopback address (loopback is refused, as in Azure), under
in-cluster service names that a test resolver maps to it; ``metadata.shop.svc.cluster.local``
resolves to 169.254.169.254 and ``local.shop.svc.cluster.local`` to 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from upgrade.adapters.http_probe import MAX_REDIRECTS, http_status
from upgrade.domain.probes import address_refusal
from upgrade.errors import NotAllowed, PermanentError

PROBE_TIMEOUT = 0.5  # seconds; only the silent route waits, and it outlasts this by far
WEB = "web.shop.svc.cluster.local"
ALLOWED = ("*.shop.svc.cluster.local",)
SECRET = "s3cr3t-token-from-the-server"


def machine_address() -> str:
    """This machine's outbound IPv4 address (no packet is sent); empty when it has only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            address = sock.getsockname()[0]
        except OSError:
            return ""
    return "" if address_refusal(address) else address


ADDRESS = machine_address()
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not ADDRESS, reason="no non-loopback IPv4 address to run the probe target on")]


def resolve(host: str, port: int) -> list[str]:
    names = {WEB: [ADDRESS], "metadata.shop.svc.cluster.local": ["169.254.169.254"],
             "local.shop.svc.cluster.local": ["127.0.0.1"],
             "mixed.shop.svc.cluster.local": [ADDRESS, "169.254.169.254"]}
    if host not in names:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return names[host]


def probe(url: str, allowed: tuple[str, ...] = ALLOWED) -> int:
    return http_status(url, PROBE_TIMEOUT, allowed, resolve=resolve)


class ProbeTarget:
    """A service on green as a probe sees it: each path answers one way."""

    def __init__(self) -> None:
        self.release = threading.Event()  # frees the silent route's handlers when the test ends
        self.server = make_server(ADDRESS, 0, self.app, threaded=True)
        self.port = self.server.server_port
        self.base = f"http://{WEB}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="probe-target", daemon=True)

    def app(self, environ, start_response):
        request = Request(environ)
        path = request.path
        if path == "/healthz":
            response = Response("ok", status=200)
        elif path == "/broken":
            response = Response(f"down; {SECRET}", status=503)
        elif path == "/moved":
            response = Response(status=302, headers={"Location": "/healthz"})
        elif path == "/moved-absolute":
            response = Response(status=301, headers={"Location": f"{self.base}/broken"})
        elif path.startswith("/to-"):  # a redirect somewhere the rules refuse
            target = {"/to-file": "file:///etc/passwd", "/to-ftp": "ftp://127.0.0.1/x",
                      "/to-data": "data:text/plain,hi",
                      "/to-metadata": "http://169.254.169.254/latest/meta-data/",
                      "/to-metadata-name": f"http://metadata.shop.svc.cluster.local:{self.port}/latest/meta-data/",
                      "/to-loopback": f"http://local.shop.svc.cluster.local:{self.port}/",
                      "/to-other-host": "https://elsewhere.example/",
                      "/to-plain-http-host": "http://elsewhere.example/"}[path]
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
    """A port bound on the target's address that nobody listens on: connecting is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((ADDRESS, 0))
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
    assert probe(target.base + path) == expected


@pytest.mark.parametrize(("path", "words"), [
    ("/to-file", "only https, or http to an in-cluster service name, not file"),
    ("/to-ftp", "not ftp"),
    ("/to-data", "not data"),
    ("/to-metadata", "169.254.169.254 is a cloud metadata or platform address"),
    ("/to-metadata-name", "resolves to 169.254.169.254: 169.254.169.254 is a cloud metadata or platform address"),
    ("/to-loopback", "resolves to 127.0.0.1: 127.0.0.1 is a loopback address"),
    ("/to-other-host", "host elsewhere.example is not on the pool policy's probeHosts allow-list"),
    ("/to-plain-http-host", "plain http only to an in-cluster service name"),
])
def test_a_redirect_the_rules_refuse_is_not_followed(target, path, words):
    # GIVEN an allowed service that redirects somewhere the rules refuse (the metadata address among them)
    # WHEN probed THEN the probe refuses with the reason, and never connects there
    with pytest.raises(NotAllowed) as refused:
        probe(target.base + path)
    assert words in str(refused.value)


def test_a_redirect_loop_ends_with_the_redirect_status(target):
    # GIVEN a page that redirects to itself / THEN the probe stops after a few hops with the 3xx it got
    assert MAX_REDIRECTS <= 10
    assert probe(target.base + "/loop") == 302


@pytest.mark.parametrize(("url", "allowed", "words"), [
    ("file:///etc/passwd", ALLOWED, "not file"),
    ("gopher://127.0.0.1/", ALLOWED, "not gopher"),
    ("/healthz", ALLOWED, "not no scheme"),
    ("http://169.254.169.254/latest/meta-data/", ("169.254.169.254",), "cloud metadata or platform address"),
    ("https://[::ffff:169.254.169.254]/", ("*",), "cloud metadata or platform address"),
    ("https://168.63.129.16/", ("168.63.129.16",), "cloud metadata or platform address"),
    ("https://127.0.0.1/", ("127.0.0.1",), "loopback address"),
    ("https://[::1]/", ("::1",), "loopback address"),
    ("https://[fe80::1]/", ("fe80::1",), "link-local address"),
    ("http://example.com/", ("example.com",), "plain http only to an in-cluster service name"),
    ("https://example.com/", ALLOWED, "not on the pool policy's probeHosts allow-list"),
    (f"http://{WEB}/", (), "not on the pool policy's probeHosts allow-list"),
    ("https://user:pw@example.com/", ("example.com",), "credentials in the URL"),
    ("http://metadata.shop.svc.cluster.local/", ALLOWED, "resolves to 169.254.169.254"),
    ("http://local.shop.svc.cluster.local/", ALLOWED, "resolves to 127.0.0.1"),
    ("http://mixed.shop.svc.cluster.local/", ALLOWED, "resolves to 169.254.169.254"),  # one bad address is enough
])
def test_a_url_the_rules_refuse_is_refused_with_the_reason(url, allowed, words):
    with pytest.raises(NotAllowed) as refused:
        probe(url, allowed)
    assert words in str(refused.value)


@pytest.mark.parametrize("url", [f"http://{WEB}:notaport/", "http://[::1/"])
def test_a_malformed_url_is_refused(url):
    with pytest.raises(PermanentError, match="malformed"):
        probe(url)


def test_a_refused_connection_is_unreachable(closed_port):
    with pytest.raises(OSError):
        probe(f"http://{WEB}:{closed_port}/healthz")


def test_a_name_that_does_not_resolve_is_unreachable():
    with pytest.raises(OSError, match="does not resolve"):
        probe("http://gone.shop.svc.cluster.local/healthz")


@pytest.fixture
def not_http_port() -> Iterator[int]:
    """A port whose listener answers with something that is not HTTP (an SSH banner with a secret)."""
    listener = socket.create_server((ADDRESS, 0))
    listener.settimeout(10)  # the thread ends even if no probe ever connects

    def answer_once() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(4096)
            connection.sendall(f"SSH-2.0-OpenSSH_9.6 {SECRET}\r\n".encode())

    thread = threading.Thread(target=answer_once, name="not-http", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(timeout=10)


def test_a_service_that_does_not_speak_http_is_unreachable_and_its_words_are_not_echoed(not_http_port):
    with pytest.raises(OSError, match="not an HTTP answer") as refused:
        probe(f"http://{WEB}:{not_http_port}/healthz")
    assert SECRET not in str(refused.value) and "OpenSSH" not in str(refused.value)


def test_a_service_that_never_answers_is_unreachable_after_the_timeout(target):
    # GIVEN a service that accepts the connection but never answers / THEN the probe gives up (OSError)
    with pytest.raises(OSError) as silent:
        probe(target.base + "/silent")
    assert "timed out" in str(silent.value)
