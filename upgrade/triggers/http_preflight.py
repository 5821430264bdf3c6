"""HTTP route ``POST /api/upgrades/preflight``: predict an upgrade before starting it."""

from __future__ import annotations

import azure.functions as func

from upgrade.triggers.http_common import answers_errors, json_body, json_response

bp = func.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)


@bp.function_name("preflight_upgrade")
@bp.route(route="upgrades/preflight", methods=["POST"])
@answers_errors
def preflight_upgrade(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.services.preflight import preflight_from_request
    from upgrade.wiring import platform

    return json_response(preflight_from_request(platform(), json_body(req)))
