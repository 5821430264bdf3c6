"""HTTP routes under /api/quarantine (Entra ID through App Service authentication; Upgrade.Read to
list, Upgrade.Operate to remediate or scan): list findings, request a remediation, scan now (the
timer's scan, on demand).

``{cluster}`` is the cluster's name when exactly one allowed cluster has it (what an operator
types); a body ``clusterId`` (the ARM id, which every quarantine alert's request carries) settles
it when names repeat across subscriptions or resource groups. A URL-encoded ARM id is accepted
too, where the host leaves ``%2F`` undecoded in route values.
"""

from __future__ import annotations

import azure.functions as func

from upgrade.domain.identity import OPERATE, READ
from upgrade.triggers.http_common import (
    accepted_run_response,
    api_route,
    caller,
    json_body,
    json_response,
)

bp = func.Blueprint()


@api_route(bp, "remediate_quarantined_node", "quarantine/{cluster}/{node}/remediate", "POST")
def remediate_quarantined_node(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.remediation import remediation_request_from_http
    from upgrade.wiring import platform

    actor = caller(req, OPERATE).actor
    run = remediation_request_from_http(platform(), req.route_params["cluster"], req.route_params["node"],
                                        json_body(req), actor=actor)
    return accepted_run_response(run.to_public())


@api_route(bp, "list_quarantine", "quarantine", "GET")
def list_quarantine(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.quarantine_scan import findings_from_query
    from upgrade.wiring import platform

    caller(req, READ)
    return json_response({"findings": findings_from_query(platform(), req.params.get("cluster"))})


@api_route(bp, "scan_quarantine_now", "quarantine/scan", "POST")
def scan_quarantine_now(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.quarantine_scan import scans_from_request
    from upgrade.wiring import platform

    actor = caller(req, OPERATE).actor
    return json_response(scans_from_request(platform(), req.params.get("cluster"), actor=actor), 202)
