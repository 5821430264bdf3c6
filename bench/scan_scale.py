"""Quarantine scan cost at 50 and at 5,000 nodes: API calls and wall time, and their time ratio.

Each size is an emulated cluster with 3 quarantined nodes (pods and a blocking PDB on each) and
a pod per node; the scan reads it through the real Kubernetes adapter, as the worker does.
Prints one line per size and a last line ``ratio=<time at 5000 / time at 50>`` (target <= 1.5).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.aks_emulator.scenarios import ClusterBuilder
from sandbox.aks_emulator.server import Emulator
from upgrade.adapters.kube import kube_from_kubeconfig
from upgrade.domain.model import ClusterRef
from upgrade.services.quarantine_scan import read_cordoned

POOL = "nodepool1"
QUARANTINED = 3
REPEATS = 5


def measure(nodes: int, workdir: Path) -> tuple[int, float]:
    builder = (ClusterBuilder(f"aks-scan-{nodes}").pool("system", count=1, mode="System")
               .pool(POOL, count=nodes - 1).deployment("apps", "web", replicas=min(nodes, 200), pool=POOL)
               .pdb("apps", "web-pdb", app="web", min_available="100%"))
    with Emulator(time_scale=0.02) as emu:
        builder.build(emu)
        emu.start()
        cluster = emu.clusters()[0]
        names = sorted(n["metadata"]["name"] for n in cluster.kube.nodes(POOL))[:QUARANTINED]
        for name in names:
            cluster.kube.set_unschedulable(name, True)
            cluster.kube.set_node_label(name, "kubernetes.azure.com/upgrade-status", "Quarantined")
        path = workdir / f"{nodes}.kubeconfig"
        emu.write_kubeconfig(cluster.arm_id, path)
        kube = kube_from_kubeconfig(str(path))
        ref = ClusterRef.parse(cluster.arm_id)
        read_cordoned(kube, ref)  # warm the client (connection, discovery) outside the measure
        timings, calls = [], 0
        for _ in range(REPEATS):
            emu.faults.reset_counts()
            started = time.perf_counter()
            reading = read_cordoned(kube, ref)
            timings.append(time.perf_counter() - started)
            calls = sum(emu.faults.counts("kube").values()) + sum(emu.faults.counts("arm").values())
            assert len(reading.findings) == QUARANTINED, reading.findings
        close = getattr(kube, "close", None)
        if close:
            close()
        return calls, statistics.median(timings)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for nodes in (50, 5000):
            calls, seconds = measure(nodes, Path(tmp))
            results[nodes] = seconds
            print(f"nodes={nodes} quarantined={QUARANTINED} api_calls={calls} median_seconds={seconds:.4f}")
    print(f"ratio={results[5000] / results[50]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
