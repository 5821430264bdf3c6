"""The product's Kubernetes code against a real API server, real controllers and real PDBs.

Every product call goes through ``KubernetesKube`` as the app identity (bound only to the infra
ClusterRole): the adapter's selectors and patches, the drain engine, PDB analysis, quarantine
diagnosis, remediation's relax-and-restore and pod deletion, scale-out through an HPA's bounds and
a StatefulSet's ordinals, and the preflight snapshot.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from sandbox.k8s.binaries import kubernetes_version
from tests.realk8s.conftest import RealCluster, wait_for
from upgrade.domain.drain import DrainOptions, DrainStatus
from upgrade.domain.model import ClusterRef
from upgrade.domain.preflight import PlannedUpgrade, preflight
from upgrade.domain.quarantine import diagnose_node, relaxed_spec
from upgrade.domain.scale_out import ScaleRestore, raised_bounds, restore_action, statefulset_refusal
from upgrade.errors import Conflict, NotFound, TemporaryError
from upgrade.services.drain import drain_node, drain_node_step
from upgrade.services.snapshot import read_snapshot

pytestmark = pytest.mark.realk8s

IGNORE_DS = DrainOptions(ignore_daemonsets=True)
CLUSTER = ClusterRef("00000000-0000-0000-0000-000000000001", "rg", "aks-real")
QUARANTINE_LABEL = "kubernetes.azure.com/upgrade-status"


def _pod_names(pods) -> set[str]:
    return {p.name for p in pods}


def test_nodes_are_read_with_real_label_and_field_selectors(real_cluster: RealCluster, app_kube):
    # GIVEN a two-node pool of AKS-like nodes next to the session's tainted system pool
    names = real_cluster.add_nodes(2)
    # WHEN the adapter lists by the pool label and by a metadata.name field selector
    by_pool = app_kube.list_nodes(label_selector=f"kubernetes.azure.com/agentpool={real_cluster.pool}")
    by_name = app_kube.list_nodes(field_selector=f"metadata.name={names[1]}")
    system = app_kube.list_nodes(label_selector="kubernetes.azure.com/mode=system")
    # THEN the API server selected exactly those, and the adapter read pool, version and readiness
    assert sorted(n.name for n in by_pool) == names
    assert [n.name for n in by_name] == [names[1]]
    version = kubernetes_version().removeprefix("v")  # the kubelet version kwok reports: the pinned release
    assert all(n.pool == real_cluster.pool and n.ready and n.kubernetes_version == version for n in by_pool)
    assert system and all("CriticalAddonsOnly=true:NoSchedule" in n.taints for n in system)


def test_pods_are_listed_by_node_field_selector_and_label_selector(real_cluster: RealCluster, app_kube):
    real_cluster.add_nodes(1)
    real_cluster.deployment("web", 2)
    real_cluster.deployment("db", 1)
    node = real_cluster.nodes[0]
    on_node = app_kube.list_pods(node=node)
    web = app_kube.list_pods(namespace=real_cluster.namespace, label_selector="app=web")
    set_based = app_kube.list_pods(namespace=real_cluster.namespace, label_selector="app in (db),app notin (web)")
    assert {p.node for p in on_node} == {node} and len(on_node) == 3
    assert len(web) == 2 and all(p.owner_kind == "ReplicaSet" and p.phase == "Running" and p.ready for p in web)
    assert [p.label_map()["app"] for p in set_based] == ["db"]


def test_cordon_and_labels_are_real_patches_and_repeating_them_changes_nothing(real_cluster: RealCluster, app_kube):
    (node,) = real_cluster.add_nodes(1)
    # WHEN the node is cordoned (strategic-merge patch) and labelled (merge patch), twice each
    assert app_kube.set_unschedulable(node, True) is True
    assert app_kube.set_unschedulable(node, True) is False
    assert app_kube.set_node_label(node, QUARANTINE_LABEL, "Quarantined") is True
    assert app_kube.set_node_label(node, QUARANTINE_LABEL, "Quarantined") is False
    raw = real_cluster.get(f"/api/v1/nodes/{node}")
    # THEN the API server stored them, and the node lifecycle controller added the cordon taint
    assert raw["spec"]["unschedulable"] is True
    assert raw["metadata"]["labels"][QUARANTINE_LABEL] == "Quarantined"
    cordoned = wait_for(lambda: (n := app_kube.get_node(node)).cordoned_at and n, "the unschedulable taint")
    assert cordoned.unschedulable and cordoned.quarantined
    # WHEN the label is removed (a null in the merge patch) and the node uncordoned
    assert app_kube.set_node_label(node, QUARANTINE_LABEL, None) is True
    assert app_kube.set_unschedulable(node, False) is True
    raw = real_cluster.get(f"/api/v1/nodes/{node}")
    assert QUARANTINE_LABEL not in raw["metadata"]["labels"] and not raw["spec"].get("unschedulable")


def test_a_pdb_refusal_is_a_real_429_with_the_budget_named(real_cluster: RealCluster, app_kube):
    # GIVEN one db pod protected by minAvailable 1
    real_cluster.add_nodes(1)
    real_cluster.deployment("db", 1)
    real_cluster.pdb("db-pdb", {"matchLabels": {"app": "db"}}, min_available=1, expected_allowed=0)
    (pod,) = real_cluster.pods("app=db")
    name = pod["metadata"]["name"]
    # WHEN it is evicted, raw as the admin and through the adapter as the app
    status, body = real_cluster.cp.request(
        "POST", f"/api/v1/namespaces/{real_cluster.namespace}/pods/{name}/eviction",
        {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": real_cluster.namespace}})
    with pytest.raises(TemporaryError) as refused:
        app_kube.evict(real_cluster.namespace, name)
    # THEN the API server answers 429 TooManyRequests with a DisruptionBudget cause naming the PDB
    assert status == 429, body
    assert (body["reason"], body["code"], body["message"]) == (
        "TooManyRequests", 429, "Cannot evict pod as it would violate the pod's disruption budget.")
    assert body["details"]["causes"] == [{"reason": "DisruptionBudget",
                                          "message": "The disruption budget db-pdb needs 1 healthy pods and has 1 currently"}]
    # AND the product reads it as a temporary refusal that quotes Kubernetes' words
    assert refused.value.status == 429
    assert "disruption budget db-pdb needs 1 healthy pods" in str(refused.value)


def test_eviction_of_a_missing_pod_is_not_found(real_cluster: RealCluster, app_kube):
    with pytest.raises(NotFound, match="404"):
        app_kube.evict(real_cluster.namespace, "no-such-pod")
    with pytest.raises(NotFound, match='pods "no-such-pod" not found'):
        app_kube.get_pod(real_cluster.namespace, "no-such-pod")


def test_a_match_expressions_pdb_blocks_a_real_eviction_and_preflight_and_diagnosis_name_the_pod(
        real_cluster: RealCluster, app_kube):
    # GIVEN a pod whose only PDB selects it by matchExpressions (no matchLabels at all)
    real_cluster.add_nodes(1)
    real_cluster.deployment("ledger", 1, labels={"tier": "critical"})
    real_cluster.pdb("critical", {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["critical"]}]},
                     min_available=1, expected_allowed=0)
    (pod,) = real_cluster.pods("app=ledger")
    name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
    # WHEN the real API server is asked to evict it THEN the PDB refuses (429)
    with pytest.raises(TemporaryError, match="disruption budget critical"):
        app_kube.evict(real_cluster.namespace, name)
    # AND the preflight of the pool names that pod as undrainable, with its PDB
    snapshot = read_snapshot(app_kube, None, CLUSTER)
    report = preflight(snapshot, PlannedUpgrade(pool=real_cluster.pool, target_version="1.35.0"))
    pod_key, pdb_key = f"{real_cluster.namespace}/{name}", f"{real_cluster.namespace}/critical"
    assert [(b.pod, b.pdb) for b in report.blocked_now] == [(pod_key, pdb_key)], report.to_public()
    assert [(n.node, [b.pod for b in n.blockers]) for n in report.undrainable_nodes] == [(node, [pod_key])]
    # AND the diagnosis of the cordoned node names the pod as the blocker, with the PDB
    app_kube.set_unschedulable(node, True)
    finding = diagnose_node(CLUSTER, app_kube.get_node(node), app_kube.list_pods(node=node), app_kube.list_pdbs())
    assert [(b.pod, b.pdb) for b in finding.blockers] == [(pod_key, pdb_key)], finding


def test_drain_is_blocked_by_the_pdb_then_completes_once_relaxed_and_the_budget_is_restored_exactly(
        real_cluster: RealCluster, app_kube):
    # GIVEN web (2 pods) and db (1 pod, PDB minAvailable 1) on one node; a second node has room
    (first,) = real_cluster.add_nodes(1)
    real_cluster.deployment("web", 2)
    real_cluster.deployment("db", 1)
    real_cluster.pdb("db-pdb", {"matchLabels": {"app": "db"}}, min_available=1, expected_allowed=0)
    real_cluster.add_nodes(1)
    (db,) = real_cluster.pods("app=db")
    # WHEN one drain pass runs THEN web is evicted and db is blocked by its PDB
    progress = drain_node_step(app_kube, first, IGNORE_DS)
    assert progress.status is DrainStatus.BLOCKED
    (blocked,) = progress.blocked
    assert (blocked.name, blocked.pdb) == (db["metadata"]["name"], f"{real_cluster.namespace}/db-pdb")
    # WHEN the remediation relaxes the PDB (maxUnavailable 1 instead of minAvailable)
    original = app_kube.get_pdb_manifest(real_cluster.namespace, "db-pdb").spec
    app_kube.patch_pdb_spec(real_cluster.namespace, "db-pdb", relaxed_spec(original, 1))
    real_cluster.wait_pdb("db-pdb", 1)
    # THEN the drain completes: the node keeps no application pod and db runs on the other node
    result = drain_node(app_kube, first, IGNORE_DS)
    assert result.status is DrainStatus.DRAINED, result.summary()
    assert app_kube.list_pods(node=first) == []
    (new_db,) = real_cluster.wait_ready("app=db", 1)
    assert new_db["metadata"]["uid"] != db["metadata"]["uid"] and new_db["spec"]["nodeName"] != first
    # WHEN the original budget is restored THEN the stored spec is exactly the original again
    app_kube.patch_pdb_spec(real_cluster.namespace, "db-pdb", original)
    restored = app_kube.get_pdb_manifest(real_cluster.namespace, "db-pdb").spec
    assert restored == original and "maxUnavailable" not in restored
    assert real_cluster.wait_pdb("db-pdb", 0)["desiredHealthy"] == 1


def test_a_drain_racing_the_disruption_controller_ends_drained_without_breaking_the_budget(
        real_cluster: RealCluster, app_kube):
    # GIVEN five replicas on a cordoned node with no room elsewhere yet, under maxUnavailable 1
    (first,) = real_cluster.add_nodes(1)
    real_cluster.deployment("api", 5)
    real_cluster.pdb("api-pdb", {"matchLabels": {"app": "api"}}, max_unavailable=1, expected_allowed=1)
    app_kube.set_unschedulable(first, True)
    # WHEN every eviction of the node is sent at once
    names = [p["metadata"]["name"] for p in real_cluster.pods("app=api")]
    with ThreadPoolExecutor(len(names)) as pool:
        outcomes = list(pool.map(lambda n: _evict_status(app_kube, real_cluster.namespace, n), names))
    # THEN the API server admits one against the status the controller last wrote and refuses the
    # rest with 429: the replacement cannot run anywhere, so the budget does not recover
    assert sorted(outcomes) == ["429", "429", "429", "429", "evicted"], outcomes
    status = real_cluster.wait_pdb("api-pdb", 0)
    assert (status["currentHealthy"], status["desiredHealthy"]) == (4, 4)
    # WHEN room appears and the product's drain runs, retrying the 429s as the controller recounts
    real_cluster.add_nodes(1)
    result = drain_node(app_kube, first, IGNORE_DS)
    # THEN the node is drained and all five replicas run on the new node
    assert result.status is DrainStatus.DRAINED, result.summary()
    assert {p["spec"]["nodeName"] for p in real_cluster.wait_ready("app=api", 5)} == {real_cluster.nodes[1]}


def _evict_status(kube, namespace: str, name: str) -> str:
    try:
        kube.evict(namespace, name)
        return "evicted"
    except TemporaryError as error:
        return str(error.status)


def test_delete_pod_remediation_removes_the_pod_and_its_replicaset_replaces_it(real_cluster: RealCluster, app_kube):
    real_cluster.add_nodes(1)
    real_cluster.deployment("db", 1)
    (pod,) = app_kube.list_pods(namespace=real_cluster.namespace, label_selector="app=db")
    app_kube.delete_pod(pod.namespace, pod.name, grace_seconds=0)
    wait_for(lambda: pod.name not in _pod_names(app_kube.list_pods(namespace=real_cluster.namespace)),
             "the deleted pod to go")
    (replacement,) = real_cluster.wait_ready("app=db", 1)
    assert replacement["metadata"]["uid"] != pod.uid


def test_a_pdb_write_at_a_stale_resource_version_is_a_real_conflict(real_cluster: RealCluster, app_kube):
    # GIVEN the product read a PDB, then its owners changed it
    real_cluster.pdb("db-pdb", {"matchLabels": {"app": "db"}}, min_available=1)
    read = app_kube.get_pdb_manifest(real_cluster.namespace, "db-pdb")
    path = f"/apis/policy/v1/namespaces/{real_cluster.namespace}/poddisruptionbudgets/db-pdb"
    stale = real_cluster.get(path)
    real_cluster.cp.request("PATCH", path, {"spec": {"minAvailable": 2}}, content_type="application/merge-patch+json")
    # WHEN the product writes conditionally on what it read
    with pytest.raises(Conflict, match="409") as refused:
        app_kube.patch_pdb_spec(real_cluster.namespace, "db-pdb", relaxed_spec(read.spec, 1),
                                resource_version=read.resource_version)
    # THEN the API server refused it (409, the object has been modified) and the owners' edit stands
    assert "the object has been modified" in str(refused.value)
    assert app_kube.get_pdb_manifest(real_cluster.namespace, "db-pdb").spec["minAvailable"] == 2
    # AND a PUT at the stale resourceVersion gets the same Status, reason Conflict
    status, body = real_cluster.cp.request("PUT", path, stale)
    assert (status, body["reason"], body["details"]["kind"]) == (409, "Conflict", "poddisruptionbudgets"), body


def test_a_json_patch_with_a_failing_test_op_is_refused(real_cluster: RealCluster):
    (node,) = real_cluster.add_nodes(1)
    path = f"/api/v1/nodes/{node}"
    ops = [{"op": "test", "path": "/spec/unschedulable", "value": True},
           {"op": "replace", "path": "/spec/unschedulable", "value": False}]
    status, body = real_cluster.cp.request("PATCH", path, ops, content_type="application/json-patch+json")
    assert status == 422 and body["reason"] == "Invalid", body
    ops = [{"op": "add", "path": "/metadata/labels/patched", "value": "json"}]
    status, body = real_cluster.cp.request("PATCH", path, ops, content_type="application/json-patch+json")
    assert status == 200 and body["metadata"]["labels"]["patched"] == "json"


def test_workloads_and_events_are_read(real_cluster: RealCluster, app_kube):
    real_cluster.add_nodes(1)
    real_cluster.deployment("web", 2)
    # the deployment controller writes readyReplicas some time after the pods became Ready
    wait_for(lambda: [(w.kind, w.name, w.desired, w.ready)
                      for w in app_kube.list_workloads(namespace=real_cluster.namespace)]
             == [("Deployment", "web", 2, 2)], "the product to read Deployment web as 2 of 2 ready")
    events = app_kube.list_events(reasons=("ScalingReplicaSet",))
    assert any(e["object"]["name"] == "web" and e["object"]["namespace"] == real_cluster.namespace for e in events)


# ---- scale-out: an HPA's bounds and a StatefulSet's ordinals --------------------------------------------


def test_an_hpa_raised_minimum_scales_its_target_without_metrics_and_its_restore_is_conditional(
        real_cluster: RealCluster, app_kube):
    # GIVEN web (2 replicas) scaled by an HPA (2..4) on cpu, and no metrics server in the cluster
    real_cluster.add_nodes(2)
    real_cluster.deployment("web", 2)
    real_cluster.create({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                         "metadata": {"name": "web-hpa"},
                         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                                  "minReplicas": 2, "maxReplicas": 4}})
    ns = real_cluster.namespace
    hpa = app_kube.get_autoscaler(ns, "web-hpa")
    original = [hpa.min_replicas, hpa.max_replicas]
    raised = list(raised_bounds(*original, app_kube.get_scale("Deployment", ns, "web").replicas, 1))
    assert raised == [3, 4]
    # WHEN the product raises its minimum, conditionally on what it read
    app_kube.patch_autoscaler_bounds(ns, "web-hpa", *raised, resource_version=hpa.resource_version)
    # THEN the real HPA controller scales web to the new minimum though it can read no metrics
    real_cluster.wait_ready("app=web", 3)
    status = wait_for(lambda: next((c for c in real_cluster.get(
        f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/web-hpa").get("status", {}).get(
        "conditions", []) if c["type"] == "ScalingActive" and c["status"] == "False"), None),
        "the HPA to report it cannot read metrics")
    assert status["reason"] == "FailedGetResourceMetric", status
    # AND a restore at a stale version is a real 409; at the version read it puts both bounds back
    with pytest.raises(Conflict, match="409"):
        app_kube.patch_autoscaler_bounds(ns, "web-hpa", *original, resource_version=hpa.resource_version)
    current = app_kube.get_autoscaler(ns, "web-hpa")
    assert restore_action(original, raised, [current.min_replicas, current.max_replicas]) is ScaleRestore.RESTORE
    back = app_kube.patch_autoscaler_bounds(ns, "web-hpa", *original, resource_version=current.resource_version)
    assert [back.min_replicas, back.max_replicas] == original


def test_a_statefulset_scale_out_adds_and_removes_its_highest_ordinal(real_cluster: RealCluster, app_kube):
    # GIVEN StatefulSet db (2 replicas, OrderedReady; no claim templates: nothing provisions volumes here)
    real_cluster.add_nodes(2)
    real_cluster.create({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                         "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                                  "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                                      "nodeSelector": {"kubernetes.azure.com/agentpool": real_cluster.pool},
                                      "terminationGracePeriodSeconds": 0,
                                      "containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}})
    real_cluster.wait_ready("app=db", 2)
    ns = real_cluster.namespace

    def settled():
        found = [w for w in app_kube.list_workloads(namespace=ns) if w.kind == "StatefulSet"]
        return found and found[0].statefulset.observed_generation == found[0].statefulset.generation and found[0]

    db = wait_for(settled, "the StatefulSet controller to observe db")
    assert statefulset_refusal("db", db.statefulset) is None and db.statefulset.when_scaled == "Retain"
    # WHEN the product raises it by one THEN the new pod is the next ordinal
    scale = app_kube.get_scale("StatefulSet", ns, "db")
    app_kube.replace_scale("StatefulSet", ns, "db", 3, resource_version=scale.resource_version)
    assert {p["metadata"]["name"] for p in real_cluster.wait_ready("app=db", 3)} == {"db-0", "db-1", "db-2"}
    # AND an evicted pod comes back under its own name
    uid = app_kube.get_pod(ns, "db-0").uid
    app_kube.evict(ns, "db-0")
    wait_for(lambda: any(p["metadata"]["name"] == "db-0" and p["metadata"]["uid"] != uid
                         for p in real_cluster.ready_pods("app=db")), "db-0 back as a new pod")
    # AND scaled back, the highest ordinal (the one added) is the one removed
    scale = app_kube.get_scale("StatefulSet", ns, "db")
    app_kube.replace_scale("StatefulSet", ns, "db", 2, resource_version=scale.resource_version)
    wait_for(lambda: sorted(p["metadata"]["name"] for p in real_cluster.pods("app=db")) == ["db-0", "db-1"],
             "db back to ordinals 0 and 1")
    # AND a rollout held by a partition shows as a pending revision: scale-out would refuse it
    real_cluster.cp.request("PATCH", f"/apis/apps/v1/namespaces/{ns}/statefulsets/db", {"spec": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
        "template": {"metadata": {"annotations": {"rollout": "2"}}}}}, content_type="application/merge-patch+json")
    pending = wait_for(lambda: (w := settled()) and w.statefulset.update_revision != w.statefulset.current_revision
                       and w, "the StatefulSet controller to record the update revision")
    assert "is mid-update" in statefulset_refusal("db", pending.statefulset)
