"""The in-memory Kubernetes state of one emulated AKS cluster.

`KubeCluster` owns nodes, pods, namespaces, workload controllers (Deployment -> ReplicaSet -> pods,
DaemonSets), PodDisruptionBudgets and events, stored as the Kubernetes JSON the API serves. It also
plays the cluster's control loops that matter to node upgrades: the ReplicaSet and DaemonSet
controllers (replacement pods), the scheduler (nodeSelector, taints, cordon, capacity), the kubelet's
graceful termination (emulated time) and the disruption controller (PDB status, eviction checks).

Stored objects are never mutated in place: every change stores a fresh dict, so a dict handed out
is a consistent snapshot that callers must treat as read-only. Indexes (pods by node, namespace,
owner and label; nodes by label and cordon state) keep lookups proportional to what they return,
so 5,000 nodes and 100,000 pods stay fast. `objects_visited` counts the stored objects each lookup
touches, so tests can prove the indexes are used without timing anything.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import heapq
import itertools
import json
import math
import random
import re
import threading
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sandbox.aks_emulator.clock import ScaledClock

EVICTION_BLOCKED_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE_PDBS_MESSAGE = (
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
)
AGENTPOOL_LABEL = "kubernetes.azure.com/agentpool"
UNSCHEDULABLE_TAINT_KEY = "node.kubernetes.io/unschedulable"
DEFAULT_NODE_IMAGE = "AKSUbuntu-2204gen2containerd-202611.01.0"
APP_IMAGE = "mcr.microsoft.com/azuredocs/aks-helloworld:v1"
DAEMON_IMAGE = "mcr.microsoft.com/oss/kubernetes/kube-proxy:v1.30.0"
# The kubelet's system reserve on AKS nodes: allocatable cpu is a little less than the VM's cores.
RESERVED_CPU_MILLIS = 140
EVENTS_KEPT = 10_000
CHANGES_KEPT = 20_000
POD_STARTUP_SECONDS = 5
# Crash-looping containers restart about once per emulated minute (kubelet back-off, simplified).
CRASHLOOP_RESTART_SECONDS = 60
NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NOT_READY_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
]
DAEMONSET_TOLERATIONS = [
    {"operator": "Exists"},  # system daemons (kube-proxy, CNI) run on every node, tainted or cordoned
]
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_VM_CORES = re.compile(r"^Standard_[A-Za-z]+?(\d+)", re.IGNORECASE)

# resource -> (apiVersion, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "nodes": ("v1", "Node", False),
    "pods": ("v1", "Pod", True),
    "namespaces": ("v1", "Namespace", False),
    "events": ("v1", "Event", True),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget", True),
    "deployments": ("apps/v1", "Deployment", True),
    "replicasets": ("apps/v1", "ReplicaSet", True),
    "daemonsets": ("apps/v1", "DaemonSet", True),
    "statefulsets": ("apps/v1", "StatefulSet", True),
    "persistentvolumeclaims": ("v1", "PersistentVolumeClaim", True),
    "horizontalpodautoscalers": ("autoscaling/v2", "HorizontalPodAutoscaler", True),
}
HPA_NO_METRICS = ("the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get "
                  "metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could "
                  "not find the requested resource (get pods.metrics.k8s.io)")


class PodNotFound(Exception):
    """The pod does not exist (eviction/deletion answer 404)."""


class ObjectNotFound(Exception):
    """A node, PDB or other object does not exist."""


class Conflict(Exception):
    """Optimistic concurrency failed or the object already exists (HTTP 409)."""


class Invalid(Exception):
    """The object fails validation (HTTP 422). `causes` lists (field, message)."""

    def __init__(self, message: str, causes: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.causes = causes or []


class EvictionNotSupported(Exception):
    """Kubernetes refuses to evict a pod covered by several PDBs (HTTP 500)."""


class DisruptionBlocked(Exception):
    """An eviction a PDB forbids now; .pdb (ns/name), .message (Kubernetes' text)."""

    def __init__(self, pdb: str, cause: str, unready_pods: int) -> None:
        super().__init__(EVICTION_BLOCKED_MESSAGE)
        self.pdb = pdb
        self.message = EVICTION_BLOCKED_MESSAGE
        self.cause = cause
        self.unready_pods = unready_pods


class ResourceVersionTooOld(Exception):
    """A watch asked for changes older than the kept history (HTTP 410 Gone)."""


def _clone(value):
    """Deep copy of JSON-shaped data (several times faster than copy.deepcopy, which matters at 100k pods)."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# label selectors (shared by the model's PDB matching and the API's ?labelSelector=)


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects without the label too, as Kubernetes does.
        return not present or labels[self.key] not in self.values


_SET_TERM = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EQUALITY_TERM = re.compile(r"^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*$")


def parse_label_selector(text: str) -> list[LabelRequirement]:
    """Parse the ?labelSelector= syntax: a=b, a==b, a!=b, a in (x,y), a notin (x), a, !a."""
    requirements: list[LabelRequirement] = []
    for term in _split_selector_terms(text):
        if not term.strip():
            continue
        if match := _SET_TERM.match(term):
            values = tuple(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append(LabelRequirement(match.group(1), match.group(2), values))
        elif match := _EQUALITY_TERM.match(term):
            operator = "!=" if match.group(2) == "!=" else "="
            requirements.append(LabelRequirement(match.group(1), operator, (match.group(3),)))
        elif match := _EXISTS_TERM.match(term):
            requirements.append(LabelRequirement(match.group(2), "!exists" if match.group(1) else "exists"))
        else:
            raise ValueError(f"unable to parse requirement: {term.strip()!r}")
    return requirements


def _split_selector_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return terms


def label_selector_requirements(selector: dict | None) -> list[LabelRequirement]:
    """Requirements of a LabelSelector object ({matchLabels, matchExpressions})."""
    selector = selector or {}
    requirements = [LabelRequirement(k, "=", (v,)) for k, v in (selector.get("matchLabels") or {}).items()]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expression in selector.get("matchExpressions") or []:
        operator = operators.get(expression.get("operator"))
        if operator is None:
            raise Invalid(f"invalid label selector operator {expression.get('operator')!r}")
        requirements.append(LabelRequirement(expression["key"], operator, tuple(expression.get("values") or ())))
    return requirements


def aks_node_labels(name: str, *, pool: str, mode: str, vm_size: str, node_image_version: str,
                    zone: str | None = None) -> dict[str, str]:
    """The labels AKS puts on a node of an agent pool (also used for the real control plane's nodes)."""
    return {
        "agentpool": pool,
        AGENTPOOL_LABEL: pool,
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.azure.com/mode": mode.lower(),
        "kubernetes.azure.com/node-image-version": node_image_version,
        "kubernetes.azure.com/os-sku": "Ubuntu",
        "kubernetes.azure.com/role": "agent",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/role": "agent",
        "node.kubernetes.io/instance-type": vm_size,
        "topology.kubernetes.io/zone": zone if zone else "0",
    }


def labels_match(requirements: list[LabelRequirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(requirement.matches(labels) for requirement in requirements)


def validate_labels(kind: str, name: str, labels: dict) -> None:
    """Reject label keys/values Kubernetes would reject (422)."""
    causes = []
    for key, value in labels.items():
        prefix, _, label_name = key.rpartition("/")
        if (prefix and not _DNS_SUBDOMAIN.match(prefix)) or not _LABEL_NAME.match(label_name):
            causes.append(("metadata.labels", f'Invalid value: "{key}": name part must consist of alphanumeric '
                           "characters, '-', '_' or '.', and must start and end with an alphanumeric character"))
        if not isinstance(value, str) or (value and not _LABEL_NAME.match(value)):
            causes.append(("metadata.labels", f'Invalid value: "{value}": a valid label must be an empty string '
                           "or consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
                           "an alphanumeric character"))
    if causes:
        details = ", ".join(f"{field}: {message}" for field, message in causes)
        raise Invalid(f'{kind} "{name}" is invalid: {details}', causes)


def cpu_millis(quantity: str | int | float | None) -> int:
    if quantity is None:
        return 0
    text = str(quantity)
    if text.endswith("m"):
        return int(text[:-1])
    return int(float(text) * 1000)


def _tolerates(tolerations: list[dict], taint: dict) -> bool:
    for toleration in tolerations:
        operator = toleration.get("operator", "Equal")
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if operator == "Exists" and (not toleration.get("key") or toleration["key"] == taint.get("key")):
            return True
        if (operator == "Equal" and toleration.get("key") == taint.get("key")
                and toleration.get("value", "") == taint.get("value", "")):
            return True
    return False


def _node_ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def pod_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", ()))


def _controller_ref(obj: dict) -> dict | None:
    for reference in obj["metadata"].get("ownerReferences") or ():
        if reference.get("controller"):
            return reference
    return None


def _resolve_int_or_percent(value: int | str, total: int) -> int:
    """Kubernetes' intstr scaling for PDBs: percents round up."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def _valid_int_or_percent(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and bool(re.fullmatch(r"\d+%", value))


@contextlib.contextmanager
def _collector_paused():
    """Creating tens of thousands of pod dicts triggers the cyclic garbage collector over and over
    (two thirds of the build time at 100k pods). The new objects are long-lived cluster state, so
    pause the collector meanwhile and then move everything alive into the permanent generation, so
    later collections do not rescan millions of pod dicts on every eviction."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


# ---------------------------------------------------------------------------------------------


class KubeCluster:
    """The Kubernetes side of one emulated AKS cluster. Thread-safe through `lock`."""

    def __init__(self, clock: ScaledClock, name: str, *, kubernetes_version: str = "1.30.0") -> None:
        self.clock = clock
        self.name = name
        # The control plane version /version reports; the ARM side updates it on cluster upgrades.
        self.kubernetes_version = kubernetes_version.lstrip("v")
        self.lock = threading.RLock()
        self.objects_visited = 0
        # Seeded by the cluster name so pod names and uids are the same on every run.
        self._random = random.Random(name)
        self._resource_version = 0
        self._sequence = itertools.count()
        self._nodes: dict[str, dict] = {}
        self._pods: dict[tuple[str, str], dict] = {}
        self._objects: dict[str, dict] = {
            "nodes": self._nodes,
            "pods": self._pods,
            "namespaces": {},
            "events": OrderedDict(),
            "poddisruptionbudgets": {},
            "deployments": {},
            "replicasets": {},
            "daemonsets": {},
            "statefulsets": {},
            "persistentvolumeclaims": {},
            "horizontalpodautoscalers": {},
        }
        # indexes
        self._node_order: dict[str, int] = {}
        self._node_counter = itertools.count()
        self._nodes_by_label: dict[tuple[str, str], dict[str, None]] = {}
        self._unschedulable: dict[str, None] = {}
        self._not_ready: dict[str, None] = {}
        self._terminating_by_owner: dict[str, int] = {}
        self._pods_by_node: dict[str, dict[tuple[str, str], None]] = {}
        self._pods_by_namespace: dict[str, dict[tuple[str, str], None]] = {}
        self._pods_by_owner: dict[str, dict[tuple[str, str], None]] = {}
        self._pods_by_label: dict[tuple[str, str, str], dict[tuple[str, str], None]] = {}
        self._node_load: dict[str, list[int]] = {}  # node -> [pod count, cpu millis requested]
        self._pod_ip_counter: dict[str, itertools.count] = {}
        self._pending: dict[tuple[str, str], None] = {}
        self._terminations: list[tuple[datetime, int, tuple[str, str], str]] = []
        self._crashloop_rules: dict[tuple[str, str], set[str]] = {}
        self._crashlooping: dict[tuple[str, str], datetime] = {}
        self._starting: list[tuple[datetime, int, tuple[str, str], str]] = []
        # Pods the cluster is built with run at once; pods created later (replacements, new nodes'
        # DaemonSet pods) take POD_STARTUP_SECONDS to become Ready, which is what PDBs wait for.
        self._steady_state = False
        self._build_time: datetime | None = None
        self._owner_objects: dict[str, tuple[str, tuple[str, str]]] = {}  # uid -> (resource, key)
        self._event_keys: dict[tuple, tuple[str, str]] = {}
        self._event_correlations: dict[tuple[str, str], tuple] = {}
        self._dirty_replicasets: dict[tuple[str, str], None] = {}
        self._revisions: dict[tuple[str, str], tuple[str, str]] = {}  # StatefulSet -> (current, update) revision
        # whenScaled Delete: claim -> (StatefulSet, ordinal) of the condemned pod that owns it until it is gone
        self._condemned_claims: dict[tuple[str, str], tuple[tuple[str, str], int]] = {}
        self._dirty_pdb_namespaces: set[str] = set()
        self._scheduling_needed = False
        self.changes: deque[tuple[int, str, str, dict]] = deque(maxlen=CHANGES_KEPT)
        for namespace in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.add_namespace(namespace)

    # ------------------------------------------------------------------ bookkeeping

    @property
    def resource_version(self) -> int:
        return self._resource_version

    def _now(self) -> datetime:
        return self._build_time or self.clock.now()

    def _new_uid(self) -> str:
        digits = f"{self._random.getrandbits(128):032x}"
        variant = "89ab"[int(digits[16], 16) % 4]
        return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"

    def _suffix(self, length: int = 5) -> str:
        bits = self._random.getrandbits(5 * length)
        return "".join(NAME_SUFFIX_ALPHABET[(bits >> (5 * i)) % len(NAME_SUFFIX_ALPHABET)] for i in range(length))

    def _save(self, resource: str, key, obj: dict, change: str) -> dict:
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)
        self._objects[resource][key] = obj
        self.changes.append((self._resource_version, change, resource, obj))
        return obj

    def _forget(self, resource: str, key) -> dict:
        obj = self._objects[resource].pop(key)
        self._resource_version += 1
        self.changes.append((self._resource_version, "DELETED", resource, obj))
        return obj

    def _metadata(self, name: str, namespace: str | None = None, **extra) -> dict:
        metadata = {"name": name}
        if namespace is not None:
            metadata["namespace"] = namespace
        metadata.update(uid=self._new_uid(), resourceVersion="", creationTimestamp=rfc3339(self._now()))
        metadata.update(extra)
        return metadata

    def changes_since(self, resource_version: int) -> list[tuple[int, str, str, dict]]:
        """Changes after `resource_version` (for watches); raises ResourceVersionTooOld."""
        with self.lock:
            if self.changes and resource_version < self.changes[0][0] - 1:
                raise ResourceVersionTooOld(resource_version)
            if not self.changes or resource_version >= self.changes[-1][0]:
                return []
            return [change for change in self.changes if change[0] > resource_version]

    # ------------------------------------------------------------------ nodes

    def add_node(self, name, *, pool, kubernetes_version, mode="User", vm_size="Standard_D4s_v5",
                 max_pods=110, labels=None, taints=None, zone=None, node_image_version=DEFAULT_NODE_IMAGE,
                 provider_id: str | None = None) -> dict:
        with self.lock:
            if name in self._nodes:
                raise Conflict(f'nodes "{name}" already exists')
            index = next(self._node_counter)
            cores = int(match.group(1)) if (match := _VM_CORES.match(vm_size)) else 2
            version = "v" + kubernetes_version.lstrip("v")
            node_labels = aks_node_labels(name, pool=pool, mode=mode, vm_size=vm_size,
                                          node_image_version=node_image_version, zone=zone)
            node_labels.update(labels or {})
            validate_labels("Node", name, node_labels)
            host_ip = f"10.224.{(index + 4) // 256}.{(index + 4) % 256}"
            pod_cidr = f"10.{128 + index // 256}.{index % 256}.0/24"
            now = rfc3339(self._now())
            spec = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}
            if provider_id:
                spec["providerID"] = provider_id
            if taints:
                spec["taints"] = [dict(t) for t in taints]
            capacity = {"cpu": str(cores), "memory": f"{cores * 4 * 1024 * 1024}Ki",
                        "ephemeral-storage": "129886128Ki", "pods": str(max_pods)}
            allocatable = dict(capacity, cpu=f"{cores * 1000 - RESERVED_CPU_MILLIS}m",
                               memory=f"{cores * 4 * 1024 * 1024 * 85 // 100}Ki")
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": self._metadata(name, labels=node_labels, annotations={
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                }),
                "spec": spec,
                "status": {
                    "capacity": capacity,
                    "allocatable": allocatable,
                    "conditions": [
                        self._node_condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                                             "kubelet has sufficient memory available", now),
                        self._node_condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                                             "kubelet has no disk pressure", now),
                        self._node_condition("PIDPressure", "False", "KubeletHasSufficientPID",
                                             "kubelet has sufficient PID available", now),
                        self._node_condition("Ready", "True", "KubeletReady",
                                             "kubelet is posting ready status", now),
                    ],
                    "addresses": [{"type": "InternalIP", "address": host_ip}, {"type": "Hostname", "address": name}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                    "nodeInfo": {
                        "architecture": "amd64", "bootID": self._new_uid(),
                        "containerRuntimeVersion": "containerd://1.7.27-1", "kernelVersion": "5.15.0-1089-azure",
                        "kubeProxyVersion": "", "kubeletVersion": version, "machineID": uuid.UUID(
                            int=self._random.getrandbits(128)).hex, "operatingSystem": "linux",
                        "osImage": "Ubuntu 22.04.5 LTS", "systemUUID": self._new_uid(),
                    },
                },
            }
            self._node_order[name] = index
            self._node_load[name] = [0, 0]
            self._pods_by_node[name] = {}
            self._pod_ip_counter[name] = itertools.count(4)
            self._index_node(None, node)
            self._save("nodes", name, node, "ADDED")
            self.record_event(reason="RegisteredNode", message=f"Node {name} event: Registered Node {name} in "
                              "Controller", kind="Node", name=name, source="node-controller")
            for daemonset in list(self._objects["daemonsets"].values()):
                self._create_owned_pod(daemonset, name)
            self._scheduling_needed = True
            self._schedule_pending()
            return node

    @staticmethod
    def _node_condition(kind, status, reason, message, now) -> dict:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now}

    def _index_node(self, old: dict | None, new: dict | None) -> None:
        old_labels = old["metadata"].get("labels") or {} if old else {}
        new_labels = new["metadata"].get("labels") or {} if new else {}
        name = (new or old)["metadata"]["name"]
        for item in old_labels.items() - new_labels.items():
            bucket = self._nodes_by_label[item]
            bucket.pop(name, None)
            if not bucket:
                del self._nodes_by_label[item]
        for item in new_labels.items() - old_labels.items():
            self._nodes_by_label.setdefault(item, {})[name] = None
        if new is not None and new["spec"].get("unschedulable"):
            self._unschedulable[name] = None
        else:
            self._unschedulable.pop(name, None)
        if new is not None and not _node_ready(new):
            self._not_ready[name] = None
        else:
            self._not_ready.pop(name, None)

    def _write_node(self, old: dict, new: dict) -> dict:
        """Store a changed node, keeping indexes and the cordon taint consistent."""
        unschedulable = bool(new["spec"].get("unschedulable"))
        if not unschedulable:
            new["spec"].pop("unschedulable", None)
        # The node lifecycle controller mirrors spec.unschedulable as a NoSchedule taint.
        taints = [t for t in new["spec"].get("taints") or () if t.get("key") != UNSCHEDULABLE_TAINT_KEY]
        if unschedulable:
            taints.append({"key": UNSCHEDULABLE_TAINT_KEY, "effect": "NoSchedule",
                           "timeAdded": rfc3339(self._now())})
        if taints:
            new["spec"]["taints"] = taints
        else:
            new["spec"].pop("taints", None)
        self._index_node(old, new)
        self._save("nodes", new["metadata"]["name"], new, "MODIFIED")
        self._scheduling_needed = True
        return new

    def _require_node(self, name: str) -> dict:
        node = self._nodes.get(name)
        if node is None:
            raise ObjectNotFound(f'nodes "{name}" not found')
        return node

    def remove_node(self, name) -> None:
        """Delete a node: its pods vanish; ReplicaSet pods get recreated elsewhere (pending if no room)."""
        with self.lock:
            self._require_node(name)
            # Forget the node first so the DaemonSet controller does not replace its pods on it.
            node = self._forget("nodes", name)
            self._index_node(node, None)
            for key in list(self._pods_by_node[name]):
                self._remove_pod(key)
            for index in (self._node_order, self._node_load, self._pods_by_node, self._pod_ip_counter):
                del index[name]
            self.record_event(reason="RemovingNode", message=f"Node {name} event: Removing Node {name} from "
                              "Controller", kind="Node", name=name, source="node-controller")
            self._reconcile()

    def get_node(self, name) -> dict | None:
        with self.lock:
            self.objects_visited += 1
            return self._nodes.get(name)

    def nodes(self, pool: str | None = None) -> list[dict]:
        """Nodes sorted by name, optionally only those of one agent pool."""
        if pool is None:
            return self.list_nodes()
        return self.list_nodes(labels_equal={AGENTPOOL_LABEL: pool})

    def list_nodes(self, *, name: str | None = None, unschedulable: bool | None = None,
                   labels_equal: dict[str, str] | None = None) -> list[dict]:
        """Nodes narrowed through the indexes (name, cordon state, exact labels), sorted by name."""
        with self.lock:
            if name is not None:
                candidates = [name] if name in self._nodes else []
            elif unschedulable:
                candidates = list(self._unschedulable)
            elif labels_equal:
                buckets = [self._nodes_by_label.get(item, {}) for item in labels_equal.items()]
                candidates = list(min(buckets, key=len))
            else:
                candidates = list(self._nodes)
            self.objects_visited += len(candidates)
            result = []
            for node_name in sorted(candidates):
                node = self._nodes[node_name]
                labels = node["metadata"]["labels"]
                if unschedulable is False and node_name in self._unschedulable:
                    continue
                if labels_equal and any(labels.get(k) != v for k, v in labels_equal.items()):
                    continue
                result.append(node)
            return result

    def unschedulable_nodes(self) -> list[dict]:
        return self.list_nodes(unschedulable=True)

    def set_unschedulable(self, name, value: bool) -> None:
        with self.lock:
            old = self._require_node(name)
            if bool(old["spec"].get("unschedulable")) == bool(value):
                return
            new = _clone(old)
            new["spec"]["unschedulable"] = bool(value)
            self._write_node(old, new)
            self.record_event(reason="NodeNotSchedulable" if value else "NodeSchedulable",
                              message=f"Node {name} status is now: "
                                      f"{'NodeNotSchedulable' if value else 'NodeSchedulable'}",
                              kind="Node", name=name, source="kubelet")
            self._schedule_pending()

    def set_node_label(self, name, key, value: str | None) -> None:
        """Set a node label; None removes it."""
        with self.lock:
            old = self._require_node(name)
            labels = old["metadata"].get("labels") or {}
            if labels.get(key) == value and (value is not None or key not in labels):
                return
            new = _clone(old)
            if value is None:
                new["metadata"]["labels"].pop(key, None)
            else:
                validate_labels("Node", name, {key: value})
                new["metadata"].setdefault("labels", {})[key] = value
            self._write_node(old, new)
            self._schedule_pending()

    def set_node_version(self, name, kubernetes_version) -> None:
        with self.lock:
            old = self._require_node(name)
            new = _clone(old)
            new["status"]["nodeInfo"]["kubeletVersion"] = "v" + kubernetes_version.lstrip("v")
            self._write_node(old, new)

    def set_node_image(self, name, node_image_version) -> None:
        self.set_node_label(name, "kubernetes.azure.com/node-image-version", node_image_version)

    def set_node_ready(self, name, ready: bool) -> None:
        """Flip the node's Ready condition (a NotReady node gets no new pods)."""
        with self.lock:
            old = self._require_node(name)
            if _node_ready(old) == ready:
                return
            new = _clone(old)
            now = rfc3339(self._now())
            for condition in new["status"]["conditions"]:
                if condition["type"] == "Ready":
                    condition.update(
                        status="True" if ready else "False",
                        reason="KubeletReady" if ready else "KubeletNotReady",
                        message="kubelet is posting ready status" if ready else "container runtime is down",
                        lastHeartbeatTime=now, lastTransitionTime=now)
            self._write_node(old, new)
            self._schedule_pending()

    def replace_node(self, name: str, new: dict, *, expected_resource_version: str | None = None) -> dict:
        """Store a client's edited node (PATCH/PUT): labels, annotations, spec.unschedulable and taints."""
        with self.lock:
            old = self._require_node(name)
            if expected_resource_version and expected_resource_version != old["metadata"]["resourceVersion"]:
                raise Conflict(f'Operation cannot be fulfilled on nodes "{name}": the object has been modified; '
                               "please apply your changes to the latest version and try again")
            metadata = new.get("metadata") or {}
            if metadata.get("name", name) != name:
                raise Invalid(f'Node "{name}" is invalid: metadata.name: Invalid value: "{metadata["name"]}": '
                              "field is immutable", [("metadata.name", "field is immutable")])
            labels = metadata.get("labels") or {}
            validate_labels("Node", name, labels)
            spec = new.get("spec") or {}
            for taint in spec.get("taints") or ():
                if not taint.get("key") or taint.get("effect") not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
                    raise Invalid(f'Node "{name}" is invalid: spec.taints: Invalid value: {taint!r}: '
                                  "a taint needs a key and an effect of NoSchedule, PreferNoSchedule or NoExecute",
                                  [("spec.taints", "invalid taint")])
            stored = _clone(old)
            stored["metadata"]["labels"] = dict(labels)
            stored["metadata"]["annotations"] = dict(metadata.get("annotations") or {})
            stored["spec"]["unschedulable"] = bool(spec.get("unschedulable"))
            stored["spec"]["taints"] = [dict(t) for t in spec.get("taints") or ()]
            was_unschedulable = bool(old["spec"].get("unschedulable"))
            self._write_node(old, stored)
            if was_unschedulable != stored["spec"].get("unschedulable", False):
                state = "NodeNotSchedulable" if stored["spec"].get("unschedulable") else "NodeSchedulable"
                self.record_event(reason=state, message=f"Node {name} status is now: {state}", kind="Node",
                                  name=name, source="kubelet")
            self._schedule_pending()
            return stored

    # ------------------------------------------------------------------ namespaces

    def add_namespace(self, name) -> None:
        with self.lock:
            if name in self._objects["namespaces"]:
                return
            namespace = {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": self._metadata(name, labels={"kubernetes.io/metadata.name": name}),
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
            self._save("namespaces", name, namespace, "ADDED")

    # ------------------------------------------------------------------ workloads

    def _pod_template(self, name: str, *, labels: dict, node_selector, tolerations, empty_dir: bool,
                      cpu: int, grace_seconds: int, image: str = APP_IMAGE) -> dict:
        container = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
                     "resources": {"requests": {"cpu": f"{cpu}m"}},
                     "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
        spec = {"containers": [container], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                "schedulerName": "default-scheduler", "serviceAccountName": "default",
                "terminationGracePeriodSeconds": grace_seconds, "securityContext": {}}
        if node_selector:
            spec["nodeSelector"] = dict(node_selector)
        spec["tolerations"] = [dict(t) for t in tolerations or ()]
        if empty_dir:
            spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
            container["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
        return {"metadata": {"labels": dict(labels)}, "spec": spec}

    def _ensure_namespace(self, namespace: str) -> None:
        if namespace not in self._objects["namespaces"]:
            self.add_namespace(namespace)

    def add_deployment(self, namespace, name, *, replicas, node_selector=None, tolerations=None,
                       empty_dir=False, labels=None, cpu_millis=100, grace_seconds=30,
                       place_on: list[str] | None = None) -> None:
        """A Deployment with its ReplicaSet and pods; place_on pins the initial node of each replica."""
        with self.lock, _collector_paused(), self._building():
            self._ensure_namespace(namespace)
            if (namespace, name) in self._objects["deployments"]:
                raise Conflict(f'deployments.apps "{name}" already exists')
            for node_name in place_on or ():
                if node_name is not None:
                    self._require_node(node_name)
            pod_labels = {"app": name, **(labels or {})}
            template_hash = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()
            template_hash = "".join(NAME_SUFFIX_ALPHABET[int(c, 16) % len(NAME_SUFFIX_ALPHABET)]
                                    for c in template_hash[:10])
            template = self._pod_template(name, labels=pod_labels, node_selector=node_selector,
                                          tolerations=[*(tolerations or ()), *NOT_READY_TOLERATIONS],
                                          empty_dir=empty_dir, cpu=cpu_millis, grace_seconds=grace_seconds)
            selector = {"matchLabels": dict(pod_labels)}
            deployment = {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": self._metadata(name, namespace, labels=dict(pod_labels), generation=1),
                "spec": {"replicas": replicas, "selector": selector, "template": template,
                         "strategy": {"type": "RollingUpdate",
                                      "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}},
                "status": {},
            }
            self._save("deployments", (namespace, name), deployment, "ADDED")
            rs_labels = dict(pod_labels, **{"pod-template-hash": template_hash})
            rs_template = _clone(template)
            rs_template["metadata"]["labels"] = dict(rs_labels)
            rs_name = f"{name}-{template_hash}"
            replicaset = {
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": self._metadata(rs_name, namespace, labels=dict(rs_labels), generation=1,
                                           ownerReferences=[self._owner_reference(deployment)]),
                "spec": {"replicas": replicas, "selector": {"matchLabels": dict(rs_labels)},
                         "template": rs_template},
                "status": {"replicas": 0},
            }
            self._save("replicasets", (namespace, rs_name), replicaset, "ADDED")
            self._owner_objects[replicaset["metadata"]["uid"]] = ("replicasets", (namespace, rs_name))
            self._pods_by_owner[replicaset["metadata"]["uid"]] = {}
            for replica in range(replicas):
                node_name = place_on[replica] if place_on and replica < len(place_on) else None
                self._create_owned_pod(replicaset, node_name)
            self._reconcile()

    def scale(self, resource: str, namespace: str, name: str, replicas: object, *,
              expected_resource_version: str | None = None) -> dict:
        """The scale subresource of a Deployment, ReplicaSet or StatefulSet: sets ``spec.replicas`` (a
        Deployment's ReplicaSets follow, as the deployment controller makes them); the ReplicaSet
        controller then creates the missing pods, which the scheduler places, or deletes the excess,
        unscheduled and newest first; the StatefulSet controller adds or removes the highest ordinals
        (``_reconcile_statefulset``). ``expected_resource_version`` is the Scale's precondition (409
        when stale)."""
        with self.lock:
            current = self._objects[resource].get((namespace, name))
            if current is None:
                raise ObjectNotFound(f'{resource}.apps "{name}" not found')
            if expected_resource_version and expected_resource_version != current["metadata"]["resourceVersion"]:
                raise Conflict(f'Operation cannot be fulfilled on {resource}.apps "{name}": the object has been '
                               "modified; please apply your changes to the latest version and try again")
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                cause = f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0"
                raise Invalid(f'Scale.autoscaling "{name}" is invalid: spec.replicas: {cause}', [("spec.replicas", cause)])
            stored = self._rescale(resource, (namespace, name), current, replicas)
            self._reconcile()
            return stored

    def _rescale(self, resource: str, key, current: dict, replicas: int) -> dict:
        stored = self._set_replicas(resource, key, current, replicas)
        if resource == "deployments":
            uid = current["metadata"]["uid"]
            for rs_key, replicaset in list(self._objects["replicasets"].items()):
                if (_controller_ref(replicaset) or {}).get("uid") == uid:
                    self._set_replicas("replicasets", rs_key, replicaset, replicas)
        return stored

    def _set_replicas(self, resource: str, key, current: dict, replicas: int) -> dict:
        if current["spec"]["replicas"] == replicas:
            return current
        new = _clone(current)
        new["spec"]["replicas"] = replicas
        new["metadata"]["generation"] = int(current["metadata"].get("generation") or 1) + 1
        stored = self._save(resource, key, new, "MODIFIED")
        if resource == "replicasets":
            self._dirty_replicasets[key] = None
            owned = [self._pods[k] for k in self._pods_by_owner.get(new["metadata"]["uid"], {})
                     if k in self._pods and not self._pods[k]["metadata"].get("deletionTimestamp")]
            owned.sort(key=lambda p: (bool(p["spec"].get("nodeName")), p["metadata"]["creationTimestamp"],
                                      p["metadata"]["name"]))
            for pod in owned[: max(0, len(owned) - replicas)]:
                self.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])
        return stored

    @contextlib.contextmanager
    def _building(self):
        """Pods created (and scheduled) inside run at once: the cluster is being set up, not changed."""
        self._steady_state = True
        # One timestamp for the whole build: reading the clock per pod is a tenth of the cost at 100k pods.
        self._build_time = self.clock.now()
        try:
            yield
        finally:
            self._steady_state = False
            self._build_time = None

    @staticmethod
    def _owner_reference(owner: dict) -> dict:
        return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def _create_owned_pod(self, owner: dict, node_name: str | None) -> dict:
        namespace = owner["metadata"]["namespace"]
        template = owner["spec"]["template"]
        while True:
            pod_name = f"{owner['metadata']['name']}-{self._suffix()}"
            if (namespace, pod_name) not in self._pods:
                break
        metadata = self._metadata(pod_name, namespace, generateName=f"{owner['metadata']['name']}-",
                                  labels=dict(template["metadata"]["labels"]),
                                  ownerReferences=[self._owner_reference(owner)])
        # Sharing the template's nested spec is safe: stored objects are cloned before any change.
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
               "spec": dict(template["spec"]), "status": {}}
        return self._admit_pod(pod, node_name)

    def add_daemonset(self, namespace, name, *, cpu_millis=50, labels=None) -> None:
        """One pod per node, now and for nodes added later; tolerates every taint and cordon."""
        with self.lock, _collector_paused(), self._building():
            self._ensure_namespace(namespace)
            if (namespace, name) in self._objects["daemonsets"]:
                raise Conflict(f'daemonsets.apps "{name}" already exists')
            pod_labels = {"app": name, **(labels or {})}
            template = self._pod_template(name, labels=pod_labels, node_selector=None,
                                          tolerations=DAEMONSET_TOLERATIONS, empty_dir=False, cpu=cpu_millis,
                                          grace_seconds=30, image=DAEMON_IMAGE)
            daemonset = {
                "apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": self._metadata(name, namespace, labels=dict(pod_labels), generation=1),
                "spec": {"selector": {"matchLabels": dict(pod_labels)}, "template": template,
                         "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}},
                "status": {},
            }
            self._save("daemonsets", (namespace, name), daemonset, "ADDED")
            self._owner_objects[daemonset["metadata"]["uid"]] = ("daemonsets", (namespace, name))
            self._pods_by_owner[daemonset["metadata"]["uid"]] = {}
            for node_name in list(self._nodes):
                self._create_owned_pod(daemonset, node_name)

    # ------------------------------------------------------------------ StatefulSets and their claims

    def add_statefulset(self, namespace, name, *, replicas, cpu_millis=100, labels=None, claim_templates=("data",),
                        when_scaled="Retain", pod_management_policy="OrderedReady", grace_seconds=30,
                        place_on: list[str] | None = None) -> None:
        """A StatefulSet with pods ``<name>-<ordinal>`` and, per ordinal and claim template, a Bound
        PersistentVolumeClaim ``<template>-<name>-<ordinal>``; place_on pins each ordinal's first node."""
        with self.lock, _collector_paused(), self._building():
            self._ensure_namespace(namespace)
            if (namespace, name) in self._objects["statefulsets"]:
                raise Conflict(f'statefulsets.apps "{name}" already exists')
            pod_labels = {"app": name, **(labels or {})}
            template = self._pod_template(name, labels=pod_labels, node_selector=None,
                                          tolerations=NOT_READY_TOLERATIONS, empty_dir=False, cpu=cpu_millis,
                                          grace_seconds=grace_seconds)
            template["spec"]["containers"][0]["volumeMounts"] = [
                {"name": t, "mountPath": f"/var/lib/{t}"} for t in claim_templates]
            statefulset = {
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": self._metadata(name, namespace, labels=dict(pod_labels), generation=1),
                "spec": {"replicas": replicas, "selector": {"matchLabels": dict(pod_labels)}, "serviceName": name,
                         "template": template, "podManagementPolicy": pod_management_policy,
                         "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                         "revisionHistoryLimit": 10,
                         "volumeClaimTemplates": [
                             {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": t},
                              "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                                       "resources": {"requests": {"storage": "1Gi"}}}} for t in claim_templates],
                         "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": when_scaled}},
                "status": {},
            }
            revision = f"{name}-{hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]}"
            self._revisions[(namespace, name)] = (revision, revision)
            self._save("statefulsets", (namespace, name), statefulset, "ADDED")
            self._owner_objects[statefulset["metadata"]["uid"]] = ("statefulsets", (namespace, name))
            self._pods_by_owner[statefulset["metadata"]["uid"]] = {}
            for ordinal in range(replicas):
                node_name = place_on[ordinal] if place_on and ordinal < len(place_on) else None
                self._create_ordinal(statefulset, ordinal, node_name)
            self._reconcile()

    def begin_statefulset_rollout(self, namespace, name, *, partition: int) -> None:
        """A template change held back by a partition (a staged rollout): updateRevision differs from
        currentRevision, and only ordinals at or above the partition would be updated (none here:
        the emulator does not roll pods)."""
        with self.lock:
            current = self._objects["statefulsets"][(namespace, name)]
            new = _clone(current)
            new["spec"]["template"]["metadata"].setdefault("annotations", {})["rollout"] = str(self._resource_version)
            new["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = partition
            new["metadata"]["generation"] = int(current["metadata"].get("generation") or 1) + 1
            revision = self._revisions[(namespace, name)][0]
            self._revisions[(namespace, name)] = (revision, f"{name}-{self._suffix(10)}")
            self._save("statefulsets", (namespace, name), new, "MODIFIED")

    def _claim_name(self, template: str, statefulset: dict, ordinal: int) -> str:
        return f"{template}-{statefulset['metadata']['name']}-{ordinal}"

    def add_volume_claim(self, namespace: str, name: str, *, storage: str = "1Gi") -> dict:
        """A Bound PersistentVolumeClaim no pod mounts (one an earlier scale-down, or a StatefulSet
        deleted and made again, left behind)."""
        with self.lock:
            self._ensure_namespace(namespace)
            return self._bound_claim(namespace, name, {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                                                       "resources": {"requests": {"storage": storage}}})

    def _bound_claim(self, namespace: str, name: str, template_spec: dict, *, labels: dict | None = None) -> dict:
        metadata = self._metadata(name, namespace, labels=labels or {}, finalizers=["kubernetes.io/pvc-protection"])
        spec = dict(_clone(template_spec), storageClassName="managed-csi", volumeName=f"pvc-{metadata['uid']}")
        return self._save("persistentvolumeclaims", (namespace, name), {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec,
            "status": {"phase": "Bound", "accessModes": list(spec["accessModes"]),
                       "capacity": dict(spec["resources"]["requests"])}}, "ADDED")

    def _create_ordinal(self, statefulset: dict, ordinal: int, node_name: str | None) -> dict:
        """The StatefulSet controller's pod for one ordinal, after the claims it mounts (a claim
        left by an earlier scale-down is reused, as Kubernetes does)."""
        namespace, name = statefulset["metadata"]["namespace"], statefulset["metadata"]["name"]
        for claim_template in statefulset["spec"]["volumeClaimTemplates"]:
            claim = self._claim_name(claim_template["metadata"]["name"], statefulset, ordinal)
            if (namespace, claim) not in self._objects["persistentvolumeclaims"]:
                self._bound_claim(namespace, claim, claim_template["spec"],
                                  labels=dict(statefulset["spec"]["selector"]["matchLabels"]))
        template = statefulset["spec"]["template"]
        pod_name = f"{name}-{ordinal}"
        labels = dict(template["metadata"]["labels"], **{
            "statefulset.kubernetes.io/pod-name": pod_name, "apps.kubernetes.io/pod-index": str(ordinal),
            "controller-revision-hash": self._revisions[(namespace, name)][0]})
        metadata = self._metadata(pod_name, namespace, generateName=f"{name}-", labels=labels,
                                  ownerReferences=[self._owner_reference(statefulset)])
        spec = dict(template["spec"], hostname=pod_name, subdomain=statefulset["spec"]["serviceName"],
                    volumes=[{"name": t["metadata"]["name"], "persistentVolumeClaim": {
                        "claimName": self._claim_name(t["metadata"]["name"], statefulset, ordinal)}}
                        for t in statefulset["spec"]["volumeClaimTemplates"]])
        return self._admit_pod({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
                                "status": {}}, node_name)

    def _reconcile_statefulset(self, key: tuple[str, str]) -> None:
        """The StatefulSet controller: ordinals below spec.replicas are created (a deleted one again
        under its name, once the old pod is gone), the highest above it removed; OrderedReady does
        one at a time and only while every lower ordinal is Running and Ready, Parallel all at once.
        whenScaled Delete removes the claims of an ordinal a scale-down removed once its pod is gone
        (a claim no removed pod mounted, left from before, stays)."""
        statefulset = self._objects["statefulsets"][key]
        spec, namespace = statefulset["spec"], key[0]
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        pods = {}
        for pod_key in self._pods_by_owner[statefulset["metadata"]["uid"]]:
            pods[int(self._pods[pod_key]["metadata"]["labels"]["apps.kubernetes.io/pod-index"])] = self._pods[pod_key]

        def healthy(ordinal: int) -> bool:
            pod = pods.get(ordinal)
            return pod is not None and pod_ready(pod) and not pod["metadata"].get("deletionTimestamp")

        replicas = spec["replicas"]
        for ordinal in range(replicas):
            if ordinal in pods:
                if ordered and not healthy(ordinal):
                    break
                continue
            pods[ordinal] = self._create_ordinal(statefulset, ordinal, None)
            if ordered:
                break
        condemned = sorted((o for o in pods if o >= replicas), reverse=True)
        if ordered and (any(pods[o]["metadata"].get("deletionTimestamp") for o in condemned)
                        or not all(healthy(o) for o in range(replicas))):
            condemned = []  # one at a time, and only while the ordinals it keeps are all Running and Ready
        delete_claims = (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenScaled") == "Delete"
        for ordinal in condemned[:1] if ordered else condemned:
            if not pods[ordinal]["metadata"].get("deletionTimestamp"):
                if delete_claims:  # Kubernetes makes the condemned pod own its claims: they go with it
                    self._condemned_claims.update({
                        (namespace, self._claim_name(t["metadata"]["name"], statefulset, ordinal)): (key, ordinal)
                        for t in spec["volumeClaimTemplates"]})
                self.delete_pod(namespace, pods[ordinal]["metadata"]["name"])
        # Only the claims of pods a scale-down removed: a claim left from before (no pod owns it) stays
        for claim_key, (owner, ordinal) in list(self._condemned_claims.items()):
            if owner != key or (ordinal in pods and ordinal >= replicas):
                continue  # its pod is still going
            del self._condemned_claims[claim_key]  # gone, or its ordinal kept again by a scale-up
            if ordinal not in pods and ordinal >= replicas and claim_key in self._objects["persistentvolumeclaims"]:
                self._forget("persistentvolumeclaims", claim_key)

    # ------------------------------------------------------------------ HorizontalPodAutoscalers

    def add_hpa(self, namespace, name, *, target_kind: str, target_name: str, min_replicas: int,
                max_replicas: int) -> dict:
        """An autoscaling/v2 HorizontalPodAutoscaler on the default cpu metric (which nothing serves here)."""
        with self.lock:
            self._ensure_namespace(namespace)
            if (namespace, name) in self._objects["horizontalpodautoscalers"]:
                raise Conflict(f'horizontalpodautoscalers.autoscaling "{name}" already exists')
            hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                   "metadata": self._metadata(name, namespace),
                   "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": target_kind, "name": target_name},
                            "minReplicas": min_replicas, "maxReplicas": max_replicas,
                            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                                "type": "Utilization", "averageUtilization": 80}}}]},
                   "status": {"currentReplicas": 0, "desiredReplicas": 0}}
            self._validate_hpa(name, hpa["spec"])
            stored = self._save("horizontalpodautoscalers", (namespace, name), hpa, "ADDED")
            self._sync_autoscalers()
            self._reconcile()
            return stored

    @staticmethod
    def _validate_hpa(name: str, spec: dict) -> None:
        low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
        for path, value in (("spec.minReplicas", low), ("spec.maxReplicas", high)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                cause = f"Invalid value: {json.dumps(value)}: must be greater than or equal to 1"
                raise Invalid(f'HorizontalPodAutoscaler.autoscaling "{name}" is invalid: {path}: {cause}',
                              [(path, cause)])
        if high < low:
            cause = f"Invalid value: {high}: must be greater than or equal to `minReplicas`"
            raise Invalid(f'HorizontalPodAutoscaler.autoscaling "{name}" is invalid: spec.maxReplicas: {cause}',
                          [("spec.maxReplicas", cause)])

    def replace_hpa(self, namespace: str, name: str, new: dict, *,
                    expected_resource_version: str | None = None) -> dict:
        """An update of the HPA's spec (its status is the controller's); the controller acts at once."""
        with self.lock:
            current = self._objects["horizontalpodautoscalers"].get((namespace, name))
            if current is None:
                raise ObjectNotFound(f'horizontalpodautoscalers.autoscaling "{name}" not found')
            if expected_resource_version and expected_resource_version != current["metadata"]["resourceVersion"]:
                raise Conflict(f'Operation cannot be fulfilled on horizontalpodautoscalers.autoscaling "{name}": '
                               "the object has been modified; please apply your changes to the latest version and "
                               "try again")
            spec = new.get("spec") or {}
            self._validate_hpa(name, spec)
            if spec == current["spec"]:
                return current
            updated = _clone(current)
            updated["spec"] = _clone(spec)
            stored = self._save("horizontalpodautoscalers", (namespace, name), updated, "MODIFIED")
            self._sync_autoscalers()
            self._reconcile()
            return stored

    def _sync_autoscalers(self) -> None:
        """The HPA controller as it acts with no metrics server (none runs here): a target at 0
        replicas is left (scaling disabled), one above maxReplicas is set to it, one below
        minReplicas to it; within the bounds the metrics decide, and with no metrics it stays."""
        for key, hpa in list(self._objects["horizontalpodautoscalers"].items()):
            ref = hpa["spec"]["scaleTargetRef"]
            resource = {"Deployment": "deployments", "ReplicaSet": "replicasets",
                        "StatefulSet": "statefulsets"}.get(ref.get("kind"))
            target = self._objects[resource].get((key[0], ref.get("name"))) if resource else None
            if target is None:
                continue
            current = target["spec"]["replicas"]
            low, high = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
            desired = current if current == 0 else min(max(current, low), high)
            if desired != current:
                self._rescale(resource, (key[0], ref["name"]), target, desired)
            active = "ScalingDisabled" if current == 0 else "FailedGetResourceMetric"
            status = {"currentReplicas": current, "desiredReplicas": desired, "conditions": [
                {"type": "AbleToScale", "status": "True", "reason": "SucceededRescale" if desired != current
                 else "SucceededGetScale", "message": "the HPA controller was able to update the target scale to "
                 f"{desired}" if desired != current else "the HPA controller was able to get the target's current "
                 "scale"},
                {"type": "ScalingActive", "status": "False", "reason": active, "message": HPA_NO_METRICS
                 if current else "scaling is disabled since the replica count of the target is zero"}]}
            if desired != current:
                status["lastScaleTime"] = rfc3339(self._now())
            elif hpa["status"].get("lastScaleTime"):
                status["lastScaleTime"] = hpa["status"]["lastScaleTime"]
            if status != hpa["status"]:
                updated = dict(hpa, metadata=dict(hpa["metadata"]), status=status)
                self._save("horizontalpodautoscalers", key, updated, "MODIFIED")

    def add_pod(self, namespace, name, *, node, owner_kind=None, empty_dir=False, labels=None,
                grace_seconds=30, cpu_millis=100, node_selector=None, tolerations=None) -> dict:
        """A single pod. owner_kind None = unmanaged (never recreated); otherwise a standalone owner
        object of that kind (e.g. "ReplicaSet", "StatefulSet", "Job") is referenced but not reconciled."""
        with self.lock, self._building():
            self._ensure_namespace(namespace)
            if (namespace, name) in self._pods:
                raise Conflict(f'pods "{name}" already exists')
            if node is not None:
                self._require_node(node)
            pod_labels = dict(labels or {"app": name})
            template = self._pod_template(name, labels=pod_labels, node_selector=node_selector,
                                          tolerations=[*(tolerations or ()), *NOT_READY_TOLERATIONS],
                                          empty_dir=empty_dir, cpu=cpu_millis, grace_seconds=grace_seconds)
            extra = {}
            if owner_kind:
                api_version = "batch/v1" if owner_kind in ("Job", "CronJob") else "apps/v1"
                extra["ownerReferences"] = [{"apiVersion": api_version, "kind": owner_kind, "name": name,
                                             "uid": self._new_uid(), "controller": True,
                                             "blockOwnerDeletion": True}]
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": self._metadata(name, namespace, labels=pod_labels, **extra),
                   "spec": template["spec"], "status": {}}
            pod = self._admit_pod(pod, node)
            self._schedule_pending()
            return pod

    def set_crashloop(self, namespace, deployment, pools: set[str]) -> None:
        """That workload's pods on nodes of these pools crash-loop (CrashLoopBackOff, not Ready)."""
        with self.lock:
            self._crashloop_rules[(namespace, deployment)] = set(pools)
            for key in list(self._pods_by_namespace.get(namespace, {})):
                pod = self._pods[key]
                node_name = pod["spec"].get("nodeName")
                if node_name and self._workload_of(pod) == (namespace, deployment):
                    self._refresh_container_state(key, node_name)
            self._dirty_pdb_namespaces.add(namespace)
            self._refresh_pdbs()

    def _workload_of(self, pod: dict) -> tuple[str, str] | None:
        """(namespace, Deployment name) a pod belongs to, through its ReplicaSet."""
        reference = _controller_ref(pod)
        if reference is None or reference["kind"] != "ReplicaSet":
            return None
        owner = self._owner_objects.get(reference["uid"])
        if owner is None:
            return None
        replicaset = self._objects["replicasets"].get(owner[1])
        deployment_ref = replicaset and _controller_ref(replicaset)
        return (pod["metadata"]["namespace"], deployment_ref["name"]) if deployment_ref else None

    def _should_crashloop(self, pod: dict, node_name: str) -> bool:
        workload = self._workload_of(pod) if self._crashloop_rules else None
        pools = self._crashloop_rules.get(workload) if workload else None
        return bool(pools) and self._nodes[node_name]["metadata"]["labels"].get(AGENTPOOL_LABEL) in pools

    # ------------------------------------------------------------------ pods: admission, binding, removal

    def _admit_pod(self, pod: dict, node_name: str | None) -> dict:
        """Index a new pod; bind it to node_name or leave it Pending for the scheduler."""
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        pod["status"] = {"phase": "Pending", "qosClass": "Burstable"}
        if node_name is not None:
            self._bind(pod, node_name)
        else:
            self._pending[key] = None
            self._scheduling_needed = True
        self._pods_by_namespace.setdefault(key[0], {})[key] = None
        reference = _controller_ref(pod)
        if reference is not None:
            self._pods_by_owner.setdefault(reference["uid"], {})[key] = None
        for label in pod["metadata"]["labels"].items():
            self._pods_by_label.setdefault((key[0], *label), {})[key] = None
        self._dirty_pdb_namespaces.add(key[0])
        return self._save("pods", key, pod, "ADDED")

    def _bind(self, pod: dict, node_name: str) -> None:
        """Place a pod (being built or a fresh copy) on a node and mark it running."""
        node = self._nodes[node_name]
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        now = rfc3339(self._now())
        host_ip = node["status"]["addresses"][0]["address"]
        pod_network = node["spec"]["podCIDR"].rsplit(".", 1)[0]
        pod_ip = f"{pod_network}.{next(self._pod_ip_counter[node_name]) % 250 + 4}"
        pod["spec"]["nodeName"] = node_name
        pod["status"] = {
            "phase": "Pending", "qosClass": "Burstable", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": now,
            "conditions": [{"type": kind, "status": "True" if kind in ("Initialized", "PodScheduled") else "False",
                            "lastProbeTime": None, "lastTransitionTime": now}
                           for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                        "PodScheduled")],
            "containerStatuses": [
                {"name": container["name"], "image": container["image"], "imageID": "", "ready": False,
                 "started": False, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
                for container in pod["spec"]["containers"]],
        }
        load = self._node_load[node_name]
        load[0] += 1
        load[1] += sum(cpu_millis(c.get("resources", {}).get("requests", {}).get("cpu"))
                       for c in pod["spec"]["containers"])
        self._pods_by_node[node_name][key] = None
        self._pending.pop(key, None)
        if self._steady_state:
            self._start_containers(pod, key, node_name)
        else:
            ready_at = self._now() + timedelta(seconds=POD_STARTUP_SECONDS)
            heapq.heappush(self._starting, (ready_at, next(self._sequence), key, pod["metadata"]["uid"]))

    def _start_containers(self, pod: dict, key: tuple[str, str], node_name: str) -> None:
        """The kubelet has started the pod's containers: Running and Ready (or crash-looping)."""
        now = rfc3339(self._now())
        pod["status"]["phase"] = "Running"
        for condition in pod["status"]["conditions"]:
            condition.update(status="True", lastTransitionTime=now)
        for status in pod["status"]["containerStatuses"]:
            status.update(ready=True, started=True, state={"running": {"startedAt": now}},
                          containerID=f"containerd://{self._random.getrandbits(256):064x}")
        if self._should_crashloop(pod, node_name):
            self._crashlooping[key] = self._now()
            self._apply_crashloop(pod, 1)

    def _apply_crashloop(self, pod: dict, restarts: int) -> None:
        now = rfc3339(self._now())
        for condition in pod["status"]["conditions"]:
            if condition["type"] in ("Ready", "ContainersReady"):
                condition.update(status="False", reason="ContainersNotReady",
                                 message=f"containers with unready status: [{pod['spec']['containers'][0]['name']}]")
        for status in pod["status"]["containerStatuses"]:
            status.update(ready=False, started=False, restartCount=restarts,
                          state={"waiting": {"reason": "CrashLoopBackOff",
                                             "message": f"back-off 5m0s restarting failed container={status['name']}"
                                                        f" pod={pod['metadata']['name']}"}},
                          lastState={"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now,
                                                    "finishedAt": now}})

    def _refresh_container_state(self, key: tuple[str, str], node_name: str) -> None:
        pod = self._pods[key]
        crashing = self._should_crashloop(pod, node_name)
        if crashing == (key in self._crashlooping):
            return
        new = _clone(pod)
        if crashing:
            self._crashlooping[key] = self._now()
            self._apply_crashloop(new, 1)
        else:
            del self._crashlooping[key]
            now = rfc3339(self._now())
            for condition in new["status"]["conditions"]:
                condition.update(status="True", lastTransitionTime=now)
                condition.pop("reason", None)
                condition.pop("message", None)
            for status in new["status"]["containerStatuses"]:
                status.update(ready=True, started=True, state={"running": {"startedAt": now}})
        self._save("pods", key, new, "MODIFIED")

    def _remove_pod(self, key: tuple[str, str]) -> dict:
        """The pod is gone from the API; controllers will notice on reconcile."""
        pod = self._forget("pods", key)
        node_name = pod["spec"].get("nodeName")
        if node_name is not None and node_name in self._pods_by_node:
            self._pods_by_node[node_name].pop(key, None)
            load = self._node_load[node_name]
            load[0] -= 1
            load[1] -= sum(cpu_millis(c.get("resources", {}).get("requests", {}).get("cpu"))
                           for c in pod["spec"]["containers"])
            self._scheduling_needed = True
        self._pending.pop(key, None)
        self._crashlooping.pop(key, None)
        self._pods_by_namespace[key[0]].pop(key, None)
        for label in pod["metadata"]["labels"].items():
            bucket = self._pods_by_label[(key[0], *label)]
            bucket.pop(key, None)
            if not bucket:
                del self._pods_by_label[(key[0], *label)]
        reference = _controller_ref(pod)
        if reference is not None and pod["metadata"].get("deletionTimestamp"):
            self._terminating_by_owner[reference["uid"]] -= 1
        if reference is not None and reference["uid"] in self._pods_by_owner:
            self._pods_by_owner[reference["uid"]].pop(key, None)
            owner = self._owner_objects.get(reference["uid"])
            if owner is not None and owner[0] == "replicasets":
                self._dirty_replicasets[owner[1]] = None
            elif owner is not None and owner[0] == "daemonsets" and node_name in self._nodes:
                self._replace_daemon_pod(owner[1], node_name)
        self._dirty_pdb_namespaces.add(key[0])
        return pod

    def _replace_daemon_pod(self, daemonset_key, node_name: str) -> None:
        daemonset = self._objects["daemonsets"].get(daemonset_key)
        if daemonset is None:
            return
        owned = self._pods_by_owner[daemonset["metadata"]["uid"]]
        if not any(self._pods[k]["spec"].get("nodeName") == node_name for k in owned):
            self._create_owned_pod(daemonset, node_name)

    # ------------------------------------------------------------------ pods: queries

    def get_pod(self, namespace, name) -> dict | None:
        with self.lock:
            self.objects_visited += 1
            return self._pods.get((namespace, name))

    def pods_on_node(self, name) -> list[dict]:
        with self.lock:
            keys = list(self._pods_by_node.get(name, ()))
            self.objects_visited += len(keys)
            return [self._pods[key] for key in keys]

    def pods(self) -> list[dict]:
        with self.lock:
            self.objects_visited += len(self._pods)
            return list(self._pods.values())

    def list_pods(self, *, namespace: str | None = None, node_name: str | None = None,
                  name: str | None = None) -> list[dict]:
        """Pods narrowed through the indexes, in (namespace, name) order."""
        with self.lock:
            if namespace is not None and name is not None:
                keys = [(namespace, name)] if (namespace, name) in self._pods else []
            elif node_name is not None:
                keys = list(self._pods_by_node.get(node_name, ()))
            elif namespace is not None:
                keys = list(self._pods_by_namespace.get(namespace, ()))
            else:
                keys = list(self._pods)
            self.objects_visited += len(keys)
            result = []
            for key in sorted(keys):
                pod = self._pods[key]
                if namespace is not None and key[0] != namespace:
                    continue
                if node_name is not None and pod["spec"].get("nodeName") != node_name:
                    continue
                if name is not None and key[1] != name:
                    continue
                result.append(pod)
            return result

    def pending_pods(self) -> list[dict]:
        with self.lock:
            return [self._pods[key] for key in self._pending]

    # ------------------------------------------------------------------ disruption

    def delete_pod(self, namespace, name, *, grace_seconds=None, uid: str | None = None) -> dict:
        """Start a graceful deletion (or remove at once with grace 0); returns the pod as it now is."""
        with self.lock:
            key = (namespace, name)
            pod = self._pods.get(key)
            if pod is None:
                raise PodNotFound(f'pods "{name}" not found')
            if uid is not None and uid != pod["metadata"]["uid"]:
                raise Conflict(f'Operation cannot be fulfilled on Pod "{name}": Precondition failed: UID in '
                               f"precondition: {uid}, UID in object meta: {pod['metadata']['uid']}")
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30) if grace_seconds is None else grace_seconds
            if not pod["spec"].get("nodeName") or int(grace) <= 0:
                removed = self._remove_pod(key)
                self._reconcile()
                return removed
            if pod["metadata"].get("deletionTimestamp"):
                return pod
            deadline = self._now() + timedelta(seconds=int(grace))
            terminating = _clone(pod)
            terminating["metadata"]["deletionTimestamp"] = rfc3339(deadline)
            terminating["metadata"]["deletionGracePeriodSeconds"] = int(grace)
            for condition in terminating["status"]["conditions"]:
                if condition["type"] in ("Ready", "ContainersReady"):
                    condition["status"] = "False"
            self._save("pods", key, terminating, "MODIFIED")
            heapq.heappush(self._terminations, (deadline, next(self._sequence), key, pod["metadata"]["uid"]))
            self.record_event(reason="Killing", message=f"Stopping container {pod['spec']['containers'][0]['name']}",
                              kind="Pod", name=name, namespace=namespace, source="kubelet")
            # The ReplicaSet controller ignores terminating pods and replaces them at once.
            reference = _controller_ref(pod)
            if reference is not None:
                self._terminating_by_owner[reference["uid"]] = self._terminating_by_owner.get(reference["uid"], 0) + 1
            owner = reference and self._owner_objects.get(reference["uid"])
            if owner and owner[0] == "replicasets":
                self._dirty_replicasets[owner[1]] = None
            self._dirty_pdb_namespaces.add(namespace)
            self._reconcile()
            return terminating

    def evict(self, namespace, name, *, grace_seconds=None, uid: str | None = None) -> None:
        """The policy/v1 Eviction: raises PodNotFound, DisruptionBlocked or EvictionNotSupported."""
        with self.lock:
            pod = self._pods.get((namespace, name))
            if pod is None:
                raise PodNotFound(f'pods "{name}" not found')
            if pod["metadata"].get("deletionTimestamp"):
                return  # already terminating: Kubernetes answers success without touching budgets
            if pod["status"].get("phase") in ("Pending", "Succeeded", "Failed"):
                self.delete_pod(namespace, name, grace_seconds=grace_seconds, uid=uid)
                return
            budgets = self.pdbs_for_pod(pod)
            if len(budgets) > 1:
                raise EvictionNotSupported(MULTIPLE_PDBS_MESSAGE)
            if budgets:
                budget = self._refresh_pdb(budgets[0])
                status = budget["status"]
                # Kubernetes' default unhealthyPodEvictionPolicy (IfHealthyBudget): an unready pod may go
                # while the budget is met; a healthy one only when a disruption is allowed.
                healthy_budget_met = status["currentHealthy"] >= status["desiredHealthy"]
                if not (not pod_ready(pod) and healthy_budget_met) and status["disruptionsAllowed"] <= 0:
                    raise DisruptionBlocked(
                        f"{namespace}/{budget['metadata']['name']}",
                        f"The disruption budget {budget['metadata']['name']} needs {status['desiredHealthy']} "
                        f"healthy pods and has {status['currentHealthy']} currently",
                        status["expectedPods"] - status["currentHealthy"])
            self.delete_pod(namespace, name, grace_seconds=grace_seconds, uid=uid)

    def tick(self) -> None:
        """Finish terminations whose grace passed (emulated time), recreate ReplicaSet pods,
        schedule pending pods, advance crash loops, refresh PDB status."""
        with self.lock:
            now = self._now()
            while self._terminations and self._terminations[0][0] <= now:
                _, _, key, uid = heapq.heappop(self._terminations)
                pod = self._pods.get(key)
                if pod is not None and pod["metadata"]["uid"] == uid:
                    self._remove_pod(key)
            while self._starting and self._starting[0][0] <= now:
                _, _, key, uid = heapq.heappop(self._starting)
                pod = self._pods.get(key)
                if pod is not None and pod["metadata"]["uid"] == uid and not pod["metadata"].get("deletionTimestamp"):
                    started = _clone(pod)
                    self._start_containers(started, key, started["spec"]["nodeName"])
                    self._save("pods", key, started, "MODIFIED")
                    self._dirty_pdb_namespaces.add(key[0])
            for key, since in list(self._crashlooping.items()):
                restarts = 1 + int((now - since).total_seconds() // CRASHLOOP_RESTART_SECONDS)
                pod = self._pods[key]
                if pod["status"]["containerStatuses"][0]["restartCount"] != restarts:
                    new = _clone(pod)
                    self._apply_crashloop(new, restarts)
                    self._save("pods", key, new, "MODIFIED")
            self._sync_autoscalers()
            self._reconcile()

    def _reconcile(self) -> None:
        """Run the controllers whose inputs changed: ReplicaSets, scheduler, disruption controller."""
        for key in list(self._dirty_replicasets):
            del self._dirty_replicasets[key]
            replicaset = self._objects["replicasets"].get(key)
            if replicaset is None:
                continue
            uid = replicaset["metadata"]["uid"]
            active = len(self._pods_by_owner[uid]) - self._terminating_by_owner.get(uid, 0)
            for _ in range(replicaset["spec"]["replicas"] - active):
                self._create_owned_pod(replicaset, None)
        for key in list(self._objects["statefulsets"]):
            self._reconcile_statefulset(key)
        self._schedule_pending()
        self._refresh_pdbs()

    # ------------------------------------------------------------------ scheduler

    def _fits(self, pod: dict, node: dict) -> str | None:
        """None when the pod fits the node, else the scheduler's reason."""
        name = node["metadata"]["name"]
        if not _node_ready(node):
            return "node(s) were not ready"
        if name in self._unschedulable:
            return "node(s) were unschedulable"
        labels = node["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in (pod["spec"].get("nodeSelector") or {}).items()):
            return "node(s) didn't match Pod's node affinity/selector"
        tolerations = pod["spec"].get("tolerations") or []
        for taint in node["spec"].get("taints") or ():
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(tolerations, taint):
                return f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
        load = self._node_load[name]
        if load[0] >= int(node["status"]["allocatable"]["pods"]):
            return "Too many pods"
        requested = sum(cpu_millis(c.get("resources", {}).get("requests", {}).get("cpu"))
                        for c in pod["spec"]["containers"])
        if load[1] + requested > cpu_millis(node["status"]["allocatable"]["cpu"]):
            return "Insufficient cpu"
        return None

    def _schedule_pending(self) -> None:
        """Bind pending pods to the least loaded fitting node (ties broken by name)."""
        if not self._pending or not self._scheduling_needed:
            return
        self._scheduling_needed = False
        candidates = [(self._node_load[name][0], name) for name in self._nodes
                      if name not in self._unschedulable and name not in self._not_ready]
        heapq.heapify(candidates)
        for key in list(self._pending):
            pod = self._pods[key]
            passed_over = []
            chosen = None
            while candidates:
                load, node_name = heapq.heappop(candidates)
                if self._fits(pod, self._nodes[node_name]) is None:
                    chosen = node_name
                    heapq.heappush(candidates, (load + 1, node_name))
                    break
                passed_over.append((load, node_name))
            for item in passed_over:
                heapq.heappush(candidates, item)
            if chosen is None:
                self._mark_unschedulable(key)
                continue
            bound = _clone(pod)
            self._bind(bound, chosen)
            self._save("pods", key, bound, "MODIFIED")
            self._dirty_pdb_namespaces.add(key[0])
            self.record_event(reason="Scheduled", message=f"Successfully assigned {key[0]}/{key[1]} to {chosen}",
                              kind="Pod", name=key[1], namespace=key[0], source="default-scheduler")

    def _mark_unschedulable(self, key: tuple[str, str]) -> None:
        pod = self._pods[key]
        reasons: dict[str, int] = {}
        for node in self._nodes.values():
            reason = self._fits(pod, node)
            if reason:
                reasons[reason] = reasons.get(reason, 0) + 1
        detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        message = f"0/{len(self._nodes)} nodes are available: {detail}." if detail else \
            f"0/{len(self._nodes)} nodes are available."
        conditions = pod["status"].get("conditions") or []
        if conditions and conditions[0].get("message") == message:
            return
        new = _clone(pod)
        new["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                        "message": message, "lastProbeTime": None,
                                        "lastTransitionTime": rfc3339(self._now())}]
        self._save("pods", key, new, "MODIFIED")
        self.record_event(reason="FailedScheduling", message=message, kind="Pod", name=key[1], namespace=key[0],
                          type="Warning", source="default-scheduler")

    # ------------------------------------------------------------------ PodDisruptionBudgets

    def add_pdb(self, namespace, name, *, selector: dict, min_available=None, max_unavailable=None) -> dict:
        """selector: a label map, or a LabelSelector ({matchLabels, matchExpressions}); int or "50%"."""
        if "matchLabels" not in selector and "matchExpressions" not in selector:
            selector = {"matchLabels": dict(selector)}
        spec = {"selector": _clone(selector)}
        if min_available is not None:
            spec["minAvailable"] = min_available
        if max_unavailable is not None:
            spec["maxUnavailable"] = max_unavailable
        return self.create_pdb({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                                "metadata": {"name": name, "namespace": namespace}, "spec": spec})

    @staticmethod
    def _validate_pdb(name: str, spec: dict) -> None:
        has_min, has_max = spec.get("minAvailable") is not None, spec.get("maxUnavailable") is not None
        if has_min and has_max:
            raise Invalid(f'PodDisruptionBudget.policy "{name}" is invalid: spec: Invalid value: '
                          '"minAvailable and maxUnavailable cannot be both set"', [("spec", "both set")])
        for field in ("minAvailable", "maxUnavailable"):
            value = spec.get(field)
            if value is not None and not _valid_int_or_percent(value):
                raise Invalid(f'PodDisruptionBudget.policy "{name}" is invalid: spec.{field}: Invalid value: '
                              f"{value!r}: must be a non-negative integer or a percentage",
                              [(f"spec.{field}", "invalid value")])
        label_selector_requirements(spec.get("selector"))

    def create_pdb(self, pdb: dict) -> dict:
        with self.lock:
            metadata = pdb.get("metadata") or {}
            namespace, name = metadata.get("namespace", "default"), metadata.get("name")
            if not name:
                raise Invalid("PodDisruptionBudget.policy is invalid: metadata.name: Required value: name is required",
                              [("metadata.name", "Required value")])
            if (namespace, name) in self._objects["poddisruptionbudgets"]:
                raise Conflict(f'poddisruptionbudgets.policy "{name}" already exists')
            spec = _clone(pdb.get("spec") or {})
            self._validate_pdb(name, spec)
            self._ensure_namespace(namespace)
            stored = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                      "metadata": self._metadata(name, namespace, generation=1,
                                                 labels=dict(metadata.get("labels") or {}),
                                                 annotations=dict(metadata.get("annotations") or {})),
                      "spec": spec, "status": {}}
            stored["status"] = self._pdb_status(stored)
            return self._save("poddisruptionbudgets", (namespace, name), stored, "ADDED")

    def replace_pdb(self, namespace: str, name: str, new: dict, *,
                    expected_resource_version: str | None = None) -> dict:
        """Store a client's edited PDB (PATCH/PUT); a spec change bumps the generation."""
        with self.lock:
            old = self.get_object("poddisruptionbudgets", namespace, name)
            if expected_resource_version and expected_resource_version != old["metadata"]["resourceVersion"]:
                raise Conflict(f'Operation cannot be fulfilled on poddisruptionbudgets.policy "{name}": the object '
                               "has been modified; please apply your changes to the latest version and try again")
            spec = _clone(new.get("spec") or {})
            self._validate_pdb(name, spec)
            stored = _clone(old)
            metadata = new.get("metadata") or {}
            stored["metadata"]["labels"] = dict(metadata.get("labels") or {})
            stored["metadata"]["annotations"] = dict(metadata.get("annotations") or {})
            if spec != old["spec"]:
                stored["spec"] = spec
                stored["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            stored["status"] = self._pdb_status(stored)
            return self._save("poddisruptionbudgets", (namespace, name), stored, "MODIFIED")

    def delete_pdb(self, namespace: str, name: str) -> dict:
        with self.lock:
            self.get_object("poddisruptionbudgets", namespace, name)
            return self._forget("poddisruptionbudgets", (namespace, name))

    def pdbs_for_pod(self, pod: dict) -> list[dict]:
        namespace = pod["metadata"]["namespace"]
        labels = pod["metadata"].get("labels") or {}
        with self.lock:
            # policy/v1: a selector {} covers the whole namespace, an absent one no pod.
            return [pdb for (pdb_namespace, _), pdb in self._objects["poddisruptionbudgets"].items()
                    if pdb_namespace == namespace and pdb["spec"].get("selector") is not None
                    and labels_match(label_selector_requirements(pdb["spec"].get("selector")), labels)]

    def _pods_matching(self, namespace: str, requirements: list[LabelRequirement]) -> list[dict]:
        equalities = [r for r in requirements if r.operator == "=" and len(r.values) == 1]
        if equalities:
            buckets = [self._pods_by_label.get((namespace, r.key, r.values[0]), {}) for r in equalities]
            keys = min(buckets, key=len)
        else:
            keys = self._pods_by_namespace.get(namespace, {})
        self.objects_visited += len(keys)
        return [self._pods[k] for k in keys if labels_match(requirements, self._pods[k]["metadata"]["labels"])]

    def _expected_scale(self, pods: list[dict]) -> int:
        """Sum of the desired replicas of the pods' controllers (unmanaged pods count once)."""
        expected, seen = 0, set()
        for pod in pods:
            reference = _controller_ref(pod)
            if reference is None:
                expected += 1
                continue
            if reference["uid"] in seen:
                continue
            seen.add(reference["uid"])
            owner = self._owner_objects.get(reference["uid"])
            if owner and owner[0] in ("replicasets", "statefulsets"):
                expected += self._objects[owner[0]][owner[1]]["spec"]["replicas"]
            elif owner and owner[0] == "daemonsets":
                expected += len(self._nodes)
            else:
                expected += sum(1 for p in pods if (_controller_ref(p) or {}).get("uid") == reference["uid"])
        return expected

    def _pdb_status(self, pdb: dict) -> dict:
        """The disruption controller's view of a PDB, computed from the pods it selects now."""
        namespace = pdb["metadata"]["namespace"]
        spec = pdb["spec"]
        selector = spec.get("selector")
        pods = [] if selector is None else self._pods_matching(namespace, label_selector_requirements(selector))
        if spec.get("maxUnavailable") is not None:
            expected = self._expected_scale(pods)
            desired = max(0, expected - _resolve_int_or_percent(spec["maxUnavailable"], expected))
        elif isinstance(spec.get("minAvailable"), str):
            expected = self._expected_scale(pods)
            desired = _resolve_int_or_percent(spec["minAvailable"], expected)
        else:
            expected = len(pods)
            desired = int(spec.get("minAvailable") or 0)
        healthy = sum(1 for pod in pods if pod_ready(pod) and not pod["metadata"].get("deletionTimestamp"))
        allowed = max(0, healthy - desired)
        generation = pdb["metadata"].get("generation", 1)
        previous = (pdb.get("status") or {}).get("conditions") or [{}]
        status_text = "True" if allowed > 0 else "False"
        transition = previous[0].get("lastTransitionTime") if previous[0].get("status") == status_text else None
        return {
            "observedGeneration": generation,
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "conditions": [{"type": "DisruptionAllowed", "status": status_text,
                            "reason": "SufficientPods" if allowed > 0 else "InsufficientPods", "message": "",
                            "observedGeneration": generation,
                            "lastTransitionTime": transition or rfc3339(self._now())}],
        }

    def _refresh_pdb(self, pdb: dict) -> dict:
        status = self._pdb_status(pdb)
        if status == pdb.get("status"):
            return pdb
        new = dict(pdb, metadata=dict(pdb["metadata"]), status=status)
        key = (pdb["metadata"]["namespace"], pdb["metadata"]["name"])
        return self._save("poddisruptionbudgets", key, new, "MODIFIED")

    def _refresh_pdbs(self) -> None:
        if not self._dirty_pdb_namespaces:
            return
        namespaces, self._dirty_pdb_namespaces = self._dirty_pdb_namespaces, set()
        for (namespace, _), pdb in list(self._objects["poddisruptionbudgets"].items()):
            if namespace in namespaces:
                self._refresh_pdb(pdb)

    # ------------------------------------------------------------------ events

    def record_event(self, *, reason, message, kind, name, namespace="default", type="Normal",
                     source: str = "aks-upgrader") -> None:
        """A core/v1 Event about an object; repeats of the same event bump its count, as Kubernetes does."""
        with self.lock:
            involved_namespace = "" if kind == "Node" else namespace
            # Kubernetes records node events with the node name as the involved object's uid.
            involved_uid = name if kind == "Node" else self._uid_of(kind, namespace, name)
            now = rfc3339(self._now())
            correlation = (namespace, kind, name, reason, message, type, source)
            existing_key = self._event_keys.get(correlation)
            events = self._objects["events"]
            if existing_key in events:
                event = _clone(events[existing_key])
                event["count"] += 1
                event["lastTimestamp"] = now
                events.move_to_end(existing_key)
                self._save("events", existing_key, event, "MODIFIED")
                return
            event_name = f"{name}.{self._random.getrandbits(64):016x}"
            event = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": self._metadata(event_name, namespace),
                "involvedObject": {"kind": kind, "name": name, "namespace": involved_namespace,
                                   "uid": involved_uid, "apiVersion": "v1" if kind in ("Node", "Pod") else ""},
                "reason": reason, "message": message, "type": type, "count": 1,
                "firstTimestamp": now, "lastTimestamp": now, "eventTime": None,
                "source": {"component": source}, "reportingComponent": source, "reportingInstance": "",
            }
            if not event["involvedObject"]["namespace"]:
                del event["involvedObject"]["namespace"]
            self._event_keys[correlation] = (namespace, event_name)
            self._event_correlations[(namespace, event_name)] = correlation
            self._save("events", (namespace, event_name), event, "ADDED")
            # Kubernetes expires events (1 h TTL); keeping the newest bounds memory the same way.
            while len(events) > EVENTS_KEPT:
                oldest_key, oldest = events.popitem(last=False)
                del self._event_keys[self._event_correlations.pop(oldest_key)]
                self._resource_version += 1
                self.changes.append((self._resource_version, "DELETED", "events", oldest))

    def _uid_of(self, kind: str, namespace: str, name: str) -> str:
        resource = {"Pod": "pods", "PodDisruptionBudget": "poddisruptionbudgets", "Deployment": "deployments",
                    "ReplicaSet": "replicasets", "DaemonSet": "daemonsets", "StatefulSet": "statefulsets",
                    "HorizontalPodAutoscaler": "horizontalpodautoscalers"}.get(kind)
        obj = self._objects[resource].get((namespace, name)) if resource else None
        return obj["metadata"]["uid"] if obj else ""

    def events(self, *, reason: str | None = None) -> list[dict]:
        with self.lock:
            return [e for e in self._objects["events"].values() if reason is None or e["reason"] == reason]

    # ------------------------------------------------------------------ generic access for the API

    def list_objects(self, resource: str, namespace: str | None = None) -> list[dict]:
        """Objects of a resource kind (optionally one namespace), in key order."""
        with self.lock:
            if resource == "nodes":
                return self.list_nodes()
            if resource == "pods":
                return self.list_pods(namespace=namespace)
            store = self._objects[resource]
            self.objects_visited += len(store)
            namespaced = RESOURCES[resource][2]
            keys = sorted(k for k in store if not namespaced or namespace is None or k[0] == namespace)
            return [self._with_controller_status(resource, store[k]) for k in keys]

    def get_object(self, resource: str, namespace: str | None, name: str) -> dict:
        """One object; raises ObjectNotFound."""
        with self.lock:
            key = (namespace, name) if RESOURCES[resource][2] else name
            self.objects_visited += 1
            obj = self._objects[resource].get(key)
            if obj is None:
                group = RESOURCES[resource][0].rpartition("/")[0]
                raise ObjectNotFound(f'{resource}{"." + group if group else ""} "{name}" not found')
            return self._with_controller_status(resource, obj)

    def _with_controller_status(self, resource: str, obj: dict) -> dict:
        """Workload controllers' status is derived from their pods when read."""
        if resource not in ("replicasets", "daemonsets", "deployments", "statefulsets"):
            return obj
        if resource == "deployments":
            replicasets = [rs for rs in self._objects["replicasets"].values()
                           if (_controller_ref(rs) or {}).get("uid") == obj["metadata"]["uid"]]
            pods = [self._pods[k] for rs in replicasets for k in self._pods_by_owner[rs["metadata"]["uid"]]]
        else:
            pods = [self._pods[k] for k in self._pods_by_owner.get(obj["metadata"]["uid"], ())]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in live if pod_ready(p))
        generation = obj["metadata"].get("generation", 1)
        if resource == "statefulsets":
            current, update = self._revisions[(obj["metadata"]["namespace"], obj["metadata"]["name"])]
            status = {"replicas": len(live), "readyReplicas": ready, "availableReplicas": ready,
                      "currentReplicas": len(live), "updatedReplicas": len(live) if current == update else 0,
                      "currentRevision": current, "updateRevision": update, "observedGeneration": generation,
                      "collisionCount": 0}
        elif resource == "daemonsets":
            scheduled = sum(1 for p in live if p["spec"].get("nodeName"))
            status = {"currentNumberScheduled": scheduled, "desiredNumberScheduled": len(self._nodes),
                      "numberAvailable": ready, "numberMisscheduled": 0, "numberReady": ready,
                      "updatedNumberScheduled": scheduled, "observedGeneration": generation}
        else:
            status = {"replicas": len(live), "readyReplicas": ready, "availableReplicas": ready,
                      "fullyLabeledReplicas": len(live), "observedGeneration": generation}
            if resource == "deployments":
                status.pop("fullyLabeledReplicas")
                status["updatedReplicas"] = len(live)
                status["unavailableReplicas"] = max(0, obj["spec"]["replicas"] - ready)
        return dict(obj, status=status)
