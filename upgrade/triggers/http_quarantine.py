"""HTTP routes under /api/quarantine (function-key auth): list findings, request a remediation.

``{cluster}`` is the cluster's name when exactly one allowed cluster has it (what an operator
types); a body ``clusterId`` (the ARM id, which every quarantine alert's request carries) settles
it when names repeat across subscriptions or resource groups. A URL-encoded ARM id is accepted
too, where the host leaves ``%2F`` undecoded in route values.
"""

from __future__ import annotations

import azure.functions as func

from upgrade.triggers.http_upgrades import error_response, json_response

bp = func.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)


def _actor(req: func.HttpRequest, body: dict) -> str:
    principal = req.headers.get("x-ms-client-principal-name")
    return principal or str(body.get("requestedBy") or "http:function-key")[:200]


@bp.function_name("remediate_quarantined_node")
@bp.route(route="quarantine/{cluster}/{node}/remediate", methods=["POST"])
def remediate_quarantined_node(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.errors import InvalidInput, UpgradeError
    from upgrade.services.remediation import remediation_request_from_http
    from upgrade.wiring import platform

    try:
        try:
            body = req.get_json() if req.get_body() else {}
        except ValueError as exc:
            raise InvalidInput("remediation request", "(body)", "not JSON") from exc
        run = remediation_request_from_http(
            platform(), req.route_params["cluster"], req.route_params["node"], body, actor=_actor(req, body or {})
        )
    except UpgradeError as exc:
        return error_response(exc)
    return json_response({**run.to_public(), "statusUrl": f"/api/upgrades/{run.run_id}"}, 202)


@bp.function_name("list_quarantine")
@bp.route(route="quarantine", methods=["GET"])
def list_quarantine(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.errors import UpgradeError
    from upgrade.services.quarantine_scan import current_findings
    from upgrade.services.remediation import resolve_cluster
    from upgrade.wiring import platform

    try:
        segment = req.params.get("cluster")
        cluster = resolve_cluster(platform(), segment, None) if segment else None
        return json_response({"findings": current_findings(platform(), cluster)})
    except UpgradeError as exc:
        return error_response(exc)
