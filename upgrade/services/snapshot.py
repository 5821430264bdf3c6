"""Read one cluster into a ClusterSnapshot: the input of the preflight and of diagnosis.

The cost is fixed whatever the cluster's size: one node list, one pod list and one PDB list from
Kubernetes (paged by the adapter), and the pools and version from ARM, all read concurrently. Without ARM (a plain
kubeconfig) the pools are inferred from the nodes' AKS labels.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from upgrade.domain.model import NODE_IMAGE_LABEL, AgentPool, ClusterRef, ClusterSnapshot, Node
from upgrade.domain.versions import version_key
from upgrade.ports import Aks, Kube, Platform

MODE_LABEL = "kubernetes.azure.com/mode"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


def take_snapshot(platform: Platform, cluster: ClusterRef) -> ClusterSnapshot:
    """The cluster as the app sees it through its ports."""
    return read_snapshot(platform.kube(cluster), platform.aks(cluster), cluster)


def read_snapshot(kube: Kube, aks: Aks | None, cluster: ClusterRef) -> ClusterSnapshot:
    """The five reads run side by side: each waits on its own round trips."""
    with ThreadPoolExecutor(max_workers=5, thread_name_prefix="snapshot") as reads:
        pods_read = reads.submit(kube.list_pods)
        nodes_read = reads.submit(kube.list_nodes)
        pdbs_read = reads.submit(kube.list_pdbs)
        pools_read = reads.submit(aks.list_pools, cluster) if aks is not None else None
        version_read = reads.submit(aks.get_cluster_version, cluster) if aks is not None else None
        nodes, pods, pdbs = nodes_read.result(), pods_read.result(), pdbs_read.result()
        if pools_read is not None and version_read is not None:
            pools, version = pools_read.result(), version_read.result()
    if aks is None:
        pools = pools_from_nodes(nodes)
        version = min((n.kubernetes_version for n in nodes), default="", key=version_key)
    return ClusterSnapshot(
        cluster=cluster,
        kubernetes_version=version,
        pools=tuple(sorted(pools, key=lambda p: p.name)),
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        pods=tuple(pods),
        pdbs=tuple(pdbs),
    )


def pools_from_nodes(nodes: list[Node]) -> list[AgentPool]:
    """Pools as the nodes' labels describe them (upgradeSettings unknown: AKS's defaults)."""
    by_pool: dict[str, list[Node]] = defaultdict(list)
    for node in nodes:
        if node.pool:
            by_pool[node.pool].append(node)
    pools = []
    for name, members in by_pool.items():
        first = members[0]
        pools.append(AgentPool(
            name=name,
            mode=(first.label(MODE_LABEL) or "user").capitalize(),
            count=len(members),
            orchestrator_version=min((n.kubernetes_version for n in members), key=version_key),
            vm_size=first.label(INSTANCE_TYPE_LABEL) or "unknown",
            node_image_version=first.label(NODE_IMAGE_LABEL),
        ))
    return pools
