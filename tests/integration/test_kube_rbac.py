"""The Kubernetes ClusterRole in infra/ against what the Kubernetes adapter really sends.

Runs ``upgrade.adapters.kube.KubernetesKube`` through every method of the ``Kube`` port against the
AKS emulator, turns each request the emulator counted into the attributes the Kubernetes API
server authorizes (verb, API group, resource[/subresource]) and compares that set with the rules
of ``infra/k8s/upgrade-operator-rbac.yaml`` in both directions: a right used but not granted is a
403 on a real cluster, a right granted but not used breaks least privilege. Also owns the checks
that the binding names the app identity and that infra/README.md documents the same rights. For
clusters with Azure RBAC for Kubernetes authorization, the same requests give the Kubernetes data
actions the custom Azure role in infra/modules/kubernetes-data-role.bicep must hold, exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.infra_checks import INFRA_DIR, parse_bicep, variable_value
from upgrade.adapters.kube import KubernetesKube, kube_from_kubeconfig
from upgrade.ports import Kube

pytestmark = pytest.mark.integration

KUBERNETES_RBAC = INFRA_DIR / "k8s" / "upgrade-operator-rbac.yaml"
KUBERNETES_DATA_ROLE = INFRA_DIR / "modules" / "kubernetes-data-role.bicep"
AKS_DATA_ACTION_PREFIX = "Microsoft.ContainerService/managedClusters"
INFRA_README = INFRA_DIR / "README.md"
QUARANTINE_LABEL = "kubernetes.azure.com/upgrade-status"
# Subresources of a Namespace object itself: the API server reads /namespaces/<name>/status as the
# namespace's status, not as a resource "status" inside that namespace.
NAMESPACE_SUBRESOURCES = {"status", "finalize"}
RULE_KEYS = {"apiGroups", "resources", "verbs"}


class Right(NamedTuple):
    """One authorization check of the Kubernetes API server (RBAC's request attributes)."""

    verb: str
    api_group: str
    resource: str  # "pods", or "pods/eviction" for a subresource

    def __str__(self) -> str:
        return f"{self.verb} {self.api_group or 'core'}/{self.resource}"


def request_right(route_key: str, *, watch: bool = False) -> Right:
    """The right the API server checks for a request counted as "METHOD /route/template",
    following its request-info rules: a GET on a collection is list, on an object get, either is
    watch with ?watch; DELETE on a collection is deletecollection; POST is create."""
    method, template = route_key.split(" ", 1)
    parts = [p for p in template.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        api_group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        api_group, rest = parts[1], parts[3:]
    else:
        raise ValueError(f"{route_key}: not a resource request (a ClusterRole rule cannot grant it)")
    if rest[0] == "namespaces" and len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
        rest = rest[2:]
    if len(rest) > 3:
        raise ValueError(f"{route_key}: more path segments than resource/name/subresource")
    resource = "/".join([rest[0], *rest[2:]])
    named = len(rest) > 1
    if method in ("GET", "HEAD"):
        verb = "watch" if watch else ("get" if named else "list")
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    elif method in ("POST", "PUT", "PATCH"):
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]
    else:
        raise ValueError(f"{route_key}: no Kubernetes verb for {method}")
    return Right(verb, api_group, resource)


def _rbac_documents() -> dict[str, dict[str, Any]]:
    documents = yaml.safe_load_all(KUBERNETES_RBAC.read_text(encoding="utf-8"))
    return {doc["kind"]: doc for doc in documents}


def granted_rights(cluster_role: dict[str, Any]) -> set[Right]:
    """Every right the ClusterRole's rules grant. Wildcards, resourceNames and nonResourceURLs are
    refused: they cannot be compared with the rights used, and least privilege does without them."""
    rights = set()
    for rule in cluster_role["rules"]:
        if set(rule) != RULE_KEYS:
            raise ValueError(f"rule {rule}: only {sorted(RULE_KEYS)} are expected")
        wildcards = [v for v in (*rule["apiGroups"], *rule["resources"], *rule["verbs"]) if "*" in v]
        if wildcards:
            raise ValueError(f"rule {rule}: wildcard {wildcards}")
        rights |= {
            Right(verb, group, resource)
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }
    return rights


# --- how the API server sees a request ------------------------------------------------------------


def _route(path: str) -> str:
    from sandbox.aks_emulator.faults import route_template

    return route_template("kube", path)


@pytest.mark.parametrize(
    ("method", "path", "watch", "expected"),
    [
        ("GET", "/api/v1/nodes", False, Right("list", "", "nodes")),
        ("GET", "/api/v1/nodes", True, Right("watch", "", "nodes")),
        ("GET", "/api/v1/nodes/aks-work-0", False, Right("get", "", "nodes")),
        ("PATCH", "/api/v1/nodes/aks-work-0", False, Right("patch", "", "nodes")),
        ("PUT", "/api/v1/nodes/aks-work-0", False, Right("update", "", "nodes")),
        ("GET", "/api/v1/pods", False, Right("list", "", "pods")),
        ("GET", "/api/v1/namespaces/apps/pods", False, Right("list", "", "pods")),
        ("GET", "/api/v1/namespaces/apps/pods/web-1", False, Right("get", "", "pods")),
        ("DELETE", "/api/v1/namespaces/apps/pods/web-1", False, Right("delete", "", "pods")),
        ("DELETE", "/api/v1/namespaces/apps/pods", False, Right("deletecollection", "", "pods")),
        ("POST", "/api/v1/namespaces/apps/pods/web-1/eviction", False, Right("create", "", "pods/eviction")),
        ("GET", "/api/v1/namespaces/apps", False, Right("get", "", "namespaces")),
        ("PUT", "/api/v1/namespaces/apps/status", False, Right("update", "", "namespaces/status")),
        ("GET", "/api/v1/events", False, Right("list", "", "events")),
        ("GET", "/apis/policy/v1/poddisruptionbudgets", False, Right("list", "policy", "poddisruptionbudgets")),
        ("PATCH", "/apis/policy/v1/namespaces/apps/poddisruptionbudgets/db", False,
         Right("patch", "policy", "poddisruptionbudgets")),
        ("POST", "/apis/policy/v1/namespaces/apps/poddisruptionbudgets", False,
         Right("create", "policy", "poddisruptionbudgets")),
        ("GET", "/apis/apps/v1/namespaces/apps/statefulsets", False, Right("list", "apps", "statefulsets")),
        ("GET", "/apis/events.k8s.io/v1/events", False, Right("list", "events.k8s.io", "events")),
    ],
)
def test_a_counted_request_maps_to_the_right_the_api_server_checks(method, path, watch, expected):
    # GIVEN a request as the emulator counts it (method + route template)
    # WHEN it is mapped to RBAC's request attributes THEN it is the right Kubernetes authorizes
    assert request_right(f"{method} {_route(path)}", watch=watch) == expected


@pytest.mark.parametrize("path", ["/version", "/api", "/apis", "/apis/apps/v1", "/healthz"])
def test_discovery_and_health_requests_are_not_resource_rights(path):
    # GIVEN a non-resource request WHEN it is mapped THEN the mapping refuses it: a ClusterRole's
    # resource rules cannot grant it, so an adapter that starts sending one must be looked at
    with pytest.raises(ValueError, match="not a resource request"):
        request_right(f"GET {_route(path)}")


@pytest.mark.parametrize(
    ("rule", "refused"),
    [
        ({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}, "wildcard"),
        ({"apiGroups": ["*"], "resources": ["nodes"], "verbs": ["get"]}, "wildcard"),
        ({"apiGroups": [""], "resources": ["nodes"], "verbs": ["*"]}, "wildcard"),
        ({"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"], "resourceNames": ["n1"]}, "only"),
        ({"nonResourceURLs": ["/healthz"], "verbs": ["get"]}, "only"),
    ],
)
def test_rules_that_cannot_be_compared_are_refused(rule, refused):
    # GIVEN a ClusterRole rule with a wildcard or a narrowing the comparison cannot model
    # WHEN its rights are expanded THEN it is refused, naming why
    with pytest.raises(ValueError, match=refused):
        granted_rights({"rules": [rule]})


