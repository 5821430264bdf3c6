"""HTTP routes under /api/upgrades (function-key auth): start, decide, inspect upgrade runs."""

from __future__ import annotations

import json

import azure.functions as func

bp = func.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)


def json_response(body: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2, default=str), status_code=status,
                             mimetype="application/json")


def error_response(exc: Exception) -> func.HttpResponse:
    """Map the project's errors to HTTP statuses with a one-line reason; never a traceback."""
    from upgrade.errors import Conflict, InvalidInput, NotAllowed, NotFound, PermanentError

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


@bp.function_name("get_upgrade")
@bp.route(route="upgrades/{run_id}", methods=["GET"])
def get_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.errors import UpgradeError
    from upgrade.services.run_status import run_timeline
    from upgrade.wiring import platform

    try:
        return json_response(run_timeline(req.route_params["run_id"], platform()))
    except UpgradeError as exc:
        return error_response(exc)
