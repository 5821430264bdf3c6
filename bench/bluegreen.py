"""Blue-green cost on a 20-node pool running 400 pods (the AKS emulator, real SDK adapters).

Runs the blue-green steps in process against the emulator through the real Kubernetes and ARM
adapters, with in-memory run store and queue, delivering each step message when it is due. Prints:

- API calls per migrated pod (Kubernetes + ARM requests the emulator counted / pods moved; target <= 3);
- queue messages per node (step messages sent / blue nodes);
- orchestration time outside the configured waits (time spent inside step handlers).

Usage: ``python -m bench.bluegreen [--nodes 20] [--pods 400] [--batch 10%]``
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import tempfile
import time
from pathlib import Path

from sandbox.aks_emulator.scenarios import ClusterBuilder
from sandbox.aks_emulator.server import Emulator
from sandbox.app_settings import sandbox_app_settings
from tests.fakes import FakeAlertSink, FakeQueue, InMemoryRunStore, InMemoryStateStore
from upgrade.services import bluegreen, registry
from upgrade.services.step_runner import run_step_message
from upgrade.settings import load_settings
from upgrade.wiring import AzurePlatform

TIME_SCALE = 0.02  # real seconds per emulated AKS minute: node creation and pod grace take milliseconds


class BenchPlatform(AzurePlatform):
    """The app's platform (real ARM and Kubernetes adapters), with in-memory runs and queue."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.__dict__.update(queue=FakeQueue(), runs=InMemoryRunStore(), state=InMemoryStateStore(),
                             alerts=FakeAlertSink())


def build_cluster(nodes: int, pods: int) -> ClusterBuilder:
    builder = (ClusterBuilder("aks-bench-bluegreen")
               .pool("system", count=1, mode="System", node_taints=["CriticalAddonsOnly=true:NoSchedule"])
               .pool("blue", count=nodes, max_pods=110)
               .daemonset("kube-system", "kube-proxy"))
    replicas = 10
    for index in range(pods // replicas):
        builder.deployment("shop", f"app-{index:03d}", replicas=replicas, cpu_millis=10, grace_seconds=5,
                           place_on=[("blue", (index * replicas + r) % nodes) for r in range(replicas)])
    return builder


def deliver_all(platform: BenchPlatform, run_id: str, *, max_real_wait: float = 0.2) -> tuple[float, int, int]:
    """Deliver due messages until the run ends: (seconds inside handlers, messages sent, deliveries)."""
    pending: list = []
    seq = itertools.count()
    handler_seconds = 0.0
    sent = deliveries = 0
    while True:
        for message in platform.queue.take():
            sent += 1
            # Configured waits (soaks, polls) are not what this measures: cap them in real time.
            heapq.heappush(pending, (time.monotonic() + min(message.delay_seconds, max_real_wait), next(seq),
                                     message.message))
        if platform.runs.get(run_id).status not in ("running", "paused", "awaiting-decision") or not pending:
            return handler_seconds, sent, deliveries
        due, _, message = heapq.heappop(pending)
        time.sleep(max(0.0, due - time.monotonic()))
        started = time.perf_counter()
        run_step_message(message.to_json(), platform, message_id=f"m{next(seq)}")
        handler_seconds += time.perf_counter() - started
        deliveries += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--pods", type=int, default=400)
    parser.add_argument("--batch", default="10%", help="drain batch size")
    args = parser.parse_args()

    registry._workflow_modules = lambda: [bluegreen]  # this process runs only blue-green steps
    registry.step_registry.cache_clear()
    with Emulator(time_scale=TIME_SCALE) as emulator, tempfile.TemporaryDirectory() as kubeconfigs:
        cluster = build_cluster(args.nodes, args.pods).build(emulator)
        settings = load_settings(sandbox_app_settings(storage_connection="UseDevelopmentStorage=true",
                                                      emulator=emulator, kubeconfig_dir=Path(kubeconfigs)))
        platform = BenchPlatform(settings)
        app_pods = lambda: [p for p in cluster.kube.pods() if p["metadata"]["namespace"] == "shop"]  # noqa: E731
        before = len(app_pods())
        emulator.faults.reset_counts()
        wall = time.perf_counter()
        run = bluegreen.start_bluegreen_run(
            platform, cluster=cluster.arm_id, pool="blue", target_version="1.31", actor="bench",
            options={"drainBatchSize": args.batch, "batchSoakMinutes": 0, "finalSoakMinutes": 0,
                     "pollIntervalSeconds": 1, "validation": {"readyTimeoutMinutes": 5}})
        handler_seconds, sent, deliveries = deliver_all(platform, run.run_id)
        wall = time.perf_counter() - wall
        final = platform.runs.get(run.run_id)
        calls = emulator.faults.total("kube") + emulator.faults.total("arm")
        kube_counts = emulator.faults.counts("kube")
        print(f"run {final.status}: {final.reason}")
        print(f"pool: {args.nodes} nodes, {before} application pods, batch {args.batch}")
        print(f"api_calls={calls} (kubernetes {emulator.faults.total('kube')}, arm {emulator.faults.total('arm')})")
        evictions = sum(n for route, n in kube_counts.items() if "eviction" in route)
        print(f"evictions={evictions}")
        print(f"api_calls_per_migrated_pod={calls / max(1, before):.2f} (target <= 3)")
        print(f"queue_messages={sent} deliveries={deliveries} queue_messages_per_node={sent / args.nodes:.2f}")
        print(f"orchestration_seconds_in_handlers={handler_seconds:.2f} wall_seconds={wall:.2f}")
        print(f"application pods after: {len(app_pods())} (before {before})")


if __name__ == "__main__":
    main()
