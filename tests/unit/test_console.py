"""The console's server side: node states (pure), the run's nodes (service over fakes), the static
files it serves (and nothing else), and what GET /api/me tells the page about the caller."""

from __future__ import annotations

import base64
import json

import pytest

from tests.fakes import FakePlatform
from tests.unit.fake_cluster import CLUSTER, FakeCluster
from upgrade.console import caller_view, console_file
from upgrade.domain.identity import APPROVE, OPERATE, READ, parse_client_principal
from upgrade.domain.model import QUARANTINE_LABEL, QUARANTINE_VALUE, Node, Pod
from upgrade.domain.node_states import at_version, node_state, pods_to_move
from upgrade.domain.runs import RunRecord
from upgrade.errors import NotFound
from upgrade.services.run_nodes import run_nodes


def node(pool="blue", version="1.30.0", *, cordoned=False, quarantined=False) -> Node:
    labels = ((QUARANTINE_LABEL, QUARANTINE_VALUE),) if quarantined else ()
    return Node(name="n1", pool=pool, kubernetes_version=version, unschedulable=cordoned or quarantined, labels=labels)


@pytest.mark.parametrize(("the_node", "green", "moving", "state"), [
    (node(quarantined=True), None, 1, "quarantined"),
    (node(cordoned=True), None, 2, "draining"),
    (node(cordoned=True), None, 0, "cordoned"),
    (node(pool="green1", version="1.31.7"), "green1", 0, "green"),
    (node(version="1.31.7"), None, 0, "upgraded"),
    (node(version="1.30.0"), None, 0, "blue"),
    (node(pool="green1", version="1.31.7", cordoned=True), "green1", 0, "cordoned"),
], ids=["quarantined-first", "cordoned-with-pods", "cordoned-empty", "green-pool", "at-target", "to-do",
        "a-cordoned-green-node-is-cordoned"])
def test_node_state(the_node, green, moving, state):
    assert node_state(the_node, green_pool=green, target_version="1.31", moving=moving) == state


@pytest.mark.parametrize(("version", "target", "at"), [
    ("1.31.7", "1.31", True), ("1.31.7", "1.31.7", True), ("1.31.7", "1.31.8", False),
    ("1.3.1", "1.31", False), ("v1.31.2", "1.31", True),
])
def test_at_version_compares_whole_parts(version, target, at):
    assert at_version(version, target) is at


def test_pods_to_move_leaves_daemonset_mirror_finished_and_leaving_pods():
    def pod(name, **kw):
        return Pod(namespace="apps", name=name, uid=name, node="n1", **kw)

    pods = [pod("web"), pod("ds", owner_kind="DaemonSet"), pod("static", mirror=True),
            pod("job", phase="Succeeded"), pod("gone", deleting=True), pod("bare", owner_kind=None)]
    assert [p.name for p in pods_to_move(pods)] == ["web", "bare"]


def test_run_nodes_lists_blue_and_green_pools_with_states_and_pods_to_move():
    fake = FakeCluster()
    fake.add_node("b0", "blue", cordoned=True)
    fake.add_node("b1", "blue", cordoned=True)
    fake.add_node("g0", "green1", "1.31.7")
    fake.add_node("other", "system")
    fake.add_pod("apps", "web-1", "b0", app="web")
    fake.add_pod("apps", "web-2", "g0", app="web")
    platform = FakePlatform(kubes={CLUSTER.arm_id: fake})
    now = platform.clock.now()
    platform.runs.create(RunRecord(run_id="bg-1", kind="blue-green", cluster=CLUSTER.arm_id, pool="blue",
                                   target_version="1.31", state="bluegreen.drain_batch", status="running",
                                   created_at=now, updated_at=now, facts={"greenPool": "green1"}))
    view = run_nodes("bg-1", platform)
    assert [(p["name"], p["role"]) for p in view["pools"]] == [("blue", "blue"), ("green1", "green")]
    blue, green = ({n["name"]: (n["state"], n["podsToMove"]) for n in p["nodes"]} for p in view["pools"])
    assert blue == {"b0": ("draining", ["apps/web-1"]), "b1": ("cordoned", [])}
    assert green == {"g0": ("green", [])}


def test_run_nodes_of_an_unknown_run_is_not_found():
    with pytest.raises(NotFound):
        run_nodes("nope", FakePlatform())


@pytest.mark.parametrize(("name", "mimetype"), [
    ("index.html", "text/html"), ("console.js", "text/javascript"), ("console.css", "text/css")])
def test_the_console_files_are_served(name, mimetype):
    body, served_as = console_file(name)
    assert body and served_as == mimetype


@pytest.mark.parametrize("name", ["../__init__.py", "__init__.py", "..", ".", "", "a/b.js", "..\\x.js",
                                  "missing.js", ".hidden.js", "%2e%2e/index.html"])
def test_nothing_else_is_served(name):
    assert console_file(name) is None


def test_the_page_references_only_files_the_app_serves():
    # No CDN: every script and style sheet the page loads is one of the console's own files.
    page = console_file("index.html")[0].decode()
    assert "http://" not in page and "https://" not in page
    for ref in ("/api/console/console.js", "/api/console/console.css"):
        assert ref in page and console_file(ref.rsplit("/", 1)[1]) is not None


def principal(roles, name="ana") -> str:
    claims = [{"typ": "name", "val": name}, {"typ": "oid", "val": "oid-ana"}] + [{"typ": "roles", "val": r} for r in roles]
    return base64.b64encode(json.dumps({"name_typ": "name", "role_typ": "roles", "claims": claims}).encode()).decode()


@pytest.mark.parametrize(("roles", "allowed"), [
    ([READ], set()),
    ([READ, OPERATE], {"pause", "resume", "abort", "remediate"}),
    ([APPROVE], {"approve", "rollback", "rolloutApprove"}),
    ([], set()),
], ids=["reader", "operator", "approver", "no-roles"])
def test_me_tells_the_page_which_actions_the_roles_allow(roles, allowed):
    view = caller_view(parse_client_principal(principal(roles)))
    assert {action for action, may in view["actions"].items() if may} == allowed
    assert (view["name"], view["objectId"], view["roles"]) == ("ana", "oid-ana", sorted(roles))


@pytest.mark.parametrize("headers", [{}, {"x-ms-client-principal": "not base64 json"}], ids=["none", "unreadable"])
def test_me_without_a_readable_principal_is_401(headers):
    import azure.functions as func

    from upgrade.triggers import http_console

    request = func.HttpRequest(method="GET", url="http://localhost/api/me", headers=headers, body=b"")
    assert http_console.get_me.build().get_user_function()(request).status_code == 401
