"""The AKS emulator's Kubernetes API held to the real one.

The same cluster (pool ``conf`` of two nodes; Deployments web x2 and db x1; PDB db-pdb with
minAvailable 1 over matchLabels and PDB web-pdb with maxUnavailable 1 over matchExpressions) is
set up on both backends, then one session of requests runs on each: the request shapes the
product's adapter and kubectl send (recorded; ``test_every_recorded_request_shape_is_replayed``
fails when they start sending one the session does not replay), plus the error cases they read.
Each check reduces a response to what the product or kubectl reads: status codes, Status
``reason``/``message``/``details``, the product's parse of objects, paging and ``continue``, the
Table format, eviction answers, PDB status after evictions (waiting for the disruption
controller), discovery and the OpenAPI documents kubectl validates with.

A check whose observations differ must be listed in ``KNOWN_DIFFERENCES`` (with the reason, also
in sandbox/aks_emulator/README.md); any other difference fails, and so does a listed difference
that no longer occurs.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import msgspec
import pytest
import yaml

from sandbox.k8s.controlplane import ControlPlane, Pool
from tests.realk8s.conftest import wait_for
from upgrade.adapters.kube import PodJson, autoscaler_from_json, node_from_json, pdb_from_json, pod_from_json

pytestmark = pytest.mark.realk8s

NS = "conf"
POOL = "conf"
JSON = "application/json"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io"
EMULATED_VERSION = "1.30.0"  # the emulator's default pool version; the real nodes report the same
EMULATOR_README = Path(__file__).resolve().parents[2] / "sandbox" / "aks_emulator" / "README.md"

# check -> why the emulator answers differently (keep in step with sandbox/aks_emulator/README.md)
KNOWN_DIFFERENCES: dict[str, str] = {
    "bad_label_selector": "same 400 BadRequest; the parser's message after 'unable to parse requirement' differs",
    "discovery": "only the verbs the emulator implements are listed",
    "invalid_continue": "same 400 BadRequest; the token format, hence the decoding error, differs",
    "invalid_pdb": "same 422 Invalid and field; the API server quotes the Go struct in its message",
    "list_paging": "a filtered list's last page carries no continue token (etcd's may, as more keys follow)",
}


@dataclass
class Answer:
    status: int
    content_type: str
    body: Any


@dataclass
class Backend:
    """One API server as a client sees it (server URL, CA, bearer token from a kubeconfig)."""

    name: str
    kubeconfig: Path
    wait: Callable[[], None] = lambda: None  # lets asynchronous controllers act (real) or time pass
    shapes: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        config = yaml.safe_load(self.kubeconfig.read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        self.server = cluster["server"]
        self.token = user["token"]
        self.context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())

    def request(self, method: str, path: str, body: Any = None, *, content_type: str = JSON,
                accept: str = JSON) -> Answer:
        self.shapes.add(request_shape(method, path))
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": content_type, "Accept": accept})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                status, headers, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, headers, raw = error.code, error.headers, error.read()
        content_type = (headers.get("Content-Type") or "").split(";")[0]
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Answer(status, content_type, parsed)

    def get(self, path: str) -> Any:
        answer = self.request("GET", path)
        assert answer.status == 200, (self.name, path, answer)
        return answer.body


ROUTE_NAMES = re.compile(r"/(nodes|pods|poddisruptionbudgets|namespaces|deployments|replicasets|statefulsets|"
                         r"daemonsets|events|leases|horizontalpodautoscalers)/[^/?]+")


def request_shape(method: str, url: str) -> str:
    """``METHOD /route/{name}?sorted,query,keys``: what a request looks like, names aside."""
    parts = urlsplit(url)
    path = ROUTE_NAMES.sub(lambda m: f"/{m.group(1)}/{{name}}", parts.path)
    path = re.sub(r"^/openapi/v3/.+", "/openapi/v3/{group}", path)
    keys = sorted({k for k, _ in parse_qsl(parts.query, keep_blank_values=True)} - {"timeout", "hash"})
    return f"{method} {path}{'?' + ','.join(keys) if keys else ''}"


# ---- the cluster on both backends -------------------------------------------------------------------

# web's HorizontalPodAutoscaler; no metrics server runs on either backend
WEB_HPA = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "web-hpa", "namespace": NS},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 2, "maxReplicas": 4,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                        "type": "Utilization", "averageUtilization": 80}}}]}}
WEB_PDB = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web-pdb"},
           "spec": {"maxUnavailable": 1,
                    "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}}}


@pytest.fixture(scope="module")
def emulator_backend() -> Iterator[Backend]:
    from sandbox.aks_emulator.scenarios import ClusterBuilder
    from sandbox.aks_emulator.server import Emulator

    emu = Emulator(time_scale=0.02)
    (ClusterBuilder("aks-conformance").pool("system", count=1, mode="System",
                                             node_taints=["CriticalAddonsOnly=true:NoSchedule"])
     .pool(POOL, count=2)
     .deployment(NS, "web", replicas=2, pool=POOL, grace_seconds=0)
     .deployment(NS, "db", replicas=1, pool=POOL, grace_seconds=0)
     .pdb(NS, "db-pdb", app="db", min_available=1)
     .hpa(NS, "web-hpa", target=("Deployment", "web"), min_replicas=2, max_replicas=4)).build(emu)
    emu.start()
    workdir = tempfile.TemporaryDirectory()
    try:
        kubeconfig = Path(workdir.name) / "kubeconfig"
        emu.write_kubeconfig(emu.clusters()[0].arm_id, kubeconfig)
        backend = Backend("emulator", kubeconfig)
        created = backend.request("POST", f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets", WEB_PDB)
        assert created.status == 201, created
        yield backend
    finally:
        emu.stop()
        workdir.cleanup()


@pytest.fixture(scope="module")
def real_backend(control_plane: ControlPlane) -> Iterator[Backend]:
    control_plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    nodes = control_plane.add_nodes([Pool(POOL, 2, kubernetes_version=EMULATED_VERSION)])
    for name, replicas in (("web", 2), ("db", 1)):
        control_plane.apply({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": {"agentpool": POOL}, "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": name, "image": "registry.invalid/app:1"}]}}}})
    control_plane.apply({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                         "metadata": {"name": "db-pdb", "namespace": NS},
                         "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}})
    control_plane.apply(WEB_PDB | {"metadata": {"name": "web-pdb", "namespace": NS}})
    control_plane.apply(WEB_HPA)
    backend = Backend("real", control_plane.kubeconfigs["admin"])
    wait_for(lambda: _settled(backend), "the real cluster's pods Ready and PDB status written")
    yield backend
    control_plane.request("DELETE", f"/api/v1/namespaces/{NS}")
    for node in nodes:
        control_plane.request("DELETE", f"/api/v1/nodes/{node}")


def _ready_pods(backend: Backend, app: str) -> list[dict[str, Any]]:
    pods = backend.get(f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3D{app}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))]


def _settled(backend: Backend) -> bool:
    """Every pod Ready and each PDB's status counting them (the disruption controller caught up)."""
    if len(_ready_pods(backend, "web")) != 2 or len(_ready_pods(backend, "db")) != 1:
        return False
    pdbs = backend.get(f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets")["items"]
    expected = {"web-pdb": (2, 1), "db-pdb": (1, 0)}
    return all((p.get("status", {}).get("currentHealthy"), p.get("status", {}).get("disruptionsAllowed"))
               == expected[p["metadata"]["name"]] for p in pdbs) and len(pdbs) == 2


# ---- the session ------------------------------------------------------------------------------------


class Session:
    """Runs the checks on one backend; ``names`` turns its node and pod names into stable ones."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend
        self.nodes = sorted(n["metadata"]["name"] for n in backend.get(
            f"/api/v1/nodes?labelSelector={quote('kubernetes.azure.com/agentpool=' + POOL)}")["items"])

    def pod(self, app: str, index: int = 0) -> dict[str, Any]:
        return sorted(_ready_pods(self.b, app), key=lambda p: p["metadata"]["name"])[index]

    def names(self, value: Any) -> Any:
        """Node names become node-0/node-1, pod names <app>-pod; uids, versions and times go."""
        text = json.dumps(value)
        for i, node in enumerate(self.nodes):
            text = text.replace(node, f"node-{i}")
        text = re.sub(r'"((?:web|db)-[a-z0-9]+-[a-z0-9]{5})"', lambda m: '"' + m.group(1).split("-")[0] + '-pod"',
                      text)
        text = re.sub(r"\b(web|db)-[a-z0-9]{6,10}-[a-z0-9]{5}\b", lambda m: m.group(1) + "-pod", text)
        return json.loads(text)


def status_of(answer: Answer) -> dict[str, Any]:
    """What the product and kubectl read from a Status: code, reason, message, details, causes."""
    body = answer.body if isinstance(answer.body, dict) else {}
    return {"status": answer.status, "kind": body.get("kind"), "reason": body.get("reason"),
            "message": body.get("message"), "details": body.get("details"), "code": body.get("code")}


def _product_node(raw: dict[str, Any]) -> dict[str, Any]:
    node = node_from_json(raw)
    return {"pool": node.pool, "version": node.kubernetes_version, "unschedulable": node.unschedulable,
            "ready": node.ready, "taints": node.taints, "cordoned": node.cordoned_at is not None,
            "labels": sorted(k for k, _ in node.labels), "allocatable_cpu": node.allocatable_cpu_millis}


def _product_pod(raw: dict[str, Any]) -> dict[str, Any]:
    pod = pod_from_json(msgspec.convert(raw, PodJson))  # as the adapter decodes pods
    return {"namespace": pod.namespace, "phase": pod.phase, "ready": pod.ready, "labels": sorted(pod.label_map()),
            "owner_kind": pod.owner_kind, "deleting": pod.deleting, "mirror": pod.mirror,
            "empty_dir": pod.empty_dir, "restarts": pod.restart_count, "grace": pod.grace_seconds,
            "scheduled": pod.node is not None}


def _product_pdb(raw: dict[str, Any]) -> dict[str, Any]:
    pdb = pdb_from_json(raw)
    status = raw.get("status", {})
    return {"pdb": [pdb.namespace, pdb.name, pdb.min_available, pdb.max_unavailable, pdb.disruptions_allowed,
                    pdb.current_healthy, pdb.desired_healthy, pdb.expected_pods],
            "selector": raw["spec"].get("selector"),
            "conditions": [[c.get("type"), c.get("status"), c.get("reason")] for c in status.get("conditions", [])]}


def _table(answer: Answer) -> dict[str, Any]:
    body = answer.body
    return {"status": answer.status, "kind": body.get("kind"), "apiVersion": body.get("apiVersion"),
            "columns": [[c["name"], c["type"], c.get("format", ""), c.get("priority", 0)]
                        for c in body.get("columnDefinitions", [])],
            "rows": len(body.get("rows", [])),
            "cells": sorted({len(r["cells"]) for r in body.get("rows", [])}),
            "objects": sorted({r.get("object", {}).get("kind", "") for r in body.get("rows", [])})}


def check_discovery(s: Session) -> dict[str, Any]:
    api = s.b.get("/api")
    groups = {g["name"]: g["preferredVersion"]["groupVersion"] for g in s.b.get("/apis")["groups"]}
    resources = {}
    for group_version in ("api/v1", "apis/apps/v1", "apis/policy/v1", "apis/events.k8s.io/v1", "apis/autoscaling/v2"):
        for r in s.b.get(f"/{group_version}")["resources"]:
            if r["name"] in ("nodes", "pods", "pods/eviction", "namespaces", "events", "poddisruptionbudgets",
                             "deployments", "replicasets", "statefulsets", "daemonsets", "persistentvolumeclaims",
                             "horizontalpodautoscalers"):
                resources[f"{group_version}/{r['name']}"] = [r["kind"], r["namespaced"], sorted(r["verbs"])]
    return {"api": [api["kind"], api["versions"]],
            "groups": {g: groups.get(g) for g in ("apps", "autoscaling", "policy", "events.k8s.io")},
            "resources": resources}


def check_version(s: Session) -> dict[str, Any]:
    version = s.b.get("/version")
    return {"keys": sorted(version), "gitVersion": bool(re.fullmatch(r"v\d+\.\d+\.\d+", version["gitVersion"]))}


def check_list_paging(s: Session) -> dict[str, Any]:
    selector = quote(f"kubernetes.azure.com/agentpool={POOL}")
    first = s.b.request("GET", f"/api/v1/nodes?labelSelector={selector}&limit=1").body
    token = first["metadata"].get("continue")
    second = s.b.request("GET", f"/api/v1/nodes?labelSelector={selector}&limit=1&continue={quote(token)}").body
    whole = s.b.request("GET", "/api/v1/nodes?limit=1").body
    return {"first": [first["kind"], len(first["items"]), sorted(first["metadata"])],
            "second": [second["kind"], len(second["items"]), sorted(second["metadata"])],
            "names": s.names([i["metadata"]["name"] for i in first["items"] + second["items"]]),
            "unselected remaining": whole["metadata"].get("remainingItemCount")}


def check_invalid_continue(s: Session) -> dict[str, Any]:
    return status_of(s.b.request("GET", "/api/v1/nodes?limit=1&continue=not-a-token"))


def check_field_selector(s: Session) -> dict[str, Any]:
    on_node = s.b.get(f"/api/v1/namespaces/{NS}/pods?fieldSelector={quote('spec.nodeName=' + s.nodes[0])}")
    everywhere = s.b.get(f"/api/v1/pods?fieldSelector={quote('spec.nodeName=' + s.nodes[0])}&limit=500")
    by_name = s.b.get(f"/api/v1/nodes?fieldSelector={quote('metadata.name=' + s.nodes[1])}&limit=500")
    return s.names({"namespaced": sorted({p["spec"]["nodeName"] for p in on_node["items"]}),
                    "all namespaces": sorted({p["spec"]["nodeName"] for p in everywhere["items"]}),
                    "count equal": len(on_node["items"]) == len(everywhere["items"]),
                    "by name": [n["metadata"]["name"] for n in by_name["items"]]})


def check_bad_field_selector(s: Session) -> dict[str, Any]:
    return status_of(s.b.request("GET", f"/api/v1/pods?fieldSelector={quote('spec.foo=bar')}"))


def check_set_based_label_selector(s: Session) -> dict[str, Any]:
    selector = quote("app in (web,db),app notin (db)")
    items = s.b.get(f"/api/v1/namespaces/{NS}/pods?labelSelector={selector}&limit=500")["items"]
    exists = s.b.get(f"/api/v1/namespaces/{NS}/pods?labelSelector={quote('!tier,app')}")["items"]
    return {"in/notin": sorted(p["metadata"]["labels"]["app"] for p in items),
            "exists": len(exists)}


def check_bad_label_selector(s: Session) -> dict[str, Any]:
    return status_of(s.b.request("GET", f"/api/v1/pods?labelSelector={quote('app in (')}"))


def check_get_missing(s: Session) -> dict[str, Any]:
    return {"node": status_of(s.b.request("GET", "/api/v1/nodes/no-such-node")),
            "pod": status_of(s.b.request("GET", f"/api/v1/namespaces/{NS}/pods/no-such-pod")),
            "pdb": status_of(s.b.request("GET", f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/nope"))}


def check_unknown_path(s: Session) -> dict[str, Any]:
    return {"status": s.b.request("GET", "/apis/no.such.group/v1/things").status}


def check_objects_as_the_product_reads_them(s: Session) -> dict[str, Any]:
    return s.names({"node": _product_node(s.b.get(f"/api/v1/nodes/{s.nodes[0]}")),
                    "pod": _product_pod(s.pod("db")),
                    "pdbs": [_product_pdb(p) for p in
                             s.b.get(f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets")["items"]]})


def check_workloads(s: Session) -> dict[str, Any]:
    deployments = s.b.get(f"/apis/apps/v1/namespaces/{NS}/deployments?limit=500")["items"]
    replicasets = s.b.get(f"/apis/apps/v1/namespaces/{NS}/replicasets?limit=500")["items"]
    statefulsets = s.b.request("GET", f"/apis/apps/v1/namespaces/{NS}/statefulsets?limit=500")
    return {"deployments": sorted([d["metadata"]["name"], d["spec"]["replicas"], d["status"].get("readyReplicas")]
                                  for d in deployments),
            "replicaset owners": sorted({o["kind"] for r in replicasets for o in r["metadata"]["ownerReferences"]}),
            "statefulsets": [statefulsets.status, len((statefulsets.body or {}).get("items", []))]}


def check_lists_across_namespaces(s: Session) -> dict[str, Any]:
    """The snapshot's and blue-green validation's lists over all namespaces (this namespace's items)."""
    seen = {}
    for path in ("/api/v1/pods", "/apis/apps/v1/deployments", "/apis/apps/v1/replicasets",
                 "/apis/apps/v1/statefulsets", "/apis/policy/v1/poddisruptionbudgets"):
        answer = s.b.request("GET", f"{path}?limit=500")
        items = (answer.body or {}).get("items", []) if answer.status == 200 else []
        seen[path] = [answer.status, sorted(i["metadata"]["name"].split("-")[0] for i in items
                                            if i["metadata"].get("namespace") == NS)]
    return seen


def check_daemonset_lookup(s: Session) -> dict[str, Any]:
    return status_of(s.b.request("GET", "/apis/apps/v1/namespaces/kube-system/daemonsets/no-such-daemonset"))


def check_events(s: Session) -> dict[str, Any]:
    core = s.b.request("GET", "/api/v1/events?limit=500")
    v1 = s.b.request("GET", "/apis/events.k8s.io/v1/events?limit=500")
    about_node = quote(f"involvedObject.kind=Node,involvedObject.name={s.nodes[0]}")
    described = s.b.request("GET", f"/api/v1/events?fieldSelector={about_node}&limit=500")
    return {"core": [core.status, core.body.get("kind")], "events.k8s.io": [v1.status, v1.body.get("kind")],
            "about a node (kubectl describe)": [described.status, described.body.get("kind")]}


def check_eviction_refused_by_pdb(s: Session) -> dict[str, Any]:
    name = s.pod("db")["metadata"]["name"]
    answer = s.b.request("POST", f"/api/v1/namespaces/{NS}/pods/{name}/eviction",
                         {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": NS}})
    return status_of(answer)


def check_eviction_of_a_missing_pod(s: Session) -> dict[str, Any]:
    answer = s.b.request("POST", f"/api/v1/namespaces/{NS}/pods/gone/eviction",
                         {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "gone", "namespace": NS}})
    return status_of(answer)


def check_eviction_allowed_then_pdb_status(s: Session) -> dict[str, Any]:
    name = s.pod("web")["metadata"]["name"]
    answer = s.b.request("POST", f"/api/v1/namespaces/{NS}/pods/{name}/eviction",
                         {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": NS}})
    # The eviction is admitted against the PDB status; the controller then writes the new status
    # and, once the ReplicaSet's replacement is Ready, the budget recovers. Wait for that.
    wait_for(lambda: _settled(s.b), f"{s.b.name}: web replaced and web-pdb recounted")
    pdb = s.b.get(f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/web-pdb")
    return {"eviction": status_of(answer), "pdb after": _product_pdb(pdb)}


def check_strategic_merge_cordon(s: Session) -> dict[str, Any]:
    node = s.nodes[1]
    answer = s.b.request("PATCH", f"/api/v1/nodes/{node}?fieldManager=kubectl-cordon",
                         {"spec": {"unschedulable": True}}, content_type="application/strategic-merge-patch+json")
    tainted = wait_for(lambda: any(t["key"] == "node.kubernetes.io/unschedulable" for t in
                                   s.b.get(f"/api/v1/nodes/{node}")["spec"].get("taints", [])), "the cordon taint")
    undone = s.b.request("PATCH", f"/api/v1/nodes/{node}", {"spec": {"unschedulable": None}},
                         content_type="application/strategic-merge-patch+json")
    return {"status": answer.status, "unschedulable": answer.body["spec"].get("unschedulable"), "tainted": tainted,
            "uncordoned": [undone.status, undone.body["spec"].get("unschedulable")]}


def check_merge_patch_labels(s: Session) -> dict[str, Any]:
    node = s.nodes[1]
    key = "kubernetes.azure.com/upgrade-status"
    added = s.b.request("PATCH", f"/api/v1/nodes/{node}", {"metadata": {"labels": {key: "Quarantined"}}},
                        content_type="application/merge-patch+json")
    removed = s.b.request("PATCH", f"/api/v1/nodes/{node}", {"metadata": {"labels": {key: None}}},
                          content_type="application/merge-patch+json")
    return {"added": [added.status, added.body["metadata"]["labels"].get(key)],
            "removed": [removed.status, key in removed.body["metadata"]["labels"]]}


def check_json_patch(s: Session) -> dict[str, Any]:
    node = s.nodes[1]
    failed = s.b.request("PATCH", f"/api/v1/nodes/{node}",
                         [{"op": "test", "path": "/spec/unschedulable", "value": True}],
                         content_type="application/json-patch+json")
    added = s.b.request("PATCH", f"/api/v1/nodes/{node}",
                        [{"op": "add", "path": "/metadata/labels/conformance", "value": "yes"}],
                        content_type="application/json-patch+json")
    removed = s.b.request("PATCH", f"/api/v1/nodes/{node}",
                          [{"op": "remove", "path": "/metadata/labels/conformance"}],
                          content_type="application/json-patch+json")
    return {"failed test": status_of(failed) | {"details": None},
            "added": [added.status, added.body["metadata"]["labels"].get("conformance")],
            "removed": [removed.status, "conformance" in removed.body["metadata"]["labels"]]}


def check_pdb_merge_patch_restore(s: Session) -> dict[str, Any]:
    path = f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/db-pdb"
    relaxed = s.b.request("PATCH", path, {"spec": {"minAvailable": None, "maxUnavailable": 1}},
                          content_type="application/merge-patch+json")
    restored = s.b.request("PATCH", path, {"spec": {"maxUnavailable": None, "minAvailable": 1}},
                           content_type="application/merge-patch+json")
    wait_for(lambda: _settled(s.b), f"{s.b.name}: db-pdb recounted")
    return {"relaxed": [relaxed.status, relaxed.body["spec"]],
            "restored": [restored.status, restored.body["spec"]]}


def check_stale_resource_version(s: Session) -> dict[str, Any]:
    path = f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/db-pdb"
    stale = s.b.get(path)
    s.b.request("PATCH", path, {"metadata": {"labels": {"touched": "1"}}}, content_type="application/merge-patch+json")
    return status_of(s.b.request("PUT", path, stale))


def check_invalid_pdb(s: Session) -> dict[str, Any]:
    both = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "both"},
            "spec": {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"app": "db"}}}}
    return status_of(s.b.request("POST", f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets", both))


def _scale_read(answer: Answer) -> dict[str, Any]:
    """A Scale as the adapter reads it (kind, name, spec.replicas, a resourceVersion) and its status."""
    if answer.status != 200:
        return status_of(answer)
    body = answer.body
    return {"status": answer.status, "kind": body.get("kind"), "apiVersion": body.get("apiVersion"),
            "name": body["metadata"].get("name"), "namespace": body["metadata"].get("namespace"),
            "has resourceVersion": bool(body["metadata"].get("resourceVersion")),
            "replicas": body["spec"].get("replicas"), "selector": body.get("status", {}).get("selector")}


def _scale_body(name: str, replicas: int, resource_version: str) -> dict[str, Any]:
    """What the adapter's replace_scale sends."""
    return {"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": name, "namespace": NS, "resourceVersion": resource_version},
            "spec": {"replicas": replicas}}


def check_deployment_scale(s: Session) -> dict[str, Any]:
    """The scale-out remediation: read a Deployment's Scale, replace it conditionally, scale back."""
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale"
    first = s.b.request("GET", path)
    version = first.body["metadata"]["resourceVersion"]
    out = s.b.request("PUT", path, _scale_body("web", 3, version))
    wait_for(lambda: len(_ready_pods(s.b, "web")) == 3, f"{s.b.name}: web scaled out to 3")
    stale = s.b.request("PUT", path, _scale_body("web", 2, version))
    current = s.b.request("GET", path)
    invalid = s.b.request("PUT", path, _scale_body("web", -1, current.body["metadata"]["resourceVersion"]))
    back = s.b.request("PUT", path, _scale_body("web", 2, current.body["metadata"]["resourceVersion"]))
    wait_for(lambda: _settled(s.b), f"{s.b.name}: web scaled back to 2")
    missing = s.b.request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/nope/scale")
    return {"get": _scale_read(first), "out": _scale_read(out), "after out": _scale_read(current),
            "stale": status_of(stale), "invalid": status_of(invalid),
            "back": _scale_read(back), "missing": status_of(missing)}


def check_replicaset_scale(s: Session) -> dict[str, Any]:
    """A ReplicaSet's Scale, replaced conditionally (same count: its Deployment owns the count)."""
    replicaset = s.b.get(f"/apis/apps/v1/namespaces/{NS}/replicasets?labelSelector=app%3Ddb")["items"][0]
    name = replicaset["metadata"]["name"]
    path = f"/apis/apps/v1/namespaces/{NS}/replicasets/{name}/scale"
    first = s.b.request("GET", path)
    replaced = s.b.request("PUT", path, _scale_body(name, 1, first.body["metadata"]["resourceVersion"]))
    stale = s.b.request("PUT", path, _scale_body(name, 1, "1"))
    seen = {"get": _scale_read(first), "replaced": _scale_read(replaced), "stale": status_of(stale)}
    return json.loads(json.dumps(seen).replace(name, "db-replicaset").replace(
        replicaset["metadata"]["labels"].get("pod-template-hash", name), "HASH"))


def check_autoscalers(s: Session) -> dict[str, Any]:
    """The remediation's HorizontalPodAutoscaler list (autoscaling/v2), as the answer and as the adapter reads it."""
    answer = s.b.request("GET", f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers?limit=500")
    items = (answer.body or {}).get("items", []) if answer.status == 200 else []
    return {"status": answer.status, "kind": (answer.body or {}).get("kind") if answer.status == 200 else None,
            "read by the adapter": [] if answer.status == 404 else [i["metadata"]["name"] for i in items]}


def _hpa_read(answer: Answer) -> dict[str, Any]:
    """An HPA as the adapter reads it (its bounds, target, a resourceVersion), or the Status."""
    if answer.status != 200:
        return status_of(answer)
    hpa = autoscaler_from_json(answer.body)
    return {"status": answer.status, "kind": answer.body.get("kind"), "apiVersion": answer.body.get("apiVersion"),
            "read by the adapter": [hpa.namespace, hpa.name, hpa.target_kind, hpa.target_name, hpa.min_replicas,
                                    hpa.max_replicas, bool(hpa.resource_version)]}


def _web_replicas(s: Session) -> int:
    return s.b.get(f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale")["spec"]["replicas"]


def check_hpa_bounds(s: Session) -> dict[str, Any]:
    """The scale-out remediation through an HPA: read it, raise minReplicas with a conditional merge
    patch (the HPA controller then sets its target to the new minimum, with no metrics server),
    a stale and an invalid patch; a maximum below the count brings the target down to it."""
    path = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/web-hpa"
    first = s.b.request("GET", path)
    version = first.body["metadata"]["resourceVersion"]
    raised = s.b.request("PATCH", path, {"metadata": {"resourceVersion": version},
                                         "spec": {"minReplicas": 3, "maxReplicas": 4}},
                         content_type="application/merge-patch+json")
    wait_for(lambda: _web_replicas(s) == 3 and len(_ready_pods(s.b, "web")) == 3, f"{s.b.name}: the HPA raised web to 3")
    stale = s.b.request("PATCH", path, {"metadata": {"resourceVersion": version}, "spec": {"minReplicas": 2}},
                        content_type="application/merge-patch+json")
    invalid = s.b.request("PATCH", path, {"spec": {"minReplicas": 5, "maxReplicas": 4}},
                          content_type="application/merge-patch+json")
    capped = s.b.request("PATCH", path, {"spec": {"minReplicas": 2, "maxReplicas": 2}},
                         content_type="application/merge-patch+json")
    wait_for(lambda: _web_replicas(s) == 2 and _settled(s.b), f"{s.b.name}: the HPA capped web at 2")
    back = s.b.request("PATCH", path, {"spec": {"minReplicas": 2, "maxReplicas": 4}},
                       content_type="application/merge-patch+json")
    return {"get": _hpa_read(first), "raised": _hpa_read(raised), "stale": status_of(stale),
            "invalid": status_of(invalid), "capped": _hpa_read(capped), "back": _hpa_read(back),
            "missing": status_of(s.b.request("GET", path.replace("web-hpa", "nope")))}


def check_statefulset_scale_and_claims(s: Session) -> dict[str, Any]:
    """A StatefulSet's Scale and the claims list as the scale-out remediation sends them (no
    StatefulSet exists here: a missing one's scale read and replaced; an empty claims list)."""
    path = f"/apis/apps/v1/namespaces/{NS}/statefulsets/nope/scale"
    claims = s.b.request("GET", f"/api/v1/namespaces/{NS}/persistentvolumeclaims?limit=500")
    return {"get missing": status_of(s.b.request("GET", path)),
            "replace missing": status_of(s.b.request("PUT", path, _scale_body("nope", 2, "1"))),
            "claims": [claims.status, (claims.body or {}).get("kind"), (claims.body or {}).get("items")]}


def check_strict_field_validation(s: Session) -> dict[str, Any]:
    """kubectl create and apply: fieldManager and fieldValidation=Strict on POST and PATCH."""
    collection = f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets"
    typo = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "typo"},
            "spec": {"maxUnavaliable": 1, "selector": {"matchLabels": {"app": "db"}}}}
    good = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "applied"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "none"}}}}
    query = "fieldManager=kubectl-create&fieldValidation=Strict"
    refused = s.b.request("POST", f"{collection}?{query}", typo)
    created = s.b.request("POST", f"{collection}?{query}", good)
    patch_query = "fieldManager=kubectl-client-side-apply&fieldValidation=Strict"
    patched = s.b.request("PATCH", f"{collection}/applied?{patch_query}", {"spec": {"maxUnavailable": 2}},
                          content_type="application/strategic-merge-patch+json")
    patch_typo = s.b.request("PATCH", f"{collection}/applied?{patch_query}", {"spec": {"maxUnavaliable": 2}},
                             content_type="application/strategic-merge-patch+json")
    s.b.request("DELETE", f"{collection}/applied")
    return {"create typo": status_of(refused), "create": created.status,
            "apply": [patched.status, (patched.body.get("spec") or {}).get("maxUnavailable")],
            "apply typo": status_of(patch_typo)}


