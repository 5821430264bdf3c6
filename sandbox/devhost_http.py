"""The dev host's HTTP surface (a Werkzeug WSGI app), mirroring the Functions host's contracts:

- ``/<routePrefix>/<route>``: HTTP-triggered functions, route parameters, methods, and
  function-key auth (``x-functions-key`` header or ``code`` query) for authLevel function/admin;
  in front of them App Service authentication as ``sandbox.easy_auth`` emulates it (a bearer
  token from the sandbox issuer becomes ``X-MS-CLIENT-PRINCIPAL``; without one, 401);
- ``POST /runtime/webhooks/EventGrid?functionName=<fn>``: the Event Grid webhook, with the
  SubscriptionValidation handshake, EventGridSchema arrays and CloudEvents 1.0 (single or batch),
  plus the CloudEvents OPTIONS abuse-protection handshake;
- ``POST /admin/functions/<name>`` with ``{"input": "..."}``: run a non-HTTP function now (202);
- ``GET /admin/host/status``; and, dev host only, ``GET /admin/host/invocations`` (what ran, for
  tests and the demo).
Webhook and admin calls need the host key, as they need the system/master key in Azure.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import azure.functions as func
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from sandbox.devhost import DevHost, FunctionEntry

_ROUTE_PARAM = re.compile(r"\{(\w+)(?::[^}?]*)?(\?)?\}")


def werkzeug_rules(prefix: str, route: str, endpoint: str, methods: list[str] | None) -> list[Rule]:
    """Rules for a Functions route template (``upgrades/{run_id}``, ``{id:int}``, ``{x?}``)."""
    def path(template: str) -> str:
        return "/" + "/".join(p for p in (prefix.strip("/"), template.strip("/")) if p)

    optional = [m[1] for m in _ROUTE_PARAM.finditer(route) if m[2]]
    full = _ROUTE_PARAM.sub(lambda m: f"<{m[1]}>", route)
    templates = [full]
    if optional:  # an optional trailing parameter: also match the route without it
        templates.append(re.sub(r"/?\{\w+(?::[^}?]*)?\?\}", "", route))
    return [Rule(path(t), endpoint=endpoint, methods=methods or None) for t in templates]


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=str), status=status, mimetype="application/json")


class DevHostHttp:
    """WSGI application over a DevHost's functions."""

    def __init__(self, host: DevHost) -> None:
        self.host = host
        rules = [
            Rule("/runtime/webhooks/EventGrid", endpoint="eventgrid", methods=["POST", "OPTIONS"]),
            Rule("/runtime/webhooks/eventgrid", endpoint="eventgrid", methods=["POST", "OPTIONS"]),
            Rule("/admin/functions/<name>", endpoint="admin_invoke", methods=["POST"]),
            Rule("/admin/host/status", endpoint="status", methods=["GET"]),
            Rule("/admin/host/invocations", endpoint="invocations", methods=["GET"]),
        ]
        for entry in host.functions.values():
            if entry.trigger_type == "httpTrigger":
                binding = entry.trigger
                methods = [m.upper() for m in binding.get("methods") or []]
                rules += werkzeug_rules(host.config.route_prefix, binding.get("route") or entry.name,
                                        f"http:{entry.name}", methods)
        self.url_map = Map(rules, strict_slashes=False)

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        request = Request(environ)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            endpoint, params = adapter.match()
        except MethodNotAllowed as exc:
            return exc(environ, start_response)
        except NotFound:
            return json_response({"error": "NotFound", "path": request.path}, 404)(environ, start_response)
        except HTTPException as exc:  # e.g. a redirect for a trailing slash
            return exc(environ, start_response)
        if endpoint.startswith("http:"):
            response = self.http_function(request, self.host.functions[endpoint[5:]], params)
        else:
            response = getattr(self, endpoint)(request, **params)
        return response(environ, start_response)

    # ---- auth ---------------------------------------------------------------------------------

    def has_key(self, request: Request) -> bool:
        given = request.headers.get("x-functions-key") or request.args.get("code") or ""
        return hmac.compare_digest(given.encode(), self.host.function_key.encode())

    @staticmethod
    def unauthorized() -> Response:
        return Response(status=401)

    # ---- HTTP functions -----------------------------------------------------------------------

    def http_function(self, request: Request, entry: FunctionEntry, params: dict[str, str]) -> Response:
        headers = self.host.issuer.principal_headers(dict(request.headers), request.path)
        if headers is None:  # Easy Auth's Return401, before the Functions host sees the request
            return Response(status=401, headers={"WWW-Authenticate": 'Bearer realm="sandbox"'})
        auth_level = str(entry.trigger.get("authLevel") or "function").lower()
        if auth_level != "anonymous" and not self.has_key(request):
            return self.unauthorized()
        http_request = func.HttpRequest(
            method=request.method,
            url=request.url,
            headers=headers,
            params={k: v for k, v in request.args.items()},
            route_params={k: str(v) for k, v in params.items()},
            body=request.get_data(),
        )
        try:
            result = self.host.invoke(entry, {entry.trigger["name"]: http_request}, reason=f"HTTP {request.method}")
        except Exception:
            return json_response({"error": "function failed; see the host log"}, 500)
        if isinstance(result, func.HttpResponse):
            response = Response(result.get_body(), status=result.status_code)
            for name, value in result.headers.items():
                response.headers[name] = value
            if result.mimetype:
                response.content_type = (
                    f"{result.mimetype}; charset={result.charset}" if result.charset else result.mimetype
                )
            return response
        if result is None:
            return Response(status=204)
        return Response(str(result), status=200, mimetype="text/plain")

    # ---- Event Grid webhook -------------------------------------------------------------------

    def eventgrid(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            # CloudEvents abuse protection: allow the origin that asks.
            origin = request.headers.get("WebHook-Request-Origin", "*")
            return Response(status=200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})
        if not self.has_key(request):
            return self.unauthorized()
        name = request.args.get("functionName", "")
        entry = self.host.functions.get(name)
        if entry is None or entry.trigger_type != "eventGridTrigger":
            return json_response({"error": f"no Event Grid triggered function named {name!r}"}, 404)
        try:
            payload = json.loads(request.get_data() or b"null")
        except json.JSONDecodeError:
            return json_response({"error": "the body is not JSON"}, 400)
        events = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(e, dict) for e in events):
            return json_response({"error": "expected an event object or an array of events"}, 400)
        if request.headers.get("aeg-event-type", "").lower() == "subscriptionvalidation":
            for event in events:
                code = (event.get("data") or {}).get("validationCode")
                if code:
                    return json_response({"validationResponse": code})
            return json_response({"error": "no validationCode in the validation event"}, 400)
        failed = 0
        for event in events:
            try:
                self.host.invoke_event_grid(entry, event)
            except Exception:
                failed += 1
        # A failure makes Event Grid retry the delivery, as with the real host.
        return Response(status=500 if failed else 202)

    # ---- admin --------------------------------------------------------------------------------

    def admin_invoke(self, request: Request, name: str) -> Response:
        if not self.has_key(request):
            return self.unauthorized()
        entry = self.host.functions.get(name)
        if entry is None:
            return json_response({"error": f"no function named {name!r}"}, 404)
        if entry.trigger_type == "httpTrigger":
            return json_response({"error": "HTTP functions are called on their route"}, 400)
        try:
            body = request.get_json(force=True, silent=True) or {}
        except Exception:
            body = {}
        self.host.invoke_on_demand(entry, str(body.get("input", "")))
        return Response(status=202)

    def status(self, request: Request) -> Response:
        return json_response({"state": "Running", "functions": sorted(self.host.functions)})

    def invocations(self, request: Request) -> Response:
        if not self.has_key(request):
            return self.unauthorized()
        return json_response([i.to_public() for i in self.host.invocations()])
