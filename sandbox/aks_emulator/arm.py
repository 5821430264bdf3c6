"""The ARM side of the emulated AKS: managed clusters, agent pools, long-running operations, ETags.

`ArmModel` holds every emulated managed cluster of every subscription and resource group and
answers what the ARM API asks of it. Writes validate like AKS does (pool names, upgradeSettings,
downgrades, a System pool that must remain, an operation already in progress, vCPU quota) and
raise `ArmError`, which the HTTP layer turns into ARM's `{"error": {"code", "message"}}`. Accepted
writes start an `Operation` on a background thread that drives `upgrader`; its status resource is
what `Azure-AsyncOperation` points at. An operation that ends Failed or Canceled leaves its ARM
error on the pool as `properties.status.provisioningError` (as AKS does), until the next operation.

Emulator choices where AKS is not specific: a pool PUT that changes the version and the count at
once is refused (AKS runs them as separate operations); the pool version is not held to the control
plane's, so pool upgrades can be exercised alone; error codes are AKS's where known
(InvalidParameter, NotFound, OperationNotAllowed, AgentPoolUpgradeVersionNotAllowed,
InsufficientVCPUQuota, PreconditionFailed, UpgradeFailed).
"""

from __future__ import annotations

import base64
import itertools
import re
import threading
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import yaml

from sandbox.aks_emulator import upgrader
from sandbox.aks_emulator.backend import KubeBackend, KubeEndpoint
from sandbox.aks_emulator.clock import ScaledClock
from sandbox.aks_emulator.kube import KubeCluster
from upgrade.adapters import arm_schema

PROVIDER = "Microsoft.ContainerService"
# The Kubernetes versions this emulated region offers, oldest first.
KUBERNETES_VERSIONS = ("1.29.14", "1.30.0", "1.30.10", "1.31.7", "1.31.8", "1.32.4")
DEFAULT_NODE_IMAGE_VERSION = "AKSUbuntu-2204gen2containerd-202611.01.0"
LATEST_NODE_IMAGE_VERSION = "AKSUbuntu-2204gen2containerd-202612.05.0"
DEFAULT_VM_SIZE = "Standard_D4s_v5"
POOL_NAME_RULE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
SURGE_RULE = re.compile(r"^(\d+)%?$")
ARM_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


# How often AKS's drain looks at a real API server's pods, at most (real seconds).
REAL_KUBE_POLL_SECONDS = 0.25


