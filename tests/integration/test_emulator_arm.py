"""The emulator's ARM API as azure-mgmt-containerservice sees it: reads, writes, long-running
operations, ETags and ARM-shaped errors. Driven only through the real SDK (and plain HTTP for the
401 case the SDK cannot produce)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerservice.models import AgentPool, AgentPoolDeleteMachinesParameter

from sandbox.aks_emulator.scenarios import ClusterBuilder
from upgrade.adapters.arm_schema import PREVIEW_API_VERSION

pytestmark = pytest.mark.integration


def pool_body(aks, cluster, name: str) -> AgentPool:
    return aks.agent_pools.get(cluster.resource_group, cluster.name, name)


def test_clusters_are_listed_per_subscription_and_resource_group(emulator, aks_client):
    # GIVEN clusters in two subscriptions and two resource groups
    emu = emulator(
        ClusterBuilder("aks-one", subscription_id="sub-a", resource_group="rg-1").pool("system", count=1, mode="System"),
        ClusterBuilder("aks-two", subscription_id="sub-a", resource_group="rg-2").pool("system", count=1, mode="System"),
        ClusterBuilder("aks-three", subscription_id="sub-b", resource_group="rg-1").pool("system", count=1,
                                                                                        mode="System"),
    )

    # WHEN they are listed and read through the SDK
    aks_a = aks_client(emu, "sub-a")
    in_subscription = sorted(c.name for c in aks_a.managed_clusters.list())
    in_group = [c.name for c in aks_a.managed_clusters.list_by_resource_group("rg-2")]
    cluster = aks_a.managed_clusters.get("rg-1", "aks-one")

    # THEN each subscription sees its own clusters, with ARM's shape
    assert in_subscription == ["aks-one", "aks-two"]
    assert in_group == ["aks-two"]
    assert [c.name for c in aks_client(emu, "sub-b").managed_clusters.list()] == ["aks-three"]
    assert cluster.id == "/subscriptions/sub-a/resourceGroups/rg-1/providers/Microsoft.ContainerService/managedClusters/aks-one"
    assert cluster.properties.provisioning_state == "Succeeded"
    assert cluster.properties.kubernetes_version == "1.30.0"
    assert [p.name for p in cluster.properties.agent_pool_profiles] == ["system"]


def test_upgrade_profiles_offer_the_next_minor(emulator, aks_client):
    # GIVEN a 1.30 cluster
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)

    # WHEN its upgrade profiles are read
    cluster_profile = aks.managed_clusters.get_upgrade_profile(cluster.resource_group, cluster.name)
    pool_profile = aks.agent_pools.get_upgrade_profile(cluster.resource_group, cluster.name, "nodepool1")

    # THEN 1.31.x versions are offered, and no skipped minor
    offered = [u.kubernetes_version for u in cluster_profile.properties.control_plane_profile.upgrades]
    assert any(v.startswith("1.31.") for v in offered)
    assert not any(v.startswith("1.32.") for v in offered)
    assert pool_profile.properties.kubernetes_version == "1.30.0"
    assert any(u.kubernetes_version.startswith("1.31.") for u in pool_profile.properties.upgrades)
    assert pool_profile.properties.latest_node_image_version
    assert {p.name for p in cluster_profile.properties.agent_pool_profiles} == {"system", "nodepool1"}


def test_user_credentials_are_a_kubeconfig_for_the_cluster(emulator, aks_client):
    # GIVEN a running cluster
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]

    # WHEN the user credentials are listed
    credentials = aks_client(emu).managed_clusters.list_cluster_user_credentials(cluster.resource_group, cluster.name)

    # THEN the kubeconfig points at the cluster's Kubernetes API with the bearer token
    kubeconfig = yaml.safe_load(credentials.kubeconfigs[0].value)
    assert kubeconfig["clusters"][0]["cluster"]["server"] == cluster.kube_url
    assert kubeconfig["users"][0]["user"]["token"] == emu.token


def test_agent_pools_are_listed_and_read(emulator, aks_client):
    # GIVEN the seed-pdb cluster
    emu = emulator("seed-pdb")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)

    # WHEN its pools are listed and one is read
    pools = {p.name: p for p in aks.agent_pools.list(cluster.resource_group, cluster.name)}
    pool = pool_body(aks, cluster, "nodepool1")

    # THEN they carry AKS's properties
    assert set(pools) == {"system", "nodepool1"}
    assert pools["system"].properties.mode == "System"
    assert pool.properties.count == 2
    assert pool.properties.orchestrator_version == "1.30.0"
    assert pool.properties.upgrade_settings.max_surge == "2"
    assert pool.properties.upgrade_settings.undrainable_node_behavior == "Cordon"
    assert pool.properties.provisioning_state == "Succeeded"
    assert pool.properties.e_tag


def test_a_new_pool_is_created_with_ready_nodes(emulator, aks_client, kube_client):
    # GIVEN the blue-green seed
    emu = emulator("seed-bluegreen")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)

    # WHEN a green pool is created at the target version
    poller = aks.agent_pools.begin_create_or_update(
        cluster.resource_group, cluster.name, "green",
        AgentPool({"properties": {"count": 2, "vmSize": "Standard_D4s_v5", "orchestratorVersion": "1.31",
                                  "mode": "User"}}),
    )
    created = poller.result()

    # THEN it exists with 2 Ready nodes at 1.31
    assert created.properties.provisioning_state == "Succeeded"
    assert created.properties.current_orchestrator_version.startswith("1.31.")
    nodes = core.list_node(label_selector="agentpool=green").items
    assert len(nodes) == 2
    assert all(n.status.node_info.kubelet_version.startswith("v1.31.") for n in nodes)
    assert all(c.status == "True" for n in nodes for c in n.status.conditions if c.type == "Ready")


def test_deleting_a_pool_ignoring_pdbs_removes_it(emulator, aks_client, kube_client):
    # GIVEN the seed-pdb cluster (a PDB would block the drain)
    emu = emulator("seed-pdb")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)

    # WHEN the pool is deleted with ignore-pod-disruption-budget
    aks.agent_pools.begin_delete(cluster.resource_group, cluster.name, "nodepool1",
                                 ignore_pod_disruption_budget=True).result()

    # THEN the pool and its nodes are gone
    with pytest.raises(ResourceNotFoundError):
        pool_body(aks, cluster, "nodepool1")
    assert core.list_node(label_selector="agentpool=nodepool1").items == []


def test_deleting_a_pool_honours_pdbs_by_default(emulator, aks_client):
    # GIVEN the seed-pdb cluster, whose PDB forbids evicting app-a
    emu = emulator("seed-pdb")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)

    # WHEN the pool is deleted without ignoring PDBs
    with pytest.raises(HttpResponseError) as failure:
        aks.agent_pools.begin_delete(cluster.resource_group, cluster.name, "nodepool1").result()

    # THEN the drain fails on the PDB and the pool stays
    assert "blocked by pdb app-a-pdb" in failure.value.error.message
    assert pool_body(aks, cluster, "nodepool1").properties.provisioning_state == "Failed"


def test_delete_machines_removes_the_named_nodes(emulator, aks_client, kube_client):
    # GIVEN the seed-rolling cluster
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    core = kube_client(aks, cluster)
    victim = sorted(n.metadata.name for n in core.list_node(label_selector="agentpool=nodepool1").items)[0]

    # WHEN one machine is deleted
    aks.agent_pools.begin_delete_machines(cluster.resource_group, cluster.name, "nodepool1",
                                          AgentPoolDeleteMachinesParameter(machine_names=[victim])).result()

    # THEN the node is gone and the pool count follows
    assert victim not in {n.metadata.name for n in core.list_node(label_selector="agentpool=nodepool1").items}
    assert pool_body(aks, cluster, "nodepool1").properties.count == 1


def start_stuck_upgrade(emulator, aks_client, name: str):
    """An upgrade of pool "work" to 1.31 held by a PDB for a day-long drain timeout: (aks, cluster, poller)."""
    emu = emulator(
        ClusterBuilder(name)
        .pool("system", count=1, mode="System")
        .pool("work", count=1, max_surge="1", drain_timeout_minutes=1440)
        .deployment("default", "app-a", pool="work", place_on=[("work", 0)])
        .pdb("default", "app-a-pdb", app="app-a", min_available=1)
    )
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    body = pool_body(aks, cluster, "work")
    body.properties.orchestrator_version = "1.31"
    return aks, cluster, aks.agent_pools.begin_create_or_update(cluster.resource_group, cluster.name, "work", body)


def test_abort_cancels_a_running_upgrade(emulator, aks_client):
    # GIVEN an upgrade stuck on a PDB with a long drain timeout
    aks, cluster, poller = start_stuck_upgrade(emulator, aks_client, "aks-abort")

    # WHEN the latest operation is aborted
    aks.agent_pools.begin_abort_latest_operation(cluster.resource_group, cluster.name, "work").result()

    # THEN the upgrade ends Canceled, and so does the pool
    with pytest.raises(HttpResponseError) as failure:
        poller.result()
    assert failure.value.error.code == "OperationCanceled"
    assert pool_body(aks, cluster, "work").properties.provisioning_state == "Canceled"


def test_if_match_with_a_stale_etag_is_refused_with_412(emulator, aks_client):
    # GIVEN a pool read, then changed by someone else
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    stale = pool_body(aks, cluster, "nodepool1")
    aks.agent_pools.begin_create_or_update(cluster.resource_group, cluster.name, "nodepool1",
                                           pool_body(aks, cluster, "nodepool1")).result()

    # WHEN the stale copy is written with If-Match
    with pytest.raises(HttpResponseError) as failure:
        aks.agent_pools.begin_create_or_update(
            cluster.resource_group, cluster.name, "nodepool1", stale,
            etag=stale.properties.e_tag, match_condition=MatchConditions.IfNotModified)

    # THEN ARM refuses it with 412, while the current ETag is accepted
    assert failure.value.status_code == 412
    assert failure.value.error.code == "PreconditionFailed"
    fresh = pool_body(aks, cluster, "nodepool1")
    aks.agent_pools.begin_create_or_update(
        cluster.resource_group, cluster.name, "nodepool1", fresh,
        etag=fresh.properties.e_tag, match_condition=MatchConditions.IfNotModified).result()


def _with_settings(**settings):
    def change(pool: AgentPool) -> AgentPool:
        pool.properties.upgrade_settings = dict(pool.properties.upgrade_settings or {}, **settings)
        return pool
    return change


def _with_version(version: str):
    def change(pool: AgentPool) -> AgentPool:
        pool.properties.orchestrator_version = version
        return pool
    return change


@pytest.mark.parametrize(
    ("pool_name", "change", "status", "code"),
    [
        ("nodepool1", _with_settings(maxSurge="lots"), 400, "InvalidParameter"),
        ("nodepool1", _with_settings(maxSurge="150%"), 400, "InvalidParameter"),
        ("nodepool1", _with_settings(maxSurge="0", maxUnavailable="0"), 400, "InvalidParameter"),
        ("system", _with_settings(maxUnavailable="1"), 400, "InvalidParameter"),
        ("nodepool1", _with_settings(drainTimeoutInMinutes=0), 400, "InvalidParameter"),
        ("nodepool1", _with_settings(maxBlockedNodes="1"), 400, "InvalidParameter"),
        ("nodepool1", _with_version("1.29.14"), 400, "AgentPoolUpgradeVersionNotAllowed"),
        ("nodepool1", _with_version("1.32"), 400, "AgentPoolUpgradeVersionNotAllowed"),
        ("nodepool1", _with_version("9.99"), 400, "InvalidParameter"),
    ],
    ids=["maxSurge-text", "maxSurge-over-100%", "no-surge-no-unavailable", "maxUnavailable-on-system",
         "drain-timeout-zero", "maxBlocked-without-cordon", "downgrade", "skip-a-minor", "unknown-version"],
)
def test_invalid_pool_updates_are_refused_with_arm_errors(emulator, aks_client, pool_name, change, status, code):
    # GIVEN the seed-rolling cluster
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)

    if "maxBlockedNodes" in (change(AgentPool({"properties": {}})).properties.upgrade_settings or {}):
        aks = aks_client(emu, api_version=PREVIEW_API_VERSION)  # the version that defines it

    # WHEN an invalid update is PUT
    with pytest.raises(HttpResponseError) as failure:
        aks.agent_pools.begin_create_or_update(cluster.resource_group, cluster.name, pool_name,
                                               change(pool_body(aks, cluster, pool_name)))

    # THEN ARM answers with the AKS error code and nothing changes
    assert failure.value.status_code == status
    assert failure.value.error.code == code
    assert pool_body(aks, cluster, pool_name).properties.provisioning_state == "Succeeded"


@pytest.mark.parametrize("bad_name", ["NodePool", "1pool", "pool-one", "averylongpoolname"])
def test_bad_pool_names_are_refused(emulator, aks_client, bad_name):
    # GIVEN a cluster
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]

    # WHEN a pool with a name AKS refuses is created
    with pytest.raises(HttpResponseError) as failure:
        aks_client(emu).agent_pools.begin_create_or_update(
            cluster.resource_group, cluster.name, bad_name, AgentPool({"properties": {"count": 1}}))

    # THEN ARM answers InvalidParameter
    assert failure.value.status_code == 400
    assert failure.value.error.code == "InvalidParameter"


def test_a_missing_pool_is_404_not_found(emulator, aks_client):
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    # WHEN a pool that does not exist is read THEN the SDK raises ResourceNotFoundError with NotFound
    with pytest.raises(ResourceNotFoundError) as failure:
        aks_client(emu).agent_pools.get(cluster.resource_group, cluster.name, "nosuchpool")
    assert failure.value.error.code == "NotFound"


def test_a_second_operation_while_one_runs_is_409(emulator, aks_client):
    # GIVEN an upgrade in progress (blocked on a PDB for a long drain timeout)
    aks, cluster, _ = start_stuck_upgrade(emulator, aks_client, "aks-busy")

    # WHEN another write arrives
    with pytest.raises(HttpResponseError) as failure:
        aks.agent_pools.begin_delete(cluster.resource_group, cluster.name, "work")

    # THEN it is refused with 409 OperationNotAllowed, and the pool shows Upgrading
    assert failure.value.status_code == 409
    assert failure.value.error.code == "OperationNotAllowed"
    assert pool_body(aks, cluster, "work").properties.provisioning_state == "Upgrading"


def test_the_last_system_pool_cannot_be_deleted(emulator, aks_client):
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    # WHEN the only System pool is deleted THEN ARM refuses it
    with pytest.raises(HttpResponseError) as failure:
        aks_client(emu).agent_pools.begin_delete(cluster.resource_group, cluster.name, "system")
    assert failure.value.status_code == 400
    assert failure.value.error.code == "OperationNotAllowed"


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        ("upgrade", "InsufficientVCPUQuota"),
        ("new-pool", "InsufficientVCPUQuota"),
    ],
)
def test_vcpu_quota_is_enforced_for_surge_and_new_nodes(emulator, aks_client, write, expected):
    # GIVEN a subscription with only the vCPUs its 3 nodes use (4 vCPU each)
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    emu.set_vcpu_quota(cluster.subscription_id, 12)
    aks = aks_client(emu)

    # WHEN a write needs more nodes (a surge node, or a new pool)
    with pytest.raises(HttpResponseError) as failure:
        if write == "upgrade":
            body = pool_body(aks, cluster, "nodepool1")
            body.properties.orchestrator_version = "1.31"
            aks.agent_pools.begin_create_or_update(cluster.resource_group, cluster.name, "nodepool1", body)
        else:
            aks.agent_pools.begin_create_or_update(cluster.resource_group, cluster.name, "green",
                                                   AgentPool({"properties": {"count": 1}}))

    # THEN ARM refuses it for quota
    assert failure.value.status_code == 400
    assert failure.value.error.code == expected


@pytest.mark.parametrize(
    ("authorization", "code"),
    [(None, "AuthenticationFailed"), ("Bearer wrong-token", "InvalidAuthenticationToken")],
)
def test_requests_without_the_bearer_token_get_401(emulator, authorization, code):
    # GIVEN a running emulator
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    request = urllib.request.Request(f"{emu.arm_url}{cluster.arm_id}?api-version=2026-08-01")
    if authorization:
        request.add_header("Authorization", authorization)

    # WHEN ARM is called without the right token THEN it answers 401 with an ARM error
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(request, timeout=5)
    assert failure.value.code == 401
    assert json.loads(failure.value.read())["error"]["code"] == code


def test_standalone_emulator_prints_its_endpoints_and_stops_on_sigterm(tmp_path):
    # GIVEN the emulator started as a program with a seed scenario
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.aks_emulator", "--scenario", "seed-pdb", "--kubeconfig", str(kubeconfig),
         "--time-scale", "0.05"],
        stdout=subprocess.PIPE, text=True, cwd=os.getcwd(),
    )
    try:
        # WHEN it is ready
        ready = json.loads(process.stdout.readline())

        # THEN it printed one JSON line with its endpoints, wrote the kubeconfig, and ARM answers
        assert ready["clusterId"].endswith("/managedClusters/aks-seed-pdb")
        assert yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == ready["kubeUrl"]
        request = urllib.request.Request(f"{ready['armUrl']}{ready['clusterId']}?api-version=2026-08-01",
                                         headers={"Authorization": f"Bearer {ready['token']}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["name"] == "aks-seed-pdb"
    finally:
        # AND SIGTERM stops it cleanly
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close()


def test_a_property_the_api_version_lacks_is_refused_naming_it(emulator, aks_client):
    # GIVEN the seed-pdb pool (Cordon) read through the SDK at its own api-version, 2026-08-01
    emu = emulator("seed-pdb")
    cluster = emu.clusters()[0]
    aks = aks_client(emu)
    assert aks._config.api_version == "2026-08-01"
    body = pool_body(aks, cluster, "nodepool1")

    # WHEN maxBlockedNodes, which only the preview defines, is PUT at 2026-08-01
    body.properties.upgrade_settings["maxBlockedNodes"] = "2"
    with pytest.raises(HttpResponseError) as failure:
        aks.agent_pools.begin_create_or_update(cluster.resource_group, cluster.name, "nodepool1", body)

    # THEN ARM refuses the body with 400 InvalidRequestContent naming the property, and nothing changes
    assert failure.value.status_code == 400
    assert failure.value.error.code == "InvalidRequestContent"
    assert failure.value.error.target == "properties.upgradeSettings.maxBlockedNodes"
    assert "Could not find member 'maxBlockedNodes' on object of type 'AgentPoolUpgradeSettings'" in (
        failure.value.error.message)
    assert "maxBlockedNodes" not in emu.cluster(cluster.arm_id).pools["nodepool1"].upgrade_settings

    # AND the same body at the preview api-version, which defines it, is accepted
    preview = aks_client(emu, api_version=PREVIEW_API_VERSION)
    preview.agent_pools.begin_create_or_update(cluster.resource_group, cluster.name, "nodepool1", body).result()
    assert emu.cluster(cluster.arm_id).pools["nodepool1"].upgrade_settings["maxBlockedNodes"] == "2"


def test_each_api_version_shows_its_own_properties_and_a_stable_put_keeps_the_preview_ones(emulator, aks_client):
    # GIVEN a pool whose maxBlockedNodes was set at the preview
    emu = emulator("seed-pdb")
    cluster = emu.clusters()[0]
    stable, preview = aks_client(emu), aks_client(emu, api_version=PREVIEW_API_VERSION)
    body = pool_body(preview, cluster, "nodepool1")
    body.properties.upgrade_settings["maxBlockedNodes"] = "3"
    preview.agent_pools.begin_create_or_update(cluster.resource_group, cluster.name, "nodepool1", body).result()

    # WHEN it is read at each version, then updated at the stable one
    at_stable = pool_body(stable, cluster, "nodepool1")
    assert "maxBlockedNodes" not in at_stable.properties.upgrade_settings
    assert pool_body(preview, cluster, "nodepool1").properties.upgrade_settings["maxBlockedNodes"] == "3"
    at_stable.properties.upgrade_settings.drain_timeout_in_minutes = 7
    stable.agent_pools.begin_create_or_update(cluster.resource_group, cluster.name, "nodepool1", at_stable).result()

    # THEN the stable PUT left the field it does not know as it was
    settings = pool_body(preview, cluster, "nodepool1").properties.upgrade_settings
    assert (settings["maxBlockedNodes"], settings.drain_timeout_in_minutes) == ("3", 7)


@pytest.mark.parametrize(
    ("query", "status", "code", "text"),
    [
        ("?api-version=2099-01-01", 400, "InvalidApiVersionParameter",
         "The api-version '2099-01-01' is invalid. The supported versions are '2026-08-02-preview,2026-08-01'."),
        ("", 400, "MissingApiVersionParameter",
         "The api-version query parameter (?api-version=) is required for all requests."),
        ("?api-version=2026-08-01", 200, None, None),
        (f"?api-version={PREVIEW_API_VERSION}", 200, None, None),
    ],
    ids=["unknown", "missing", "stable", "preview"],
)
def test_only_the_served_api_versions_are_accepted(emulator, query, status, code, text):
    # GIVEN a running emulator
    emu = emulator("seed-rolling")
    cluster = emu.clusters()[0]
    request = urllib.request.Request(f"{emu.arm_url}{cluster.arm_id}/agentPools/nodepool1{query}",
                                     headers={"Authorization": f"Bearer {emu.token}"})

    # WHEN a pool is read at that api-version THEN ARM answers as it does
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            answered, body = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        answered, body = error.code, json.loads(error.read())
    assert answered == status
    if code is not None:
        assert body["error"] == {"code": code, "message": text}
    else:
        assert body["name"] == "nodepool1"


def test_the_sdk_sees_an_unsupported_api_version_as_arm_reports_it(emulator, aks_client):
    emu = emulator("seed-rolling")
    with pytest.raises(HttpResponseError) as failure:
        list(aks_client(emu, api_version="2019-01-01").managed_clusters.list())
    assert (failure.value.status_code, failure.value.error.code) == (400, "InvalidApiVersionParameter")
