"""Node and pod tables of a cluster, read with the official kubernetes client, in the seed README's style.

The node table has one row per node: name, pool, version, status (Ready or NotReady, cordoned,
Quarantined) and the application pods on it, named as the seed tables name them (A-D for the
Deployments app-a .. app-d). The pod table lists each application pod with its node and state.
DaemonSet and kube-system pods are left out, and so are System-pool nodes without application pods
(they are tainted for system add-ons): the seed tables show neither.

``ClusterWatch`` follows a cluster with Kubernetes watches and yields every settled state that
differs from the last one shown, with what changed: the steps AKS takes during an upgrade, as the
seed tables list them, however fast the emulated time runs.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

AGENTPOOL_LABEL = "kubernetes.azure.com/agentpool"
MODE_LABEL = "kubernetes.azure.com/mode"
QUARANTINE_LABEL = "kubernetes.azure.com/upgrade-status"
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
APP_PREFIX = "app-"  # the seed's application Deployments: app-a .. app-d are the pods A .. D


@dataclass(frozen=True)
class PodRow:
    name: str
    app: str  # "A" for a pod of app-a; the pod's name for any other application pod
    node: str  # "" while pending
    state: str  # Ready, starting, pending or terminating


@dataclass(frozen=True)
class NodeRow:
    name: str
    pool: str
    version: str
    status: str
    apps: tuple[str, ...]


@dataclass(frozen=True)
class ClusterView:
    """What the seed tables show of a cluster at one moment."""

    nodes: tuple[NodeRow, ...]
    pods: tuple[PodRow, ...]
    hidden_nodes: int = 0  # System-pool nodes without application pods

    @property
    def settled(self) -> bool:
        """Every node Ready and every application pod Ready on a known node: no move in flight."""
        names = {node.name for node in self.nodes}
        return (all(node.status.startswith("Ready") for node in self.nodes)
                and all(pod.state == "Ready" and pod.node in names for pod in self.pods))

    def apps(self) -> Counter[str]:
        return Counter(pod.app for pod in self.pods)


def view_of(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> ClusterView:
    """The seed's view of Kubernetes JSON node and pod objects."""
    pod_rows = sorted((row for row in map(_pod_row, pods) if row is not None), key=lambda p: (p.app, p.name))
    apps_by_node: dict[str, list[str]] = {}
    for pod in pod_rows:
        apps_by_node.setdefault(pod.node, []).append(pod.app if pod.state == "Ready" else f"{pod.app} ({pod.state})")
    rows, hidden = [], 0
    for node in nodes:
        metadata, labels = node["metadata"], node["metadata"].get("labels") or {}
        name = metadata["name"]
        if labels.get(MODE_LABEL) == "system" and name not in apps_by_node:
            hidden += 1
            continue
        rows.append(NodeRow(
            name=name,
            pool=labels.get(AGENTPOOL_LABEL, "?"),
            version=((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "?").lstrip("v"),
            status=_node_status(node, labels),
            apps=tuple(apps_by_node.pop(name, [])),
        ))
    rows.sort(key=lambda row: (row.pool, row.name))
    for leftover, apps in sorted(apps_by_node.items()):
        rows.append(NodeRow(leftover or "(pending)", "-", "-", "" if not leftover else "no such node", tuple(apps)))
    return ClusterView(tuple(rows), tuple(pod_rows), hidden)


def _pod_row(pod: dict[str, Any]) -> PodRow | None:
    metadata = pod["metadata"]
    owners = metadata.get("ownerReferences") or []
    if metadata.get("namespace") in SYSTEM_NAMESPACES or any(o.get("kind") == "DaemonSet" for o in owners):
        return None
    app = (metadata.get("labels") or {}).get("app", "")
    letter = app.removeprefix(APP_PREFIX).upper() if app.startswith(APP_PREFIX) else metadata["name"]
    node = (pod.get("spec") or {}).get("nodeName") or ""
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    if metadata.get("deletionTimestamp"):
        state = "terminating"
    elif not node:
        state = "pending"
    else:
        state = "Ready" if ready else "starting"
    return PodRow(metadata["name"], letter, node, state)


def _node_status(node: dict[str, Any], labels: dict[str, str]) -> str:
    conditions = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
    parts = ["Ready" if conditions.get("Ready") == "True" else "NotReady"]
    if (node.get("spec") or {}).get("unschedulable"):
        parts.append("cordoned")
    if labels.get(QUARANTINE_LABEL) == "Quarantined":
        parts.append("Quarantined")
    return ", ".join(parts)


def _core_api(kubeconfig: str) -> Any:
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))


def _items(response: Any) -> tuple[list[dict[str, Any]], int]:
    """Kubernetes JSON of a list call made with _preload_content=False, and its resourceVersion."""
    body = json.loads(response.data)
    return body["items"], int(body["metadata"].get("resourceVersion") or 0)


def read_cluster(kubeconfig: str) -> ClusterView:
    """The cluster the kubeconfig names, as the seed tables show it."""
    core = _core_api(kubeconfig)
    try:
        nodes, _ = _items(core.list_node(_preload_content=False))
        pods, _ = _items(core.list_pod_for_all_namespaces(_preload_content=False))
    finally:
        core.api_client.close()
    return view_of(nodes, pods)