# --- the adapter through every port method ----------------------------------------------------------


@dataclass(frozen=True)
class ClusterObjects:
    """Names of objects in the emulated cluster that the port calls act on."""

    node: str
    pod_to_evict: tuple[str, str]
    pod_to_delete: tuple[str, str]
    pdb: tuple[str, str]


@dataclass(frozen=True)
class PortCall:
    method: str  # a method of upgrade.ports.Kube
    case: str
    call: Callable[[KubernetesKube, ClusterObjects], Any]
    succeeded: Callable[[Any], bool]  # the call did its work (a no-op patch would send no PATCH)


def _did_patch(result: Any) -> bool:
    return result is True


def _returned(result: Any) -> bool:
    return result is None


def _listed_some(result: Any) -> bool:
    return isinstance(result, list) and len(result) > 0


def _is_list(result: Any) -> bool:
    return isinstance(result, list)


def _replica_set(kube: KubernetesKube, deployment: str) -> str:
    """The ReplicaSet of a Deployment in "apps" (its name has the pod template's hash)."""
    return next(w for w in kube.list_workloads(namespace="apps") if w.name == deployment).replica_sets[0]


def _rescale(kube: KubernetesKube, kind: str, name: str, replicas: int) -> Any:
    return kube.replace_scale(kind, "apps", name, replicas,
                              resource_version=kube.get_scale(kind, "apps", name).resource_version)


