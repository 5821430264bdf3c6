"""Preflight over an emulated 5,000-node / 100,000-pod cluster: prints the wall time.

The snapshot is built directly as domain objects (what the adapters return), so the figure is the
preflight's own cost: PDB indexing, the batch-by-batch drain simulation and the report.
Usage: python bench/preflight_scale.py [--nodes N] [--pods N] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from upgrade.domain.model import (
    AgentPool,
    ClusterRef,
    ClusterSnapshot,
    Node,
    Pdb,
    Pod,
    UpgradeSettings,
)
from upgrade.domain.preflight import PlannedUpgrade, preflight

REPLICAS = 20  # pods per deployment
POOL = "work"
BUDGETS = ({"max_unavailable": "10%"}, {"min_available": "50%"}, {"max_unavailable": "1"})


def build_snapshot(node_count: int, pod_count: int) -> ClusterSnapshot:
    nodes = [Node(f"aks-{POOL}-vmss{i:06d}", POOL, "1.30.0") for i in range(node_count)]
    pods, pdbs = [], []
    for d in range(pod_count // REPLICAS):
        app = f"app-{d}"
        for r in range(REPLICAS):
            index = d * REPLICAS + r
            pods.append(Pod(f"ns-{d % 50}", f"{app}-{r}", f"uid-{index}", nodes[(index * 7919) % node_count].name,
                            labels=(("app", app), ("tier", "web")), owner_kind="ReplicaSet", owner_name=f"{app}-rs"))
        # A mix of budgets: most allow disruptions, one in a hundred never does.
        budget = {"min_available": str(REPLICAS)} if d % 100 == 0 else BUDGETS[d % len(BUDGETS)]
        pdbs.append(Pdb(f"ns-{d % 50}", f"{app}-pdb", (("app", app),), **budget))
    daemons = [Pod("kube-system", f"kube-proxy-{n.name}", f"uid-kp-{n.name}", n.name, owner_kind="DaemonSet",
                   owner_name="kube-proxy") for n in nodes]
    pool = AgentPool(POOL, "User", node_count, "1.30.0",
                     upgrade_settings=UpgradeSettings(max_surge="10%", undrainable_node_behavior="Cordon",
                                                      max_blocked_nodes="100%"))
    return ClusterSnapshot(ClusterRef("00000000-0000-0000-0000-000000000001", "rg-bench", "aks-bench"), "1.30.0",
                           (pool,), tuple(nodes), tuple(daemons + pods), tuple(pdbs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    snapshot = build_snapshot(args.nodes, args.pods)
    print(f"snapshot: {len(snapshot.nodes)} nodes, {len(snapshot.pods)} pods, {len(snapshot.pdbs)} PDBs "
          f"built in {time.perf_counter() - started:.2f} s")
    timings = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        report = preflight(snapshot, PlannedUpgrade(POOL, target_version="1.31.0"))
        timings.append(time.perf_counter() - started)
    print(f"prediction: surge {report.surge_node_count} nodes, {len(report.undrainable_nodes)} undrainable, "
          f"{len(report.quarantined_nodes)} quarantined, final {report.final_state}, "
          f"resulting {report.resulting_node_count} nodes")
    print(f"preflight wall time: median {statistics.median(timings):.2f} s over {args.repeat} runs "
          f"(min {min(timings):.2f} s)")


if __name__ == "__main__":
    main()
