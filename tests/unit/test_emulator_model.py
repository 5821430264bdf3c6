"""The emulator's in-memory Kubernetes model: scheduling, controllers, evictions, PDBs, indexes."""

from __future__ import annotations

import time

import pytest

from sandbox.aks_emulator.clock import ScaledClock
from sandbox.aks_emulator.kube import (
    EVICTION_BLOCKED_MESSAGE,
    Conflict,
    DisruptionBlocked,
    EvictionNotSupported,
    Invalid,
    KubeCluster,
    LabelRequirement,
    PodNotFound,
    labels_match,
    parse_label_selector,
)

POOL = "nodepool1"


def node_name(index: int, pool: str = POOL) -> str:
    return f"aks-{pool}-12345678-vmss{index:06d}"


@pytest.fixture
def clock() -> ScaledClock:
    # Real-time pace: emulated time only moves when a test advances it (or a few real ms pass).
    return ScaledClock(60.0)


@pytest.fixture
def cluster(clock: ScaledClock) -> KubeCluster:
    """GIVEN three Ready nodes in one pool and a DaemonSet on every node."""
    kube = KubeCluster(clock, "cluster1")
    for index in range(3):
        kube.add_node(node_name(index), pool=POOL, kubernetes_version="1.30.0")
    kube.add_daemonset("kube-system", "kube-proxy")
    return kube


def app_pods(kube: KubeCluster, app: str) -> list[dict]:
    return [p for p in kube.pods() if p["metadata"]["labels"].get("app") == app]


def live(pods: list[dict]) -> list[dict]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


# ---------------------------------------------------------------------------------------------- clock


def test_scaled_clock_maps_aks_minutes_to_real_seconds():
    clock = ScaledClock(0.05)
    assert clock.real_seconds(30 * 60) == pytest.approx(1.5)
    before = clock.now()
    time.sleep(0.05)
    elapsed = (clock.now() - before).total_seconds()
    assert elapsed >= 60  # 0.05 real seconds = one emulated minute at this scale


def test_clock_advance_moves_emulated_time_forward_only():
    clock = ScaledClock(60.0)
    before = clock.now()
    clock.advance(600)
    assert (clock.now() - before).total_seconds() >= 600
    with pytest.raises(ValueError):
        clock.advance(-1)


# ---------------------------------------------------------------------------------------------- nodes


def test_nodes_carry_aks_labels_version_and_capacity(cluster: KubeCluster):
    node = cluster.get_node(node_name(0))
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.azure.com/agentpool"] == POOL
    assert labels["agentpool"] == POOL
    assert labels["kubernetes.azure.com/mode"] == "user"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/hostname"] == node_name(0)
    assert labels["node.kubernetes.io/instance-type"] == "Standard_D4s_v5"
    assert labels["kubernetes.azure.com/node-image-version"].startswith("AKSUbuntu-")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.30.0"
    assert node["status"]["capacity"]["pods"] == "110"
    assert node["status"]["capacity"]["cpu"] == "4"
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def test_zoned_node_gets_zone_label(cluster: KubeCluster):
    cluster.add_node("aks-zoned-1-vmss000000", pool="zoned", kubernetes_version="1.30.0", zone="eastus-2")
    assert cluster.get_node("aks-zoned-1-vmss000000")["metadata"]["labels"]["topology.kubernetes.io/zone"] == \
        "eastus-2"


def test_cordon_sets_spec_taint_index_and_event(cluster: KubeCluster):
    # WHEN a node is cordoned
    cluster.set_unschedulable(node_name(1), True)
    # THEN it is unschedulable, tainted like Kubernetes does, indexed, and a kubelet event says so
    node = cluster.get_node(node_name(1))
    assert node["spec"]["unschedulable"] is True
    assert {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}.items() <= node["spec"]["taints"][0].items()
    assert [n["metadata"]["name"] for n in cluster.unschedulable_nodes()] == [node_name(1)]
    assert [e["involvedObject"]["name"] for e in cluster.events(reason="NodeNotSchedulable")] == [node_name(1)]
    # WHEN it is uncordoned THEN the field and the taint are gone
    cluster.set_unschedulable(node_name(1), False)
    node = cluster.get_node(node_name(1))
    assert "unschedulable" not in node["spec"] and "taints" not in node["spec"]
    assert cluster.unschedulable_nodes() == []


