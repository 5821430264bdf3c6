"""HTTP probes for blue-green validation: GET a URL and report the status it answers."""

from __future__ import annotations

import urllib.error
import urllib.request


def http_status(url: str, timeout: float) -> int:
    """GET ``url`` and return its HTTP status (redirects followed); raises OSError when unreachable."""
    request = urllib.request.Request(url, headers={"User-Agent": "aks-upgrade-validation"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        # An error status is still an answer: the check compares it with the expected one.
        return int(exc.code)