def check_tables(s: Session) -> dict[str, Any]:
    selector = quote(f"kubernetes.azure.com/agentpool={POOL}")
    return {"nodes": _table(s.b.request("GET", f"/api/v1/nodes?labelSelector={selector}&limit=500", accept=TABLE)),
            "pods": _table(s.b.request("GET", f"/api/v1/namespaces/{NS}/pods?limit=500", accept=TABLE)),
            "pdbs": _table(s.b.request("GET", f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets?limit=500",
                                       accept=TABLE)),
            "one node": _table(s.b.request("GET", f"/api/v1/nodes/{s.nodes[0]}", accept=TABLE))}


def check_delete_pod(s: Session) -> dict[str, Any]:
    name = s.pod("web")["metadata"]["name"]
    answer = s.b.request("DELETE", f"/api/v1/namespaces/{NS}/pods/{name}?gracePeriodSeconds=0")
    gone = wait_for(lambda: s.b.request("GET", f"/api/v1/namespaces/{NS}/pods/{name}").status == 404,
                    f"{s.b.name}: deleted pod gone")
    wait_for(lambda: _settled(s.b), f"{s.b.name}: web replaced")
    db = s.pod("db")["metadata"]["name"]
    kubectl_style = s.b.request("DELETE", f"/api/v1/namespaces/{NS}/pods/{db}")  # no grace: the pod's own
    wait_for(lambda: _settled(s.b), f"{s.b.name}: db replaced")
    return {"status": answer.status, "kind": answer.body.get("kind"), "gone": gone,
            "without options": [kubectl_style.status, kubectl_style.body.get("kind")]}


