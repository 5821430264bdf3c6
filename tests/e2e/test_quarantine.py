"""Scenario 2 end to end: AKS quarantines node 1 (pod A, PDB minAvailable 1); one timer scan
later the operator has exactly one alert naming node 1, pod A, its PDB and the four ways out with
complete commands (scale-out first); a second scan sends no duplicate. The scan does it alone when the app saw no
AKS event, and adds nothing when the post-upgrade reconcile alerted first. Each remediation, requested over HTTP as the alert says, ends
with every node at 1.31, no quarantine label, the pool back at 2 nodes, pod A running and a
resolved notice; scale-out also leaves pod A's Deployment at its original replica count, and
leaves a count its owner changed meanwhile as they set it, with an alert; through an HPA it raises
and restores the HPA's bounds; for a StatefulSet it removes its added ordinal and names the claim
Kubernetes keeps. relax-pdb restores the
original PDB even when the eviction fails after the relax. At scale, a scan costs 2 + (cordoned nodes) API calls, counted by the emulator."""

from __future__ import annotations

import re

import pytest

from sandbox.aks_emulator.scenarios import ClusterBuilder, seed_pdb
from sandbox.easy_auth import OPERATOR
from tests.e2e.conftest import wait_until
from tests.e2e.rolling_support import (
    APP_NAMESPACE,
    POOL,
    policy_json,
    start_sandbox,
    upgrade_outside_the_product,
)

pytestmark = pytest.mark.e2e



APPROVAL = {"scale-out": "approval-required", "relax-pdb": "approval-required", "delete-pod": "approval-required", "replace-node": "approval-required"}


# A placeholder an operator would have to fill in before pasting: "<node>", "<count>".
PLACEHOLDER = re.compile(r"<[^<>]*>")


def quarantined_scenario2(emulator, start_devhost, aks_client, alerts_receiver, *, subscribed: bool = True,
                          builder: ClusterBuilder | None = None):
    """Scenario 2 (or ``builder``'s variant of it) after its upgrade: node 1 quarantined with pod A,
    the pool at 3 nodes. Subscribed to Event Grid, the app has reconciled the upgrade; unsubscribed,
    it knows nothing of it."""
    sandbox = start_sandbox(emulator, start_devhost, alerts_receiver, builder or seed_pdb(),
                            policy=policy_json(remediation=APPROVAL), subscribe=subscribed)
    aks = aks_client(sandbox.emulator)
    assert upgrade_outside_the_product(sandbox, aks) == "UpgradeFailed"
    assert len(sandbox.quarantined()) == 1 and len(sandbox.pool_nodes()) == 3
    if subscribed:
        wait_until(lambda: any(r["status"] == "failed" for r in sandbox.runs()), timeout=60,
                   what="the post-upgrade reconcile")
    return sandbox


@pytest.fixture
def scenario2(emulator, start_devhost, aks_client, alerts_receiver):
    return quarantined_scenario2(emulator, start_devhost, aks_client, alerts_receiver)


def assert_names_node1_pod_a_its_pdb_and_four_complete_options(alert: dict, node1: str) -> None:
    assert alert["node"] == node1 and alert["pool"] == POOL
    [blocker] = alert["blockers"]
    assert blocker["pod"].startswith("apps/app-a") or "app-a" in blocker["pod"]
    assert blocker["pdb"].endswith("/app-a-pdb") and blocker["minAvailable"] == "1"
    assert [o["kind"] for o in alert["options"]] == ["scale-out", "relax-pdb", "delete-pod", "replace-node"]
    for option in alert["options"]:
        assert option["command"] and not PLACEHOLDER.search(option["command"]), option
        assert option["request"]["path"].endswith(f"/{node1}/remediate")


@pytest.mark.parametrize("subscribed", [
    # No Event Grid subscription: the app never heard of the upgrade, only the scan can alert.
    pytest.param(False, id="the-scan-alone"),
    # The post-upgrade reconcile alerted first: the scans add no second alert.
    pytest.param(True, id="after-the-post-upgrade-reconcile"),
])
def test_one_alert_names_node_pod_pdb_and_four_options_and_a_second_scan_adds_none(
        emulator, start_devhost, aks_client, alerts_receiver, subscribed):
    # GIVEN Scenario 2 after its upgrade, node 1 quarantined with pod A
    scenario2 = quarantined_scenario2(emulator, start_devhost, aks_client, alerts_receiver, subscribed=subscribed)
    [node1] = scenario2.quarantined()
    if not subscribed:
        assert scenario2.runs() == [] and scenario2.alerts() == []  # nothing but the scan can tell
    # WHEN the timer scans once
    scenario2.scan()
    # THEN exactly one alert names node 1, with pod A, its PDB and the four ways out, ready to paste
    [alert] = scenario2.alerts_of("node.quarantined")
    assert_names_node1_pod_a_its_pdb_and_four_complete_options(alert, node1)
    # AND a second scan sends no duplicate
    scenario2.scan()
    assert scenario2.alerts_of("node.quarantined") == [alert]