PORT_CALLS = [
    PortCall("list_nodes", "all", lambda k, o: k.list_nodes(), _listed_some),
    PortCall("list_nodes", "by pool label",
             lambda k, o: k.list_nodes(label_selector="kubernetes.azure.com/agentpool=work"), _listed_some),
    PortCall("list_nodes", "by name", lambda k, o: k.list_nodes(field_selector=f"metadata.name={o.node}"),
             _listed_some),
    PortCall("get_node", "one node", lambda k, o: k.get_node(o.node), lambda node: node.name != ""),
    PortCall("set_unschedulable", "cordon", lambda k, o: k.set_unschedulable(o.node, True), _did_patch),
    PortCall("set_unschedulable", "uncordon", lambda k, o: k.set_unschedulable(o.node, False), _did_patch),
    PortCall("set_node_label", "quarantine label",
             lambda k, o: k.set_node_label(o.node, QUARANTINE_LABEL, "Quarantined"), _did_patch),
    PortCall("set_node_label", "remove the label",
             lambda k, o: k.set_node_label(o.node, QUARANTINE_LABEL, None), _did_patch),
    PortCall("list_pods", "all namespaces", lambda k, o: k.list_pods(), _listed_some),
    PortCall("list_pods", "one namespace", lambda k, o: k.list_pods(namespace="apps", label_selector="app=web"),
             _listed_some),
    PortCall("list_pods", "on a node", lambda k, o: k.list_pods(node=o.node), _is_list),
    PortCall("get_pod", "one pod", lambda k, o: k.get_pod(*o.pod_to_evict), lambda pod: pod.uid != ""),
    PortCall("evict", "a pod no PDB protects", lambda k, o: k.evict(*o.pod_to_evict), _returned),
    PortCall("daemonset_exists", "a DaemonSet", lambda k, o: k.daemonset_exists("kube-system", "kube-proxy"),
             lambda exists: exists is True),
    PortCall("daemonset_exists", "a missing one", lambda k, o: k.daemonset_exists("apps", "no-such-daemonset"),
             lambda exists: exists is False),
    PortCall("delete_pod", "an unmanaged pod", lambda k, o: k.delete_pod(*o.pod_to_delete, grace_seconds=0),
             _returned),
    PortCall("list_pdbs", "all namespaces", lambda k, o: k.list_pdbs(), _listed_some),
    PortCall("list_pdbs", "one namespace", lambda k, o: k.list_pdbs(namespace="apps"), _listed_some),
    PortCall("get_pdb_manifest", "one PDB", lambda k, o: k.get_pdb_manifest(*o.pdb),
             lambda manifest: "minAvailable" in manifest.spec),
    PortCall("patch_pdb_spec", "relax a PDB",
             lambda k, o: k.patch_pdb_spec(*o.pdb, {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "db"}}}),
             lambda manifest: manifest.spec.get("maxUnavailable") == 1),
    PortCall("list_workloads", "all namespaces", lambda k, o: k.list_workloads(), _listed_some),
    PortCall("list_workloads", "one namespace", lambda k, o: k.list_workloads(namespace="apps"), _listed_some),
    PortCall("get_scale", "a Deployment's", lambda k, o: k.get_scale("Deployment", "apps", "web"),
             lambda scale: scale.replicas >= 1),
    PortCall("replace_scale", "a Deployment's, conditionally",
             lambda k, o: _rescale(k, "Deployment", "web", 3), lambda scale: scale.replicas == 3),
    PortCall("get_scale", "a ReplicaSet's", lambda k, o: k.get_scale("ReplicaSet", "apps", _replica_set(k, "db")),
             lambda scale: scale.replicas >= 1),
    PortCall("replace_scale", "a ReplicaSet's, conditionally",
             lambda k, o: _rescale(k, "ReplicaSet", _replica_set(k, "db"), 1), lambda scale: scale.replicas == 1),
    PortCall("get_scale", "a StatefulSet's", lambda k, o: k.get_scale("StatefulSet", "apps", "store"),
             lambda scale: scale.replicas >= 1),
    PortCall("replace_scale", "a StatefulSet's, conditionally",
             lambda k, o: _rescale(k, "StatefulSet", "store", 2), lambda scale: scale.replicas == 2),
    PortCall("list_volume_claims", "one namespace", lambda k, o: k.list_volume_claims(namespace="apps"),
             _listed_some),
    PortCall("list_autoscalers", "one namespace", lambda k, o: k.list_autoscalers(namespace="apps"), _listed_some),
    PortCall("get_autoscaler", "one HPA", lambda k, o: k.get_autoscaler("apps", "web-hpa"),
             lambda hpa: hpa.min_replicas >= 1),
    PortCall("patch_autoscaler_bounds", "raise an HPA's minReplicas, conditionally",
             lambda k, o: k.patch_autoscaler_bounds("apps", "web-hpa", 4, 6,
                                                    resource_version=k.get_autoscaler("apps", "web-hpa").resource_version),
             lambda hpa: (hpa.min_replicas, hpa.max_replicas) == (4, 6)),
    PortCall("list_events", "every reason", lambda k, o: k.list_events(), _is_list),
    PortCall("list_events", "upgrade reasons", lambda k, o: k.list_events(reasons=("Surge", "Drain")), _is_list),
]


