"""The signed-in principal from App Service authentication's header, and the role each action needs."""

from __future__ import annotations

import base64
import json

import pytest

from upgrade.cli.common import ApiCredential, token_claims
from upgrade.domain.identity import (
    APPROVE,
    OPERATE,
    READ,
    encode_client_principal,
    parse_client_principal,
    role_for_decision,
)
from upgrade.errors import InvalidInput, NotAllowed

OID_URI = "http://schemas.microsoft.com/identity/claims/objectidentifier"
ROLE_URI = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"


def header(body: object) -> str:
    return base64.b64encode(json.dumps(body).encode()).decode()


@pytest.mark.parametrize(("body", "name", "oid", "roles"), [
    # claim names after App Service's default mapping, role_typ naming the role claim
    ({"auth_typ": "aad", "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
      "role_typ": ROLE_URI,
      "claims": [{"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", "val": "a@x.io"},
                 {"typ": OID_URI, "val": "oid-a"}, {"typ": ROLE_URI, "val": READ}, {"typ": ROLE_URI, "val": OPERATE}]},
     "a@x.io", "oid-a", {READ, OPERATE}),
    # the token's short claim names
    ({"auth_typ": "aad", "name_typ": "name", "role_typ": "roles",
      "claims": [{"typ": "name", "val": "Bo"}, {"typ": "oid", "val": "oid-b"}, {"typ": "roles", "val": APPROVE}]},
     "Bo", "oid-b", {APPROVE}),
    # a service principal (client credentials) with no name claim: named by its object id, no roles
    ({"auth_typ": "aad", "claims": [{"typ": OID_URI, "val": "oid-c"}, {"typ": "roles", "val": 7}]},
     "oid-c", "oid-c", set()),
])
def test_the_principal_is_read_from_the_documented_header_shape(body, name, oid, roles):
    principal = parse_client_principal(header(body))
    assert (principal.name, principal.object_id, set(principal.roles)) == (name, oid, roles)
    assert principal.actor == f"{name} (oid {oid})"


@pytest.mark.parametrize(("value", "field"), [
    ("not base64 json!", "X-MS-CLIENT-PRINCIPAL"),
    (header({"auth_typ": "aad"}), "claims"),
    (header({"claims": [{"typ": "name", "val": "no oid"}]}), "oid"),
    (header([1, 2]), "claims"),
])
def test_a_malformed_principal_is_refused_naming_the_field(value, field):
    with pytest.raises(InvalidInput) as caught:
        parse_client_principal(value)
    assert caught.value.field == field


def test_the_encoded_principal_reads_back():
    principal = parse_client_principal(encode_client_principal("Cy", "oid-c", [READ, APPROVE]))
    assert (principal.name, principal.object_id, principal.roles) == ("Cy", "oid-c", frozenset({READ, APPROVE}))


@pytest.mark.parametrize(("decision", "role"), [
    ("approve", APPROVE), ("rollback", APPROVE), ("override-window", APPROVE), ("pause", OPERATE),
    ("resume", OPERATE), ("abort", OPERATE)])
def test_each_decision_needs_its_role(decision, role):
    assert role_for_decision(decision) == role
    others = parse_client_principal(encode_client_principal("d", "oid-d", [r for r in (READ, OPERATE, APPROVE)
                                                                            if r != role]))
    with pytest.raises(NotAllowed) as caught:
        others.require(role_for_decision(decision))
    assert caught.value.code == role and role in str(caught.value)


def test_an_unknown_decision_is_invalid_input():
    with pytest.raises(InvalidInput):
        role_for_decision("commit-now")


def _jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_the_cli_says_who_its_token_names():
    token = _jwt({"name": "Ann", "oid": "oid-ann", "roles": [READ, OPERATE]})
    credential = ApiCredential(environ={"AKS_UPGRADE_ACCESS_TOKEN": token})
    assert credential.token() == token
    assert credential.acting_as() == f"Ann (oid oid-ann; {READ}, {OPERATE})"
    assert token_claims("opaque") == {}


def test_the_cli_without_a_scope_or_token_says_what_to_give():
    with pytest.raises(InvalidInput) as caught:
        ApiCredential(environ={}).token()
    assert caught.value.field == "--api-scope"


