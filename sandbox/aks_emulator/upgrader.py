"""How AKS changes the nodes of one agent pool: upgrades, node image upgrades, scaling, deletion.

Follows AKS's documented upgrade behaviour: surge nodes sized from maxSurge (integer or percent of
the pool, rounded up, capped at the nodes still to upgrade), nodes cordoned and drained in batches
of maxSurge + maxUnavailable, evictions retried while a PodDisruptionBudget refuses them until
drainTimeoutInMinutes, an optional soak, a reimage to the new version, uncordon, and surge nodes
drained and deleted at the end. An undrainable node is either quarantined (undrainableNodeBehavior
Cordon: label, left cordoned on the old version, a surge node kept as its permanent replacement) or
made schedulable again (Schedule, the default: the operation stops and fails).

maxBlockedNodes (Cordon only; default maxSurge, never below it) is how many extra nodes the pool may
keep as replacements of blocked nodes. Each blocked node takes a surge node as its replacement. Once
the blocked nodes reach maxBlockedNodes with nodes still to upgrade (or exceed it), the operation
stops Canceled ("Cordoned nodes have used all surge nodes..."). Below the limit the upgrade goes on;
if blocked nodes have taken every surge node (only possible when maxBlockedNodes is above maxSurge),
AKS surges maxSurge new nodes for the nodes still to upgrade. When every node was processed within
the limit the operation ends Failed with the first drain failure.

Everything here runs on an operation's background thread and touches the cluster only through
its `KubeBackend` (the emulator's model or a real API server, see `backend`), holding its `lock`
only around short compound changes, never across a wait. Waits are in emulated time and end early when the operation is aborted.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sandbox.aks_emulator.backend import KubeBackend
from sandbox.aks_emulator.clock import ScaledClock
from sandbox.aks_emulator.kube import DisruptionBlocked, EvictionNotSupported, PodNotFound

QUARANTINE_LABEL = "kubernetes.azure.com/upgrade-status"
QUARANTINE_VALUE = "Quarantined"
NODE_IMAGE_LABEL = "kubernetes.azure.com/node-image-version"

DEFAULT_MAX_SURGE = "10%"
DEFAULT_DRAIN_TIMEOUT_MINUTES = 30
# Emulated durations of the VM work AKS does; small next to drain timeouts, but not zero so
# that observers can see nodes appear and change.
NODE_PROVISIONING_SECONDS = 90
NODE_REIMAGE_SECONDS = 60
# kubectl's drain retries a PDB-refused eviction every 5 s; AKS's drain behaves the same way.
EVICTION_RETRY_SECONDS = 5
DRAIN_POLL_SECONDS = 1

CORDONED_NODES_EXHAUSTED_SURGE = (
    "Cordoned nodes have used all surge nodes but there are more nodes to be upgraded. "
    "Please fix your PDBs blocking node drain and kindly retry upgrade operation."
)


class OperationAborted(Exception):
    """The operation was aborted (abort API) or the emulator is stopping."""


@dataclass(frozen=True)
class BlockedEviction:
    """Why a node could not be drained before its drain timeout."""

    node: str
    namespace: str | None = None
    pod: str | None = None
    pdb: str | None = None
    unready_pods: int = 0
    reason: str = "Too Many Requests"

    def drain_failure_message(self) -> str:
        """AKS's drain failure message (shape from AKS's UpgradeFailed errors)."""
        if self.pod is None:
            return f"Drain node {self.node} failed: timed out waiting for its pods to terminate."
        pdb_name = (self.pdb or "").split("/")[-1]
        return (
            f"Drain node {self.node} failed when evicting pod {self.pod} failed with {self.reason} "
            "error. This is often caused by a restrictive Pod Disruption Budget (PDB) policy. "
            "See http://aka.ms/aks/debugdrainfailures. Original error: Cannot evict pod as it would "
            "violate the pod's disruption budget.. PDB debug info: "
            f"{self.namespace}/{self.pod} blocked by pdb {pdb_name} with {self.unready_pods} unready pods."
        )


@dataclass(frozen=True)
class Outcome:
    """How an operation ended: ARM status Succeeded/Failed/Canceled and, if not, an ARM error."""

    status: str
    code: str | None = None
    message: str | None = None

    @classmethod
    def succeeded(cls) -> Outcome:
        return cls("Succeeded")


@dataclass(frozen=True)
class UpgradeSettings:
    """An agent pool's `upgradeSettings`, as ARM JSON sends them (already validated by arm.py)."""

    max_surge: str = DEFAULT_MAX_SURGE
    max_unavailable: str = "0"
    drain_timeout_minutes: int = DEFAULT_DRAIN_TIMEOUT_MINUTES
    node_soak_minutes: int = 0
    undrainable_node_behavior: str = "Schedule"
    max_blocked_nodes: str | None = None

    @classmethod
    def from_arm(cls, settings: dict | None) -> UpgradeSettings:
        settings = settings or {}
        return cls(
            max_surge=str(settings.get("maxSurge") or DEFAULT_MAX_SURGE),
            max_unavailable=str(settings.get("maxUnavailable") or "0"),
            drain_timeout_minutes=int(settings.get("drainTimeoutInMinutes") or DEFAULT_DRAIN_TIMEOUT_MINUTES),
            node_soak_minutes=int(settings.get("nodeSoakDurationInMinutes") or 0),
            undrainable_node_behavior=settings.get("undrainableNodeBehavior") or "Schedule",
            max_blocked_nodes=settings.get("maxBlockedNodes"),
        )