def test_every_change_bumps_the_resource_version(cluster: KubeCluster):
    before = cluster.resource_version
    old = cluster.get_node(node_name(0))
    cluster.set_node_label(node_name(0), "kubernetes.azure.com/upgrade-status", "Quarantined")
    new = cluster.get_node(node_name(0))
    assert cluster.resource_version > before
    assert int(new["metadata"]["resourceVersion"]) > int(old["metadata"]["resourceVersion"])
    # stored objects are snapshots: the dict handed out earlier did not change
    assert "kubernetes.azure.com/upgrade-status" not in old["metadata"]["labels"]
    cluster.set_node_label(node_name(0), "kubernetes.azure.com/upgrade-status", None)
    assert "kubernetes.azure.com/upgrade-status" not in cluster.get_node(node_name(0))["metadata"]["labels"]


def test_node_version_and_image_change(cluster: KubeCluster):
    cluster.set_node_version(node_name(0), "1.31.2")
    cluster.set_node_image(node_name(0), "AKSUbuntu-2204gen2containerd-202612.01.0")
    node = cluster.get_node(node_name(0))
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.31.2"
    assert node["metadata"]["labels"]["kubernetes.azure.com/node-image-version"] == \
        "AKSUbuntu-2204gen2containerd-202612.01.0"


def test_invalid_label_is_rejected(cluster: KubeCluster):
    with pytest.raises(Invalid):
        cluster.set_node_label(node_name(0), "bad key!", "x")


# ---------------------------------------------------------------------------------------------- workloads


