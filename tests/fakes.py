"""In-memory fakes of the ports (upgrade.ports) for unit tests.

They keep the contracts the real adapters keep, so a service tested against them behaves the
same on Azure: ETag-conditional writes raise Conflict on a mismatch, one active run per
cluster/pool, NotFound for missing runs, values are copied in and out (no aliasing).

Fault hooks (``FakeQueue.fail_sends``, ``InMemoryRunStore.before_update``) let tests simulate a
worker dying between two effects.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from upgrade.domain.alerts import Alert
from upgrade.domain.model import ClusterRef
from upgrade.domain.policy import PoolPolicy, UpgradePolicy
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.domain.steps import StepMessage
from upgrade.errors import Conflict, NotFound
from upgrade.ports import Aks, Kube

DEFAULT_NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


class FixedClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, now: datetime = DEFAULT_NOW) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current


class SimulatedCrash(RuntimeError):
    """Raised by a fault hook: the worker "died" at this point."""


@dataclass(frozen=True)
class SentMessage:
    message: StepMessage
    delay_seconds: float


class FakeQueue:
    """The step queue: records what was sent (with its delay) and what went to poison."""

    def __init__(self) -> None:
        self.sent: list[SentMessage] = []
        self.poison: list[str] = []
        self.fail_sends = 0  # the next N sends raise SimulatedCrash (the host died before sending)
        self._lock = threading.Lock()

    def send(self, message: StepMessage, *, delay_seconds: float = 0.0) -> None:
        with self._lock:
            if self.fail_sends > 0:
                self.fail_sends -= 1
                raise SimulatedCrash(f"send of {message.step}#{message.attempt} lost")
            self.sent.append(SentMessage(message, delay_seconds))

    def send_to_poison(self, body: str) -> None:
        with self._lock:
            self.poison.append(body)

    def take(self) -> list[SentMessage]:
        """Everything sent so far, clearing the queue (what the host would deliver next)."""
        with self._lock:
            sent, self.sent = self.sent, []
            return sent


def _lock_key(cluster: str, pool: str | None) -> tuple[str, str]:
    return cluster.lower(), (pool or "").lower()


def _check_size(run: RunRecord) -> None:
    """The Table store's limits hold here too: a record too large for it is refused the same way."""
    from upgrade.adapters.tables import check_entity_size, pack_entity

    check_entity_size(pack_entity(run.for_storage()), f"run {run.run_id}")


class InMemoryRunStore:
    """RunStore with the Table store's semantics.

    ``before_update(run)`` is called before each update is applied; a test can raise from it to
    simulate a crash or a concurrent change. ``writes`` counts successful creates and updates.
    """

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._active: dict[tuple[str, str], str] = {}  # (cluster, pool) -> run id holding the pool
        self._history: dict[str, list[HistoryEntry]] = {}
        self._etags = itertools.count(1)
        self._lock = threading.RLock()
        self.before_update: Callable[[RunRecord], None] | None = None
        self.writes = 0

    def _new_etag(self) -> str:
        return f'W/"{next(self._etags)}"'

    def create(self, run: RunRecord) -> RunRecord:
        _check_size(run)
        with self._lock:
            if run.run_id in self._runs:
                raise Conflict(f"run {run.run_id} already exists", code=run.run_id)
            key = _lock_key(run.cluster, run.pool)
            if run.active:
                holder = self._active.get(key)
                if holder is not None:
                    raise Conflict(
                        f"run {holder} is already active on {run.cluster} pool {run.pool or '(cluster)'}",
                        code=holder,
                    )
                self._active[key] = run.run_id
            stored = replace(run, etag=self._new_etag())
            self._runs[run.run_id] = stored
            self.writes += 1
            return stored

    def get(self, run_id: str) -> RunRecord:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise NotFound(f"run {run_id} not found")
            return run

    def update(self, run: RunRecord) -> RunRecord:
        if self.before_update is not None:
            self.before_update(run)
        _check_size(run)
        with self._lock:
            current = self._runs.get(run.run_id)
            if current is None:
                raise NotFound(f"run {run.run_id} not found")
            if current.etag != run.etag:
                raise Conflict(f"run {run.run_id} changed since it was read (ETag mismatch)")
            stored = replace(run, etag=self._new_etag())
            self._runs[run.run_id] = stored
            key = _lock_key(run.cluster, run.pool)
            if not stored.active and self._active.get(key) == run.run_id:
                del self._active[key]  # a final status releases the pool
            self.writes += 1
            return stored

    def find_active(self, cluster: str, pool: str | None) -> RunRecord | None:
        with self._lock:
            holder = self._active.get(_lock_key(cluster, pool))
            return self._runs[holder] if holder else None

    def overdue(self, before: datetime, *, limit: int = 100) -> Sequence[RunRecord]:
        with self._lock:
            active = [self._runs[run_id] for run_id in self._active.values()]
        due = [(r.live_due(), r) for r in active]
        late = sorted(((d, r) for d, r in due if d is not None and d < before), key=lambda pair: pair[0])
        return [r for _, r in late][:limit]

    def list_runs(self, *, cluster: str | None = None, limit: int = 50) -> Sequence[RunRecord]:
        with self._lock:
            runs = [r for r in self._runs.values() if cluster is None or r.cluster.lower() == cluster.lower()]
        return sorted(runs, key=lambda r: r.created_at, reverse=True)[:limit]

    def append_history(self, entry: HistoryEntry) -> None:
        with self._lock:
            self._history.setdefault(entry.run_id, []).append(entry)

    def history(self, run_id: str) -> Sequence[HistoryEntry]:
        with self._lock:
            return sorted(self._history.get(run_id, []), key=lambda h: (h.at, h.attempt))


