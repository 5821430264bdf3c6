"""The real-Kubernetes lane: one control plane (``sandbox.k8s``) for the whole session (under
``make test``'s workers the lane is one unit of work, on one worker: ``tests/scheduling.py``).

Each test gets its own namespace and its own agent pool of kwok nodes (``real_cluster``), so tests
that cordon, drain or relax budgets cannot see each other. The product talks to the API server as
the app identity, bound only to the ClusterRole in ``infra/k8s/``; the fixtures set things up as
the admin.

Skipped, with the reason, only when the binaries are not built (``make k8s``); ``make test``
builds them first, so CI always runs this lane.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox.k8s.binaries import binaries
from sandbox.k8s.controlplane import ControlPlane, Pool
from tests.e2e.conftest import wait_until

WAIT_SECONDS = 60.0
_pool_numbers = itertools.count(1)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll until ``condition()`` is truthy (controllers act asynchronously); fail naming ``what``."""
    return wait_until(condition, timeout=timeout, what=what)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    missing = binaries().missing()
    if missing:
        pytest.skip(f"real Kubernetes control plane not built (missing {missing[0]}): run `make k8s`")
    with ControlPlane(pools=[Pool("system", 1, mode="System")]) as cp:
        yield cp


class RealCluster:
    """One test's corner of the shared control plane: a namespace and a pool of its own."""

    def __init__(self, cp: ControlPlane, namespace: str, pool: str) -> None:
        self.cp = cp
        self.namespace = namespace
        self.pool = pool
        self.nodes: list[str] = []

    # -- set-up as the admin -------------------------------------------------------------------

    def add_nodes(self, count: int) -> list[str]:
        created = self.cp.add_nodes([Pool(self.pool, count, first=len(self.nodes))])
        self.nodes += created
        return created

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("metadata", {}).setdefault("namespace", self.namespace)
        return self.cp.apply(obj)

    def deployment(self, name: str, replicas: int = 1, *, labels: dict[str, str] | None = None,
                   grace_seconds: int = 0, empty_dir: bool = False, wait: bool = True) -> dict[str, Any]:
        labels = {"app": name, **(labels or {})}
        deployment = self.create({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": {"kubernetes.azure.com/agentpool": self.pool},
                        "terminationGracePeriodSeconds": grace_seconds,
                        "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                        **({"volumes": [{"name": "cache", "emptyDir": {}}]} if empty_dir else {}),
                    },
                },
            },
        })
        if wait:
            self.wait_ready(f"app={name}", replicas)
        return deployment

    def pdb(self, name: str, selector: dict[str, Any], *, min_available: int | str | None = None,
            max_unavailable: int | str | None = None, expected_allowed: int | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"selector": selector}
        if min_available is not None:
            spec["minAvailable"] = min_available
        if max_unavailable is not None:
            spec["maxUnavailable"] = max_unavailable
        pdb = self.create({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                           "metadata": {"name": name}, "spec": spec})
        if expected_allowed is not None:
            self.wait_pdb(name, expected_allowed)
        return pdb

    # -- reading as the admin ------------------------------------------------------------------

    def get(self, path: str) -> dict[str, Any]:
        status, body = self.cp.request("GET", path)
        assert status == 200, f"GET {path}: {status} {body}"
        return body

    def pods(self, selector: str = "") -> list[dict[str, Any]]:
        query = f"?labelSelector={selector}" if selector else ""
        return self.get(f"/api/v1/namespaces/{self.namespace}/pods{query}")["items"]

    def ready_pods(self, selector: str) -> list[dict[str, Any]]:
        return [p for p in self.pods(selector) if not p["metadata"].get("deletionTimestamp") and any(
            c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))]

    def wait_ready(self, selector: str, count: int) -> list[dict[str, Any]]:
        return wait_for(lambda: (pods := self.ready_pods(selector)) and len(pods) == count and pods,
                        f"{count} Ready pods {selector} in {self.namespace}")

    def pdb_status(self, name: str) -> dict[str, Any]:
        return self.get(f"/apis/policy/v1/namespaces/{self.namespace}/poddisruptionbudgets/{name}").get("status", {})

    def wait_pdb(self, name: str, allowed: int) -> dict[str, Any]:
        """Until the disruption controller has written ``disruptionsAllowed == allowed``."""
        return wait_for(lambda: (s := self.pdb_status(name)).get("disruptionsAllowed") == allowed
                        and s.get("observedGeneration") is not None and s,
                        f"PDB {self.namespace}/{name} to allow {allowed} disruptions")

    def cleanup(self) -> None:
        self.cp.request("DELETE", f"/api/v1/namespaces/{self.namespace}")
        for node in self.nodes:
            self.cp.request("DELETE", f"/api/v1/nodes/{node}")


@pytest.fixture
def real_cluster(control_plane: ControlPlane) -> Iterator[RealCluster]:
    number = next(_pool_numbers)
    namespace, pool = f"t{number}", f"pool{number}"
    status, body = control_plane.request("POST", "/api/v1/namespaces",
                                         {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    assert status == 201, body
    cluster = RealCluster(control_plane, namespace, pool)
    yield cluster
    cluster.cleanup()


@pytest.fixture
def app_kube(control_plane: ControlPlane) -> Iterator[Any]:
    """The product's Kubernetes adapter, authenticated as the app identity."""
    from upgrade.adapters.kube import kube_from_kubeconfig

    kube = kube_from_kubeconfig(str(control_plane.kubeconfigs["app"]))
    yield kube
    kube.close()
