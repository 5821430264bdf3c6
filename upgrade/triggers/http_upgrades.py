"""HTTP routes under /api/upgrades (function-key auth): start, decide, inspect upgrade runs."""

from __future__ import annotations

import azure.functions as func

from upgrade.triggers.http_common import (
    accepted_run_response,
    answers_errors,
    json_body,
    json_response,
    principal,
)

bp = func.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)
# The actor the audit trail names when no signed-in principal is known (any function key holder);
# a body's ``actor`` is then recorded only as "on behalf of" (services.upgrade_requests.audit_actor).
API_ACTOR = "api"


@bp.function_name("get_upgrade")
@bp.route(route="upgrades/{run_id}", methods=["GET"])
@answers_errors
def get_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.run_status import run_timeline
    from upgrade.wiring import platform

    return json_response(run_timeline(req.route_params["run_id"], platform()))


@bp.function_name("start_upgrade")
@bp.route(route="upgrades", methods=["POST"])
@answers_errors
def start_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.upgrade_requests import start_upgrade as start
    from upgrade.wiring import platform

    run = start(platform(), json_body(req), actor=principal(req) or API_ACTOR)
    return accepted_run_response(run.to_public())


@bp.function_name("decide_upgrade")
@bp.route(route="upgrades/{run_id}/{decision}", methods=["POST"])
@answers_errors
def decide_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.upgrade_requests import decide_from_request
    from upgrade.wiring import platform

    run = decide_from_request(platform(), req.route_params["run_id"], req.route_params["decision"],
                              json_body(req), actor=principal(req) or API_ACTOR)
    return json_response(run.to_public())


@bp.function_name("list_upgrades")
@bp.route(route="upgrades", methods=["GET"])
@answers_errors
def list_upgrades(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.run_status import list_runs_from_query
    from upgrade.wiring import platform

    return json_response(list_runs_from_query(platform(), cluster=req.params.get("cluster"),
                                              limit=req.params.get("limit")))


@bp.function_name("get_upgrade_nodes")
@bp.route(route="upgrades/{run_id}/nodes", methods=["GET"])
@answers_errors
def get_upgrade_nodes(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.run_nodes import run_nodes
    from upgrade.wiring import platform

    return json_response(run_nodes(req.route_params["run_id"], platform()))
