"""What every HTTP route shares: JSON answers, the error-to-status mapping, the body, the caller.

Handlers stay ``parse -> service -> answer``: ``answers_errors`` turns the project's errors into
one-line JSON answers (never a traceback), so no handler repeats the try/except.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import azure.functions as func

from upgrade.errors import Conflict, InvalidInput, NotAllowed, NotFound, PermanentError, UpgradeError

# Function keys name no person: App Service authentication's header does, when enabled.
PRINCIPAL_HEADER = "x-ms-client-principal-name"

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
    elif isinstance(exc, NotAllowed):
        status = 403
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


def json_body(req: func.HttpRequest) -> object:
    """The request's JSON body (None when empty); InvalidInput when it is not JSON."""
    raw = req.get_body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("request", "(body)", f"not JSON: {exc}") from exc


def principal(req: func.HttpRequest) -> str | None:
    """The signed-in caller's name, when App Service authentication is on (it sets this header and
    drops one a client sends). The Python worker is not told which function key matched, so with
    key auth alone nothing names the caller: the route records its generic actor instead."""
    return req.headers.get(PRINCIPAL_HEADER) or None