def _http_functions():
    import function_app

    function_app.app.functions_bindings = {}  # see test_function_bindings.bindings_by_function
    try:
        functions = function_app.app.get_functions()
    finally:
        function_app.app.functions_bindings = {}
    for function in functions:
        trigger = next((json.loads(raw) for raw in function.get_raw_bindings()
                        if json.loads(raw)["type"] == "httpTrigger"), None)
        if trigger is not None:
            yield function.get_function_name(), trigger, function.get_user_function()


@pytest.mark.parametrize(("principal", "status"), [(None, 401), (encode_client_principal("n", "oid-n", []), 403)],
                         ids=["no-principal", "no-roles"])
def test_every_http_route_refuses_a_caller_without_the_role_before_doing_anything(monkeypatch, principal, status):
    # GIVEN every HTTP route the app registers, and a platform that must not even be built
    import azure.functions as func

    from upgrade import wiring

    monkeypatch.setattr(wiring, "platform", lambda: pytest.fail("the route reached the platform"))
    # (the console's static files hold no data; /api/me answers any signed-in caller, roles or not)
    routes = [r for r in _http_functions() if r[0] != "console_files"]
    assert len(routes) >= 7
    for name, trigger, handler in routes:
        if name == "get_me" and principal:
            continue
        params = {"run_id": "r", "decision": "approve", "cluster": "c", "node": "n"}
        request = func.HttpRequest(method=trigger["methods"][0], url=f"http://localhost/api/{trigger['route']}",
                                   headers={"x-ms-client-principal": principal} if principal else {},
                                   route_params=params, body=b"{}")
        # WHEN it is called without a principal, or with one that holds no app role
        response = handler(request)
        # THEN it is refused (401 / 403 naming the role it needs)
        assert response.status_code == status, (name, response.get_body())
        if status == 403:
            assert json.loads(response.get_body())["missingRole"] in (READ, OPERATE, APPROVE), name
        if status == 401 and "{decision}" in trigger["route"]:
            # AND a decision it does not know is no reason to tell a stranger more than 401
            unknown = func.HttpRequest(method="POST", url=f"http://localhost/api/{trigger['route']}",
                                       route_params={**params, "decision": "nonsense"}, body=b"{}")
            assert handler(unknown).status_code == 401, name


@pytest.mark.parametrize(("headers", "refused"), [
    ({"Sec-Fetch-Site": "cross-site"}, True),
    ({"Sec-Fetch-Site": "same-site"}, True),  # another app under the same site is another origin
    ({"Sec-Fetch-Site": "same-origin"}, False),  # the console on this app
    ({"Origin": "https://evil.example"}, True),  # a browser without Sec-Fetch-* headers
    ({"Origin": "null"}, True),
    ({"Origin": "http://localhost"}, False),
    ({}, False),  # the CLI and other non-browser clients send neither
], ids=["cross-site", "same-site", "same-origin", "other-origin", "opaque-origin", "this-origin", "no-browser"])
def test_every_route_that_changes_something_refuses_a_browser_request_from_another_site(monkeypatch, headers,
                                                                                        refused):
    # GIVEN every POST route, a caller holding every role, and a platform that must not be reached by a refusal
    import azure.functions as func

    from upgrade import wiring

    monkeypatch.setattr(wiring, "platform", lambda: pytest.fail("the refused request reached the platform"))
    principal = encode_client_principal("ann", "oid-ann", [READ, OPERATE, APPROVE])
    routes = [r for r in _http_functions() if r[1]["methods"] == ["POST"]]
    assert len(routes) >= 5
    for name, trigger, handler in routes:
        params = {"run_id": "r", "rollout_id": "r", "decision": "approve", "cluster": "c", "node": "n"}
        request = func.HttpRequest(method="POST", url=f"http://localhost/api/{trigger['route']}",
                                   headers={"x-ms-client-principal": principal, "host": "localhost", **headers},
                                   route_params=params, body=b"{}")
        # WHEN a browser on another site (or this one, or no browser) sends it
        if refused:
            response = handler(request)
            # THEN it is refused before anything is read or changed
            assert response.status_code == 403, (name, response.get_body())
            assert "another site" in json.loads(response.get_body())["message"], name
        else:
            # THEN it goes on to the service (which the stub platform stops)
            with pytest.raises(pytest.fail.Exception, match="reached the platform"):
                handler(request)
