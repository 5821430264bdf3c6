"""The quarantine scan end to end: timer, queue step, diagnosis, alert state in Table storage, alerts.

Two parts, each through function_app on the dev host (its own process, host.json's queue
settings), over Azurite, with the AKS emulator in this process and the sandbox's alerts receiver:

- Scale: clusters of 50 and 5,000 nodes, 21 pods per node (20 application pods and a kube-proxy),
  3 quarantined at a time, each holding a pod a PDB forbids to evict. A first timer run with
  nothing cordoned builds the worker's clients; then each measured tick finds 3 newly quarantined
  nodes (3 alerts) and, after the first, the previous 3 released (3 resolved notices). The measure
  runs from the timer's invocation to the end of the cluster's scan step (the host's own
  invocation records), so it includes the queue's polling delay (up to host.json's
  maxPollingInterval, 2 s), the same at both sizes; the scan step's own duration is printed too.
  One line per size, and last ``ratio=<time at 5,000 / time at 50>`` of the medians.
- Fan-out (``--fan-out N``, default 500): N small allow-listed clusters (2 nodes, a quarantined
  one among every 50), one timer tick, until every cluster's scan step finished: clusters per
  minute at host.json's queue concurrency.

    python -m bench.scan_scale [--sizes 50 5000] [--fan-out 500]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from sandbox.aks_emulator.scenarios import ClusterBuilder
from sandbox.aks_emulator.server import Emulator
from sandbox.alerts_receiver import AlertsReceiver
from sandbox.app_settings import sandbox_app_settings
from sandbox.azurite import Azurite
from sandbox.devhost_config import REPO_ROOT
from sandbox.devhost_process import DevHostProcess
from upgrade.domain.model import QUARANTINE_LABEL, QUARANTINE_VALUE

POOL = "nodepool1"
QUARANTINED = 3
APP_PODS_PER_NODE = 20  # plus the kube-proxy DaemonSet pod: 21 per node
REPLICAS = 20
SCAN_STEP = '"quarantine.scan"'
TIMEOUT = 600.0


def scan_steps(host: DevHostProcess) -> list[dict]:
    return [i for i in host.invocations("run_step") if SCAN_STEP in str(i.get("body", ""))]


def finished(invocation: dict) -> float:
    started = datetime.fromisoformat(invocation["startedAt"]).timestamp()
    return started + (invocation["durationMs"] or 0) / 1000


def tick(host: DevHostProcess, steps_before: int, expected: int) -> tuple[float, list[dict]]:
    """Fire the timer, wait for `expected` more scan steps to finish; returns (seconds from the
    timer to the end of the last scan step, the new scan steps)."""
    fired = time.time()
    status, _ = host.request("POST", "/admin/functions/scan_quarantine", body={"input": ""})
    if status != 202:
        raise SystemExit(f"the timer did not start: HTTP {status}")
    deadline = time.monotonic() + TIMEOUT
    while True:
        steps = scan_steps(host)[steps_before:]
        done = [s for s in steps if s["succeeded"] is not None]
        if len(done) >= expected:
            failed = [s for s in done if not s["succeeded"]]
            if failed:
                raise SystemExit(f"{len(failed)} scan step(s) failed: {failed[0].get('error')}")
            return max(finished(s) for s in done) - fired, done
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(done)} of {expected} scans finished in {TIMEOUT:.0f} s")
        time.sleep(0.05)


def start_host(storage: Azurite, emulator: Emulator, receiver: AlertsReceiver, scratch: Path) -> DevHostProcess:
    folder = Path(tempfile.mkdtemp(dir=scratch))
    settings = sandbox_app_settings(storage_connection=storage.connection_string, emulator=emulator,
                                    kubeconfig_dir=folder, alerts_url=receiver.topic_endpoint, alerts_key=receiver.key)
    return DevHostProcess(app_settings=settings).start()


def scale_cluster(nodes: int) -> ClusterBuilder:
    builder = (ClusterBuilder(f"aks-scan-{nodes}").pool("system", count=1, mode="System")
               .pool(POOL, count=nodes - 1).daemonset("kube-system", "kube-proxy"))
    for index in range(QUARANTINED):
        # One pod a PDB forbids to evict on each node that will be quarantined.
        builder.deployment("stuck", f"stuck-{index}", replicas=1, pool=POOL, place_on=[(POOL, index)])
        builder.pdb("stuck", f"stuck-{index}-pdb", app=f"stuck-{index}", min_available=1)
    for d in range((nodes * APP_PODS_PER_NODE - QUARANTINED) // REPLICAS):
        builder.deployment(f"ns-{d % 50}", f"app-{d}", replicas=REPLICAS, cpu_millis=10)
    return builder


def quarantine(cluster, names: list[str], value: bool = True) -> None:
    for name in names:
        cluster.kube.set_unschedulable(name, value)
        cluster.kube.set_node_label(name, QUARANTINE_LABEL, QUARANTINE_VALUE if value else None)


def measure_size(nodes: int, rounds: int, storage: Azurite, scratch: Path) -> dict[str, float]:
    """Medians over `rounds` timer ticks, each finding 3 newly quarantined nodes (3 alerts) and
    the previous round's 3 released (3 resolved notices)."""
    started = time.perf_counter()
    with Emulator(time_scale=60.0) as emulator, AlertsReceiver() as receiver:
        cluster = scale_cluster(nodes).build(emulator)
        # The built cluster is millions of long-lived objects in this process: frozen, the
        # collector stops walking them on every full collection while the emulator serves.
        gc.freeze()
        pods = len(cluster.kube.pods())
        print(f"  built {nodes} nodes, {pods} pods in {time.perf_counter() - started:.1f} s", flush=True)
        names = sorted(n["metadata"]["name"] for n in cluster.kube.nodes(POOL))
        host = start_host(storage, emulator, receiver, scratch)
        try:
            tick(host, 0, 1)  # nothing cordoned yet: builds the worker's clients
            end_to_end, handler, calls = [], [], []
            for index in range(rounds):
                quarantine(cluster, names[QUARANTINED * index:QUARANTINED * (index + 1)])
                if index:
                    quarantine(cluster, names[QUARANTINED * (index - 1):QUARANTINED * index], value=False)
                emulator.faults.reset_counts()
                elapsed, (step,) = tick(host, 1 + index, 1)
                end_to_end.append(elapsed)
                handler.append(step["durationMs"] / 1000)
                calls.append(emulator.faults.total("kube") + emulator.faults.total("arm"))
            alerts = [a for a in receiver.alerts() if a["data"]["kind"] == "node.quarantined"]
            if len(alerts) != QUARANTINED * rounds:
                raise SystemExit(f"{len(alerts)} quarantine alerts, not {QUARANTINED * rounds}")
        finally:
            host.stop()
    return {"end_to_end": statistics.median(end_to_end), "handler": statistics.median(handler),
            "calls": statistics.median(calls), "pods": pods}