def app_a_replicas(sandbox) -> int:
    return sandbox.cluster.kube.get_object("deployments", APP_NAMESPACE, "app-a")["spec"]["replicas"]


@pytest.mark.parametrize("kind", ["scale-out", "relax-pdb", "delete-pod", "replace-node"])
def test_each_remediation_brings_the_pool_back_to_two_nodes_at_131(scenario2, kind):
    [node1] = scenario2.quarantined()
    replicas = app_a_replicas(scenario2)
    scenario2.scan()
    [alert] = scenario2.alerts_of("node.quarantined")
    request = next(o["request"] for o in alert["options"] if o["kind"] == kind)
    # WHEN the operator sends the request the alert carries
    status, body = scenario2.host.request(request["method"], request["path"], body=request["body"])
    assert status == 202, body
    run = scenario2.wait_run(body["id"], timeout=120)
    # THEN every node is at 1.31, none is quarantined or cordoned, the pool is back at 2, pod A runs
    assert run["status"] == "succeeded", run["reason"]
    wait_until(lambda: all(v.startswith("v1.31") for v in scenario2.node_versions()), timeout=20, what="1.31")
    assert scenario2.quarantined() == [] and scenario2.cordoned() == []
    assert len(scenario2.pool_nodes()) == 2 and scenario2.emulator.cluster(scenario2.cluster.arm_id).pools[POOL].count == 2
    wait_until(lambda: [ready for _, ready in scenario2.app_pods().get("app-a", [])] == [True], timeout=20,
               what="pod A running")
    assert scenario2.pdb_spec() == {"minAvailable": 1}
    # AND pod A's Deployment is at its original replica count (scale-out raised it, then restored it)
    assert app_a_replicas(scenario2) == replicas == 1
    if kind == "scale-out":
        assert run["facts"]["scales"][f"Deployment/{APP_NAMESPACE}/app-a"]["raised_to"] == 2
    # AND the operator got a resolved notice for node 1
    assert len(scenario2.alerts_of("node.resolved", node1)) == 1


def test_scale_out_does_not_overwrite_a_replica_count_changed_meanwhile(scenario2):
    [node1] = scenario2.quarantined()
    # GIVEN evictions answer 429 for now, so the run holds between its raise and its restore
    scenario2.emulator.faults.add("kube", "POST /api/v1/namespaces/{namespace}/pods/{name}/eviction", rate_429=1.0)
    status, body = scenario2.host.request("POST", f"/api/quarantine/{scenario2.cluster.name}/{node1}/remediate",
                                          body={"kind": "scale-out"})
    assert status == 202, body
    wait_until(lambda: app_a_replicas(scenario2) == 2, timeout=60, what="the scale-out's raise")
    # WHEN the application's owner scales pod A's Deployment to 3 meanwhile, and evictions go through again
    scenario2.cluster.kube.scale("deployments", APP_NAMESPACE, "app-a", 3)
    scenario2.emulator.faults.clear()
    run = scenario2.wait_run(body["id"], timeout=120)
    # THEN the node is finished, the owner's 3 replicas are left as they are, and an alert says so
    assert run["status"] == "succeeded", run["reason"]
    assert scenario2.quarantined() == [] and scenario2.cordoned() == []
    assert app_a_replicas(scenario2) == 3
    [alert] = scenario2.alerts_of("remediation.scale-not-restored")
    assert alert["details"] == {"workload": f"Deployment/{APP_NAMESPACE}/app-a", "original": 1, "raised_to": 2, "current": 3}


def test_scale_out_through_an_hpa_raises_its_min_replicas_and_restores_both_bounds(
        emulator, start_devhost, aks_client, alerts_receiver):
    # GIVEN Scenario 2 with pod A's Deployment owned by HorizontalPodAutoscaler app-a-hpa (1..3)
    builder = seed_pdb().hpa(APP_NAMESPACE, "app-a-hpa", target=("Deployment", "app-a"), min_replicas=1,
                             max_replicas=3)
    sandbox = quarantined_scenario2(emulator, start_devhost, aks_client, alerts_receiver, builder=builder)
    [node1] = sandbox.quarantined()
    # WHEN the operator asks for scale-out
    status, body = sandbox.host.request("POST", f"/api/quarantine/{sandbox.cluster.name}/{node1}/remediate",
                                        body={"kind": "scale-out"})
    assert status == 202, body
    run = sandbox.wait_run(body["id"], timeout=120)
    # THEN the node is finished; the run raised the HPA's minimum (the HPA then set 2 replicas), not the scale
    assert run["status"] == "succeeded", run["reason"]
    assert sandbox.quarantined() == [] and sandbox.cordoned() == []
    record = run["facts"]["scales"][f"Deployment/{APP_NAMESPACE}/app-a"]
    assert (record["autoscaler"], record["bounds"], record["raised_to"]) == (
        "app-a-hpa", {"original": [1, 3], "raised": [2, 3]}, 2)
    # AND the HPA's bounds are back exactly; the count is the HPA's again (2, within 1..3: with no
    # metrics server, an HPA changes a count only when it leaves its bounds)
    hpa = sandbox.cluster.kube.get_object("horizontalpodautoscalers", APP_NAMESPACE, "app-a-hpa")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert app_a_replicas(sandbox) == 2
    assert sandbox.alerts_of("remediation.scale-not-restored") == []