def node_count_from_setting(value: str, pool_size: int) -> int:
    """An integer ("5") or a percent of the pool ("33%", fractions round up) as a node count."""
    value = value.strip()
    if value.endswith("%"):
        return math.ceil(int(value[:-1]) * pool_size / 100)
    return int(value)


def surge_node_count(max_surge: str, pool_size: int, nodes_to_upgrade: int) -> int:
    """Surge nodes AKS creates: maxSurge of the pool size, capped at the nodes still to upgrade."""
    return min(node_count_from_setting(max_surge, pool_size), nodes_to_upgrade)


def node_version(node: dict) -> str:
    return node["status"]["nodeInfo"]["kubeletVersion"].lstrip("v")


def node_image(node: dict) -> str | None:
    return node["metadata"].get("labels", {}).get(NODE_IMAGE_LABEL)


def is_quarantined(node: dict) -> bool:
    return node["metadata"].get("labels", {}).get(QUARANTINE_LABEL) == QUARANTINE_VALUE


def _is_daemonset_pod(pod: dict) -> bool:
    return any(ref.get("kind") == "DaemonSet" for ref in pod["metadata"].get("ownerReferences") or [])


def _is_mirror_pod(pod: dict) -> bool:
    return "kubernetes.io/config.mirror" in (pod["metadata"].get("annotations") or {})


def _pods_to_drain(kube: KubeBackend, node: str) -> list[dict]:
    """Pods AKS's drain must see gone: everything but DaemonSet and static pods."""
    return [p for p in kube.pods_on_node(node) if not _is_daemonset_pod(p) and not _is_mirror_pod(p)]


