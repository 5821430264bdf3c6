"""Where a blue-green HTTP probe may go: the rules, with no I/O (the adapter resolves and connects).

A probe URL comes from a run's options, so whoever may start a run chooses what the app fetches.
It may only go to:

- ``https`` to a host on the pool policy's ``probeHosts`` allow-list, or
- ``http`` to an in-cluster service DNS name (``<service>.<namespace>.svc`` or
  ``...svc.cluster.local``) that is also on the allow-list;

and never to a loopback, link-local (which holds the instance metadata endpoint 169.254.169.254),
unspecified, multicast or reserved address, nor to Azure's platform address 168.63.129.16. Names
are checked again after DNS resolution and on every redirect (the adapter does both). An empty
allow-list refuses every probe.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

# The Azure platform (WireServer) address and the cloud metadata addresses outside link-local.
METADATA_ADDRESSES = frozenset({
    ipaddress.ip_address("168.63.129.16"),
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
})
_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?\.[a-z0-9]([a-z0-9-]*[a-z0-9])?\.svc(\.cluster\.local)?$")


def host_on_list(host: str, patterns: Iterable[str]) -> bool:
    """``host`` matches a pattern: the exact name, or ``*.suffix`` for any name below suffix."""
    host = host.lower().rstrip(".")
    for pattern in (p.lower().rstrip(".") for p in patterns):
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and host != pattern[2:]:
            return True
        if host == pattern:
            return True
    return False


def is_service_name(host: str) -> bool:
    return bool(_SERVICE_NAME.match(host.lower().rstrip(".")))


def url_refusal(url: str, allowed_hosts: Iterable[str]) -> str | None:
    """Why the probe may not fetch ``url`` (the URL alone, before resolution); None when it may."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        return f"probe URL {url!r} is malformed: {exc}"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return f"probe URL {url!r}: only https, or http to an in-cluster service name, not {scheme or 'no scheme'}"
    if not host:
        return f"probe URL {url!r} names no host"
    if parts.username or parts.password:
        return f"probe URL {url!r}: credentials in the URL are not allowed"
    literal = _address(host)
    if literal is not None and (why := address_refusal(str(literal))):
        return f"probe URL {url!r}: {why}"
    if scheme == "http" and not is_service_name(host):
        return (f"probe URL {url!r}: plain http only to an in-cluster service name "
                f"(<service>.<namespace>.svc[.cluster.local]); use https for {host}")
    if not host_on_list(host, allowed_hosts):
        return f"probe URL {url!r}: host {host} is not on the pool policy's probeHosts allow-list"
    return None


def address_refusal(address: str) -> str | None:
    """Why a probe may not connect to this resolved address; None when it may."""
    ip = _address(address)
    if ip is None:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata or platform address"
    for kind, hit in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                      ("unspecified", ip.is_unspecified), ("multicast", ip.is_multicast),
                      ("reserved", ip.is_reserved)):
        if hit:
            return f"{ip} is a {kind} address"
    return None


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