class ArmError(Exception):
    """An ARM error response: HTTP status, ARM error code and message."""

    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target

    def to_arm(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        return {"error": error}


def arm_time(moment: datetime) -> str:
    return moment.strftime(ARM_TIME_FORMAT)


def parse_version(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def resolve_version(requested: str) -> str:
    """"1.31" means the newest 1.31 patch, as in AKS; an exact patch must be offered."""
    if requested.count(".") == 1:
        patches = [v for v in KUBERNETES_VERSIONS if v.startswith(requested + ".")]
        if patches:
            return patches[-1]
    elif requested in KUBERNETES_VERSIONS:
        return requested
    raise ArmError(
        400,
        "InvalidParameter",
        f"The value of parameter agentPoolProfile.orchestratorVersion is invalid: version {requested} "
        "is not supported in this region. Please see https://aka.ms/supported-version-list for more details.",
        "agentPoolProfile.orchestratorVersion",
    )


def available_upgrades(current: str) -> list[str]:
    """Newer patches of the same minor and any patch of the next minor (one minor at a time)."""
    major, minor, _ = parse_version(current)
    return [
        v
        for v in KUBERNETES_VERSIONS
        if parse_version(v) > parse_version(current) and parse_version(v)[:2] in {(major, minor), (major, minor + 1)}
    ]


def vcpus_of(vm_size: str) -> int:
    """vCPUs of an Azure VM size from its name (Standard_D4s_v5 → 4)."""
    match = re.match(r"^Standard_[A-Za-z]+(\d+)", vm_size)
    return int(match.group(1)) if match else 2


def _base36(number: int, width: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while number:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
    return text.rjust(width, "0")


@dataclass
class Operation:
    """An ARM asynchronous operation: what `Azure-AsyncOperation` and `Location` point at."""

    id: str
    subscription_id: str
    location: str
    resource_id: str
    kind: str
    start_time: datetime
    cancel: threading.Event = field(default_factory=threading.Event)
    status: str = "InProgress"
    end_time: datetime | None = None
    error: dict | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def async_operation_path(self) -> str:
        return f"/subscriptions/{self.subscription_id}/providers/{PROVIDER}/locations/{self.location}/operations/{self.id}"

    @property
    def result_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/providers/{PROVIDER}/locations/{self.location}"
            f"/operationresults/{self.id}"
        )

    def to_arm(self) -> dict:
        body = {
            "id": self.async_operation_path,
            "name": self.id,
            "status": self.status,
            "startTime": arm_time(self.start_time),
        }
        if self.end_time is not None:
            body["endTime"] = arm_time(self.end_time)
        if self.error is not None:
            body["error"] = self.error
        return body


def _image_family(image: str) -> str:
    """``AKSUbuntu-2204gen2containerd-202612.05.0`` -> ``AKSUbuntu-2204gen2containerd``."""
    return image.rsplit("-", 1)[0]


def _latest_image(cluster: EmulatedCluster) -> str:
    """The image a new (Linux, Ubuntu: the emulator's only kind) pool of ``cluster`` gets."""
    return cluster.node_images.get(_image_family(LATEST_NODE_IMAGE_VERSION), LATEST_NODE_IMAGE_VERSION)


@dataclass
class AgentPool:
    """An agent pool's ARM record. Its nodes live in the cluster's `KubeCluster`."""

    name: str
    mode: str
    count: int
    vm_size: str
    orchestrator_version: str
    current_orchestrator_version: str
    node_image_version: str
    vmss_id: str
    # the newest node image AKS offers this pool (its upgrade profile's latestNodeImageVersion);
    # ArmModel.release_node_image moves it, as AKS's weekly image releases do per pool OS and SKU
    latest_node_image_version: str = LATEST_NODE_IMAGE_VERSION
    max_pods: int = 110
    upgrade_settings: dict = field(default_factory=dict)
    node_labels: dict = field(default_factory=dict)
    node_taints: list = field(default_factory=list)
    availability_zones: list = field(default_factory=list)
    tags: dict = field(default_factory=dict)  # ARM's properties.tags
    provisioning_state: str = "Succeeded"
    # status.provisioningError: ARM's error of the pool's last operation when it ended Failed or
    # Canceled; a new operation clears it.
    provisioning_error: dict | None = None
    etag: str = field(default_factory=lambda: str(uuid.uuid4()))
    operation: Operation | None = None
    machine_counter: itertools.count = field(default_factory=itertools.count)

    def next_node_name(self) -> str:
        """AKS names nodes after the pool's VM scale set and a never-reused instance number."""
        return f"aks-{self.name}-{self.vmss_id}-vmss{_base36(next(self.machine_counter), 6)}"

    def touch(self) -> None:
        self.etag = str(uuid.uuid4())


@dataclass
class EmulatedCluster:
    """A managed cluster: its ARM identity, its agent pools and its Kubernetes API."""

    subscription_id: str
    resource_group: str
    name: str
    location: str
    kubernetes_version: str
    kube: KubeCluster
    pools: dict[str, AgentPool] = field(default_factory=dict)
    kube_url: str | None = None
    kube_ca_data: str | None = None
    # The token of the cluster's kubeconfig; None: the emulator's own (its Kubernetes API's) token.
    kube_token: str | None = None
    # What AKS's node work drives: the in-process model above, or a real API server.
    backend: KubeBackend | None = None
    vcpu_quota: int | None = None
    # maintenanceConfigurations by name: their ``properties`` as ARM stores them
    maintenance_configurations: dict[str, dict] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # the cluster's ARM tags (Resource Graph selects by them)
    # node images AKS published in the cluster's region since the emulator's defaults, by image
    # family (``AKSUbuntu-2204gen2containerd``): ArmModel.publish_node_image
    node_images: dict[str, str] = field(default_factory=dict)

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{PROVIDER}/managedClusters/{self.name}"
        )

    def pool_id(self, pool_name: str) -> str:
        return f"{self.arm_id}/agentPools/{pool_name}"

    def __post_init__(self) -> None:
        if self.backend is None:
            self.backend = self.kube

    @property
    def real_kubernetes(self) -> bool:
        """True when a real API server, not the emulator's model, holds the cluster's nodes and pods."""
        return self.backend is not self.kube


class ArmModel:
    """Every emulated managed cluster, and the ARM operations on them."""

    def __init__(self, clock: ScaledClock, *, token: str, on_rolling_event: Callable[[EmulatedCluster, str, str], None]
                 | None = None) -> None:
        self.clock = clock
        self.token = token
        self.lock = threading.RLock()
        self.clusters: dict[str, EmulatedCluster] = {}
        self.operations: dict[str, Operation] = {}
        self.subscription_vcpu_quota: dict[str, int] = {}
        # The api-versions this emulated region offers, newest first; a test drops the preview to
        # emulate a region (or a retired preview) without it.
        self.api_versions: tuple[str, ...] = (arm_schema.PREVIEW_API_VERSION, arm_schema.STABLE_API_VERSION)
        self._on_rolling_event = on_rolling_event or (lambda cluster, pool, outcome: None)
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # ---- clusters -------------------------------------------------------------------------------
    def add_cluster(self, subscription_id: str, resource_group: str, name: str, *, kubernetes_version: str,
                    location: str = "eastus", vcpu_quota: int | None = None,
                    tags: dict[str, str] | None = None, backend: KubeBackend | None = None,
                    endpoint: KubeEndpoint | None = None) -> EmulatedCluster:
        """A cluster whose nodes live in the emulator's model, or in ``backend`` (a real API server,
        reached by the cluster's kubeconfig at ``endpoint``)."""
        kube = KubeCluster(self.clock, name)
        cluster = EmulatedCluster(subscription_id, resource_group, name, location, kubernetes_version, kube,
                                  vcpu_quota=vcpu_quota, tags=dict(tags or {}), backend=backend)
        if endpoint is not None:
            cluster.kube_url, cluster.kube_ca_data, cluster.kube_token = endpoint.url, endpoint.ca_data, endpoint.token
        with self.lock:
            if cluster.arm_id.lower() in self.clusters:
                raise ValueError(f"cluster {cluster.arm_id} already exists")
            self.clusters[cluster.arm_id.lower()] = cluster
        return cluster

    def add_pool(self, cluster: EmulatedCluster, name: str, *, count: int, mode: str = "User",
                 vm_size: str = DEFAULT_VM_SIZE, kubernetes_version: str | None = None,
                 upgrade_settings: dict | None = None, node_labels: dict | None = None,
                 node_taints: list[str] | None = None, max_pods: int = 110,
                 availability_zones: list[str] | None = None) -> AgentPool:
        """Create a pool with Ready nodes at once (scenario setup, not an ARM call)."""
        _validate_pool_name(name)
        version = kubernetes_version or cluster.kubernetes_version
        pool = AgentPool(
            name=name, mode=mode, count=count, vm_size=vm_size, orchestrator_version=version,
            current_orchestrator_version=resolve_version(version), node_image_version=DEFAULT_NODE_IMAGE_VERSION,
            vmss_id=self._vmss_id(cluster, name), max_pods=max_pods, upgrade_settings=dict(upgrade_settings or {}),
            node_labels=dict(node_labels or {}), node_taints=list(node_taints or []),
            availability_zones=list(availability_zones or []),
        )
        with self.lock:
            cluster.pools[name] = pool
        for index in range(count):
            cluster.backend.add_node(
                pool.next_node_name(), pool=name, kubernetes_version=pool.current_orchestrator_version, mode=mode,
                vm_size=vm_size, max_pods=max_pods, labels=dict(pool.node_labels) or None,
                taints=_kube_taints(pool.node_taints) or None,
                zone=pool.availability_zones[index % len(pool.availability_zones)] if pool.availability_zones else None,
                node_image_version=pool.node_image_version,
            )
        return pool

    @staticmethod
    def _vmss_id(cluster: EmulatedCluster, pool_name: str) -> str:
        return str(zlib.crc32(f"{cluster.arm_id.lower()}/{pool_name}".encode()) % 10**8).rjust(8, "0")

    def get_cluster(self, subscription_id: str, resource_group: str, name: str) -> EmulatedCluster:
        arm_id = f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/{PROVIDER}/managedClusters/{name}"
        with self.lock:
            cluster = self.clusters.get(arm_id.lower())
        if cluster is None:
            raise ArmError(
                404, "ResourceNotFound",
                f"The Resource '{PROVIDER}/managedClusters/{name}' under resource group '{resource_group}' was not found.",
            )
        return cluster

    def cluster_by_id(self, arm_id: str) -> EmulatedCluster:
        with self.lock:
            cluster = self.clusters.get(arm_id.lower())
        if cluster is None:
            raise KeyError(f"no emulated cluster {arm_id}")
        return cluster

    def list_clusters(self, subscription_id: str, resource_group: str | None = None) -> list[EmulatedCluster]:
        with self.lock:
            clusters = list(self.clusters.values())
        return [
            c for c in clusters
            if c.subscription_id.lower() == subscription_id.lower()
            and (resource_group is None or c.resource_group.lower() == resource_group.lower())
        ]

    def cluster_to_arm(self, cluster: EmulatedCluster) -> dict:
        with self.lock:
            pools = list(cluster.pools.values())
            busy = any(p.operation is not None for p in pools)
            profiles = [dict(self._pool_properties(cluster, p), name=p.name) for p in pools]
        fqdn = f"{cluster.name}-dns-{self._vmss_id(cluster, 'dns')}.hcp.{cluster.location}.azmk8s.io"
        return {
            "id": cluster.arm_id,
            "name": cluster.name,
            "type": f"{PROVIDER}/ManagedClusters",
            "location": cluster.location,
            "sku": {"name": "Base", "tier": "Standard"},
            "identity": {"type": "SystemAssigned"},
            "properties": {
                "provisioningState": "Updating" if busy else "Succeeded",
                "powerState": {"code": "Running"},
                "kubernetesVersion": cluster.kubernetes_version,
                "currentKubernetesVersion": resolve_version(cluster.kubernetes_version),
                "dnsPrefix": f"{cluster.name}-dns",
                "fqdn": fqdn,
                "agentPoolProfiles": profiles,
                "nodeResourceGroup": f"MC_{cluster.resource_group}_{cluster.name}_{cluster.location}",
                "enableRBAC": True,
                "supportPlan": "KubernetesOfficial",
                "networkProfile": {"networkPlugin": "azure", "loadBalancerSku": "standard"},
            },
        }

    def cluster_upgrade_profile(self, cluster: EmulatedCluster) -> dict:
        with self.lock:
            pools = list(cluster.pools.values())
        current = resolve_version(cluster.kubernetes_version)
        return {
            "id": f"{cluster.arm_id}/upgradeprofiles/default",
            "name": "default",
            "type": f"{PROVIDER}/managedClusters/upgradeprofiles",
            "properties": {
                "controlPlaneProfile": {
                    "kubernetesVersion": current, "osType": "Linux", "upgrades": _upgrade_items(current),
                },
                "agentPoolProfiles": [
                    {"name": p.name, "kubernetesVersion": p.current_orchestrator_version, "osType": "Linux",
                     "upgrades": _upgrade_items(p.current_orchestrator_version)}
                    for p in pools
                ],
            },
        }

    def user_credentials(self, cluster: EmulatedCluster) -> dict:
        kubeconfig = yaml.safe_dump(self.kubeconfig(cluster), sort_keys=False).encode()
        return {"kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(kubeconfig).decode()}]}

    def kubeconfig(self, cluster: EmulatedCluster) -> dict:
        """A kubeconfig for the cluster's Kubernetes API with a static bearer token user."""
        user = f"clusterUser_{cluster.resource_group}_{cluster.name}"
        server = {"server": cluster.kube_url}
        if cluster.kube_ca_data:
            server["certificate-authority-data"] = cluster.kube_ca_data
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster.name, "cluster": server}],
            "contexts": [{"name": cluster.name, "context": {"cluster": cluster.name, "user": user}}],
            "current-context": cluster.name,
            "preferences": {},
            "users": [{"name": user, "user": {"token": cluster.kube_token or self.token}}],
        }

    # ---- agent pools: reads ---------------------------------------------------------------------
    def get_pool(self, cluster: EmulatedCluster, name: str) -> AgentPool:
        with self.lock:
            pool = cluster.pools.get(name)
        if pool is None:
            raise ArmError(404, "NotFound", f"Could not find agent pool {name} in managed cluster {cluster.name}.")
        return pool

    def pool_to_arm(self, cluster: EmulatedCluster, pool: AgentPool) -> dict:
        with self.lock:
            properties = self._pool_properties(cluster, pool)
        return {
            "id": cluster.pool_id(pool.name),
            "name": pool.name,
            "type": f"{PROVIDER}/managedClusters/agentPools",
            "properties": properties,
        }

    def _pool_properties(self, cluster: EmulatedCluster, pool: AgentPool) -> dict:
        properties = {
            "eTag": pool.etag,
            "count": pool.count,
            "vmSize": pool.vm_size,
            "osDiskSizeGB": 128,
            "osDiskType": "Managed",
            "kubeletDiskType": "OS",
            "maxPods": pool.max_pods,
            "type": "VirtualMachineScaleSets",
            "enableAutoScaling": False,
            "scaleDownMode": "Delete",
            "provisioningState": pool.provisioning_state,
            "powerState": {"code": "Running"},
            "orchestratorVersion": pool.orchestrator_version,
            "currentOrchestratorVersion": pool.current_orchestrator_version,
            "enableNodePublicIP": False,
            "nodeLabels": dict(pool.node_labels),
            "nodeTaints": list(pool.node_taints),
            "mode": pool.mode,
            "osType": "Linux",
            "osSKU": "Ubuntu",
            "nodeImageVersion": pool.node_image_version,
            "upgradeSettings": dict(pool.upgrade_settings),
            "enableFIPS": False,
        }
        if pool.tags:
            properties["tags"] = dict(pool.tags)
        if pool.availability_zones:
            properties["availabilityZones"] = list(pool.availability_zones)
        if pool.provisioning_error is not None:
            properties["status"] = {"provisioningError": dict(pool.provisioning_error)}
        return properties

    def list_pools(self, cluster: EmulatedCluster) -> list[AgentPool]:
        with self.lock:
            return list(cluster.pools.values())

    def pool_upgrade_profile(self, cluster: EmulatedCluster, pool: AgentPool) -> dict:
        return {
            "id": f"{cluster.pool_id(pool.name)}/upgradeProfiles/default",
            "name": "default",
            "type": f"{PROVIDER}/managedClusters/agentPools/upgradeProfiles",
            "properties": {
                "kubernetesVersion": pool.current_orchestrator_version,
                "osType": "Linux",
                "upgrades": _upgrade_items(pool.current_orchestrator_version),
                "latestNodeImageVersion": pool.latest_node_image_version,
            },
        }

    def get_operation(self, operation_id: str) -> Operation:
        with self.lock:
            operation = self.operations.get(operation_id)
        if operation is None:
            raise ArmError(404, "NotFound", f"Operation {operation_id} was not found.")
        return operation

    # ---- agent pools: writes --------------------------------------------------------------------
    def put_pool(self, cluster: EmulatedCluster, name: str, body: dict, *, if_match: str | None = None,
                 if_none_match: str | None = None, settings_defined: Callable[[str], bool] | None = None,
                 ) -> tuple[AgentPool, Operation, bool]:
        """Create or update a pool; returns the pool, the operation started and whether it is new.
        ``settings_defined`` tells which upgradeSettings fields the request's api-version defines:
        the pool's others are left as they are."""
        properties = dict((body or {}).get("properties") or {})
        with self.lock:
            existing = cluster.pools.get(name)
            _check_preconditions(existing, if_match, if_none_match)
            _validate_pool_name(name)
            if existing is not None:
                self._refuse_if_busy(existing)
                if settings_defined is not None and properties.get("upgradeSettings") is not None:
                    kept = {k: v for k, v in existing.upgrade_settings.items() if not settings_defined(k)}
                    properties["upgradeSettings"] = {**kept, **properties["upgradeSettings"]}
                return (*self._update_pool(cluster, existing, properties), False)
            return (*self._create_pool(cluster, name, properties), True)

    def _create_pool(self, cluster: EmulatedCluster, name: str, properties: dict) -> tuple[AgentPool, Operation]:
        mode = properties.get("mode") or "User"
        if (properties.get("osType") or "Linux") != "Linux":
            raise ArmError(400, "InvalidParameter", "The emulator only offers Linux agent pools.",
                           "agentPoolProfile.osType")
        count = _validated_count(properties.get("count", 1))
        settings = _validated_upgrade_settings(properties.get("upgradeSettings"), mode, pool_size=count)
        requested_version = properties.get("orchestratorVersion") or cluster.kubernetes_version
        version = resolve_version(requested_version)
        vm_size = properties.get("vmSize") or DEFAULT_VM_SIZE
        self._check_quota(cluster, vcpus_of(vm_size) * count)
        pool = AgentPool(
            name=name, mode=mode, count=count, vm_size=vm_size, orchestrator_version=requested_version,
            current_orchestrator_version=version, node_image_version=_latest_image(cluster),
            latest_node_image_version=_latest_image(cluster),
            vmss_id=self._vmss_id(cluster, name), max_pods=int(properties.get("maxPods") or 110),
            upgrade_settings=settings, node_labels=dict(properties.get("nodeLabels") or {}),
            node_taints=list(properties.get("nodeTaints") or []),
            availability_zones=list(properties.get("availabilityZones") or []), provisioning_state="Creating",
            tags=_validated_tags(properties.get("tags")),
        )
        cluster.pools[name] = pool
        operation = self._start(cluster, pool, "create", lambda ctx: upgrader.create_pool_nodes(
            ctx, count=count, kubernetes_version=version, node_image_version=pool.node_image_version))
        return pool, operation

    def _update_pool(self, cluster: EmulatedCluster, pool: AgentPool, properties: dict) -> tuple[AgentPool, Operation]:
        mode = properties.get("mode") or pool.mode
        settings_json = properties.get("upgradeSettings")
        settings = _validated_upgrade_settings(settings_json if settings_json is not None else pool.upgrade_settings,
                                               mode, pool_size=pool.count)
        if mode != pool.mode and pool.mode == "System":
            self._refuse_last_system_pool(cluster, pool)
        requested_version = properties.get("orchestratorVersion") or pool.orchestrator_version
        version = resolve_version(requested_version)
        current = pool.current_orchestrator_version
        if parse_version(version) < parse_version(current):
            raise ArmError(
                400, "AgentPoolUpgradeVersionNotAllowed",
                f"Upgrade agent pool version from {current} to {version} is not allowed: downgrading an agent "
                "pool is not supported. Please use [az aks nodepool get-upgrades] to get the supported versions.",
            )
        if version != current and version not in available_upgrades(current):
            raise ArmError(
                400, "AgentPoolUpgradeVersionNotAllowed",
                f"Upgrade agent pool version from {current} to {version} is not allowed, you can only upgrade one "
                "minor version at a time. Please use [az aks nodepool get-upgrades] to get the supported versions.",
            )
        count = _validated_count(properties.get("count", pool.count))
        nodes = cluster.backend.nodes(pool.name)
        lagging = [n for n in nodes if not upgrader.is_quarantined(n) and upgrader.node_version(n) != version]
        upgrade = version != current or bool(lagging)
        if upgrade and count != pool.count:
            raise ArmError(
                400, "OperationNotAllowed",
                "Upgrading the Kubernetes version and changing the node count cannot be done in the same "
                "operation. Please upgrade first, then scale.",
            )
        if upgrade:
            ctx_settings = upgrader.UpgradeSettings.from_arm(settings)
            surge = upgrader.surge_node_count(ctx_settings.max_surge, len(nodes), len(lagging))
            self._check_quota(cluster, vcpus_of(pool.vm_size) * surge)
        elif count > pool.count:
            self._check_quota(cluster, vcpus_of(pool.vm_size) * (count - len(nodes)))
        elif count < pool.count and pool.mode == "System" and count == 0:
            self._refuse_last_system_pool(cluster, pool)
        pool.mode = mode
        pool.upgrade_settings = settings
        pool.orchestrator_version = requested_version
        pool.node_labels = dict(properties.get("nodeLabels", pool.node_labels) or {})
        pool.node_taints = list(properties.get("nodeTaints", pool.node_taints) or [])
        if "tags" in properties:
            pool.tags = _validated_tags(properties["tags"])
        if upgrade:
            pool.provisioning_state = "Upgrading"
            target_image = pool.latest_node_image_version
            previous = pool.current_orchestrator_version

            def run_upgrade(ctx: upgrader.PoolContext) -> upgrader.Outcome:
                outcome = upgrader.upgrade_pool(ctx, upgrader.UpgradeSettings.from_arm(settings),
                                                kubernetes_version=version, node_image_version=target_image)
                with self.lock:
                    # Upgraded nodes run the target; quarantined ones wait for a later PUT to resume.
                    if outcome.status != "Canceled" or previous == version:
                        pool.current_orchestrator_version = version
                        pool.node_image_version = target_image
                return outcome

            return pool, self._start(cluster, pool, "upgrade", run_upgrade, rolling=True)
        pool.provisioning_state = "Updating"
        pool.count = count
        return pool, self._start(cluster, pool, "scale", lambda ctx: upgrader.scale_pool(
            ctx, upgrader.UpgradeSettings.from_arm(settings), count=count, kubernetes_version=version,
            node_image_version=pool.node_image_version))

    def delete_pool(self, cluster: EmulatedCluster, name: str, *, ignore_pdbs: bool,
                    if_match: str | None = None) -> Operation | None:
        with self.lock:
            pool = cluster.pools.get(name)
            _check_preconditions(pool, if_match, None)
            if pool is None:
                return None
            self._refuse_if_busy(pool)
            if pool.mode == "System":
                self._refuse_last_system_pool(cluster, pool)
            pool.provisioning_state = "Deleting"
            return self._start(cluster, pool, "delete", lambda ctx: upgrader.delete_pool_nodes(
                ctx, upgrader.UpgradeSettings.from_arm(pool.upgrade_settings), ignore_pdbs=ignore_pdbs))

    def delete_machines(self, cluster: EmulatedCluster, name: str, machine_names: list[str]) -> Operation:
        with self.lock:
            pool = self.get_pool(cluster, name)
            self._refuse_if_busy(pool)
            members = {n["metadata"]["name"] for n in cluster.backend.nodes(name)}
            unknown = sorted(set(machine_names) - members)
            if not machine_names or unknown:
                raise ArmError(
                    400, "InvalidParameter",
                    f"The value of parameter machineNames is invalid: {', '.join(unknown) or 'empty'} "
                    f"not found in agent pool {name}.",
                    "machineNames",
                )
            if pool.mode == "System" and len(machine_names) >= len(members):
                self._refuse_last_system_pool(cluster, pool)
            pool.provisioning_state = "Updating"
            return self._start(cluster, pool, "deleteMachines", lambda ctx: upgrader.delete_machines(
                ctx, upgrader.UpgradeSettings.from_arm(pool.upgrade_settings), list(machine_names)))

    def upgrade_node_image(self, cluster: EmulatedCluster, name: str) -> tuple[AgentPool, Operation]:
        with self.lock:
            pool = self.get_pool(cluster, name)
            self._refuse_if_busy(pool)
            settings = upgrader.UpgradeSettings.from_arm(pool.upgrade_settings)
            nodes = cluster.backend.nodes(name)
            latest = pool.latest_node_image_version
            stale = [n for n in nodes if upgrader.node_image(n) != latest]
            self._check_quota(cluster, vcpus_of(pool.vm_size)
                              * upgrader.surge_node_count(settings.max_surge, len(nodes), len(stale)))
            pool.provisioning_state = "UpgradingNodeImageVersion"
            version = pool.current_orchestrator_version

            def run_node_image_upgrade(ctx: upgrader.PoolContext) -> upgrader.Outcome:
                outcome = upgrader.upgrade_pool(ctx, settings, kubernetes_version=version,
                                                node_image_version=latest)
                if outcome.status == "Succeeded":
                    with self.lock:
                        pool.node_image_version = latest
                return outcome

            return pool, self._start(cluster, pool, "upgradeNodeImageVersion", run_node_image_upgrade, rolling=True)

    def release_node_image(self, cluster: EmulatedCluster, name: str, image: str) -> None:
        """A newer node image for one pool (scenario setup, not an ARM call)."""
        with self.lock:
            self.get_pool(cluster, name).latest_node_image_version = image

    def publish_node_image(self, cluster: EmulatedCluster, image: str) -> None:
        """AKS published ``image`` in the cluster's region (scenario setup, not an ARM call): every
        pool of its image family is offered it as its latest, and a pool created from now on runs it.
        AKS releases images region by region, so clusters of one rollout may be offered different
        ones for days; call this on some clusters only to see that."""
        with self.lock:
            family = _image_family(image)
            cluster.node_images[family] = image
            for pool in cluster.pools.values():
                if _image_family(pool.latest_node_image_version) == family:
                    pool.latest_node_image_version = image

    def abort(self, cluster: EmulatedCluster, name: str) -> Operation | None:
        """Stop the pool's running operation; it ends Canceled and the pool with it."""
        with self.lock:
            pool = self.get_pool(cluster, name)
            running = pool.operation
            if running is None:
                return None
            pool.provisioning_state = "Canceling"
            abort = Operation(str(uuid.uuid4()), cluster.subscription_id, cluster.location,
                              cluster.pool_id(name), "abort", self.clock.now())
            self.operations[abort.id] = abort
        running.cancel.set()

        def finish_abort() -> None:
            running.done.wait()
            with self.lock:
                abort.status = "Succeeded"
                abort.end_time = self.clock.now()
            abort.done.set()

        self._spawn(finish_abort)
        return abort

    # ---- operations -----------------------------------------------------------------------------
    def _start(self, cluster: EmulatedCluster, pool: AgentPool,
               kind: str, work: Callable[[upgrader.PoolContext], upgrader.Outcome], *, rolling: bool = False
               ) -> Operation:
        operation = Operation(str(uuid.uuid4()), cluster.subscription_id, cluster.location,
                              cluster.pool_id(pool.name), kind, self.clock.now())
        self.operations[operation.id] = operation
        pool.operation = operation
        pool.provisioning_error = None
        pool.touch()
        ctx = upgrader.PoolContext(
            kube=cluster.backend, clock=self.clock, pool_name=pool.name, mode=pool.mode, vm_size=pool.vm_size,
            max_pods=pool.max_pods, cancel=operation.cancel, new_node_name=self._node_namer(pool),
            node_labels=dict(pool.node_labels), node_taints=_kube_taints(pool.node_taints),
            zones=list(pool.availability_zones),
            min_poll_real_seconds=REAL_KUBE_POLL_SECONDS if cluster.real_kubernetes else 0.0,
        )

        def run() -> None:
            if rolling:
                self._on_rolling_event(cluster, pool.name, "Started")
            try:
                outcome = work(ctx)
            except upgrader.OperationAborted:
                outcome = upgrader.Outcome("Canceled", "OperationCanceled",
                                           f"The {kind} operation on agent pool {pool.name} was aborted.")
            self._finish(cluster, pool, operation, kind, outcome)
            if rolling:
                self._on_rolling_event(cluster, pool.name, "Succeeded" if outcome.status == "Succeeded" else "Failed")

        self._spawn(run)
        return operation

    def _node_namer(self, pool: AgentPool) -> Callable[[], str]:
        def next_name() -> str:
            with self.lock:
                return pool.next_node_name()
        return next_name

    def _finish(self, cluster: EmulatedCluster, pool: AgentPool, operation: Operation, kind: str,
                outcome: upgrader.Outcome) -> None:
        with self.lock:
            operation.status = outcome.status
            operation.end_time = self.clock.now()
            if outcome.status != "Succeeded":
                operation.error = {"code": outcome.code, "message": outcome.message}
                pool.provisioning_error = dict(operation.error)
            pool.operation = None
            pool.touch()
            if kind == "delete" and outcome.status == "Succeeded":
                cluster.pools.pop(pool.name, None)
            else:
                pool.provisioning_state = outcome.status
                if kind != "scale" or outcome.status == "Succeeded":
                    pool.count = len(cluster.backend.nodes(pool.name))
        operation.done.set()

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name="aks-operation", daemon=True)
        with self.lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Abort every running operation and wait for their threads."""
        with self.lock:
            for operation in self.operations.values():
                operation.cancel.set()
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no operation runs (scenario setup, tests)."""
        with self.lock:
            running = [op for op in self.operations.values() if not op.done.is_set()]
        return all(op.done.wait(timeout) for op in running)

    # ---- guards ---------------------------------------------------------------------------------
    def _refuse_if_busy(self, pool: AgentPool) -> None:
        running = pool.operation
        if running is not None:
            raise ArmError(
                409, "OperationNotAllowed",
                f"Operation is not allowed because there's an in progress {running.kind} agent pool operation "
                f"started at {arm_time(running.start_time)}. Please wait for it to finish before starting a new "
                "operation.",
            )

    def _refuse_last_system_pool(self, cluster: EmulatedCluster, pool: AgentPool) -> None:
        others = [p for p in cluster.pools.values() if p is not pool and p.mode == "System"]
        if not others:
            raise ArmError(
                400, "OperationNotAllowed",
                f"Agent pool {pool.name} is the last System agent pool of managed cluster {cluster.name}; "
                "there has to be at least one system agent pool.",
            )

    # ---- maintenance configurations -------------------------------------------------------------
    def maintenance_configuration_to_arm(self, cluster: EmulatedCluster, name: str) -> dict:
        with self.lock:
            properties = cluster.maintenance_configurations.get(name)
        if properties is None:
            raise ArmError(404, "NotFound", f"Maintenance configuration '{name}' was not found in managed cluster "
                           f"'{cluster.name}'.")
        return {"id": f"{cluster.arm_id}/maintenanceConfigurations/{name}", "name": name,
                "type": f"{PROVIDER}/managedClusters/maintenanceConfigurations", "properties": properties}

    def list_maintenance_configurations(self, cluster: EmulatedCluster) -> list[dict]:
        with self.lock:
            names = sorted(cluster.maintenance_configurations)
        return [self.maintenance_configuration_to_arm(cluster, n) for n in names]

    def put_maintenance_configuration(self, cluster: EmulatedCluster, name: str, body: dict) -> dict:
        """Store a configuration as AKS validates it: one of its three names; ``default`` takes
        timeInWeek/notAllowedTime, the other two a maintenanceWindow with exactly one schedule."""
        if name not in MAINTENANCE_CONFIGURATION_NAMES:
            raise ArmError(400, "InvalidParameter", f"The maintenance configuration name '{name}' is invalid: it must "
                           f"be one of {', '.join(MAINTENANCE_CONFIGURATION_NAMES)}.", "name")
        properties = body.get("properties")
        if not isinstance(properties, dict):
            raise ArmError(400, "InvalidParameter", "properties is required.", "properties")
        window = properties.get("maintenanceWindow")
        if name == "default":
            if window is not None:
                raise ArmError(400, "InvalidParameter", "The default maintenance configuration takes timeInWeek, "
                               "not maintenanceWindow.", "properties.maintenanceWindow")
        else:
            _validate_maintenance_window(window)
        with self.lock:
            cluster.maintenance_configurations[name] = properties
        return self.maintenance_configuration_to_arm(cluster, name)

    def delete_maintenance_configuration(self, cluster: EmulatedCluster, name: str) -> bool:
        with self.lock:
            return cluster.maintenance_configurations.pop(name, None) is not None

    def set_vcpu_quota(self, subscription_id: str, vcpus: int | None) -> None:
        with self.lock:
            if vcpus is None:
                self.subscription_vcpu_quota.pop(subscription_id.lower(), None)
            else:
                self.subscription_vcpu_quota[subscription_id.lower()] = vcpus

    def _check_quota(self, cluster: EmulatedCluster, extra_vcpus: int) -> None:
        if extra_vcpus <= 0:
            return
        checks = []
        if cluster.vcpu_quota is not None:
            checks.append((cluster.vcpu_quota, [cluster]))
        subscription_quota = self.subscription_vcpu_quota.get(cluster.subscription_id.lower())
        if subscription_quota is not None:
            checks.append((subscription_quota, self.list_clusters(cluster.subscription_id)))
        for quota, clusters in checks:
            used = sum(_cluster_vcpus(c) for c in clusters)
            if used + extra_vcpus > quota:
                raise ArmError(
                    400, "InsufficientVCPUQuota",
                    f"Insufficient vcpu quota requested {extra_vcpus}, remaining {max(quota - used, 0)} for "
                    f"family standardDSv5Family for region {cluster.location}.",
                )


