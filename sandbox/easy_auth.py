"""The dev host's stand-in for App Service authentication (Easy Auth) and for Entra ID.

In Azure, Easy Auth sits in front of the app: it validates the caller's Entra ID access token
(issuer, audience, signature, expiry), refuses a request without one on a protected path (401,
``unauthenticatedClientAction: Return401``), drops any ``X-MS-CLIENT-PRINCIPAL*`` header a client
sent, and passes the token's claims to the app in ``X-MS-CLIENT-PRINCIPAL``. The dev host does the
same, with one honest difference: the tokens it accepts are signed by this sandbox issuer (an HMAC
key made per host), not by Entra ID, so the sandbox never needs a tenant. ``SandboxIssuer.mint``
is the sandbox's Entra ID: a test or an operator of the sandbox gets a token for a name, an object
id and app roles, and sends it as ``Authorization: Bearer`` exactly as the CLI sends a real one.

``EXCLUDED_PATHS`` are the paths Easy Auth leaves alone; infra/modules/function-app.bicep lists
the same (tests/integration/test_infra.py compares them).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import jwt

from upgrade.domain.identity import APPROVE, OPERATE, READ, Principal, encode_client_principal

AUDIENCE = "api://aks-upgrade-sandbox"
ISSUER = "https://login.sandbox.invalid/00000000-0000-0000-0000-000000000000/v2.0"
ALGORITHM = "HS256"
TOKEN_LIFETIME_SECONDS = 3600
# Function-key paths Azure itself needs: the Event Grid webhook (system key) and the host's admin API.
# A pattern ending in "/*" excludes everything below it; any other is one exact path.
EXCLUDED_PATHS = ("/runtime/webhooks/eventgrid", "/admin/*")
STRIPPED_HEADER_PREFIXES = ("x-ms-client-principal", "x-ms-token-")


@dataclass(frozen=True)
class Identity:
    """Someone the sandbox issuer can sign a token for."""

    name: str
    object_id: str
    roles: tuple[str, ...]

    @property
    def actor(self) -> str:
        """How the app's history names this identity once Easy Auth passed it on."""
        return Principal(self.name, self.object_id, frozenset(self.roles)).actor


# The sandbox's operators, one per role and one with all of them (the default for tests and the demo).
READER = Identity("reader@sandbox.invalid", "11111111-1111-4111-8111-111111111111", (READ,))
OPERATOR = Identity("operator@sandbox.invalid", "22222222-2222-4222-8222-222222222222", (READ, OPERATE))
APPROVER = Identity("approver@sandbox.invalid", "33333333-3333-4333-8333-333333333333", (READ, APPROVE))
ADMIN = Identity("sandbox-admin@sandbox.invalid", "44444444-4444-4444-8444-444444444444", (READ, OPERATE, APPROVE))
IDENTITIES = {"reader": READER, "operator": OPERATOR, "approver": APPROVER, "admin": ADMIN}


def new_identity(name: str, roles: Iterable[str]) -> Identity:
    return Identity(name, str(uuid.uuid4()), tuple(roles))


def is_excluded(path: str, patterns: Iterable[str] = EXCLUDED_PATHS) -> bool:
    """Whether App Service authentication leaves ``path`` alone under these excludedPaths."""
    lowered = path.lower().rstrip("/")
    for pattern in (p.lower() for p in patterns):
        if pattern.endswith("/*") and lowered.startswith(pattern[:-1]):
            return True
        if lowered == pattern.rstrip("/"):
            return True
    return False


class SandboxIssuer:
    """Signs and validates the sandbox's access tokens (HS256 with a per-host key)."""

    def __init__(self, key: str | None = None) -> None:
        self.key = key or secrets.token_urlsafe(32)

    def mint(self, identity: Identity, *, lifetime: float = TOKEN_LIFETIME_SECONDS) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + int(lifetime),
                  "oid": identity.object_id, "name": identity.name, "preferred_username": identity.name,
                  "roles": list(identity.roles)}
        return jwt.encode(claims, self.key, algorithm=ALGORITHM)

    def validate(self, token: str) -> dict:
        """The token's claims; jwt.InvalidTokenError when the signature, issuer, audience or times fail."""
        return jwt.decode(token, self.key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                          options={"require": ["exp", "iss", "aud", "oid"]})

    def principal_headers(self, headers: Mapping[str, str], path: str) -> dict[str, str] | None:
        """What Easy Auth passes on: the client's headers without any it may not set, plus the
        principal when a valid bearer token came; None when the path is protected and no valid
        token came (answer 401)."""
        passed = {k: v for k, v in headers.items() if not k.lower().startswith(STRIPPED_HEADER_PREFIXES)}
        scheme, _, token = (headers.get("Authorization") or headers.get("authorization") or "").partition(" ")
        claims = None
        if scheme.lower() == "bearer" and token.strip():
            try:
                claims = self.validate(token.strip())
            except jwt.InvalidTokenError:
                claims = None
        if claims is None:
            return passed if is_excluded(path) else None
        name = str(claims.get("name") or claims.get("preferred_username") or claims["oid"])
        roles = [str(r) for r in claims.get("roles") or []]
        return {**passed, "X-MS-CLIENT-PRINCIPAL": encode_client_principal(name, str(claims["oid"]), roles),
                "X-MS-CLIENT-PRINCIPAL-NAME": name, "X-MS-CLIENT-PRINCIPAL-ID": str(claims["oid"]),
                "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}