def check_openapi(s: Session) -> dict[str, Any]:
    v2 = s.b.request("GET", "/openapi/v2")
    v3 = s.b.request("GET", "/openapi/v3")
    paths = v3.body.get("paths", {}) if isinstance(v3.body, dict) else {}
    policy = s.b.request("GET", paths["apis/policy/v1"]["serverRelativeURL"]) if "apis/policy/v1" in paths else None
    pdb_schema = (policy.body["components"]["schemas"].get("io.k8s.api.policy.v1.PodDisruptionBudgetSpec")
                  if policy and policy.status == 200 else None)
    definitions = v2.body.get("definitions", {}) if isinstance(v2.body, dict) else {}
    return {"v2": [v2.status, v2.content_type, "io.k8s.api.policy.v1.PodDisruptionBudget" in definitions],
            "v3": [v3.status, sorted(p for p in paths if p in ("api/v1", "apis/apps/v1", "apis/policy/v1"))],
            "policy/v1 PodDisruptionBudgetSpec": pdb_schema}


CHECKS: list[Callable[[Session], dict[str, Any]]] = [
    check_discovery, check_version, check_list_paging, check_invalid_continue, check_field_selector,
    check_bad_field_selector, check_set_based_label_selector, check_bad_label_selector, check_get_missing,
    check_unknown_path, check_objects_as_the_product_reads_them, check_workloads, check_lists_across_namespaces,
    check_daemonset_lookup, check_events,
    check_eviction_refused_by_pdb, check_eviction_of_a_missing_pod, check_eviction_allowed_then_pdb_status,
    check_strategic_merge_cordon, check_merge_patch_labels, check_json_patch, check_pdb_merge_patch_restore,
    check_stale_resource_version, check_invalid_pdb, check_strict_field_validation, check_tables,
    check_deployment_scale, check_replicaset_scale, check_autoscalers, check_delete_pod, check_openapi,
    check_statefulset_scale_and_claims, check_hpa_bounds,
]


