"""The `Emulator`: hosts many emulated AKS clusters and serves their APIs on loopback.

One ARM endpoint serves every cluster of every subscription and resource group; each cluster gets
its own Kubernetes API server on its own port, over TLS with a per-cluster CA (in its kubeconfig). Both kinds of app sit behind the shared
`FaultInjector`, so tests and benchmarks can inject faults and count requests per API and route.
A background thread ticks every cluster's control loops (terminations, ReplicaSets, scheduling),
and Event Grid deliveries run on their own thread. Everything listens on 127.0.0.1, on free ports.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import yaml

from sandbox.aks_emulator.arm import KUBERNETES_VERSIONS, ArmModel, EmulatedCluster, parse_version
from sandbox.aks_emulator.arm_api import ArmRequest, make_arm_app
from sandbox.aks_emulator.backend import KubeBackend, KubeEndpoint
from sandbox.aks_emulator.clock import ScaledClock
from sandbox.aks_emulator.eventgrid import EVENT_GRID_SCHEMA, EventGridPublisher, Subscription
from sandbox.aks_emulator.faults import FaultInjector, FaultRegistry
from sandbox.aks_emulator.fleet import FleetModel
from sandbox.aks_emulator.kube_api import POLL_SECONDS, make_kube_app, make_serving_certificate
from sandbox.serving import LoopbackServer

HOST = "127.0.0.1"
TICK_SECONDS = 0.02


class Emulator:
    """Emulated AKS: ARM for managed clusters and agent pools, a Kubernetes API per cluster."""

    def __init__(self, *, time_scale: float = 60.0, token: str | None = None, fault_seed: int = 0) -> None:
        self.clock = ScaledClock(time_scale)
        self.token = token or secrets.token_urlsafe(24)
        self.faults = FaultRegistry(fault_seed)
        self.events = EventGridPublisher(self.clock)
        self.arm = ArmModel(self.clock, token=self.token, on_rolling_event=self._publish_rolling_event)
        # A minimal Fleet Manager: update runs, gates and their events (sandbox/aks_emulator/fleet.py).
        self.fleet = FleetModel(self.clock, on_gate_event=self.events.publish_event)
        self.arm_url: str | None = None
        # Every ARM request received, in order (method, path, api-version, parsed body).
        self.arm_requests: list[ArmRequest] = []
        self._arm_server: LoopbackServer | None = None
        self._kube_servers: dict[str, LoopbackServer] = {}
        self._stop_ticking = threading.Event()
        self._ticker: threading.Thread | None = None
        self._lock = threading.Lock()

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Emulator:
        """Serve every API; starting a started emulator changes nothing."""
        if self._arm_server is not None:
            return self
        # Quiet servers: the emulator's callers count requests through `faults`.
        arm_app = FaultInjector(make_arm_app(self.arm, self.arm_requests, self.fleet), "arm", self.faults)
        self._arm_server = LoopbackServer(arm_app, name="arm-api", host=HOST, poll_interval=POLL_SECONDS).start()
        self.arm_url = self._arm_server.url
        for cluster in self.clusters():
            self._serve_kube(cluster)
        self._stop_ticking.clear()
        self._ticker = threading.Thread(target=self._tick_forever, name="kube-ticker", daemon=True)
        self._ticker.start()
        self.events.start()
        return self

    def stop(self) -> None:
        self.arm.stop()
        self.events.stop()
        self._stop_ticking.set()
        if self._ticker is not None:
            self._ticker.join(5)
        with self._lock:
            servers = list(self._kube_servers.values())
            self._kube_servers.clear()
        for server in servers:
            server.stop()
        if self._arm_server is not None:
            self._arm_server.stop()
            self._arm_server = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _tick_forever(self) -> None:
        while not self._stop_ticking.wait(TICK_SECONDS):
            for cluster in self.clusters():
                cluster.kube.tick()

    # ---- clusters -------------------------------------------------------------------------------
    def add_cluster(self, subscription_id: str, resource_group: str, name: str, *,
                    kubernetes_version: str = "1.30.0", location: str = "eastus",
                    vcpu_quota: int | None = None, tags: dict[str, str] | None = None,
                    backend: KubeBackend | None = None, endpoint: KubeEndpoint | None = None) -> EmulatedCluster:
        """A managed cluster with no pools yet (add them with `add_pool` or a `ClusterBuilder`). Its
        Kubernetes API is the emulator's own, or a real API server: ``backend`` for AKS's node work,
        ``endpoint`` for its kubeconfig (see `sandbox.aks_emulator.backend`)."""
        cluster = self.arm.add_cluster(subscription_id, resource_group, name, kubernetes_version=kubernetes_version,
                                       location=location, vcpu_quota=vcpu_quota, tags=tags, backend=backend,
                                       endpoint=endpoint)
        if self._arm_server is not None:
            self._serve_kube(cluster)
        return cluster

    def add_pool(self, cluster: EmulatedCluster, name: str, **settings: object):
        """An agent pool with Ready nodes at once; see `ArmModel.add_pool` for the settings."""
        return self.arm.add_pool(cluster, name, **settings)

    def _serve_kube(self, cluster: EmulatedCluster) -> None:
        if cluster.real_kubernetes:
            return  # its kubeconfig points at the real API server
        app = FaultInjector(make_kube_app(cluster.kube, self.token), "kube", self.faults)
        # kubectl and client-go send bearer tokens only over TLS, as to AKS's API server with its cluster CA.
        certificate = make_serving_certificate(cluster.name)
        server = LoopbackServer(app, name=f"kube-api-{cluster.name}", host=HOST,
                                ssl_context=certificate.ssl_context(), poll_interval=POLL_SECONDS).start()
        cluster.kube_ca_data = certificate.ca_data
        with self._lock:
            self._kube_servers[cluster.arm_id.lower()] = server
        cluster.kube_url = server.url

    def clusters(self) -> list[EmulatedCluster]:
        with self.arm.lock:
            return list(self.arm.clusters.values())

    def cluster(self, cluster_arm_id: str) -> EmulatedCluster:
        return self.arm.cluster_by_id(cluster_arm_id)

    def set_vcpu_quota(self, subscription_id: str, vcpus: int | None) -> None:
        """Emulated regional vCPU quota of a subscription (None: unlimited)."""
        self.arm.set_vcpu_quota(subscription_id, vcpus)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no ARM operation is running."""
        return self.arm.wait_idle(timeout)

    def write_kubeconfig(self, cluster_arm_id: str, path: str | Path) -> None:
        """Write a kubeconfig for the cluster (static bearer token user), as `az aks get-credentials`."""
        kubeconfig = self.arm.kubeconfig(self.cluster(cluster_arm_id))
        Path(path).write_text(yaml.safe_dump(kubeconfig, sort_keys=False))

    # ---- Event Grid -----------------------------------------------------------------------------
    def subscribe(self, webhook_url: str, *, schema: str = EVENT_GRID_SCHEMA, duplicate: bool = False,
                  reorder: bool = False, validate: bool = True) -> Subscription:
        """Deliver AKS events to a webhook (schema "EventGridSchema" or "CloudEventSchemaV1_0")."""
        return self.events.subscribe(webhook_url, schema=schema, duplicate=duplicate, reorder=reorder,
                                     validate=validate)

    def publish(self, cluster_arm_id: str, event_type: str, data: dict | None = None) -> dict:
        """Emit an AKS event on demand (NewKubernetesVersionAvailable, ClusterSupportEnding/Ended...).
        Without data, the data AKS would send for this cluster is filled in."""
        cluster = self.cluster(cluster_arm_id)
        short_type = event_type.rsplit(".", 1)[-1]
        if data is None:
            data = self._default_event_data(cluster, short_type)
        return self.events.publish(cluster.arm_id, cluster.name, short_type, data)

    @staticmethod
    def _default_event_data(cluster: EmulatedCluster, event_type: str) -> dict:
        if event_type == "NewKubernetesVersionAvailable":
            minors = sorted({parse_version(v)[:2] for v in KUBERNETES_VERSIONS})
            lowest = ".".join(map(str, minors[0]))
            return {
                "latestSupportedKubernetesVersion": KUBERNETES_VERSIONS[-1],
                "latestStableKubernetesVersion": KUBERNETES_VERSIONS[-2],
                "lowestMinorKubernetesVersion": lowest,
                "latestPreviewKubernetesVersion": KUBERNETES_VERSIONS[-1],
            }
        if event_type in ("ClusterSupportEnding", "ClusterSupportEnded"):
            return {"kubernetesVersion": cluster.kubernetes_version}
        raise ValueError(f"no default data for event type {event_type}; pass data")

    def _publish_rolling_event(self, cluster: EmulatedCluster, pool_name: str, outcome: str) -> None:
        self.events.publish(cluster.arm_id, cluster.name, f"NodePoolRolling{outcome}", {"nodePoolName": pool_name})
