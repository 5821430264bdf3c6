"""Preflight over an emulated 5,000-node / 105,000-pod cluster: the snapshot against the transfer limit.

First the prediction alone over a snapshot built as domain objects (the preflight's own cost: PDB
indexing, the batch-by-batch drain simulation, the report). Then, against one AKS emulator in
its own process: the raw transfer of the same list pages (bytes only, no parsing) and the product's
snapshot read through the real kubernetes and azure-mgmt-containerservice clients, alternated;
the snapshot's peak memory; and last ``ratio=`` (snapshot / raw transfer, medians).
Usage: python -m bench.preflight_scale [--nodes N] [--pods N] [--repeat N] [--skip-emulator]
"""

from __future__ import annotations

import argparse
import gc
import re
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

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
from upgrade.domain.selectors import LabelSelector

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
        pdbs.append(Pdb(f"ns-{d % 50}", f"{app}-pdb", LabelSelector.match_labels({"app": app}), **budget))
    daemons = [Pod("kube-system", f"kube-proxy-{n.name}", f"uid-kp-{n.name}", n.name, owner_kind="DaemonSet",
                   owner_name="kube-proxy") for n in nodes]
    pool = AgentPool(POOL, "User", node_count, "1.30.0",
                     upgrade_settings=UpgradeSettings(max_surge="10%", undrainable_node_behavior="Cordon",
                                                      max_blocked_nodes="100%"))
    return ClusterSnapshot(ClusterRef("00000000-0000-0000-0000-000000000001", "rg-bench", "aks-bench"), "1.30.0",
                           (pool,), tuple(nodes), tuple(daemons + pods), tuple(pdbs))


CONTINUE = re.compile(rb'"continue":"([^"]+)"')


def raw_transfer(calls: tuple[Callable[..., Any], ...], page_size: int) -> tuple[float, int, int, float]:
    """The same list pages as the snapshot, through the same client calls, as bytes only: the
    continue token is cut from the page's head with a regex (the list metadata precedes the items),
    nothing is decoded. The lists are read side by side, as the snapshot reads them.
    Returns (seconds, bytes, pages, this process's CPU seconds)."""

    def pages(call: Callable[..., Any]) -> tuple[int, int]:
        token, size, count = None, 0, 0
        while True:
            data = call(limit=page_size, _continue=token, _preload_content=False).data
            size, count = size + len(data), count + 1
            match = CONTINUE.search(data, 0, 4096)
            if not match:
                return size, count
            token = match.group(1).decode()

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=len(calls)) as readers:
        results = list(readers.map(pages, calls))
    return (time.perf_counter() - started, sum(r[0] for r in results), sum(r[1] for r in results),
            time.process_time() - cpu)


def gap_breakdown(kube: Any, page_size: int, *, collector_paused: bool) -> tuple[float, float, float]:
    """One sequential, unpipelined pass over the pod pages, timing each stage apart: (transfer,
    msgspec decode, projection into domain Pods) in seconds, CPU of this thread for the last two.
    Every Pod is kept, as ``list_pods`` keeps them; with ``collector_paused`` the pass runs under the
    adapter's own pause of the cyclic garbage collector, as ``list_pods`` does, else with it running."""
    from contextlib import nullcontext

    from upgrade.adapters.kube import _collector_paused, pod_from_json, pod_list_decoder

    decoder = pod_list_decoder()
    transfer = decode = project = 0.0
    token = None
    kept: list[Pod] = []
    gc.collect()
    with _collector_paused() if collector_paused else nullcontext():
        while True:
            started = time.perf_counter()
            data = kube.core.list_pod_for_all_namespaces(limit=page_size, _continue=token, _preload_content=False).data
            transfer += time.perf_counter() - started
            started = time.thread_time()
            page = decoder.decode(data)
            decode += time.thread_time() - started
            started = time.thread_time()
            kept += [pod_from_json(p) for p in page.items or ()]
            project += time.thread_time() - started
            match = CONTINUE.search(data, 0, 4096)
            if not match:
                return transfer, decode, project
            token = match.group(1).decode()