def _kube_port_methods() -> set[str]:
    return {name for name, member in vars(Kube).items() if callable(member) and not name.startswith("_")}


def test_the_port_calls_cover_every_kube_port_method():
    # GIVEN the Kube port WHEN its methods are compared with the calls the RBAC check makes
    # THEN none is missing: a new port method must be exercised before its rights are trusted
    assert {c.method for c in PORT_CALLS} == _kube_port_methods()


def _cluster_builder():
    from sandbox.aks_emulator.scenarios import ClusterBuilder

    return (
        ClusterBuilder("aks-rbac")
        .pool("work", count=2)
        .daemonset("kube-system", "kube-proxy")
        .deployment("apps", "web", replicas=2, pool="work")
        .deployment("apps", "db", replicas=1, pool="work")
        .pdb("apps", "db-pdb", app="db", min_available=1)
        .pod("apps", "scratch", on=("work", 0))
        .statefulset("apps", "store", replicas=1)
        .hpa("apps", "web-hpa", target=("Deployment", "web"), min_replicas=2, max_replicas=4)
    )


class RequestRecorder:
    """Sees each request the adapter's REST client sends, query string included: the emulator's
    route counts leave the query out, and only ``?watch`` tells a watch from a list."""

    def __init__(self, kube: KubernetesKube, monkeypatch: pytest.MonkeyPatch) -> None:
        self.watched_routes: set[str] = set()
        self.routes: set[str] = set()
        send = kube.api_client.rest_client.request

        def record(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            parts = urlsplit(url)
            route = f"{method} {_route(parts.path)}"
            self.routes.add(route)
            if parse_qs(parts.query).get("watch", ["false"])[0] in ("true", "1"):
                self.watched_routes.add(route)
            return send(method, url, *args, **kwargs)

        monkeypatch.setattr(kube.api_client.rest_client, "request", record)

    def clear(self) -> None:
        self.routes.clear()
        self.watched_routes.clear()


@dataclass(frozen=True)
class UsedRights:
    by_call: dict[str, set[Right]]  # "method (case)" -> rights its requests needed

    def rights(self) -> set[Right]:
        return set().union(*self.by_call.values())

    def callers(self, right: Right) -> list[str]:
        return sorted(call for call, rights in self.by_call.items() if right in rights)


@pytest.fixture
def used_rights(emulator, tmp_path, monkeypatch) -> UsedRights:
    """Every port call against the emulator, with the rights the requests it sent need."""
    emu = emulator(_cluster_builder())
    (cluster,) = emu.clusters()
    kubeconfig = tmp_path / "kubeconfig"
    emu.write_kubeconfig(cluster.arm_id, kubeconfig)
    kube = kube_from_kubeconfig(str(kubeconfig))
    try:
        node = kube.list_nodes(label_selector="kubernetes.azure.com/agentpool=work")[0].name
        web_pod = kube.list_pods(namespace="apps", label_selector="app=web")[0]
        objects = ClusterObjects(node, ("apps", web_pod.name), ("apps", "scratch"), ("apps", "db-pdb"))
        recorder = RequestRecorder(kube, monkeypatch)
        by_call: dict[str, set[Right]] = {}
        for port_call in PORT_CALLS:
            label = f"{port_call.method} ({port_call.case})"
            emu.faults.reset_counts()
            recorder.clear()
            result = port_call.call(kube, objects)
            counted = set(emu.faults.counts("kube"))
            assert port_call.succeeded(result), f"{label} did not do its work: {result!r}"
            # The emulator counted exactly what the adapter sent: nothing else talks to it.
            assert counted and counted == recorder.routes, f"{label}: server {counted}, client {recorder.routes}"
            by_call[label] = {request_right(route, watch=route in recorder.watched_routes) for route in counted}
        return UsedRights(by_call)
    finally:
        kube.close()


def test_the_cluster_role_grants_every_right_the_adapter_uses(used_rights):
    # GIVEN the rights the adapter's requests need, through every Kube port method
    granted = granted_rights(_rbac_documents()["ClusterRole"])
    # WHEN they are compared with what the ClusterRole grants
    missing = used_rights.rights() - granted
    # THEN each is granted (else the call fails with 403 on a real cluster)
    assert missing == set(), "used but not granted (403 in Azure):\n" + "\n".join(
        f"  {right}: {', '.join(used_rights.callers(right))}" for right in sorted(missing)
    )


def test_the_cluster_role_grants_nothing_the_adapter_does_not_use(used_rights):
    # GIVEN the rights the adapter's requests need, through every Kube port method
    granted = granted_rights(_rbac_documents()["ClusterRole"])
    # WHEN the ClusterRole's rights are compared with them
    unused = granted - used_rights.rights()
    # THEN the role grants nothing more (least privilege)
    assert unused == set(), "granted but never used: " + ", ".join(map(str, sorted(unused)))


def test_the_cluster_role_is_bound_to_the_app_identity_only():
    # GIVEN the RBAC manifest WHEN its binding is read
    documents = _rbac_documents()
    binding = documents["ClusterRoleBinding"]
    # THEN it binds this ClusterRole to the app identity's principal id, and to nobody else
    assert set(documents) == {"ClusterRole", "ClusterRoleBinding"}
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": documents["ClusterRole"]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "${APP_IDENTITY_PRINCIPAL_ID}"}
    ]


