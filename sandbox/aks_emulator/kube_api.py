"""The Kubernetes API server of one emulated AKS cluster, as a Werkzeug WSGI application.

It serves what the `kubernetes` Python client and kubectl (get, describe, cordon, uncordon, drain,
label, delete) call: discovery (classic documents; clients that ask for aggregated discovery fall
back to them), nodes, pods (with the policy/v1 Eviction subresource), PodDisruptionBudgets,
namespaces, events (core/v1 and events.k8s.io/v1), apps/v1 workloads (read-only, but for the
autoscaling/v1 Scale subresource of Deployments, ReplicaSets and StatefulSets), PersistentVolumeClaims
(read-only), autoscaling/v2 HorizontalPodAutoscalers (read, patch, update), label and field
selectors, limit/continue paging over consistent snapshots, watches, the meta.k8s.io Table format
kubectl prints from, and Kubernetes-shaped Status errors. Every request needs the bearer token.
All state lives in `KubeCluster`; this module only translates HTTP.

Serve it over TLS (`make_serving_certificate`): kubectl and client-go send kubeconfig credentials
only to https servers, exactly as they do to a real AKS API server with its cluster CA.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
import json
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from werkzeug.wrappers import Request, Response

from sandbox.aks_emulator import openapi
from sandbox.aks_emulator.kube import (
    EVICTION_BLOCKED_MESSAGE,
    Conflict,
    DisruptionBlocked,
    EvictionNotSupported,
    Invalid,
    KubeCluster,
    LabelRequirement,
    ObjectNotFound,
    PodNotFound,
    ResourceVersionTooOld,
    labels_match,
    parse_label_selector,
    parse_rfc3339,
)
from sandbox.serving import LoopbackServer

JSON = "application/json"
REJECTED_PATCH = "the server rejected our request due to an error in our request"
SNAPSHOTS_KEPT = 32
# Stored objects (a change always bumps resourceVersion) whose JSON is kept between list requests,
# so that serving a 100,000-pod list costs the emulator a join, not a json.dumps of every pod.
ENCODED_CACHED = frozenset({"pods", "nodes", "poddisruptionbudgets"})
ENCODED_KEPT = 400_000
WATCH_POLL_SECONDS = 0.05
WATCH_DEFAULT_SECONDS = 60
EXPIRED_CONTINUE_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)


class ApiError(Exception):
    """Becomes a Kubernetes Status response."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