@dataclass
class PoolContext:
    """What the upgrader needs to know about the agent pool it changes."""

    kube: KubeBackend
    clock: ScaledClock
    pool_name: str
    mode: str
    vm_size: str
    max_pods: int
    cancel: threading.Event
    new_node_name: Callable[[], str]
    node_labels: dict = field(default_factory=dict)
    node_taints: list = field(default_factory=list)
    zones: list = field(default_factory=list)
    # A real API server is polled no more often than this while draining (real seconds; the
    # emulator's model is in-process and needs no floor).
    min_poll_real_seconds: float = 0.0

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise OperationAborted()

    def wait(self, aks_seconds: float) -> None:
        """Wait an emulated duration; stop at once when the operation is aborted."""
        if self.cancel.wait(self.clock.real_seconds(aks_seconds)):
            raise OperationAborted()

    def pool_nodes(self) -> list[dict]:
        return sorted(self.kube.nodes(self.pool_name), key=lambda n: n["metadata"]["name"])

    def event(self, reason: str, node: str, message: str, *, warning: bool = False) -> None:
        self.kube.record_event(
            reason=reason, message=message, kind="Node", name=node, type="Warning" if warning else "Normal"
        )

    def add_nodes(self, count: int, *, kubernetes_version: str, node_image_version: str, surge: bool) -> list[str]:
        """Provision `count` VMs at once (one emulated provisioning delay), then register the nodes."""
        names = [self.new_node_name() for _ in range(count)]
        if not names:
            return names
        for name in names:
            if surge:
                self.event("Surge", name, f"Created a surge node {name} for agentpool {self.pool_name}")
        self.wait(NODE_PROVISIONING_SECONDS)
        zone_offset = len(self.kube.nodes(self.pool_name))
        for index, name in enumerate(names):
            self.kube.add_node(
                name,
                pool=self.pool_name,
                kubernetes_version=kubernetes_version,
                mode=self.mode,
                vm_size=self.vm_size,
                max_pods=self.max_pods,
                labels=dict(self.node_labels) or None,
                taints=list(self.node_taints) or None,
                zone=self.zones[(zone_offset + index) % len(self.zones)] if self.zones else None,
                node_image_version=node_image_version,
            )
        return names

    def cordon(self, node: str) -> None:
        with self.kube.lock:
            current = self.kube.get_node(node)
            if current is not None and not current["spec"].get("unschedulable"):
                self.kube.set_unschedulable(node, True)

    def uncordon(self, node: str) -> None:
        if self.kube.get_node(node) is not None:
            self.kube.set_unschedulable(node, False)

    def drain(self, nodes: list[str], timeout_minutes: float, *, honour_pdbs: bool = True) -> dict[str, BlockedEviction]:
        """Evict every drainable pod of `nodes` concurrently, like kubectl drain; retry evictions a
        PDB refuses until the timeout. Returns the nodes that could not be drained and why."""
        deadline = self.clock.now() + timedelta(minutes=timeout_minutes)
        pending = set(nodes)
        blocked: dict[str, BlockedEviction] = {}
        next_attempt: dict[tuple[str, str], object] = {}
        announced: set[tuple[str, str]] = set()
        while True:
            self.check_cancel()
            now = self.clock.now()
            for node in sorted(pending):
                pods = _pods_to_drain(self.kube, node)
                if not pods:
                    pending.discard(node)
                    blocked.pop(node, None)
                    continue
                for pod in pods:
                    meta = pod["metadata"]
                    key = (meta["namespace"], meta["name"])
                    if meta.get("deletionTimestamp") or next_attempt.get(key, now) > now:
                        continue
                    try:
                        if honour_pdbs:
                            self.kube.evict(*key)
                        else:
                            self.kube.delete_pod(*key)
                    except PodNotFound:
                        continue
                    except (DisruptionBlocked, EvictionNotSupported) as refused:
                        if isinstance(refused, DisruptionBlocked):
                            blocked[node] = BlockedEviction(node, key[0], key[1], refused.pdb, refused.unready_pods)
                        else:
                            blocked[node] = BlockedEviction(node, key[0], key[1], reason="Internal Server Error")
                        next_attempt[key] = now + timedelta(seconds=EVICTION_RETRY_SECONDS)
                        if key not in announced:
                            announced.add(key)
                            self.event(
                                "Drain",
                                node,
                                f"Eviction blocked by Too Many Requests (usually a pdb): {key[1]}",
                                warning=True,
                            )
            if not pending:
                return {}
            if self.clock.now() >= deadline:
                return {node: blocked.get(node, BlockedEviction(node)) for node in sorted(pending)}
            if self.cancel.wait(max(self.clock.real_seconds(DRAIN_POLL_SECONDS), self.min_poll_real_seconds)):
                raise OperationAborted()

    def remove(self, nodes: list[str], timeout_minutes: float, *, honour_pdbs: bool = True) -> None:
        """Cordon, drain and delete nodes; pods a PDB still protects at the timeout are deleted with
        their VM, as when AKS deletes machines."""
        for node in nodes:
            self.cordon(node)
            self.event("Drain", node, f"Draining node: {node}")
        self.drain(nodes, timeout_minutes, honour_pdbs=honour_pdbs)
        for node in nodes:
            if self.kube.get_node(node) is not None:
                self.kube.remove_node(node)


