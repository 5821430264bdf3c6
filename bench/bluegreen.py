"""Blue-green cost on a 200-node pool running 4,000 pods, in compressed but honest time.

Runs the blue-green steps in process against the AKS emulator through the real Kubernetes and
ARM adapters, with in-memory run store and queue. The product's own defaults apply (batches of
10%, 15-minute batch soaks, a 60-minute final soak, progress polled every 10 s, pods with 30 s
grace), nothing capped: one compression factor divides every wait alike, the emulator's clock
(node creation, pod grace and start) and each step message's delay, so a run polls as often as
it would in real time. Step handlers run in real time: at high compression their own duration
counts for more emulated time, so they poll a little less, never more. Prints:

- API calls per migrated pod (Kubernetes + ARM requests the emulator counted / application pods);
- queue messages per node (step messages sent / blue nodes);
- handler CPU seconds per node (CPU of the thread running the step handlers; the emulator and the
  eviction worker threads are not in it);
- Table writes per node (run creates and updates, history rows, state rows: what the in-memory
  stores were asked to write);
- the largest run entity the run store would write, in bytes as Azure Table counts them (UTF-16
  text, compressed chunks as their bytes), and the record's text before compression.

Usage: ``python -m bench.bluegreen [--nodes 200] [--pods 4000] [--compression 200]``
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.aks_emulator.scenarios import ClusterBuilder
from sandbox.aks_emulator.server import Emulator
from sandbox.app_settings import sandbox_app_settings
from tests.fakes import FakeAlertSink, FakeQueue, InMemoryRunStore, InMemoryStateStore
from upgrade.adapters.tables import _run_entity, entity_bytes
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.services import bluegreen, registry
from upgrade.services.step_runner import run_step_message
from upgrade.settings import load_settings
from upgrade.wiring import AzurePlatform


class CountingRunStore(InMemoryRunStore):
    """The in-memory run store, counting writes and the size of the largest run entity."""

    def __init__(self) -> None:
        super().__init__()
        self.history_writes = 0
        self.largest_entity = 0
        self.largest_text = 0

    def _measure(self, run: RunRecord) -> None:
        self.largest_entity = max(self.largest_entity, entity_bytes(_run_entity(run)))
        # before compression: the record's own text, as the adapter hands it to pack_entity
        self.largest_text = max(self.largest_text, sum(len(str(v).encode()) for v in run.for_storage().values()))

    def create(self, run: RunRecord) -> RunRecord:
        stored = super().create(run)
        self._measure(stored)
        return stored

    def update(self, run: RunRecord) -> RunRecord:
        stored = super().update(run)
        self._measure(stored)
        return stored

    def append_history(self, entry: HistoryEntry) -> None:
        super().append_history(entry)
        self.history_writes += 1


class CountingStateStore(InMemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def put(self, *args, **kwargs):
        self.writes += 1
        return super().put(*args, **kwargs)


class BenchPlatform(AzurePlatform):
    """The app's platform (real ARM and Kubernetes adapters), with in-memory runs and queue."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.__dict__.update(queue=FakeQueue(), runs=CountingRunStore(), state=CountingStateStore(),
                             alerts=FakeAlertSink())


