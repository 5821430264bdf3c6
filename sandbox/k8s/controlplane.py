"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler (one all-in-one binary, a process each) and kwok for fake kubelets.

``with ControlPlane(pools=[Pool("system", 1, mode="System"), Pool("nodepool1", 2)]) as cp`` starts
them from the binaries ``make k8s`` builds (``sandbox.k8s.binaries``), on free loopback ports, in a
temporary folder:

- TLS everywhere with a freshly generated CA (``sandbox.k8s.pki``);
- RBAC on; static bearer tokens for an admin (``system:masters``) and for the app's identity,
  which is bound only to the ClusterRole in ``infra/k8s/upgrade-operator-rbac.yaml``;
- the controller manager's default controllers (disruption, ReplicaSet, Deployment, DaemonSet,
  garbage collector, namespace, node lifecycle, ...) and the scheduler;
- kwok managing the nodes annotated ``kwok.x-k8s.io/node: fake``: nodes get Ready and keep their
  heartbeats, scheduled pods become Running and Ready, deleted pods go away;
- nodes labelled and tainted like AKS pool nodes (the same labels the AKS emulator gives).

The ServiceAccount admission plugin is off: pods here never mount tokens, and without it a pod
created right after its namespace cannot race the service-account controller.

Every process runs in its own session and is stopped by process group (``sandbox.serving``);
their output goes to ``logs/<component>.log`` in the work folder, quoted when a start fails.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox.aks_emulator.kube import DEFAULT_NODE_IMAGE, RESERVED_CPU_MILLIS, aks_node_labels
from sandbox.k8s import pki
from sandbox.k8s.binaries import REPO_ROOT, Binaries, binaries, kubernetes_version
from sandbox.lifecycle import Startable
from sandbox.serving import stop_process_group

INFRA_RBAC = REPO_ROOT / "infra" / "k8s" / "upgrade-operator-rbac.yaml"
APP_USER = "aks-upgrade-app"  # stands for the app identity's principal id in the infra binding
ADMIN_USER = "sandbox-admin"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
SYSTEM_POOL_TAINT = {"key": "CriticalAddonsOnly", "value": "true", "effect": "NoSchedule"}
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
STOP_GRACE_SECONDS = 10.0
START_TIMEOUT_SECONDS = 120.0


class ControlPlaneError(RuntimeError):
    pass


@dataclass(frozen=True)
class Pool:
    """An AKS agent pool's nodes, named like AKS names them (``aks-<pool>-12345678-vmss<index>``);
    ``first`` is the index of the first one (nodes added to a pool later)."""

    name: str
    count: int
    first: int = 0
    mode: str = "User"
    kubernetes_version: str = field(default_factory=lambda: kubernetes_version().removeprefix("v"))
    vm_size: str = "Standard_D4s_v5"
    taints: tuple[dict[str, str], ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    def node_names(self) -> list[str]:
        return [node_name(self.name, i) for i in range(self.first, self.first + self.count)]


def node_name(pool: str, index: int) -> str:
    return f"aks-{pool}-12345678-vmss{index:06x}"


def aks_node(pool: Pool, name: str) -> dict[str, Any]:
    """A Node object as AKS registers it (labels, taints, capacity), managed by kwok."""
    cores = 4
    labels = {
        **aks_node_labels(name, pool=pool.name, mode=pool.mode, vm_size=pool.vm_size,
                          node_image_version=DEFAULT_NODE_IMAGE),
        **pool.labels,
    }
    capacity = {"cpu": str(cores), "memory": f"{cores * 4}Gi", "pods": "110", "ephemeral-storage": "128Gi"}
    taints = [dict(t) for t in pool.taints]
    if pool.mode == "System" and not taints:
        taints = [dict(SYSTEM_POOL_TAINT)]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {KWOK_ANNOTATION: "fake"}},
        "spec": {"taints": taints} if taints else {},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity, cpu=f"{cores * 1000 - RESERVED_CPU_MILLIS}m"),
            "nodeInfo": {"kubeletVersion": f"v{pool.kubernetes_version}", "architecture": "amd64",
                         "operatingSystem": "linux"},
        },
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Identity:
    user: str
    token: str
    groups: tuple[str, ...] = ()


