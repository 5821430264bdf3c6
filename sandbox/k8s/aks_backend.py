"""`RealKube`: the AKS emulator's node work (`sandbox.aks_emulator.upgrader`) on a real control plane.

The emulator's ARM half keeps its agent pools and operations; with a `RealKube` as a cluster's
`KubeBackend` (see `sandbox.aks_emulator.backend`) every node it creates is a kwok node registered
with the real API server (labelled and tainted like AKS's, as ``sandbox.k8s`` registers them), a
node it deletes is deleted there (its pods go with the VM), cordons and labels are real patches, a
reimage rewrites the node's reported kubelet version, and its drain evicts through the real
eviction API: a PodDisruptionBudget refuses with a real 429, judged by the real disruption
controller. The cluster's kubeconfig (`endpoint`) points the product at the same API server as the
app identity, bound only to the infra ClusterRole.

Everything is done as the control plane's admin. The seed scenarios' set-up calls
(`add_daemonset`, `add_deployment`, `add_pdb`, `tick`) create real workloads; a Deployment's
``place_on`` is honoured by cordoning the other nodes while its pods are scheduled. `cleanup`
deletes what this backend created, so several scenarios can take turns on one control plane.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sandbox.aks_emulator.backend import KubeEndpoint
from sandbox.aks_emulator.kube import (
    AGENTPOOL_LABEL,
    APP_IMAGE,
    DAEMON_IMAGE,
    DEFAULT_NODE_IMAGE,
    DisruptionBlocked,
    EvictionNotSupported,
    PodNotFound,
)
from sandbox.k8s.controlplane import ControlPlane, ControlPlaneError, Pool, aks_node, object_path

NODE_IMAGE_LABEL = "kubernetes.azure.com/node-image-version"
ZONE_LABEL = "topology.kubernetes.io/zone"
SETTLE_TIMEOUT_SECONDS = 120.0
_PDB_CAUSE = re.compile(r"The disruption budget (\S+) ")
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class RealKubeError(RuntimeError):
    """The real API server refused a call the emulator's AKS half needed."""


