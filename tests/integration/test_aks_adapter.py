"""ContainerServiceAks against the emulator's ARM API, through the real azure-mgmt-containerservice client."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from upgrade.adapters.aks import (
    ContainerServiceAks,
    aks_from_settings,
    container_service_client,
    undefined_properties_error,
)
from upgrade.adapters.arm_schema import PREVIEW_API_VERSION, STABLE_API_VERSION
from upgrade.adapters.auth import arm_credential
from upgrade.domain.model import ClusterRef, UpgradeSettings
from upgrade.errors import Conflict, NotFound, PermanentError, TemporaryError
from upgrade.settings import load_settings

pytestmark = pytest.mark.integration


def _settings(emu, cluster):
    return load_settings({"ALLOWED_CLUSTERS": cluster.arm_id, "ARM_ENDPOINT": emu.arm_url, "ARM_DEV_TOKEN": emu.token})


@pytest.fixture
def seed_pdb(emulator):
    emu = emulator("seed-pdb")
    (cluster,) = emu.clusters()
    aks = aks_from_settings(_settings(emu, cluster), cluster.subscription_id)
    yield emu, ClusterRef.parse(cluster.arm_id), aks
    aks.close()


@pytest.fixture
def slow_seed(emulator):
    """Emulated AKS at 1 real second per minute: an upgrade takes long enough to watch it run."""
    emu = emulator("seed-rolling", time_scale=1.0)
    (cluster,) = emu.clusters()
    aks = aks_from_settings(_settings(emu, cluster), cluster.subscription_id)
    yield emu, ClusterRef.parse(cluster.arm_id), aks
    aks.close()


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_pools_map_to_the_domain_with_upgrade_settings(seed_pdb):
    _, cluster, aks = seed_pdb
    pools = {p.name: p for p in aks.list_pools(cluster)}
    assert set(pools) == {"system", "nodepool1"}
    user = pools["nodepool1"]
    assert (user.mode, user.count, user.orchestrator_version) == ("User", 2, "1.30.0")
    assert user.upgrade_settings.max_surge == "2"
    assert user.upgrade_settings.undrainable_node_behavior == "Cordon"
    assert user.provisioning_state == "Succeeded" and user.power_state == "Running"
    assert user.etag and user.vm_size
    assert pools["system"].node_taints == ("CriticalAddonsOnly=true:NoSchedule",)
    assert aks.get_pool(cluster, "nodepool1") == user
    assert aks.get_cluster_version(cluster) == "1.30.0"
    assert "1.31.7" in aks.available_upgrades(cluster, "nodepool1")


def test_missing_pool_is_not_found_with_arm_code(seed_pdb):
    _, cluster, aks = seed_pdb
    with pytest.raises(NotFound) as missing:
        aks.get_pool(cluster, "nosuchpool")
    assert (missing.value.status, missing.value.code) == (404, "NotFound")
    assert "Could not find agent pool" in str(missing.value)


def test_put_starts_the_upgrade_and_returns_at_once(slow_seed):
    _, cluster, aks = slow_seed
    pool = aks.get_pool(cluster, "nodepool1")
    # WHEN the version is raised
    started = time.monotonic()
    aks.begin_put_pool(cluster, replace(pool, orchestrator_version="1.31.7"), if_match=pool.etag)
    returned_after = time.monotonic() - started
    # THEN the call came back while the upgrade still runs (an upgrade takes emulated minutes)
    running = aks.get_pool(cluster, "nodepool1")
    assert running.provisioning_state == "Upgrading", returned_after
    # AND a second change meanwhile is a temporary conflict (an operation is in progress)
    with pytest.raises(TemporaryError) as busy:
        aks.begin_put_pool(cluster, replace(running, count=3))
    assert busy.value.status == 409 and "OperationNotAllowed" in str(busy.value)


def test_upgrade_completes_and_is_seen_by_a_later_get(seed_pdb):
    _, cluster, aks = seed_pdb
    pool = aks.get_pool(cluster, "system")
    aks.begin_put_pool(cluster, replace(pool, orchestrator_version="1.31.7"))
    _wait_for(lambda: aks.get_pool(cluster, "system").provisioning_state == "Succeeded")
    assert aks.get_pool(cluster, "system").orchestrator_version == "1.31.7"


def test_stale_etag_is_a_conflict(seed_pdb):
    _, cluster, aks = seed_pdb
    pool = aks.get_pool(cluster, "nodepool1")
    with pytest.raises(Conflict) as stale:
        aks.begin_put_pool(cluster, replace(pool, count=3), if_match="not-the-etag")
    assert stale.value.status == 412


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (UpgradeSettings(max_surge="-1"), "maxSurge"),
        (UpgradeSettings(max_surge="2", undrainable_node_behavior="Cordon", max_blocked_nodes="1"),
         "maxBlockedNodes"),
    ],
)
def test_invalid_upgrade_settings_are_permanent_with_the_arm_code(seed_pdb, settings, problem):
    _, cluster, aks = seed_pdb
    pool = aks.get_pool(cluster, "nodepool1")
    with pytest.raises(PermanentError) as invalid:
        aks.begin_put_pool(cluster, replace(pool, upgrade_settings=settings))
    assert (invalid.value.status, invalid.value.code) == (400, "InvalidParameter")
    assert problem in str(invalid.value)


def test_max_blocked_nodes_round_trips_though_the_sdk_model_lacks_it(seed_pdb):
    emu, cluster, aks = seed_pdb
    pool = aks.get_pool(cluster, "nodepool1")
    settings = replace(pool.upgrade_settings, max_blocked_nodes="3", drain_timeout_minutes=5)
    aks.begin_put_pool(cluster, replace(pool, upgrade_settings=settings))
    emu.wait_idle()
    again = aks.get_pool(cluster, "nodepool1").upgrade_settings
    assert (again.max_blocked_nodes, again.drain_timeout_minutes, again.max_surge) == ("3", 5, "2")


def test_a_region_without_the_preview_reads_at_the_stable_version_and_refuses_max_blocked_nodes(seed_pdb):
    # GIVEN an ARM that does not offer the preview api-version (its region, or a retired preview)
    emu, cluster, aks = seed_pdb
    emu.arm.api_versions = (STABLE_API_VERSION,)

    # WHEN the pool is read, then written with and without maxBlockedNodes
    pool = aks.get_pool(cluster, "nodepool1")
    with pytest.raises(PermanentError) as refused:
        aks.begin_put_pool(cluster, replace(pool, upgrade_settings=replace(pool.upgrade_settings, max_blocked_nodes="3")))
    aks.begin_put_pool(cluster, replace(pool, upgrade_settings=replace(pool.upgrade_settings, drain_timeout_minutes=9)))
    emu.wait_idle()

    # THEN reads fell back to the stable version, the preview field was refused naming it and
    # both versions, and the write without it went through
    assert pool.upgrade_settings.max_surge == "2" and aks.preview_offered is False
    assert "upgradeSettings.maxBlockedNodes" in str(refused.value)
    assert PREVIEW_API_VERSION in str(refused.value) and STABLE_API_VERSION in str(refused.value)
    assert aks.get_pool(cluster, "nodepool1").upgrade_settings.drain_timeout_minutes == 9
    assert "maxBlockedNodes" not in emu.cluster(cluster.arm_id).pools["nodepool1"].upgrade_settings


def test_without_a_preview_client_max_blocked_nodes_is_refused_before_any_write(seed_pdb):
    emu, cluster, _ = seed_pdb
    settings = _settings(emu, emu.clusters()[0])
    aks = ContainerServiceAks(container_service_client(settings, cluster.subscription_id, arm_credential(settings)))
    pool = aks.get_pool(cluster, "nodepool1")
    with pytest.raises(PermanentError, match="maxBlockedNodes is defined only by api-version 2026-08-02-preview"):
        aks.begin_put_pool(cluster, replace(pool, upgrade_settings=replace(pool.upgrade_settings, max_blocked_nodes="3")))
    assert emu.cluster(cluster.arm_id).pools["nodepool1"].provisioning_state == "Succeeded"
    aks.close()


@pytest.mark.parametrize(
    ("body", "api_version", "refused"),
    [
        ({"properties": {"upgradeSettings": {"maxBlockedNodes": "1"}}}, STABLE_API_VERSION,
         "api-version 2026-08-01 does not define properties.upgradeSettings.maxBlockedNodes"),
        ({"properties": {"upgradeSettings": {"maxBlockedNodes": "1"}}}, PREVIEW_API_VERSION, None),
        ({"properties": {"count": 1}}, "2019-01-01", "api-version 2019-01-01 is not one this app knows"),
    ],
)
def test_a_pool_body_is_checked_against_its_api_version(body, api_version, refused):
    error = undefined_properties_error("put pool np of c", body, api_version)
    if refused is None:
        assert error is None
    else:
        assert isinstance(error, PermanentError) and str(error).startswith(f"put pool np of c: {refused}")


def test_quota_exhaustion_is_permanent_with_its_code(seed_pdb):
    emu, cluster, aks = seed_pdb
    emu.set_vcpu_quota(cluster.subscription_id, 1)
    pool = aks.get_pool(cluster, "nodepool1")
    with pytest.raises(PermanentError) as quota:
        aks.begin_put_pool(cluster, replace(pool, count=5))
    assert quota.value.code == "InsufficientVCPUQuota"
    assert not isinstance(quota.value, TemporaryError)


def test_delete_pool_and_machines_start_without_waiting(seed_pdb):
    emu, cluster, aks = seed_pdb
    nodes = [n["metadata"]["name"] for n in emu.cluster(cluster.arm_id).kube.nodes("nodepool1")]
    aks.begin_delete_machines(cluster, "nodepool1", nodes[:1])
    emu.wait_idle()
    assert aks.get_pool(cluster, "nodepool1").count == 1
    aks.begin_delete_pool(cluster, "nodepool1", ignore_pod_disruption_budget=True)
    _wait_for(lambda: "nodepool1" not in {p.name for p in aks.list_pools(cluster)})
    # The last System pool cannot go: a permanent refusal with ARM's code
    with pytest.raises(PermanentError) as refused:
        aks.begin_delete_pool(cluster, "system")
    assert refused.value.code == "OperationNotAllowed"


@pytest.mark.parametrize("status", [429, 500, 503])
def test_injected_arm_faults_become_temporary_errors(seed_pdb, status):
    emu, cluster, _ = seed_pdb
    settings = _settings(emu, emu.clusters()[0])
    # The SDK's own retries off, to see the translation of one response
    aks = ContainerServiceAks(
        container_service_client(settings, cluster.subscription_id, arm_credential(settings), retry_total=0)
    )
    emu.faults.add("arm", "GET */agentPools/{agentPoolName}", **{f"rate_{status}": 1.0}, retry_after_seconds=7)
    with pytest.raises(TemporaryError) as raised:
        aks.get_pool(cluster, "nodepool1")
    assert raised.value.status == status
    if status in (429, 503):
        assert raised.value.delay_seconds == 7
    assert aks.list_pools(cluster)
    aks.close()


def test_plain_http_is_allowed_for_loopback_only():
    from azure.mgmt.containerservice import ContainerServiceClient

    from upgrade.adapters.aks import LoopbackBearerTokenPolicy

    remote = load_settings({"ALLOWED_CLUSTERS": "/subscriptions/s/resourceGroups/r/providers/"
                            "Microsoft.ContainerService/managedClusters/c"})
    client = container_service_client(remote, "s", object())
    assert isinstance(client, ContainerServiceClient)
    assert not isinstance(client._config.authentication_policy, LoopbackBearerTokenPolicy)
    client.close()


def test_a_clone_is_created_from_arm_properties_with_tags_and_only_if_absent(seed_pdb):
    # GIVEN blue as ARM has it (the whole properties object)
    _, cluster, aks = seed_pdb
    blue = aks.get_pool(cluster, "nodepool1")
    assert blue.properties["vmSize"] == blue.vm_size and "osDiskSizeGB" in blue.properties
    properties = {k: v for k, v in blue.properties.items()
                  if k not in ("eTag", "provisioningState", "currentOrchestratorVersion", "powerState",
                               "nodeImageVersion")}
    properties.update(count=1, tags={"aks-upgrade-run": "bg-1", "costCenter": "42"})
    # WHEN the adapter creates a pool from them
    aks.begin_create_pool(cluster, "clone1", properties)
    # THEN the pool exists with the tags, as the domain reads them
    _wait_for(lambda: aks.get_pool(cluster, "clone1").provisioning_state == "Succeeded")
    clone = aks.get_pool(cluster, "clone1")
    assert clone.tag_map() == {"aks-upgrade-run": "bg-1", "costCenter": "42"}
    assert (clone.vm_size, clone.node_labels, clone.upgrade_settings) == (blue.vm_size, blue.node_labels,
                                                                         blue.upgrade_settings)
    # AND a second create under a taken name is refused (If-None-Match: *), the pool unchanged
    with pytest.raises(Conflict):
        aks.begin_create_pool(cluster, "clone1", {**properties, "tags": {"owner": "someone-else"}})
    assert aks.get_pool(cluster, "clone1").tag_map()["aks-upgrade-run"] == "bg-1"


def test_maintenance_configurations_are_read_through_arm(seed_pdb, aks_client):
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.containerservice import models as sdk

    emu, cluster, aks = seed_pdb
    client = aks_client(emu)
    assert aks.list_maintenance_configurations(cluster) == []
    window = sdk.MaintenanceWindow(
        schedule=sdk.Schedule(relative_monthly=sdk.RelativeMonthlySchedule(
            interval_months=1, week_index="First", day_of_week="Monday")),
        duration_hours=4, start_time="22:00", utc_offset="+02:00", start_date="2026-01-01",
        not_allowed_dates=[sdk.DateSpan(start="2026-12-20", end="2027-01-03")],
    )
    client.maintenance_configurations.create_or_update(
        cluster.resource_group, cluster.name, "aksManagedAutoUpgradeSchedule",
        sdk.MaintenanceConfiguration(properties=sdk.MaintenanceConfigurationProperties(maintenance_window=window)))
    client.maintenance_configurations.create_or_update(
        cluster.resource_group, cluster.name, "default",
        sdk.MaintenanceConfiguration(properties=sdk.MaintenanceConfigurationProperties(
            time_in_week=[sdk.TimeInWeek(day="Sunday", hour_slots=[1, 2])])))
    configs = {c.name: c for c in aks.list_maintenance_configurations(cluster)}
    assert set(configs) == {"aksManagedAutoUpgradeSchedule", "default"}
    (monthly,) = configs["aksManagedAutoUpgradeSchedule"].windows
    assert (monthly.schedule.kind, monthly.schedule.week_index, monthly.start_time.hour) == ("relativeMonthly", "First", 22)
    assert monthly.not_allowed_dates and configs["aksManagedAutoUpgradeSchedule"].source == "cluster"
    assert len(configs["default"].windows) == 2
    reads = [r for r in emu.arm_requests if "maintenanceConfigurations" in r.path and r.method == "GET"]
    assert reads and {r.api_version for r in reads} == {STABLE_API_VERSION}
    # ARM's rules: a window shorter than 4 hours, and any other name, are refused.
    with pytest.raises(HttpResponseError, match="durationHours"):
        client.maintenance_configurations.create_or_update(
            cluster.resource_group, cluster.name, "aksManagedNodeOSUpgradeSchedule",
            sdk.MaintenanceConfiguration(properties=sdk.MaintenanceConfigurationProperties(
                maintenance_window={**window.as_dict(), "durationHours": 2})))
    with pytest.raises(HttpResponseError, match="name"):
        client.maintenance_configurations.create_or_update(
            cluster.resource_group, cluster.name, "nightly",
            sdk.MaintenanceConfiguration(properties=sdk.MaintenanceConfigurationProperties(maintenance_window=window)))


def test_tags_that_are_not_strings_are_refused_with_the_arm_code(seed_pdb):
    _, cluster, aks = seed_pdb
    with pytest.raises(PermanentError) as caught:
        aks.begin_create_pool(cluster, "clone2", {"count": 1, "vmSize": "Standard_D4s_v5", "tags": {"owner": 7}})
    assert caught.value.code == "InvalidParameter" and "tags" in str(caught.value)
    with pytest.raises(NotFound):
        aks.get_pool(cluster, "clone2")
