"""HTTP route ``POST /api/upgrades/preflight``: predict an upgrade before starting it."""

from __future__ import annotations

import azure.functions as func

from upgrade.domain.identity import READ
from upgrade.triggers.http_common import api_route, caller, json_body, json_response

bp = func.Blueprint()


@api_route(bp, "preflight_upgrade", "upgrades/preflight", "POST")  # Upgrade.Read
def preflight_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.preflight import preflight_from_request
    from upgrade.wiring import platform

    caller(req, READ)  # a what-if: it reads the cluster and changes nothing
    return json_response(preflight_from_request(platform(), json_body(req)))
