"""HTTP routes under /api/upgrades (Entra ID through App Service authentication; the app role each
route needs is checked here): start, decide, inspect upgrade runs."""

from __future__ import annotations

import azure.functions as func

from upgrade.domain.identity import OPERATE, READ, role_for_decision
from upgrade.triggers.http_common import (
    accepted_run_response,
    answers_errors,
    caller,
    json_body,
    json_response,
)

# No function key: App Service authentication guards these routes, and the caller's app role is
# checked per route (http_common.caller); keys stay only on the Event Grid webhook and admin.
bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS


@bp.function_name("get_upgrade")
@bp.route(route="upgrades/{run_id}", methods=["GET"], auth_level=ANONYMOUS)
@answers_errors
def get_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.run_status import run_timeline
    from upgrade.wiring import platform

    caller(req, READ)
    return json_response(run_timeline(req.route_params["run_id"], platform()))


@bp.function_name("start_upgrade")
@bp.route(route="upgrades", methods=["POST"], auth_level=ANONYMOUS)
@answers_errors
def start_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.upgrade_requests import start_upgrade as start
    from upgrade.wiring import platform

    actor = caller(req, OPERATE).actor
    run = start(platform(), json_body(req), actor=actor)
    return accepted_run_response(run.to_public())


@bp.function_name("decide_upgrade")
@bp.route(route="upgrades/{run_id}/{decision}", methods=["POST"], auth_level=ANONYMOUS)
@answers_errors
def decide_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.upgrade_requests import decide_from_request
    from upgrade.wiring import platform

    decision = req.route_params["decision"]
    actor = caller(req, role_for_decision(decision)).actor
    run = decide_from_request(platform(), req.route_params["run_id"], decision, json_body(req), actor=actor)
    return json_response(run.to_public())


@bp.function_name("list_upgrades")
@bp.route(route="upgrades", methods=["GET"], auth_level=ANONYMOUS)
@answers_errors
def list_upgrades(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.run_status import list_runs_from_query
    from upgrade.wiring import platform

    caller(req, READ)
    return json_response(list_runs_from_query(platform(), cluster=req.params.get("cluster"),
                                              limit=req.params.get("limit")))


@bp.function_name("get_upgrade_nodes")
@bp.route(route="upgrades/{run_id}/nodes", methods=["GET"], auth_level=ANONYMOUS)
@answers_errors
def get_upgrade_nodes(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.run_nodes import run_nodes
    from upgrade.wiring import platform

    caller(req, READ)
    return json_response(run_nodes(req.route_params["run_id"], platform()))
