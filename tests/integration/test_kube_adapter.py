"""KubernetesKube against the emulator's Kubernetes API, through the real ``kubernetes`` client."""

from __future__ import annotations

import re
import socket
import time

import pytest

from upgrade.adapters.kube import KubernetesKube, api_client_from_kubeconfig, kube_from_kubeconfig
from upgrade.domain.selectors import LabelSelector
from upgrade.errors import Conflict, NotFound, PermanentError, TemporaryError

pytestmark = pytest.mark.integration


def _builder():
    from sandbox.aks_emulator.scenarios import ClusterBuilder

    return (
        ClusterBuilder("aks-adapter")
        .pool("system", count=1, mode="System", node_taints=["CriticalAddonsOnly=true:NoSchedule"])
        .pool("work", count=2)
        .daemonset("kube-system", "kube-proxy")
        .deployment("apps", "web", replicas=3, pool="work")
        .deployment("apps", "db", replicas=1, pool="work", place_on=[("work", 0)])
        .pdb("apps", "db-pdb", app="db", min_available=1)
        .pod("apps", "bare", on=("work", 0))
        .pod("apps", "cache", on=("work", 1), empty_dir=True, owner_kind="ReplicaSet")
    )


@pytest.fixture
def cluster(emulator, tmp_path):
    emu = emulator(_builder())
    (emulated,) = emu.clusters()
    path = tmp_path / "kubeconfig"
    emu.write_kubeconfig(emulated.arm_id, path)
    kube = kube_from_kubeconfig(str(path))
    yield emu, emulated, kube, path
    kube.close()


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def _work_nodes(kube):
    return sorted(n.name for n in kube.list_nodes(label_selector="kubernetes.azure.com/agentpool=work"))


def test_nodes_are_listed_with_selectors_and_converted(cluster):
    _, _, kube, _ = cluster
    # WHEN nodes are listed by pool label and by name
    work = kube.list_nodes(label_selector="kubernetes.azure.com/agentpool=work")
    one = kube.list_nodes(field_selector=f"metadata.name={work[0].name}")
    # THEN the selectors apply and nodes carry the domain's fields (version without the leading v)
    assert [n.pool for n in work] == ["work", "work"]
    assert [n.name for n in one] == [work[0].name]
    assert work[0].kubernetes_version == "1.30.0"
    assert work[0].ready and not work[0].unschedulable
    assert work[0].allocatable_cpu_millis > 0
    assert kube.get_node(work[0].name) == work[0]


def test_pods_convert_owner_empty_dir_and_unmanaged(cluster):
    _, _, kube, _ = cluster
    pods = {p.name: p for p in kube.list_pods(namespace="apps")}
    web = [p for name, p in pods.items() if name.startswith("web-")]
    assert len(web) == 3 and {p.owner_kind for p in web} == {"ReplicaSet"}
    assert pods["bare"].owner_kind is None
    assert pods["cache"].empty_dir and pods["cache"].owner_kind == "ReplicaSet"
    assert all(p.uid and p.node for p in pods.values())
    proxies = kube.list_pods(namespace="kube-system", label_selector="app=kube-proxy")
    assert {p.owner_kind for p in proxies} == {"DaemonSet"}
    node = pods["bare"].node
    on_node = kube.list_pods(node=node)
    assert {p.node for p in on_node} == {node} and "bare" in {p.name for p in on_node}
    assert kube.get_pod("apps", "bare") == pods["bare"]