def _readme_kubernetes_rights() -> set[Right]:
    """The rights in infra/README.md's Kubernetes table: | `group` | `resource`, ... | verbs | why |."""
    text = INFRA_README.read_text(encoding="utf-8")
    section = text.split("### Kubernetes rights", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    rights = set()
    for row in rows:
        group_cell, resources_cell, verbs_cell = [cell.strip() for cell in row.strip("|").split("|")][:3]
        group = re.findall(r"`([^`]*)`", group_cell)[0].strip('"')
        rights |= {
            Right(verb.strip(), group, resource)
            for resource in re.findall(r"`([^`]+)`", resources_cell)
            for verb in verbs_cell.split(",")
        }
    return rights


def test_the_readme_documents_exactly_the_granted_kubernetes_rights():
    # GIVEN infra/README.md's table of Kubernetes rights WHEN compared with the ClusterRole
    # THEN the documentation lists the same rights
    assert _readme_kubernetes_rights() == granted_rights(_rbac_documents()["ClusterRole"])


# --- Azure RBAC for Kubernetes authorization ----------------------------------------------------------


def azure_data_action(right: Right) -> str:
    """The data action AKS checks for a Kubernetes request when Azure RBAC authorizes the cluster.
    Its authorization webhook builds ``<prefix>/[<group>/]<resource>/<action>``: get, list and watch
    are read; create, update and patch are write; delete and deletecollection are delete; a
    subresource counts as its resource, except pods/exec, which has its own action."""
    resource, _, subresource = right.resource.partition("/")
    if (resource, subresource) == ("pods", "exec"):
        action = "pods/exec/action"
    else:
        verb = {"get": "read", "list": "read", "watch": "read", "create": "write", "update": "write",
                "patch": "write", "delete": "delete", "deletecollection": "delete"}[right.verb]
        action = f"{resource}/{verb}"
    return "/".join(filter(None, (AKS_DATA_ACTION_PREFIX, right.api_group, action)))


@pytest.mark.parametrize(("right", "data_action"), [
    (Right("list", "", "nodes"), "Microsoft.ContainerService/managedClusters/nodes/read"),
    (Right("patch", "", "nodes"), "Microsoft.ContainerService/managedClusters/nodes/write"),
    (Right("create", "", "pods/eviction"), "Microsoft.ContainerService/managedClusters/pods/write"),
    (Right("create", "", "pods/exec"), "Microsoft.ContainerService/managedClusters/pods/exec/action"),
    (Right("deletecollection", "", "pods"), "Microsoft.ContainerService/managedClusters/pods/delete"),
    (Right("get", "policy", "poddisruptionbudgets"),
     "Microsoft.ContainerService/managedClusters/policy/poddisruptionbudgets/read"),
    (Right("watch", "apps", "deployments"), "Microsoft.ContainerService/managedClusters/apps/deployments/read"),
])
def test_a_kubernetes_right_maps_to_the_data_action_aks_checks(right, data_action):
    assert azure_data_action(right) == data_action


def test_the_kubernetes_data_role_holds_exactly_the_data_actions_the_adapter_needs(used_rights):
    # GIVEN the rights the adapter's requests need, through every Kube port method
    needed = {azure_data_action(right) for right in used_rights.rights()}
    # WHEN they are compared with the custom Azure role for Azure RBAC clusters
    parsed = parse_bicep([KUBERNETES_DATA_ROLE])
    assert KUBERNETES_DATA_ROLE not in parsed.errors, parsed.errors
    granted = variable_value(parsed.templates[KUBERNETES_DATA_ROLE], "kubernetesDataActions")
    # THEN the role holds each of them (else a 403 on such a cluster) and nothing more, once each
    assert len(granted) == len(set(granted))
    assert set(granted) == needed, (f"missing: {sorted(needed - set(granted))}; "
                                    f"unused: {sorted(set(granted) - needed)}")
