"""The properties each api-version defines (upgrade.adapters.arm_schema), read from the SDK's models."""

from __future__ import annotations

import pytest

from upgrade.adapters import arm_schema
from upgrade.adapters.arm_schema import (
    AGENT_POOL,
    DELETE_MACHINES,
    PREVIEW_API_VERSION,
    STABLE_API_VERSION,
    defined_paths,
    drop_undefined,
    undefined_properties,
)


def test_the_stable_version_is_the_sdks_default():
    from azure.mgmt.containerservice import ContainerServiceClient

    client = ContainerServiceClient(object(), "subscription")
    assert STABLE_API_VERSION == client._config.api_version == "2026-08-01"
    client.close()


@pytest.mark.parametrize(
    ("api_version", "path", "defined"),
    [
        (STABLE_API_VERSION, "properties.upgradeSettings.maxSurge", True),
        (STABLE_API_VERSION, "properties.upgradeSettings.undrainableNodeBehavior", True),
        (STABLE_API_VERSION, "properties.status.provisioningError.message", True),
        (STABLE_API_VERSION, "properties.nodeLabels.{}", True),
        (STABLE_API_VERSION, "properties.upgradeSettings.maxBlockedNodes", False),
        (STABLE_API_VERSION, "properties.upgradeSettingsBlueGreen", False),
        (STABLE_API_VERSION, "properties.nodeInitializationTaints", False),
        (PREVIEW_API_VERSION, "properties.upgradeSettings.maxBlockedNodes", True),
        (PREVIEW_API_VERSION, "properties.upgradeSettings.maxSurge", True),
        (PREVIEW_API_VERSION, "properties.upgradeSettingsBlueGreen.drainBatchSize", True),
    ],
)
def test_which_paths_a_version_defines(api_version, path, defined):
    # GIVEN an api-version WHEN its AgentPool paths are read THEN the path is (not) among them
    assert (path in defined_paths(api_version, AGENT_POOL)) is defined


def test_an_unknown_version_is_not_described():
    assert defined_paths("2099-01-01", AGENT_POOL) is None


def test_the_preview_table_keeps_every_stable_path_and_hangs_off_known_parents():
    # GIVEN the preview's difference from the stable AgentPool
    stable, preview = defined_paths(STABLE_API_VERSION, AGENT_POOL), defined_paths(PREVIEW_API_VERSION, AGENT_POOL)
    # THEN it only adds, and each added path's parent is itself a path of the preview
    assert set(stable) <= set(preview)
    assert not arm_schema.PREVIEW_AGENT_POOL_REMOVED & set(stable)
    for path in arm_schema.PREVIEW_AGENT_POOL_ADDED:
        parent = path.rsplit(".", 1)[0]
        assert parent == "properties" or parent in preview, path


POOL = {
    "id": "/subscriptions/s/.../agentPools/np", "name": "np",
    "properties": {
        "count": 3,
        "nodeLabels": {"team": "web", "any-key.example.com/x": "y"},
        "nodeTaints": ["k=v:NoSchedule"],
        "upgradeSettings": {"maxSurge": "1", "undrainableNodeBehavior": "Cordon"},
        "status": {"provisioningError": {"code": "X", "message": "m", "details": [{"code": "Y", "details": []}]}},
    },
}


@pytest.mark.parametrize(
    ("change", "api_version", "expected"),
    [
        ({}, STABLE_API_VERSION, []),
        ({"upgradeSettings": {"maxSurge": "1", "maxBlockedNodes": "2"}}, STABLE_API_VERSION,
         [("properties.upgradeSettings.maxBlockedNodes", "AgentPoolUpgradeSettings")]),
        ({"upgradeSettings": {"maxSurge": "1", "maxBlockedNodes": "2"}}, PREVIEW_API_VERSION, []),
        ({"colour": "blue", "upgradeSettingsBlueGreen": {"drainBatchSize": "1"}}, STABLE_API_VERSION,
         [("properties.colour", "AgentPoolManagedClusterAgentPoolProfileProperties"),
          ("properties.upgradeSettingsBlueGreen", "AgentPoolManagedClusterAgentPoolProfileProperties")]),
        ({"networkProfile": {"allowedHostPorts": [{"portStart": 80, "bogus": 1}]}}, STABLE_API_VERSION,
         [("properties.networkProfile.allowedHostPorts[0].bogus", "PortRange")]),
    ],
    ids=["own-pool", "maxBlocked-at-stable", "maxBlocked-at-preview", "unknown-and-preview-only", "in-a-list"],
)
def test_undefined_properties_are_named_with_their_path_and_type(change, api_version, expected):
    # GIVEN a pool body with some properties changed
    body = {**POOL, "properties": {**POOL["properties"], **change}}
    # WHEN it is checked against an api-version
    found = undefined_properties(body, defined_paths(api_version, AGENT_POOL), AGENT_POOL)
    # THEN exactly the undefined ones are reported, with the model that lacks them
    assert [(u.path, u.parent_type) for u in found] == expected


def test_a_delete_machines_body_is_checked_too():
    paths = defined_paths(STABLE_API_VERSION, DELETE_MACHINES)
    assert undefined_properties({"machineNames": ["a"]}, paths, DELETE_MACHINES) == []
    assert [u.name for u in undefined_properties({"machines": ["a"]}, paths, DELETE_MACHINES)] == ["machines"]


def test_drop_undefined_keeps_what_the_version_defines():
    body = {"properties": {"count": 1, "upgradeSettings": {"maxSurge": "1", "maxBlockedNodes": "2"},
                           "nodeLabels": {"a": "b"}}}
    assert drop_undefined(body, defined_paths(STABLE_API_VERSION, AGENT_POOL)) == {
        "properties": {"count": 1, "upgradeSettings": {"maxSurge": "1"}, "nodeLabels": {"a": "b"}}}
    assert drop_undefined(body, defined_paths(PREVIEW_API_VERSION, AGENT_POOL)) == body
