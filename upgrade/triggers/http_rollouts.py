"""HTTP routes under /api/rollouts (function-key auth): start, inspect and decide staged rollouts."""

from __future__ import annotations

import azure.functions as func

from upgrade.triggers.http_common import answers_errors, json_body, json_response, principal
from upgrade.triggers.http_upgrades import API_ACTOR

bp = func.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)


@bp.function_name("start_rollout")
@bp.route(route="rollouts", methods=["POST"])
@answers_errors
def start_rollout(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.rollouts import public, start_rollout
    from upgrade.wiring import platform

    run = start_rollout(platform(), json_body(req), actor=principal(req) or API_ACTOR)
    return json_response({**public(run), "statusUrl": f"/api/rollouts/{run.run_id}"}, 202)


@bp.function_name("list_rollouts")
@bp.route(route="rollouts", methods=["GET"])
@answers_errors
def list_rollouts(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.rollouts import list_rollouts
    from upgrade.wiring import platform

    return json_response(list_rollouts(platform(), limit=req.params.get("limit")))


@bp.function_name("get_rollout")
@bp.route(route="rollouts/{rollout_id}", methods=["GET"])
@answers_errors
def get_rollout(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.rollouts import rollout_view
    from upgrade.wiring import platform

    return json_response(rollout_view(platform(), req.route_params["rollout_id"]))


@bp.function_name("decide_rollout")
@bp.route(route="rollouts/{rollout_id}/{decision}", methods=["POST"])
@answers_errors
def decide_rollout(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.rollouts import decide_rollout, public
    from upgrade.wiring import platform

    run = decide_rollout(platform(), req.route_params["rollout_id"], req.route_params["decision"], json_body(req),
                         actor=principal(req) or API_ACTOR)
    return json_response(public(run))
