"""Which JSON properties an ARM api-version of Microsoft.ContainerService defines.

A version's properties are read from the models of the azure-mgmt-containerservice package that
speaks it (each model's rest fields, followed through nested models, lists and maps), so the
product, the emulator and the tests share one description, the one Microsoft's SDK generates from
the REST specification. The stable version is the installed package's own. The preview version
the product uses for ``maxBlockedNodes`` is described as its difference from the stable one, a
small table taken from the models of the package that speaks it (see ``PREVIEW_API_VERSION``).

Properties are paths under a body: ``properties.upgradeSettings.maxSurge``; ``[]`` stands for any
item of an array, ``{}`` for any key of a map (``properties.tags.{}``), and ``*`` below a path for
anything (a model that contains itself, such as an error's ``details``). Each path maps to the SDK
model name of its value ("" for a plain value), which error messages name.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from azure.mgmt.containerservice import models as sdk
from azure.mgmt.containerservice._configuration import ContainerServiceClientConfiguration
from azure.mgmt.containerservicefleet import models as fleet_sdk
from azure.mgmt.containerservicefleet._configuration import ContainerServiceFleetMgmtClientConfiguration

# The preview api-version, used only for a pool whose policy sets a field the stable version lacks
# (maxBlockedNodes): 2026-08-02-preview, the preview after 2026-08-01, which
# azure-mgmt-containerservice 41.9.0b1 speaks. It works only where AKS offers the preview: it
# depends on the cluster's region and on the subscription's registration of the preview feature.
PREVIEW_API_VERSION = "2026-08-02-preview"

# The bodies the product sends or reads, by the SDK model describing them.
AGENT_POOL = "AgentPool"
DELETE_MACHINES = "AgentPoolDeleteMachinesParameter"
MANAGED_CLUSTER = "ManagedCluster"
MAINTENANCE_CONFIGURATION = "MaintenanceConfiguration"

# How an AgentPool body of 2026-08-02-preview differs from one of 2026-08-01: the paths of the
# models of azure-mgmt-containerservice 41.9.0b1 (2026-08-02-preview) that 41.8.0 (2026-08-01)
# lacks, and the other way round. Only AgentPool and deleteMachines bodies go out at the preview.
PREVIEW_AGENT_POOL_ADDED: Mapping[str, str] = {
    "properties.upgradeStrategy": "",
    "properties.enableOSDiskFullCaching": "",
    "properties.upgradeSettings.maxBlockedNodes": "",
    "properties.upgradeSettings.upgradeGateSettings": "UpgradeGateSettings",
    "properties.upgradeSettings.upgradeGateSettings.enabled": "",
    "properties.upgradeSettingsBlueGreen": "AgentPoolBlueGreenUpgradeSettings",
    "properties.upgradeSettingsBlueGreen.drainBatchSize": "",
    "properties.upgradeSettingsBlueGreen.drainTimeoutInMinutes": "",
    "properties.upgradeSettingsBlueGreen.batchSoakDurationInMinutes": "",
    "properties.upgradeSettingsBlueGreen.finalSoakDurationInMinutes": "",
    "properties.nodeInitializationTaints": "",
    "properties.nodeInitializationTaints.[]": "",
    "properties.kubeletConfig.seccompDefault": "",
    "properties.kubeletConfig.kubeReserved": "KubeReserved",
    "properties.kubeletConfig.kubeReserved.cpuMillicores": "",
    "properties.kubeletConfig.kubeReserved.memoryMB": "",
    "properties.kubeletConfig.hardEvictionThreshold": "HardEvictionThreshold",
    "properties.kubeletConfig.hardEvictionThreshold.memoryAvailable": "",
    "properties.kubeletConfig.hardEvictionThreshold.nodeFsAvailable": "",
    "properties.kubeletConfig.hardEvictionThreshold.nodeFsInodesFree": "",
    "properties.kubeletConfig.softEvictionThreshold": "SoftEvictionThreshold",
    "properties.kubeletConfig.softEvictionThreshold.memoryAvailable": "",
    "properties.kubeletConfig.softEvictionThreshold.nodeFsAvailable": "",
    "properties.kubeletConfig.softEvictionThreshold.nodeFsInodesFree": "",
    "properties.kubeletConfig.softEvictionGracePeriod": "SoftEvictionGracePeriod",
    "properties.kubeletConfig.softEvictionGracePeriod.memoryAvailable": "",
    "properties.kubeletConfig.softEvictionGracePeriod.nodeFsAvailable": "",
    "properties.kubeletConfig.softEvictionGracePeriod.nodeFsInodesFree": "",
    "properties.kubeletConfig.evictionMaxPodGracePeriodInSeconds": "",
    "properties.networkProfile.nodePublicIPPrefixIDs": "",
    "properties.networkProfile.nodePublicIPPrefixIDs.[]": "",
    "properties.networkProfile.secondaryNetworkInterfaces": "",
    "properties.networkProfile.secondaryNetworkInterfaces.[]": "AgentPoolNetworkInterface",
    "properties.networkProfile.secondaryNetworkInterfaces.[].type": "",
    "properties.networkProfile.secondaryNetworkInterfaces.[].vnetSubnetId": "",
    "properties.networkProfile.secondaryNetworkInterfaces.[].enableAcceleratedNetworking": "",
    "properties.networkProfile.secondaryNetworkInterfaces.[].publicIPAddressConfiguration": "AgentPoolNICPublicIPAddressConfiguration",
    "properties.networkProfile.secondaryNetworkInterfaces.[].publicIPAddressConfiguration.publicIPAddressVersion": "",
    "properties.networkProfile.secondaryNetworkInterfaces.[].publicIPAddressConfiguration.ipTags": "",
    "properties.networkProfile.secondaryNetworkInterfaces.[].publicIPAddressConfiguration.ipTags.[]": "IPTag",
    "properties.networkProfile.secondaryNetworkInterfaces.[].publicIPAddressConfiguration.ipTags.[].ipTagType": "",
    "properties.networkProfile.secondaryNetworkInterfaces.[].publicIPAddressConfiguration.ipTags.[].tag": "",
    "properties.networkProfile.secondaryNetworkInterfaces.[].publicIPAddressConfiguration.publicIPPrefixID": "",
    "properties.gpuProfile.driverType": "",
    "properties.gpuProfile.nvidia.driverMode": "",
    "properties.gpuProfile.nvidia.migStrategy": "",
    "properties.gpuProfile.nvidia.migProfiles": "",
    "properties.gpuProfile.nvidia.migProfiles.[]": "",
    "properties.preparedImageSpecificationProfile": "PreparedImageSpecificationProfile",
    "properties.preparedImageSpecificationProfile.preparedImageSpecificationId": "",
}
PREVIEW_AGENT_POOL_REMOVED: frozenset[str] = frozenset()

_MODEL_BASES: tuple[type, ...] = tuple(next(k for k in m.__mro__ if k.__name__ == "Model")
                                       for m in (sdk.AgentPool, fleet_sdk.Gate))

# Fleet Manager (azure-mgmt-containerservicefleet) speaks its own api-version; the bodies the
# product reads or sends there.
FLEET_API_VERSION = ContainerServiceFleetMgmtClientConfiguration("credential", "subscription").api_version
GATE = "Gate"
GATE_PATCH = "GatePatch"
UPDATE_RUN = "UpdateRun"
FLEET_MODELS = (GATE, GATE_PATCH, UPDATE_RUN)


def _stable_api_version() -> str:
    """The api-version the installed SDK sends by default (its configuration's default)."""
    return ContainerServiceClientConfiguration("credential", "subscription").api_version


STABLE_API_VERSION = _stable_api_version()


def _is_sdk_model(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, _MODEL_BASES)


def _rest_fields(model: type) -> Iterator[tuple[str, Any]]:
    """(rest name, type hint) of every rest field of ``model`` and its bases."""
    models = fleet_sdk if model.__module__.startswith(fleet_sdk.__name__.rsplit(".", 1)[0]) else sdk
    hints = typing.get_type_hints(model, globalns={**vars(models), "_models": models})
    for klass in reversed(model.__mro__):
        for attr, value in vars(klass).items():
            if not attr.startswith("_") and hasattr(value, "_rest_name_input"):
                yield value._rest_name_input or attr, hints.get(attr)


def _unwrap(hint: Any) -> Any:
    """One type out of Optional/Union (a string enum is ``Union[str, Enum]``: a plain value)."""
    if typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if _is_sdk_model(a) or typing.get_origin(a) in (list, dict)]
        return _unwrap(args[0]) if args else str
    return hint