def _cluster_vcpus(cluster: EmulatedCluster) -> int:
    total = 0
    for pool in list(cluster.pools.values()):
        total += vcpus_of(pool.vm_size) * len(cluster.backend.nodes(pool.name))
    return total


def _upgrade_items(current: str) -> list[dict]:
    return [{"kubernetesVersion": v, "isPreview": False} for v in available_upgrades(current)]


def _kube_taints(taints: list[str]) -> list[dict]:
    """ARM's "key=value:Effect" strings as Kubernetes taints."""
    result = []
    for taint in taints:
        key_value, _, effect = taint.partition(":")
        key, _, value = key_value.partition("=")
        entry = {"key": key, "effect": effect or "NoSchedule"}
        if value:
            entry["value"] = value
        result.append(entry)
    return result


def _validated_tags(tags: object) -> dict:
    """ARM resource tags: a map of strings to strings (names up to 512, values up to 256 characters)."""
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise ArmError(400, "InvalidParameter", "tags must be an object of string names to string values.",
                       "properties.tags")
    if any(len(k) > 512 or len(v) > 256 for k, v in tags.items()):
        raise ArmError(400, "InvalidTagNameLength", "A tag name is at most 512 and a value at most 256 characters.",
                       "properties.tags")
    return dict(tags)