def test_deployment_pods_are_owned_by_a_replicaset_and_placed_as_pinned(cluster: KubeCluster):
    cluster.add_deployment("default", "a", replicas=2, place_on=[node_name(0), node_name(2)], empty_dir=True)
    pods = app_pods(cluster, "a")
    assert sorted(p["spec"]["nodeName"] for p in pods) == [node_name(0), node_name(2)]
    for pod in pods:
        owner = pod["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "ReplicaSet" and owner["controller"] is True
        assert {"name": "scratch", "emptyDir": {}} in pod["spec"]["volumes"]
        assert pod["status"]["phase"] == "Running"
    replicaset = cluster.get_object("replicasets", "default", pods[0]["metadata"]["ownerReferences"][0]["name"])
    assert replicaset["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert replicaset["status"]["readyReplicas"] == 2


def test_daemonset_runs_one_pod_on_every_node_now_and_later(cluster: KubeCluster):
    # GIVEN a cordoned node (DaemonSet pods still run there)
    cluster.set_unschedulable(node_name(0), True)
    # WHEN a node joins
    cluster.add_node(node_name(3), pool=POOL, kubernetes_version="1.30.0")
    # THEN every node runs exactly one kube-proxy pod
    for index in range(4):
        assert len([p for p in cluster.pods_on_node(node_name(index))
                    if p["metadata"]["labels"]["app"] == "kube-proxy"]) == 1
    # WHEN a node is removed THEN its DaemonSet pod goes with it
    cluster.remove_node(node_name(3))
    assert len(app_pods(cluster, "kube-proxy")) == 3


def test_deleted_daemonset_pod_is_replaced_on_the_same_node(cluster: KubeCluster):
    pod = cluster.pods_on_node(node_name(1))[0]
    cluster.delete_pod("kube-system", pod["metadata"]["name"], grace_seconds=0)
    replacement = [p for p in cluster.pods_on_node(node_name(1)) if p["metadata"]["labels"]["app"] == "kube-proxy"]
    assert len(replacement) == 1 and replacement[0]["metadata"]["name"] != pod["metadata"]["name"]


@pytest.mark.parametrize(
    ("case", "prepare", "deployment_options", "expected_nodes"),
    [
        ("cordoned nodes are skipped", lambda k: k.set_unschedulable(node_name(1), True), {}, {node_name(2)}),
        ("nodeSelector on the agentpool label", lambda k: k.add_node(
            node_name(0, "userpool"), pool="userpool", kubernetes_version="1.30.0"),
         {"node_selector": {"agentpool": "userpool"}}, {node_name(0, "userpool")}),
        ("untolerated NoSchedule taint", lambda k: k.replace_node(node_name(1), {
            **k.get_node(node_name(1)), "spec": {"taints": [{"key": "dedicated", "value": "gpu",
                                                             "effect": "NoSchedule"}]}}), {}, {node_name(2)}),
        ("tolerated taint", lambda k: k.replace_node(node_name(1), {
            **k.get_node(node_name(1)), "spec": {"taints": [{"key": "dedicated", "value": "gpu",
                                                             "effect": "NoSchedule"}]}}),
         {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]},
         {node_name(1), node_name(2)}),
        ("not-ready nodes are skipped", lambda k: k.set_node_ready(node_name(2), False), {}, {node_name(1)}),
    ],
)
def test_evicted_replicaset_pod_is_recreated_where_the_scheduler_allows(
        cluster: KubeCluster, clock: ScaledClock, case, prepare, deployment_options, expected_nodes):
    # GIVEN a deployment whose two pods run on node 0 and a scheduling constraint
    cluster.add_deployment("default", "web", replicas=2, place_on=[node_name(0), node_name(0)],
                           **deployment_options)
    prepare(cluster)
    cluster.set_unschedulable(node_name(0), True)
    # WHEN both pods are evicted and their grace period passes
    for pod in app_pods(cluster, "web"):
        cluster.evict("default", pod["metadata"]["name"])
    clock.advance(31)
    cluster.tick()
    # THEN two new pods run, only on nodes the constraints allow
    pods = app_pods(cluster, "web")
    assert len(pods) == 2, case
    assert all(p["status"]["phase"] == "Running" for p in pods), case
    assert {p["spec"]["nodeName"] for p in pods} <= expected_nodes, case


def test_scheduler_spreads_to_the_least_loaded_node(cluster: KubeCluster):
    cluster.add_deployment("default", "busy", replicas=4, place_on=[node_name(1)] * 4)
    cluster.add_deployment("default", "new", replicas=2)
    assert {p["spec"]["nodeName"] for p in app_pods(cluster, "new")} == {node_name(0), node_name(2)}


def test_pod_stays_pending_without_room_and_the_scheduler_says_why(clock: ScaledClock):
    kube = KubeCluster(clock, "tiny")
    kube.add_node(node_name(0), pool=POOL, kubernetes_version="1.30.0", max_pods=1)
    # WHEN two replicas need one slot each on a one-slot node
    kube.add_deployment("default", "web", replicas=2)
    # THEN one runs and one is Pending, Unschedulable, with a FailedScheduling event
    pending = kube.pending_pods()
    assert len(pending) == 1
    condition = pending[0]["status"]["conditions"][0]
    assert condition["reason"] == "Unschedulable"
    assert condition["message"] == "0/1 nodes are available: 1 Too many pods."
    assert kube.events(reason="FailedScheduling")
    # WHEN room appears THEN it gets scheduled
    kube.add_node(node_name(1), pool=POOL, kubernetes_version="1.30.0")
    assert kube.pending_pods() == []


def test_cpu_capacity_limits_placement(clock: ScaledClock):
    kube = KubeCluster(clock, "cpu")
    kube.add_node(node_name(0), pool=POOL, kubernetes_version="1.30.0", vm_size="Standard_D2s_v5")
    kube.add_deployment("default", "big", replicas=2, cpu_millis=1500)
    assert len(kube.pending_pods()) == 1  # 2 cores minus the system reserve fit one 1.5-core pod


def test_unmanaged_pod_is_not_recreated(cluster: KubeCluster, clock: ScaledClock):
    cluster.add_pod("default", "standalone", node=node_name(0))
    cluster.evict("default", "standalone")
    clock.advance(31)
    cluster.tick()
    assert cluster.get_pod("default", "standalone") is None
    assert app_pods(cluster, "standalone") == []


def test_terminating_pod_is_kept_for_its_grace_period(cluster: KubeCluster, clock: ScaledClock):
    cluster.add_deployment("default", "web", replicas=1, place_on=[node_name(0)], grace_seconds=120)
    name = app_pods(cluster, "web")[0]["metadata"]["name"]
    # WHEN evicted
    cluster.evict("default", name)
    # THEN it is Terminating with a deletionTimestamp, and a replacement already runs elsewhere
    pod = cluster.get_pod("default", name)
    assert pod["metadata"]["deletionTimestamp"] and pod["metadata"]["deletionGracePeriodSeconds"] == 120
    assert len(live(app_pods(cluster, "web"))) == 1
    clock.advance(60)
    cluster.tick()
    assert cluster.get_pod("default", name) is not None
    # WHEN the grace period has passed THEN it is gone
    clock.advance(61)
    cluster.tick()
    assert cluster.get_pod("default", name) is None


def test_delete_with_zero_grace_removes_at_once_and_missing_pods_raise(cluster: KubeCluster):
    cluster.add_pod("default", "p", node=node_name(0))
    cluster.delete_pod("default", "p", grace_seconds=0)
    assert cluster.get_pod("default", "p") is None
    with pytest.raises(PodNotFound):
        cluster.delete_pod("default", "p")
    with pytest.raises(PodNotFound):
        cluster.evict("default", "p")


def test_removing_a_node_reschedules_its_replicaset_pods(cluster: KubeCluster):
    cluster.add_deployment("default", "web", replicas=2, place_on=[node_name(0), node_name(0)])
    cluster.remove_node(node_name(0))
    pods = app_pods(cluster, "web")
    assert len(pods) == 2
    assert {p["spec"]["nodeName"] for p in pods} <= {node_name(1), node_name(2)}
    assert cluster.get_node(node_name(0)) is None
    assert cluster.pods_on_node(node_name(0)) == []


# ---------------------------------------------------------------------------------------------- PDBs


@pytest.mark.parametrize(
    ("budget", "replicas", "evictions_allowed"),
    [
        ({"min_available": 1}, 1, 0),
        ({"min_available": 1}, 2, 1),
        ({"min_available": "50%"}, 4, 2),
        ({"max_unavailable": 0}, 3, 0),
        ({"max_unavailable": 1}, 3, 1),
        ({"max_unavailable": "50%"}, 3, 2),
    ],
)
def test_pdb_allows_exactly_its_budget_of_evictions(cluster: KubeCluster, budget, replicas, evictions_allowed):
    # GIVEN a deployment spread over the nodes and a PDB over it
    cluster.add_deployment("default", "web", replicas=replicas)
    cluster.add_pdb("default", "web", selector={"app": "web"}, **budget)
    # WHEN its pods are evicted one by one (no time passes: evicted pods stay Terminating)
    evicted, blocked = 0, None
    for pod in list(live(app_pods(cluster, "web"))):
        try:
            cluster.evict("default", pod["metadata"]["name"])
            evicted += 1
        except DisruptionBlocked as error:
            blocked = error
            break
    # THEN exactly the budget went, and the next one is refused with Kubernetes' words
    assert evicted == evictions_allowed
    if evictions_allowed < replicas:
        assert blocked is not None
        assert blocked.message == EVICTION_BLOCKED_MESSAGE
        assert blocked.pdb == "default/web"
        assert blocked.cause.startswith("The disruption budget web needs ")


def test_pdb_status_is_kept_current(cluster: KubeCluster, clock: ScaledClock):
    cluster.add_deployment("default", "web", replicas=3)
    cluster.add_pdb("default", "web", selector={"app": "web"}, min_available=2)
    status = cluster.get_object("poddisruptionbudgets", "default", "web")["status"]
    assert (status["currentHealthy"], status["desiredHealthy"], status["expectedPods"],
            status["disruptionsAllowed"]) == (3, 2, 3, 1)
    # WHEN one pod is evicted THEN the budget is used up until its replacement is Ready
    cluster.evict("default", app_pods(cluster, "web")[0]["metadata"]["name"])
    status = cluster.get_object("poddisruptionbudgets", "default", "web")["status"]
    # (the evicted pod still counts as expected while it terminates; its replacement is starting)
    assert (status["currentHealthy"], status["expectedPods"], status["disruptionsAllowed"]) == (2, 4, 0)
    starting = [p for p in live(app_pods(cluster, "web")) if p["status"]["phase"] == "Pending"]
    assert starting[0]["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    clock.advance(31)
    cluster.tick()
    status = cluster.get_object("poddisruptionbudgets", "default", "web")["status"]
    assert (status["currentHealthy"], status["expectedPods"], status["disruptionsAllowed"]) == (3, 3, 1)
    assert status["conditions"][0]["type"] == "DisruptionAllowed"


def test_pdb_edit_unblocks_eviction(cluster: KubeCluster):
    cluster.add_deployment("default", "a", replicas=1, place_on=[node_name(0)])
    pdb = cluster.add_pdb("default", "a", selector={"app": "a"}, min_available=1)
    name = app_pods(cluster, "a")[0]["metadata"]["name"]
    with pytest.raises(DisruptionBlocked):
        cluster.evict("default", name)
    edited = {**pdb, "spec": {**pdb["spec"], "minAvailable": 0}}
    stored = cluster.replace_pdb("default", "a", edited)
    assert stored["metadata"]["generation"] == 2
    cluster.evict("default", name)
    assert cluster.get_pod("default", name)["metadata"]["deletionTimestamp"]


def test_pod_under_two_pdbs_cannot_be_evicted(cluster: KubeCluster):
    cluster.add_deployment("default", "a", replicas=2)
    cluster.add_pdb("default", "one", selector={"app": "a"}, max_unavailable=1)
    cluster.add_pdb("default", "two", selector={"matchLabels": {"app": "a"}}, max_unavailable=1)
    with pytest.raises(EvictionNotSupported):
        cluster.evict("default", app_pods(cluster, "a")[0]["metadata"]["name"])


def test_empty_selector_covers_the_namespace_and_an_absent_one_no_pod(cluster: KubeCluster):
    # GIVEN two deployments and a policy/v1 PDB with selector {} beside one without a selector
    cluster.add_deployment("default", "a", replicas=1)
    cluster.add_deployment("default", "b", replicas=1)
    cluster.add_pdb("default", "everything", selector={"matchLabels": {}}, max_unavailable=0)
    cluster.create_pdb({"metadata": {"name": "none", "namespace": "default"}, "spec": {"maxUnavailable": 0}})
    # THEN {} selects both pods and blocks their eviction; no selector selects nothing
    everything = cluster.get_object("poddisruptionbudgets", "default", "everything")["status"]
    none = cluster.get_object("poddisruptionbudgets", "default", "none")["status"]
    assert (everything["expectedPods"], none["expectedPods"]) == (2, 0)
    pod = app_pods(cluster, "b")[0]
    assert [p["metadata"]["name"] for p in cluster.pdbs_for_pod(pod)] == ["everything"]
    with pytest.raises(DisruptionBlocked):
        cluster.evict("default", pod["metadata"]["name"])


@pytest.mark.parametrize("spec", [{"min_available": 1, "max_unavailable": 1}, {"min_available": "x%"},
                                  {"max_unavailable": -1}])
def test_invalid_pdbs_are_rejected(cluster: KubeCluster, spec):
    with pytest.raises(Invalid):
        cluster.add_pdb("default", "bad", selector={"app": "a"}, **spec)


def test_duplicate_pdb_conflicts(cluster: KubeCluster):
    cluster.add_pdb("default", "p", selector={"app": "a"}, min_available=1)
    with pytest.raises(Conflict):
        cluster.add_pdb("default", "p", selector={"app": "a"}, min_available=1)


def test_crashlooping_pods_are_not_ready_and_count_against_the_budget(cluster: KubeCluster, clock: ScaledClock):
    cluster.add_node(node_name(0, "green"), pool="green", kubernetes_version="1.31.0")
    cluster.add_deployment("default", "web", replicas=2, place_on=[node_name(0), node_name(0, "green")])
    cluster.add_pdb("default", "web", selector={"app": "web"}, min_available=1)
    # WHEN the workload crash-loops on the green pool
    cluster.set_crashloop("default", "web", {"green"})
    crashing = next(p for p in app_pods(cluster, "web") if p["spec"]["nodeName"] == node_name(0, "green"))
    state = crashing["status"]["containerStatuses"][0]
    assert state["state"]["waiting"]["reason"] == "CrashLoopBackOff" and state["ready"] is False
    # THEN the healthy pod may not be evicted (only one healthy, one required)
    healthy = next(p for p in app_pods(cluster, "web") if p["spec"]["nodeName"] == node_name(0))
    with pytest.raises(DisruptionBlocked):
        cluster.evict("default", healthy["metadata"]["name"])
    # AND the restart count grows with emulated time
    clock.advance(180)
    cluster.tick()
    restarts = cluster.get_pod("default", crashing["metadata"]["name"])["status"]["containerStatuses"][0]
    assert restarts["restartCount"] >= 3


# ---------------------------------------------------------------------------------------------- events


def test_repeated_events_are_counted_not_duplicated(cluster: KubeCluster):
    for _ in range(3):
        cluster.record_event(reason="Drain", message="Eviction blocked by Too Many Requests (usually a pdb): a",
                             kind="Node", name=node_name(0), type="Warning")
    cluster.record_event(reason="Surge", message="Created a surge node", kind="Node", name=node_name(0))
    drains = cluster.events(reason="Drain")
    assert len(drains) == 1 and drains[0]["count"] == 3 and drains[0]["type"] == "Warning"
    assert drains[0]["involvedObject"] == {"kind": "Node", "name": node_name(0), "uid": node_name(0),
                                           "apiVersion": "v1"}
    assert len(cluster.events(reason="Surge")) == 1


# ---------------------------------------------------------------------------------------------- selectors


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("agentpool=np1", {"agentpool": "np1"}, True),
        ("agentpool==np1", {"agentpool": "np2"}, False),
        ("agentpool!=np1", {"agentpool": "np2"}, True),
        ("agentpool!=np1", {}, True),
        ("agentpool in (np1, np2)", {"agentpool": "np2"}, True),
        ("agentpool notin (np1,np2)", {"agentpool": "np2"}, False),
        ("kubernetes.azure.com/upgrade-status", {"kubernetes.azure.com/upgrade-status": "Quarantined"}, True),
        ("!kubernetes.azure.com/upgrade-status", {"kubernetes.azure.com/upgrade-status": "Quarantined"}, False),
        ("a=1,b in (x,y),!c", {"a": "1", "b": "y"}, True),
        ("a=1,b in (x,y),!c", {"a": "1", "b": "y", "c": ""}, False),
        ("", {"any": "thing"}, True),
    ],
)
def test_label_selector_syntax(selector, labels, matches):
    assert labels_match(parse_label_selector(selector), labels) is matches