def status_body(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def human_duration(seconds: float) -> str:
    """Kubernetes' duration.HumanDuration, as the AGE and LAST SEEN columns show it."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return f"{minutes}m" if whole % 60 == 0 else f"{minutes}m{whole % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


# ---------------------------------------------------------------------------------------------
# TLS: a cluster CA and a serving certificate for the loopback address, like AKS' cluster CA


@dataclass(frozen=True)
class ServingCertificate:
    """PEM material for one API server: the CA goes into kubeconfigs, the rest into the server."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def ca_data(self) -> str:
        """The kubeconfig's `certificate-authority-data`."""
        return base64.b64encode(self.ca_pem).decode()

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context for `werkzeug.serving.make_server(..., ssl_context=...)`."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as folder:
            cert_file, key_file = Path(folder, "tls.crt"), Path(folder, "tls.key")
            cert_file.write_bytes(self.cert_pem + self.ca_pem)
            key_file.write_bytes(self.key_pem)
            context.load_cert_chain(cert_file, key_file)
        return context


def make_serving_certificate(cluster_name: str = "aks-emulator",
                             hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> ServingCertificate:
    """A fresh cluster CA and a certificate signed by it for `hosts` (IP and DNS SANs)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_cert = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster_name}-apiserver")]))
                   .issuer_name(ca_name).public_key(server_key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=365))
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .sign(ca_key, hashes.SHA256()))
    return ServingCertificate(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=server_cert.public_bytes(serialization.Encoding.PEM),
        key_pem=server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))


# ---------------------------------------------------------------------------------------------
# field selectors


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    value: str
    negated: bool

    def matches(self, obj: dict) -> bool:
        return (field_value(obj, self.path) == self.value) != self.negated


# Fields Kubernetes omits when false but matches as "false" in field selectors.
BOOLEAN_FIELDS = frozenset({"spec.unschedulable"})


def field_value(obj: dict, path: str) -> str:
    value: object = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool) or path in BOOLEAN_FIELDS:
        return "true" if value else "false"
    return "" if value is None else str(value)


def parse_field_selector(text: str, supported: frozenset[str]) -> list[FieldRequirement]:
    requirements = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        for operator in ("!=", "==", "="):
            path, found, value = term.partition(operator)
            if found:
                break
        else:
            raise ApiError(400, "BadRequest", f'invalid selector: \'{text}\'; can\'t understand \'{term}\'')
        path = path.strip()
        if path not in supported:
            raise ApiError(400, "BadRequest", f"field label not supported: {path}")
        requirements.append(FieldRequirement(path, value.strip(), operator == "!="))
    return requirements


def equal_fields(requirements: list[FieldRequirement]) -> dict[str, str]:
    return {r.path: r.value for r in requirements if not r.negated}


def equal_labels(requirements: list[LabelRequirement]) -> dict[str, str]:
    return {r.key: r.values[0] for r in requirements if r.operator == "=" and len(r.values) == 1}


# ---------------------------------------------------------------------------------------------
# Table columns (what kubectl prints)


def _column(name: str, kind: str = "string", description: str = "", priority: int = 0, fmt: str = "") -> dict:
    return {"name": name, "type": kind, "format": fmt, "description": description, "priority": priority}


NAME_COLUMN = _column("Name", fmt="name", description="Name must be unique within a namespace.")
AGE_COLUMN = _column("Age", description="CreationTimestamp is a timestamp representing the server time when "
                     "this object was created.")


def _node_roles(node: dict) -> str:
    labels = node["metadata"].get("labels") or {}
    roles = {key.split("/", 1)[1] for key in labels if key.startswith("node-role.kubernetes.io/")}
    if labels.get("kubernetes.io/role"):
        roles.add(labels["kubernetes.io/role"])
    return ",".join(sorted(roles)) or "<none>"


def _node_status(node: dict) -> str:
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    text = "Ready" if ready else "NotReady"
    return text + ",SchedulingDisabled" if node["spec"].get("unschedulable") else text


def _pod_status(pod: dict) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for status in pod["status"].get("containerStatuses") or ():
        waiting = status.get("state", {}).get("waiting")
        if waiting and waiting.get("reason"):
            return waiting["reason"]
    return pod["status"].get("phase", "Pending")


@dataclass
class Resource:
    """How one resource kind is served."""

    name: str
    group: str
    version: str
    kind: str
    namespaced: bool
    verbs: list[str]
    short_names: list[str] = field(default_factory=list)
    field_labels: frozenset[str] = frozenset({"metadata.name", "metadata.namespace"})
    columns: list[dict] = field(default_factory=lambda: [NAME_COLUMN, AGE_COLUMN])
    cells: Callable[[dict, Callable[[str | None], str]], list] = lambda obj, age: [obj["metadata"]["name"],
                                                                                   age(obj["metadata"].get(
                                                                                       "creationTimestamp"))]
    model_resource: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def _pod_cells(pod: dict, age: Callable[[str | None], str]) -> list:
    statuses = pod["status"].get("containerStatuses") or []
    restarts = sum(s.get("restartCount", 0) for s in statuses)
    restart_text = str(restarts)
    last = [s.get("lastState", {}).get("terminated", {}).get("finishedAt") for s in statuses]
    last = [t for t in last if t]
    if restarts and last:
        restart_text = f"{restarts} ({age(max(last))} ago)"
    ready = sum(1 for s in statuses if s.get("ready"))
    return [pod["metadata"]["name"], f"{ready}/{len(pod['spec']['containers'])}", _pod_status(pod), restart_text,
            age(pod["metadata"].get("creationTimestamp")), pod["status"].get("podIP") or "<none>",
            pod["spec"].get("nodeName") or "<none>", "<none>", "<none>"]


def _node_cells(node: dict, age: Callable[[str | None], str]) -> list:
    info = node["status"]["nodeInfo"]
    internal = [a["address"] for a in node["status"].get("addresses", ()) if a["type"] == "InternalIP"]
    return [node["metadata"]["name"], _node_status(node), _node_roles(node),
            age(node["metadata"].get("creationTimestamp")), info["kubeletVersion"],
            internal[0] if internal else "<none>", "<none>", info["osImage"], info["kernelVersion"],
            info["containerRuntimeVersion"]]


def _pdb_cells(pdb: dict, age: Callable[[str | None], str]) -> list:
    spec = pdb["spec"]
    return [pdb["metadata"]["name"], str(spec["minAvailable"]) if spec.get("minAvailable") is not None else "N/A",
            str(spec["maxUnavailable"]) if spec.get("maxUnavailable") is not None else "N/A",
            pdb["status"].get("disruptionsAllowed", 0), age(pdb["metadata"].get("creationTimestamp"))]


def _event_cells(event: dict, age: Callable[[str | None], str]) -> list:
    involved = event["involvedObject"]
    return [age(event.get("lastTimestamp")), event["type"], event["reason"],
            f"{involved['kind'].lower()}/{involved['name']}", event["message"]]


def _deployment_cells(deployment: dict, age: Callable[[str | None], str]) -> list:
    status = deployment["status"]
    return [deployment["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{deployment['spec']['replicas']}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0),
            age(deployment["metadata"].get("creationTimestamp"))]


def _replicaset_cells(replicaset: dict, age: Callable[[str | None], str]) -> list:
    status = replicaset["status"]
    return [replicaset["metadata"]["name"], replicaset["spec"]["replicas"], status.get("replicas", 0),
            status.get("readyReplicas", 0), age(replicaset["metadata"].get("creationTimestamp"))]


def _daemonset_cells(daemonset: dict, age: Callable[[str | None], str]) -> list:
    status = daemonset["status"]
    selector = daemonset["spec"]["template"]["spec"].get("nodeSelector") or {}
    return [daemonset["metadata"]["name"], status["desiredNumberScheduled"], status["currentNumberScheduled"],
            status["numberReady"], status["updatedNumberScheduled"], status["numberAvailable"],
            ",".join(f"{k}={v}" for k, v in selector.items()) or "<none>",
            age(daemonset["metadata"].get("creationTimestamp"))]


def _statefulset_cells(statefulset: dict, age: Callable[[str | None], str]) -> list:
    return [statefulset["metadata"]["name"],
            f"{statefulset['status'].get('readyReplicas', 0)}/{statefulset['spec']['replicas']}",
            age(statefulset["metadata"].get("creationTimestamp"))]


def _claim_cells(claim: dict, age: Callable[[str | None], str]) -> list:
    spec, status = claim["spec"], claim["status"]
    return [claim["metadata"]["name"], status.get("phase", ""), spec.get("volumeName", ""),
            (status.get("capacity") or {}).get("storage", ""),
            ",".join({"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX"}.get(m, m)
                     for m in status.get("accessModes") or ()),
            spec.get("storageClassName", ""), "<unset>", age(claim["metadata"].get("creationTimestamp"))]


def _hpa_cells(hpa: dict, age: Callable[[str | None], str]) -> list:
    spec, status = hpa["spec"], hpa["status"]
    target = spec["scaleTargetRef"]
    return [hpa["metadata"]["name"], f"{target['kind']}/{target['name']}", "cpu: <unknown>/80%",
            spec.get("minReplicas", 1), spec["maxReplicas"], status.get("currentReplicas", 0),
            age(hpa["metadata"].get("creationTimestamp"))]


def _namespace_cells(namespace: dict, age: Callable[[str | None], str]) -> list:
    return [namespace["metadata"]["name"], namespace["status"]["phase"],
            age(namespace["metadata"].get("creationTimestamp"))]


READ = ["get", "list", "watch"]
RESOURCE_DEFS = [
    Resource("nodes", "", "v1", "Node", False, [*READ, "patch", "update", "delete"], ["no"],
             frozenset({"metadata.name", "spec.unschedulable"}),
             [NAME_COLUMN, _column("Status", description="The status of the node"),
              _column("Roles", description="The roles of the node"), AGE_COLUMN,
              _column("Version", description="Kubelet Version reported by the node."),
              _column("Internal-IP", priority=1, description="List of internal IPs for the node."),
              _column("External-IP", priority=1, description="List of external IPs for the node."),
              _column("OS-Image", priority=1, description="OS Image reported by the node from /etc/os-release"),
              _column("Kernel-Version", priority=1, description="Kernel Version reported by the node"),
              _column("Container-Runtime", priority=1, description="Container Runtime Version reported by the node")],
             _node_cells),
    Resource("pods", "", "v1", "Pod", True, [*READ, "delete"], ["po"],
             frozenset({"metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
                        "spec.schedulerName", "spec.serviceAccountName", "status.phase", "status.podIP",
                        "status.nominatedNodeName"}),
             [NAME_COLUMN, _column("Ready", description="The aggregate readiness state of this pod for accepting "
                                   "traffic."),
              _column("Status", description="The aggregate status of the containers in this pod."),
              _column("Restarts", description="The number of times the containers in this pod have been restarted"
                      " and when the last container in this pod has restarted."),
              AGE_COLUMN, _column("IP", priority=1, description="IP address allocated to the pod."),
              _column("Node", priority=1, description="Name of the node the pod is assigned to."),
              _column("Nominated Node", priority=1, description="Name of the node the pod is nominated to."),
              _column("Readiness Gates", priority=1, description="All readiness gates of the pod.")],
             _pod_cells),
    Resource("namespaces", "", "v1", "Namespace", False, READ, ["ns"],
             frozenset({"metadata.name", "status.phase"}),
             [NAME_COLUMN, _column("Status", description="The status of the namespace"), AGE_COLUMN],
             _namespace_cells),
    Resource("events", "", "v1", "Event", True, READ, ["ev"],
             frozenset({"metadata.name", "metadata.namespace", "involvedObject.kind", "involvedObject.namespace",
                        "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion",
                        "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                        "reportingComponent", "source", "type"}),
             [_column("Last Seen"), _column("Type"), _column("Reason"), _column("Object"), _column("Message")],
             _event_cells),
    Resource("poddisruptionbudgets", "policy", "v1", "PodDisruptionBudget", True,
             [*READ, "create", "patch", "update", "delete"], ["pdb"],
             columns=[NAME_COLUMN, _column("Min Available"), _column("Max Unavailable"),
                      _column("Allowed Disruptions", "integer"), AGE_COLUMN],
             cells=_pdb_cells),
    Resource("deployments", "apps", "v1", "Deployment", True, READ, ["deploy"],
             columns=[NAME_COLUMN, _column("Ready"), _column("Up-to-date", "integer"),
                      _column("Available", "integer"), AGE_COLUMN], cells=_deployment_cells),
    Resource("replicasets", "apps", "v1", "ReplicaSet", True, READ, ["rs"],
             columns=[NAME_COLUMN, _column("Desired", "integer"), _column("Current", "integer"),
                      _column("Ready", "integer"), AGE_COLUMN], cells=_replicaset_cells),
    Resource("daemonsets", "apps", "v1", "DaemonSet", True, READ, ["ds"],
             columns=[NAME_COLUMN, _column("Desired", "integer"), _column("Current", "integer"),
                      _column("Ready", "integer"), _column("Up-to-date", "integer"), _column("Available", "integer"),
                      _column("Node Selector"), AGE_COLUMN], cells=_daemonset_cells),
    Resource("statefulsets", "apps", "v1", "StatefulSet", True, READ, ["sts"],
             columns=[NAME_COLUMN, _column("Ready"), AGE_COLUMN], cells=_statefulset_cells),
    Resource("persistentvolumeclaims", "", "v1", "PersistentVolumeClaim", True, READ, ["pvc"],
             columns=[NAME_COLUMN, _column("Status"), _column("Volume"), _column("Capacity"),
                      _column("Access Modes"), _column("StorageClass"), _column("VolumeAttributesClass"),
                      AGE_COLUMN], cells=_claim_cells),
    Resource("horizontalpodautoscalers", "autoscaling", "v2", "HorizontalPodAutoscaler", True,
             [*READ, "patch", "update"], ["hpa"],
             columns=[NAME_COLUMN, _column("Reference"), _column("Targets"), _column("MinPods", "integer"),
                      _column("MaxPods", "integer"), _column("Replicas", "integer"), AGE_COLUMN], cells=_hpa_cells),
    Resource("events", "events.k8s.io", "v1", "Event", True, READ, ["ev"],
             frozenset({"metadata.name", "metadata.namespace", "regarding.kind", "regarding.namespace",
                        "regarding.name", "regarding.uid", "reason", "reportingController", "type"}),
             [_column("Last Seen"), _column("Type"), _column("Reason"), _column("Object"), _column("Message")],
             lambda event, age: [age(event.get("deprecatedLastTimestamp")), event["type"], event["reason"],
                                 f"{event['regarding']['kind'].lower()}/{event['regarding']['name']}",
                                 event["note"]]),
]
SERVED = {(r.group, r.version, r.name): r for r in RESOURCE_DEFS}
SCALE = Resource("scale", "autoscaling", "v1", "Scale", True, [])  # the subresource's kind, for its errors
for _resource in RESOURCE_DEFS:
    _resource.model_resource = _resource.name
GROUPS = ["apps", "autoscaling", "events.k8s.io", "policy"]


def events_v1(event: dict) -> dict:
    """A core/v1 Event as events.k8s.io/v1 serves it."""
    first = event.get("firstTimestamp")
    return {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": event["metadata"],
        "eventTime": (first[:-1] + ".000000Z") if first else None, "reason": event["reason"],
        "note": event["message"], "type": event["type"], "regarding": event["involvedObject"],
        "action": event["reason"], "reportingController": event["reportingComponent"],
        "reportingInstance": event["reportingInstance"] or event["reportingComponent"],
        "deprecatedCount": event["count"], "deprecatedFirstTimestamp": first,
        "deprecatedLastTimestamp": event.get("lastTimestamp"), "deprecatedSource": event["source"],
    }


# ---------------------------------------------------------------------------------------------
# patches


def merge_patch(target: object, patch: object, *, strategic: bool = False) -> object:
    """RFC 7386 JSON merge patch; with `strategic`, Kubernetes' directive keys ($patch,
    $setElementOrder/..., $retainKeys) are honoured or dropped (lists are replaced, as for the
    fields of nodes and PDBs, which carry no merge keys)."""
    if not isinstance(patch, dict):
        return patch
    if strategic and patch.get("$patch") == "delete":
        return None
    if strategic and patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if not k.startswith("$")}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if strategic and key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        merged = merge_patch(result.get(key), value, strategic=strategic)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"json patch path {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve_parent(document: object, parts: list[str]) -> tuple[object, str]:
    node = document
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ApiError(422, "Invalid", f"json patch: path /{'/'.join(parts)} does not exist")
    return node, parts[-1]


def json_patch(document: dict, operations: list) -> dict:
    """RFC 6902 JSON patch: add, remove, replace, test, move, copy."""
    document = json.loads(json.dumps(document))
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "json patch must be a list of operations")
    for operation in operations:
        op, parts = operation.get("op"), _pointer(operation.get("path", ""))
        if not parts:
            raise ApiError(422, "Invalid", "json patch on the whole document is not supported")
        if op in ("move", "copy"):
            source_parent, source_key = _resolve_parent(document, _pointer(operation.get("from", "")))
            value = _get_child(source_parent, source_key, operation)
            if op == "move":
                _remove_child(source_parent, source_key)
            op, operation = "add", dict(operation, value=json.loads(json.dumps(value)))
        parent, key = _resolve_parent(document, parts)
        if op == "test":
            try:
                current = _get_child(parent, key, operation)
            except ApiError as error:  # the API server names no path for a test of a missing one
                raise ApiError(422, "Invalid", REJECTED_PATCH) from error
            if current != operation.get("value"):
                raise ApiError(422, "Invalid", f"{REJECTED_PATCH}: "
                               f"testing value {operation.get('path')} failed")
        elif op == "remove":
            _get_child(parent, key, operation)
            _remove_child(parent, key)
        elif op in ("add", "replace"):
            if op == "replace":
                _get_child(parent, key, operation)
            if isinstance(parent, list):
                index = len(parent) if key == "-" else int(key)
                if op == "add":
                    parent.insert(index, operation.get("value"))
                else:
                    parent[index] = operation.get("value")
            elif isinstance(parent, dict):
                parent[key] = operation.get("value")
            else:
                raise ApiError(422, "Invalid", f"json patch: cannot {op} at {operation.get('path')}")
        else:
            raise ApiError(422, "Invalid", f"json patch: unsupported operation {op!r}")
    return document


def _get_child(parent: object, key: str, operation: dict) -> object:
    if isinstance(parent, dict) and key in parent:
        return parent[key]
    if isinstance(parent, list) and key.isdigit() and int(key) < len(parent):
        return parent[int(key)]
    raise ApiError(422, "Invalid", f"json patch: path {operation.get('path')} does not exist")


def _remove_child(parent: object, key: str) -> None:
    if isinstance(parent, dict):
        del parent[key]
    else:
        del parent[int(key)]


# ---------------------------------------------------------------------------------------------


class KubeApi:
    """WSGI app serving one `KubeCluster`."""

    def __init__(self, cluster: KubeCluster, token: str) -> None:
        self.cluster = cluster
        self.token = token
        self._snapshots: OrderedDict[str, tuple[list[dict], int]] = OrderedDict()
        self._snapshot_ids = itertools.count(1)
        self._snapshot_lock = threading.Lock()
        self._encoded: dict[tuple[str, str], str] = {}

    def __call__(self, environ: dict, start_response: Callable) -> Iterator[bytes]:
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except ApiError as error:
            response = self.json(status_body(error.code, error.reason, error.message, error.details), error.code)
        return response(environ, start_response)

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def json(body: object, status: int = 200) -> Response:
        return Response(json.dumps(body, separators=(",", ":")), status=status, content_type=JSON)

    def age(self, timestamp: str | None) -> str:
        if not timestamp:
            return "<unknown>"
        return human_duration((self.cluster.clock.now() - parse_rfc3339(timestamp)).total_seconds())

    @staticmethod
    def body(request: Request) -> object:
        try:
            return json.loads(request.get_data() or b"null")
        except ValueError as error:
            raise ApiError(400, "BadRequest", f"the request body is not valid JSON: {error}") from error

    def dispatch(self, request: Request) -> Response:
        if request.headers.get("Authorization", "") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        # Handlers tick too, so state is current even between the server's background ticks.
        self.cluster.tick()
        parts = [p for p in request.path.split("/") if p]
        if parts == ["version"]:
            return self.json(self.version())
        if parts in (["healthz"], ["livez"], ["readyz"]):
            return Response("ok", content_type="text/plain")
        if parts and parts[0] == "openapi":
            return self.openapi(request, parts[1:])
        if parts and parts[0] == "api":
            if len(parts) == 1:
                return self.json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})
            group, version, rest = "", parts[1], parts[2:]
        elif parts and parts[0] == "apis":
            if len(parts) == 1:
                return self.json({"kind": "APIGroupList", "apiVersion": "v1",
                                  "groups": [self.api_group(g) for g in GROUPS]})
            if len(parts) == 2:
                if parts[1] not in GROUPS:
                    raise self.not_found()
                return self.json(dict(self.api_group(parts[1]), kind="APIGroup", apiVersion="v1"))
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise self.not_found()
        if not rest:
            return self.resource_list(group, version)
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and (group, version, rest[2]) in SERVED:
            namespace, rest = rest[1], rest[2:]
        resource = SERVED.get((group, version, rest[0]))
        if resource is None or len(rest) > 3:
            raise self.not_found()
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if not resource.namespaced and namespace is not None:
            raise self.not_found()
        return self.route(request, resource, namespace, name, subresource)

    @staticmethod
    def not_found() -> ApiError:
        return ApiError(404, "NotFound", "the server could not find the requested resource",
                        {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})

    def route(self, request: Request, resource: Resource, namespace: str | None, name: str | None,
              subresource: str | None) -> Response:
        method = request.method
        if subresource == "eviction" and resource.name == "pods" and method == "POST":
            return self.evict(request, namespace, name)
        if subresource == "scale" and resource.name in ("deployments", "replicasets", "statefulsets") and method in (
                "GET", "PUT", "PATCH"):
            return self.scale(request, resource, namespace, name)
        if subresource is not None:
            raise self.not_found()
        if name is None and method == "GET":
            if request.args.get("watch") in ("true", "1"):
                return self.watch(request, resource, namespace)
            return self.list(request, resource, namespace)
        if name is None and method == "POST" and resource.name == "poddisruptionbudgets":
            return self.create_pdb(request, namespace)
        if name is not None and method == "GET":
            return self.respond_object(request, resource, self.get(resource, namespace, name))
        if name is not None and method in ("PATCH", "PUT") and resource.name in (
                "nodes", "poddisruptionbudgets", "horizontalpodautoscalers"):
            return self.update(request, resource, namespace, name)
        if name is not None and method == "DELETE" and resource.name in ("pods", "nodes", "poddisruptionbudgets"):
            return self.delete(request, resource, namespace, name)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    # ------------------------------------------------------------------ discovery

    def version(self) -> dict:
        version = self.cluster.kubernetes_version
        major, minor, _ = version.split(".", 2)
        return {"major": major, "minor": minor, "emulationMajor": major, "emulationMinor": minor,
                "minCompatibilityMajor": major, "minCompatibilityMinor": str(int(minor) - 1),
                "gitVersion": f"v{version}",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.2", "compiler": "gc",
                "platform": "linux/amd64"}

    def openapi(self, request: Request, rest: list[str]) -> Response:
        """The real API server's OpenAPI documents, trimmed to what is served (``openapi.py``)."""
        if rest == ["v2"]:
            if not _accepts_json(request):
                raise ApiError(406, "NotAcceptable", "only application/json is served for /openapi/v2 here")
            return Response(openapi.v2_document(), content_type=JSON)
        if rest == ["v3"]:
            return self.json(openapi.v3_index())
        document = openapi.v3_document("/".join(rest[1:])) if rest[:1] == ["v3"] else None
        if document is None:
            raise self.not_found()
        return Response(document, content_type=JSON)

    @staticmethod
    def api_group(group: str) -> dict:
        served = next(r.version for r in RESOURCE_DEFS if r.group == group)
        version = {"groupVersion": f"{group}/{served}", "version": served}
        return {"name": group, "versions": [version], "preferredVersion": version}

    def resource_list(self, group: str, version: str) -> Response:
        served = [r for r in RESOURCE_DEFS if r.group == group and r.version == version]
        if not served:
            raise self.not_found()
        resources = []
        for resource in served:
            entry = {"name": resource.name, "singularName": resource.kind.lower(), "namespaced": resource.namespaced,
                     "kind": resource.kind, "verbs": resource.verbs, "shortNames": resource.short_names}
            if resource.name == "pods":
                entry["categories"] = ["all"]
            resources.append(entry)
            if resource.name == "pods":
                # kubectl drain discovers the Eviction API through this subresource entry.
                resources.append({"name": "pods/eviction", "singularName": "", "namespaced": True, "group": "policy",
                                  "version": "v1", "kind": "Eviction", "verbs": ["create"]})
        return self.json({"kind": "APIResourceList", "apiVersion": "v1",
                          "groupVersion": f"{group}/{version}" if group else version, "resources": resources})

    # ------------------------------------------------------------------ reads

    def present(self, resource: Resource, obj: dict) -> dict:
        """The object as this API version serves it."""
        return events_v1(obj) if resource.group == "events.k8s.io" else obj

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict:
        try:
            if resource.name == "pods":
                pod = self.cluster.get_pod(namespace, name)
                if pod is None:
                    raise ObjectNotFound(f'pods "{name}" not found')
                return pod
            return self.present(resource, self.cluster.get_object(resource.model_resource, namespace, name))
        except ObjectNotFound as error:
            raise ApiError(404, "NotFound", str(error), {"name": name, "kind": resource.name,
                                                          **({"group": resource.group} if resource.group else {})}
                           ) from error

    def select(self, request: Request, resource: Resource, namespace: str | None) -> list[dict]:
        """Objects matching the namespace, field and label selectors, in key order, using indexes."""
        try:
            labels = parse_label_selector(request.args.get("labelSelector", ""))
        except ValueError as error:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {error}") from error
        fields = parse_field_selector(request.args.get("fieldSelector", ""), resource.field_labels)
        exact = equal_fields(fields)
        if resource.name == "nodes":
            unschedulable = exact.get("spec.unschedulable")
            candidates = self.cluster.list_nodes(
                name=exact.get("metadata.name"),
                unschedulable=None if unschedulable is None else unschedulable == "true",
                labels_equal=equal_labels(labels) or None)
        elif resource.name == "pods":
            namespace = namespace if namespace is not None else exact.get("metadata.namespace")
            candidates = self.cluster.list_pods(namespace=namespace, node_name=exact.get("spec.nodeName"),
                                                name=exact.get("metadata.name") if namespace is not None else None)
        else:
            candidates = [self.present(resource, o)
                          for o in self.cluster.list_objects(resource.model_resource, namespace)]
        return [obj for obj in candidates
                if labels_match(labels, obj["metadata"].get("labels")) and all(f.matches(obj) for f in fields)]

    def list(self, request: Request, resource: Resource, namespace: str | None) -> Response:
        token = request.args.get("continue")
        limit = int(request.args.get("limit") or 0)
        if token:
            items, resource_version, offset = self.resume(token)
        else:
            with self.cluster.lock:
                items, resource_version, offset = self.select(request, resource, namespace), \
                    self.cluster.resource_version, 0
        metadata: dict = {"resourceVersion": str(resource_version)}
        page = items[offset:offset + limit] if limit > 0 else items[offset:]
        if limit > 0 and offset + limit < len(items):
            metadata["continue"] = self.remember(items, resource_version, offset + limit)
            if not (request.args.get("labelSelector") or request.args.get("fieldSelector")):
                # As the API server: a filtered list cannot know how many items remain.
                metadata["remainingItemCount"] = len(items) - offset - limit
        if self.wants_table(request):
            return self.json(self.table(request, resource, page, metadata))
        head = json.dumps({"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                           "metadata": metadata}, separators=(",", ":"))
        items = ",".join(self.encoded(obj) for obj in page) if resource.name in ENCODED_CACHED else \
            ",".join(json.dumps(obj, separators=(",", ":")) for obj in page)
        return Response(f'{head[:-1]},"items":[{items}]}}', content_type=JSON)

    def encoded(self, obj: dict) -> str:
        """The object's JSON, encoded once per resourceVersion."""
        key = (obj["metadata"]["uid"], obj["metadata"]["resourceVersion"])
        text = self._encoded.get(key)
        if text is None:
            if len(self._encoded) >= ENCODED_KEPT:
                self._encoded.clear()
            text = self._encoded[key] = json.dumps(obj, separators=(",", ":"))
        return text

    def remember(self, items: list[dict], resource_version: int, offset: int) -> str:
        """Keep the list as a snapshot, so later pages are consistent with the first (as etcd's are)."""
        with self._snapshot_lock:
            snapshot_id = str(next(self._snapshot_ids))
            self._snapshots[snapshot_id] = (items, resource_version)
            while len(self._snapshots) > SNAPSHOTS_KEPT:
                self._snapshots.popitem(last=False)
        payload = json.dumps({"snapshot": snapshot_id, "offset": offset, "rv": resource_version})
        return base64.urlsafe_b64encode(payload.encode()).decode()

    def resume(self, token: str) -> tuple[list[dict], int, int]:
        try:
            payload = json.loads(base64.urlsafe_b64decode(token.encode()))
            snapshot_id, offset = str(payload["snapshot"]), int(payload["offset"])
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            raise ApiError(400, "BadRequest", f"continue key is not valid: {error}") from error
        with self._snapshot_lock:
            snapshot = self._snapshots.get(snapshot_id)
        if snapshot is None:
            raise ApiError(410, "Expired", EXPIRED_CONTINUE_MESSAGE)
        return snapshot[0], snapshot[1], offset

    @staticmethod
    def wants_table(request: Request) -> bool:
        return "as=Table" in request.headers.get("Accept", "")

    def table(self, request: Request, resource: Resource, objects: list[dict], metadata: dict) -> dict:
        accept = request.headers.get("Accept", "")
        table_version = "meta.k8s.io/v1" if "as=Table;v=v1;" in accept.replace(" ", "") + ";" else \
            "meta.k8s.io/v1beta1"
        include = request.args.get("includeObject", "Metadata")
        rows = []
        for obj in objects:
            row = {"cells": resource.cells(obj, self.age)}
            if include == "Object":
                row["object"] = dict(obj, kind=resource.kind, apiVersion=resource.api_version)
            elif include != "None":
                row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                 "metadata": obj["metadata"]}
            rows.append(row)
        return {"kind": "Table", "apiVersion": table_version, "metadata": metadata,
                "columnDefinitions": resource.columns, "rows": rows}

    def respond_object(self, request: Request, resource: Resource, obj: dict, status: int = 200) -> Response:
        if self.wants_table(request):
            return self.json(self.table(request, resource, [obj], {"resourceVersion": obj["metadata"].get(
                "resourceVersion", "")}), status)
        return self.json(dict(obj, kind=resource.kind, apiVersion=resource.api_version), status)

    # ------------------------------------------------------------------ watch

    def watch(self, request: Request, resource: Resource, namespace: str | None) -> Response:
        """Newline-delimited watch events: the current objects as ADDED when no resourceVersion is
        given, then every change until timeoutSeconds (real seconds) pass or the client leaves."""
        requested = request.args.get("resourceVersion", "")
        timeout = float(request.args.get("timeoutSeconds") or WATCH_DEFAULT_SECONDS)
        as_table = self.wants_table(request)
        with self.cluster.lock:
            initial = self.select(request, resource, namespace) if requested in ("", "0") else []
            since = self.cluster.resource_version if requested in ("", "0") else int(requested)
            try:
                self.cluster.changes_since(since)
            except ResourceVersionTooOld as error:
                raise ApiError(410, "Expired", f"too old resource version: {since} "
                               f"({self.cluster.changes[0][0]})") from error
        labels = parse_label_selector(request.args.get("labelSelector", ""))
        fields = parse_field_selector(request.args.get("fieldSelector", ""), resource.field_labels)

        def matches(obj: dict) -> bool:
            if namespace is not None and obj["metadata"].get("namespace") != namespace:
                return False
            return labels_match(labels, obj["metadata"].get("labels")) and all(f.matches(obj) for f in fields)

        def line(kind: str, obj: dict) -> bytes:
            shown = self.table(request, resource, [obj], {}) if as_table else \
                dict(obj, kind=resource.kind, apiVersion=resource.api_version)
            return (json.dumps({"type": kind, "object": shown}, separators=(",", ":")) + "\n").encode()

        def stream() -> Iterator[bytes]:
            last = since
            for obj in initial:
                yield line("ADDED", obj)
            if request.args.get("sendInitialEvents") == "true":
                # Streaming lists (client-go's WatchListClient) wait for this bookmark to end the list.
                bookmark = {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": {
                    "resourceVersion": str(since), "annotations": {"k8s.io/initial-events-end": "true"}}}
                yield (json.dumps({"type": "BOOKMARK", "object": bookmark}, separators=(",", ":")) + "\n").encode()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.cluster.tick()
                try:
                    changes = self.cluster.changes_since(last)
                except ResourceVersionTooOld:
                    yield line("ERROR", status_body(410, "Expired", f"too old resource version: {last}"))
                    return
                for resource_version, kind, model_resource, obj in changes:
                    last = resource_version
                    if model_resource == resource.model_resource and matches(self.present(resource, obj)):
                        yield line(kind, self.present(resource, obj))
                time.sleep(WATCH_POLL_SECONDS)

        return Response(stream(), content_type=JSON, direct_passthrough=True)

    # ------------------------------------------------------------------ writes

    def evict(self, request: Request, namespace: str, name: str) -> Response:
        eviction = self.body(request) or {}
        if not isinstance(eviction, dict):
            raise ApiError(400, "BadRequest", "the request body must be an Eviction object")
        named = (eviction.get("metadata") or {}).get("name")
        if named and named != name:
            raise ApiError(400, "BadRequest", "name in URL does not match name in Eviction object")
        options = eviction.get("deleteOptions") or {}
        if options.get("dryRun") or request.args.get("dryRun"):
            raise ApiError(400, "BadRequest", "dry-run evictions are not supported by this server")
        try:
            self.cluster.evict(namespace, name, grace_seconds=options.get("gracePeriodSeconds"),
                               uid=(options.get("preconditions") or {}).get("uid"))
        except PodNotFound as error:
            raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}) from error
        except DisruptionBlocked as error:
            raise ApiError(429, "TooManyRequests", EVICTION_BLOCKED_MESSAGE,
                           {"causes": [{"reason": "DisruptionBudget", "message": error.cause}]}) from error
        except EvictionNotSupported as error:
            raise ApiError(500, "InternalError", str(error)) from error
        except Conflict as error:
            raise ApiError(409, "Conflict", str(error), {"name": name, "kind": "pods"}) from error
        return self.json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
                         201)

    def create_pdb(self, request: Request, namespace: str | None) -> Response:
        resource = SERVED[("policy", "v1", "poddisruptionbudgets")]
        pdb = self.body(request)
        if not isinstance(pdb, dict):
            raise ApiError(400, "BadRequest", "the request body must be a PodDisruptionBudget object")
        metadata = dict(pdb.get("metadata") or {})
        if namespace is None or metadata.get("namespace", namespace) != namespace:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                           "sent on the request")
        metadata["namespace"] = namespace
        strict_field_errors(request, "apis/policy/v1", "PodDisruptionBudget", pdb)
        try:
            created = self.cluster.create_pdb(dict(pdb, metadata=metadata))
        except Conflict as error:
            raise ApiError(409, "AlreadyExists", str(error), {"name": metadata.get("name"), "group": "policy",
                                                              "kind": "poddisruptionbudgets"}) from error
        except Invalid as error:
            raise self.invalid(error, resource, metadata.get("name")) from error
        return self.respond_object(request, resource, created, 201)

    @staticmethod
    def invalid(error: Invalid, resource: Resource, name: str | None) -> ApiError:
        return ApiError(422, "Invalid", error.message, {
            "name": name, "kind": resource.kind, **({"group": resource.group} if resource.group else {}),
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": path}
                       for path, message in error.causes]})

    def update(self, request: Request, resource: Resource, namespace: str | None, name: str) -> Response:
        """PATCH (merge, strategic merge, JSON patch) or PUT of a node, a PDB or an HPA's spec."""
        if request.args.get("dryRun"):
            raise ApiError(400, "BadRequest", "dry-run updates are not supported by this server")
        with self.cluster.lock:
            current = self.get(resource, namespace, name)
            body = self.body(request)
            content_type = (request.mimetype or "").lower()
            expected = None
            if request.method == "PUT":
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", f"the request body must be a {resource.kind} object")
                updated = body
                expected = (body.get("metadata") or {}).get("resourceVersion")
            elif content_type == "application/json-patch+json":
                updated = json_patch(current, body)
            elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
                group_version = f"apis/{resource.group}/{resource.version}" if resource.group else "api/v1"
                strict_patch_errors(request, group_version, resource.kind, body)
                updated = merge_patch(current, body, strategic=content_type.startswith("application/strategic"))
                expected = (body.get("metadata") or {}).get("resourceVersion")
            else:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                               "accepted media types include: application/json-patch+json, "
                               "application/merge-patch+json, application/strategic-merge-patch+json")
            try:
                if resource.name == "nodes":
                    stored = self.cluster.replace_node(name, updated, expected_resource_version=expected)
                elif resource.name == "horizontalpodautoscalers":
                    stored = self.cluster.replace_hpa(namespace, name, updated, expected_resource_version=expected)
                else:
                    stored = self.cluster.replace_pdb(namespace, name, updated, expected_resource_version=expected)
            except Conflict as error:
                raise ApiError(409, "Conflict", str(error), {
                    "name": name, **({"group": resource.group} if resource.group else {}), "kind": resource.name,
                }) from error
            except Invalid as error:
                raise self.invalid(error, resource, name) from error
        return self.respond_object(request, resource, stored)

    def scale(self, request: Request, resource: Resource, namespace: str | None, name: str) -> Response:
        """The autoscaling/v1 Scale of a Deployment, ReplicaSet or StatefulSet: GET, PUT, or a merge patch."""
        with self.cluster.lock:
            current = self.get(resource, namespace, name)
            if request.method != "GET":
                body = self.body(request)
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "the request body must be a Scale object")
                replicas = (body.get("spec") or {}).get("replicas", current["spec"]["replicas"])
                expected = (body.get("metadata") or {}).get("resourceVersion")
                try:
                    current = self.cluster.scale(resource.name, namespace or "", name, replicas,
                                                 expected_resource_version=expected)
                except Conflict as error:
                    raise ApiError(409, "Conflict", str(error), {"name": name, "group": "apps",
                                                                 "kind": resource.name}) from error
                except Invalid as error:
                    raise self.invalid(error, SCALE, name) from error  # the Scale is invalid, not its owner
            meta = current["metadata"]
            selector = ",".join(f"{k}={v}" for k, v in sorted(current["spec"]["selector"]["matchLabels"].items()))
            return self.json({
                "kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                             "resourceVersion": meta["resourceVersion"],
                             "creationTimestamp": meta["creationTimestamp"]},
                "spec": {"replicas": current["spec"]["replicas"]},
                "status": {"replicas": (current.get("status") or {}).get("replicas", 0), "selector": selector},
            })

    def delete(self, request: Request, resource: Resource, namespace: str | None, name: str) -> Response:
        options = self.body(request) or {}
        if not isinstance(options, dict):
            raise ApiError(400, "BadRequest", "the request body must be DeleteOptions")
        if options.get("dryRun") or request.args.get("dryRun"):
            raise ApiError(400, "BadRequest", "dry-run deletions are not supported by this server")
        grace = request.args.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
        uid = (options.get("preconditions") or {}).get("uid")
        try:
            if resource.name == "pods":
                pod = self.cluster.delete_pod(namespace, name, grace_seconds=None if grace is None else int(grace),
                                              uid=uid)
                return self.respond_object(request, resource, pod)
            current = self.get(resource, namespace, name)
            if uid and uid != current["metadata"]["uid"]:
                raise Conflict(f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                               f"{current['metadata']['uid']}")
            if resource.name == "nodes":
                self.cluster.remove_node(name)
            else:
                self.cluster.delete_pdb(namespace, name)
        except (PodNotFound, ObjectNotFound) as error:
            raise ApiError(404, "NotFound", f'{resource.name} "{name}" not found',
                           {"name": name, "kind": resource.name}) from error
        except Conflict as error:
            raise ApiError(409, "Conflict", str(error), {"name": name, "kind": resource.name}) from error
        return self.json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                          "details": {"name": name, "kind": resource.name, "uid": current["metadata"]["uid"],
                                      **({"group": resource.group} if resource.group else {})}})