def upgrade_pool(
    ctx: PoolContext,
    settings: UpgradeSettings,
    *,
    kubernetes_version: str,
    node_image_version: str,
) -> Outcome:
    """Roll every node of the pool that is not quarantined to the version and node image given."""
    nodes = ctx.pool_nodes()
    to_upgrade = [
        n["metadata"]["name"]
        for n in nodes
        if not is_quarantined(n) and (node_version(n) != kubernetes_version or node_image(n) != node_image_version)
    ]
    if not to_upgrade:
        return Outcome.succeeded()
    pool_size = len(nodes)
    surge_count = surge_node_count(settings.max_surge, pool_size, len(to_upgrade))
    unavailable = node_count_from_setting(settings.max_unavailable, pool_size)
    cordon_mode = settings.undrainable_node_behavior == "Cordon"
    max_blocked = (node_count_from_setting(settings.max_blocked_nodes, pool_size)
                   if settings.max_blocked_nodes is not None else surge_count)

    surge_nodes = ctx.add_nodes(
        surge_count, kubernetes_version=kubernetes_version, node_image_version=node_image_version, surge=True
    )
    batch_size = max(1, surge_count + unavailable)
    quarantined: list[BlockedEviction] = []
    queue = list(to_upgrade)
    while queue:
        batch, queue = queue[:batch_size], queue[batch_size:]
        for node in batch:
            ctx.cordon(node)
            ctx.event("Drain", node, f"Draining node: {node}")
        failures = ctx.drain(batch, settings.drain_timeout_minutes)
        drained = [node for node in batch if node not in failures]
        if drained and settings.node_soak_minutes:
            ctx.wait(settings.node_soak_minutes * 60)
        for node in drained:
            _reimage(ctx, node, kubernetes_version, node_image_version)
        if failures and not cordon_mode:
            for node in failures:
                ctx.uncordon(node)
            _delete_surge_nodes(ctx, surge_nodes, settings)
            first = next(iter(failures.values()))
            return Outcome("Failed", "UpgradeFailed", first.drain_failure_message())
        for node, failure in failures.items():
            ctx.kube.set_node_label(node, QUARANTINE_LABEL, QUARANTINE_VALUE)
            ctx.event(
                "Upgrade",
                node,
                f"Node {node} could not be drained; cordoned and labelled "
                f"{QUARANTINE_LABEL}={QUARANTINE_VALUE}",
                warning=True,
            )
            quarantined.append(failure)
        if _blocked_nodes_exhausted(len(quarantined), max_blocked, nodes_left=bool(queue)):
            _keep_replacements_and_delete_rest(ctx, surge_nodes, len(quarantined), settings)
            return Outcome("Canceled", "UpgradeCanceled", CORDONED_NODES_EXHAUSTED_SURGE)
        # Within maxBlockedNodes every blocked node keeps a surge node as its replacement; the others
        # go on taking workloads. Only when blocked nodes have taken them all (possible only with
        # maxBlockedNodes above maxSurge) does AKS surge again, so the remaining nodes still roll.
        replacements_missing = len(quarantined) - len(surge_nodes)
        no_free_surge = len(surge_nodes) <= len(quarantined)
        to_add = max(0, replacements_missing) + (min(surge_count, len(queue)) if queue and no_free_surge else 0)
        if to_add:
            surge_nodes += ctx.add_nodes(
                to_add, kubernetes_version=kubernetes_version, node_image_version=node_image_version, surge=True
            )
    _keep_replacements_and_delete_rest(ctx, surge_nodes, len(quarantined), settings)
    if quarantined:
        return Outcome("Failed", "UpgradeFailed", quarantined[0].drain_failure_message())
    return Outcome.succeeded()


def _blocked_nodes_exhausted(blocked: int, max_blocked: int, *, nodes_left: bool) -> bool:
    """With Cordon, AKS stops and cancels once more nodes are blocked than maxBlockedNodes allows, or
    when they reach it while nodes are still to be upgraded."""
    if not blocked:
        return False
    return blocked > max_blocked or (nodes_left and blocked >= max_blocked)


