"""The seed scenarios as emulated clusters, and a builder for custom ones.

Every seed cluster has a one-node System pool `system`, tainted `CriticalAddonsOnly=true:NoSchedule`
as AKS recommends, so application pods stay off it and the user pools can use maxUnavailable and be
deleted. Application pods A-D of the seed tables are the single-replica Deployments `app-a` ..
`app-d` in namespace `default`, placed as the tables place them (A, B on the pool's first node;
C, D on its second); a DaemonSet `kube-system/kube-proxy` runs on every node, so a fresh surge
node holds "daemonsets only".

- `seed-rolling` (Scenario 1): pool `nodepool1`, 2 nodes at 1.30, maxSurge 1; apps pinned to the
  pool with nodeSelector agentpool=nodepool1.
- `seed-pdb` (Scenario 2): as seed-rolling with maxSurge 2, undrainableNodeBehavior Cordon and a
  PDB `app-a-pdb` (minAvailable 1) on the single replica of app-a.
- `seed-bluegreen` (Scenario 3): pool `blue`, 2 nodes at 1.30, apps without a pool nodeSelector so
  they can move to a green pool the operator (or the product) creates.
- `fleet(n)`: n small clusters named `aks-fleet-<i>` for staged rollouts, each shaped as
  seed-rolling, or as seed-pdb for the indexes asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox.aks_emulator.arm import DEFAULT_VM_SIZE, EmulatedCluster
from sandbox.aks_emulator.backend import KubeBackend, KubeEndpoint
from sandbox.aks_emulator.server import Emulator

SEED_SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000001"
SEED_RESOURCE_GROUP = "rg-seed"
SYSTEM_POOL_TAINT = "CriticalAddonsOnly=true:NoSchedule"
APP_NAMESPACE = "default"

NodeRef = tuple[str, int]
"""A node of a pool being built: (pool name, index of the node in the pool, 0-based)."""


@dataclass
class _PoolSpec:
    name: str
    count: int
    settings: dict


@dataclass
class _DeploymentSpec:
    namespace: str
    name: str
    replicas: int
    pool: str | None
    place_on: list[NodeRef] | None
    options: dict


@dataclass
class _PodSpec:
    namespace: str
    name: str
    on: NodeRef
    options: dict


@dataclass
class ClusterBuilder:
    """Describe a cluster (pools, workloads, PDBs, loose pods), then `build` it in an Emulator."""

    name: str
    subscription_id: str = SEED_SUBSCRIPTION_ID
    resource_group: str = SEED_RESOURCE_GROUP
    kubernetes_version: str = "1.30.0"
    location: str = "eastus"
    vcpu_quota: int | None = None
    tags: dict[str, str] = field(default_factory=dict)  # the cluster's ARM tags
    _pools: list[_PoolSpec] = field(default_factory=list)
    _daemonsets: list[tuple[str, str]] = field(default_factory=list)
    _deployments: list[_DeploymentSpec] = field(default_factory=list)
    _pdbs: list[tuple[str, str, dict]] = field(default_factory=list)
    _pods: list[_PodSpec] = field(default_factory=list)
    _statefulsets: list[_DeploymentSpec] = field(default_factory=list)
    _hpas: list[tuple[str, str, dict]] = field(default_factory=list)

    def pool(self, name: str, *, count: int, mode: str = "User", vm_size: str = DEFAULT_VM_SIZE,
             kubernetes_version: str | None = None, max_surge: str | None = None,
             max_unavailable: str | None = None, drain_timeout_minutes: int | None = None,
             node_soak_minutes: int | None = None, undrainable_node_behavior: str | None = None,
             max_blocked_nodes: str | None = None, node_labels: dict | None = None,
             node_taints: list[str] | None = None, max_pods: int = 110,
             availability_zones: list[str] | None = None) -> ClusterBuilder:
        upgrade_settings = {
            key: value
            for key, value in {
                "maxSurge": max_surge, "maxUnavailable": max_unavailable,
                "drainTimeoutInMinutes": drain_timeout_minutes, "nodeSoakDurationInMinutes": node_soak_minutes,
                "undrainableNodeBehavior": undrainable_node_behavior, "maxBlockedNodes": max_blocked_nodes,
            }.items()
            if value is not None
        }
        self._pools.append(_PoolSpec(name, count, {
            "mode": mode, "vm_size": vm_size, "kubernetes_version": kubernetes_version,
            "upgrade_settings": upgrade_settings, "node_labels": node_labels, "node_taints": node_taints,
            "max_pods": max_pods, "availability_zones": availability_zones,
        }))
        return self

    def daemonset(self, namespace: str, name: str) -> ClusterBuilder:
        self._daemonsets.append((namespace, name))
        return self

    def deployment(self, namespace: str, name: str, *, replicas: int = 1, pool: str | None = None,
                   place_on: list[NodeRef] | None = None, empty_dir: bool = False, cpu_millis: int = 100,
                   grace_seconds: int = 30, labels: dict | None = None,
                   tolerations: list[dict] | None = None) -> ClusterBuilder:
        """Pods labelled app=<name>; `pool` pins them with nodeSelector agentpool=<pool>."""
        self._deployments.append(_DeploymentSpec(namespace, name, replicas, pool, place_on, {
            "empty_dir": empty_dir, "cpu_millis": cpu_millis, "grace_seconds": grace_seconds, "labels": labels,
            "tolerations": tolerations,
        }))
        return self

    def statefulset(self, namespace: str, name: str, *, replicas: int = 1, place_on: list[NodeRef] | None = None,
                    cpu_millis: int = 100, claim_templates: tuple[str, ...] = ("data",), when_scaled: str = "Retain",
                    pod_management_policy: str = "OrderedReady") -> ClusterBuilder:
        """Pods ``<name>-<ordinal>`` labelled app=<name>, each with its claims (emulator only)."""
        self._statefulsets.append(_DeploymentSpec(namespace, name, replicas, None, place_on, {
            "cpu_millis": cpu_millis, "claim_templates": claim_templates, "when_scaled": when_scaled,
            "pod_management_policy": pod_management_policy,
        }))
        return self

    def hpa(self, namespace: str, name: str, *, target: tuple[str, str], min_replicas: int,
            max_replicas: int) -> ClusterBuilder:
        """An autoscaling/v2 HorizontalPodAutoscaler on ``target`` (kind, name) (emulator only)."""
        self._hpas.append((namespace, name, {"target_kind": target[0], "target_name": target[1],
                                             "min_replicas": min_replicas, "max_replicas": max_replicas}))
        return self

    def pdb(self, namespace: str, name: str, *, app: str, min_available: int | str | None = None,
            max_unavailable: int | str | None = None, selector: dict | None = None) -> ClusterBuilder:
        """A PodDisruptionBudget selecting the pods labelled app=<app>, or by ``selector`` (a
        LabelSelector object) when given."""
        self._pdbs.append((namespace, name, {
            "selector": selector if selector is not None else {"matchLabels": {"app": app}},
            "min_available": min_available, "max_unavailable": max_unavailable,
        }))
        return self

    def pod(self, namespace: str, name: str, *, on: NodeRef, empty_dir: bool = False,
            owner_kind: str | None = None, grace_seconds: int = 30) -> ClusterBuilder:
        """A single pod; unmanaged (never recreated) unless `owner_kind` names a controller kind."""
        self._pods.append(_PodSpec(namespace, name, on, {
            "empty_dir": empty_dir, "owner_kind": owner_kind, "grace_seconds": grace_seconds,
        }))
        return self

    def build(self, emulator: Emulator, *, backend: KubeBackend | None = None,
              endpoint: KubeEndpoint | None = None) -> EmulatedCluster:
        """The cluster in the emulator; with ``backend`` (and its ``endpoint``), its nodes and
        workloads on a real API server instead (`sandbox.k8s.aks_backend.RealKube`, which also
        offers the set-up calls used here: add_daemonset, add_deployment, add_pdb, add_pod, tick)."""
        cluster = emulator.add_cluster(self.subscription_id, self.resource_group, self.name,
                                       kubernetes_version=self.kubernetes_version, location=self.location,
                                       vcpu_quota=self.vcpu_quota, tags=self.tags, backend=backend,
                                       endpoint=endpoint)
        for spec in self._pools:
            emulator.add_pool(cluster, spec.name, count=spec.count, **spec.settings)
        kube: Any = cluster.backend

        def node_name(ref: NodeRef) -> str:
            pool, index = ref
            return kube.nodes(pool)[index]["metadata"]["name"]

        for namespace, name in self._daemonsets:
            kube.add_daemonset(namespace, name)
        for deployment in self._deployments:
            kube.add_deployment(
                deployment.namespace, deployment.name, replicas=deployment.replicas,
                node_selector={"agentpool": deployment.pool} if deployment.pool else None,
                place_on=[node_name(ref) for ref in deployment.place_on] if deployment.place_on else None,
                **deployment.options,
            )
        for statefulset in self._statefulsets:
            kube.add_statefulset(
                statefulset.namespace, statefulset.name, replicas=statefulset.replicas,
                place_on=[node_name(ref) for ref in statefulset.place_on] if statefulset.place_on else None,
                **statefulset.options,
            )
        for namespace, name, options in self._hpas:
            kube.add_hpa(namespace, name, **options)
        for namespace, name, options in self._pdbs:
            kube.add_pdb(namespace, name, **options)
        for pod in self._pods:
            kube.add_pod(pod.namespace, pod.name, node=node_name(pod.on), **pod.options)
        kube.tick()
        return cluster


def _seed_cluster(name: str, user_pool: str, **pool_settings: object) -> ClusterBuilder:
    builder = (
        ClusterBuilder(name)
        .pool("system", count=1, mode="System", node_taints=[SYSTEM_POOL_TAINT])
        .pool(user_pool, count=2, **pool_settings)
        .daemonset("kube-system", "kube-proxy")
    )
    return builder


def _seed_apps(builder: ClusterBuilder, pool: str, *, pin_to_pool: bool,
               statefulsets: Iterable[str] = ()) -> ClusterBuilder:
    placement = {"app-a": 0, "app-b": 0, "app-c": 1, "app-d": 1}
    for app, node_index in placement.items():
        if app in statefulsets:
            builder.statefulset(APP_NAMESPACE, app, replicas=1, place_on=[(pool, node_index)])
        else:
            builder.deployment(APP_NAMESPACE, app, replicas=1, pool=pool if pin_to_pool else None,
                               place_on=[(pool, node_index)])
    return builder


def seed_rolling(name: str = "aks-seed-rolling") -> ClusterBuilder:
    """Scenario 1: rolling upgrade with surge (maxSurge 1)."""
    return _seed_apps(_seed_cluster(name, "nodepool1", max_surge="1"), "nodepool1", pin_to_pool=True)


def seed_pdb(name: str = "aks-seed-pdb", *, app_a_statefulset: bool = False) -> ClusterBuilder:
    """Scenario 2: a PDB blocks pod A; undrainableNodeBehavior Cordon, maxSurge 2. With
    ``app_a_statefulset``, app-a is a StatefulSet (pod app-a-0, claim data-app-a-0), not a Deployment."""
    builder = _seed_cluster(name, "nodepool1", max_surge="2", undrainable_node_behavior="Cordon")
    return _seed_apps(builder, "nodepool1", pin_to_pool=True,
                      statefulsets=("app-a",) if app_a_statefulset else ()).pdb(
        APP_NAMESPACE, "app-a-pdb", app="app-a", min_available=1)


def seed_bluegreen() -> ClusterBuilder:
    """Scenario 3: a blue pool at 1.30 whose workloads a green pool will take over."""
    return _seed_apps(_seed_cluster("aks-seed-bluegreen", "blue", max_surge="1"), "blue", pin_to_pool=False)


def fleet(count: int, *, prefix: str = "aks-fleet", pdb_blocked: Iterable[int] = ()) -> list[ClusterBuilder]:
    """Several small clusters for a staged rollout: ``<prefix>-<i>`` (1-based) shaped as Scenario 1,
    or as Scenario 2 (a PDB that quarantines a node on upgrade) for the indexes in ``pdb_blocked``."""
    blocked = set(pdb_blocked)
    return [seed_pdb(f"{prefix}-{i}") if i in blocked else seed_rolling(f"{prefix}-{i}") for i in range(1, count + 1)]


SCENARIOS = {
    "seed-rolling": seed_rolling,
    "seed-pdb": seed_pdb,
    "seed-bluegreen": seed_bluegreen,
}