def serve_cluster(connection: Connection, node_count: int, pod_count: int, scratch: str) -> None:
    """The emulator's own process: build the cluster, write its kubeconfig, answer count requests
    until told to stop. Its serving never competes with the product for the bench's GIL."""
    from sandbox.aks_emulator.scenarios import ClusterBuilder
    from sandbox.aks_emulator.server import Emulator

    builder = ClusterBuilder("aks-bench").pool(POOL, count=node_count, max_surge="10%",
                                               undrainable_node_behavior="Cordon", max_blocked_nodes="100%")
    builder.daemonset("kube-system", "kube-proxy")
    for d in range(pod_count // REPLICAS):
        budget = {"min_available": REPLICAS} if d % 100 == 0 else BUDGETS[d % len(BUDGETS)]
        # The API takes an int or a percent string, as a manifest would say it.
        budget = {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in budget.items()}
        builder.deployment(f"ns-{d % 50}", f"app-{d}", replicas=REPLICAS, pool=POOL)
        builder.pdb(f"ns-{d % 50}", f"app-{d}-pdb", app=f"app-{d}", **budget)
    with Emulator(time_scale=60.0) as emulator:
        cluster = builder.build(emulator)
        # Millions of long-lived objects: frozen, the collector stops walking them while serving.
        gc.freeze()
        emulator.write_kubeconfig(cluster.arm_id, f"{scratch}/kubeconfig")
        connection.send({"arm_id": cluster.arm_id, "arm_url": emulator.arm_url, "token": emulator.token,
                         "pods": len(cluster.kube.pods())})
        while (command := connection.recv()) != "stop":
            if command == "reset":
                emulator.faults.reset_counts()
            connection.send(emulator.faults.total("kube") + emulator.faults.total("arm"))


def emulated_preflight(node_count: int, pod_count: int, repeat: int) -> None:
    """Build the same shape of cluster in an emulator process, then read and predict as the CLI
    does, alternating with the raw transfer of the same pages."""
    import multiprocessing
    import tempfile
    import tracemalloc

    from upgrade.adapters.aks import aks_from_settings
    from upgrade.adapters.kube import PAGE_SIZE, kube_from_kubeconfig
    from upgrade.services.snapshot import read_snapshot
    from upgrade.settings import load_settings

    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as scratch:
        ours, theirs = context.Pipe()
        server = context.Process(target=serve_cluster, args=(theirs, node_count, pod_count, scratch), daemon=True)
        server.start()
        try:
            built = ours.recv()
            print(f"emulator (own process): {node_count} nodes, {built['pods']} pods built in "
                  f"{time.perf_counter() - started:.1f} s")
            settings = load_settings({"ALLOWED_CLUSTERS": built["arm_id"], "ARM_ENDPOINT": built["arm_url"],
                                      "ARM_DEV_TOKEN": built["token"]})
            ref = ClusterRef.parse(built["arm_id"])
            kube = kube_from_kubeconfig(f"{scratch}/kubeconfig")
            aks = aks_from_settings(settings, ref.subscription_id)
            calls = (kube.core.list_pod_for_all_namespaces, kube.core.list_node,
                     kube.policy.list_pod_disruption_budget_for_all_namespaces)
            # One untimed pass: the emulator encodes each object once per resourceVersion and
            # serves it from then on (as the API server's watch cache does), so the timed passes
            # measure the transfer, not the emulator's json.dumps.
            raw_transfer(calls, PAGE_SIZE)
            raws, reads, read_cpus = [], [], []
            for _ in range(repeat):
                raws.append(raw_transfer(calls, PAGE_SIZE))
                ours.send("reset")
                ours.recv()
                started, cpu = time.perf_counter(), time.process_time()
                snapshot = read_snapshot(kube, aks, ref)
                reads.append(time.perf_counter() - started)
                read_cpus.append(time.process_time() - cpu)
                ours.send("count")
                requests = ours.recv()
                del snapshot
            transfer, decode, project = gap_breakdown(kube, PAGE_SIZE, collector_paused=True)
            _, decode_gc, project_gc = gap_breakdown(kube, PAGE_SIZE, collector_paused=False)
            # Peak memory in its own untimed pass: tracemalloc slows every allocation.
            gc.collect()
            tracemalloc.start()
            snapshot = read_snapshot(kube, aks, ref)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            ours.send("stop")
        finally:
            server.join(timeout=30)
            if server.is_alive():
                server.terminate()
    started = time.perf_counter()
    report = preflight(snapshot, PlannedUpgrade(POOL, target_version="1.31.0"))
    predicted = time.perf_counter() - started
    raw = statistics.median(r[0] for r in raws)
    read = statistics.median(reads)
    _, size, pages, _ = raws[0]
    print(f"raw transfer (same {pages} list pages, bytes only, {size / 1e6:.0f} MB): median {raw:.2f} s "
          f"over {repeat} runs (all: {', '.join(f'{r[0]:.2f}' for r in raws)}); client CPU median "
          f"{statistics.median(r[3] for r in raws):.2f} s")
    print(f"product snapshot (nodes, pods, PDBs, pools, version; {requests} API requests, {len(snapshot.pods)} pods, "
          f"{len(snapshot.pdbs)} PDBs): median {read:.2f} s (all: {', '.join(f'{r:.2f}' for r in reads)}); "
          f"client CPU median {statistics.median(read_cpus):.2f} s")
    print(f"gap breakdown, pods only, one sequential pass: transfer {transfer:.2f} s, msgspec decode "
          f"{decode:.2f} s CPU, projection into domain Pods {project:.2f} s CPU (the collector paused, as "
          f"list_pods pauses it); with the collector running: decode {decode_gc:.2f} s, projection "
          f"{project_gc:.2f} s CPU")
    print(f"snapshot peak memory (tracemalloc, untimed pass): {peak / 2**20:.0f} MiB; "
          f"prediction over it {predicted:.2f} s, final {report.final_state}")
    print(f"ratio={read / raw:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=100_000, help="app pods (plus a kube-proxy per node)")
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
        emulated_preflight(args.nodes, args.pods, args.repeat)


if __name__ == "__main__":
    main()