class ControlPlane(Startable):
    """The processes, their keys and kubeconfigs. ``start()``/``stop()`` or a ``with`` block."""

    def __init__(self, *, pools: Sequence[Pool] = (), workdir: Path | None = None,
                 bins: Binaries | None = None) -> None:
        self.bins = bins or binaries()
        self.pools = list(pools)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="aks-upgrade-k8s-"))
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.server = ""
        self.identities = {
            "admin": Identity(ADMIN_USER, _token(), ("system:masters",)),
            "app": Identity(APP_USER, _token()),
            "controller-manager": Identity("system:kube-controller-manager", _token(), ("system:masters",)),
            "scheduler": Identity("system:kube-scheduler", _token(), ("system:masters",)),
            "kwok": Identity("kwok-controller", _token(), ("system:masters",)),
        }
        self.kubeconfigs: dict[str, Path] = {}
        self.pki: pki.Pki | None = None

    # -- starting ------------------------------------------------------------------------------

    def _start(self) -> None:
        missing = self.bins.missing()
        if missing:
            raise ControlPlaneError(f"control-plane binaries not built ({', '.join(missing)}): run `make k8s`")
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.pki = pki.generate(self.workdir)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        tokens = self.workdir / "tokens.csv"
        tokens.write_text("".join(
            f'{i.token},{i.user},{i.user},"{",".join(i.groups)}"\n' for i in self.identities.values()))
        tokens.chmod(0o600)
        for name in self.identities:
            self.kubeconfigs[name] = self._write_kubeconfig(name)

        self._spawn("etcd", [
            "etcd", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-url=http://127.0.0.1:{etcd_port}", f"--listen-peer-url=http://127.0.0.1:{peer_port}",
        ])
        self._wait(lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"), "etcd", "etcd health")
        self._spawn("kube-apiserver", [
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            f"--tls-cert-file={self.pki.serving_cert}", f"--tls-private-key-file={self.pki.serving_key}",
            f"--client-ca-file={self.pki.ca_cert}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC", "--anonymous-auth=false",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.pki.service_account_pub}",
            f"--service-account-signing-key-file={self.pki.service_account_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true", "--profiling=false", "--v=0",
        ])
        self._wait(self._api_ready, "kube-apiserver", "/readyz")
        common = ["--leader-elect=false", "--secure-port=0", "--profiling=false", "--v=0"]
        self._spawn("kube-controller-manager", [
            "kube-controller-manager", f"--kubeconfig={self.kubeconfigs['controller-manager']}",
            f"--service-account-private-key-file={self.pki.service_account_key}",
            f"--root-ca-file={self.pki.ca_cert}", "--use-service-account-credentials=false",
            "--controllers=*", *common,
        ])
        self._spawn("kube-scheduler", [
            "kube-scheduler", f"--kubeconfig={self.kubeconfigs['scheduler']}", *common,
        ])
        self._spawn("kwok", [
            f"--kubeconfig={self.kubeconfigs['kwok']}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            "--cidr=10.244.0.0/16", "--node-ip=10.224.0.10",
            f"--server-address=127.0.0.1:{free_port()}", "--node-lease-duration-seconds=40",
        ], binary=self.bins.kwok)
        self._apply_app_rbac()
        self.add_nodes(self.pools)

    def _spawn(self, name: str, args: list[str], *, binary: Path | None = None) -> None:
        log = (self.workdir / "logs" / f"{name}.log").open("wb")
        process = subprocess.Popen([str(binary or self.bins.controlplane), *args], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.processes.append((name, process))

    def _wait(self, ready: Any, name: str, what: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for proc_name, process in self.processes:
                if process.poll() is not None:
                    raise ControlPlaneError(f"{proc_name} exited ({process.returncode}):\n{self.log_tail(proc_name)}")
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{name}: no {what} after {timeout:.0f}s:\n{self.log_tail(name)}")
            time.sleep(0.2)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / "logs" / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _api_ready(self) -> bool:
        try:
            self.request("GET", "/readyz")
            return True
        except (OSError, urllib.error.URLError, ControlPlaneError):
            return False

    # -- talking to it -------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        return ssl.create_default_context(cafile=str(self.pki.ca_cert))

    def request(self, method: str, path: str, body: Any = None, *, identity: str = "admin",
                content_type: str = "application/json") -> tuple[int, Any]:
        """One HTTPS request as an identity; (status, parsed JSON or text). Raises on 5xx/connection."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.identities[identity].token}", "Content-Type": content_type,
            "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.ssl_context(), timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        if status >= 500:
            raise ControlPlaneError(f"{method} {path}: {status} {raw[:500]!r}")
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace (server-side apply as the admin) one object."""
        path = object_path(obj)
        status, body = self.request("PATCH", f"{path}?fieldManager=sandbox&force=true", obj,
                                    content_type="application/apply-patch+yaml")
        if status >= 300:
            raise ControlPlaneError(f"apply {path}: {status} {body}")
        return body

    def _apply_app_rbac(self) -> None:
        """The infra ClusterRole and its binding, with the app identity as the bound User."""
        text = INFRA_RBAC.read_text().replace("${APP_IDENTITY_PRINCIPAL_ID}", APP_USER)
        for document in yaml.safe_load_all(text):
            self.apply(document)

    def add_nodes(self, pools: Iterable[Pool]) -> list[str]:
        """Register AKS-like nodes for kwok and wait until each is Ready and schedulable."""
        names = []
        for pool in pools:
            for name in pool.node_names():
                status, body = self.request("POST", "/api/v1/nodes", aks_node(pool, name))
                if status != 201:
                    raise ControlPlaneError(f"create node {name}: {status} {body}")
                names.append(name)
        self.wait_nodes_ready(names)
        return names

    def wait_nodes_ready(self, names: Sequence[str]) -> None:
        """Until kwok has made every one of these nodes Ready and schedulable."""
        self._wait(lambda: all(self._node_ready(n) for n in names), "kwok", f"Ready nodes {list(names)}")

    def _node_ready(self, name: str) -> bool:
        status, node = self.request("GET", f"/api/v1/nodes/{name}")
        if status != 200:
            return False
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (node.get("status") or {}).get("conditions") or [])
        not_ready_taint = any(t.get("key") == NOT_READY_TAINT for t in (node.get("spec") or {}).get("taints") or [])
        return ready and not not_ready_taint

    def _write_kubeconfig(self, name: str) -> Path:
        assert self.pki is not None
        identity = self.identities[name]
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": "sandbox", "cluster": {
                "server": self.server,
                "certificate-authority-data": base64.b64encode(self.pki.ca_pem()).decode()}}],
            "users": [{"name": identity.user, "user": {"token": identity.token}}],
            "contexts": [{"name": name, "context": {"cluster": "sandbox", "user": identity.user}}],
        }
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def endpoints(self) -> dict[str, Any]:
        """What ``python -m sandbox.k8s up`` prints."""
        return {
            "server": self.server,
            "kubeconfigs": {name: str(path) for name, path in self.kubeconfigs.items() if name in ("admin", "app")},
            "appUser": APP_USER,
            "caFile": str(self.pki.ca_cert) if self.pki else None,
            "nodes": [n for pool in self.pools for n in pool.node_names()],
            "workdir": str(self.workdir),
            "versions": {"kubernetes": self.bins.controlplane.parent.parent.name},
        }

    # -- stopping ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop in reverse order (kwok and controllers before the API server, etcd last)."""
        while self.processes:
            _, process = self.processes.pop()
            stop_process_group(process, grace_seconds=STOP_GRACE_SECONDS)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _token() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


_CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "Namespace", "Node"}
_RESOURCES = {
    "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "Role": "roles",
    "RoleBinding": "rolebindings", "Namespace": "namespaces", "Node": "nodes", "Pod": "pods",
    "Deployment": "deployments", "ReplicaSet": "replicasets", "DaemonSet": "daemonsets",
    "StatefulSet": "statefulsets", "PodDisruptionBudget": "poddisruptionbudgets",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
}


def object_path(obj: dict[str, Any]) -> str:
    api_version, kind = obj["apiVersion"], obj["kind"]
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    meta = obj["metadata"]
    namespace = "" if kind in _CLUSTER_SCOPED else f"/namespaces/{meta.get('namespace', 'default')}"
    return f"{prefix}{namespace}/{_RESOURCES[kind]}/{meta['name']}"