def node_table(view: ClusterView, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("node", "pool", "version", "status", "pods"):
        table.add_column(column)
    for row in view.nodes:
        style = "red" if "Quarantined" in row.status else ("yellow" if "cordoned" in row.status else None)
        table.add_row(row.name, row.pool, row.version, row.status, ", ".join(row.apps) or "(daemonsets only)",
                      style=style)
    if view.hidden_nodes:
        table.caption = f"+ {view.hidden_nodes} System-pool node(s) with system add-ons only"
        table.caption_justify = "left"
    return table


def pod_table(view: ClusterView, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("app", "pod", "node", "state"):
        table.add_column(column)
    for pod in view.pods:
        table.add_row(pod.app, pod.name, pod.node or "(pending)", pod.state)
    return table


def print_cluster(console: Console, kubeconfig: str, title: str, *, pods: bool = False) -> ClusterView:
    """Print the node table (and the pod table) of the cluster as it is now."""
    view = read_cluster(kubeconfig)
    console.print(node_table(view, title))
    if pods:
        console.print(pod_table(view, "application pods"))
    return view


def changes(before: ClusterView, after: ClusterView) -> str:
    """What happened between two views, in the seed tables' words."""
    old, new = {n.name: n for n in before.nodes}, {n.name: n for n in after.nodes}
    said = [f"{short(name)} created ({new[name].version})" for name in new if name not in old]
    for name in old.keys() & new.keys():
        if old[name].version != new[name].version:
            said.append(f"{short(name)} reimaged to {new[name].version}")
        for flag in ("cordoned", "Quarantined"):
            if (flag in old[name].status) != (flag in new[name].status):
                said.append(f"{short(name)} {flag if flag in new[name].status else 'un' + flag.lower()}")
    old_place = {pod.app: pod.node for pod in before.pods}
    moves = [f"{pod.app} → {short(pod.node)}" for pod in after.pods if old_place.get(pod.app, pod.node) != pod.node]
    if moves:
        said.append(", ".join(moves))
    said += [f"{short(name)} deleted" for name in old if name not in new]
    return "; ".join(said) or "no visible change"


def short(node: str) -> str:
    """aks-nodepool1-12345678-vmss000002 -> vmss000002 (the part that tells a pool's nodes apart)."""
    return node.rsplit("-", 1)[-1]


class ClusterWatch:
    """Every settled state of a cluster, from a node watch and a pod watch.

    The two watches are separate streams; their events are merged in resourceVersion order after
    a short delay, so a view never mixes a later node state with earlier pod states. A settled view
    must also hold the same application pods as the first one: a pod deleted and not yet replaced
    is not a step.
    """

    WATCH_SECONDS = 1  # each watch request ends after this long and resumes: stopping is quick
    MERGE_DELAY = 0.3  # real seconds an event waits for the other stream's events of the same moment

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self._objects: dict[str, dict[str, dict[str, Any]]] = {"node": {}, "pod": {}}
        self._pending: list[tuple[int, int, float, str, str, dict[str, Any]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._core: Any = None
        self.shown: ClusterView | None = None
        self.errors: list[str] = []

    def start(self) -> ClusterWatch:
        self._core = _core_api(self.kubeconfig)
        nodes, node_version = _items(self._core.list_node(_preload_content=False))
        pods, pod_version = _items(self._core.list_pod_for_all_namespaces(_preload_content=False))
        self._objects["node"] = {_key(n): n for n in nodes}
        self._objects["pod"] = {_key(p): p for p in pods}
        self.shown = self._view()
        for kind, lister, since in (("node", self._core.list_node, node_version),
                                    ("pod", self._core.list_pod_for_all_namespaces, pod_version)):
            thread = threading.Thread(target=self._follow, args=(kind, lister, since), name=f"watch-{kind}s",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _follow(self, kind: str, lister: Any, since: int) -> None:
        from kubernetes import watch

        while not self._stopping.is_set():
            try:
                for event in watch.Watch().stream(lister, resource_version=str(since), deserialize=False,
                                                  timeout_seconds=self.WATCH_SECONDS, _request_timeout=10):
                    obj = event["object"]
                    if event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
                        continue
                    # A DELETED event carries the object's last version, older than the deletion:
                    # order it after everything this stream has already delivered.
                    since = max(since, int(obj["metadata"].get("resourceVersion") or 0))
                    with self._lock:
                        heapq.heappush(self._pending, (since, next(self._order), time.monotonic(), kind,
                                                       event["type"], obj))
            except Exception as exc:  # the emulator stopping under a watch must not kill the demo
                if not self._stopping.is_set():
                    self.errors.append(f"{kind} watch: {exc}")
                    self._stopping.wait(0.2)

    def steps(self, *, wait: bool = False) -> list[tuple[str, ClusterView]]:
        """New settled views since the last call, each with what changed; ``wait`` first lets the
        events of this moment arrive (call it before showing anything that happened after them)."""
        if wait:
            time.sleep(self.MERGE_DELAY + 0.1)
        found = []
        ripe = time.monotonic() - self.MERGE_DELAY
        with self._lock:
            while self._pending and self._pending[0][2] <= ripe:
                _, _, _, kind, change, obj = heapq.heappop(self._pending)
                if change == "DELETED":
                    self._objects[kind].pop(_key(obj), None)
                else:
                    self._objects[kind][_key(obj)] = obj
                view = self._view()
                assert self.shown is not None
                if view.settled and view.nodes != self.shown.nodes and view.apps() == self.shown.apps():
                    found.append((changes(self.shown, view), view))
                    self.shown = view
        return found

    def _view(self) -> ClusterView:
        return view_of(list(self._objects["node"].values()), list(self._objects["pod"].values()))

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=self.WATCH_SECONDS + 2)
        if self._core is not None:
            self._core.api_client.close()

    def __enter__(self) -> ClusterWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _key(obj: dict[str, Any]) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
