"""A small in-memory AKS cluster implementing the Kube and Aks ports, for the rolling,
quarantine and remediation unit tests.

Faithful where those services depend on it: evictions honour PDBs (429 as TemporaryError with
status 429), ReplicaSet pods come back on a schedulable node under a new name and UID, unmanaged
pods do not; a pool PUT upgrades the nodes behind the pool version except quarantined ones, and
a scale-down removes quarantined nodes first, then the newest; deleting machines shrinks the
pool. ``busy_reads`` makes the next pool reads report an operation in progress. Every port call
is counted in ``calls`` by method name.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from upgrade.domain.model import QUARANTINE_LABEL, QUARANTINE_VALUE, AgentPool, ClusterRef, Node, Pdb, Pod
from upgrade.domain.pdb import desired_healthy, disruptions_allowed, is_healthy
from upgrade.domain.selectors import LabelSelector
from upgrade.errors import NotFound, PermanentError, TemporaryError

CLUSTER = ClusterRef("00000000-0000-0000-0000-000000000001", "rg-upgrades", "aks-seed")
POOL = "nodepool1"


class FakeCluster:
    def __init__(self, cluster: ClusterRef = CLUSTER) -> None:
        self.cluster = cluster
        self.nodes: dict[str, Node] = {}
        self.pods: dict[str, Pod] = {}
        self.pdb_specs: dict[str, dict[str, Any]] = {}
        self.pools: dict[str, AgentPool] = {}
        self.calls: Counter = Counter()
        self.busy_reads = 0
        self.put_error: PermanentError | None = None
        self.evict_error: Exception | None = None
        self._ids = itertools.count(100)
        self.node_order: list[str] = []  # creation order, for "the newest" in a scale-down

    # -- building --------------------------------------------------------------------------------
    def add_pool(self, name: str, count: int, version: str, **kwargs: Any) -> None:
        self.pools[name] = AgentPool(name=name, mode=kwargs.pop("mode", "User"), count=count,
                                     orchestrator_version=version, **kwargs)

    def add_node(self, name: str, pool: str, version: str, *, cordoned: bool = False, quarantined: bool = False,
                 created_at: datetime | None = None) -> None:
        labels = [("kubernetes.azure.com/agentpool", pool)]
        if quarantined:
            labels.append((QUARANTINE_LABEL, QUARANTINE_VALUE))
        self.nodes[name] = Node(name=name, pool=pool, kubernetes_version=version, unschedulable=cordoned or quarantined,
                                labels=tuple(labels), created_at=created_at)
        self.node_order.append(name)

    def add_pod(self, namespace: str, name: str, node: str, *, app: str, owner: str | None = "ReplicaSet",
                mirror: bool = False) -> Pod:
        pod = Pod(namespace=namespace, name=name, uid=f"uid-{next(self._ids)}", node=node, labels=(("app", app),),
                  owner_kind=owner, owner_name=f"{app}-rs" if owner else None, mirror=mirror)
        self.pods[pod.key] = pod
        return pod

    def add_pdb(self, namespace: str, name: str, *, app: str, min_available: int | str | None = None,
                max_unavailable: int | str | None = None) -> None:
        spec: dict[str, Any] = {"selector": {"matchLabels": {"app": app}}}
        if min_available is not None:
            spec["minAvailable"] = min_available
        if max_unavailable is not None:
            spec["maxUnavailable"] = max_unavailable
        self.pdb_specs[f"{namespace}/{name}"] = spec

    def pods_of(self, app: str) -> list[Pod]:
        return [p for p in self.pods.values() if p.label_map().get("app") == app]

    # -- Kube --------------------------------------------------------------------------------------
    def list_nodes(self, *, label_selector: str | None = None, field_selector: str | None = None) -> list[Node]:
        self.calls["list_nodes"] += 1
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
        return [p for p in self.pods.values() if (node is None or p.node == node)
                and (namespace is None or p.namespace == namespace)]

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
        return [self._pdb(k) for k in sorted(self.pdb_specs) if namespace is None or k.startswith(namespace + "/")]

    def get_pdb_manifest(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls["get_pdb_manifest"] += 1
        key = f"{namespace}/{name}"
        if key not in self.pdb_specs:
            raise NotFound(f"PDB {key} not found", status=404)
        return dict(self.pdb_specs[key])

    def patch_pdb_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.calls["patch_pdb_spec"] += 1
        self.pdb_specs[f"{namespace}/{name}"] = dict(spec)

    def _replace_pod(self, pod: Pod) -> None:
        """The pod goes; a ReplicaSet recreates it on a schedulable node (least loaded, by name)."""
        del self.pods[pod.key]
        if pod.owner_kind != "ReplicaSet":
            return
        schedulable = [n for n in sorted(self.nodes) if not self.nodes[n].unschedulable]
        if not schedulable:
            return
        load = Counter(p.node for p in self.pods.values())
        target = min(schedulable, key=lambda n: (load[n], n))
        new = replace(pod, name=f"{pod.label_map()['app']}-{next(self._ids)}", uid=f"uid-{next(self._ids)}", node=target)
        self.pods[new.key] = new

    def evict(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
        self.calls["evict"] += 1
        if self.evict_error is not None:
            raise self.evict_error
        pod = self.get_pod(namespace, name)
        for key in self.pdb_specs:
            pdb = self._pdb(key)
            if pdb.selects(pod) and pdb.disruptions_allowed <= 0:
                raise TemporaryError("Cannot evict pod as it would violate the pod's disruption budget.",
                                     delay_seconds=5, status=429)
        self._replace_pod(pod)

    def daemonset_exists(self, namespace: str, name: str) -> bool:
        return True  # the fake's DaemonSet pods all have their DaemonSet

    def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
        self.calls["delete_pod"] += 1
        self._replace_pod(self.get_pod(namespace, name))

    def list_workloads(self, *, namespace: str | None = None) -> list:
        return []

    def list_events(self, *, reasons: Sequence[str] = ()) -> list[dict[str, Any]]:
        self.calls["list_events"] += 1
        return [{"reason": "Drain", "type": "Warning", "object": {"name": n},
                 "message": f"Eviction blocked by Too Many Requests (usually a pdb) on {n}"}
                for n, node in self.nodes.items() if node.quarantined]

    # -- Aks ---------------------------------------------------------------------------------------
    def get_cluster_version(self, cluster: ClusterRef) -> str:
        return max(p.orchestrator_version for p in self.pools.values())

    def list_pools(self, cluster: ClusterRef) -> list[AgentPool]:
        return list(self.pools.values())

    def get_pool(self, cluster: ClusterRef, pool: str) -> AgentPool:
        self.calls["get_pool"] += 1
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

    def begin_delete_pool(self, cluster: ClusterRef, pool: str, *, ignore_pod_disruption_budget: bool = False) -> None:
        raise AssertionError("no test deletes a pool")

    def begin_delete_machines(self, cluster: ClusterRef, pool: str, machines: Sequence[str]) -> None:
        self.calls["begin_delete_machines"] += 1
        for name in machines:
            if name in self.nodes:
                self._remove_node(name)
        self.pools[pool] = replace(self.pools[pool], count=len(self._pool_nodes(pool)), provisioning_state="Succeeded")

    def available_upgrades(self, cluster: ClusterRef, pool: str) -> list[str]:
        return ["1.31.7"] if self.pools[pool].orchestrator_version.startswith("1.30") else []


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
