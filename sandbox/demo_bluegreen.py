"""Scenario 3 of the seed, played through function_app: a blue-green pool upgrade, commit and rollback.

Starts what it needs (Azurite, the AKS emulator with the seed-bluegreen cluster, the dev host),
starts a run over the HTTP API and prints the cluster as the seed's table does at each step: every
node with its pool, version, cordon state and application pods. The commit path ends as the seed's
5A (green is the pool); the rollback path as 5B (the workloads are back on blue, green is gone).

``python -m sandbox.demo_bluegreen`` plays both; ``play(console)`` is the demo framework's entry.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sandbox.aks_emulator.kube import pod_ready
from sandbox.aks_emulator.scenarios import APP_NAMESPACE, seed_bluegreen
from sandbox.aks_emulator.server import Emulator
from sandbox.app_settings import sandbox_app_settings
from sandbox.azurite import Azurite
from sandbox.devhost_process import DevHostProcess

TIME_SCALE = 0.02  # real seconds per emulated AKS minute
DEMO_OPTIONS = {"drainBatchSize": "1", "batchSoakMinutes": 0.02, "finalSoakMinutes": 0.03, "pollIntervalSeconds": 1,
                "validation": {"readyTimeoutMinutes": 0.5}}
FINAL = ("succeeded", "failed", "rolled-back", "aborted")
PASSING_STATES = {"bluegreen.drain_batch", "bluegreen.batch_soak", "bluegreen.final_soak", "bluegreen.await_decision",
                  "bluegreen.drain_green", "bluegreen.wait_green_deleted", "bluegreen.done"}


def node_table(cluster, title: str) -> Table:
    """The seed's view: each node, its pool and version, cordoned or not, its application pods."""
    table = Table(title=title, title_justify="left")
    for column in ("pool", "node", "version", "cordoned", "pods"):
        table.add_column(column)
    pods_by_node: dict[str, list[str]] = {}
    for pod in cluster.kube.pods():
        app = pod["metadata"].get("labels", {}).get("app", "")
        if pod["metadata"]["namespace"] == APP_NAMESPACE and app.startswith("app-"):
            label = app.removeprefix("app-").upper() + ("" if pod_ready(pod) else " (starting)")
            pods_by_node.setdefault(pod["spec"].get("nodeName") or "(pending)", []).append(label)
    for node in sorted(cluster.kube.nodes(), key=lambda n: (n["metadata"]["labels"]["kubernetes.azure.com/agentpool"],
                                                           n["metadata"]["name"])):
        name = node["metadata"]["name"]
        pool = node["metadata"]["labels"]["kubernetes.azure.com/agentpool"]
        if pool == "system":
            continue
        table.add_row(pool, name, node["status"]["nodeInfo"]["kubeletVersion"].lstrip("v"),
                      "yes" if node["spec"].get("unschedulable") else "", ", ".join(sorted(pods_by_node.get(name, [])))
                      or "(daemonsets only)")
    if pods_by_node.get("(pending)"):
        table.add_row("", "(pending)", "", "", ", ".join(sorted(pods_by_node["(pending)"])))
    return table


def follow(console: Console, host: DevHostProcess, cluster, run_id: str, until: tuple[str, ...]) -> dict:
    """Print the node table whenever the run reaches a new state, until its status is in ``until``."""
    shown = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        _, run = host.request("GET", f"/api/upgrades/{run_id}")
        if run["state"] != shown and (run["state"] in PASSING_STATES or run["status"] in until):
            shown = run["state"]
            console.print(node_table(cluster, f"{run['state'].removeprefix('bluegreen.')} ({run['status']}): "
                                              f"{run['reason'][:110]}"))
        if run["status"] in until:
            return run
        time.sleep(0.1)
    raise TimeoutError(f"run {run_id} did not reach {until}")


def play_path(console: Console, azurite: Azurite, *, rollback: bool) -> dict:
    with Emulator(time_scale=TIME_SCALE) as emulator, tempfile.TemporaryDirectory() as kubeconfigs:
        cluster = seed_bluegreen().build(emulator)
        settings = sandbox_app_settings(storage_connection=azurite.connection_string, emulator=emulator,
                                        kubeconfig_dir=Path(kubeconfigs))
        with DevHostProcess(app_settings=settings, queue_overrides={"maxPollingInterval": 0.2}) as host:
            console.print(node_table(cluster, "1 start: blue (1.30) runs A, B, C, D"))
            options = {**DEMO_OPTIONS, **({"approval": {"required": True}} if rollback else {})}
            status, run = host.request("POST", "/api/upgrades", body={
                "cluster": cluster.arm_id, "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green",
                "options": options, "actor": "demo"})
            if status != 202:
                raise RuntimeError(f"start refused: {status} {run}")
            console.print(f"POST /api/upgrades -> 202 {run['id']} (blue -> {run['targetVersion']})")
            if not rollback:
                return follow(console, host, cluster, run["id"], FINAL)
            follow(console, host, cluster, run["id"], ("awaiting-decision", *FINAL))
            console.print(f"POST /api/upgrades/{run['id']}/rollback (the operator decides to roll back)")
            host.request("POST", f"/api/upgrades/{run['id']}/rollback", body={"actor": "demo", "reason": "demo"})
            return follow(console, host, cluster, run["id"], FINAL)


def play(console: Console | None = None, azurite: Azurite | None = None) -> None:
    """Scenario 3, commit path (5A) then rollback path (5B)."""
    console = console or Console()
    own_azurite = azurite is None
    azurite = azurite or Azurite().start()
    try:
        console.rule("Scenario 3 - blue-green pool upgrade, commit path (5A)")
        committed = play_path(console, azurite, rollback=False)
        console.print(f"run {committed['id']}: {committed['status']}: {committed['reason']}")
        console.rule("Scenario 3 - blue-green pool upgrade, rollback path (5B)")
        rolled_back = play_path(console, azurite, rollback=True)
        console.print(f"run {rolled_back['id']}: {rolled_back['status']}: {rolled_back['reason']}")
    finally:
        if own_azurite:
            azurite.stop()


if __name__ == "__main__":
    play()