def _reimage(ctx: PoolContext, node: str, kubernetes_version: str, node_image_version: str) -> None:
    ctx.wait(NODE_REIMAGE_SECONDS)
    with ctx.kube.lock:
        ctx.kube.set_node_version(node, kubernetes_version)
        ctx.kube.set_node_image(node, node_image_version)
        ctx.kube.set_unschedulable(node, False)
    ctx.event("Upgrade", node, f"Successfully reimaged node: {node} to Kubernetes {kubernetes_version}")


def _keep_replacements_and_delete_rest(
    ctx: PoolContext, surge_nodes: list[str], replacements: int, settings: UpgradeSettings
) -> None:
    """AKS keeps one surge node per quarantined node as a permanent member and deletes the others."""
    for node in surge_nodes[:replacements]:
        ctx.event("Upgrade", node, f"Surge node {node} kept as the permanent replacement of a quarantined node")
    _delete_surge_nodes(ctx, surge_nodes[replacements:], settings)


def _delete_surge_nodes(ctx: PoolContext, surge_nodes: list[str], settings: UpgradeSettings) -> None:
    for node in surge_nodes:
        ctx.event("Surge", node, f"Deleting surge node {node}")
    ctx.remove(surge_nodes, settings.drain_timeout_minutes)


def scale_pool(ctx: PoolContext, settings: UpgradeSettings, *, count: int, kubernetes_version: str,
               node_image_version: str) -> Outcome:
    """Add or remove nodes; a scale-down removes quarantined nodes first, then the newest nodes."""
    nodes = ctx.pool_nodes()
    if count > len(nodes):
        ctx.add_nodes(
            count - len(nodes), kubernetes_version=kubernetes_version, node_image_version=node_image_version,
            surge=False,
        )
        return Outcome.succeeded()
    excess = len(nodes) - count
    if excess <= 0:
        return Outcome.succeeded()
    quarantined = [n["metadata"]["name"] for n in nodes if is_quarantined(n)]
    others = [n["metadata"]["name"] for n in reversed(nodes) if not is_quarantined(n)]
    victims = (quarantined + others)[:excess]
    for node in victims:
        ctx.cordon(node)
        ctx.event("Drain", node, f"Draining node: {node}")
    failures = ctx.drain(victims, settings.drain_timeout_minutes)
    for node in victims:
        if node not in failures:
            ctx.kube.remove_node(node)
    if failures:
        first = next(iter(failures.values()))
        return Outcome("Failed", "ScaleDownFailed", first.drain_failure_message())
    return Outcome.succeeded()


def create_pool_nodes(ctx: PoolContext, *, count: int, kubernetes_version: str, node_image_version: str) -> Outcome:
    ctx.add_nodes(count, kubernetes_version=kubernetes_version, node_image_version=node_image_version, surge=False)
    return Outcome.succeeded()


def delete_pool_nodes(ctx: PoolContext, settings: UpgradeSettings, *, ignore_pdbs: bool) -> Outcome:
    """Drain (honouring PDBs unless told not to) and delete every node of the pool."""
    nodes = [n["metadata"]["name"] for n in ctx.pool_nodes()]
    for node in nodes:
        ctx.cordon(node)
        ctx.event("Drain", node, f"Draining node: {node}")
    failures = ctx.drain(nodes, settings.drain_timeout_minutes, honour_pdbs=not ignore_pdbs)
    if failures:
        for node in nodes:
            if not is_quarantined(ctx.kube.get_node(node) or {"metadata": {}}):
                ctx.uncordon(node)
        first = next(iter(failures.values()))
        return Outcome("Failed", "PodDrainFailure", first.drain_failure_message())
    for node in nodes:
        ctx.kube.remove_node(node)
    return Outcome.succeeded()


def delete_machines(ctx: PoolContext, settings: UpgradeSettings, machines: list[str]) -> Outcome:
    """Delete the named machines; their pods go with them once the drain timeout passes."""
    ctx.remove(machines, settings.drain_timeout_minutes)
    return Outcome.succeeded()