def build_cluster(nodes: int, pods: int) -> ClusterBuilder:
    builder = (ClusterBuilder("aks-bench-bluegreen")
               .pool("system", count=1, mode="System", node_taints=["CriticalAddonsOnly=true:NoSchedule"])
               .pool("blue", count=nodes, max_pods=110)
               .daemonset("kube-system", "kube-proxy"))
    replicas = 10
    for index in range(pods // replicas):
        builder.deployment("shop", f"app-{index:03d}", replicas=replicas, cpu_millis=10, grace_seconds=30,
                           place_on=[("blue", (index * replicas + r) % nodes) for r in range(replicas)])
    return builder


# A run is delivered to until it is none of these (it ended, or is stuck: nothing would move it).
IN_PROGRESS = ("running", "paused", "awaiting-decision")


@dataclass
class Delivered:
    """What delivering a run's messages cost: wall and CPU seconds inside the step handlers, the
    messages sent (by step name) and the deliveries made."""

    handler_seconds: float = 0.0
    handler_cpu: float = 0.0
    sent: Counter = field(default_factory=Counter)
    deliveries: int = 0


def deliver_all(platform: BenchPlatform, run_id: str, compression: float, verbose: bool = False) -> Delivered:
    """Deliver each message when its delay, compressed, is over, until the run is no longer in
    progress (or nothing is pending). The rollout bench delivers its rollout the same way."""
    pending: list = []
    seq = itertools.count()
    delivered = Delivered()
    while True:
        for message in platform.queue.take():
            delivered.sent[message.message.step] += 1
            heapq.heappush(pending, (time.monotonic() + message.delay_seconds / compression, next(seq),
                                     message.message))
        if platform.runs.get(run_id).status not in IN_PROGRESS or not pending:
            return delivered
        due, _, message = heapq.heappop(pending)
        if verbose:
            print(f"  {message.step} in {max(0.0, due - time.monotonic()):.2f} s real", flush=True)
        time.sleep(max(0.0, due - time.monotonic()))
        started, cpu = time.perf_counter(), time.thread_time()
        run_step_message(message.to_json(), platform, message_id=f"m{next(seq)}")
        delivered.handler_seconds += time.perf_counter() - started
        delivered.handler_cpu += time.thread_time() - cpu
        delivered.deliveries += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--pods", type=int, default=4000)
    parser.add_argument("--compression", type=float, default=200.0,
                        help="emulated seconds per real second, for the emulator and the step delays alike")
    parser.add_argument("--verbose", action="store_true", help="print each step delivered")
    args = parser.parse_args()

    registry._workflow_modules = lambda: [bluegreen]  # this process runs only blue-green steps
    registry.step_registry.cache_clear()
    time_scale = 60.0 / args.compression  # the emulator's real seconds per emulated minute
    with Emulator(time_scale=time_scale) as emulator, tempfile.TemporaryDirectory() as kubeconfigs:
        cluster = build_cluster(args.nodes, args.pods).build(emulator)
        settings = load_settings(sandbox_app_settings(storage_connection="UseDevelopmentStorage=true",
                                                      emulator=emulator, kubeconfig_dir=Path(kubeconfigs)))
        platform = BenchPlatform(settings)
        platform.clock = emulator.clock  # the product's soaks and timeouts run on the same compressed time
        app_pods = lambda: [p for p in cluster.kube.pods() if p["metadata"]["namespace"] == "shop"]  # noqa: E731
        before = len(app_pods())
        emulator.faults.reset_counts()
        wall = time.perf_counter()
        run = bluegreen.start_bluegreen_run(platform, cluster=cluster.arm_id, pool="blue", target_version="1.31",
                                            actor="bench", options={})
        options = platform.runs.get(run.run_id).options
        delivered = deliver_all(platform, run.run_id, args.compression, args.verbose)
        handler_seconds, handler_cpu, deliveries = delivered.handler_seconds, delivered.handler_cpu, delivered.deliveries
        sent = sum(delivered.sent.values())
        wall = time.perf_counter() - wall
        final = platform.runs.get(run.run_id)
        calls = emulator.faults.total("kube") + emulator.faults.total("arm")
        evictions = sum(n for route, n in emulator.faults.counts("kube").items() if "eviction" in route)
        runs, state = platform.runs, platform.state
        table_writes = runs.writes + runs.history_writes + state.writes
        print(f"run {final.status}: {final.reason}")
        print(f"pool: {args.nodes} nodes, {before} application pods; options as the product defaults them: "
              f"{json.dumps(options, default=str)[:300]}")
        print(f"time: compression {args.compression:g}x for the emulator and the step delays alike; "
              f"{wall:.0f} s real = {wall * args.compression / 60:.0f} emulated minutes")
        print(f"api_calls={calls} (kubernetes {emulator.faults.total('kube')}, arm {emulator.faults.total('arm')}), "
              f"evictions={evictions}")
        print(f"api_calls_per_migrated_pod={calls / max(1, before):.2f}")
        print(f"queue_messages={sent} deliveries={deliveries} queue_messages_per_node={sent / args.nodes:.2f}")
        print(f"handler_cpu_seconds_per_node={handler_cpu / args.nodes:.3f} "
              f"(handler wall {handler_seconds:.1f} s in all)")
        print(f"table_writes={table_writes} (run {runs.writes}, history {runs.history_writes}, state {state.writes}) "
              f"table_writes_per_node={table_writes / args.nodes:.2f}")
        print(f"largest_run_entity_bytes={runs.largest_entity} (as Azure Table counts it: UTF-16 text, compressed "
              f"chunks as bytes; the record's text before compression: {runs.largest_text} bytes)")
        print(f"application pods after: {len(app_pods())} (before {before})")


if __name__ == "__main__":
    main()
