"""Green as a full clone of blue: what happens to each property of blue's ARM agent pool.

Green is built from blue's whole ARM ``properties`` object (JSON names, as the REST API has them):
every writable property is copied, except the ones below with a reason. A property this table
does not know (a newer API than the table) is copied too, and preflight names it, so a new AKS
feature is never silently dropped; a unit test walks the SDK's model so the table is completed
when the SDK grows.

- ``copy``: green gets blue's value.
- ``set``: the run sets its own value (the reason says which).
- ``exclude``: read-only or status, never sent (ARM computes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from upgrade.domain.model import AgentPool

COPY, SET, EXCLUDE = "copy", "set", "exclude"

CLONE_RULES: dict[str, tuple[str, str]] = {
    # set by the run
    "count": (SET, "blue's current node count: green starts with blue's capacity (autoscaler bounds are copied)"),
    "orchestratorVersion": (SET, "the run's target version"),
    "tags": (SET, "blue's tags plus this run's ownership tags (blue's own ownership tags are replaced)"),
    # read-only or status: ARM computes them
    "eTag": (EXCLUDE, "read-only: the pool's concurrency token"),
    "currentOrchestratorVersion": (EXCLUDE, "read-only: the version the nodes run"),
    "provisioningState": (EXCLUDE, "read-only status"),
    "powerState": (EXCLUDE, "green starts Running; a stopped blue is refused earlier"),
    "status": (EXCLUDE, "read-only status (provisioning errors)"),
    "virtualMachineNodesStatus": (EXCLUDE, "read-only status of VirtualMachines pools"),
    "nodeImageVersion": (EXCLUDE, "green takes the latest node image of the target version, as a new pool does"),
    "creationData": (EXCLUDE, "a snapshot source pins the node image and version: it would contradict the target"),
}
# Everything else blue has is copied; the ones a blue-green run must keep are listed for the record
# (and for the test that walks the SDK model).
for _name, _reason in {
    "vmSize": "same machines", "osDiskSizeGB": "same OS disk", "osDiskType": "same OS disk",
    "kubeletDiskType": "same kubelet disk", "workloadRuntime": "same runtime", "messageOfTheDay": "same node MOTD",
    "vnetSubnetID": "same node subnet", "podSubnetID": "same pod subnet", "podIPAllocationMode": "same pod IPs",
    "maxPods": "same pod density", "osType": "same OS", "osSKU": "same OS SKU", "maxCount": "same autoscaler bounds",
    "minCount": "same autoscaler bounds", "enableAutoScaling": "same autoscaling", "scaleDownMode": "same scale-down",
    "type": "same VM set type", "mode": "same mode (System stays System)", "upgradeSettings": "same upgrade settings",
    "availabilityZones": "same zones", "enableNodePublicIP": "same public IP policy",
    "nodePublicIPPrefixID": "same public IP prefix", "scaleSetPriority": "same priority (Spot stays Spot)",
    "scaleSetEvictionPolicy": "same Spot eviction", "spotMaxPrice": "same Spot price",
    "nodeLabels": "workloads' nodeSelectors follow", "nodeTaints": "workloads' tolerations follow",
    "proximityPlacementGroupID": "same placement group", "kubeletConfig": "same kubelet config",
    "linuxOSConfig": "same Linux OS config", "enableEncryptionAtHost": "same host encryption (compliance)",
    "enableUltraSSD": "same disks", "enableFIPS": "same FIPS (compliance)", "gpuInstanceProfile": "same GPU",
    "capacityReservationGroupID": "same capacity reservation", "hostGroupID": "same dedicated hosts",
    "networkProfile": "same node network (ports, NSGs, IP tags)", "windowsProfile": "same Windows options",
    "securityProfile": "same security (secure boot, vTPM, SSH)", "gpuProfile": "same GPU driver",
    "gatewayProfile": "same gateway options", "artifactStreamingProfile": "same artifact streaming",
    "virtualMachinesProfile": "same VirtualMachines pool scale", "localDNSProfile": "same local DNS",
}.items():
    CLONE_RULES[_name] = (COPY, _reason)


# Status a person does not need to read in a preflight report.
_NOT_REPORTED = frozenset({"eTag", "currentOrchestratorVersion", "provisioningState", "powerState", "status",
                           "virtualMachineNodesStatus"})


def pool_arm_properties(pool: AgentPool) -> dict[str, Any]:
    """Blue's ARM ``properties`` as read; the modelled fields fill in when the adapter gave none."""
    modelled: dict[str, Any] = {
        "count": pool.count, "vmSize": pool.vm_size, "mode": pool.mode, "osType": pool.os_type,
        "orchestratorVersion": pool.orchestrator_version, "nodeLabels": dict(pool.node_labels),
        "nodeTaints": list(pool.node_taints), "upgradeSettings": {
            k: v for k, v in pool.upgrade_settings.to_arm().items() if v is not None},
        "tags": dict(pool.tags),
    }
    if pool.os_sku:
        modelled["osSKU"] = pool.os_sku
    if pool.max_pods:
        modelled["maxPods"] = pool.max_pods
    if pool.zones:
        modelled["availabilityZones"] = list(pool.zones)
    return {**modelled, **pool.properties}


def rule_of(name: str) -> tuple[str, str]:
    return CLONE_RULES.get(name, (COPY, "not in the table yet: copied so nothing is dropped; classify it"))


def green_properties(blue: Mapping[str, Any], *, count: int, target_version: str,
                     tags: Mapping[str, str]) -> dict[str, Any]:
    """Green's ARM ``properties``: blue's, per ``CLONE_RULES``."""
    green = {key: value for key, value in blue.items() if value is not None and rule_of(key)[0] == COPY}
    green.update(count=count, orchestratorVersion=target_version, tags=dict(tags))
    return green


def clone_differences(blue: Mapping[str, Any], green: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every property where green will differ from blue, with the reason (what preflight reports),
    and the properties copied without a rule (so an operator sees them)."""
    differences = []
    for key in sorted(set(blue) | set(green)):
        if key in _NOT_REPORTED:
            continue
        reason = rule_of(key)[1]
        if (key not in CLONE_RULES and blue.get(key) is not None) or blue.get(key) != green.get(key):
            differences.append({"property": key, "blue": blue.get(key), "green": green.get(key), "reason": reason})
    return differences
