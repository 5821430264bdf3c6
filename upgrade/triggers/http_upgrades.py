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


def _json_body(req: func.HttpRequest) -> object:
    """The request's JSON body (None when empty); InvalidInput when it is not JSON."""
    from upgrade.errors import InvalidInput

    raw = req.get_body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("request", "(body)", f"not JSON: {exc}") from exc


def _caller(req: func.HttpRequest) -> str:
    # Function keys name no person: App Service authentication's header does, when enabled.
    return req.headers.get("x-ms-client-principal-name") or "api"


@bp.function_name("start_upgrade")
@bp.route(route="upgrades", methods=["POST"])
def start_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.errors import UpgradeError
    from upgrade.services.bluegreen import start_upgrade as start
    from upgrade.wiring import platform

    try:
        run = start(platform(), _json_body(req), actor=_caller(req))
    except UpgradeError as exc:
        return error_response(exc)
    return json_response({**run.to_public(), "statusUrl": f"/api/upgrades/{run.run_id}"}, 202)


@bp.function_name("decide_upgrade")
@bp.route(route="upgrades/{run_id}/{decision}", methods=["POST"])
def decide_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.errors import UpgradeError
    from upgrade.services.bluegreen import decide_from_request
    from upgrade.wiring import platform

    try:
        run = decide_from_request(platform(), req.route_params["run_id"], req.route_params["decision"],
                                  _json_body(req), actor=_caller(req))
    except UpgradeError as exc:
        return error_response(exc)
    return json_response(run.to_public())


@bp.function_name("list_upgrades")
@bp.route(route="upgrades", methods=["GET"])
def list_upgrades(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.errors import InvalidInput, UpgradeError
    from upgrade.wiring import platform

    try:
        limit = req.params.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= 500:
            raise InvalidInput("query", "limit", "must be an integer from 1 to 500")
        runs = platform().runs.list_runs(cluster=req.params.get("cluster") or None, limit=int(limit))
        return json_response({"runs": [r.to_public() for r in runs]})
    except UpgradeError as exc:
        return error_response(exc)