@pytest.fixture(scope="module")
def observations(emulator_backend: Backend, real_backend: Backend) -> dict[str, dict[str, Any]]:
    """check name -> {backend name -> what it observed}."""
    results: dict[str, dict[str, Any]] = {}
    for backend in (emulator_backend, real_backend):
        wait_for(lambda b=backend: _settled(b), f"{backend.name} settled")
        session = Session(backend)
        for check in CHECKS:
            try:
                seen: Any = check(session)
            except (AssertionError, KeyError, TypeError, AttributeError, IndexError) as error:
                seen = {"check failed": f"{type(error).__name__}: {error}"[:300]}
            results.setdefault(check.__name__.removeprefix("check_"), {})[backend.name] = seen
    return results


def differences(observations: dict[str, dict[str, Any]]) -> dict[str, str]:
    found = {}
    for name, seen in observations.items():
        if seen["emulator"] != seen["real"]:
            found[name] = (f"emulator: {json.dumps(seen['emulator'], sort_keys=True)}\n"
                           f"    real: {json.dumps(seen['real'], sort_keys=True)}")
    return found


def test_the_emulator_answers_like_the_real_api_server(observations):
    found = differences(observations)
    new = {name: diff for name, diff in found.items() if name not in KNOWN_DIFFERENCES}
    stale = sorted(set(KNOWN_DIFFERENCES) - set(found))
    assert not new, "new differences (fix the emulator or list them as known simplifications):\n" + "\n".join(
        f"  {name}:\n    {diff}" for name, diff in sorted(new.items()))
    assert not stale, f"listed as known differences but now equal (remove them): {stale}"