class RealKube:
    """A `KubeBackend` on a real API server (``sandbox.k8s.controlplane.ControlPlane``)."""

    def __init__(self, control_plane: ControlPlane) -> None:
        self.cp = control_plane
        self.lock = threading.RLock()
        self._created: list[str] = []  # API paths of the workloads set up here, for cleanup
        self._nodes: set[str] = set()  # nodes registered here and not deleted yet

    @property
    def endpoint(self) -> KubeEndpoint:
        """The cluster's kubeconfig: the real API server, its CA, the app identity's token."""
        assert self.cp.pki is not None
        return KubeEndpoint(self.cp.server, base64.b64encode(self.cp.pki.ca_pem()).decode(),
                            self.cp.identities["app"].token)

    @property
    def admin_kubeconfig(self) -> Path:
        """An operator's kubeconfig for the same API server (the control plane's admin)."""
        return self.cp.kubeconfigs["admin"]

    # -- HTTP ----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200, 201),
              content_type: str = "application/json") -> tuple[int, Any]:
        status, answer = self.cp.request(method, path, body, content_type=content_type)
        if status not in ok:
            raise RealKubeError(f"{method} {path}: HTTP {status}: {answer}")
        return status, answer

    def _patch_node(self, name: str, patch: dict, *, content_type: str = STRATEGIC, subresource: str = "") -> None:
        self._call("PATCH", f"/api/v1/nodes/{name}{subresource}", patch, content_type=content_type)

    # -- nodes ---------------------------------------------------------------------------------

    def nodes(self, pool: str | None = None) -> list[dict]:
        query = f"?labelSelector={quote(f'{AGENTPOOL_LABEL}={pool}')}" if pool is not None else ""
        _, answer = self._call("GET", f"/api/v1/nodes{query}")
        return sorted(answer["items"], key=lambda n: n["metadata"]["name"])

    def get_node(self, name: str) -> dict | None:
        status, answer = self._call("GET", f"/api/v1/nodes/{name}", ok=(200, 404))
        return answer if status == 200 else None

    def add_node(self, name: str, *, pool: str, kubernetes_version: str, mode: str = "User",
                 vm_size: str = "Standard_D4s_v5", max_pods: int = 110, labels: dict | None = None,
                 taints: list | None = None, zone: str | None = None,
                 node_image_version: str = DEFAULT_NODE_IMAGE) -> dict:
        """Register a kwok node as AKS registers a new VM's node, and wait until it is Ready."""
        spec = Pool(pool, 1, mode=mode, kubernetes_version=kubernetes_version.lstrip("v"), vm_size=vm_size,
                    taints=tuple(dict(t) for t in taints or ()), labels=dict(labels or {}))
        node = aks_node(spec, name)
        node["metadata"]["labels"][NODE_IMAGE_LABEL] = node_image_version
        if zone:
            node["metadata"]["labels"][ZONE_LABEL] = zone
        for field in ("capacity", "allocatable"):
            node["status"][field]["pods"] = str(max_pods)
        self._call("POST", "/api/v1/nodes", node)
        self._nodes.add(name)
        self.cp.wait_nodes_ready([name])
        return self.get_node(name) or node

    def remove_node(self, name: str) -> None:
        """Delete the node as AKS deletes its VM: the node object, and its pods with it."""
        pods = self.pods_on_node(name)
        self._call("DELETE", f"/api/v1/nodes/{name}", ok=(200, 202, 404))
        self._nodes.discard(name)
        for pod in pods:
            meta = pod["metadata"]
            self._call("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                       {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}, ok=(200, 202, 404))

    def set_unschedulable(self, name: str, value: bool) -> None:
        self._patch_node(name, {"spec": {"unschedulable": bool(value) or None}})

    def set_node_label(self, name: str, key: str, value: str | None) -> None:
        self._patch_node(name, {"metadata": {"labels": {key: value}}}, content_type=MERGE)

    def set_node_version(self, name: str, kubernetes_version: str) -> None:
        """A reimaged node's kubelet reports the new version (kwok keeps what the status says)."""
        self._patch_node(name, {"status": {"nodeInfo": {"kubeletVersion": "v" + kubernetes_version.lstrip("v")}}},
                         content_type=MERGE, subresource="/status")

    def set_node_image(self, name: str, node_image_version: str) -> None:
        self.set_node_label(name, NODE_IMAGE_LABEL, node_image_version)

    # -- pods ----------------------------------------------------------------------------------

    def pods_on_node(self, name: str) -> list[dict]:
        _, answer = self._call("GET", f"/api/v1/pods?fieldSelector={quote(f'spec.nodeName={name}')}")
        return answer["items"]

    def evict(self, namespace: str, name: str) -> None:
        """POST the pod's eviction subresource; a PDB's 429 becomes `DisruptionBlocked`."""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}/eviction"
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        try:
            status, answer = self._call("POST", path, eviction, ok=(200, 201, 404, 429))
        except ControlPlaneError as error:  # a 500: the pod has several budgets
            if "more than one PodDisruptionBudget" in str(error):
                raise EvictionNotSupported(str(error)) from error
            raise
        if status == 404:
            raise PodNotFound(f'pods "{name}" not found')
        if status == 429:
            causes = ((answer or {}).get("details") or {}).get("causes") or []
            cause = next((c.get("message", "") for c in causes), "")
            match = _PDB_CAUSE.search(cause)
            pdb = match.group(1) if match else ""
            raise DisruptionBlocked(f"{namespace}/{pdb}", cause, self._unready_pods(namespace, pdb))

    def _unready_pods(self, namespace: str, pdb: str) -> int:
        status, answer = self._call("GET", f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{pdb}",
                                    ok=(200, 404))
        pdb_status = (answer or {}).get("status") or {} if status == 200 else {}
        return max(0, int(pdb_status.get("expectedPods", 0)) - int(pdb_status.get("currentHealthy", 0)))

    def delete_pod(self, namespace: str, name: str) -> None:
        status, _ = self._call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", ok=(200, 202, 404))
        if status == 404:
            raise PodNotFound(f'pods "{name}" not found')

    # -- events --------------------------------------------------------------------------------

    def record_event(self, *, reason: str, message: str, kind: str, name: str, namespace: str = "default",
                     type: str = "Normal") -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        involved: dict[str, Any] = {"kind": kind, "name": name, "apiVersion": "v1"}
        if kind == "Node":
            involved["uid"] = name  # as Kubernetes records node events
        else:
            involved["namespace"] = namespace
        self._call("POST", f"/api/v1/namespaces/{namespace}/events", {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": involved, "reason": reason, "message": message, "type": type, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now, "source": {"component": "aks-upgrader"},
        })

    # -- scenario set-up (ClusterBuilder) ------------------------------------------------------

    def _create(self, obj: dict) -> dict:
        self._ensure_namespace(obj["metadata"]["namespace"])
        created = self.cp.apply(obj)
        path = object_path(obj)
        if path not in self._created:
            self._created.append(path)
        return created

    def _ensure_namespace(self, namespace: str) -> None:
        self._call("POST", "/api/v1/namespaces",
                   {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, ok=(201, 409))

    def add_daemonset(self, namespace: str, name: str, *, cpu_millis: int = 50, labels: dict | None = None) -> None:
        """One pod per node, tolerating every taint and cordon (as kube-proxy on AKS)."""
        pod_labels = {"app": name, **(labels or {})}
        self._create({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": pod_labels}, "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"tolerations": [{"operator": "Exists"}], "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": name, "image": DAEMON_IMAGE,
                                         "resources": {"requests": {"cpu": f"{cpu_millis}m"}}}]}}},
        })

    def add_deployment(self, namespace: str, name: str, *, replicas: int, node_selector: dict | None = None,
                       tolerations: list | None = None, empty_dir: bool = False, labels: dict | None = None,
                       cpu_millis: int = 100, grace_seconds: int = 30, place_on: list[str] | None = None) -> None:
        """A Deployment; ``place_on`` (a node per replica) is honoured by cordoning every other node
        until the scheduler has bound its pods there, then uncordoning them."""
        pod_labels = {"app": name, **(labels or {})}
        spec: dict[str, Any] = {
            "terminationGracePeriodSeconds": grace_seconds,
            "containers": [{"name": name, "image": APP_IMAGE, "resources": {"requests": {"cpu": f"{cpu_millis}m"}}}],
        }
        if node_selector:
            spec["nodeSelector"] = dict(node_selector)
        if tolerations:
            spec["tolerations"] = list(tolerations)
        if empty_dir:
            spec["volumes"] = [{"name": "cache", "emptyDir": {}}]
            spec["containers"][0]["volumeMounts"] = [{"name": "cache", "mountPath": "/cache"}]
        targets = set(place_on or ())
        cordoned = [n["metadata"]["name"] for n in self.nodes()
                    if n["metadata"]["name"] not in targets and not n["spec"].get("unschedulable")] if targets else []
        for node in cordoned:
            self.set_unschedulable(node, True)
        try:
            self._create({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
                "spec": {"replicas": replicas, "selector": {"matchLabels": pod_labels},
                         "template": {"metadata": {"labels": pod_labels}, "spec": spec}},
            })
            if targets:
                self._wait(lambda: len([p for p in self._pods(namespace, f"app={name}")
                                        if p["spec"].get("nodeName") in targets]) >= replicas,
                           f"{namespace}/{name}'s pods on {sorted(targets)}")
        finally:
            for node in cordoned:
                self.set_unschedulable(node, False)

    def add_pdb(self, namespace: str, name: str, *, selector: dict, min_available: int | str | None = None,
                max_unavailable: int | str | None = None) -> None:
        if "matchLabels" not in selector and "matchExpressions" not in selector:
            selector = {"matchLabels": dict(selector)}
        spec: dict[str, Any] = {"selector": selector}
        if min_available is not None:
            spec["minAvailable"] = min_available
        if max_unavailable is not None:
            spec["maxUnavailable"] = max_unavailable
        self._create({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                      "metadata": {"name": name, "namespace": namespace}, "spec": spec})

    def add_pod(self, namespace: str, name: str, *, node: str, owner_kind: str | None = None,
                empty_dir: bool = False, grace_seconds: int = 30) -> None:
        """An unmanaged pod bound to ``node``. A pod naming an owner that does not exist would be
        deleted by the real garbage collector, so ``owner_kind`` is refused here."""
        if owner_kind is not None:
            raise ValueError(f"pod {namespace}/{name}: owner_kind={owner_kind!r} needs a real owner object on a "
                             "real API server; create the workload instead")
        spec: dict[str, Any] = {"nodeName": node, "terminationGracePeriodSeconds": grace_seconds,
                                "tolerations": [{"operator": "Exists"}],
                                "containers": [{"name": name, "image": APP_IMAGE}]}
        if empty_dir:
            spec["volumes"] = [{"name": "cache", "emptyDir": {}}]
        self._create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                                                     "labels": {"app": name}}, "spec": spec})

    def tick(self) -> None:
        """The real controllers run by themselves: wait until what was set up has settled (every
        pod Running and Ready, every budget's status written by the disruption controller)."""
        self._wait(self._settled, "the scenario's pods Ready and budgets observed")

    def _settled(self) -> bool:
        for path in self._created:
            status, obj = self.cp.request("GET", path)
            if status != 200:
                return False
            kind, obj_status = obj["kind"], obj.get("status") or {}
            if kind == "Deployment" and obj_status.get("readyReplicas", 0) != obj["spec"]["replicas"]:
                return False
            if kind == "DaemonSet" and (obj_status.get("numberReady", -1) != obj_status.get("desiredNumberScheduled")
                                        or not obj_status.get("desiredNumberScheduled")):
                return False
            if kind == "PodDisruptionBudget" and obj_status.get("observedGeneration") != obj["metadata"]["generation"]:
                return False
        return True

    def _pods(self, namespace: str, selector: str) -> list[dict]:
        _, answer = self._call("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={quote(selector)}")
        return answer["items"]

    @staticmethod
    def _wait(condition: Any, what: str, timeout: float = SETTLE_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RealKubeError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)

    def cleanup(self) -> None:
        """Delete what was set up here (and their pods: foreground deletion, waited for) and every
        node registered here, so the next scenario on the same API server starts clean."""
        for path in reversed(self._created):
            self._call("DELETE", f"{path}?propagationPolicy=Foreground", ok=(200, 202, 404))
        nodes = sorted(self._nodes)
        for node in nodes:
            self.remove_node(node)
        created, self._created = self._created, []
        self._wait(lambda: all(self.cp.request("GET", path)[0] == 404 for path in created),
                   "the scenario's workloads to be deleted")
        self._wait(lambda: all(self.get_node(node) is None for node in nodes), "the scenario's nodes to be deleted")
