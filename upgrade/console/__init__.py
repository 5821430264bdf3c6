"""The console's static files (served as they are, packaged with the app) and the caller's view.

No build step and no library: the page is one HTML file, one script and one style sheet.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FILES = Path(__file__).parent
MIMETYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

READ, OPERATE, APPROVE = "Upgrade.Read", "Upgrade.Operate", "Upgrade.Approve"
# The role each console action needs, as the API checks it.
ACTION_ROLES = {"approve": APPROVE, "rollback": APPROVE, "pause": OPERATE, "resume": OPERATE,
                "abort": OPERATE, "remediate": OPERATE, "rolloutApprove": APPROVE}
PRINCIPAL_HEADER = "x-ms-client-principal"
ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")


def console_file(name: str) -> tuple[bytes, str] | None:
    """(bytes, mimetype) of one of the console's own files; None for any other name (no paths)."""
    path = FILES / name
    if "/" in name or "\\" in name or name.startswith(".") or path.suffix not in MIMETYPES or not path.is_file():
        return None
    return path.read_bytes(), MIMETYPES[path.suffix]


def caller_view(headers: Mapping[str, str]) -> dict[str, Any]:
    """GET /api/me: who the caller is and which console actions its roles allow. A signed-in caller
    (App Service authentication's X-MS-CLIENT-PRINCIPAL) holds the roles in its token; a function
    key holder names no person and may do whatever the key's routes do."""
    lowered = {k.lower(): v for k, v in headers.items()}
    header = lowered.get(PRINCIPAL_HEADER)
    if header:
        name, roles = _principal(header)
        auth = "entra-id"
    else:
        name, roles, auth = "function key holder", [READ, OPERATE, APPROVE], "function-key"
    return {"name": name, "authentication": auth, "roles": roles,
            "actions": {action: role in roles for action, role in ACTION_ROLES.items()}}


def _principal(header: str) -> tuple[str, list[str]]:
    """(name, roles) from an X-MS-CLIENT-PRINCIPAL value; no roles when it cannot be read."""
    try:
        decoded = json.loads(base64.b64decode(header + "=" * (-len(header) % 4)))
        claims = [c for c in decoded.get("claims", []) if isinstance(c, dict)]
    except (ValueError, AttributeError, TypeError):
        return "unreadable principal", []
    role_types = {*ROLE_CLAIMS, decoded.get("role_typ")}
    roles = sorted({str(c.get("val")) for c in claims if c.get("typ") in role_types})
    names = [str(c.get("val")) for c in claims if c.get("typ") in ("name", decoded.get("name_typ"))]
    return (names[0] if names else "signed-in caller"), roles