def fan_out(clusters: int, storage: Azurite, scratch: Path) -> None:
    started = time.perf_counter()
    with Emulator(time_scale=60.0) as emulator, AlertsReceiver() as receiver:
        for index in range(clusters):
            cluster = (ClusterBuilder(f"aks-fan-{index:04d}").pool(POOL, count=2, mode="System")
                       .deployment("apps", "web", replicas=2, pool=POOL)).build(emulator)
            if index % 50 == 0:
                quarantine(cluster, [cluster.kube.nodes(POOL)[0]["metadata"]["name"]])
        print(f"  built {clusters} clusters in {time.perf_counter() - started:.1f} s", flush=True)
        host = start_host(storage, emulator, receiver, scratch)
        try:
            elapsed, steps = tick(host, 0, clusters)
        finally:
            host.stop()
        alerted = len({a["data"]["cluster"] for a in receiver.alerts()})
    queues = json.loads((REPO_ROOT / "host.json").read_text())["extensions"]["queues"]
    print(f"fan-out: {clusters} clusters scanned after one timer tick in {elapsed:.1f} s = "
          f"{clusters / elapsed * 60:.0f} clusters/minute ({alerted} with a quarantined node alerted; queue "
          f"batchSize {queues['batchSize']}, newBatchThreshold {queues['newBatchThreshold']}, one dev host "
          f"worker process; default scan period 5 minutes)")
    if len(steps) < clusters:
        raise SystemExit("not every cluster was scanned")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=(50, 5000), metavar=("SMALL", "LARGE"))
    parser.add_argument("--fan-out", type=int, default=500, help="clusters in the fan-out run (0: skip it)")
    parser.add_argument("--rounds", type=int, default=3, help="timer ticks measured per size")
    args = parser.parse_args()
    times = {}
    with tempfile.TemporaryDirectory() as folder, Azurite() as storage:
        scratch = Path(folder)
        if args.fan_out:
            fan_out(args.fan_out, storage, scratch)
        for nodes in args.sizes:
            times[nodes] = measured = measure_size(nodes, args.rounds, storage, scratch)
            print(f"nodes={nodes} pods={measured['pods']} quarantined={QUARANTINED} "
                  f"api_calls={measured['calls']:.0f} timer_to_scan_done={measured['end_to_end']:.2f}s "
                  f"scan_step_handler={measured['handler']:.2f}s (medians of {args.rounds} ticks, each "
                  f"{QUARANTINED} new alerts and {QUARANTINED} resolved after the first)", flush=True)
    small, large = args.sizes
    print(f"handler_ratio={times[large]['handler'] / times[small]['handler']:.2f} (the scan step alone)")
    print(f"ratio={times[large]['end_to_end'] / times[small]['end_to_end']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
