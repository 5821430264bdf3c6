"""Fault injection and request counting for the emulator's HTTP APIs.

`FaultInjector` is WSGI middleware put in front of the ARM app ("arm") and of every cluster's
Kubernetes app ("kube"). It counts each request under its API and route ("GET
/api/v1/nodes/{name}"), then, if a `FaultRule` matches, answers 429 (with Retry-After), 500 or
503 in the API's own error shape, or delays the request (and records the delay it added, so
tests assert on what was injected rather than on wall time). Whether a request is faulted depends only
on the seed, the rule and how many requests that route has seen, so a test run is reproducible
whatever the threads interleave across routes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from werkzeug.wrappers import Response

# Path segments after which Kubernetes and ARM put a name: the route template keeps the keyword
# and replaces the name by a placeholder, so requests count per route and not per object.
_ARM_NAMED = {
    "subscriptions": "{subscriptionId}",
    "resourcegroups": "{resourceGroupName}",
    "managedclusters": "{resourceName}",
    "agentpools": "{agentPoolName}",
    "locations": "{location}",
    "operations": "{operationId}",
    "operationresults": "{operationId}",
    "machines": "{machineName}",
}
_ARM_FIXED_NAMES = {"default"}
_KUBE_PREFIX = re.compile(r"^(/api/[^/]+|/apis/[^/]+/[^/]+)(/.*)?$")


def route_template(api: str, path: str) -> str:
    """The route a path belongs to, with names replaced by placeholders."""
    return _kube_template(path) if api == "kube" else _arm_template(path)


def _arm_template(path: str) -> str:
    segments = [s for s in path.split("/") if s]
    template = []
    for index, segment in enumerate(segments):
        previous = segments[index - 1].lower() if index else ""
        if previous in _ARM_NAMED and segment.lower() not in _ARM_FIXED_NAMES:
            template.append(_ARM_NAMED[previous])
        else:
            template.append(segment)
    return "/" + "/".join(template)


def _kube_template(path: str) -> str:
    match = _KUBE_PREFIX.match(path)
    if match is None:
        return path
    prefix, rest = match.group(1), [s for s in (match.group(2) or "").split("/") if s]
    template = [prefix]
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        template.append("namespaces/{namespace}")
        rest = rest[2:]
    if rest:
        template.append(rest[0])
    if len(rest) >= 2:
        template.append("{name}")
    template.extend(rest[2:])
    return "/".join(template)


@dataclass(frozen=True)
class FaultRule:
    """Faults for requests of one API whose "METHOD template" matches `route` (a glob)."""

    api: str
    route: str = "*"
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    latency_seconds: float = 0.0
    retry_after_seconds: int = 1

    def matches(self, api: str, route_key: str) -> bool:
        return api == self.api and fnmatch.fnmatchcase(route_key, self.route)


class FaultRegistry:
    """Fault rules and request counts shared by every wrapped app of one emulator."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._rules: list[FaultRule] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._draws: Counter[tuple[str, str]] = Counter()
        self._latency: Counter[tuple[str, str]] = Counter()
        self._delayed: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, api: str, route: str = "*", *, rate_429: float = 0.0, rate_500: float = 0.0,
            rate_503: float = 0.0, latency_seconds: float = 0.0, retry_after_seconds: int = 1) -> FaultRule:
        """Inject faults into requests of `api` ("arm"|"kube") whose "METHOD /route/{template}"
        matches the glob `route`, e.g. "POST */pods/{name}/eviction" or "* */agentPools/*"."""
        if api not in ("arm", "kube"):
            raise ValueError(f"api must be 'arm' or 'kube', not {api!r}")
        if rate_429 + rate_500 + rate_503 > 1:
            raise ValueError("fault rates add up to more than 1")
        rule = FaultRule(api, route, rate_429, rate_500, rate_503, latency_seconds, retry_after_seconds)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every fault rule (counts stay)."""
        with self._lock:
            self._rules.clear()
            self._draws.clear()

    def counts(self, api: str | None = None) -> dict[str, int]:
        """Requests seen per "METHOD template", for one API or (keys prefixed "api ") for all."""
        with self._lock:
            items = list(self._counts.items())
        if api is not None:
            return {route: n for (a, route), n in items if a == api}
        return {f"{a} {route}": n for (a, route), n in items}

    def total(self, api: str) -> int:
        return sum(self.counts(api).values())

    def reset_counts(self) -> None:
        """Forget request counts and recorded latency."""
        with self._lock:
            self._counts.clear()
            self._latency.clear()
            self._delayed.clear()

    def record_latency(self, api: str, route_key: str, seconds: float) -> None:
        with self._lock:
            self._latency[(api, route_key)] += seconds
            self._delayed[(api, route_key)] += 1

    def added_latency(self, api: str) -> dict[str, float]:
        """Seconds of latency injected per "METHOD template" of one API."""
        with self._lock:
            return {route: seconds for (a, route), seconds in self._latency.items() if a == api}

    def delayed_requests(self, api: str) -> dict[str, int]:
        """Requests that were delayed, per "METHOD template" of one API."""
        with self._lock:
            return {route: n for (a, route), n in self._delayed.items() if a == api}

    def decide(self, api: str, route_key: str) -> tuple[FaultRule | None, int | None]:
        """Count the request; return the matching rule and the status to answer with (None = pass)."""
        with self._lock:
            self._counts[(api, route_key)] += 1
            rule = next((r for r in self._rules if r.matches(api, route_key)), None)
            if rule is None:
                return None, None
            ordinal = self._draws[(api, route_key)]
            self._draws[(api, route_key)] += 1
        draw = _uniform(self.seed, api, route_key, ordinal)
        for status, rate in ((429, rule.rate_429), (500, rule.rate_500), (503, rule.rate_503)):
            if draw < rate:
                return rule, status
            draw -= rate
        return rule, None


def _uniform(seed: int, api: str, route_key: str, ordinal: int) -> float:
    digest = hashlib.sha256(f"{seed}|{api}|{route_key}|{ordinal}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


_REASONS = {429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}


def _fault_response(api: str, status: int, retry_after: int) -> Response:
    if api == "kube":
        body = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f"emulated fault: {_REASONS[status]}", "reason": _REASONS[status], "code": status,
        }
    else:
        body = {"error": {"code": _REASONS[status], "message": f"Emulated fault: {_REASONS[status]}."}}
    response = Response(json.dumps(body), status=status, content_type="application/json")
    if status in (429, 503):
        response.headers["Retry-After"] = str(retry_after)
    return response


class FaultInjector:
    """WSGI middleware: count requests and inject the registry's faults into one API."""

    def __init__(self, app: Callable, api: str, registry: FaultRegistry) -> None:
        self.app = app
        self.api = api
        self.registry = registry

    def __call__(self, environ: dict, start_response: Callable) -> object:
        route_key = f"{environ['REQUEST_METHOD']} {route_template(self.api, environ.get('PATH_INFO', '/'))}"
        rule, status = self.registry.decide(self.api, route_key)
        if rule is not None and rule.latency_seconds:
            time.sleep(rule.latency_seconds)
            self.registry.record_latency(self.api, route_key, rule.latency_seconds)
        if status is not None:
            return _fault_response(self.api, status, rule.retry_after_seconds)(environ, start_response)
        return self.app(environ, start_response)
