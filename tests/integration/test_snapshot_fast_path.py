"""The snapshot's fast path (raw JSON pages decoded by msgspec into the fields the product reads)
against the kubernetes client's own model objects for the same cluster: the same nodes, pods and
PDBs, on the seed scenarios and on a generated 1,000-node cluster.

The model-object path below is the reference: the client's generated ``V1Node``/``V1Pod``
deserialisation (no ``_preload_content=False``, no paging), mapped into the domain's types by
hand from the models' own attributes. PDBs keep their spec as the API spells it (the model
serialised back to JSON), so a selector's matchExpressions, ``{}`` and an absent selector reach
the domain exactly as the API server sent them.
"""

from __future__ import annotations

import gc

import pytest
from kubernetes import client as k8s

from sandbox.aks_emulator.scenarios import SCENARIOS, ClusterBuilder
from upgrade.adapters.kube import (
    MIRROR_ANNOTATION,
    UNSCHEDULABLE_TAINT,
    KubernetesKube,
    api_client_from_kubeconfig,
    pdb_from_json,
)
from upgrade.domain.model import AGENTPOOL_LABEL, ClusterRef, Node, Pdb, Pod, product_annotations
from upgrade.domain.versions import normalize_version
from upgrade.services.snapshot import read_snapshot

pytestmark = pytest.mark.integration


def _cpu_millis(quantity: str | None) -> int:
    if not quantity:
        return 0
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def node_from_model(node: k8s.V1Node) -> Node:
    labels = node.metadata.labels or {}
    taints = node.spec.taints or []
    cordon = next((t for t in taints if t.key == UNSCHEDULABLE_TAINT), None)
    return Node(
        name=node.metadata.name,
        pool=labels.get(AGENTPOOL_LABEL) or labels.get("agentpool", ""),
        kubernetes_version=normalize_version(node.status.node_info.kubelet_version),
        unschedulable=bool(node.spec.unschedulable),
        ready=any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []),
        labels=tuple(sorted(labels.items())),
        taints=tuple(f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}" for t in taints),
        created_at=node.metadata.creation_timestamp,
        cordoned_at=cordon.time_added if cordon else None,
        allocatable_cpu_millis=_cpu_millis((node.status.allocatable or {}).get("cpu")),
        annotations=product_annotations(node.metadata.annotations),
    )


def pod_from_model(pod: k8s.V1Pod) -> Pod:
    owners = pod.metadata.owner_references or []
    # only the controller makes a pod managed (kubectl's GetControllerOf)
    owner = next((o for o in owners if o.controller), None)
    statuses = pod.status.container_statuses or []
    return Pod(
        namespace=pod.metadata.namespace,
        name=pod.metadata.name,
        uid=pod.metadata.uid,
        node=pod.spec.node_name,
        phase=pod.status.phase,
        ready=any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []),
        labels=tuple(sorted((pod.metadata.labels or {}).items())),
        owner_kind=owner.kind if owner else None,
        owner_name=owner.name if owner else None,
        deleting=pod.metadata.deletion_timestamp is not None,
        mirror=MIRROR_ANNOTATION in (pod.metadata.annotations or {}),
        empty_dir=any(v.empty_dir is not None for v in pod.spec.volumes or []),
        restart_count=sum(s.restart_count for s in statuses),
        crash_looping=any(s.state and s.state.waiting and s.state.waiting.reason == "CrashLoopBackOff"
                          for s in statuses),
        grace_seconds=pod.spec.termination_grace_period_seconds,
        cpu_request_millis=sum(_cpu_millis((c.resources.requests or {}).get("cpu"))
                               for c in pod.spec.containers or [] if c.resources),
        annotations=product_annotations(pod.metadata.annotations or {}),
    )


def model_path(api_client: k8s.ApiClient) -> tuple[tuple[Node, ...], tuple[Pod, ...], tuple[Pdb, ...]]:
    core, policy = k8s.CoreV1Api(api_client), k8s.PolicyV1Api(api_client)
    nodes = sorted((node_from_model(n) for n in core.list_node().items), key=lambda n: n.name)
    pods = [pod_from_model(p) for p in core.list_pod_for_all_namespaces().items]
    pdbs = [pdb_from_json(api_client.sanitize_for_serialization(b))
            for b in policy.list_pod_disruption_budget_for_all_namespaces().items]
    return tuple(nodes), tuple(pods), tuple(pdbs)


def with_selector_variety(builder: ClusterBuilder) -> ClusterBuilder:
    """PDBs whose selectors are not plain matchLabels: matchExpressions (with and without
    matchLabels), an empty selector (every pod of the namespace) and none at all (no pod)."""
    builder.deployment("shop", "web", replicas=3, labels={"tier": "front"})
    builder.deployment("shop", "api", replicas=2, labels={"tier": "back"}, empty_dir=True, grace_seconds=90)
    return builder


