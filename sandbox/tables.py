"""Node and pod tables of a cluster, read with the official kubernetes client, in the seed README's style.

The node table shows each node's pool, kubelet version and status (Ready, cordoned, quarantined
by AKS); the pod table shows which application pods (A-D in the seed scenarios) run on which
node. DaemonSet and kube-system pods are left out: the seed tables do not show them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

AGENTPOOL_LABEL = "kubernetes.azure.com/agentpool"
QUARANTINE_LABEL = "kubernetes.azure.com/upgrade-status"
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})


@dataclass(frozen=True)
class NodeRow:
    name: str
    pool: str
    version: str
    status: str
    pods: tuple[str, ...]


def read_cluster(kubeconfig: str) -> list[NodeRow]:
    """One row per node with its application pods, from the cluster the kubeconfig names."""
    from kubernetes import client, config

    with config.new_client_from_config(config_file=kubeconfig) as api_client:
        core = client.CoreV1Api(api_client)
        nodes = core.list_node().items
        pods = core.list_pod_for_all_namespaces().items
    pods_by_node: dict[str, list[str]] = {}
    for pod in pods:
        owners = pod.metadata.owner_references or []
        if pod.metadata.namespace in SYSTEM_NAMESPACES or any(o.kind == "DaemonSet" for o in owners):
            continue
        if pod.metadata.deletion_timestamp is not None:
            continue
        pods_by_node.setdefault(pod.spec.node_name or "(pending)", []).append(pod.metadata.name)
    rows = []
    for node in sorted(nodes, key=lambda n: n.metadata.name):
        labels = node.metadata.labels or {}
        rows.append(NodeRow(
            name=node.metadata.name,
            pool=labels.get(AGENTPOOL_LABEL, "?"),
            version=node.status.node_info.kubelet_version if node.status.node_info else "?",
            status=node_status(node, labels),
            pods=tuple(sorted(pods_by_node.pop(node.metadata.name, []))),
        ))
    for leftover, names in sorted(pods_by_node.items()):
        rows.append(NodeRow(leftover, "-", "-", "no such node", tuple(sorted(names))))
    return rows


def node_status(node: object, labels: dict[str, str]) -> str:
    conditions = {c.type: c.status for c in (node.status.conditions or [])}  # type: ignore[attr-defined]
    parts = ["Ready" if conditions.get("Ready") == "True" else "NotReady"]
    if node.spec.unschedulable:  # type: ignore[attr-defined]
        parts.append("cordoned")
    if labels.get(QUARANTINE_LABEL) == "Quarantined":
        parts.append("quarantined")
    return ", ".join(parts)


def node_table(rows: list[NodeRow], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("node", "pool", "version", "status", "pods"):
        table.add_column(column)
    for row in rows:
        style = "yellow" if "cordoned" in row.status else ("red" if "quarantined" in row.status else None)
        table.add_row(row.name, row.pool, row.version, row.status, ", ".join(row.pods) or "(empty)", style=style)
    return table


def pod_table(rows: list[NodeRow], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("pod")
    table.add_column("node")
    for pod, node in sorted((pod, row.name) for row in rows for pod in row.pods):
        table.add_row(pod, node)
    return table


def print_cluster(console: Console, kubeconfig: str, title: str) -> list[NodeRow]:
    rows = read_cluster(kubeconfig)
    console.print(node_table(rows, f"{title}: nodes"))
    console.print(pod_table(rows, f"{title}: pods"))
    return rows
