"""The emulator upgrades agent pools the way AKS does, observed only through the real SDK clients
(azure-mgmt-containerservice for ARM, kubernetes for the cluster)."""

from __future__ import annotations

import time
from datetime import timedelta

import kubernetes
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerservice.models import AgentPool

from sandbox.aks_emulator.scenarios import ClusterBuilder
from sandbox.aks_emulator.upgrader import surge_node_count

pytestmark = pytest.mark.integration

APPS = ("app-a", "app-b", "app-c", "app-d")
QUARANTINE_LABEL = "kubernetes.azure.com/upgrade-status"


def eventually(check, timeout: float = 10.0):
    """Retry `check` until it stops raising AssertionError (the cluster's control loops converge)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def pool_nodes(core, pool: str) -> dict:
    return {n.metadata.name: n for n in core.list_node(label_selector=f"agentpool={pool}").items}


def kubelet_version(node) -> str:
    return node.status.node_info.kubelet_version


def running_pods_by_app(core) -> dict[str, list]:
    pods = core.list_namespaced_pod("default").items
    result: dict[str, list] = {app: [] for app in APPS}
    for pod in pods:
        app = (pod.metadata.labels or {}).get("app")
        if app in result and pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None:
            result[app].append(pod)
    return result


def assert_every_app_running_once(core) -> dict[str, list]:
    pods = running_pods_by_app(core)
    assert {app: len(found) for app, found in pods.items()} == {app: 1 for app in APPS}
    return pods


def upgrade(aks, cluster, pool_name: str, version: str):
    pool = aks.agent_pools.get(cluster.resource_group, cluster.name, pool_name)
    pool.properties.orchestrator_version = version
    return aks.agent_pools.begin_create_or_update(cluster.resource_group, cluster.name, pool_name, pool)


@pytest.mark.parametrize(
    ("max_surge", "pool_size", "nodes_to_upgrade", "expected"),
    [
        ("1", 2, 2, 1),
        ("2", 2, 2, 2),
        ("5", 3, 3, 3),        # capped at the nodes still to upgrade
        ("33%", 10, 10, 4),    # 3.3 rounds up
        ("10%", 5, 5, 1),      # the default rounds up to one node
        ("50%", 4, 1, 1),
        ("0", 4, 4, 0),
    ],
)
def test_surge_node_count_follows_aks_rounding_and_cap(max_surge, pool_size, nodes_to_upgrade, expected):
    # GIVEN a maxSurge setting WHEN AKS sizes the surge THEN it rounds percentages up and caps the count
    assert surge_node_count(max_surge, pool_size, nodes_to_upgrade) == expected


def test_scenario_1_rolling_upgrade_with_surge_reaches_the_seed_final_state(emulator, aks_client, kube_client):
    # GIVEN the seed-rolling cluster: nodepool1 with 2 nodes at 1.30, maxSurge 1, pods A-D
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)
    original_nodes = set(pool_nodes(core, "nodepool1"))
    system_nodes_before = {name: kubelet_version(n) for name, n in pool_nodes(core, "system").items()}

    # WHEN the pool's version is changed through the SDK
    result = upgrade(aks, cluster, "nodepool1", "1.31").result()

    # THEN the operation succeeded and every invariant of Scenario 1 holds
    assert result.properties.provisioning_state == "Succeeded"
    assert result.properties.current_orchestrator_version.startswith("1.31.")
    pool = aks.agent_pools.get(cluster.resource_group, cluster.name, "nodepool1")
    assert pool.properties.count == 2

    def final_state():
        nodes = pool_nodes(core, "nodepool1")
        assert set(nodes) == original_nodes, "the surge node is gone and the pool is back to 2 nodes"
        assert all(kubelet_version(n).startswith("v1.31.") for n in nodes.values())
        assert not any(n.spec.unschedulable for n in nodes.values())
        assert_every_app_running_once(core)

    eventually(final_state)
    # the System pool upgrades independently: untouched
    assert {name: kubelet_version(n) for name, n in pool_nodes(core, "system").items()} == system_nodes_before
    reasons = {e.reason for e in core.list_event_for_all_namespaces().items}
    assert {"Surge", "Drain", "Upgrade"} <= reasons


def test_scenario_2_pdb_blocked_node_is_quarantined_and_surge_node_kept(emulator, aks_client, kube_client):
    # GIVEN the seed-pdb cluster: maxSurge 2, undrainableNodeBehavior Cordon, a PDB that forbids evicting A
    emu = emulator("seed-pdb")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)
    node_1, node_2 = sorted(pool_nodes(core, "nodepool1"))
    pod_a = running_pods_by_app(core)["app-a"][0]
    assert pod_a.spec.node_name == node_1

    # WHEN the pool's version is changed through the SDK
    poller = upgrade(aks, cluster, "nodepool1", "1.31")

    # THEN the operation fails with AKS's drain failure message
    with pytest.raises(HttpResponseError) as failure:
        poller.result()
    assert failure.value.error.code == "UpgradeFailed"
    message = failure.value.error.message
    assert f"Drain node {node_1} failed when evicting pod {pod_a.metadata.name}" in message
    assert "Too Many Requests" in message
    assert "blocked by pdb app-a-pdb" in message

    # AND the pool records the same error in status.provisioningError, as AKS does
    pool = aks.agent_pools.get(cluster.resource_group, cluster.name, "nodepool1")
    assert pool.properties.provisioning_state == "Failed"
    recorded = pool.properties.status.provisioning_error
    assert (recorded.code, recorded.message) == ("UpgradeFailed", message)

    # AND node 1 is quarantined with pod A, node 2 upgraded, the former surge node stays: 3 nodes
    assert pool.properties.count == 3

    def final_state():
        nodes = pool_nodes(core, "nodepool1")
        assert len(nodes) == 3
        quarantined = nodes[node_1]
        assert quarantined.metadata.labels[QUARANTINE_LABEL] == "Quarantined"
        assert quarantined.spec.unschedulable is True
        assert kubelet_version(quarantined) == "v1.30.0"
        assert kubelet_version(nodes[node_2]).startswith("v1.31.")
        (former_surge,) = set(nodes) - {node_1, node_2}
        assert kubelet_version(nodes[former_surge]).startswith("v1.31.")
        assert not nodes[former_surge].spec.unschedulable
        pods = assert_every_app_running_once(core)
        assert pods["app-a"][0].metadata.name == pod_a.metadata.name
        assert pods["app-a"][0].spec.node_name == node_1

    eventually(final_state)


def test_scenario_2_scaling_back_removes_the_quarantined_node_first(emulator, aks_client, kube_client):
    # GIVEN Scenario 2's end state, and the customer fixed the PDB
    emu = emulator("seed-pdb")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)
    node_1 = sorted(pool_nodes(core, "nodepool1"))[0]
    with pytest.raises(HttpResponseError):
        upgrade(aks, cluster, "nodepool1", "1.31").result()
    kubernetes.client.PolicyV1Api(core.api_client).delete_namespaced_pod_disruption_budget("app-a-pdb", "default")

    # WHEN the pool is scaled back to the upgraded count
    pool = aks.agent_pools.get(cluster.resource_group, cluster.name, "nodepool1")
    pool.properties.count = 2
    result = aks.agent_pools.begin_create_or_update(cluster.resource_group, cluster.name, "nodepool1", pool).result()

    # THEN AKS removed the quarantined node, and every app still runs once; the new operation
    # cleared the failed upgrade's provisioningError
    assert result.properties.provisioning_state == "Succeeded"
    assert result.properties.count == 2
    assert result.properties.status is None

    def final_state():
        nodes = pool_nodes(core, "nodepool1")
        assert node_1 not in nodes and len(nodes) == 2
        assert all(kubelet_version(n).startswith("v1.31.") for n in nodes.values())
        assert_every_app_running_once(core)

    eventually(final_state)


def _blocked_cluster(name: str, **pool_settings) -> ClusterBuilder:
    return (
        ClusterBuilder(name)
        .pool("system", count=1, mode="System", node_taints=["CriticalAddonsOnly=true:NoSchedule"])
        .pool("work", count=2, **pool_settings)
        .deployment("default", "app-a", pool="work", place_on=[("work", 0)])
        .deployment("default", "app-b", pool="work", place_on=[("work", 1)])
        .pdb("default", "app-a-pdb", app="app-a", min_available=1)
    )


def test_schedule_behaviour_makes_the_blocked_node_schedulable_and_fails(emulator, aks_client, kube_client):
    # GIVEN a pool with the default undrainableNodeBehavior (Schedule) and a PDB blocking app-a
    emu = emulator(_blocked_cluster("aks-schedule", max_surge="1"))
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)
    nodes_before = sorted(pool_nodes(core, "work"))

    # WHEN the pool is upgraded
    with pytest.raises(HttpResponseError) as failure:
        upgrade(aks, cluster, "work", "1.31").result()

    # THEN the operation failed with the drain message; the blocked node is schedulable, not upgraded
    assert failure.value.error.code == "UpgradeFailed"
    assert f"Drain node {nodes_before[0]} failed" in failure.value.error.message

    def final_state():
        nodes = pool_nodes(core, "work")
        assert sorted(nodes) == nodes_before, "surge node deleted"
        blocked = nodes[nodes_before[0]]
        assert not blocked.spec.unschedulable
        assert kubelet_version(blocked) == "v1.30.0"
        assert QUARANTINE_LABEL not in (blocked.metadata.labels or {})

    eventually(final_state)
    assert aks.agent_pools.get(cluster.resource_group, cluster.name, "work").properties.provisioning_state == "Failed"


def test_cordon_without_enough_surge_cancels_with_aks_message(emulator, aks_client, kube_client):
    # GIVEN Cordon with maxSurge 1: the first blocked node uses up the only surge node
    emu = emulator(_blocked_cluster("aks-cancel", max_surge="1", undrainable_node_behavior="Cordon"))
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)
    node_1, node_2 = sorted(pool_nodes(core, "work"))

    # WHEN the pool is upgraded
    with pytest.raises(HttpResponseError) as failure:
        upgrade(aks, cluster, "work", "1.31").result()

    # THEN AKS cancels: node 1 quarantined, node 2 never upgraded, the surge node kept as replacement
    assert "Cordoned nodes have used all surge nodes but there are more nodes to be upgraded" in (
        failure.value.error.message)
    pool = aks.agent_pools.get(cluster.resource_group, cluster.name, "work")
    assert pool.properties.provisioning_state == "Canceled"
    assert (pool.properties.status.provisioning_error.code, pool.properties.status.provisioning_error.message) == (
        "UpgradeCanceled", failure.value.error.message)
    nodes = pool_nodes(core, "work")
    assert len(nodes) == 3
    assert nodes[node_1].metadata.labels[QUARANTINE_LABEL] == "Quarantined"
    assert kubelet_version(nodes[node_2]) == "v1.30.0"


def test_node_image_upgrade_reimages_every_node(emulator, aks_client, kube_client):
    # GIVEN the seed-rolling cluster on an older node image
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)
    latest = aks.agent_pools.get_upgrade_profile(
        cluster.resource_group, cluster.name, "nodepool1").properties.latest_node_image_version

    # WHEN a node image upgrade is requested
    aks.agent_pools.begin_upgrade_node_image_version(cluster.resource_group, cluster.name, "nodepool1").result()

    # THEN every node of the pool runs the latest image, on the same Kubernetes version
    nodes = pool_nodes(core, "nodepool1")
    assert len(nodes) == 2
    assert {n.metadata.labels["kubernetes.azure.com/node-image-version"] for n in nodes.values()} == {latest}
    assert {kubelet_version(n) for n in nodes.values()} == {"v1.30.0"}
    pool = aks.agent_pools.get(cluster.resource_group, cluster.name, "nodepool1")
    assert pool.properties.node_image_version == latest


def test_node_images_are_offered_per_pool(emulator, aks_client, kube_client):
    # GIVEN a newer image released for the user pool only
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)
    newer = "AKSUbuntu-2204gen2containerd-202701.09.0"
    emu.arm.release_node_image(cluster, "nodepool1", newer)
    profile = aks.agent_pools.get_upgrade_profile
    offered = {pool: profile(cluster.resource_group, cluster.name, pool).properties.latest_node_image_version
               for pool in ("system", "nodepool1")}
    assert offered["nodepool1"] == newer and offered["system"] != newer
    # WHEN the user pool's node image is upgraded
    aks.agent_pools.begin_upgrade_node_image_version(cluster.resource_group, cluster.name, "nodepool1").result()
    # THEN its nodes run its own latest image; the system pool is untouched
    assert {n.metadata.labels["kubernetes.azure.com/node-image-version"]
            for n in pool_nodes(core, "nodepool1").values()} == {newer}
    assert {n.metadata.labels["kubernetes.azure.com/node-image-version"]
            for n in pool_nodes(core, "system").values()} != {newer}


def test_an_image_published_in_a_clusters_region_is_offered_to_its_pools_and_taken_by_new_ones(
        emulator, aks_client, kube_client):
    # GIVEN two clusters; AKS publishes a newer image in the first one's region only
    emu = emulator("seed-rolling", "seed-pdb")
    first, second = emu.clusters()
    aks = aks_client(emu)
    newer = "AKSUbuntu-2204gen2containerd-202701.09.0"
    emu.arm.publish_node_image(first, newer)

    def offered(cluster) -> set[str]:
        return {aks.agent_pools.get_upgrade_profile(cluster.resource_group, cluster.name, pool)
                .properties.latest_node_image_version for pool in ("system", "nodepool1")}

    # THEN every pool of that image family there is offered it, and the other cluster's are not
    assert offered(first) == {newer} and newer not in offered(second)
    # AND a pool created there from now on runs it
    aks.agent_pools.begin_create_or_update(first.resource_group, first.name, "extra", {
        "properties": {"count": 1, "mode": "User", "vmSize": "Standard_D2s_v5"}}).result()
    created = aks.agent_pools.get(first.resource_group, first.name, "extra")
    assert created.properties.node_image_version == newer
    core = kube_client(aks, first)
    assert {n.metadata.labels["kubernetes.azure.com/node-image-version"]
            for n in pool_nodes(core, "extra").values()} == {newer}


def test_rolling_events_reach_a_webhook_in_both_schemas(emulator, aks_client, event_receiver):
    # GIVEN webhook subscriptions in the Event Grid and CloudEvents schemas
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    emu.subscribe(event_receiver.url, schema="EventGridSchema")
    emu.subscribe(event_receiver.url, schema="CloudEventSchemaV1_0")

    # WHEN the pool is upgraded
    upgrade(aks, cluster, "nodepool1", "1.31").result()
    assert emu.events.wait_delivered()

    # THEN Started and Succeeded arrive in both schemas, as Event Grid delivers them
    grid = [e for e in event_receiver.events() if "eventType" in e]
    cloud = [e for e in event_receiver.events() if "specversion" in e]
    assert sorted(e["eventType"] for e in grid) == [
        "Microsoft.ContainerService.NodePoolRollingStarted", "Microsoft.ContainerService.NodePoolRollingSucceeded"]
    assert sorted(e["type"] for e in cloud) == [
        "Microsoft.ContainerService.NodePoolRollingStarted", "Microsoft.ContainerService.NodePoolRollingSucceeded"]
    for event in grid:
        assert event["topic"] == cluster.arm_id
        assert event["subject"] == cluster.name
        assert event["dataVersion"] == "1"
        assert event["data"] == {"nodePoolName": "nodepool1"}
    for event in cloud:
        assert event["source"] == cluster.arm_id
        assert event["subject"] == cluster.name
        assert event["data"] == {"nodePoolName": "nodepool1"}
    content_types = {n["content_type"].split(";")[0] for n in event_receiver.notifications}
    assert content_types == {"application/json", "application/cloudevents-batch+json"}
    assert {n["event_type_header"] for n in event_receiver.notifications} == {"Notification"}


def test_failed_upgrade_emits_rolling_failed(emulator, aks_client, event_receiver):
    # GIVEN a subscription to the seed-pdb cluster's events
    emu = emulator("seed-pdb")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    emu.subscribe(event_receiver.url)

    # WHEN the PDB makes the upgrade fail
    with pytest.raises(HttpResponseError):
        upgrade(aks, cluster, "nodepool1", "1.31").result()
    assert emu.events.wait_delivered()

    # THEN NodePoolRollingFailed is delivered
    types = sorted(e["eventType"].rsplit(".", 1)[-1] for e in event_receiver.events())
    assert types == ["NodePoolRollingFailed", "NodePoolRollingStarted"]


@pytest.mark.parametrize(
    ("switch", "expected_count"),
    [({"duplicate": True}, 4), ({"reorder": True}, 2)],
)
def test_duplicate_and_reordered_delivery_can_be_switched_on(emulator, event_receiver, switch, expected_count):
    # GIVEN a subscription with duplicate or reordered delivery
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    emu.subscribe(event_receiver.url, **switch)

    # WHEN two events are published in order
    first = emu.publish(cluster.arm_id, "NewKubernetesVersionAvailable")
    second = emu.publish(cluster.arm_id, "ClusterSupportEnding")
    assert emu.events.wait_delivered()

    # THEN duplicates arrive twice each, or the later event arrives first
    ids = [e["id"] for e in event_receiver.events()]
    assert len(ids) == expected_count
    if switch.get("duplicate"):
        assert sorted(ids) == sorted([first["id"], first["id"], second["id"], second["id"]])
    else:
        assert ids == [second["id"], first["id"]]


def test_failed_deliveries_are_retried_in_the_background(emulator, event_receiver):
    # GIVEN a webhook that fails its first two notifications
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    emu.subscribe(event_receiver.url)
    event_receiver.fail_next = 2

    # WHEN an event is published
    published = emu.publish(cluster.arm_id, "ClusterSupportEnding")
    assert emu.events.wait_delivered()

    # THEN it arrives once, after the refused attempts
    assert event_receiver.refused == 2
    assert [e["id"] for e in event_receiver.events()] == [published["id"]]


def test_on_demand_events_carry_aks_data(emulator, event_receiver):
    # GIVEN a subscription
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    emu.subscribe(event_receiver.url)

    # WHEN version and support events are published on demand
    emu.publish(cluster.arm_id, "NewKubernetesVersionAvailable")
    emu.publish(cluster.arm_id, "ClusterSupportEnded")
    assert emu.events.wait_delivered()

    # THEN they carry the data fields AKS documents
    by_type = {e["eventType"].rsplit(".", 1)[-1]: e["data"] for e in event_receiver.events()}
    assert set(by_type["NewKubernetesVersionAvailable"]) >= {
        "latestSupportedKubernetesVersion", "latestStableKubernetesVersion", "lowestMinorKubernetesVersion"}
    assert by_type["ClusterSupportEnded"] == {"kubernetesVersion": "1.30.0"}


def test_sdk_model_put_with_only_the_version_upgrades(emulator, aks_client, kube_client):
    # GIVEN a fresh AgentPool model carrying only the new version (what a minimal client sends)
    emu = emulator("seed-bluegreen")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)

    # WHEN it is PUT
    body = AgentPool({"properties": {"orchestratorVersion": "1.31.7"}})
    result = aks.agent_pools.begin_create_or_update(cluster.resource_group, cluster.name, "blue", body).result()

    # THEN the pool keeps its count and is upgraded to that exact patch
    assert result.properties.count == 2
    assert {kubelet_version(n) for n in pool_nodes(core, "blue").values()} == {"v1.31.7"}


# ------------------------------------------------------------------ maxBlockedNodes (Cordon) ----------

def _two_blocked_nodes_cluster(name: str, **pool_settings) -> ClusterBuilder:
    """A 4-node pool: PDBs forbid evicting app-a (node 0) and app-b (node 1); app-c, app-d move freely."""
    builder = (
        ClusterBuilder(name)
        .pool("system", count=1, mode="System", node_taints=["CriticalAddonsOnly=true:NoSchedule"])
        .pool("work", count=4, undrainable_node_behavior="Cordon", **pool_settings)
    )
    for index, app in enumerate(("app-a", "app-b", "app-c", "app-d")):
        builder.deployment("default", app, pool="work", place_on=[("work", index)])
    return builder.pdb("default", "app-a-pdb", app="app-a", min_available=1).pdb(
        "default", "app-b-pdb", app="app-b", min_available=1)


CANCELED = "Canceled"
FAILED = "Failed"


@pytest.mark.parametrize(
    ("max_surge", "max_blocked_nodes", "final_state", "quarantined", "upgraded", "untouched"),
    [
        # default maxBlockedNodes = maxSurge = 1: node 0 takes the only surge node, 3 nodes remain
        ("1", None, CANCELED, {0}, set(), {1, 2, 3}),
        # one more blocked node tolerated: a new surge node replaces the one node 0 kept; node 1 then
        # exhausts maxBlockedNodes while nodes 2 and 3 are still to upgrade
        ("1", "2", CANCELED, {0, 1}, set(), {2, 3}),
        # maxBlockedNodes above the blocked count: the upgrade goes on and ends Failed, not Canceled
        ("1", "3", FAILED, {0, 1}, {2, 3}, set()),
        ("1", "75%", FAILED, {0, 1}, {2, 3}, set()),  # 3 of 4 nodes, rounded up
        # maxSurge 2 drains nodes 0 and 1 together: both blocked use both surge nodes
        ("2", None, CANCELED, {0, 1}, set(), {2, 3}),
        ("2", "4", FAILED, {0, 1}, {2, 3}, set()),
    ],
)
def test_max_blocked_nodes_decides_how_many_quarantined_nodes_the_upgrade_tolerates(
        emulator, aks_client, kube_client, max_surge, max_blocked_nodes, final_state, quarantined, upgraded,
        untouched):
    # GIVEN Cordon, two PDB-blocked nodes of four, maxSurge and maxBlockedNodes as in the row
    emu = emulator(_two_blocked_nodes_cluster("aks-blocked", max_surge=max_surge,
                                              max_blocked_nodes=max_blocked_nodes))
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)
    original = sorted(pool_nodes(core, "work"))

    # WHEN the pool's version is changed through the SDK
    with pytest.raises(HttpResponseError) as failure:
        upgrade(aks, cluster, "work", "1.31").result()

    # THEN the operation ends in the row's state with AKS's message
    pool = aks.agent_pools.get(cluster.resource_group, cluster.name, "work")
    assert pool.properties.provisioning_state == final_state
    if final_state == CANCELED:
        assert failure.value.error.message == (
            "Cordoned nodes have used all surge nodes but there are more nodes to be upgraded. "
            "Please fix your PDBs blocking node drain and kindly retry upgrade operation.")
    else:
        assert failure.value.error.code == "UpgradeFailed"
        assert f"Drain node {original[0]} failed" in failure.value.error.message

    # AND blocked nodes are quarantined on 1.30, each kept with one surge node as its replacement
    nodes = pool_nodes(core, "work")
    by_index = {index: nodes[name] for index, name in enumerate(original)}
    assert {i for i, n in by_index.items() if (n.metadata.labels or {}).get(QUARANTINE_LABEL) == "Quarantined"} == (
        quarantined)
    assert all(by_index[i].spec.unschedulable and kubelet_version(by_index[i]) == "v1.30.0" for i in quarantined)
    assert {i for i, n in by_index.items() if kubelet_version(n).startswith("v1.31.")} == upgraded
    assert {i for i in untouched if kubelet_version(by_index[i]) == "v1.30.0"
            and not by_index[i].spec.unschedulable} == untouched
    replacements = set(nodes) - set(original)
    assert len(replacements) == len(quarantined)
    assert all(kubelet_version(nodes[n]).startswith("v1.31.") and not nodes[n].spec.unschedulable
               for n in replacements)
    assert pool.properties.count == len(original) + len(quarantined)


# ------------------------------------------------------- maxUnavailable batches and node soak ---------

def _four_node_pool(name: str, **pool_settings) -> ClusterBuilder:
    builder = (
        ClusterBuilder(name)
        .pool("system", count=1, mode="System", node_taints=["CriticalAddonsOnly=true:NoSchedule"])
        .pool("work", count=4, **pool_settings)
    )
    for index, app in enumerate(("app-a", "app-b", "app-c", "app-d")):
        builder.deployment("default", app, pool="work", place_on=[("work", index)])
    return builder


def node_events(core) -> list:
    """The upgrader's node events in the order the cluster recorded them (resourceVersion)."""
    events = [e for e in core.list_namespaced_event("default").items if e.involved_object.kind == "Node"]
    return sorted(events, key=lambda e: int(e.metadata.resource_version))


