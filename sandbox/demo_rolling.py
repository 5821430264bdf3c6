"""Scenarios 1 and 2 of the seed, played through function_app: rolling upgrades and a quarantined node.

Scenario 1: AKS announces a new Kubernetes version; the policy starts a rolling upgrade (apply
upgradeSettings, then the version); the emulated AKS rolls the pool with a surge node and reports
Started/Succeeded through Event Grid; the run reconciles to the seed's final state.
Scenario 2: a PDB blocks pod A; AKS quarantines node 1 and keeps a surge node for good; one timer
scan later the operator holds the quarantine alert (as the alerts topic received it); one
remediation request (relax-pdb) brings every node to 1.31 and the pool back to 2 nodes.

Each prints the node and pod tables (sandbox.tables) at every step. ``play_scenario1(console,
azurite)`` and ``play_scenario2(console, azurite)`` are the demo framework's entries;
``python -m sandbox.demo_rolling`` plays both.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from sandbox.aks_emulator.scenarios import seed_pdb, seed_rolling
from sandbox.aks_emulator.server import Emulator
from sandbox.alerts_receiver import AlertsReceiver
from sandbox.app_settings import sandbox_app_settings
from sandbox.azurite import Azurite
from sandbox.devhost_process import DevHostProcess
from sandbox.tables import print_cluster

TIME_SCALE = 0.05  # real seconds per emulated AKS minute
POOL = "nodepool1"
FINAL = ("succeeded", "failed", "rolled-back", "aborted")


class DemoError(RuntimeError):
    """The scenario did not reach the state the seed describes."""


def _policy(**defaults: object) -> str:
    return json.dumps({"defaults": {"pollSeconds": 1, **defaults}})


def _wait(what: str, probe, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.3)
    raise DemoError(f"timed out waiting for {what}")


def _run(host: DevHostProcess, run_id: str) -> dict:
    status, run = host.request("GET", f"/api/upgrades/{run_id}")
    if status != 200:
        raise DemoError(f"GET /api/upgrades/{run_id}: HTTP {status} {run}")
    return run


def _runs(host: DevHostProcess) -> list[dict]:
    return host.request("GET", "/api/upgrades")[1]["runs"]


def _timeline(console: Console, run: dict) -> None:
    for entry in run["timeline"]:
        console.print(f"  [dim]{entry['at'][11:19]}[/dim] {entry['step']:<28} {entry['outcome']:<7} {entry['reason'][:90]}")


class _Stage:
    """One emulated cluster, the alerts topic's stand-in and function_app on the dev host."""

    def __init__(self, azurite: Azurite, builder, policy: str) -> None:
        self.azurite, self.builder, self.policy = azurite, builder, policy

    def __enter__(self) -> _Stage:
        self.emulator = Emulator(time_scale=TIME_SCALE).__enter__()
        self.cluster = self.builder.build(self.emulator)
        self.tmp = tempfile.TemporaryDirectory()
        self.receiver = AlertsReceiver().__enter__()
        settings = sandbox_app_settings(storage_connection=self.azurite.connection_string, emulator=self.emulator,
                                        kubeconfig_dir=Path(self.tmp.name), alerts_url=self.receiver.topic_endpoint,
                                        alerts_key=self.receiver.key)
        self.kubeconfig = json.loads(settings["CLUSTER_KUBECONFIGS"])[self.cluster.arm_id]
        self.host = DevHostProcess(app_settings={**settings, "UPGRADE_POLICY": self.policy},
                                   queue_overrides={"maxPollingInterval": 0.2}).start()
        self.emulator.subscribe(f"{self.host.url}/runtime/webhooks/EventGrid?functionName=on_aks_event"
                                f"&code={self.host.function_key}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.host.stop()
        self.receiver.__exit__(*exc)
        self.emulator.__exit__(*exc)
        self.tmp.cleanup()

    def tables(self, console: Console, title: str) -> None:
        print_cluster(console, self.kubeconfig, title)


def play_scenario1(console: Console, azurite: Azurite) -> dict:
    console.rule("Scenario 1 - rolling upgrade with surge (2 nodes, 1.30 -> 1.31, maxSurge 1)")
    with _Stage(azurite, seed_rolling(), _policy(onNewVersion="start", rolling={"maxSurge": "1"})) as stage:
        stage.tables(console, "1 before: node 1 runs A, B; node 2 runs C, D (1.30)")
        console.print("AKS publishes NewKubernetesVersionAvailable -> on_aks_event (policy: start, rolling)")
        stage.emulator.publish(stage.cluster.arm_id, "Microsoft.ContainerService.NewKubernetesVersionAvailable")
        run_id = _wait("the rolling run", lambda: next(
            (r["id"] for r in _runs(stage.host) if r["kind"] == "rolling" and r["pool"] == POOL), None))
        seen = set()
        while (run := _run(stage.host, run_id))["status"] not in FINAL:
            if run["state"] not in seen:
                seen.add(run["state"])
                stage.tables(console, f"{run['state']}: {run['reason'][:100]}")
            time.sleep(0.3)
        stage.tables(console, f"final: run {run['status']} ({run['reason'][:90]})")
        _timeline(console, run)
        if run["status"] != "succeeded":
            raise DemoError(f"the rolling run ended {run['status']}: {run['reason']}")
        alerts = [a["data"]["kind"] for a in stage.receiver.alerts()]
        console.print(f"alerts received by the topic: {alerts} (no problem to report)")
        return run


def play_scenario2(console: Console, azurite: Azurite) -> dict:
    console.rule("Scenario 2 - restrictive PDB, undrainableNodeBehavior Cordon (maxSurge 2)")
    approval = {"relax-pdb": "approval-required", "delete-pod": "approval-required",
                "replace-node": "approval-required"}
    with _Stage(azurite, seed_pdb(), _policy(remediation=approval)) as stage:
        stage.tables(console, "1 before: a PDB (minAvailable 1) protects pod A on node 1")
        console.print("AKS upgrades nodepool1 to 1.31 (an operator's az aks nodepool upgrade)")
        _upgrade_pool(stage)
        _wait("the post-upgrade reconcile", lambda: any(r["status"] == "failed" for r in _runs(stage.host)))
        stage.tables(console, "5 after AKS: node 1 quarantined at 1.30 with A, the surge node stayed (3 nodes)")
        console.print("the scan_quarantine timer fires (admin API, as the host does on schedule)")
        stage.host.request("POST", "/admin/functions/scan_quarantine", body={"input": ""})
        alert = _wait("the quarantine alert", lambda: next(
            (a for a in stage.receiver.alerts() if a["type"] == "com.aksupgrade.node.quarantined"), None), 30)
        data = alert["data"]
        console.print(Panel(_operator_view(data), title=f"alert received: {alert['type']} ({data['severity']})"))
        request = next(o["request"] for o in data["options"] if o["kind"] == "relax-pdb")
        console.print(f"the operator chooses relax-pdb: {request['method']} {request['path']} {json.dumps(request['body'])}")
        status, run = stage.host.request(request["method"], request["path"], body=request["body"])
        if status != 202:
            raise DemoError(f"remediation refused: HTTP {status} {run}")
        seen = set()
        while (current := _run(stage.host, run["id"]))["status"] not in FINAL:
            if current["state"] not in seen:
                seen.add(current["state"])
                console.print(f"  remediation at {current['state']}: {current['reason'][:100]}")
            time.sleep(0.3)
        stage.tables(console, f"final: remediation {current['status']} - every node at 1.31, pool back at 2 nodes")
        _timeline(console, current)
        resolved = [a for a in stage.receiver.alerts() if a["type"] == "com.aksupgrade.node.resolved"]
        console.print(f"alert received: {resolved[0]['data']['summary'] if resolved else '(no resolved notice)'}")
        if current["status"] != "succeeded" or not resolved:
            raise DemoError(f"the remediation ended {current['status']}: {current['reason']}")
        return current


def _upgrade_pool(stage: _Stage) -> None:
    """PUT the pool's new version through ARM as `az aks nodepool upgrade` does, and wait for the end."""
    import urllib.request

    url = (f"{stage.emulator.arm_url}{stage.cluster.arm_id}/agentPools/{POOL}"
           "?api-version=2025-10-01")
    headers = {"Authorization": f"Bearer {stage.emulator.token}", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
        body = json.loads(response.read())
    body["properties"]["orchestratorVersion"] = "1.31.7"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="PUT")
    urllib.request.urlopen(request).close()
    stage.emulator.wait_idle(timeout=120)


def _operator_view(data: dict) -> str:
    lines = [data["summary"], ""]
    for blocker in data["blockers"]:
        lines.append(f"blocked: pod {blocker['pod']} by PDB {blocker['pdb']} (minAvailable {blocker['minAvailable']}, "
                     f"{blocker['disruptionsAllowed']} disruptions allowed, {blocker['expectedPods']} replica(s))")
    for option in data["options"]:
        lines += ["", f"option {option['kind']}: {option['description']}"]
        lines += [f"    {line}" for line in option["command"].splitlines()]
        lines.append(f"    or: {option['request']['method']} {option['request']['path']} {json.dumps(option['request']['body'])}")
    return "\n".join(lines)


def play(console: Console | None = None, azurite: Azurite | None = None) -> None:
    console = console or Console(width=160)
    own = azurite is None
    azurite = azurite or Azurite().start()
    try:
        play_scenario1(console, azurite)
        play_scenario2(console, azurite)
    finally:
        if own:
            azurite.stop()


if __name__ == "__main__":
    play()
