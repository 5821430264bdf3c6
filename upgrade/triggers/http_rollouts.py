"""HTTP routes under /api/rollouts (Entra ID through App Service authentication; Upgrade.Read to
inspect, Upgrade.Operate to start, pause, resume and abort, Upgrade.Approve to approve and skip):
start, inspect and decide staged rollouts."""

from __future__ import annotations

import azure.functions as func

from upgrade.domain.identity import OPERATE, READ, ROLLOUT_DECISION_ROLES, role_for_decision
from upgrade.triggers.http_common import api_route, caller, json_body, json_response

bp = func.Blueprint()


@api_route(bp, "start_rollout", "rollouts", "POST")
def start_rollout(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.rollouts import public, start_rollout
    from upgrade.wiring import platform

    actor = caller(req, OPERATE).actor
    run = start_rollout(platform(), json_body(req), actor=actor)
    return json_response({**public(run), "statusUrl": f"/api/rollouts/{run.run_id}"}, 202)


@api_route(bp, "list_rollouts", "rollouts", "GET")
def list_rollouts(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.rollouts import list_rollouts
    from upgrade.wiring import platform

    caller(req, READ)
    return json_response(list_rollouts(platform(), limit=req.params.get("limit")))


@api_route(bp, "get_rollout", "rollouts/{rollout_id}", "GET")
def get_rollout(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.rollouts import rollout_view
    from upgrade.wiring import platform

    caller(req, READ)
    return json_response(rollout_view(platform(), req.route_params["rollout_id"]))


@api_route(bp, "decide_rollout", "rollouts/{rollout_id}/{decision}", "POST")
def decide_rollout(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.rollouts import decide_rollout, public
    from upgrade.wiring import platform

    decision = req.route_params["decision"]
    actor = caller(req, None).require(role_for_decision(decision, ROLLOUT_DECISION_ROLES)).actor  # who first, then what they may
    run = decide_rollout(platform(), req.route_params["rollout_id"], decision, json_body(req), actor=actor)
    return json_response(public(run))