def _accepts_json(request: Request) -> bool:
    accept = request.headers.get("Accept", "")
    return not accept or any(t.split(";")[0].strip() in (JSON, "*/*", "application/*") for t in accept.split(","))


def strict_field_errors(request: Request, group_version: str, kind: str, obj: object) -> None:
    """``?fieldValidation=Strict``: refuse fields the kind's schema does not declare, as the API
    server's strict decoding does (the default, Warn/Ignore, drops them silently here)."""
    if request.args.get("fieldValidation") != "Strict":
        return
    unknown = openapi.unknown_fields(group_version, kind, obj)
    if unknown:
        version = group_version.rsplit("/", 1)[-1]
        fields = ", ".join(f'unknown field "{name}"' for name in unknown)
        raise ApiError(400, "BadRequest", f'{kind} in version "{version}" cannot be handled as a {kind}: '
                       f"strict decoding error: {fields}")


def _go_value(value: object) -> str:
    """A decoded JSON value as Go's %v prints it (the API server quotes patches that way)."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_value(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def strict_patch_errors(request: Request, group_version: str, kind: str, patch: object) -> None:
    """``?fieldValidation=Strict`` on a merge or strategic-merge patch: unknown fields in the patch
    are a 422 naming the patch, as the API server answers them."""
    if request.args.get("fieldValidation") != "Strict":
        return
    unknown = openapi.unknown_fields(group_version, kind, patch)
    if unknown:
        fields = ", ".join(f'unknown field "{name}"' for name in unknown)
        message = f'Invalid value: "{_go_value(patch)}": strict decoding error: {fields}'
        raise ApiError(422, "Invalid", f' "" is invalid: patch: {message}',
                       {"causes": [{"reason": "FieldValueInvalid", "message": message, "field": "patch"}]})


def make_kube_app(cluster: KubeCluster, token: str) -> KubeApi:
    """The WSGI application serving `cluster`'s Kubernetes API; requests need `Bearer <token>`."""
    return KubeApi(cluster, token)