def add_selector_pdbs(kube) -> None:
    kube.add_pdb("shop", "front-or-back", selector={"matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["front", "back"]}]}, max_unavailable=1)
    kube.add_pdb("shop", "not-api", selector={"matchLabels": {"tier": "back"}, "matchExpressions": [
        {"key": "app", "operator": "NotIn", "values": ["web"]},
        {"key": "tier", "operator": "Exists"}]}, min_available="50%")
    kube.add_pdb("shop", "everything", selector={}, max_unavailable="10%")
    kube.create_pdb({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                     "metadata": {"name": "nothing", "namespace": "shop"}, "spec": {"minAvailable": 1}})


def assert_same_snapshot(emulated, emu, tmp_path, *, page_size: int) -> tuple[Node, ...]:
    path = tmp_path / "kubeconfig"
    emu.write_kubeconfig(emulated.arm_id, path)
    api_client = api_client_from_kubeconfig(str(path))
    fast = KubernetesKube(api_client_from_kubeconfig(str(path)), page_size=page_size)
    try:
        snapshot = read_snapshot(fast, None, ClusterRef.parse(emulated.arm_id))
        nodes, pods, pdbs = model_path(api_client)
    finally:
        fast.close()
        api_client.close()
    assert snapshot.nodes == nodes
    assert snapshot.pods == pods
    assert snapshot.pdbs == pdbs
    return snapshot


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_seed_scenarios_read_the_same_through_both_paths(emulator, tmp_path, scenario):
    # GIVEN a seed cluster with PDBs of every selector shape, one node cordoned and one pod terminating
    emu = emulator(with_selector_variety(SCENARIOS[scenario]()))
    (emulated,) = emu.clusters()
    add_selector_pdbs(emulated.kube)
    first = emulated.kube.nodes()[1]["metadata"]["name"]
    emulated.kube.set_unschedulable(first, True)
    api = emulated.kube.pods_on_node(first)[0]["metadata"]
    emulated.kube.delete_pod(api["namespace"], api["name"], grace_seconds=86_400)
    # WHEN the snapshot is read through the fast path in pages of 3, and through the models
    snapshot = assert_same_snapshot(emulated, emu, tmp_path, page_size=3)
    # THEN (asserted inside) both agree, and the variety did reach the snapshot
    assert any(p.deleting for p in snapshot.pods) and any(n.unschedulable for n in snapshot.nodes)
    assert any(p.empty_dir and p.grace_seconds == 90 for p in snapshot.pods)
    # AND each selector shape selects what Kubernetes would: matchExpressions In, NotIn and Exists
    # with matchLabels, an empty selector every pod of the namespace, an absent one none
    pdbs = {b.name: b for b in snapshot.pdbs}
    shop = [p for p in snapshot.pods if p.namespace == "shop"]

    def apps_selected(name: str) -> list[str]:
        return sorted(dict(p.labels)["app"] for p in shop if pdbs[name].selects(p))

    every_app = sorted(dict(p.labels)["app"] for p in shop)
    assert every_app == ["api", "api", "web", "web", "web"]
    assert apps_selected("front-or-back") == every_app
    assert apps_selected("not-api") == ["api", "api"]
    assert apps_selected("everything") == every_app
    assert apps_selected("nothing") == []


def test_a_generated_thousand_node_cluster_reads_the_same_through_both_paths(emulator, tmp_path):
    # GIVEN 1,000 nodes in two pools, a DaemonSet, 60 Deployments of 40 pods (some with emptyDir
    # or a long grace), loose pods, a crash-looping Deployment and PDBs of every selector shape
    builder = (ClusterBuilder("aks-generated").pool("system", count=10, mode="System")
               .pool("work", count=990).daemonset("kube-system", "kube-proxy"))
    for d in range(60):
        builder.deployment(f"ns-{d % 7}", f"app-{d}", replicas=40, pool="work", empty_dir=d % 5 == 0,
                           grace_seconds=30 + d, labels={"tier": ("front", "back", "batch")[d % 3]})
        builder.pdb(f"ns-{d % 7}", f"app-{d}-pdb", app=f"app-{d}", min_available=d % 40)
    for i in range(20):
        builder.pod("loose", f"pod-{i}", on=("work", i * 37), owner_kind=(None, "Job", "StatefulSet")[i % 3])
    # (An emulated minute lasts a real hour, so no crash-looping pod restarts between the reads.)
    emu = emulator(with_selector_variety(builder), time_scale=3600.0)
    (emulated,) = emu.clusters()
    add_selector_pdbs(emulated.kube)
    emulated.kube.set_crashloop("ns-1", "app-1", {"work"})
    # WHEN the snapshot is read through the fast path (pages of 500) and through the models
    snapshot = assert_same_snapshot(emulated, emu, tmp_path, page_size=500)
    # THEN (asserted inside) both agree, over several pages of nodes and pods
    assert len(snapshot.nodes) == 1000 and len(snapshot.pods) > 3000 and len(snapshot.pdbs) == 64
    assert any(p.crash_looping for p in snapshot.pods)


def test_the_collector_is_paused_only_while_pods_are_read(emulator, tmp_path):
    # GIVEN a cluster, and a kube whose pod pages report whether the collector runs meanwhile
    emu = emulator(SCENARIOS["seed-rolling"]())
    (emulated,) = emu.clusters()
    path = tmp_path / "kubeconfig"
    emu.write_kubeconfig(emulated.arm_id, path)
    kube = KubernetesKube(api_client_from_kubeconfig(str(path)), page_size=2)
    seen = []
    pages = kube._pages

    def watched(*args, **kwargs):
        for page in pages(*args, **kwargs):
            seen.append(gc.isenabled())
            yield page

    kube._pages = watched
    try:
        # WHEN pods are read with the collector on, then with it off
        assert gc.isenabled()
        kube.list_pods()
        after_on = gc.isenabled()
        gc.disable()
        try:
            kube.list_pods()
            after_off = gc.isenabled()
        finally:
            gc.enable()
    finally:
        kube.close()
    # THEN it was paused during the reads only, and left as it was found
    assert seen and not any(seen)
    assert after_on is True and after_off is False
