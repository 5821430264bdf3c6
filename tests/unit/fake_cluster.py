"""The one in-memory AKS cluster of the unit tests: the Kube and Aks ports over shared state, for
the rolling, quarantine, remediation, event and blue-green tests.

Faithful where those services depend on it: evictions honour PDBs (429 as TemporaryError with
status 429); a ReplicaSet pod that goes comes back on the least loaded schedulable, Ready node
under a new name and UID (Pending while there is none), an unmanaged pod does not; a pod placed
on a pool listed in ``crashloop`` crash-loops. A pool PUT upgrades the nodes behind the pool
version except quarantined ones, and a scale-down removes quarantined nodes first, then the
newest; deleting machines shrinks the pool. Creating a pool (``begin_create_pool``) or deleting
one takes one look: the next listing or read sees it finished. ``busy_reads`` makes the next
pool reads report an operation in progress; ``refuse_once`` makes the next node or pool listing
raise (RBAC revoked).

For the drain engine: evictions may run concurrently (``max_in_flight``, ``eviction_latency``),
``graceful_evictions`` leaves an evicted pod terminating until ``finish_terminations``, and
``blocked`` / ``evict_errors`` / ``list_errors`` / ``pdbs`` (PDBs listed as given, their status
set by the test) inject what the API answers. Every port call is counted in ``calls`` by method name, and each change a
test may count by what it changed: ``("cordon"|"uncordon", node)``, ``("create_pool"|
"delete_pool", pool)``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from upgrade.domain.model import (
    AGENTPOOL_LABEL,
    NODE_IMAGE_LABEL,
    QUARANTINE_LABEL,
    QUARANTINE_VALUE,
    AgentPool,
    Autoscaler,
    ClusterRef,
    Node,
    Pdb,
    PdbManifest,
    Pod,
    Scale,
    StatefulSetState,
    Workload,
)
from upgrade.domain.pdb import desired_healthy, disruptions_allowed, is_healthy
from upgrade.domain.selectors import LabelSelector
from upgrade.errors import Conflict, NotFound, PermanentError, TemporaryError

PDB_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
CLUSTER = ClusterRef("00000000-0000-0000-0000-000000000001", "rg-upgrades", "aks-seed")
POOL = "nodepool1"


class FakeCluster:
    def __init__(self, cluster: ClusterRef = CLUSTER, *, upgrades: Mapping[str, list[str]] | None = None) -> None:
        self.cluster = cluster
        self.nodes: dict[str, Node] = {}
        self.pods: dict[str, Pod] = {}
        self.pdb_specs: dict[str, dict[str, Any]] = {}
        # PDB key -> [resourceVersion, generation]: every write bumps the first, a spec change the second
        self.pdb_versions: dict[str, list[int]] = {}
        self._resource_versions = itertools.count(100)
        self.pools: dict[str, AgentPool] = {}
        self.deployments: dict[tuple[str, str], int] = {}  # (namespace, name) -> replicas
        self.scale_versions: dict[tuple[str, str], int] = {}  # (namespace, name) -> its scale's resourceVersion
        # HorizontalPodAutoscalers, as given; a patch of their bounds (or edit_autoscaler) brings the
        # target inside them at once, as the HPA controller's next sync does without metrics
        self.autoscalers: list[Autoscaler] = []
        # StatefulSets: (namespace, name) -> {"replicas": n, "state": StatefulSetState}; pods <name>-<ordinal>
        self.statefulsets: dict[tuple[str, str], dict[str, Any]] = {}
        self.claims: set[tuple[str, str]] = set()  # PersistentVolumeClaims: (namespace, name)
        self.crashloop: set[tuple[str, str, str]] = set()  # (namespace, app, pool): its pods crash-loop there
        self.ops: dict[str, str] = {}  # pool -> "create" | "delete", finished at the next look
        self.created: dict[str, dict] = {}  # pool -> the ARM properties begin_create_pool got
        self.upgrades = upgrades  # version -> what the upgrade profile offers (None: 1.30.x -> 1.31.7)
        self.calls: Counter = Counter()
        self.busy_reads = 0
        self.put_error: PermanentError | None = None
        self.evict_error: Exception | None = None
        self.refuse_once: Exception | None = None
        self.evicted: list[Pod] = []  # pods an eviction removed, as they were
        # the drain engine's view: concurrency, terminating pods and injected answers
        self.lock = threading.RLock()
        self.graceful_evictions = False  # an evicted pod stays terminating until finish_terminations()
        self.pdbs: list[Pdb] = []  # PDBs listed as given, besides those computed from pdb_specs
        self.blocked: set[str] = set()  # pod keys whose eviction a PDB refuses (429), whatever the specs say
        self.evict_errors: dict[str, list[Exception]] = {}  # pod key -> errors to raise, in order
        self.list_errors: list[Exception] = []  # the next pod listings raise these
        self.evictions: list[tuple[str, int | None]] = []  # every eviction asked: (pod key, grace)
        self.in_flight = 0
        self.max_in_flight = 0
        self.eviction_latency = 0.0
        self.daemonsets: set[str] | None = None  # "namespace/name" of the DaemonSets; None: every one exists
        self.daemonset_lookups: list[str] = []
        self._ids = itertools.count(100)
        self.node_order: list[str] = []  # creation order, for "the newest" in a scale-down

    # -- building --------------------------------------------------------------------------------
    def add_pool(self, name: str, count: int, version: str = "1.30.0", *, with_nodes: bool = False,
                 **kwargs: Any) -> None:
        """A pool record; ``with_nodes`` also adds its ``count`` nodes ``aks-<pool>-<i>``, Ready."""
        self.pools[name] = AgentPool(name=name, mode=kwargs.pop("mode", "User"), count=count,
                                     orchestrator_version=version, **kwargs)
        if with_nodes:
            self._add_pool_nodes(self.pools[name])

    def _add_pool_nodes(self, pool: AgentPool) -> None:
        for i in range(pool.count):
            self.add_node(f"aks-{pool.name}-{i}", pool.name, pool.orchestrator_version, labels=pool.node_labels)

    def add_node(self, name: str, pool: str = "user", version: str = "1.30.0", *, cordoned: bool = False, quarantined: bool = False,
                 created_at: datetime | None = None, labels: Sequence[tuple[str, str]] = ()) -> None:
        all_labels = [(AGENTPOOL_LABEL, pool), *labels]
        if quarantined:
            all_labels.append((QUARANTINE_LABEL, QUARANTINE_VALUE))
        self.nodes[name] = Node(name=name, pool=pool, kubernetes_version=version, unschedulable=cordoned or quarantined,
                                labels=tuple(all_labels), created_at=created_at)
        self.node_order.append(name)

    def add_pod(self, namespace: str, name: str, node: str | None, *, app: str, owner: str | None = "ReplicaSet",
                mirror: bool = False) -> Pod:
        pool = self.nodes[node].pool if node else None
        crash = (namespace, app, pool) in self.crashloop
        pod = Pod(namespace=namespace, name=name, uid=f"uid-{next(self._ids)}", node=node, labels=(("app", app),),
                  owner_kind=owner, owner_name=f"{app}-rs" if owner else None, mirror=mirror,
                  phase="Running" if node else "Pending", ready=bool(node) and not crash, crash_looping=crash,
                  restart_count=12 if crash else 0)
        self.pods[pod.key] = pod
        return pod

    def add_deployment(self, namespace: str, name: str, *, replicas: int, place_on: Sequence[str]) -> None:
        """A Deployment's pods ``<name>-<i>`` (app=<name>), placed round-robin on ``place_on``."""
        self.deployments[(namespace, name)] = replicas
        for i in range(replicas):
            self.add_pod(namespace, f"{name}-{i}", place_on[i % len(place_on)], app=name)

    def add_pdb(self, namespace: str, name: str, *, app: str, min_available: int | str | None = None,
                max_unavailable: int | str | None = None) -> None:
        spec: dict[str, Any] = {"selector": {"matchLabels": {"app": app}}}
        if min_available is not None:
            spec["minAvailable"] = min_available
        if max_unavailable is not None:
            spec["maxUnavailable"] = max_unavailable
        self.pdb_specs[f"{namespace}/{name}"] = spec
        self.pdb_versions[f"{namespace}/{name}"] = [next(self._resource_versions), 1]

    def edit_pdb(self, key: str, spec: dict[str, Any]) -> None:
        """Someone else's edit (kubectl apply): a new spec, a new generation."""
        self.pdb_specs[key] = dict(spec)
        self.pdb_versions[key] = [next(self._resource_versions), self.pdb_versions[key][1] + 1]

    def update_pdb_status(self, key: str) -> None:
        """The disruption controller's status write: a new resourceVersion, the same generation."""
        self.pdb_versions[key][0] = next(self._resource_versions)

    def pods_of(self, app: str) -> list[Pod]:
        return [p for p in self.pods.values() if p.label_map().get("app") == app]

    def placement(self) -> dict[str, tuple[str, ...]]:
        """Application pods (their app label) by the pool of their node."""
        by_pool: dict[str, list[str]] = {}
        for pod in self.pods.values():
            by_pool.setdefault(self.nodes[pod.node].pool if pod.node else "(pending)", []).append(
                pod.label_map().get("app", pod.name))
        return {pool: tuple(sorted(apps)) for pool, apps in sorted(by_pool.items())}

    # -- what a look at the cluster finishes ------------------------------------------------------------
    def _refusal(self) -> None:
        refusal, self.refuse_once = self.refuse_once, None
        if refusal is not None:
            raise refusal

    def _settle(self) -> None:
        """Finish pool creations and deletions (each takes one look); schedule Pending pods."""
        for name, op in list(self.ops.items()):
            del self.ops[name]
            pool = self.pools[name]
            if op == "create":
                self.pools[name] = replace(pool, provisioning_state="Succeeded")
                self._add_pool_nodes(pool)
            else:
                del self.pools[name]
                for node in [n for n, node in self.nodes.items() if node.pool == name]:
                    self._remove_node(node)
        for pod in [p for p in self.pods.values() if p.node is None]:
            self._replace_pod(pod)

    # -- Kube --------------------------------------------------------------------------------------
    def list_nodes(self, *, label_selector: str | None = None, field_selector: str | None = None) -> list[Node]:
        self.calls["list_nodes"] += 1
        self._refusal()
        self._settle()
        nodes = list(self.nodes.values())
        if field_selector == "spec.unschedulable=true":
            nodes = [n for n in nodes if n.unschedulable]
        elif field_selector:
            raise AssertionError(f"unexpected field selector {field_selector}")
        if label_selector:
            selector = LabelSelector.parse(label_selector)
            nodes = [n for n in nodes if selector.matches(dict(n.labels))]
        return sorted(nodes, key=lambda n: n.name)

    def get_node(self, name: str) -> Node:
        self.calls["get_node"] += 1
        if name not in self.nodes:
            raise NotFound(f"node {name} not found", status=404)
        return self.nodes[name]

    def set_unschedulable(self, node: str, value: bool) -> bool:
        self.calls["set_unschedulable"] += 1
        current = self.get_node(node)
        if current.unschedulable == value:
            return False
        self.calls["cordon" if value else "uncordon", node] += 1
        self.nodes[node] = replace(current, unschedulable=value)
        return True
    def set_node_label(self, node: str, key: str, value: str | None) -> bool:
        self.calls["set_node_label"] += 1
        current = self.get_node(node)
        labels = dict(current.labels)
        if labels.get(key) == value:
            return False
        if value is None:
            labels.pop(key)
        else:
            labels[key] = value
        self.nodes[node] = replace(current, labels=tuple(labels.items()))
        return True

    def list_pods(self, *, node: str | None = None, namespace: str | None = None,
                  label_selector: str | None = None) -> list[Pod]:
        self.calls["list_pods"] += 1
        if self.list_errors:
            raise self.list_errors.pop(0)
        selector = LabelSelector.parse(label_selector or "")
        with self.lock:
            return [p for p in self.pods.values() if (node is None or p.node == node)
                    and (namespace is None or p.namespace == namespace) and selector.matches(p.label_map())]

    def get_pod(self, namespace: str, name: str) -> Pod:
        key = f"{namespace}/{name}"
        if key not in self.pods:
            raise NotFound(f"pod {key} not found", status=404)
        return self.pods[key]

    def _pdb(self, key: str) -> Pdb:
        spec = self.pdb_specs[key]
        namespace, name = key.split("/", 1)
        selector = LabelSelector.from_api(spec.get("selector"))
        probe = Pdb(namespace, name, selector)
        selected = [p for p in self.pods.values() if probe.selects(p)]
        min_available = None if spec.get("minAvailable") is None else str(spec["minAvailable"])
        max_unavailable = None if spec.get("maxUnavailable") is None else str(spec["maxUnavailable"])
        healthy = sum(1 for p in selected if is_healthy(p))
        return Pdb(namespace, name, selector, min_available=min_available, max_unavailable=max_unavailable,
                   disruptions_allowed=disruptions_allowed(min_available, max_unavailable,
                                                           expected_pods=len(selected), current_healthy=healthy),
                   current_healthy=healthy, desired_healthy=desired_healthy(min_available, max_unavailable, len(selected)),
                   expected_pods=len(selected))

    def list_pdbs(self, *, namespace: str | None = None) -> list[Pdb]:
        self.calls["list_pdbs"] += 1
        computed = [self._pdb(k) for k in sorted(self.pdb_specs)]
        return [p for p in [*computed, *self.pdbs] if namespace in (None, p.namespace)]

    def get_pdb_manifest(self, namespace: str, name: str) -> PdbManifest:
        self.calls["get_pdb_manifest"] += 1
        key = f"{namespace}/{name}"
        if key not in self.pdb_specs:
            raise NotFound(f"PDB {key} not found", status=404)
        version, generation = self.pdb_versions[key]
        return PdbManifest(dict(self.pdb_specs[key]), str(version), generation)

    def patch_pdb_spec(self, namespace: str, name: str, spec: dict[str, Any], *,
                       resource_version: str | None = None) -> PdbManifest:
        self.calls["patch_pdb_spec"] += 1
        key = f"{namespace}/{name}"
        current = self.get_pdb_manifest(namespace, name)
        if resource_version is not None and resource_version != current.resource_version:
            raise Conflict(f"patch PDB {key}: 409 the object has been modified", status=409)
        if spec != current.spec:
            self.edit_pdb(key, spec)
        else:
            self.update_pdb_status(key)
        return self.get_pdb_manifest(namespace, name)

    def _replace_pod(self, pod: Pod) -> None:
        """The pod goes; a ReplicaSet recreates it (same labels and owner, a new name and UID) on the
        least loaded schedulable, Ready node (by name), or Pending until there is one."""
        del self.pods[pod.key]
        if pod.owner_kind not in ("ReplicaSet", "StatefulSet"):
            return
        schedulable = [n for n in sorted(self.nodes) if not self.nodes[n].unschedulable and self.nodes[n].ready]
        load = Counter(p.node for p in self.pods.values())
        target = min(schedulable, key=lambda n: (load[n], n)) if schedulable else None
        app = pod.label_map().get("app", pod.name)
        crash = target is not None and (pod.namespace, app, self.nodes[target].pool) in self.crashloop
        name = pod.name if pod.owner_kind == "StatefulSet" else f"{app}-{next(self._ids)}"
        new = replace(pod, name=name, uid=f"uid-{next(self._ids)}", node=target,
                      deleting=False, phase="Running" if target else "Pending", ready=bool(target) and not crash,
                      crash_looping=crash, restart_count=12 if crash else 0)
        self.pods[new.key] = new

    def evict(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
        key = f"{namespace}/{name}"
        with self.lock:
            self.calls["evict"] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.evictions.append((key, grace_seconds))
        try:
            time.sleep(self.eviction_latency)
            with self.lock:
                self._evict(key, namespace, name)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _evict(self, key: str, namespace: str, name: str) -> None:
        if self.evict_error is not None:
            raise self.evict_error
        if self.evict_errors.get(key):
            raise self.evict_errors[key].pop(0)
        pod = self.get_pod(namespace, name)
        if key in self.blocked:
            raise TemporaryError(f"evict pod {key}: 429 {PDB_MESSAGE}", status=429, delay_seconds=5)
        for spec in self.pdb_specs:
            pdb = self._pdb(spec)
            if pdb.selects(pod) and pdb.disruptions_allowed <= 0:
                raise TemporaryError(PDB_MESSAGE, delay_seconds=5, status=429)
        self.evicted.append(pod)
        if self.graceful_evictions:
            self.pods[key] = replace(pod, deleting=True)
        else:
            self._replace_pod(pod)

    def finish_terminations(self) -> None:
        """Terminating pods go (ReplicaSet pods come back elsewhere)."""
        with self.lock:
            for pod in [p for p in self.pods.values() if p.deleting]:
                self._replace_pod(pod)

    def evicted_keys(self) -> list[str]:
        return [key for key, _ in self.evictions]

    def daemonset_exists(self, namespace: str, name: str) -> bool:
        self.daemonset_lookups.append(f"{namespace}/{name}")
        return self.daemonsets is None or f"{namespace}/{name}" in self.daemonsets

    def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
        self.calls["delete_pod"] += 1
        self._replace_pod(self.get_pod(namespace, name))

    def list_workloads(self, *, namespace: str | None = None) -> list[Workload]:
        workloads = []
        for (ns, name), replicas in sorted(self.deployments.items()):
            ready = sum(1 for p in self.pods.values() if p.owner_name == f"{name}-rs" and p.ready)
            workloads.append(Workload(ns, "Deployment", name, replicas, ready, replica_sets=(f"{name}-rs",)))
        for (ns, name), sts in sorted(self.statefulsets.items()):
            ready = sum(1 for p in self.pods.values()
                        if p.namespace == ns and p.owner_kind == "StatefulSet" and p.owner_name == name and p.ready)
            workloads.append(Workload(ns, "StatefulSet", name, sts["replicas"], ready, statefulset=sts["state"]))
        return [w for w in workloads if namespace in (None, w.namespace)]

    def add_statefulset(self, namespace: str, name: str, *, replicas: int, place_on: Sequence[str],
                        state: StatefulSetState | None = None) -> None:
        """A StatefulSet's pods ``<name>-<ordinal>`` (app=<name>), placed round-robin on ``place_on``,
        each with its claims ``<template>-<name>-<ordinal>``."""
        state = state or StatefulSetState(claim_templates=("data",))
        self.statefulsets[(namespace, name)] = {"replicas": replicas, "state": state}
        for i in range(replicas):
            self.add_pod(namespace, f"{name}-{i}", place_on[i % len(place_on)], app=name, owner="StatefulSet")
            self.pods[f"{namespace}/{name}-{i}"] = replace(self.pods[f"{namespace}/{name}-{i}"], owner_name=name)
            self.claims |= {(namespace, f"{t}-{name}-{i}") for t in state.claim_templates}

    def _scale_statefulset(self, namespace: str, name: str, replicas: int) -> None:
        """The StatefulSet controller: missing ordinals are created (with their claims), the highest
        go first; whenScaled Delete removes the claims of the ordinals it removes."""
        sts = self.statefulsets[(namespace, name)]
        state, before = sts["state"], sts["replicas"]
        sts["replicas"] = replicas
        for ordinal in range(before - 1, replicas - 1, -1):
            self.pods.pop(f"{namespace}/{name}-{ordinal}", None)
            if state.when_scaled == "Delete":
                self.claims -= {(namespace, f"{t}-{name}-{ordinal}") for t in state.claim_templates}
        for ordinal in range(before, replicas):
            template = Pod(namespace, f"{name}-{ordinal}", "", None, labels=(("app", name),),
                           owner_kind="StatefulSet", owner_name=name)
            self.pods[template.key] = template
            self._replace_pod(template)
            self.claims |= {(namespace, f"{t}-{name}-{ordinal}") for t in state.claim_templates}

    def list_volume_claims(self, *, namespace: str) -> list[str]:
        self.calls["list_volume_claims"] += 1
        return sorted(name for ns, name in self.claims if ns == namespace)

    def get_autoscaler(self, namespace: str, name: str) -> Autoscaler:
        self.calls["get_autoscaler"] += 1
        for hpa in self.autoscalers:
            if (hpa.namespace, hpa.name) == (namespace, name):
                return hpa if hpa.resource_version else self._store_autoscaler(hpa)
        raise NotFound(f"HorizontalPodAutoscaler {namespace}/{name} not found", status=404)

    def _store_autoscaler(self, hpa: Autoscaler) -> Autoscaler:
        stored = replace(hpa, resource_version=str(next(self._resource_versions)))
        self.autoscalers = [stored if (a.namespace, a.name) == (hpa.namespace, hpa.name) else a for a in self.autoscalers]
        return stored

    def patch_autoscaler_bounds(self, namespace: str, name: str, min_replicas: int, max_replicas: int, *,
                                resource_version: str) -> Autoscaler:
        self.calls["patch_autoscaler_bounds"] += 1
        current = self.get_autoscaler(namespace, name)
        if resource_version != current.resource_version:
            raise Conflict(f"HorizontalPodAutoscaler {namespace}/{name}: 409 the object has been modified", status=409)
        return self.edit_autoscaler(namespace, name, min_replicas, max_replicas)

    def edit_autoscaler(self, namespace: str, name: str, min_replicas: int, max_replicas: int) -> Autoscaler:
        """New bounds (also someone else's edit); the HPA controller then clamps its target into them."""
        stored = self._store_autoscaler(replace(self.get_autoscaler(namespace, name), min_replicas=min_replicas,
                                                max_replicas=max_replicas))
        replicas = self._replicas(stored.target_kind, namespace, stored.target_name)
        if replicas and not min_replicas <= replicas <= max_replicas:
            self.set_replicas(namespace, stored.target_name, min(max(replicas, min_replicas), max_replicas))
        return stored

    def _replicas(self, kind: str, namespace: str, name: str) -> int:
        return (self.statefulsets[(namespace, name)]["replicas"] if kind == "StatefulSet"
                else self.deployments[(namespace, name)])

    def list_autoscalers(self, *, namespace: str) -> list[Autoscaler]:
        self.calls["list_autoscalers"] += 1
        return [a for a in self.autoscalers if a.namespace == namespace]

    def get_scale(self, kind: str, namespace: str, name: str) -> Scale:
        """A Deployment's scale (its pods are the ``<name>-rs`` ReplicaSet's); the resourceVersion
        changes with every count set."""
        self.calls["get_scale"] += 1
        known = self.statefulsets if kind == "StatefulSet" else self.deployments if kind == "Deployment" else {}
        if (namespace, name) not in known:
            raise NotFound(f"{kind} {namespace}/{name} not found", status=404)
        version = self.scale_versions.setdefault((namespace, name), next(self._resource_versions))
        return Scale(kind, namespace, name, self._replicas(kind, namespace, name), str(version))

    def replace_scale(self, kind: str, namespace: str, name: str, replicas: int, *, resource_version: str) -> Scale:
        self.calls["replace_scale"] += 1
        current = self.get_scale(kind, namespace, name)
        if resource_version != current.resource_version:
            raise Conflict(f"scale {kind} {namespace}/{name}: 409 the object has been modified", status=409)
        self.set_replicas(namespace, name, replicas)
        return self.get_scale(kind, namespace, name)

    def set_replicas(self, namespace: str, name: str, replicas: int) -> None:
        """Scale a Deployment as its ReplicaSet would (also someone else's ``kubectl scale``): missing
        pods are scheduled like a recreated pod, excess ones go newest first. A StatefulSet's ordinals
        follow its controller (``_scale_statefulset``)."""
        self.scale_versions[(namespace, name)] = next(self._resource_versions)
        if (namespace, name) in self.statefulsets:
            self._scale_statefulset(namespace, name, replicas)
            return
        self.deployments[(namespace, name)] = replicas
        pods = [p for p in self.pods.values() if p.namespace == namespace and p.owner_name == f"{name}-rs"]
        for pod in pods[replicas:][::-1] if len(pods) > replicas else ():
            del self.pods[pod.key]
        for _ in range(replicas - len(pods)):
            template = replace(pods[0], name=f"{name}-{next(self._ids)}")
            self.pods[template.key] = template
            self._replace_pod(template)

    def list_events(self, *, reasons: Sequence[str] = ()) -> list[dict[str, Any]]:
        self.calls["list_events"] += 1
        return [{"reason": "Drain", "type": "Warning", "object": {"name": n},
                 "message": f"Eviction blocked by Too Many Requests (usually a pdb) on {n}"}
                for n, node in self.nodes.items() if node.quarantined]

    # -- Aks ---------------------------------------------------------------------------------------
    def get_cluster_version(self, cluster: ClusterRef) -> str:
        return max(p.orchestrator_version for p in self.pools.values())

    def list_pools(self, cluster: ClusterRef) -> list[AgentPool]:
        self._refusal()
        self._settle()
        return sorted(self.pools.values(), key=lambda p: p.name)

    def get_pool(self, cluster: ClusterRef, pool: str) -> AgentPool:
        self.calls["get_pool"] += 1
        self._settle()
        if pool not in self.pools:
            raise NotFound(f"pool {pool} not found", status=404)
        current = self.pools[pool]
        if self.busy_reads > 0:
            self.busy_reads -= 1
            return replace(current, provisioning_state="Upgrading")
        return current

    def _pool_nodes(self, pool: str) -> list[str]:
        return [n for n in self.node_order if n in self.nodes and self.nodes[n].pool == pool]

    def _remove_node(self, name: str) -> None:
        del self.nodes[name]
        for pod in [p for p in self.pods.values() if p.node == name]:
            self._replace_pod(pod)

    def begin_put_pool(self, cluster: ClusterRef, pool: AgentPool, *, if_match: str | None = None) -> None:
        self.calls["begin_put_pool"] += 1
        if self.put_error is not None:
            raise self.put_error
        current = self.pools[pool.name]
        version = pool.orchestrator_version
        for name in self._pool_nodes(pool.name):
            node = self.nodes[name]
            if not node.quarantined and node.kubernetes_version != version:
                for pod in [p for p in self.pods.values() if p.node == name]:
                    self._replace_pod(pod)
                self.nodes[name] = replace(node, kubernetes_version=version, unschedulable=False)
        members = self._pool_nodes(pool.name)
        if pool.count < len(members):
            quarantined = [n for n in members if self.nodes[n].quarantined]
            others = [n for n in reversed(members) if not self.nodes[n].quarantined]
            for name in (quarantined + others)[: len(members) - pool.count]:
                self._remove_node(name)
        elif pool.count > len(members):
            for _ in range(pool.count - len(members)):
                self.add_node(f"aks-{pool.name}-new{next(self._ids)}", pool.name, version)
        self.pools[pool.name] = replace(current, orchestrator_version=version, count=len(self._pool_nodes(pool.name)),
                                        upgrade_settings=pool.upgrade_settings, provisioning_state="Succeeded",
                                        error=None)

    def begin_create_pool(self, cluster: ClusterRef, name: str, properties: Mapping[str, Any]) -> None:
        """A new pool from ARM properties, only if absent (If-None-Match: *); Ready at the next look."""
        self.calls["begin_create_pool"] += 1
        if name in self.pools:
            raise Conflict(f"pool {name} already exists (If-None-Match: *)", status=412)
        self.calls["create_pool", name] += 1
        self.created[name] = dict(properties)
        self.pools[name] = AgentPool(
            name=name, mode=properties.get("mode", "User"), count=properties["count"],
            orchestrator_version=properties["orchestratorVersion"], provisioning_state="Creating",
            node_labels=tuple(sorted((properties.get("nodeLabels") or {}).items())),
            tags=tuple(sorted((properties.get("tags") or {}).items())), properties=dict(properties))
        self.ops[name] = "create"

    def begin_delete_pool(self, cluster: ClusterRef, pool: str, *, ignore_pod_disruption_budget: bool = False) -> None:
        """Deleting at once; gone at the next look, its pods rescheduled."""
        self.calls["begin_delete_pool"] += 1
        if self.pools[pool].provisioning_state == "Deleting":
            raise Conflict(f"pool {pool} is already being deleted")
        self.calls["delete_pool", pool] += 1
        self.pools[pool] = replace(self.pools[pool], provisioning_state="Deleting")
        self.ops[pool] = "delete"

    def begin_delete_machines(self, cluster: ClusterRef, pool: str, machines: Sequence[str]) -> None:
        self.calls["begin_delete_machines"] += 1
        for name in machines:
            if name in self.nodes:
                self._remove_node(name)
        self.pools[pool] = replace(self.pools[pool], count=len(self._pool_nodes(pool)), provisioning_state="Succeeded")

    latest_image = "AKSUbuntu-2204gen2containerd-202612.05.0"

    def latest_node_image_version(self, cluster: ClusterRef, pool: str) -> str | None:
        return self.latest_image

    def begin_upgrade_node_image(self, cluster: ClusterRef, pool: str) -> None:
        """Every node of the pool on the latest image, its pods moved as a surge upgrade moves them."""
        self.calls["begin_upgrade_node_image"] += 1
        for name in self._pool_nodes(pool):
            node = self.nodes[name]
            if not node.quarantined and node.label(NODE_IMAGE_LABEL) != self.latest_image:
                for pod in [p for p in self.pods.values() if p.node == name]:
                    self._replace_pod(pod)
                labels = {**dict(node.labels), NODE_IMAGE_LABEL: self.latest_image}
                self.nodes[name] = replace(node, labels=tuple(labels.items()), unschedulable=False)
        self.pools[pool] = replace(self.pools[pool], node_image_version=self.latest_image)

    def available_upgrades(self, cluster: ClusterRef, pool: str) -> list[str]:
        version = self.pools[pool].orchestrator_version
        if self.upgrades is not None:
            return list(self.upgrades.get(version, []))
        return ["1.31.7"] if version.startswith("1.30") else []




def scenario2_after_upgrade() -> FakeCluster:
    """Seed Scenario 2's final state: node 1 quarantined at 1.30 with pod A (PDB minAvailable 1),
    node 2 at 1.31 with C and D, the former surge node a permanent member with B; 3 nodes."""
    fake = FakeCluster()
    fake.add_pool(POOL, 3, "1.31.7", provisioning_state="Failed",
                  error="Drain node aks-nodepool1-1 failed when evicting pod a-1 ...")
    fake.add_node("aks-nodepool1-1", POOL, "1.30.0", quarantined=True)
    fake.add_node("aks-nodepool1-2", POOL, "1.31.7")
    fake.add_node("aks-nodepool1-surge1", POOL, "1.31.7")
    fake.add_pod("default", "a-1", "aks-nodepool1-1", app="a")
    fake.add_pod("default", "b-1", "aks-nodepool1-surge1", app="b")
    fake.add_pod("default", "c-1", "aks-nodepool1-2", app="c")
    fake.add_pod("default", "d-1", "aks-nodepool1-2", app="d")
    fake.add_pdb("default", "a-pdb", app="a", min_available=1)
    return fake


def two_pools_one_pdb():
    """Scenario 2 plus a second pool whose quarantined node holds app A's other pod; the PDB
    (minAvailable 2 over both pods) blocks both nodes."""
    fake = scenario2_after_upgrade()
    fake.add_pool("nodepool2", 2, "1.31.7", provisioning_state="Failed")
    fake.add_node("aks-nodepool2-1", "nodepool2", "1.30.0", quarantined=True)
    fake.add_node("aks-nodepool2-surge1", "nodepool2", "1.31.7")
    fake.add_pod("default", "a-2", "aks-nodepool2-1", app="a")
    fake.edit_pdb("default/a-pdb", {"selector": {"matchLabels": {"app": "a"}}, "minAvailable": 2})
    return fake


# ---- driving steps through the real executor -------------------------------------------------


def deliver_all(platform, *, duplicate: bool = False, crash_after_effect: bool = False, limit: int = 300) -> list:
    """Run every queued message (and what they enqueue) through run_step_message, advancing the
    fake clock by each message's delay. ``duplicate`` delivers every message twice;
    ``crash_after_effect`` makes the first transition write of every step attempt fail (the host
    died after the step's side effects, before its state write), and redelivers the message."""
    import uuid

    from tests.fakes import SimulatedCrash
    from upgrade.services.step_runner import run_step_message

    crashed: set[tuple[str, str, int]] = set()

    def crash_once(run) -> None:
        if run.claim is None and run.outbox is not None:
            origin = (run.run_id, *run.outbox["from"])
            if origin not in crashed:
                crashed.add(origin)
                raise SimulatedCrash(f"crash before writing the transition of {origin}")

    if crash_after_effect:
        platform.runs.before_update = crash_once
    reports = []
    try:
        for _ in range(limit):
            batch = platform.queue.take()
            if not batch:
                return reports
            for sent in batch:
                platform.clock.advance(sent.delay_seconds)
                message_id = str(uuid.uuid4())
                for copy in range(2 if duplicate else 1):
                    while True:
                        try:
                            reports.append(run_step_message(sent.message.to_json(), platform, message_id=message_id,
                                                            dequeue_count=copy + 1))
                            break
                        except SimulatedCrash:
                            continue  # the host redelivers the same message
        raise AssertionError(f"the queue did not drain in {limit} rounds")
    finally:
        platform.runs.before_update = None
