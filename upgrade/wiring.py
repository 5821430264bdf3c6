"""Builds the real adapters from settings, lazily and once per worker.

Only this module (and the CLI's equivalent) turns settings into SDK clients, so a cold start
imports no SDK until a function first needs one. Adapter modules each expose
``from_settings(settings)``; this module only chooses and caches them.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import TYPE_CHECKING

from upgrade.domain.model import ClusterRef
from upgrade.domain.policy import UpgradePolicy
from upgrade.settings import Settings, current_settings

if TYPE_CHECKING:
    from upgrade.ports import Aks, AlertSink, ClusterSearch, Fleet, Kube, RunStore, StateStore, StepQueue


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class AzurePlatform:
    """The Platform the services run on in Azure (and on the dev host against the sandbox)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock = SystemClock()
        self._lock = threading.Lock()
        self._kube: dict[str, Kube] = {}
        self._aks: dict[str, Aks] = {}
        self._fleet: dict[str, Fleet] = {}
        self._search: ClusterSearch | None = None

    @property
    def allowed_clusters(self) -> frozenset[str]:
        return self.settings.allowed_clusters

    @property
    def policy(self) -> UpgradePolicy:
        return self.settings.upgrade_policy

    @cached_property
    def queue(self) -> StepQueue:
        from upgrade.adapters.queue import AzureStepQueue

        return AzureStepQueue.from_settings(self.settings)

    @cached_property
    def runs(self) -> RunStore:
        from upgrade.adapters.tables import TableRunStore

        return TableRunStore.from_settings(self.settings)

    @cached_property
    def state(self) -> StateStore:
        from upgrade.adapters.tables import TableStateStore

        return TableStateStore.from_settings(self.settings)

    @cached_property
    def alerts(self) -> AlertSink:
        from upgrade.adapters.alerts import alert_sink_from_settings

        return alert_sink_from_settings(self.settings)

    def kube(self, cluster: ClusterRef) -> Kube:
        key = cluster.arm_id.lower()
        with self._lock:
            if key not in self._kube:
                from upgrade.adapters.kube import kube_from_settings

                self._kube[key] = kube_from_settings(self.settings, cluster)
            return self._kube[key]

    def http_status(self, url: str, timeout: float, allowed_hosts: tuple[str, ...]) -> int:
        from upgrade.adapters.http_probe import http_status

        return http_status(url, timeout, allowed_hosts)

    def cluster_search(self) -> ClusterSearch:
        with self._lock:
            if self._search is None:
                from upgrade.adapters.resource_graph import search_from_settings

                self._search = search_from_settings(self.settings)
            return self._search

    def aks(self, cluster: ClusterRef) -> Aks:
        key = cluster.subscription_id.lower()
        with self._lock:
            if key not in self._aks:
                from upgrade.adapters.aks import aks_from_settings

                self._aks[key] = aks_from_settings(self.settings, cluster.subscription_id)
            return self._aks[key]

    def fleet(self, subscription_id: str) -> Fleet:
        key = subscription_id.lower()
        with self._lock:
            if key not in self._fleet:
                from upgrade.adapters.fleet import fleet_from_settings

                self._fleet[key] = fleet_from_settings(self.settings, subscription_id)
            return self._fleet[key]


@cache
def platform() -> AzurePlatform:
    """The worker's platform, built on first use."""
    return AzurePlatform(current_settings())