def _paths(hint: Any, prefix: str, seen: tuple[type, ...]) -> Iterator[tuple[str, str]]:
    hint = _unwrap(hint)
    origin = typing.get_origin(hint)
    if origin in (list, dict):
        args = typing.get_args(hint)
        marker = "[]" if origin is list else "{}"
        if prefix:
            yield prefix, ""
        yield from _paths(args[-1] if args else str, f"{prefix}.{marker}" if prefix else marker, seen)
        return
    if not _is_sdk_model(hint):
        if prefix:
            yield prefix, ""
            if hint is Any:
                yield f"{prefix}.*", ""
        return
    if prefix:
        yield prefix, hint.__name__
    if hint in seen:
        yield f"{prefix}.*", ""
        return
    for rest_name, child in _rest_fields(hint):
        yield from _paths(child, f"{prefix}.{rest_name}" if prefix else rest_name, (*seen, hint))


@cache
def stable_paths(body_model: str) -> Mapping[str, str]:
    """Every property path the installed SDK's api-version defines under ``body_model``."""
    return dict(_paths(getattr(sdk, body_model), "", ()))


@cache
def fleet_paths(body_model: str) -> Mapping[str, str]:
    """Every property path the installed Fleet SDK's api-version defines under ``body_model``."""
    return dict(_paths(getattr(fleet_sdk, body_model), "", ()))