# A short poll interval lets stopping an API server return promptly (Werkzeug's default waits up to 0.5 s).
POLL_SECONDS = 0.05


class KubeApiServer:
    """One cluster's Kubernetes API over TLS on a free loopback port, served from a thread.

    `wrap` lets a caller put middleware (fault injection, request counting) around the app."""

    def __init__(self, cluster: KubeCluster, token: str, *, host: str = "127.0.0.1",
                 wrap: Callable[[KubeApi], Callable] | None = None) -> None:
        self.cluster = cluster
        self.token = token
        self.certificate = make_serving_certificate(cluster.name, (host, "localhost"))
        app = make_kube_app(cluster, token)
        self._server = LoopbackServer(wrap(app) if wrap else app, name=f"kube-api-{cluster.name}", host=host,
                                      ssl_context=self.certificate.ssl_context(), poll_interval=POLL_SECONDS)
        self.url = self._server.url

    def start(self) -> KubeApiServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def kubeconfig(self, user: str = "clusterUser") -> dict:
        """A kubeconfig (as a dict, dump it as YAML or JSON) like `az aks get-credentials` writes."""
        name = self.cluster.name
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
            "clusters": [{"name": name, "cluster": {"server": self.url,
                                                    "certificate-authority-data": self.certificate.ca_data}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": f"{user}_{name}"}}],
            "users": [{"name": f"{user}_{name}", "user": {"token": self.token}}],
        }
