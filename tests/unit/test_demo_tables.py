"""The demo's seed-style tables (sandbox.tables) and its scenario list (sandbox.demo): what a node
row shows, when a view counts as a settled step, how a step is described, and that the demo's
policy is one the app accepts."""

from __future__ import annotations

import pytest

from sandbox import demo
from sandbox.tables import ClusterView, NodeRow, PodRow, changes, view_of
from upgrade.domain.policy import parse_policy


def node(name: str, *, pool: str = "np", version: str = "v1.30.0", ready: bool = True, cordoned: bool = False,
         quarantined: bool = False, system: bool = False) -> dict:
    labels = {"kubernetes.azure.com/agentpool": pool, "kubernetes.azure.com/mode": "system" if system else "user"}
    if quarantined:
        labels["kubernetes.azure.com/upgrade-status"] = "Quarantined"
    return {"metadata": {"name": name, "labels": labels}, "spec": {"unschedulable": cordoned},
            "status": {"nodeInfo": {"kubeletVersion": version},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pod(name: str, on: str | None, *, app: str | None = None, namespace: str = "default", ready: bool = True,
        owner: str = "ReplicaSet", terminating: bool = False) -> dict:
    metadata = {"name": name, "namespace": namespace, "labels": {"app": app} if app else {},
                "ownerReferences": [{"kind": owner, "name": "x"}]}
    if terminating:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {"nodeName": on} if on else {},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize(("given", "status"), [
    (node("n1"), "Ready"),
    (node("n1", cordoned=True), "Ready, cordoned"),
    (node("n1", cordoned=True, quarantined=True), "Ready, cordoned, Quarantined"),
    (node("n1", ready=False), "NotReady"),
])
def test_a_node_row_shows_readiness_cordon_and_the_aks_quarantine_label(given, status):
    # GIVEN one node WHEN the seed's view is built THEN its status column reads as the seed's tables do
    (row,) = view_of([given], []).nodes
    assert (row.name, row.pool, row.version, row.status) == ("n1", "np", "1.30.0", status)


def test_application_pods_are_named_as_the_seed_names_them_and_system_pods_are_left_out():
    # GIVEN app pods, a DaemonSet pod, a kube-system pod, a pending and a terminating pod, and a System-pool node
    view = view_of(
        [node("n1"), node("n2"), node("sys", pool="system", system=True)],
        [pod("app-a-1", "n1", app="app-a"), pod("app-b-1", "n1", app="app-b", ready=False),
         pod("proxy-1", "n1", app="kube-proxy", owner="DaemonSet"), pod("dns-1", "sys", namespace="kube-system"),
         pod("app-c-1", None, app="app-c"), pod("app-d-1", "n2", app="app-d", terminating=True),
         pod("loose", "n2")],
    )
    # THEN each node lists its application pods by letter with any state that is not Ready,
    # the System-pool node is hidden, and the pending pod gets a row of its own
    assert [(row.name, row.apps) for row in view.nodes] == [
        ("n1", ("A", "B (starting)")), ("n2", ("D (terminating)", "loose")), ("(pending)", ("C (pending)",))]
    assert view.hidden_nodes == 1
    assert not view.settled


def row(name: str, status: str = "Ready", version: str = "1.30.0", apps: tuple[str, ...] = ()) -> NodeRow:
    return NodeRow(name, "np", version, status, apps)


def ready(app: str, on: str) -> PodRow:
    return PodRow(f"{app.lower()}-1", app, on, "Ready")


@pytest.mark.parametrize(("view", "settled"), [
    (ClusterView((row("n1", apps=("A",)),), (ready("A", "n1"),)), True),
    (ClusterView((row("n1", status="NotReady"),), ()), False),
    (ClusterView((row("n1"),), (PodRow("a-2", "A", "n1", "starting"),)), False),
    (ClusterView((row("n1"),), (ready("A", "gone"),)), False),
])
def test_a_view_is_a_step_only_when_nothing_is_in_flight(view, settled):
    assert view.settled is settled


@pytest.mark.parametrize(("before", "after", "said"), [
    ((row("x-vmss0"),), (row("x-vmss0"), row("x-vmss2", version="1.31.8")), "vmss2 created (1.31.8)"),
    ((row("x-vmss0"),), (row("x-vmss0", status="Ready, cordoned"),), "vmss0 cordoned"),
    ((row("x-vmss0", status="Ready, cordoned"),), (row("x-vmss0", version="1.31.8"),),
     "vmss0 reimaged to 1.31.8; vmss0 uncordoned"),
    ((row("x-vmss0", status="Ready, cordoned, Quarantined"),), (row("x-vmss0", status="Ready, cordoned"),),
     "vmss0 unquarantined"),
    ((row("x-vmss0"), row("x-vmss2")), (row("x-vmss0"),), "vmss2 deleted"),
])
def test_a_step_says_what_changed_on_the_nodes(before, after, said):
    assert changes(ClusterView(before, ()), ClusterView(after, ())) == said


def test_a_step_says_where_each_pod_moved():
    before = ClusterView((row("x-vmss0"), row("x-vmss1")), (ready("A", "x-vmss0"), ready("B", "x-vmss0")))
    after = ClusterView(before.nodes, (ready("A", "x-vmss1"), ready("B", "x-vmss0")))
    assert changes(before, after) == "A → vmss1"


def test_the_demo_plays_the_foundation_then_the_three_seed_scenarios_in_order():
    names = [scenario.name.split(":")[0] for scenario in demo.SCENARIOS]
    assert names == ["foundation", "Scenario 1", "Scenario 2", "Scenario 3", "Scenario 3"]
    assert [s.play for s in demo.SCENARIOS[3:]] == [demo.demo_bluegreen.play_commit,
                                                    demo.demo_bluegreen.play_rollback]
    # the two blue-green paths each need a fresh blue pool: two clusters from one seed
    assert demo.SCENARIOS[3].cluster.name != demo.SCENARIOS[4].cluster.name


def test_the_demo_policy_is_valid_and_starts_only_scenario_1s_pool_automatically():
    # GIVEN the stage's clusters WHEN their UPGRADE_POLICY is parsed as the app parses it at start-up
    clusters = list({s.cluster.name: s.cluster for s in demo.SCENARIOS}.values())
    policy = parse_policy(demo.upgrade_policy(clusters), [c.arm_id for c in clusters])
    # THEN only Scenario 1's pool starts on a new version; Scenario 2's remediations need an operator
    assert policy.for_pool(demo.ROLLING.arm_id, "nodepool1").on_new_version == "start"
    assert policy.for_pool(demo.ROLLING.arm_id, "system").on_new_version == "preflight-report"
    assert policy.for_pool(demo.PDB.arm_id, "nodepool1").remediation.mode("relax-pdb") == "approval-required"
    assert policy.for_pool(demo.BLUEGREEN.arm_id, "blue").poll_seconds == 1
