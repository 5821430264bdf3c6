"""The operator's console: its static files (GET /api/console/...) and who the caller is (GET /api/me).

The files hold no data: everything the page shows comes from the API routes, under their own
authentication and app roles. In Azure, App Service authentication guards every path of the app,
these too.
"""

from __future__ import annotations

import azure.functions as func

from upgrade.triggers.http_common import api_route, caller, json_response

bp = func.Blueprint()

# Served without a key: the page must load before it can ask for one (it holds no data).
@bp.function_name("console_files")
@bp.route(route="console/{file?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def console_files(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.console import console_file

    found = console_file(req.route_params.get("file") or "index.html")
    if found is None:
        return func.HttpResponse("not found", status_code=404, mimetype="text/plain")
    body, mimetype = found
    return func.HttpResponse(body, status_code=200, mimetype=mimetype, headers={
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    })


@api_route(bp, "get_me", "me", "GET")  # any signed-in caller
def get_me(req: func.HttpRequest) -> func.HttpResponse:
    from upgrade.console import caller_view

    return json_response(caller_view(caller(req, None)))