def test_set_selector_parses_into_requirements():
    assert parse_label_selector("env in (a,b),tier") == [LabelRequirement("env", "in", ("a", "b")),
                                                          LabelRequirement("tier", "exists")]
    with pytest.raises(ValueError):
        parse_label_selector("a in b")


# ---------------------------------------------------------------------------------------------- scale


def test_5000_nodes_and_100000_pods_with_indexed_lookups(clock: ScaledClock):
    # GIVEN 5,000 nodes in 5 pools and 100,000 pods (20 per node)
    kube = KubeCluster(clock, "large")
    started = time.perf_counter()
    names = [node_name(i, f"pool{i // 1000}") for i in range(5000)]
    for index, name in enumerate(names):
        kube.add_node(name, pool=f"pool{index // 1000}", kubernetes_version="1.30.0")
    for deployment in range(100):
        kube.add_deployment("default", f"app{deployment}", replicas=1000,
                            place_on=[names[(deployment * 1000 + r) % 5000] for r in range(1000)])
    built = time.perf_counter() - started
    assert len(kube.pods()) == 100_000
    kube.set_unschedulable(names[4321], True)

    # WHEN the lookups the API and the upgrader use run, counting the stored objects they touch
    def visited(lookup):
        before = kube.objects_visited
        result = lookup()
        return result, kube.objects_visited - before

    on_node, pods_work = visited(lambda: kube.pods_on_node(names[4321]))
    cordoned, cordon_work = visited(lambda: kube.list_nodes(unschedulable=True))
    by_name, name_work = visited(lambda: kube.list_nodes(name=names[17]))
    pool, pool_work = visited(lambda: kube.nodes("pool3"))
    node_pods, field_work = visited(lambda: kube.list_pods(node_name=names[99]))
    _, scan_work = visited(kube.pods)

    # THEN each touches only what it returns, while a full scan touches everything
    assert len(on_node) == 20 and pods_work == 20
    assert [n["metadata"]["name"] for n in cordoned] == [names[4321]] and cordon_work == 1
    assert len(by_name) == 1 and name_work == 1
    assert len(pool) == 1000 and pool_work == 1000
    assert len(node_pods) == 20 and field_work == 20
    assert scan_work == 100_000
    # AND a node drains normally at this size
    started = time.perf_counter()
    for pod in on_node:
        kube.evict("default", pod["metadata"]["name"])
    drained = time.perf_counter() - started
    assert len(live(kube.pods_on_node(names[4321]))) == 0
    assert len(kube.pending_pods()) == 0
    print(f"\nbuilt 5,000 nodes + 100,000 pods in {built:.1f}s; evicted 20 pods in {drained * 1000:.0f}ms")