def _check_preconditions(pool: AgentPool | None, if_match: str | None, if_none_match: str | None) -> None:
    if if_match is not None:
        tags = [t.strip().strip('"') for t in if_match.split(",")]
        if pool is None or ("*" not in tags and pool.etag not in tags):
            raise ArmError(412, "PreconditionFailed",
                           f"The specified If-Match value {if_match} does not match the resource's current ETag.")
    if if_none_match is not None and pool is not None:
        tags = [t.strip().strip('"') for t in if_none_match.split(",")]
        if "*" in tags or pool.etag in tags:
            raise ArmError(412, "PreconditionFailed",
                           f"The agent pool {pool.name} already exists and If-None-Match is {if_none_match}.")


def _validate_pool_name(name: str) -> None:
    if not POOL_NAME_RULE.match(name):
        raise ArmError(
            400, "InvalidParameter",
            "The value of parameter agentPoolProfile.name is invalid. Please see https://aka.ms/aks-naming-rules "
            "for more details.",
            "agentPoolProfile.name",
        )


def _validated_count(count: object) -> int:
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1000:
        raise ArmError(400, "InvalidParameter", f"The value of parameter agentPoolProfile.count is invalid: {count}.",
                       "agentPoolProfile.count")
    return count


def _surge_setting_invalid(value: object) -> bool:
    if not isinstance(value, str) or not SURGE_RULE.match(value.strip()):
        return True
    return value.endswith("%") and not 0 <= int(value[:-1]) <= 100


