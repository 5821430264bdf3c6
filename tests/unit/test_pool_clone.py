"""Green as a full clone of blue: the classification of every ARM agent pool property.

The SDK walk keeps the table honest: a property a newer azure-mgmt-containerservice adds fails
``test_every_sdk_property_is_classified`` until someone decides, with a reason, what green does
with it.
"""

from __future__ import annotations

import pytest
from azure.mgmt.containerservice import models as sdk

from upgrade.domain.model import AgentPool, UpgradeSettings
from upgrade.domain.pool_clone import (
    CLONE_RULES,
    COPY,
    EXCLUDE,
    SET,
    clone_differences,
    green_properties,
    pool_arm_properties,
)


def _rest_fields(model: type) -> dict:
    model()  # the SDK computes a model's field map on first use
    return model._attr_to_rest_field


def _properties_model() -> type:
    """The model class of AgentPool.properties, found through the SDK's own field map."""
    field = _rest_fields(sdk.AgentPool)["properties"]
    deserializer = field._type
    while hasattr(deserializer, "args"):  # functools.partial chain: optional -> model
        candidates = [a for a in deserializer.args if isinstance(a, type)]
        if candidates:
            return candidates[0]
        deserializer = deserializer.args[0]
    raise AssertionError("cannot find the model of AgentPool.properties in the SDK")


def sdk_pool_properties() -> dict[str, bool]:
    """Every property of an ARM agent pool the SDK models: JSON name -> read-only."""
    return {f._rest_name: f._visibility == ["read"] for f in _rest_fields(_properties_model()).values()}


def test_every_sdk_property_is_classified():
    unclassified = sorted(set(sdk_pool_properties()) - set(CLONE_RULES))
    assert not unclassified, f"classify these AgentPool properties in upgrade/domain/pool_clone.py: {unclassified}"


def test_read_only_properties_are_never_copied():
    read_only = sorted(name for name, ro in sdk_pool_properties().items() if ro)
    assert read_only  # the walk found the SDK's read-only fields
    assert all(CLONE_RULES[name][0] == EXCLUDE for name in read_only), read_only


@pytest.mark.parametrize("name", sorted(CLONE_RULES))
def test_every_rule_has_a_kind_and_a_reason(name):
    kind, reason = CLONE_RULES[name]
    assert kind in (COPY, SET, EXCLUDE) and len(reason) > 5


BLUE = {
    "count": 3, "vmSize": "Standard_D8s_v5", "mode": "User", "orchestratorVersion": "1.30.4",
    "currentOrchestratorVersion": "1.30.4", "provisioningState": "Succeeded", "powerState": {"code": "Running"},
    "eTag": "abc", "nodeImageVersion": "AKSUbuntu-2204-202501", "enableAutoScaling": True, "minCount": 2,
    "maxCount": 9, "vnetSubnetID": "/subnets/nodes", "podSubnetID": "/subnets/pods", "osDiskType": "Ephemeral",
    "osDiskSizeGB": 64, "kubeletConfig": {"cpuManagerPolicy": "static"}, "linuxOSConfig": {"swapFileSizeMB": 0},
    "scaleSetPriority": "Spot", "spotMaxPrice": -1, "enableEncryptionAtHost": True, "enableFIPS": True,
    "tags": {"costCenter": "42"}, "enableNodePublicIP": False, "nodeLabels": {"team": "shop"},
    "status": {"provisioningError": None}, "aFutureProperty": {"x": 1},
}


def test_green_copies_every_writable_property_and_sets_its_own():
    green = green_properties(BLUE, count=3, target_version="1.31.2", tags={"costCenter": "42", "aks-upgrade-run": "r"})
    for key in ("vmSize", "enableAutoScaling", "minCount", "maxCount", "vnetSubnetID", "podSubnetID", "osDiskType",
                "osDiskSizeGB", "kubeletConfig", "linuxOSConfig", "scaleSetPriority", "spotMaxPrice",
                "enableEncryptionAtHost", "enableFIPS", "enableNodePublicIP", "nodeLabels", "aFutureProperty"):
        assert green[key] == BLUE[key], key
    assert (green["orchestratorVersion"], green["count"]) == ("1.31.2", 3)
    assert green["tags"] == {"costCenter": "42", "aks-upgrade-run": "r"}
    for key in ("eTag", "currentOrchestratorVersion", "provisioningState", "powerState", "status", "nodeImageVersion"):
        assert key not in green, key


def test_preflight_reports_what_differs_and_what_is_not_classified():
    green = green_properties(BLUE, count=3, target_version="1.31.2", tags={"costCenter": "42", "aks-upgrade-run": "r"})
    differences = {d["property"]: d for d in clone_differences(BLUE, green)}
    assert set(differences) == {"orchestratorVersion", "tags", "nodeImageVersion", "aFutureProperty"}
    assert differences["orchestratorVersion"]["green"] == "1.31.2"
    assert "not in the table" in differences["aFutureProperty"]["reason"]


def test_modelled_fields_stand_in_when_the_adapter_gave_no_properties():
    pool = AgentPool(name="blue", mode="System", count=2, orchestrator_version="1.30.0", os_sku="AzureLinux",
                     max_pods=50, zones=("1",), node_labels=(("a", "b"),), node_taints=("k=v:NoSchedule",),
                     upgrade_settings=UpgradeSettings(max_surge="33%"), tags=(("t", "1"),))
    properties = pool_arm_properties(pool)
    assert properties["osSKU"] == "AzureLinux" and properties["upgradeSettings"] == {"maxSurge": "33%"}
    assert properties["nodeTaints"] == ["k=v:NoSchedule"] and properties["tags"] == {"t": "1"}
    read = AgentPool(name="blue", mode="User", count=2, orchestrator_version="1.30.0",
                     properties={"vmSize": "Standard_E4s_v5", "kubeletConfig": {"podMaxPids": 100}})
    assert pool_arm_properties(read)["kubeletConfig"] == {"podMaxPids": 100}
    assert pool_arm_properties(read)["vmSize"] == "Standard_E4s_v5"