def drain_started(event, node: str) -> bool:
    return event.reason == "Drain" and event.message == f"Draining node: {node}"


def reimaged(event, node: str) -> bool:
    return event.reason == "Upgrade" and event.message.startswith(f"Successfully reimaged node: {node} ")


def position(events: list, matches, node: str) -> int:
    (index,) = [i for i, e in enumerate(events) if matches(e, node)]
    return index


@pytest.mark.parametrize(
    ("max_surge", "max_unavailable", "surge_nodes", "batches"),
    [
        ("0", "2", 0, [[0, 1], [2, 3]]),      # no surge at all: two nodes drained side by side
        ("0", "50%", 0, [[0, 1], [2, 3]]),    # percent of the pool, as AKS computes it
        ("1", "1", 1, [[0, 1], [2, 3]]),      # batch = maxSurge + maxUnavailable
        ("0", "3", 0, [[0, 1, 2], [3]]),
    ],
)
def test_max_unavailable_drains_nodes_in_parallel_batches(emulator, aks_client, kube_client, max_surge,
                                                         max_unavailable, surge_nodes, batches):
    # GIVEN a 4-node user pool with maxSurge / maxUnavailable as in the row
    emu = emulator(_four_node_pool("aks-unavailable", max_surge=max_surge, max_unavailable=max_unavailable))
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)
    original = sorted(pool_nodes(core, "work"))

    # WHEN the pool is upgraded through the SDK
    result = upgrade(aks, cluster, "work", "1.31").result()

    # THEN it succeeded with only the surge nodes maxSurge asks for, and the same 4 nodes at 1.31
    assert result.properties.provisioning_state == "Succeeded"
    events = node_events(core)
    assert len([e for e in events if e.reason == "Surge" and e.message.startswith("Created a surge node")]) == (
        surge_nodes)
    nodes = pool_nodes(core, "work")
    assert sorted(nodes) == original
    assert all(kubelet_version(n).startswith("v1.31.") and not n.spec.unschedulable for n in nodes.values())

    # AND each batch's nodes were all cordoned and drained before any of them was reimaged, and the
    # next batch started only after the previous one was reimaged
    previous_batch_done = -1
    for batch in batches:
        names = [original[i] for i in batch]
        drains = [position(events, drain_started, n) for n in names]
        reimages = [position(events, reimaged, n) for n in names]
        assert previous_batch_done < min(drains)
        assert max(drains) < min(reimages)
        previous_batch_done = max(reimages)