def test_lists_page_with_limit_and_continue(cluster):
    emu, _, _, path = cluster
    # GIVEN a client that asks for 2 items per page
    kube = KubernetesKube(api_client_from_kubeconfig(str(path)), page_size=2)
    everything = kube_from_kubeconfig(str(path)).list_pods()
    emu.faults.reset_counts()
    # WHEN every pod is listed
    paged = kube.list_pods()
    # THEN every pod comes back, over several requests
    assert sorted(p.uid for p in paged) == sorted(p.uid for p in everything)
    assert emu.faults.counts("kube")["GET /api/v1/pods"] == -(-len(everything) // 2)
    kube.close()


def test_cordon_and_labels_patch_only_when_needed(cluster):
    emu, _, kube, _ = cluster
    node = _work_nodes(kube)[0]
    assert kube.set_unschedulable(node, True) is True
    assert kube.set_unschedulable(node, True) is False
    cordoned = kube.get_node(node)
    assert cordoned.unschedulable and cordoned.cordoned_at is not None
    emu.faults.reset_counts()
    assert kube.set_node_label(node, "kubernetes.azure.com/upgrade-status", "Quarantined") is True
    assert kube.set_node_label(node, "kubernetes.azure.com/upgrade-status", "Quarantined") is False
    assert kube.get_node(node).quarantined
    assert kube.set_node_label(node, "kubernetes.azure.com/upgrade-status", None) is True
    assert kube.get_node(node).label("kubernetes.azure.com/upgrade-status") is None
    assert emu.faults.counts("kube").get("PATCH /api/v1/nodes/{name}") == 2
    assert kube.set_unschedulable(node, False) is True
    assert not kube.get_node(node).unschedulable


def test_eviction_outcomes(cluster):
    _, _, kube, _ = cluster
    web = next(p for p in kube.list_pods(namespace="apps", label_selector="app=web"))
    db = kube.list_pods(namespace="apps", label_selector="app=db")[0]
    # An allowed eviction: the pod terminates and its ReplicaSet replaces it (another UID)
    kube.evict("apps", web.name, grace_seconds=0)
    _wait_until(lambda: web.uid not in {p.uid for p in kube.list_pods(namespace="apps")})
    _wait_until(lambda: len(kube.list_pods(namespace="apps", label_selector="app=web")) == 3)
    # A PDB-forbidden eviction: 429 with Kubernetes' message
    with pytest.raises(TemporaryError) as blocked:
        kube.evict("apps", db.name)
    assert blocked.value.status == 429
    assert "disruption budget" in str(blocked.value)
    # A pod that is not there: NotFound
    with pytest.raises(NotFound) as missing:
        kube.evict("apps", "no-such-pod")
    assert missing.value.status == 404


def test_delete_pod_and_missing_objects(cluster):
    _, _, kube, _ = cluster
    kube.delete_pod("apps", "bare", grace_seconds=0)
    _wait_until(lambda: "bare" not in {p.name for p in kube.list_pods(namespace="apps")})
    with pytest.raises(NotFound):
        kube.get_pod("apps", "bare")
    with pytest.raises(NotFound):
        kube.get_node("no-such-node")


def test_pdb_listing_manifest_conditional_relax_and_exact_restore(cluster):
    _, _, kube, _ = cluster
    (pdb,) = kube.list_pdbs(namespace="apps")
    assert (pdb.key, pdb.min_available, pdb.selector) == ("apps/db-pdb", "1", LabelSelector.match_labels({"app": "db"}))
    assert pdb.disruptions_allowed == 0 and pdb.expected_pods == 1
    original = kube.get_pdb_manifest("apps", "db-pdb")
    # WHEN the budget is relaxed to maxUnavailable 1, conditional on the version just read
    relaxed = kube.patch_pdb_spec("apps", "db-pdb", {**{k: v for k, v in original.spec.items() if k != "minAvailable"},
                                                    "maxUnavailable": 1}, resource_version=original.resource_version)
    # THEN the write returns the PDB as stored: the spec change made the next generation
    assert relaxed.spec.get("maxUnavailable") == 1 and "minAvailable" not in relaxed.spec
    assert relaxed.generation == original.generation + 1
    assert kube.get_pdb_manifest("apps", "db-pdb") == relaxed
    # WHEN the pod is evicted: the disruption controller's status writes change the resourceVersion only
    _wait_until(lambda: kube.list_pdbs(namespace="apps")[0].disruptions_allowed == 1)
    db = kube.list_pods(namespace="apps", label_selector="app=db")[0]
    kube.evict("apps", db.name)
    _wait_until(lambda: kube.get_pdb_manifest("apps", "db-pdb").resource_version != relaxed.resource_version)
    after_status = kube.get_pdb_manifest("apps", "db-pdb")
    assert (after_status.spec, after_status.generation) == (relaxed.spec, relaxed.generation)
    # THEN a write conditional on an older version is refused by the API server (409), changing nothing
    with pytest.raises(Conflict) as stale:
        kube.patch_pdb_spec("apps", "db-pdb", original.spec, resource_version=relaxed.resource_version)
    assert stale.value.status == 409
    assert kube.get_pdb_manifest("apps", "db-pdb").spec == relaxed.spec
    # AND the restore conditional on the current version puts the spec back exactly
    restored = kube.patch_pdb_spec("apps", "db-pdb", original.spec, resource_version=after_status.resource_version)
    assert restored.spec == original.spec == kube.get_pdb_manifest("apps", "db-pdb").spec


def test_workloads_count_desired_and_ready(cluster):
    _, _, kube, _ = cluster
    workloads = {(w.kind, w.name): w for w in kube.list_workloads(namespace="apps")}
    assert (workloads[("Deployment", "web")].desired, workloads[("Deployment", "web")].ready) == (3, 3)
    # ReplicaSets owned by a Deployment are counted through the Deployment only, which names them
    assert not [key for key in workloads if key[0] == "ReplicaSet" and key[1].startswith("web")]
    (replica_set,) = workloads[("Deployment", "web")].replica_sets
    assert {p.owner_name for p in kube.list_pods(namespace="apps", label_selector="app=web")} == {replica_set}


def test_scale_is_read_and_replaced_only_at_the_version_read(cluster):
    _, _, kube, _ = cluster
    # GIVEN the web Deployment's scale (3 replicas) and the cpu each of its pods requests
    scale = kube.get_scale("Deployment", "apps", "web")
    assert (scale.kind, scale.namespace, scale.name, scale.replicas) == ("Deployment", "apps", "web", 3)
    assert {p.cpu_request_millis > 0 for p in kube.list_pods(namespace="apps", label_selector="app=web")} == {True}
    # WHEN it is raised at the version read THEN the scheduler places a fourth pod
    raised = kube.replace_scale("Deployment", "apps", "web", 4, resource_version=scale.resource_version)
    assert raised.replicas == 4 and raised.resource_version != scale.resource_version
    _wait_until(lambda: len(kube.list_pods(namespace="apps", label_selector="app=web")) == 4)
    # AND a write at the stale version is refused (409), leaving the count as it is
    with pytest.raises(Conflict) as stale:
        kube.replace_scale("Deployment", "apps", "web", 3, resource_version=scale.resource_version)
    assert stale.value.status == 409 and kube.get_scale("Deployment", "apps", "web").replicas == 4
    # AND a ReplicaSet's scale reads the same way; a missing workload is NotFound
    (replica_set,) = next(w for w in kube.list_workloads(namespace="apps") if w.name == "web").replica_sets
    assert kube.get_scale("ReplicaSet", "apps", replica_set).replicas == 4
    with pytest.raises(NotFound):
        kube.get_scale("Deployment", "apps", "no-such-deployment")


def test_events_are_filtered_by_reason(cluster):
    _, emulated, kube, _ = cluster
    node = _work_nodes(kube)[0]
    emulated.kube.record_event(reason="Drain", message=f"Draining node: {node}", kind="Node", name=node)
    drains = kube.list_events(reasons=["Drain"])
    assert drains and {e["reason"] for e in drains} == {"Drain"}
    assert (drains[-1]["object"]["kind"], drains[-1]["object"]["name"]) == ("Node", node)
    assert len(kube.list_events()) >= len(drains)


def test_crash_looping_pods_are_recognised(cluster):
    _, emulated, kube, _ = cluster
    emulated.kube.set_crashloop("apps", "web", {"work"})
    _wait_until(lambda: all(p.crash_looping for p in kube.list_pods(namespace="apps", label_selector="app=web")))
    assert not any(p.ready for p in kube.list_pods(namespace="apps", label_selector="app=web"))


@pytest.mark.parametrize("status", [429, 500, 503])
def test_injected_faults_become_temporary_errors(cluster, status):
    emu, _, kube, _ = cluster
    # GIVEN every pod list answered with the fault
    emu.faults.add("kube", "GET /api/v1/pods", **{f"rate_{status}": 1.0}, retry_after_seconds=3)
    # WHEN pods are listed THEN a TemporaryError keeps the status (and Retry-After where sent)
    with pytest.raises(TemporaryError) as raised:
        kube.list_pods()
    assert raised.value.status == status
    assert "emulated fault" in str(raised.value)
    if status in (429, 503):
        assert raised.value.delay_seconds == 3
    # AND other routes are unaffected
    assert kube.list_nodes()


def test_a_wrong_token_is_a_permanent_401(cluster, tmp_path):
    _, _, _, path = cluster
    wrong = tmp_path / "wrong"
    wrong.write_text(path.read_text().replace(cluster[0].token, "not-the-token"))
    kube = kube_from_kubeconfig(str(wrong))
    with pytest.raises(PermanentError) as raised:
        kube.list_nodes()
    assert raised.value.status == 401
    kube.close()


def test_an_unreachable_server_is_temporary(tmp_path, cluster):
    _, _, _, path = cluster

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = path.read_text()
    dead = tmp_path / "dead"
    dead.write_text(re.sub(r"(https?://127\.0\.0\.1:)\d+", rf"\g<1>{port}", text))
    kube = kube_from_kubeconfig(str(dead))
    with pytest.raises(TemporaryError, match="unreachable"):
        kube.list_nodes()
    kube.close()
