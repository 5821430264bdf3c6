"""Who may do what: the operator roles, the signed-in principal, and the role each action needs.

App Service authentication (Easy Auth) validates the caller's Entra ID token and hands the app
its claims in the ``X-MS-CLIENT-PRINCIPAL`` header: base64 of the JSON
``{"auth_typ", "name_typ", "role_typ", "claims": [{"typ", "val"}, ...]}``. Claim names there
may have gone through the platform's default claim mapping, so both the short token names
(``roles``, ``oid``, ``name``) and the mapped URIs are read. The app roles are the app
registration's (infra/modules/operator-auth.bicep); a caller holds the roles Entra ID put in
its token, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from upgrade.errors import InvalidInput, NotAllowed

READ = "Upgrade.Read"
OPERATE = "Upgrade.Operate"
APPROVE = "Upgrade.Approve"
ROLES = (READ, OPERATE, APPROVE)

# What each decision on a run needs: Approve for the ones that end blue or green for good.
# ("approve" is the commit: it deletes the blue pool; "override-window" lets a run act outside
# its maintenance windows, an acceptance of risk like an approval.)
DECISION_ROLES = {"approve": APPROVE, "rollback": APPROVE, "override-window": APPROVE,
                  "pause": OPERATE, "resume": OPERATE, "abort": OPERATE}

ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
NAME_CLAIMS = ("name", "preferred_username", "upn",
               "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
               "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn")
MAX_HEADER_CHARS = 32_000
_OBJECT_ID_IN_ACTOR = re.compile(r"\(oid ([^)\s]+)\)$")


@dataclass(frozen=True)
class Principal:
    """A caller Entra ID vouched for: display name, object id (the stable key) and app roles."""

    name: str
    object_id: str
    roles: frozenset[str]

    @property
    def actor(self) -> str:
        """How history rows and alerts name this caller: name and object id."""
        return f"{self.name} (oid {self.object_id})"

    def require(self, role: str) -> Principal:
        """This principal when it holds ``role``; NotAllowed naming the missing role otherwise."""
        if role not in self.roles:
            held = ", ".join(sorted(self.roles)) or "none"
            raise NotAllowed(f"{self.actor} lacks the app role {role} (holds: {held})", code=role)
        return self


# Decisions on a staged rollout: approve lets it past a gate and skip passes a cluster or stage by.
ROLLOUT_DECISION_ROLES = {"approve": APPROVE, "skip": APPROVE, "pause": OPERATE, "resume": OPERATE, "abort": OPERATE}


def same_person(actor: str, other: str) -> bool:
    """Whether two recorded actors are one caller: by object id when both carry one (names change),
    else by the whole text (a policy or system actor)."""
    ids = [_OBJECT_ID_IN_ACTOR.search(a or "") for a in (actor, other)]
    if ids[0] and ids[1]:
        return ids[0].group(1).lower() == ids[1].group(1).lower()
    return (actor or "").strip() == (other or "").strip()


def role_for_decision(decision: str, roles: dict[str, str] = DECISION_ROLES) -> str:
    """The app role a decision needs (``roles``: DECISION_ROLES for runs, ROLLOUT_DECISION_ROLES)."""
    if decision not in roles:
        raise InvalidInput("decision", "decision", f"{decision!r} is not one of {', '.join(roles)}")
    return roles[decision]


def parse_client_principal(header: str) -> Principal:
    """The principal in an ``X-MS-CLIENT-PRINCIPAL`` header value; InvalidInput when malformed
    or when it carries no object id (the app never records an actor it cannot tell apart)."""
    if len(header) > MAX_HEADER_CHARS:
        raise InvalidInput("client principal", "X-MS-CLIENT-PRINCIPAL", "too long")
    try:
        decoded = json.loads(base64.b64decode(header + "=" * (-len(header) % 4), validate=False))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("client principal", "X-MS-CLIENT-PRINCIPAL", f"not base64 JSON: {exc}") from exc
    claims = decoded.get("claims") if isinstance(decoded, dict) else None
    if not isinstance(claims, list):
        raise InvalidInput("client principal", "claims", "missing or not an array")
    values: dict[str, list[str]] = {}
    for claim in claims:
        if isinstance(claim, dict) and isinstance(claim.get("typ"), str) and isinstance(claim.get("val"), str):
            values.setdefault(claim["typ"], []).append(claim["val"])
    role_types = {*ROLE_CLAIMS, *([decoded["role_typ"]] if isinstance(decoded.get("role_typ"), str) else [])}
    roles = frozenset(v for t in role_types for v in values.get(t, []))
    object_id = next((values[t][0] for t in OBJECT_ID_CLAIMS if values.get(t)), "")
    if not object_id:
        raise InvalidInput("client principal", "oid", "no object id claim")
    name_types = ([decoded["name_typ"]] if isinstance(decoded.get("name_typ"), str) else []) + list(NAME_CLAIMS)
    name = next((values[t][0] for t in name_types if values.get(t)), object_id)
    return Principal(name=name[:200], object_id=object_id[:64], roles=roles)


def encode_client_principal(name: str, object_id: str, roles: list[str] | tuple[str, ...],
                            auth_typ: str = "aad") -> str:
    """The header value Easy Auth would send for these claims (used by the dev host)."""
    claims = [{"typ": "name", "val": name},
              {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": object_id}]
    claims += [{"typ": "roles", "val": role} for role in roles]
    body = {"auth_typ": auth_typ, "name_typ": "name", "role_typ": "roles", "claims": claims}
    return base64.b64encode(json.dumps(body).encode()).decode()