def test_scale_out_of_a_statefulset_removes_its_added_ordinal_and_names_the_claim_kubernetes_kept(
        emulator, start_devhost, aks_client, alerts_receiver):
    # GIVEN Scenario 2 with pod A as StatefulSet app-a's only pod (claims retained when scaled, the default)
    sandbox = quarantined_scenario2(emulator, start_devhost, aks_client, alerts_receiver,
                                    builder=seed_pdb(app_a_statefulset=True))
    [node1] = sandbox.quarantined()
    sandbox.scan()
    [alert] = sandbox.alerts_of("node.quarantined")
    assert alert["options"][0]["kind"] == "scale-out" and "kubectl scale statefulset app-a" in alert["options"][0]["command"]
    # WHEN the operator sends the scale-out request the alert carries
    request = alert["options"][0]["request"]
    status, body = sandbox.host.request(request["method"], request["path"], body=request["body"])
    assert status == 202, body
    run = sandbox.wait_run(body["id"], timeout=120)
    # THEN the node is finished and the StatefulSet is back at 1: app-a-0 moved, the added app-a-1 is gone
    assert run["status"] == "succeeded", run["reason"]
    assert sandbox.quarantined() == [] and sandbox.cordoned() == [] and len(sandbox.pool_nodes()) == 2
    kube = sandbox.cluster.kube
    assert kube.get_object("statefulsets", APP_NAMESPACE, "app-a")["spec"]["replicas"] == 1
    wait_until(lambda: sorted(p["metadata"]["name"] for p in kube.list_pods(namespace=APP_NAMESPACE)
                              if p["metadata"]["labels"].get("app") == "app-a") == ["app-a-0"],
               timeout=30, what="app-a back to its one ordinal")
    # AND the claim of ordinal 1 is kept by Kubernetes, not deleted by the run, and an alert names it
    claims = {c["metadata"]["name"] for c in kube.list_objects("persistentvolumeclaims", APP_NAMESPACE)}
    assert claims == {"data-app-a-0", "data-app-a-1"}
    [kept] = sandbox.alerts_of("remediation.claims-retained")
    assert kept["details"]["claims"] == ["data-app-a-1"] and kept["severity"] == "info"
    assert len(sandbox.alerts_of("node.resolved", node1)) == 1


def test_relax_pdb_restores_the_original_pdb_when_eviction_fails_after_the_relax(scenario2):
    [node1] = scenario2.quarantined()
    # GIVEN every eviction fails (the API answers 500) once the PDB is relaxed
    scenario2.emulator.faults.add("kube", "POST /api/v1/namespaces/{namespace}/pods/{name}/eviction", rate_500=1.0)
    # (asked by an operator whose body claims to be someone else: the claim is ignored)
    status, body = scenario2.host.request("POST", f"/api/quarantine/{scenario2.cluster.name}/{node1}/remediate",
                                          body={"kind": "relax-pdb", "requestedBy": "mallory"}, identity=OPERATOR)
    assert status == 202, body
    assert body["options"]["requestedBy"] == OPERATOR.actor
    # WHEN the run gives up on the eviction
    run = scenario2.wait_run(body["id"], timeout=120)
    assert {t["actor"] for t in run["timeline"]} == {OPERATOR.actor}
    # THEN it failed saying so, and the PDB is exactly the original again
    assert run["status"] == "failed" and "original PDB was restored" in run["reason"]
    assert run["facts"]["pdb_relaxed"] is True
    assert scenario2.pdb_spec() == {"minAvailable": 1}
    assert scenario2.quarantined() == [node1]


def test_the_scan_of_a_5000_node_cluster_with_3_quarantined_nodes_makes_5_api_calls(emulator, start_devhost,
                                                                                 alerts_receiver):
    # GIVEN 5,000 nodes of which 3 are quarantined
    builder = ClusterBuilder("aks-big").pool("system", count=1, mode="System").pool(POOL, count=4999)
    sandbox = start_sandbox(emulator, start_devhost, alerts_receiver, builder, policy=policy_json())
    kube = sandbox.cluster.kube
    stuck = sorted(n["metadata"]["name"] for n in kube.nodes(POOL))[:3]
    for name in stuck:
        kube.set_unschedulable(name, True)
        kube.set_node_label(name, "kubernetes.azure.com/upgrade-status", "Quarantined")
    sandbox.scan()  # the first scan also builds the worker's clients
    sandbox.emulator.faults.reset_counts()
    # WHEN the timer scans again
    sandbox.scan()
    # THEN the emulator counted one node list, one PDB list and one pod list per quarantined node
    counts = sandbox.emulator.faults.counts()
    assert sum(counts.values()) <= 2 + 3, counts
    assert len(sandbox.alerts_of("node.quarantined")) == 3
