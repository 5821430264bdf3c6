"""Orchestration cost of a staged rollout: 100 small clusters in 3 stages on the AKS emulator.

Runs the rollout and every cluster's rolling run in process against the emulator through the real
ARM and Kubernetes adapters, with in-memory run store, state store and queue (the blue-green
bench's counting stores). Each cluster is one System pool of one node at 1.30; the product's
defaults apply (pollSeconds 30). One compression factor divides every wait alike: the emulator's
clock and each step message's delay. Prints:

- queue messages per cluster: every step message sent (the rollout's ticks and the clusters'
  runs), and the rollout's own ticks apart;
- Table writes per cluster: run creates and updates, history rows and state rows, and the
  rollout's own apart;
- for each stage after the first: the time from the previous stage's gate passing to the stage's
  first run being created, on the emulated clock and in real seconds.

Usage: ``python -m bench.rollout [--clusters 100] [--stages 10,30,60] [--compression 600]``
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from bench.bluegreen import BenchPlatform, CountingRunStore, deliver_all
from sandbox.aks_emulator.scenarios import ClusterBuilder
from sandbox.aks_emulator.server import Emulator
from sandbox.app_settings import sandbox_app_settings
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.services import rollouts
from upgrade.settings import load_settings


class KindCountingRunStore(CountingRunStore):
    """Counts run writes and history rows of rollouts apart from those of the clusters' runs."""

    def __init__(self) -> None:
        super().__init__()
        self.by_kind: Counter = Counter()

    def create(self, run: RunRecord) -> RunRecord:
        self.by_kind[run.kind] += 1
        return super().create(run)

    def update(self, run: RunRecord) -> RunRecord:
        stored = super().update(run)
        self.by_kind[run.kind] += 1
        return stored

    def append_history(self, entry: HistoryEntry) -> None:
        super().append_history(entry)
        self.by_kind["rollout" if entry.run_id.startswith("rollout-") else "run"] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--stages", default="10,30,60", help="clusters per stage, in order (sum = --clusters)")
    parser.add_argument("--compression", type=float, default=600.0,
                        help="emulated seconds per real second, for the emulator and the step delays alike")
    args = parser.parse_args()
    sizes = [int(n) for n in args.stages.split(",")]
    if sum(sizes) != args.clusters:
        parser.error(f"--stages adds up to {sum(sizes)}, not {args.clusters}")

    with Emulator(time_scale=60.0 / args.compression) as emulator, tempfile.TemporaryDirectory() as kubeconfigs:
        clusters = [ClusterBuilder(f"aks-bench-{i:03d}").pool("system", count=1, mode="System").build(emulator).arm_id
                    for i in range(args.clusters)]
        settings = load_settings(sandbox_app_settings(storage_connection="UseDevelopmentStorage=true",
                                                      emulator=emulator, kubeconfig_dir=Path(kubeconfigs)))
        platform = BenchPlatform(settings)
        platform.__dict__["runs"] = KindCountingRunStore()
        platform.clock = emulator.clock
        bounds = list(itertools.accumulate([0, *sizes]))
        plan = {"name": "bench", "stages": [{"name": f"stage-{s + 1}", "groups": [{"clusters": clusters[lo:hi]}]}
                                            for s, (lo, hi) in enumerate(itertools.pairwise(bounds))]}
        wall = time.perf_counter()
        rollout = rollouts.start_rollout(platform, plan, actor="bench")
        delivered = deliver_all(platform, rollout.run_id, args.compression)
        sent, ticks = sum(delivered.sent.values()), delivered.sent[rollouts.TICK]
        wall = time.perf_counter() - wall
        view = rollouts.rollout_view(platform, rollout.run_id)
        runs, state = platform.runs, platform.state
        writes = runs.writes + runs.history_writes + state.writes
        rollout_writes = runs.by_kind["rollout"]
        statuses = Counter(c["status"] for s in view["stages"] for g in s["groups"] for c in g["clusters"])
        versions = Counter(p.current_orchestrator_version for c in emulator.clusters() for p in c.pools.values())
        print(f"rollout {view['status']} to {view['targetVersion']}: {dict(statuses)}; pool versions {dict(versions)}")
        print(f"time: compression {args.compression:g}x; {wall:.0f} s real = {wall * args.compression / 60:.0f} "
              f"emulated minutes")
        print(f"queue_messages={sent} queue_messages_per_cluster={sent / args.clusters:.2f} "
              f"(rollout ticks {ticks}, {ticks / args.clusters:.2f} per cluster)")
        print(f"table_writes={writes} table_writes_per_cluster={writes / args.clusters:.2f} "
              f"(run {runs.writes}, history {runs.history_writes}, state {state.writes}; the rollout's own "
              f"{rollout_writes + 1}, {(rollout_writes + 1) / args.clusters:.2f} per cluster)")
        created = sorted((r.created_at, r.cluster) for r in runs.list_runs(limit=10_000) if r.kind != "rollout")
        stage_of = {c: i for i, (lo, hi) in enumerate(itertools.pairwise(bounds)) for c in clusters[lo:hi]}
        for gate in view["gates"][:-1]:
            passed = datetime.fromisoformat(gate["passedAt"])
            first = min(at for at, cluster in created if stage_of[cluster] == gate["stage"] + 1)
            emulated = (first - passed).total_seconds()
            print(f"stage {gate['stage'] + 1} gate passed -> stage {gate['stage'] + 2} first run: "
                  f"{emulated:.1f} s emulated = {emulated / args.compression * 1000:.0f} ms real")


if __name__ == "__main__":
    main()