def test_the_known_differences_are_documented_in_the_emulator_readme():
    text = EMULATOR_README.read_text()
    section = text.split("## Known differences from a real API server", 1)[1]
    listed = set(re.findall(r"^\| `([a-z0-9_ /]+)` \|", section, re.MULTILINE))
    assert listed == set(KNOWN_DIFFERENCES)


# ---- what the product and kubectl send ---------------------------------------------------------------

# Recorded shapes the session does not replay, and why.
NOT_REPLAYED: dict[str, str] = {
    "GET /apis/coordination.k8s.io/v1/namespaces/{name}/leases/{name}":
        "kubectl describe node reads the node's lease; the emulator serves no coordination.k8s.io (describe prints <unset>)",
    "GET /apis/resource.k8s.io/v1/resourceslices?fieldSelector":
        "kubectl describe node looks for DRA resource slices; the emulator serves no resource.k8s.io (describe skips them)",
}
KUBECTL_RESPONSE = re.compile(r'"Response" verb="(\w+)" url="([^"]+)"')


def _record_product(emu: Any, kubeconfig: Path) -> set[str]:
    """Every Kube port method, a drain pass and a preflight snapshot, through the real client."""
    from tests.integration.test_kube_rbac import PORT_CALLS, ClusterObjects
    from upgrade.adapters.kube import kube_from_kubeconfig
    from upgrade.domain.drain import DrainOptions
    from upgrade.domain.model import ClusterRef
    from upgrade.services.drain import drain_node_step
    from upgrade.services.snapshot import read_snapshot

    shapes: set[str] = set()
    kube = kube_from_kubeconfig(str(kubeconfig))
    send = kube.api_client.rest_client.request

    def record(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        shapes.add(request_shape(method, url))
        return send(method, url, *args, **kwargs)

    kube.api_client.rest_client.request = record
    try:
        node = kube.list_nodes(label_selector="kubernetes.azure.com/agentpool=work")[0].name
        web = kube.list_pods(namespace="apps", label_selector="app=web")[0]
        objects = ClusterObjects(node, ("apps", web.name), ("apps", "scratch"), ("apps", "db-pdb"))
        for call in PORT_CALLS:
            call.call(kube, objects)
        drain_node_step(kube, node, DrainOptions(ignore_daemonsets=True))
        read_snapshot(kube, None, ClusterRef("00000000-0000-0000-0000-000000000001", "rg", "aks-rbac"))
    finally:
        kube.close()
    return shapes


def _record_kubectl(kubeconfig: Path, home: Path, nodes: list[str], pod: str) -> set[str]:
    from tests.integration.test_emulator_kubectl import kubectl_runner

    run = kubectl_runner(kubeconfig, home)
    manifest = home / "pdb.yaml"
    manifest.write_text(yaml.safe_dump(WEB_PDB | {"metadata": {"name": "recorded", "namespace": "apps"}}))
    sessions = [
        ["get", "nodes"], ["get", "pods", "-A", "-o", "wide"], ["cordon", nodes[1]], ["uncordon", nodes[1]],
        ["label", "node", nodes[1], "kubernetes.azure.com/upgrade-status=Quarantined"],
        ["get", "nodes", "-l", "kubernetes.azure.com/upgrade-status=Quarantined", "-o", "name"],
        ["label", "node", nodes[1], "kubernetes.azure.com/upgrade-status-"], ["get", "pdb", "-A"],
        ["create", "-f", str(manifest)], ["apply", "-f", str(manifest)],
        ["describe", "node", nodes[0]],
        ["delete", "pod", "-n", "apps", pod, "--timeout=30s"],
        ["drain", nodes[0], "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=2s"],
    ]
    shapes: set[str] = set()
    for args in sessions:
        result = run(*args, "-v=6")
        shapes |= {request_shape(verb, url) for verb, url in KUBECTL_RESPONSE.findall(result.stderr)}
    return shapes


@pytest.fixture(scope="module")
def recorded_shapes(tmp_path_factory) -> dict[str, set[str]]:
    """The request shapes the product's adapter and kubectl send, recorded against an emulator."""
    from sandbox.aks_emulator.server import Emulator
    from tests.integration.test_kube_rbac import _cluster_builder

    emu = Emulator(time_scale=0.02)
    _cluster_builder().build(emu)
    emu.start()
    try:
        home = tmp_path_factory.mktemp("recording")
        kubeconfig = home / "kubeconfig"
        emu.write_kubeconfig(emu.clusters()[0].arm_id, kubeconfig)
        cluster = emu.clusters()[0].kube
        nodes = sorted(n["metadata"]["name"] for n in cluster.nodes("work"))
        product = _record_product(emu, kubeconfig)
        pod = next(p["metadata"]["name"] for p in cluster.pods() if p["metadata"]["labels"].get("app") == "web")
        return {"product": product, "kubectl": _record_kubectl(kubeconfig, home, nodes, pod)}
    finally:
        emu.stop()


def test_every_recorded_request_shape_is_replayed(recorded_shapes, observations, emulator_backend, real_backend):
    # GIVEN the shapes the product and kubectl send, and those the session replayed on both backends
    replayed = emulator_backend.shapes & real_backend.shapes
    # THEN each was replayed, or is listed as not replayed with the reason
    for who, shapes in recorded_shapes.items():
        missing = sorted(shapes - replayed - set(NOT_REPLAYED))
        assert not missing, f"{who} sends requests the conformance session does not replay: {missing}"
