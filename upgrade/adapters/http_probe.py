"""HTTP probes for blue-green validation: GET a URL the policy allows and report the status it answers.

A probe URL comes from a run's options, so whoever may start a run chooses what the app fetches.
``upgrade.domain.probes`` holds the rules; this adapter applies them at every point a request
could be turned elsewhere: the URL, each redirect's target (at most MAX_REDIRECTS), and each
address the host name resolves to, checked at connect time and then connected to exactly (so a
name cannot resolve to one address for the check and another for the connection). Only http and
https handlers are installed (urllib alone would also read file:, ftp: and data: URLs), no proxy
is used (a proxy would hide the destination address), each network wait is short, and the body
is never read: the status is the whole answer. Errors carry no text the server sent.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from email.message import Message
from typing import IO, Any

from upgrade.domain.probes import address_refusal, url_refusal
from upgrade.errors import NotAllowed, PermanentError

Resolver = Callable[[str, int], list[str]]
MAX_TIMEOUT_SECONDS = 10.0
MAX_REDIRECTS = 5


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _checked_socket(host: str, port: int, timeout: float, resolve: Resolver) -> socket.socket:
    """A socket connected to an address of ``host`` that the rules allow. Every resolved address
    must be allowed (a name with one bad address is refused whole); NotAllowed otherwise."""
    try:
        addresses = resolve(host, port)
    except socket.gaierror as exc:
        raise OSError(f"{host} does not resolve ({exc.strerror})") from None
    for address in addresses:
        why = address_refusal(address)
        if why:
            raise NotAllowed(f"probe host {host} resolves to {address}: {why}; refused")
    last: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            last = exc
    raise OSError(f"{host}:{port} cannot be reached ({type(last).__name__ if last else 'no address'})")


def _handlers(resolve: Resolver) -> tuple[urllib.request.BaseHandler, ...]:
    class CheckedHTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = _checked_socket(self.host, self.port, self.timeout, resolve)

    class CheckedHTTPSConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            sock = _checked_socket(self.host, self.port, self.timeout, resolve)
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)

    class CheckedHTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(CheckedHTTPConnection, req)

    class CheckedHTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(CheckedHTTPSConnection, req, context=ssl.create_default_context())

    return CheckedHTTPHandler(), CheckedHTTPSHandler()


def _redirects(allowed_hosts: tuple[str, ...]) -> urllib.request.HTTPRedirectHandler:
    class PolicyRedirects(urllib.request.HTTPRedirectHandler):
        """Follows a few redirects, each to a URL the rules allow; any other target is refused."""

        max_redirections = MAX_REDIRECTS

        def _follow(self, request: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                    headers: Message) -> object:
            target = headers.get("location") or headers.get("uri")
            if target:
                why = url_refusal(urllib.parse.urljoin(request.full_url, target), allowed_hosts)
                if why:
                    raise NotAllowed(f"{request.full_url} redirects elsewhere: {why}")
            return super().http_error_302(request, fp, code, msg, headers)

        http_error_301 = http_error_302 = http_error_303 = http_error_307 = http_error_308 = _follow

    return PolicyRedirects()


def _opener(allowed_hosts: tuple[str, ...], resolve: Resolver) -> urllib.request.OpenerDirector:
    # Built by hand, not with build_opener: that adds the file, ftp and data handlers and a proxy.
    opener = urllib.request.OpenerDirector()
    for handler in (*_handlers(resolve), _redirects(allowed_hosts), urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def http_status(url: str, timeout: float, allowed_hosts: Iterable[str], *,
                resolve: Resolver = system_resolver) -> int:
    """GET ``url`` and return its HTTP status (allowed redirects followed). Raises OSError when it
    cannot be reached or does not answer within ``timeout`` seconds (capped at MAX_TIMEOUT_SECONDS
    per network wait), NotAllowed for a URL, redirect or resolved address the rules refuse,
    PermanentError for a URL that cannot be read."""
    allowed = tuple(allowed_hosts)
    why = url_refusal(url, allowed)
    if why:
        raise NotAllowed(why)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "aks-upgrade-validation"})
        with _opener(allowed, resolve).open(request, timeout=min(timeout, MAX_TIMEOUT_SECONDS)) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        # An error status is still an answer: the check compares it with the expected one.
        exc.close()
        return int(exc.code)
    except (ValueError, http.client.InvalidURL) as exc:  # a URL urllib cannot read (bad port, bad IPv6 host)
        raise PermanentError(f"probe URL {url!r} is malformed: {exc}") from exc
    except http.client.HTTPException as exc:  # something answered, but not HTTP: as good as unreachable
        raise OSError(f"{url}: not an HTTP answer ({type(exc).__name__})") from exc
    except urllib.error.URLError as exc:  # a socket or TLS error: local text, never the server's body
        reason = exc.reason
        kind = str(reason) if isinstance(reason, str | OSError) else type(reason).__name__
        raise OSError(f"{url} cannot be reached ({kind})") from exc