class InMemoryStateStore:
    """StateStore: small keyed documents with ETags; insert with etag None, replace on match."""

    def __init__(self) -> None:
        self._docs: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._etags = itertools.count(1)
        self._lock = threading.Lock()

    def get(self, partition: str, key: str) -> tuple[dict[str, Any], str] | None:
        with self._lock:
            doc = self._docs.get((partition, key))
            return (copy.deepcopy(doc[0]), doc[1]) if doc else None

    def put(self, partition: str, key: str, value: dict[str, Any], *, etag: str | None) -> str:
        with self._lock:
            current = self._docs.get((partition, key))
            if etag is None and current is not None:
                raise Conflict(f"state {partition}/{key} already exists")
            if etag is not None and (current is None or current[1] != etag):
                raise Conflict(f"state {partition}/{key} changed since it was read (ETag mismatch)")
            new_etag = f'W/"{next(self._etags)}"'
            self._docs[(partition, key)] = (copy.deepcopy(value), new_etag)
            return new_etag

    def delete(self, partition: str, key: str, *, etag: str | None = None) -> None:
        with self._lock:
            current = self._docs.get((partition, key))
            if etag is not None and (current is None or current[1] != etag):
                raise Conflict(f"state {partition}/{key} changed or was removed since it was read")
            self._docs.pop((partition, key), None)

    def list(self, partition: str) -> Sequence[tuple[str, dict[str, Any]]]:
        with self._lock:
            return sorted(
                (key, copy.deepcopy(doc[0])) for (part, key), doc in self._docs.items() if part == partition
            )


class FakeAlertSink:
    """Records delivered alerts; ``fail_next`` makes the next N deliveries fail (an unreachable
    topic): those alerts are kept in ``undelivered`` and publish reports False, as the real sinks do."""

    def __init__(self) -> None:
        self.published: list[Alert] = []
        self.undelivered: list[Alert] = []
        self.fail_next = 0

    def publish(self, alert: Alert) -> bool:
        if self.fail_next > 0:
            self.fail_next -= 1
            self.undelivered.append(alert)
            return False
        self.published.append(alert)
        return True

    def kinds(self) -> list[str]:
        return [a.kind for a in self.published]


def unreachable(url: str, timeout: float, allowed_hosts: tuple[str, ...] = ()) -> int:
    """The default HTTP probe of a unit test: there is no network."""
    raise OSError(f"{url}: no network in unit tests")


@dataclass(frozen=True)
class FakeClusterSearch:
    """Resource Graph's tag query over ``FakePlatform.cluster_tags`` (tag names without case)."""

    tags: Mapping[str, Mapping[str, str]]

    def clusters_tagged(self, subscriptions: Sequence[str], tags: Mapping[str, str]) -> list[str]:
        wanted = {k.lower(): v for k, v in tags.items()}
        subs = {s.lower() for s in subscriptions}
        return sorted(c for c, have in self.tags.items() if ClusterRef.parse(c).subscription_id.lower() in subs
                      and all({k.lower(): v for k, v in have.items()}.get(k) == v for k, v in wanted.items()))


@dataclass
class FakePlatform:
    """A Platform of fakes. ``kubes`` maps a cluster ARM id to its Kube fake, ``aks_by_subscription``
    a subscription id to its Aks fake; ``allowed_clusters`` defaults to the clusters in ``kubes``,
    ``policy`` to the policy's defaults; ``http_status`` answers the blue-green HTTP probes."""

    clock: FixedClock = field(default_factory=FixedClock)
    queue: FakeQueue = field(default_factory=FakeQueue)
    runs: InMemoryRunStore = field(default_factory=InMemoryRunStore)
    state: InMemoryStateStore = field(default_factory=InMemoryStateStore)
    alerts: FakeAlertSink = field(default_factory=FakeAlertSink)
    kubes: Mapping[str, Kube] = field(default_factory=dict)
    aks_by_subscription: Mapping[str, Aks] = field(default_factory=dict)
    allowed_clusters: frozenset[str] | None = None
    policy: UpgradePolicy = field(default_factory=lambda: UpgradePolicy(defaults=PoolPolicy()))
    http_status: Callable[[str, float, tuple[str, ...]], int] = unreachable
    cluster_tags: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # ARM id -> tags (Resource Graph)
    fleets: Mapping[str, Any] = field(default_factory=dict)  # subscription id -> Fleet fake

    def __post_init__(self) -> None:
        if self.allowed_clusters is None:
            self.allowed_clusters = frozenset(self.kubes)

    def kube(self, cluster: ClusterRef) -> Kube:
        for arm_id, kube in self.kubes.items():
            if arm_id.lower() == cluster.arm_id.lower():
                return kube
        raise KeyError(f"no fake Kube for {cluster.arm_id}")

    def cluster_search(self) -> FakeClusterSearch:
        return FakeClusterSearch(self.cluster_tags)

    def fleet(self, subscription_id: str) -> Any:
        for subscription, fleet in self.fleets.items():
            if subscription.lower() == subscription_id.lower():
                return fleet
        raise KeyError(f"no fake Fleet for subscription {subscription_id}")

    def aks(self, cluster: ClusterRef) -> Aks:
        for subscription, aks in self.aks_by_subscription.items():
            if subscription.lower() == cluster.subscription_id.lower():
                return aks
        raise KeyError(f"no fake Aks for subscription {cluster.subscription_id}")
