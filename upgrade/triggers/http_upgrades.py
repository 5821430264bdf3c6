"""HTTP routes under /api/upgrades (Entra ID through App Service authentication; the app role each
route needs is checked here): start, decide, inspect upgrade runs."""

from __future__ import annotations

import azure.functions as func

from upgrade.domain.identity import OPERATE, READ, role_for_decision
from upgrade.triggers.http_common import (
    accepted_run_response,
    api_route,
    caller,
    json_body,
    json_response,
)

bp = func.Blueprint()


@api_route(bp, "get_upgrade", "upgrades/{run_id}", "GET")
def get_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.run_status import run_timeline
    from upgrade.wiring import platform

    caller(req, READ)
    return json_response(run_timeline(req.route_params["run_id"], platform()))


@api_route(bp, "start_upgrade", "upgrades", "POST")
def start_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.upgrade_requests import start_upgrade as start
    from upgrade.wiring import platform

    actor = caller(req, OPERATE).actor
    run = start(platform(), json_body(req), actor=actor)
    return accepted_run_response(run.to_public())


@api_route(bp, "decide_upgrade", "upgrades/{run_id}/{decision}", "POST")
def decide_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.upgrade_requests import decide_from_request
    from upgrade.wiring import platform

    decision = req.route_params["decision"]
    actor = caller(req, None).require(role_for_decision(decision)).actor  # who first, then what they may
    run = decide_from_request(platform(), req.route_params["run_id"], decision, json_body(req), actor=actor)
    return json_response(run.to_public())


@api_route(bp, "list_upgrades", "upgrades", "GET")
def list_upgrades(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.run_status import list_runs_from_query
    from upgrade.wiring import platform

    caller(req, READ)
    return json_response(list_runs_from_query(platform(), cluster=req.params.get("cluster"),
                                              limit=req.params.get("limit")))


@api_route(bp, "get_upgrade_nodes", "upgrades/{run_id}/nodes", "GET")
def get_upgrade_nodes(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.run_nodes import run_nodes
    from upgrade.wiring import platform

    caller(req, READ)
    return json_response(run_nodes(req.route_params["run_id"], platform()))