def test_node_soak_waits_between_drain_and_reimage_in_emulated_time(emulator, aks_client, kube_client):
    # GIVEN a 2-node pool (maxSurge 1) that soaks each drained node for 30 AKS minutes
    soak = timedelta(minutes=30)
    emu = emulator(_two_node_pool_with_soak(soak))
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)
    node_1, node_2 = sorted(pool_nodes(core, "work"))

    # WHEN the pool is upgraded
    assert upgrade(aks, cluster, "work", "1.31").result().properties.provisioning_state == "Succeeded"

    # THEN, on the emulator's clock, each node was reimaged at least the soak after its drain began,
    # and node 2 was drained only after node 1 had soaked and been reimaged
    events = node_events(core)
    for node in (node_1, node_2):
        drained_at = events[position(events, drain_started, node)].first_timestamp
        reimaged_at = events[position(events, reimaged, node)].first_timestamp
        assert reimaged_at - drained_at >= soak
    assert position(events, reimaged, node_1) < position(events, drain_started, node_2)


def _two_node_pool_with_soak(soak: timedelta) -> ClusterBuilder:
    return (
        ClusterBuilder("aks-soak")
        .pool("system", count=1, mode="System", node_taints=["CriticalAddonsOnly=true:NoSchedule"])
        .pool("work", count=2, max_surge="1", node_soak_minutes=int(soak.total_seconds() // 60))
        .deployment("default", "app-a", pool="work", place_on=[("work", 0)])
        .deployment("default", "app-b", pool="work", place_on=[("work", 1)])
    )
