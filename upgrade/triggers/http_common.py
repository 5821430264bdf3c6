"""What every HTTP route shares: JSON answers, the error-to-status mapping, the body, the caller.

Handlers stay ``parse -> service -> answer``: ``answers_errors`` turns the project's errors into
one-line JSON answers (never a traceback), so no handler repeats the try/except.

The caller is the principal App Service authentication (Easy Auth) validated and passed in the
``X-MS-CLIENT-PRINCIPAL`` header; the platform drops that header from what clients send, so it
cannot be forged through the front door. A request without it is refused (401), and so is every
operator request in Azure while the platform says authentication is off (``WEBSITE_AUTH_ENABLED``):
the app fails closed rather than believe a header nobody vouched for. Function keys name no one
and grant nothing on these routes.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from urllib.parse import urlsplit

import azure.functions as func

from upgrade.domain.identity import Principal, parse_client_principal
from upgrade.errors import (
    Conflict,
    InvalidInput,
    NotAllowed,
    NotFound,
    NotSignedIn,
    PermanentError,
    UpgradeError,
)

PRINCIPAL_HEADER = "x-ms-client-principal"
# Set by App Service on every instance in Azure; and whether its authentication is on.
IN_AZURE_SETTING = "WEBSITE_INSTANCE_ID"
AUTH_ENABLED_SETTING = "WEBSITE_AUTH_ENABLED"

HttpHandler = Callable[[func.HttpRequest], func.HttpResponse]


def json_response(body: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2, default=str), status_code=status,
                             mimetype="application/json")


def error_response(exc: UpgradeError) -> func.HttpResponse:
    """Map the project's errors to HTTP statuses with a one-line reason; never a traceback."""
    status = 500
    body: dict = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, InvalidInput):
        status = 400
        body["field"] = exc.field
    elif isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, NotSignedIn):
        status = 401
    elif isinstance(exc, NotAllowed):
        status = 403
        if exc.code:
            body["missingRole"] = exc.code
    elif isinstance(exc, Conflict):
        status = 409
        if exc.code:
            body["activeRunId"] = exc.code
    elif isinstance(exc, PermanentError):
        status = 422
    return json_response(body, status)


def accepted_run_response(run_public: dict) -> func.HttpResponse:
    """202 for a run that was started: its record and where to follow it."""
    return json_response({**run_public, "statusUrl": f"/api/upgrades/{run_public['id']}"}, 202)


def answers_errors(handler: HttpHandler) -> HttpHandler:
    """The route answers the project's errors as JSON (see ``error_response``)."""

    @functools.wraps(handler)
    def answer(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except UpgradeError as exc:
            return error_response(exc)

    return answer


def api_route(bp: func.Blueprint, name: str, route: str, method: str) -> Callable[[HttpHandler], object]:
    """Register ``handler`` on ``bp`` as the HTTP function ``name`` for ``method route``, its errors
    answered as JSON (``answers_errors``). No function key: App Service authentication guards the
    route and the handler checks the caller's app role (``caller``); keys stay only on the Event
    Grid webhook and the admin API."""

    def register(handler: HttpHandler) -> object:
        checked = handler if method == "GET" else _same_origin_only(handler)
        routed = bp.route(route=route, methods=[method], auth_level=func.AuthLevel.ANONYMOUS)(answers_errors(checked))
        return bp.function_name(name)(routed)

    return register


def _same_origin_only(handler: HttpHandler) -> HttpHandler:
    """Refuse a change a browser sends from another site. In Azure the console's session is a
    cookie the browser adds by itself, so another site's page could otherwise post a decision as
    the signed-in operator. Browsers say where a request comes from (``Sec-Fetch-Site``, else
    ``Origin``); the CLI and other non-browser clients send neither and are not affected."""

    @functools.wraps(handler)
    def checked(req: func.HttpRequest) -> func.HttpResponse:
        if cross_site(req):
            raise NotAllowed("a browser request from another site cannot change anything here "
                             "(use the console on this app, or the CLI)")
        return handler(req)

    return checked


def cross_site(req: func.HttpRequest) -> bool:
    """Whether a browser sent ``req`` from a page of another origin."""
    fetch_site = (req.headers.get("sec-fetch-site") or "").strip().lower()
    if fetch_site:
        return fetch_site not in ("same-origin", "none")
    origin = (req.headers.get("origin") or "").strip()
    if not origin:
        return False
    host = req.headers.get("x-forwarded-host") or req.headers.get("host") or urlsplit(req.url).netloc
    return origin == "null" or urlsplit(origin).netloc.lower() != host.strip().lower()


def json_body(req: func.HttpRequest) -> object:
    """The request's JSON body (None when empty); InvalidInput when it is not JSON."""
    raw = req.get_body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("request", "(body)", f"not JSON: {exc}") from exc


def caller(req: func.HttpRequest, role: str | None) -> Principal:
    """The signed-in principal holding ``role`` (None: any signed-in principal): NotSignedIn (401)
    without a trustworthy principal, NotAllowed (403, naming the role) when it lacks the role."""
    in_azure = bool(os.environ.get(IN_AZURE_SETTING))
    if in_azure and os.environ.get(AUTH_ENABLED_SETTING, "").strip().lower() != "true":
        raise NotSignedIn("App Service authentication is off on this app: operator routes stay closed "
                          "until it is on (infra/modules/operator-auth.bicep)")
    header = req.headers.get(PRINCIPAL_HEADER)
    if not header:
        raise NotSignedIn("no signed-in caller: send an Entra ID access token for the app "
                          "(Authorization: Bearer ...); App Service authentication validates it")
    try:
        principal = parse_client_principal(header)
    except InvalidInput as exc:
        raise NotSignedIn(f"the client principal cannot be read: {exc.problem}") from exc
    return principal if role is None else principal.require(role)
