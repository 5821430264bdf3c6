"""``POST /api/upgrades/preflight`` (upgrade.services.preflight): the prediction of the upgrade a
start request describes, with the settings the app's run would apply, over in-memory ports."""

from __future__ import annotations

import json

import pytest

from tests.fakes import FakePlatform
from tests.unit.fake_cluster import CLUSTER, POOL, FakeCluster
from upgrade.domain.model import UpgradeSettings
from upgrade.domain.policy import parse_policy
from upgrade.errors import InvalidInput, NotFound
from upgrade.services.preflight import preflight_from_request


def scenario2_before_upgrade(settings: UpgradeSettings | None = None) -> FakeCluster:
    """Seed Scenario 2 at 1.30: pod A alone behind a PDB with minAvailable 1 on node 1."""
    fake = FakeCluster()
    fake.add_pool(POOL, 2, "1.30.0", upgrade_settings=settings or UpgradeSettings())
    fake.add_node("aks-nodepool1-1", POOL, "1.30.0")
    fake.add_node("aks-nodepool1-2", POOL, "1.30.0")
    fake.add_pod("default", "a-1", "aks-nodepool1-1", app="a")
    fake.add_pod("default", "b-1", "aks-nodepool1-1", app="b")
    fake.add_pod("default", "c-1", "aks-nodepool1-2", app="c")
    fake.add_pdb("default", "a-pdb", app="a", min_available=1)
    return fake


def platform_for(fake: FakeCluster, policy: dict | None = None) -> FakePlatform:
    return FakePlatform(kubes={CLUSTER.arm_id: fake}, aks_by_subscription={CLUSTER.subscription_id: fake},
                        allowed_clusters=frozenset({CLUSTER.arm_id}), policy=parse_policy(json.dumps(policy or {})))


def request(**fields) -> dict:
    return {"cluster": CLUSTER.arm_id, "pool": POOL, "targetVersion": "1.31.7", "strategy": "rolling", **fields}


def test_a_rolling_preflight_uses_the_settings_the_apps_run_would_apply():
    # GIVEN a pool with maxSurge 2 of its own and the product's default policy (Cordon)
    platform = platform_for(scenario2_before_upgrade(UpgradeSettings(max_surge="2")))
    # WHEN the operator asks what the upgrade would do, by the cluster's name
    report = preflight_from_request(platform, request(cluster=CLUSTER.name))
    # THEN the pool's maxSurge and the policy's Cordon apply: node 1 is quarantined, the run fails
    assert report["upgradeSettings"]["maxSurge"] == "2"
    assert report["upgradeSettings"]["undrainableNodeBehavior"] == "Cordon"
    assert report["quarantinedNodes"] == ["aks-nodepool1-1"] and report["finalState"] == "Failed"
    # AND every setting still unset is named with the value AKS uses for it
    assert report["aksDefaults"] == {"maxUnavailable": "0", "drainTimeoutInMinutes": 30,
                                     "nodeSoakDurationInMinutes": 0, "maxBlockedNodes": "maxSurge (2)"}


def test_the_requests_settings_go_over_the_policys():
    platform = platform_for(scenario2_before_upgrade(), {"defaults": {"rolling": {"maxSurge": "1"}}})
    report = preflight_from_request(platform, request(options={"upgradeSettings": {
        "maxSurge": 2, "undrainableNodeBehavior": "Schedule"}}))
    assert (report["upgradeSettings"]["maxSurge"], report["upgradeSettings"]["undrainableNodeBehavior"]) == (
        "2", "Schedule")
    assert report["failedNodes"] == ["aks-nodepool1-1"] and "undrainableNodeBehavior" not in report["aksDefaults"]


@pytest.mark.parametrize(("body", "field"), [
    ([], "(body)"),
    (request(version="1.31"), "version"),
    ({"pool": POOL}, "cluster"),
    (request(pool=""), "pool"),
    (request(strategy="canary"), "strategy"),
    (request(options={"upgradeSettings": {"maxSurges": "1"}}), "options.upgradeSettings.maxSurges"),
    (request(options={"batchSize": 1}), "options.batchSize"),
    (request(pool="nopool"), "pool"),
])
def test_a_bad_request_names_the_field(body, field):
    platform = platform_for(scenario2_before_upgrade())
    with pytest.raises(InvalidInput) as refused:
        preflight_from_request(platform, body)
    assert refused.value.field == field


def test_a_cluster_outside_the_allow_list_is_not_found():
    with pytest.raises(NotFound):
        preflight_from_request(platform_for(scenario2_before_upgrade()), request(cluster="aks-elsewhere"))


@pytest.mark.parametrize("target", ["banana", "1.20.0", "1.33.0", "1.31.99"])
def test_a_target_the_pools_upgrade_profile_does_not_offer_is_refused(target):
    report = preflight_from_request(platform_for(scenario2_before_upgrade()), request(targetVersion=target))
    assert report["finalState"] == "Refused"
    assert "offered for pool nodepool1: 1.31.7" in report["finalMessage"]
    assert report["quarantinedNodes"] == [] and report["surgeNodeCount"] == 0
