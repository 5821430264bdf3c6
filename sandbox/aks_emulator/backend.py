"""The Kubernetes side the emulator's AKS half (ARM agent pools, `upgrader`) drives.

AKS's upgrade behaviour (surge nodes, cordon, drain through evictions, Cordon quarantine, pools
created and deleted) needs only the calls of `KubeBackend`. Two implementations:

- `sandbox.aks_emulator.kube.KubeCluster`, the in-process model the emulator serves as its
  Kubernetes API (the fast default);
- `sandbox.k8s.aks_backend.RealKube`, a real API server (``sandbox.k8s``): nodes are kwok nodes
  created and deleted there, evictions go through the real eviction API and the real disruption
  controller, and the product's kubeconfig points at that server (`KubeEndpoint`).

Both raise the model's exceptions (`PodNotFound`, `DisruptionBlocked`, `EvictionNotSupported`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class KubeEndpoint:
    """Where a cluster's Kubernetes API is and how the cluster's kubeconfig authenticates."""

    url: str
    ca_data: str
    token: str


class KubeBackend(Protocol):
    """What AKS's node work needs from a cluster's Kubernetes API (nodes as Kubernetes JSON)."""

    lock: threading.RLock

    def nodes(self, pool: str | None = None) -> list[dict]: ...

    def get_node(self, name: str) -> dict | None: ...

    def add_node(self, name: str, *, pool: str, kubernetes_version: str, mode: str = ..., vm_size: str = ...,
                 max_pods: int = ..., labels: dict | None = ..., taints: list | None = ..., zone: str | None = ...,
                 node_image_version: str = ...) -> dict: ...

    def remove_node(self, name: str) -> None: ...

    def set_unschedulable(self, name: str, value: bool) -> None: ...

    def set_node_label(self, name: str, key: str, value: str | None) -> None: ...

    def set_node_version(self, name: str, kubernetes_version: str) -> None: ...

    def set_node_image(self, name: str, node_image_version: str) -> None: ...

    def pods_on_node(self, name: str) -> list[dict]: ...

    def evict(self, namespace: str, name: str) -> None: ...

    def delete_pod(self, namespace: str, name: str) -> object: ...

    def record_event(self, *, reason: str, message: str, kind: str, name: str, type: str = ...) -> None: ...
