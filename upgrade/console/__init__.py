"""The console's static files (served as they are, packaged with the app) and the caller's view.

No build step and no library: the page is one HTML file, one script and one style sheet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from upgrade.domain.identity import DECISION_ROLES, OPERATE, ROLLOUT_DECISION_ROLES, Principal

FILES = Path(__file__).parent
MIMETYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

# The role each console action needs, read from the tables the API checks (the page offers the
# run decisions but override-window, the rollout's approve, and a quarantine remediation).
CONSOLE_DECISIONS = ("approve", "rollback", "pause", "resume", "abort")
ACTION_ROLES = {**{decision: DECISION_ROLES[decision] for decision in CONSOLE_DECISIONS},
                "remediate": OPERATE, "rolloutApprove": ROLLOUT_DECISION_ROLES["approve"]}


def console_file(name: str) -> tuple[bytes, str] | None:
    """(bytes, mimetype) of one of the console's own files; None for any other name (no paths)."""
    path = FILES / name
    if "/" in name or "\\" in name or name.startswith(".") or path.suffix not in MIMETYPES or not path.is_file():
        return None
    return path.read_bytes(), MIMETYPES[path.suffix]


def caller_view(principal: Principal) -> dict[str, Any]:
    """GET /api/me: who the signed-in caller is (App Service authentication's principal) and which
    console actions the app roles in its token allow."""
    roles = sorted(principal.roles)
    return {"name": principal.name, "objectId": principal.object_id, "authentication": "entra-id",
            "roles": roles, "actions": {action: role in roles for action, role in ACTION_ROLES.items()}}
