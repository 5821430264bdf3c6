"""The cluster as the domain sees it: frozen snapshots of clusters, pools, nodes, pods and PDBs.

Adapters build these from SDK objects; services and domain decisions never see SDK types or raw
dicts. Only the fields the decisions need are carried.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from upgrade.domain.selectors import LabelSelector
from upgrade.errors import InvalidInput, NotAllowed

QUARANTINE_LABEL = "kubernetes.azure.com/upgrade-status"
QUARANTINE_VALUE = "Quarantined"
AGENTPOOL_LABEL = "kubernetes.azure.com/agentpool"
# The prefix of every label and annotation the product defines (aksupgrade.io/bluegreen-run, …/hold).
PRODUCT_PREFIX = "aksupgrade.io/"


def product_annotations(annotations: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """The product's own annotations of an object, sorted; every other annotation is not kept."""
    return tuple(sorted((k, v) for k, v in (annotations or {}).items() if k.startswith(PRODUCT_PREFIX)))
NODE_IMAGE_LABEL = "kubernetes.azure.com/node-image-version"

_ARM_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.ContainerService/managedClusters/(?P<name>[^/]+)/?$",
    re.IGNORECASE,
)


@dataclass(frozen=True, order=True)
class ClusterRef:
    """An AKS managed cluster, named by its ARM id parts."""

    subscription_id: str
    resource_group: str
    name: str

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ContainerService/managedClusters/{self.name}"
        )

    @classmethod
    def parse(cls, arm_id: object, *, what: str = "cluster id", field: str = "cluster") -> ClusterRef:
        """Parse an ARM id; raises InvalidInput naming ``field`` when it is not a managed cluster id."""
        if not isinstance(arm_id, str) or not arm_id:
            raise InvalidInput(what, field, "must be a non-empty AKS cluster ARM id string")
        match = _ARM_ID.match(arm_id.strip())
        if not match:
            raise InvalidInput(
                what,
                field,
                f"{arm_id!r} is not an AKS cluster ARM id "
                "(/subscriptions/<id>/resourceGroups/<rg>/providers/"
                "Microsoft.ContainerService/managedClusters/<name>)",
            )
        return cls(match["sub"], match["rg"], match["name"])

    def __str__(self) -> str:
        return self.arm_id


def pool_selector(pool: str) -> str:
    """The label selector of one agent pool's nodes."""
    return f"{AGENTPOOL_LABEL}={pool}"


def cluster_key(arm_id: str) -> str:
    """How two spellings of one ARM id compare: ARM ids are case-insensitive, a trailing "/" is noise."""
    return arm_id.strip().rstrip("/").lower()


def is_allowed_cluster(cluster: ClusterRef | str, allowed_clusters: Iterable[str]) -> bool:
    """Whether ALLOWED_CLUSTERS names ``cluster``: the one allow-list check every entry point uses."""
    key = cluster_key(cluster.arm_id if isinstance(cluster, ClusterRef) else cluster)
    return key in {cluster_key(allowed) for allowed in allowed_clusters}


def require_allowed_cluster(cluster: ClusterRef, allowed_clusters: Iterable[str]) -> None:
    """Raise NotAllowed unless ALLOWED_CLUSTERS names ``cluster``."""
    if not is_allowed_cluster(cluster, allowed_clusters):
        raise NotAllowed(f"cluster {cluster.arm_id} is not in ALLOWED_CLUSTERS: refusing to act on it")


@dataclass(frozen=True)
class UpgradeSettings:
    """An agent pool's ``upgradeSettings``; None means AKS's default applies."""

    max_surge: str | None = None
    max_unavailable: str | None = None
    drain_timeout_minutes: int | None = None
    node_soak_minutes: int | None = None
    undrainable_node_behavior: str | None = None  # "Cordon" | "Schedule"
    max_blocked_nodes: str | None = None

    @classmethod
    def from_arm(cls, raw: Mapping[str, Any] | None) -> UpgradeSettings:
        """From ARM's JSON names (``maxSurge``, ``drainTimeoutInMinutes``, ...); absent keys stay None."""
        raw = raw or {}
        return cls(**{attribute: raw.get(arm_name) for attribute, arm_name in _ARM_UPGRADE_SETTINGS.items()})

    def to_arm(self) -> dict[str, Any]:
        """ARM's JSON names, as run facts, reports and operators show them."""
        return {arm_name: getattr(self, attribute) for attribute, arm_name in _ARM_UPGRADE_SETTINGS.items()}

    def with_overrides(self, overrides: UpgradeSettings) -> UpgradeSettings:
        """These settings with every field ``overrides`` sets on top (None keeps this one's)."""
        return UpgradeSettings(**{
            f.name: getattr(self, f.name) if getattr(overrides, f.name) is None else getattr(overrides, f.name)
            for f in fields(UpgradeSettings)
        })


_ARM_UPGRADE_SETTINGS = {
    "max_surge": "maxSurge",
    "max_unavailable": "maxUnavailable",
    "drain_timeout_minutes": "drainTimeoutInMinutes",
    "node_soak_minutes": "nodeSoakDurationInMinutes",
    "undrainable_node_behavior": "undrainableNodeBehavior",
    "max_blocked_nodes": "maxBlockedNodes",
}


# The provisioning states in which no operation runs on a pool.
SETTLED_POOL_STATES = frozenset({"Succeeded", "Failed", "Canceled"})