def _validated_upgrade_settings(settings: dict | None, mode: str, *, pool_size: int) -> dict:
    """upgradeSettings as AKS validates them; returns them as stored. Percentages are compared
    as node counts of the pool they apply to (maxBlockedNodes "4" against maxSurge "50%")."""
    settings = dict(settings or {})

    def invalid(field_name: str, why: str) -> ArmError:
        return ArmError(
            400, "InvalidParameter",
            f"The value of parameter agentPoolProfile.upgradeSettings.{field_name} is invalid: {why}",
            f"agentPoolProfile.upgradeSettings.{field_name}",
        )

    for name in ("maxSurge", "maxUnavailable", "maxBlockedNodes"):
        value = settings.get(name)
        if value is not None and _surge_setting_invalid(value):
            raise invalid(name, f"{value!r} must be an integer ('5') or a percentage ('50%').")
    max_unavailable = settings.get("maxUnavailable")
    unavailable_set = max_unavailable is not None and upgrader.node_count_from_setting(max_unavailable, 100) > 0
    if unavailable_set and mode == "System":
        raise invalid("maxUnavailable", "maxUnavailable is not supported on System agent pools.")
    max_surge = settings.get("maxSurge")
    if max_surge is not None and upgrader.node_count_from_setting(max_surge, 100) == 0 and not unavailable_set:
        raise invalid("maxSurge", "maxSurge must be greater than 0 when maxUnavailable is 0.")
    drain_timeout = settings.get("drainTimeoutInMinutes")
    if drain_timeout is not None and not (isinstance(drain_timeout, int) and 1 <= drain_timeout <= 1440):
        raise invalid("drainTimeoutInMinutes", f"{drain_timeout!r} must be between 1 and 1440.")
    soak = settings.get("nodeSoakDurationInMinutes")
    if soak is not None and not (isinstance(soak, int) and 0 <= soak <= 30):
        raise invalid("nodeSoakDurationInMinutes", f"{soak!r} must be between 0 and 30.")
    behavior = settings.get("undrainableNodeBehavior")
    if behavior is not None and behavior not in ("Cordon", "Schedule"):
        raise invalid("undrainableNodeBehavior", f"{behavior!r} must be Cordon or Schedule.")
    max_blocked = settings.get("maxBlockedNodes")
    if max_blocked is not None:
        if behavior != "Cordon":
            raise invalid("maxBlockedNodes", "maxBlockedNodes can only be set with undrainableNodeBehavior Cordon.")
        surge = max_surge or upgrader.DEFAULT_MAX_SURGE
        size = max(pool_size, 1)
        if upgrader.node_count_from_setting(max_blocked, size) < upgrader.node_count_from_setting(surge, size):
            raise invalid("maxBlockedNodes", "maxBlockedNodes must be greater than or equal to maxSurge.")
    return settings


MAINTENANCE_CONFIGURATION_NAMES = ("default", "aksManagedAutoUpgradeSchedule", "aksManagedNodeOSUpgradeSchedule")


def _validate_maintenance_window(window: object) -> None:
    def invalid(where: str, why: str) -> ArmError:
        return ArmError(400, "InvalidParameter", f"The value of parameter maintenanceWindow.{where} is invalid: {why}",
                        f"properties.maintenanceWindow.{where}")

    if not isinstance(window, dict):
        raise ArmError(400, "InvalidParameter", "maintenanceWindow is required.", "properties.maintenanceWindow")
    schedule = window.get("schedule") or {}
    if len([k for k, v in schedule.items() if v is not None]) != 1:
        raise invalid("schedule", "exactly one of daily, weekly, absoluteMonthly, relativeMonthly is required.")
    duration = window.get("durationHours")
    if not isinstance(duration, int) or not 4 <= duration <= 24:
        raise invalid("durationHours", f"{duration!r} must be between 4 and 24.")
    if not isinstance(window.get("startTime"), str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", window["startTime"]):
        raise invalid("startTime", "a time like 09:00 is required.")
