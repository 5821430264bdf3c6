"""Preflight over an emulated 5,000-node / 100,000-pod cluster: prints the wall times.

Two figures: the prediction alone over a snapshot built as domain objects (the preflight's own
cost: PDB indexing, the batch-by-batch drain simulation, the report), and the whole preflight as
the CLI runs it against the AKS emulator: the snapshot read through the real kubernetes and
azure-mgmt-containerservice clients (paged lists), then the prediction.
Usage: python -m bench.preflight_scale [--nodes N] [--pods N] [--repeat N] [--skip-emulator]
"""

from __future__ import annotations

import argparse
import statistics
import time

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


def emulated_preflight(node_count: int, pod_count: int) -> None:
    """Build the same shape of cluster in the emulator, then read and predict as the CLI does."""
    import tempfile

    from sandbox.aks_emulator.scenarios import ClusterBuilder
    from sandbox.aks_emulator.server import Emulator
    from upgrade.adapters.aks import aks_from_settings
    from upgrade.adapters.kube import kube_from_kubeconfig
    from upgrade.services.snapshot import read_snapshot
    from upgrade.settings import load_settings

    builder = ClusterBuilder("aks-bench").pool(POOL, count=node_count, max_surge="10%",
                                               undrainable_node_behavior="Cordon", max_blocked_nodes="100%")
    builder.daemonset("kube-system", "kube-proxy")
    for d in range(pod_count // REPLICAS):
        budget = {"min_available": REPLICAS} if d % 100 == 0 else BUDGETS[d % len(BUDGETS)]
        # The API takes an int or a percent string, as a manifest would say it.
        budget = {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in budget.items()}
        builder.deployment(f"ns-{d % 50}", f"app-{d}", replicas=REPLICAS, pool=POOL)
        builder.pdb(f"ns-{d % 50}", f"app-{d}-pdb", app=f"app-{d}", **budget)
    started = time.perf_counter()
    with Emulator(time_scale=60.0) as emulator, tempfile.TemporaryDirectory() as scratch:
        cluster = builder.build(emulator)
        print(f"emulator: {node_count} nodes, {len(cluster.kube.pods())} pods built in "
              f"{time.perf_counter() - started:.1f} s")
        kubeconfig = f"{scratch}/kubeconfig"
        emulator.write_kubeconfig(cluster.arm_id, kubeconfig)
        settings = load_settings({"ALLOWED_CLUSTERS": cluster.arm_id, "ARM_ENDPOINT": emulator.arm_url,
                                  "ARM_DEV_TOKEN": emulator.token})
        ref = ClusterRef.parse(cluster.arm_id)
        kube, aks = kube_from_kubeconfig(kubeconfig), aks_from_settings(settings, ref.subscription_id)
        emulator.faults.reset_counts()
        started = time.perf_counter()
        snapshot = read_snapshot(kube, aks, ref)
        read = time.perf_counter() - started
        started = time.perf_counter()
        report = preflight(snapshot, PlannedUpgrade(POOL, target_version="1.31.0"))
        predicted = time.perf_counter() - started
        requests = emulator.faults.total("kube") + emulator.faults.total("arm")
    print(f"through the emulator: snapshot read {read:.2f} s ({requests} API requests, "
          f"{len(snapshot.pods)} pods), prediction {predicted:.2f} s, total {read + predicted:.2f} s; "
          f"final {report.final_state}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-emulator", action="store_true", help="only time the prediction")
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
    if not args.skip_emulator:
        emulated_preflight(args.nodes, args.pods)


if __name__ == "__main__":
    main()