def defined_paths(api_version: str, body_model: str) -> Mapping[str, str] | None:
    """The paths ``api_version`` defines under ``body_model``; None for a version not described."""
    if body_model in FLEET_MODELS:
        return fleet_paths(body_model) if api_version == FLEET_API_VERSION else None
    if api_version == STABLE_API_VERSION:
        return stable_paths(body_model)
    if api_version == PREVIEW_API_VERSION and body_model in (AGENT_POOL, DELETE_MACHINES):
        if body_model == DELETE_MACHINES:
            return stable_paths(body_model)
        return _preview_agent_pool_paths()
    return None


@cache
def _preview_agent_pool_paths() -> Mapping[str, str]:
    paths = {p: t for p, t in stable_paths(AGENT_POOL).items() if p not in PREVIEW_AGENT_POOL_REMOVED}
    return {**paths, **PREVIEW_AGENT_POOL_ADDED}


@dataclasses.dataclass(frozen=True)
class UndefinedProperty:
    """A property a body holds that its api-version does not define."""

    path: str  # as in the body: properties.upgradeSettings.maxBlockedNodes
    parent_type: str  # the model of the object holding it: AgentPoolUpgradeSettings

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]


def _defined(paths: Mapping[str, str], schema_path: str) -> bool:
    if schema_path in paths:
        return True
    parts = schema_path.split(".")
    return any(".".join(parts[:i]) + ".*" in paths for i in range(1, len(parts)))


def _children(value: Mapping[str, Any], paths: Mapping[str, str], schema_path: str) -> Iterator[tuple[str, Any, str]]:
    """(key, value, schema path) of each member of the object at ``schema_path``."""
    map_path = f"{schema_path}.{{}}" if schema_path else "{}"
    is_map = map_path in paths
    for key, child in value.items():
        yield key, child, map_path if is_map else (f"{schema_path}.{key}" if schema_path else str(key))


def undefined_properties(body: Any, paths: Mapping[str, str], body_model: str) -> list[UndefinedProperty]:
    """The properties of ``body`` (parsed JSON) that ``paths`` does not define, outermost first
    (nothing is reported below an undefined one)."""
    found: list[UndefinedProperty] = []

    def walk(value: Any, body_path: str, schema_path: str) -> None:
        if isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{body_path}[{index}]", f"{schema_path}.[]" if schema_path else "[]")
        elif isinstance(value, Mapping):
            for key, child, child_schema in _children(value, paths, schema_path):
                child_body = f"{body_path}.{key}" if body_path else str(key)
                if _defined(paths, child_schema):
                    walk(child, child_body, child_schema)
                else:
                    found.append(UndefinedProperty(child_body, paths.get(schema_path, body_model) or body_model))

    walk(body, "", "")
    return found


def drop_undefined(body: Any, paths: Mapping[str, str], schema_path: str = "") -> Any:
    """``body`` without the properties ``paths`` does not define: what a server of that
    api-version answers, knowing no others."""
    if isinstance(body, list):
        return [drop_undefined(item, paths, f"{schema_path}.[]" if schema_path else "[]") for item in body]
    if not isinstance(body, Mapping):
        return body
    return {
        key: drop_undefined(child, paths, child_schema)
        for key, child, child_schema in _children(body, paths, schema_path)
        if _defined(paths, child_schema)
    }
