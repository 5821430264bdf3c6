"""HTTP probes for blue-green validation: GET an http(s) URL and report the status it answers.

A probe URL comes from a run's options, so whoever may start a run chooses what the app fetches.
Only http and https are spoken, on the way in and on every redirect (urllib alone would also
read file:, ftp: and data: URLs), redirects are few, each network wait is short, and the body is
never read: the status is the whole answer.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from typing import IO

from upgrade.errors import NotAllowed, PermanentError

PROBE_SCHEMES = ("http", "https")
MAX_TIMEOUT_SECONDS = 10.0
MAX_REDIRECTS = 5


def _refuse_unless_http(url: str, what: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in PROBE_SCHEMES:
        raise NotAllowed(f"{what} {url!r}: probes speak {' and '.join(PROBE_SCHEMES)} only, not {scheme or 'no scheme'}")


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a few redirects, each to an http(s) URL; any other target is refused outright."""

    max_redirections = MAX_REDIRECTS

    def _follow(self, request: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                headers: Message) -> object:
        target = headers.get("location") or headers.get("uri")
        if target:
            _refuse_unless_http(urllib.parse.urljoin(request.full_url, target), f"{request.full_url} redirects to")
        return super().http_error_302(request, fp, code, msg, headers)

    http_error_301 = http_error_302 = http_error_303 = http_error_307 = http_error_308 = _follow


def _opener() -> urllib.request.OpenerDirector:
    # Built by hand, not with build_opener: that adds the file, ftp and data handlers.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),  # the environment's proxy settings, as any client honours
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
        _HttpOnlyRedirects(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def http_status(url: str, timeout: float) -> int:
    """GET ``url`` and return its HTTP status (redirects to http(s) followed). Raises OSError when it
    cannot be reached or does not answer within ``timeout`` seconds (capped at MAX_TIMEOUT_SECONDS
    per network wait), NotAllowed for a URL (or a redirect) that is not http(s), PermanentError
    for a URL that cannot be read."""
    try:
        _refuse_unless_http(url, "probe URL")
        request = urllib.request.Request(url, headers={"User-Agent": "aks-upgrade-validation"})
        with _opener().open(request, timeout=min(timeout, MAX_TIMEOUT_SECONDS)) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        # An error status is still an answer: the check compares it with the expected one.
        exc.close()
        return int(exc.code)
    except (ValueError, http.client.InvalidURL) as exc:  # a URL urllib cannot read (bad port, bad IPv6 host)
        raise PermanentError(f"probe URL {url!r} is malformed: {exc}") from exc
    except http.client.HTTPException as exc:  # something answered, but not HTTP: as good as unreachable
        raise OSError(f"{url}: not an HTTP answer: {exc!r}") from exc
