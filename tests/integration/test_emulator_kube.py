"""The emulator's Kubernetes API, driven only through the official `kubernetes` Python client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from sandbox.aks_emulator.clock import ScaledClock
from sandbox.aks_emulator.kube import KubeCluster
from sandbox.aks_emulator.kube_api import KubeApiServer

TOKEN = "kube-test-token"
POOL = "nodepool1"
USER_POOL = "userpool"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def node_name(index: int, pool: str = POOL) -> str:
    return f"aks-{pool}-12345678-vmss{index:06d}"


@pytest.fixture
def cluster() -> KubeCluster:
    """GIVEN 3 system nodes and 1 user node; kube-proxy everywhere; app `a` (1 replica, PDB
    minAvailable 1) on node 0, app `b` (2 replicas, emptyDir) on nodes 0 and 1, an unmanaged pod."""
    # 0.05 real s per emulated minute: a 30 s grace period passes in 25 ms.
    kube = KubeCluster(ScaledClock(0.05), "cluster1")
    for index in range(3):
        kube.add_node(node_name(index), pool=POOL, kubernetes_version="1.30.0", mode="System")
    kube.add_node(node_name(0, USER_POOL), pool=USER_POOL, kubernetes_version="1.30.0")
    kube.add_daemonset("kube-system", "kube-proxy")
    kube.add_deployment("default", "a", replicas=1, place_on=[node_name(0)],
                        node_selector={"agentpool": POOL})
    kube.add_deployment("default", "b", replicas=2, place_on=[node_name(0), node_name(1)], empty_dir=True,
                        node_selector={"agentpool": POOL})
    kube.add_pdb("default", "a", selector={"app": "a"}, min_available=1)
    kube.add_pod("tools", "debug", node=node_name(2))
    return kube


@pytest.fixture
def server(cluster: KubeCluster) -> Iterator[KubeApiServer]:
    with KubeApiServer(cluster, TOKEN) as running:
        yield running


def make_api_client(server: KubeApiServer, folder: Path, token: str | None) -> client.ApiClient:
    ca_file = folder / "ca.crt"
    ca_file.write_bytes(server.certificate.ca_pem)
    configuration = client.Configuration()
    configuration.host = server.url
    configuration.ssl_ca_cert = str(ca_file)
    if token is not None:
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)


@pytest.fixture
def api(server: KubeApiServer, tmp_path: Path) -> Iterator[client.ApiClient]:
    with make_api_client(server, tmp_path, TOKEN) as api_client:
        yield api_client


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def policy(api: client.ApiClient) -> client.PolicyV1Api:
    return client.PolicyV1Api(api)


def app_pods(core: client.CoreV1Api, app: str) -> list:
    return core.list_namespaced_pod("default", label_selector=f"app={app}").items


def status_of(error: ApiException) -> dict:
    return json.loads(error.body)


def evict(core: client.CoreV1Api, namespace: str, name: str) -> tuple[int, dict]:
    """The HTTP status and the Status body of a policy/v1 eviction."""
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
    response = core.create_namespaced_pod_eviction(name, namespace, body, _preload_content=False)
    return response.status, json.loads(response.data)


# ---------------------------------------------------------------------------------------------- discovery, auth


def test_discovery_documents(api: client.ApiClient):
    assert client.VersionApi(api).get_code().git_version == "v1.30.0"
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "policy", "events.k8s.io"} <= groups
    core_resources = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    assert {"nodes", "pods", "namespaces", "events"} <= core_resources.keys()
    eviction = core_resources["pods/eviction"]
    assert (eviction.group, eviction.version, eviction.kind) == ("policy", "v1", "Eviction")
    assert [r.name for r in client.PolicyV1Api(api).get_api_resources().resources] == ["poddisruptionbudgets"]


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_requests_without_the_bearer_token_get_401(server: KubeApiServer, tmp_path: Path, token):
    with make_api_client(server, tmp_path, token) as unauthenticated, pytest.raises(ApiException) as raised:
        client.CoreV1Api(unauthenticated).list_node()
    assert raised.value.status == 401
    assert status_of(raised.value)["reason"] == "Unauthorized"


# ---------------------------------------------------------------------------------------------- nodes


def test_list_and_get_nodes(core: client.CoreV1Api):
    nodes = core.list_node().items
    assert [n.metadata.name for n in nodes] == sorted([node_name(0), node_name(1), node_name(2),
                                                       node_name(0, USER_POOL)])
    node = core.read_node(node_name(1))
    assert node.status.node_info.kubelet_version == "v1.30.0"
    assert node.metadata.labels["kubernetes.azure.com/agentpool"] == POOL
    assert node.metadata.labels["kubernetes.azure.com/mode"] == "system"


def test_missing_node_is_a_kubernetes_404(core: client.CoreV1Api):
    with pytest.raises(ApiException) as raised:
        core.read_node("aks-nope-0-vmss000000")
    assert raised.value.status == 404
    status = status_of(raised.value)
    assert (status["kind"], status["reason"], status["message"]) == (
        "Status", "NotFound", 'nodes "aks-nope-0-vmss000000" not found')


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (f"agentpool={USER_POOL}", [node_name(0, USER_POOL)]),
        (f"agentpool!={POOL}", [node_name(0, USER_POOL)]),
        (f"agentpool in ({POOL},other)", [node_name(0), node_name(1), node_name(2)]),
        (f"agentpool notin ({POOL})", [node_name(0, USER_POOL)]),
        ("kubernetes.azure.com/mode=system,kubernetes.io/hostname", [node_name(0), node_name(1), node_name(2)]),
        ("!kubernetes.io/os", []),
    ],
)
def test_node_label_selectors(core: client.CoreV1Api, selector, expected):
    assert [n.metadata.name for n in core.list_node(label_selector=selector).items] == expected


def test_cordon_by_patch_and_field_selectors(core: client.CoreV1Api, cluster: KubeCluster):
    # WHEN a node is cordoned the way kubectl does (strategic merge patch)
    patched = core.patch_node(node_name(2), {"spec": {"unschedulable": True}})
    assert patched.spec.unschedulable is True
    # THEN field selectors find it by cordon state and by name
    cordoned = core.list_node(field_selector="spec.unschedulable=true").items
    assert [n.metadata.name for n in cordoned] == [node_name(2)]
    schedulable = core.list_node(field_selector="spec.unschedulable=false").items
    assert node_name(2) not in [n.metadata.name for n in schedulable] and len(schedulable) == 3
    assert [n.metadata.name for n in core.list_node(field_selector=f"metadata.name={node_name(1)}").items] == \
        [node_name(1)]
    assert cluster.get_node(node_name(2))["spec"]["unschedulable"] is True
    # WHEN uncordoned with a null, as kubectl uncordon sends it
    core.patch_node(node_name(2), {"spec": {"unschedulable": None}})
    assert core.list_node(field_selector="spec.unschedulable=true").items == []


def test_unknown_field_selector_is_a_bad_request(core: client.CoreV1Api):
    with pytest.raises(ApiException) as raised:
        core.list_node(field_selector="status.phase=Running")
    assert raised.value.status == 400


def test_label_node_with_json_patch_and_merge_patch(core: client.CoreV1Api):
    # WHEN labelled with a JSON patch (path escaping of '/' as '~1')
    core.patch_node(node_name(0), [{"op": "add", "path": "/metadata/labels/kubernetes.azure.com~1upgrade-status",
                                    "value": "Quarantined"}])
    assert core.read_node(node_name(0)).metadata.labels["kubernetes.azure.com/upgrade-status"] == "Quarantined"
    # WHEN the label is removed with a merge patch (what `kubectl label node n key-` sends)
    core.patch_node(node_name(0), {"metadata": {"labels": {"kubernetes.azure.com/upgrade-status": None}}},
                    _content_type="application/merge-patch+json")
    assert "kubernetes.azure.com/upgrade-status" not in core.read_node(node_name(0)).metadata.labels


def test_stale_resource_version_conflicts(core: client.CoreV1Api):
    stale = core.read_node(node_name(1)).metadata.resource_version
    core.patch_node(node_name(1), {"metadata": {"labels": {"touched": "yes"}}})
    with pytest.raises(ApiException) as raised:
        core.patch_node(node_name(1), {"metadata": {"resourceVersion": stale, "labels": {"again": "yes"}}})
    assert raised.value.status == 409
    assert status_of(raised.value)["reason"] == "Conflict"


def test_invalid_label_is_422(core: client.CoreV1Api):
    with pytest.raises(ApiException) as raised:
        core.patch_node(node_name(1), {"metadata": {"labels": {"bad label": "x"}}})
    assert raised.value.status == 422
    assert status_of(raised.value)["reason"] == "Invalid"


# ---------------------------------------------------------------------------------------------- pods


def test_pods_all_namespaces_namespaced_and_by_node(core: client.CoreV1Api):
    everything = core.list_pod_for_all_namespaces().items
    assert len(everything) == 4 + 1 + 2 + 1  # kube-proxy x4, a, b x2, debug
    assert {p.metadata.namespace for p in everything} == {"default", "kube-system", "tools"}
    assert len(core.list_namespaced_pod("default").items) == 3
    on_node = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node_name(0)}").items
    assert sorted(p.metadata.labels["app"] for p in on_node) == ["a", "b", "kube-proxy"]
    drainable = core.list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName={node_name(0)},status.phase!=Succeeded,status.phase!=Failed").items
    assert len(drainable) == 3
    pod = core.read_namespaced_pod(on_node[0].metadata.name, on_node[0].metadata.namespace)
    assert pod.spec.node_name == node_name(0)
    assert any(v.empty_dir is not None for v in core.read_namespaced_pod(
        app_pods(core, "b")[0].metadata.name, "default").spec.volumes)


def test_paging_with_limit_and_continue(core: client.CoreV1Api):
    full = [(p.metadata.namespace, p.metadata.name) for p in core.list_pod_for_all_namespaces().items]
    pages, token = [], None
    while True:
        page = core.list_pod_for_all_namespaces(limit=3, _continue=token)
        pages.append([(p.metadata.namespace, p.metadata.name) for p in page.items])
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == len(full) - sum(len(p) for p in pages)
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [item for page in pages for item in page] == full == sorted(full)
    assert int(page.metadata.resource_version) > 0


def test_expired_continue_token_is_410(core: client.CoreV1Api):
    with pytest.raises(ApiException) as raised:
        core.list_pod_for_all_namespaces(limit=2, _continue="eyJzbmFwc2hvdCI6ICI5OTkiLCAib2Zmc2V0IjogMn0=")
    assert raised.value.status == 410
    assert status_of(raised.value)["reason"] == "Expired"


def test_delete_pod_with_grace_period(core: client.CoreV1Api, cluster: KubeCluster):
    # WHEN the unmanaged pod is deleted with a grace period
    deleted = core.delete_namespaced_pod("debug", "tools", grace_period_seconds=600)
    # THEN it is Terminating for that (emulated) time, and never recreated
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.deletion_grace_period_seconds == 600
    core.delete_namespaced_pod("debug", "tools", body=client.V1DeleteOptions(grace_period_seconds=0))
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod("debug", "tools")
    assert raised.value.status == 404
    assert core.list_namespaced_pod("tools").items == []


# ---------------------------------------------------------------------------------------------- eviction


def test_eviction_is_201_and_the_pod_is_recreated_elsewhere(core: client.CoreV1Api, cluster: KubeCluster):
    # GIVEN node 0 cordoned
    core.patch_node(node_name(0), {"spec": {"unschedulable": True}})
    victim = next(p for p in app_pods(core, "b") if p.spec.node_name == node_name(0))
    # WHEN b's pod there is evicted
    code, status = evict(core, "default", victim.metadata.name)
    # THEN the API said 201 Success, and the replacement lands on a schedulable node of the right pool
    assert (code, status["kind"], status["status"]) == (201, "Status", "Success")
    cluster.clock.advance(31)
    pods = app_pods(core, "b")
    assert victim.metadata.name not in [p.metadata.name for p in pods]
    assert len(pods) == 2
    assert all(p.spec.node_name in (node_name(1), node_name(2)) for p in pods)


def test_eviction_forbidden_by_pdb_is_429_with_kubernetes_message(core: client.CoreV1Api):
    victim = app_pods(core, "a")[0]
    with pytest.raises(ApiException) as raised:
        evict(core, "default", victim.metadata.name)
    assert raised.value.status == 429
    status = status_of(raised.value)
    assert status["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert status["reason"] == "TooManyRequests"
    assert status["details"]["causes"] == [{"reason": "DisruptionBudget",
                                            "message": "The disruption budget a needs 1 healthy pods and has 1 "
                                                       "currently"}]
    assert core.read_namespaced_pod(victim.metadata.name, "default").metadata.deletion_timestamp is None


def test_eviction_of_a_missing_pod_is_404(core: client.CoreV1Api):
    with pytest.raises(ApiException) as raised:
        evict(core, "default", "gone-already")
    assert raised.value.status == 404
    assert status_of(raised.value)["reason"] == "NotFound"


# ---------------------------------------------------------------------------------------------- PDBs, namespaces, events


def test_pdb_read_patch_delete(policy: client.PolicyV1Api, core: client.CoreV1Api):
    pdb = policy.read_namespaced_pod_disruption_budget("a", "default")
    assert (pdb.status.current_healthy, pdb.status.desired_healthy, pdb.status.expected_pods,
            pdb.status.disruptions_allowed) == (1, 1, 1, 0)
    assert [p.metadata.name for p in policy.list_pod_disruption_budget_for_all_namespaces().items] == ["a"]
    # WHEN the customer relaxes the PDB THEN the pod may be evicted
    relaxed = policy.patch_namespaced_pod_disruption_budget("a", "default", {"spec": {"minAvailable": 0}})
    assert relaxed.status.disruptions_allowed == 1
    assert evict(core, "default", app_pods(core, "a")[0].metadata.name)[0] == 201
    policy.delete_namespaced_pod_disruption_budget("a", "default")
    assert policy.list_namespaced_pod_disruption_budget("default").items == []


def test_pdb_create_and_duplicate(policy: client.PolicyV1Api):
    body = client.V1PodDisruptionBudget(metadata=client.V1ObjectMeta(name="b"), spec=client.V1PodDisruptionBudgetSpec(
        max_unavailable=1, selector=client.V1LabelSelector(match_labels={"app": "b"})))
    created = policy.create_namespaced_pod_disruption_budget("default", body)
    assert created.status.expected_pods == 2 and created.status.disruptions_allowed == 1
    with pytest.raises(ApiException) as raised:
        policy.create_namespaced_pod_disruption_budget("default", body)
    assert raised.value.status == 409


def test_namespaces_and_events(core: client.CoreV1Api, api: client.ApiClient, cluster: KubeCluster):
    assert {"default", "kube-system", "tools"} <= {n.metadata.name for n in core.list_namespace().items}
    assert core.read_namespace("tools").status.phase == "Active"
    cluster.record_event(reason="Upgrade", message="Upgrading node", kind="Node", name=node_name(1))
    events = core.list_event_for_all_namespaces(field_selector=f"involvedObject.name={node_name(1)},reason=Upgrade")
    assert [(e.reason, e.involved_object.kind) for e in events.items] == [("Upgrade", "Node")]
    new_style = client.EventsV1Api(api).list_event_for_all_namespaces(field_selector="reason=Upgrade").items
    assert [(e.reason, e.note, e.regarding.name) for e in new_style] == [("Upgrade", "Upgrading node",
                                                                          node_name(1))]


def test_workload_controllers_are_readable(api: client.ApiClient):
    apps = client.AppsV1Api(api)
    daemonset = apps.read_namespaced_daemon_set("kube-proxy", "kube-system")
    assert daemonset.status.desired_number_scheduled == 4 and daemonset.status.number_ready == 4
    assert apps.read_namespaced_deployment("b", "default").status.ready_replicas == 2
    assert len(apps.list_replica_set_for_all_namespaces().items) == 2


# ---------------------------------------------------------------------------------------------- table, watch


def test_table_format_for_nodes_and_pods(core: client.CoreV1Api):
    core.patch_node(node_name(2), {"spec": {"unschedulable": True}})

    def table(list_call) -> dict:
        return json.loads(list_call(_headers={"Accept": TABLE}, _preload_content=False).data)

    nodes = table(core.list_node)
    assert nodes["kind"] == "Table"
    assert [c["name"] for c in nodes["columnDefinitions"] if c["priority"] == 0] == \
        ["Name", "Status", "Roles", "Age", "Version"]
    rows = {row["cells"][0]: row["cells"] for row in nodes["rows"]}
    assert rows[node_name(2)][1] == "Ready,SchedulingDisabled"
    assert rows[node_name(1)][1] == "Ready"
    assert rows[node_name(1)][4] == "v1.30.0"
    pods = table(core.list_pod_for_all_namespaces)
    node_column = [c["name"] for c in pods["columnDefinitions"]].index("Node")
    assert {row["cells"][node_column] for row in pods["rows"]} == {node_name(0), node_name(1), node_name(2),
                                                                    node_name(0, USER_POOL)}
    assert all(row["object"]["kind"] == "PartialObjectMetadata" for row in pods["rows"])


def test_watch_streams_current_pods_then_changes(core: client.CoreV1Api, cluster: KubeCluster):
    stream = watch.Watch().stream(core.list_namespaced_pod, "tools", timeout_seconds=2)
    first = next(stream)
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "debug")
    cluster.delete_pod("tools", "debug", grace_seconds=0)
    second = next(stream)
    assert (second["type"], second["object"].metadata.name) == ("DELETED", "debug")


# ---------------------------------------------------------------------------------------------- scale subresource


def test_the_scale_subresource_adds_scheduled_pods_refuses_a_stale_version_and_scales_back(
        api: client.ApiClient, core: client.CoreV1Api):
    apps = client.AppsV1Api(api)
    # GIVEN deployment b at 2 replicas, read through its Scale
    scale = apps.read_namespaced_deployment_scale("b", "default")
    assert (scale.spec.replicas, scale.status.selector) == (2, "app=b")
    # WHEN it is raised to 3 with the version it was read at
    raised = apps.replace_namespaced_deployment_scale("b", "default", client.V1Scale(
        metadata=client.V1ObjectMeta(name="b", namespace="default", resource_version=scale.metadata.resource_version),
        spec=client.V1ScaleSpec(replicas=3)))
    assert raised.spec.replicas == 3
    # THEN the deployment and its ReplicaSet say 3, and a third pod is created and scheduled
    assert apps.read_namespaced_deployment("b", "default").spec.replicas == 3
    [replicaset] = [rs for rs in apps.list_namespaced_replica_set("default").items if rs.metadata.name.startswith("b-")]
    assert replicaset.spec.replicas == 3
    pods = app_pods(core, "b")
    assert len(pods) == 3 and all(p.spec.node_name for p in pods)
    # AND a write at the version read before the raise is refused: it would overwrite it
    with pytest.raises(ApiException) as stale:
        apps.replace_namespaced_deployment_scale("b", "default", client.V1Scale(
            metadata=client.V1ObjectMeta(name="b", namespace="default",
                                         resource_version=scale.metadata.resource_version),
            spec=client.V1ScaleSpec(replicas=2)))
    assert stale.value.status == 409
    # AND a merge patch back to 2 removes one pod
    apps.patch_namespaced_deployment_scale("b", "default", {"spec": {"replicas": 2}})
    live = [p for p in app_pods(core, "b") if p.metadata.deletion_timestamp is None]
    assert apps.read_namespaced_deployment_scale("b", "default").spec.replicas == 2 and len(live) == 2
    # AND a negative count is refused with 422
    with pytest.raises(ApiException) as invalid:
        apps.patch_namespaced_deployment_scale("b", "default", {"spec": {"replicas": -1}})
    assert invalid.value.status == 422
