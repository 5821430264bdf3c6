"""The ports services depend on: Protocols that the adapters (and test fakes) implement.

Every method speaks domain types (upgrade.domain.*) and raises the project's errors
(upgrade.errors): TemporaryError when a retry may help, PermanentError (NotFound, Conflict,
NotAllowed) when it cannot. No SDK type crosses these boundaries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from upgrade.domain.alerts import Alert
from upgrade.domain.fleet import FleetGate, GateRef, UpdateStage
from upgrade.domain.model import (
    AgentPool,
    Autoscaler,
    ClusterRef,
    Node,
    Pdb,
    PdbManifest,
    Pod,
    Scale,
    Workload,
)
from upgrade.domain.policy import UpgradePolicy
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.domain.steps import StepMessage
from upgrade.domain.windows import MaintenanceConfig


class Clock(Protocol):
    def now(self) -> datetime: ...


class StepQueue(Protocol):
    def send(self, message: StepMessage, *, delay_seconds: float = 0.0) -> None:
        """Enqueue ``message`` on ``upgrade-steps``, invisible for ``delay_seconds``."""

    def send_to_poison(self, body: str) -> None:
        """Put a message that can never succeed (invalid, unknown step) straight on the poison queue."""


class RunStore(Protocol):
    def create(self, run: RunRecord) -> RunRecord:
        """Insert a new run. For an active run, at most one per cluster/pool: raises Conflict
        (with ``.code`` = the active run's id) when another active run holds the pool."""

    def get(self, run_id: str) -> RunRecord:
        """Raises NotFound."""

    def update(self, run: RunRecord) -> RunRecord:
        """Write ``run`` if its ETag still matches; returns it with the new ETag; raises Conflict.
        A record too large for the store raises PermanentError (code ``RecordTooLarge``)."""

    def find_active(self, cluster: str, pool: str | None) -> RunRecord | None: ...

    def overdue(self, before: datetime, *, limit: int = 100) -> Sequence[RunRecord]:
        """Active runs whose live step was due before ``before`` (``RunRecord.live_due``), oldest
        first: read from an index of active runs, never by scanning every run."""

    def list_runs(self, *, cluster: str | None = None, limit: int = 50) -> Sequence[RunRecord]: ...

    def append_history(self, entry: HistoryEntry) -> None: ...

    def history(self, run_id: str) -> Sequence[HistoryEntry]: ...


class StateStore(Protocol):
    """Small keyed documents with ETags (alert dedup state, event dedup)."""

    def get(self, partition: str, key: str) -> tuple[dict[str, Any], str] | None: ...

    def put(self, partition: str, key: str, value: dict[str, Any], *, etag: str | None) -> str:
        """Insert (etag None) or replace if the ETag matches; raises Conflict otherwise."""

    def delete(self, partition: str, key: str, *, etag: str | None = None) -> None:
        """Remove the document (gone already is fine). With ``etag``, only if it still matches:
        raises Conflict when another writer changed or removed it first."""

    def list(self, partition: str) -> Sequence[tuple[str, dict[str, Any]]]: ...


class AlertSink(Protocol):
    def publish(self, alert: Alert) -> bool:
        """Deliver the alert; returns whether it was delivered. Never raises for a delivery failure:
        it retries, then logs and returns False, so a caller that keeps dedup state (the quarantine
        scan) records the alert as told only when it was, and sends it again later otherwise."""


class Kube(Protocol):
    """One cluster's Kubernetes API."""

    def list_nodes(
        self, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[Node]: ...

    def get_node(self, name: str) -> Node: ...

    def set_unschedulable(self, node: str, value: bool) -> bool:
        """Cordon (True) or uncordon (False); patches only when needed; returns whether it patched."""

    def set_node_label(self, node: str, key: str, value: str | None) -> bool:
        """Set, or remove when value is None; patches only when needed."""

    def list_pods(
        self,
        *,
        node: str | None = None,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[Pod]: ...

    def get_pod(self, namespace: str, name: str) -> Pod:
        """Raises NotFound."""

    def evict(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
        """policy/v1 Eviction. Raises TemporaryError(status=429) when a PDB forbids it now,
        NotFound when the pod is gone, PermanentError (code MULTIPLE_PDBS) when more than one PDB
        covers the pod: the API never evicts such a pod."""

    def daemonset_exists(self, namespace: str, name: str) -> bool:
        """Whether the API has this DaemonSet (a drain deletes an orphaned DaemonSet pod only with force)."""

    def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None: ...

    def list_pdbs(self, *, namespace: str | None = None) -> list[Pdb]: ...

    def get_pdb_manifest(self, namespace: str, name: str) -> PdbManifest:
        """The PDB's spec as stored, with its resourceVersion and generation. Raises NotFound."""

    def patch_pdb_spec(
        self, namespace: str, name: str, spec: dict[str, Any], *, resource_version: str | None = None
    ) -> PdbManifest:
        """Make the PDB's spec exactly ``spec``; with ``resource_version``, only if the PDB is still
        at that version (the API server's precondition: raises Conflict otherwise). Returns the PDB
        as stored by this write."""

    def list_workloads(self, *, namespace: str | None = None) -> list[Workload]: ...

    def get_scale(self, kind: str, namespace: str, name: str) -> Scale:
        """The scale subresource of a Deployment, a ReplicaSet or a StatefulSet. Raises NotFound."""

    def list_autoscalers(self, *, namespace: str) -> list[Autoscaler]:
        """The namespace's HorizontalPodAutoscalers (none when the API does not serve them)."""

    def get_autoscaler(self, namespace: str, name: str) -> Autoscaler:
        """One HorizontalPodAutoscaler (autoscaling/v2). Raises NotFound."""

    def patch_autoscaler_bounds(self, namespace: str, name: str, min_replicas: int, max_replicas: int, *,
                                resource_version: str) -> Autoscaler:
        """Set the HPA's minReplicas and maxReplicas, only if it is still at ``resource_version``
        (raises Conflict otherwise). Returns the HPA as stored."""

    def list_volume_claims(self, *, namespace: str) -> list[str]:
        """The names of the namespace's PersistentVolumeClaims."""

    def replace_scale(self, kind: str, namespace: str, name: str, replicas: int, *, resource_version: str) -> Scale:
        """Set the workload's replicas, only if its scale is still at ``resource_version`` (the API
        server's precondition: raises Conflict otherwise). Returns the scale as stored."""

    def list_events(self, *, reasons: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Recent Kubernetes events (reason, message, object, time) as plain data."""


class Aks(Protocol):
    """One subscription's AKS management plane (ARM). Operations start and return at once:
    callers check progress from a later, delayed step instead of blocking."""

    def get_cluster_version(self, cluster: ClusterRef) -> str: ...

    def list_pools(self, cluster: ClusterRef) -> list[AgentPool]: ...

    def get_pool(self, cluster: ClusterRef, pool: str) -> AgentPool:
        """Raises NotFound."""

    def begin_put_pool(self, cluster: ClusterRef, pool: AgentPool, *, if_match: str | None = None) -> None:
        """Create or update (version, count, upgradeSettings) without waiting."""

    def begin_create_pool(self, cluster: ClusterRef, name: str, properties: Mapping[str, Any]) -> None:
        """Create a pool from ARM ``properties`` (JSON names) without waiting, only if no pool has
        that name (If-None-Match: *; Conflict otherwise)."""

    def begin_delete_pool(
        self, cluster: ClusterRef, pool: str, *, ignore_pod_disruption_budget: bool = False
    ) -> None: ...

    def begin_delete_machines(self, cluster: ClusterRef, pool: str, machines: Sequence[str]) -> None: ...

    def available_upgrades(self, cluster: ClusterRef, pool: str) -> list[str]:
        """Kubernetes versions the pool's upgrade profile offers."""

    def latest_node_image_version(self, cluster: ClusterRef, pool: str) -> str | None:
        """The node image the pool's upgrade profile offers (latestNodeImageVersion)."""

    def begin_upgrade_node_image(self, cluster: ClusterRef, pool: str) -> None:
        """AKS's node-image-only upgrade of the pool (upgradeNodeImageVersion), without waiting."""

    def list_maintenance_configurations(self, cluster: ClusterRef) -> list[MaintenanceConfig]:
        """The cluster's maintenanceConfigurations (default, aksManagedAutoUpgradeSchedule, …)."""


class ClusterSearch(Protocol):
    def clusters_tagged(self, subscriptions: Sequence[str], tags: Mapping[str, str]) -> list[str]:
        """ARM ids of the managed clusters in ``subscriptions`` carrying every tag of ``tags``
        (Azure Resource Graph)."""


class Fleet(Protocol):
    """Azure Kubernetes Fleet Manager gates of one subscription."""

    def get_gate(self, gate: GateRef) -> FleetGate: ...

    def update_run_stages(self, update_run: str) -> list[UpdateStage]:
        """The stages of an update run (its ARM id), with each group's member clusters."""

    def complete_gate(self, found: FleetGate) -> None:
        """Set the gate Completed if it is unchanged since read (Conflict otherwise)."""


class Platform(Protocol):
    """What the services get from the wiring: ports, built lazily once per worker, and the two
    settings every service consults (the allow-list and the upgrade policy)."""

    clock: Clock
    queue: StepQueue
    runs: RunStore
    state: StateStore
    alerts: AlertSink

    @property
    def allowed_clusters(self) -> frozenset[str]:
        """ARM ids of the clusters the app may act on (ALLOWED_CLUSTERS)."""

    @property
    def policy(self) -> UpgradePolicy:
        """The validated UPGRADE_POLICY."""

    def kube(self, cluster: ClusterRef) -> Kube: ...

    def aks(self, cluster: ClusterRef) -> Aks: ...

    def cluster_search(self) -> ClusterSearch: ...

    def fleet(self, subscription_id: str) -> Fleet: ...

    def http_status(self, url: str, timeout: float, allowed_hosts: tuple[str, ...]) -> int:
        """GET ``url`` and return its HTTP status (a blue-green validation probe), only where
        upgrade.domain.probes allows with this allow-list. Raises OSError when it cannot be reached,
        NotAllowed for a URL, redirect or resolved address the rules refuse, and PermanentError for
        a malformed URL."""
