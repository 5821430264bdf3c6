"""UPGRADE_POLICY: defaults for every cluster, partial overrides per cluster and pool, and
start-up errors that name the JSON path of the field at fault."""

from __future__ import annotations

import json

import pytest

from upgrade.domain.policy import parse_policy
from upgrade.errors import InvalidInput

C1 = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1"
C2 = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c2"


def test_empty_setting_gives_the_documented_defaults_for_every_cluster():
    policy = parse_policy("", [C1]).for_pool(C1, "np")
    assert (policy.strategy, policy.on_new_version) == ("rolling", "preflight-report")
    assert policy.rolling.undrainable_node_behavior == "Cordon"
    # Unset upgradeSettings keep the pool's own: only the quarantine behaviour is the product's default.
    settings = policy.rolling.to_upgrade_settings()
    assert (settings.max_surge, settings.max_unavailable, settings.drain_timeout_minutes) == (None, None, None)
    assert [policy.remediation.mode(k) for k in ("relax-pdb", "delete-pod", "replace-node")] == ["off"] * 3
    assert (policy.alerts.re_alert_interval_minutes, policy.alerts.escalate_after_minutes) == (60, 240)


def test_overrides_merge_defaults_then_cluster_then_pool_field_by_field():
    text = json.dumps({
        "defaults": {"rolling": {"maxSurge": 1, "drainTimeoutInMinutes": 15}},
        "clusters": {C1: {"onNewVersion": "start", "pools": {
            "np": {"rolling": {"maxSurge": "33%"}, "remediation": {"relax-pdb": "automatic"}},
            "bg": {"strategy": "blue-green", "blueGreen": {"drainBatchSize": "2"}}}}},
    })
    policy = parse_policy(text, [C1, C2])
    np, other, bg = policy.for_pool(C1, "np"), policy.for_pool(C1, "zz"), policy.for_pool(C1, "bg")
    assert (np.rolling.max_surge, np.rolling.drain_timeout_minutes, np.on_new_version) == ("33%", 15, "start")
    assert np.remediation.automatic_kinds() == ["relax-pdb"]
    assert (other.rolling.max_surge, other.on_new_version) == ("1", "start")
    assert (bg.strategy, bg.blue_green) == ("blue-green", {"drainBatchSize": "2"})
    assert policy.for_pool(C2, "np").on_new_version == "preflight-report"
    assert policy.for_pool(C1.upper(), "np") == np  # ARM ids are case-insensitive


INVALID = [
    ("{", "UPGRADE_POLICY", "not valid JSON"),
    ('{"default": {}}', "UPGRADE_POLICY.default", "unknown field"),
    ('{"defaults": {"rolling": {"maxSurge": "x"}}}', "UPGRADE_POLICY.defaults.rolling.maxSurge", "percent"),
    ('{"defaults": {"rolling": {"maxSurge": 0}}}', "UPGRADE_POLICY.defaults.rolling.maxSurge", "greater than 0"),
    ('{"defaults": {"rolling": {"drainTimeoutInMinutes": 0}}}', "UPGRADE_POLICY.defaults.rolling.drainTimeoutInMinutes", "1 to 1440"),
    ('{"defaults": {"rolling": {"undrainableNodeBehavior": "Drop"}}}', "UPGRADE_POLICY.defaults.rolling.undrainableNodeBehavior", "Cordon"),
    ('{"defaults": {"rolling": {"maxBlockedNodes": 1, "undrainableNodeBehavior": "Schedule"}}}',
     "UPGRADE_POLICY.defaults.rolling.maxBlockedNodes", "only allowed with"),
    ('{"defaults": {"strategy": "canary"}}', "UPGRADE_POLICY.defaults.strategy", "rolling"),
    ('{"defaults": {"onNewVersion": "ignore"}}', "UPGRADE_POLICY.defaults.onNewVersion", "notify"),
    ('{"defaults": {"remediation": {"relax-pdb": "yes"}}}', "UPGRADE_POLICY.defaults.remediation.relax-pdb", "approval-required"),
    ('{"defaults": {"remediation": {"drain": "off"}}}', "UPGRADE_POLICY.defaults.remediation.drain", "unknown field"),
    ('{"defaults": {"alerts": {"reAlertIntervalMinutes": 0}}}', "UPGRADE_POLICY.defaults.alerts.reAlertIntervalMinutes", "greater"),
    ('{"defaults": {"blueGreen": {"drainBatchSize": "0"}}}', "UPGRADE_POLICY.defaults.blueGreen.drainBatchSize", "at least 1"),
    ('{"clusters": {"c1": {}}}', "UPGRADE_POLICY.clusters[c1]", "ARM id"),
    (json.dumps({"clusters": {C2: {}}}), f"UPGRADE_POLICY.clusters[{C2}]", "ALLOWED_CLUSTERS"),
    (json.dumps({"clusters": {C1: {"pools": {"np": {"rolling": {"maxUnavailable": "x"}}}}}}),
     f"UPGRADE_POLICY.clusters[{C1}].pools[np].rolling.maxUnavailable", "percent"),
]


@pytest.mark.parametrize("text, field, problem", INVALID)
def test_invalid_policy_is_refused_naming_the_field(text, field, problem):
    with pytest.raises(InvalidInput) as raised:
        parse_policy(text, [C1])
    assert raised.value.field == field
    assert problem in raised.value.problem