@dataclass(frozen=True)
class AgentPool:
    name: str
    mode: str  # "System" | "User"
    count: int
    orchestrator_version: str
    vm_size: str = "Standard_D4s_v5"
    provisioning_state: str = "Succeeded"
    power_state: str = "Running"
    os_type: str = "Linux"
    os_sku: str | None = None
    max_pods: int | None = None
    zones: tuple[str, ...] = ()
    node_labels: tuple[tuple[str, str], ...] = ()
    node_taints: tuple[str, ...] = ()
    upgrade_settings: UpgradeSettings = field(default_factory=UpgradeSettings)
    node_image_version: str | None = None
    etag: str | None = None
    error: str | None = None  # ARM's message when the last operation failed
    tags: tuple[tuple[str, str], ...] = ()  # the pool's ARM tags (ownership: upgrade.domain.pool_names)
    # ARM's whole ``properties`` object as read (JSON names), what a blue-green clone copies from
    properties: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def busy(self) -> bool:
        """An operation is (or may be) in progress: every state but the settled ones. A state this
        code does not know (AKS adds some, such as Migrating) counts as busy, never as finished."""
        return self.provisioning_state not in SETTLED_POOL_STATES

    def tag_map(self) -> dict[str, str]:
        return dict(self.tags)


@dataclass(frozen=True)
class Node:
    name: str
    pool: str
    kubernetes_version: str  # "1.30.0", without the leading v
    unschedulable: bool = False
    ready: bool = True
    labels: tuple[tuple[str, str], ...] = ()
    taints: tuple[str, ...] = ()
    created_at: datetime | None = None
    cordoned_at: datetime | None = None  # when the unschedulable taint was added, if known
    allocatable_cpu_millis: int = 0
    annotations: tuple[tuple[str, str], ...] = ()  # only the product's own (PRODUCT_PREFIX…): holds

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)

    @property
    def quarantined(self) -> bool:
        return self.label(QUARANTINE_LABEL) == QUARANTINE_VALUE


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    node: str | None
    phase: str = "Running"
    ready: bool = True
    labels: tuple[tuple[str, str], ...] = ()
    owner_kind: str | None = None  # its controller's kind (the ownerReference with controller: true), else None
    owner_name: str | None = None
    deleting: bool = False  # metadata.deletionTimestamp is set
    mirror: bool = False  # static pod: the kubelet's, the API cannot evict it
    empty_dir: bool = False
    restart_count: int = 0
    crash_looping: bool = False
    grace_seconds: int | None = None
    annotations: tuple[tuple[str, str], ...] = ()  # only the product's own (PRODUCT_PREFIX…): holds
    cpu_request_millis: int = 0  # the sum of its containers' cpu requests (what the scheduler packs)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class Pdb:
    namespace: str
    name: str
    selector: LabelSelector  # spec.selector: {} selects every pod of the namespace, none selects none
    min_available: str | None = None  # "1" or "50%"
    max_unavailable: str | None = None
    disruptions_allowed: int = 0
    current_healthy: int = 0
    desired_healthy: int = 0
    expected_pods: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, pod: Pod) -> bool:
        return pod.namespace == self.namespace and self.selector.matches(pod.label_map())


@dataclass(frozen=True)
class PdbManifest:
    """A PDB's spec as stored, with the versions a conditional write needs: ``resource_version``
    changes with every write (status updates by the disruption controller too), ``generation``
    only when the spec changes."""

    spec: dict[str, Any]
    resource_version: str
    generation: int


@dataclass(frozen=True)
class Scale:
    """A workload's autoscaling/v1 Scale subresource: its desired replicas and the resourceVersion
    a conditional replace must carry."""

    kind: str  # Deployment | ReplicaSet | StatefulSet
    namespace: str
    name: str
    replicas: int
    resource_version: str


@dataclass(frozen=True)
class Autoscaler:
    """A HorizontalPodAutoscaler: the workload whose replicas it sets, its bounds, and the
    resourceVersion a conditional patch of them must carry."""

    namespace: str
    name: str
    target_kind: str
    target_name: str
    min_replicas: int
    max_replicas: int
    resource_version: str = ""


@dataclass(frozen=True)
class StatefulSetState:
    """What the scale-out remediation reads of a StatefulSet besides its counts: whether a rollout
    is pending, and which volume claims its ordinals get and keep."""

    current_revision: str = ""
    update_revision: str = ""
    generation: int = 0
    observed_generation: int = 0
    partition: int = 0
    update_strategy: str = "RollingUpdate"  # spec.updateStrategy.type: RollingUpdate | OnDelete
    replicas: int = 0  # status.replicas: its pods
    updated_replicas: int = 0  # status.updatedReplicas: its pods at updateRevision
    pod_management_policy: str = "OrderedReady"  # | Parallel
    when_scaled: str = "Retain"  # persistentVolumeClaimRetentionPolicy.whenScaled: Retain | Delete
    claim_templates: tuple[str, ...] = ()  # volumeClaimTemplates' names
    ordinals_start: int = 0  # spec.ordinals.start


@dataclass(frozen=True)
class Workload:
    """A pod controller as counted by validation: desired versus ready replicas."""

    namespace: str
    kind: str  # Deployment | ReplicaSet | StatefulSet
    name: str
    desired: int
    ready: int
    # A Deployment's ReplicaSets: those whose controller ownerReference names it (its pods' owners).
    replica_sets: tuple[str, ...] = ()
    statefulset: StatefulSetState | None = None  # a StatefulSet's rollout and claims


@dataclass(frozen=True)
class ClusterSnapshot:
    """A consistent-enough read of one cluster, input to preflight and diagnosis."""

    cluster: ClusterRef
    kubernetes_version: str
    pools: tuple[AgentPool, ...]
    nodes: tuple[Node, ...]
    pods: tuple[Pod, ...]
    pdbs: tuple[Pdb, ...]

    def pool(self, name: str) -> AgentPool | None:
        return next((p for p in self.pools if p.name == name), None)
