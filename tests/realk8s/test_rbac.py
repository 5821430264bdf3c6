"""The ClusterRole in infra/ under the real RBAC authorizer.

The app identity is bound only to ``infra/k8s/upgrade-operator-rbac.yaml``'s ClusterRole. Every
method of the Kube port succeeds with it (nothing the product does is missing), and taking away
any one right it grants makes some port call fail with the product's 403 error naming the
forbidden request (nothing granted is unused).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from sandbox.k8s.controlplane import APP_USER, INFRA_RBAC, ControlPlane, Pool
from tests.integration.test_kube_rbac import PORT_CALLS, ClusterObjects, Right, granted_rights
from tests.realk8s.conftest import wait_for
from upgrade.errors import PermanentError

pytestmark = pytest.mark.realk8s

NAMESPACE = "apps"  # the port calls list namespace "apps" and pool "work"
POOL = "work"


def _cluster_role() -> dict[str, Any]:
    return next(d for d in yaml.safe_load_all(INFRA_RBAC.read_text()) if d["kind"] == "ClusterRole")


def _without(role: dict[str, Any], right: Right) -> dict[str, Any]:
    """The ClusterRole with one (group, resource, verb) taken away, everything else kept."""
    role = copy.deepcopy(role)
    rules = []
    for rule in role["rules"]:
        if right.api_group in rule["apiGroups"] and right.resource in rule["resources"] and right.verb in rule["verbs"]:
            rest = [r for r in rule["resources"] if r != right.resource]
            if rest:
                rules.append({**rule, "resources": rest})
            verbs = [v for v in rule["verbs"] if v != right.verb]
            if verbs:
                rules.append({"apiGroups": rule["apiGroups"], "resources": [right.resource], "verbs": verbs})
        else:
            rules.append(rule)
    role["rules"] = rules
    return role


def _allowed(cp: ControlPlane, right: Right) -> bool:
    resource, _, subresource = right.resource.partition("/")
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {
        "resourceAttributes": {"verb": right.verb, "group": right.api_group, "resource": resource,
                               "subresource": subresource}}}
    status, body = cp.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review,
                              identity="app")
    assert status == 201, body
    return bool(body["status"].get("allowed"))


class RbacCluster:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.nodes: list[str] = []

    def create(self, obj: dict[str, Any]) -> None:
        self.cp.apply(obj)

    def reset(self) -> ClusterObjects:
        """Objects the port calls act on, as the last round may have used them up."""
        self.cp.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "scratch", "namespace": NAMESPACE},
                       "spec": {"nodeName": self.nodes[0], "terminationGracePeriodSeconds": 0,
                                "containers": [{"name": "app", "image": "registry.invalid/app:1"}]}})
        # The last round relaxed it through the app's merge patch: start again from the original.
        self.cp.request("DELETE", f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets/db-pdb")
        self.cp.apply({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                       "metadata": {"name": "db-pdb", "namespace": NAMESPACE},
                       "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}})
        web = wait_for(lambda: [p for p in self._pods("app=web") if not p["metadata"].get("deletionTimestamp")
                                and p.get("status", {}).get("phase") == "Running"], "a running web pod")
        wait_for(lambda: self._pods("app=web") and any(
            p["metadata"]["name"] == "scratch" and p.get("status", {}).get("phase") == "Running"
            for p in self._pods("")), "the scratch pod running")
        return ClusterObjects(self.nodes[0], (NAMESPACE, web[0]["metadata"]["name"]), (NAMESPACE, "scratch"),
                              (NAMESPACE, "db-pdb"))

    def _pods(self, selector: str) -> list[dict[str, Any]]:
        query = f"?labelSelector={selector}" if selector else ""
        status, body = self.cp.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods{query}")
        assert status == 200, body
        return body["items"]


@pytest.fixture(scope="module")
def rbac_cluster(control_plane: ControlPlane) -> Iterator[RbacCluster]:
    cluster = RbacCluster(control_plane)
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    cluster.nodes = control_plane.add_nodes([Pool(POOL, 2)])
    for name, replicas in (("web", 2), ("db", 1)):
        cluster.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE},
                        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": {
                            "metadata": {"labels": {"app": name}},
                            "spec": {"nodeSelector": {"kubernetes.azure.com/agentpool": POOL},
                                     "terminationGracePeriodSeconds": 0,
                                     "containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}})
    # the scale-out calls: a StatefulSet's scale and its claims (Pending here: no provisioner), an HPA's bounds
    cluster.create({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "store", "namespace": NAMESPACE},
                    "spec": {"replicas": 1, "serviceName": "store", "selector": {"matchLabels": {"app": "store"}},
                             "template": {"metadata": {"labels": {"app": "store"}},
                                          "spec": {"nodeSelector": {"kubernetes.azure.com/agentpool": POOL},
                                                   "terminationGracePeriodSeconds": 0,
                                                   "containers": [{"name": "app", "image": "registry.invalid/app:1"}]}},
                             "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                                 "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
    cluster.create({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                    "metadata": {"name": "web-hpa", "namespace": NAMESPACE},
                    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                             "minReplicas": 2, "maxReplicas": 4}})
    # daemonset_exists looks for kube-system/kube-proxy (kept to this pool, away from other tests)
    cluster.create({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
                    "spec": {"selector": {"matchLabels": {"app": "kube-proxy"}}, "template": {
                        "metadata": {"labels": {"app": "kube-proxy"}},
                        "spec": {"nodeSelector": {"kubernetes.azure.com/agentpool": POOL},
                                 "tolerations": [{"operator": "Exists"}],
                                 "containers": [{"name": "kube-proxy", "image": "registry.invalid/kube-proxy:1"}]}}}})
    yield cluster
    control_plane.request("DELETE", "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy")
    control_plane.apply(_cluster_role())
    control_plane.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}")
    for node in cluster.nodes:
        control_plane.request("DELETE", f"/api/v1/nodes/{node}")


def _run_port_calls(app_kube: Any, objects: ClusterObjects, *, check: bool = True) -> dict[str, Exception | None]:
    """Each port call's error (None when it succeeded). With ``check``, a call that returned must
    also have done its work; without, a call left with nothing to do (uncordon after a refused
    cordon) is no failure."""
    results: dict[str, Exception | None] = {}
    for call in PORT_CALLS:
        label = f"{call.method} ({call.case})"
        try:
            result = call.call(app_kube, objects)
        except PermanentError as error:
            results[label] = error
            continue
        assert not check or call.succeeded(result), f"{label} did not do its work: {result!r}"
        results[label] = None
    return results


def test_every_port_call_succeeds_as_the_app_identity_with_the_infra_role(rbac_cluster, app_kube):
    # GIVEN the app identity bound only to the infra ClusterRole
    objects = rbac_cluster.reset()
    # WHEN every method of the Kube port runs THEN the real authorizer allows all of it
    failures = {label: str(error) for label, error in _run_port_calls(app_kube, objects).items() if error}
    assert failures == {}


@pytest.mark.parametrize("right", sorted(granted_rights(_cluster_role())), ids=str)
def test_taking_away_any_one_granted_right_makes_a_port_call_fail_with_a_clear_403(
        rbac_cluster, app_kube, control_plane, right: Right):
    # GIVEN the infra ClusterRole without this one right, in force for the app identity
    objects = rbac_cluster.reset()
    control_plane.apply(_without(_cluster_role(), right))
    try:
        wait_for(lambda: not _allowed(control_plane, right), f"RBAC to deny {right}")
        # WHEN every method of the Kube port runs
        results = _run_port_calls(app_kube, objects, check=False)
    finally:
        control_plane.apply(_cluster_role())
        wait_for(lambda: _allowed(control_plane, right), f"RBAC to allow {right} again")
    # THEN at least one call fails, each with a 403 PermanentError that quotes the API server's
    # refusal: which user may not do which verb on which resource
    failed = {label: error for label, error in results.items() if error is not None}
    assert failed, f"nothing needed {right}: the role grants more than the product uses"
    for label, error in failed.items():
        assert isinstance(error, PermanentError) and error.status == 403, (label, error)
        text = str(error)
        assert f'User "{APP_USER}" cannot {right.verb} resource "{right.resource}"' in text, (label, text)
