"""Scenarios 1 and 2 of the seed, played through function_app: rolling upgrades and a quarantined node.

Scenario 1: AKS announces a new Kubernetes version; the policy starts a rolling upgrade (apply
upgradeSettings, then the version); the emulated AKS rolls the pool with a surge node and reports
Started/Succeeded through Event Grid; the run reconciles to the seed's final state.
Scenario 2: a PDB blocks pod A; an operator upgrades the pool outside the product; AKS quarantines
node 1 and keeps a surge node for good; one timer scan later the operator holds the quarantine
alert (as the alerts topic received it); one remediation request (relax-pdb) brings every node to
1.31 and the pool back to 2 nodes, and a resolved notice follows.

What AKS does to the nodes is printed as it happens (``sandbox.tables.ClusterWatch``), between the
steps of the product's runs. ``sandbox.demo`` plays both, each on its own cluster with the policy
below as that cluster's UPGRADE_POLICY entry.
"""

from __future__ import annotations

import json
import urllib.request
from typing import TYPE_CHECKING, Any

from rich.panel import Panel

from sandbox.tables import ClusterView
from upgrade.adapters.arm_schema import STABLE_API_VERSION

if TYPE_CHECKING:
    from sandbox.demo import DemoContext

POOL = "nodepool1"
TARGET_MINOR = "1.31"
OPERATOR_VERSION = "1.31.7"  # what the operator of Scenario 2 picks with `az aks nodepool upgrade`
SCENARIO1_POLICY = {"pools": {POOL: {"onNewVersion": "start", "rolling": {"maxSurge": "1"}}}}
SCENARIO2_POLICY = {"remediation": {"relax-pdb": "approval-required", "delete-pod": "approval-required",
                                    "replace-node": "approval-required"}}
QUARANTINED = "com.aksupgrade.node.quarantined"
RESOLVED = "com.aksupgrade.node.resolved"


def play_scenario1(ctx: DemoContext) -> None:
    ctx.step("start: node 1 runs A, B; node 2 runs C, D (1.30)")
    ctx.tables(pods=True)
    with ctx.watch() as watch:
        ctx.step("AKS publishes NewKubernetesVersionAvailable -> on_aks_event (policy: start a rolling upgrade)")
        ctx.sandbox.emulator.publish(ctx.cluster_id, "Microsoft.ContainerService.NewKubernetesVersionAvailable")
        run_id = ctx.wait_until("the rolling run", lambda: next(
            (r["id"] for r in ctx.runs() if r["kind"] == "rolling" and r["pool"] == POOL), None))
        run = ctx.follow_run(run_id, watch=watch)
    ctx.step(f"final: run {run['status']}")
    view = ctx.tables(pods=True)
    ctx.timeline(run)
    ctx.expect(run["status"] == "succeeded", f"the rolling run ended {run['status']}: {run['reason']}")
    expect_pool(ctx, view, nodes=2)
    problems = [a["type"] for a in ctx.alerts() if a["data"]["severity"] not in ("info",)]
    ctx.console.print(f"alerts received by the topic: {[a['type'] for a in ctx.alerts()]}")
    ctx.expect(not problems, f"Scenario 1 raised problem alerts: {problems}")


def play_scenario2(ctx: DemoContext) -> None:
    ctx.step("start: a PDB (minAvailable 1) protects pod A on node 1; maxSurge 2, undrainableNodeBehavior Cordon")
    ctx.tables(pods=True)
    with ctx.watch() as watch:
        ctx.step(f"an operator upgrades {POOL} to {OPERATOR_VERSION} outside the product (az aks nodepool upgrade)")
        upgrade_pool(ctx, OPERATOR_VERSION, until_idle=lambda: ctx.aks_steps(watch))
        ctx.aks_steps(watch, wait=True)
    reconcile = ctx.wait_until("the post-upgrade reconcile", lambda: next(
        (r for r in ctx.runs() if r["status"] == "failed"), None))
    ctx.step(f"NodePoolRolling events reached on_aks_event; the reconcile recorded: {reconcile['reason'][:100]}")
    view = ctx.tables(pods=True)
    quarantined = [n for n in view.nodes if "Quarantined" in n.status]
    ctx.expect(len(quarantined) == 1 and "A" in quarantined[0].apps and quarantined[0].version.startswith("1.30"),
               f"expected node 1 quarantined at 1.30 with pod A, saw {quarantined}")
    ctx.expect(len(view.nodes) == 3, f"expected the surge node to stay (3 nodes), saw {len(view.nodes)}")

    ctx.step("the scan_quarantine timer fires (admin API, as the host does on schedule)")
    ctx.request("POST", "/admin/functions/scan_quarantine", body={"input": ""})
    alert = ctx.wait_until("the quarantine alert", lambda: next(iter(ctx.alerts(QUARANTINED)), None), 30)
    data = alert["data"]
    ctx.console.print(Panel(operator_view(data), title=f"alert received: {alert['type']} ({data['severity']})"))
    ctx.expect(data["node"] == quarantined[0].name and len(ctx.alerts(QUARANTINED)) == 1,
               f"expected one alert naming {quarantined[0].name}, got {len(ctx.alerts(QUARANTINED))}")

    request = next(o["request"] for o in data["options"] if o["kind"] == "relax-pdb")
    ctx.step(f"the operator chooses relax-pdb: {request['method']} {request['path']}")
    ctx.console.print(json.dumps(request["body"]))
    with ctx.watch() as watch:
        status, run = ctx.request(request["method"], request["path"], body=request["body"])
        ctx.expect(status == 202, f"remediation refused: HTTP {status} {run}")
        run = ctx.follow_run(run["id"], watch=watch)
    ctx.step(f"final: remediation {run['status']}")
    view = ctx.tables(pods=True)
    ctx.timeline(run)
    ctx.expect(run["status"] == "succeeded", f"the remediation ended {run['status']}: {run['reason']}")
    expect_pool(ctx, view, nodes=2)
    resolved = ctx.wait_until("the resolved notice", lambda: ctx.alerts(RESOLVED), 10)
    ctx.console.print(f"alert received: {resolved[0]['type']}: {resolved[0]['data']['summary']}")


def expect_pool(ctx: DemoContext, view: ClusterView, *, nodes: int) -> None:
    """The seed's invariants after an upgrade: every node at the target, the pool at its size, none
    cordoned or quarantined, every application pod Ready exactly once."""
    pool = [n for n in view.nodes if n.pool == POOL]
    ctx.expect(len(pool) == nodes, f"expected {nodes} nodes in {POOL}, saw {len(pool)}")
    ctx.expect(all(n.version.startswith(TARGET_MINOR) for n in pool), f"a node is not at {TARGET_MINOR}: {pool}")
    ctx.expect(all(n.status == "Ready" for n in pool), f"a node is not plain Ready: {pool}")
    ctx.expect(sorted(p.app for p in view.pods if p.state == "Ready") == ["A", "B", "C", "D"],
               f"expected A, B, C, D Ready once each, saw {view.pods}")


def upgrade_pool(ctx: DemoContext, version: str, *, until_idle: Any) -> None:
    """PUT the pool's new version through ARM as `az aks nodepool upgrade` does, and wait for the end,
    calling ``until_idle`` while AKS works."""
    emulator = ctx.sandbox.emulator
    url = f"{emulator.arm_url}{ctx.cluster_id}/agentPools/{POOL}?api-version={STABLE_API_VERSION}"
    headers = {"Authorization": f"Bearer {emulator.token}", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
        body = json.loads(response.read())
    body["properties"]["orchestratorVersion"] = version
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="PUT")
    urllib.request.urlopen(request, timeout=30).close()
    for _ in range(600):
        if emulator.wait_idle(timeout=0.2):
            return
        until_idle()
    ctx.expect(False, f"AKS did not finish upgrading {POOL}")


def operator_view(data: dict[str, Any]) -> str:
    lines = [data["summary"], ""]
    for blocker in data["blockers"]:
        lines.append(f"blocked: pod {blocker['pod']} by PDB {blocker['pdb']} (minAvailable {blocker['minAvailable']}, "
                     f"{blocker['disruptionsAllowed']} disruptions allowed, {blocker['expectedPods']} replica(s))")
    for option in data["options"]:
        lines += ["", f"option {option['kind']}: {option['description']}"]
        lines += [f"    {line}" for line in option["command"].splitlines()]
        if option["request"] is None:  # off for this pool under the policy: how to turn it on instead
            lines.append(f"    ({option['enable']})")
        else:
            lines.append(f"    or: {option['request']['method']} {option['request']['path']} "
                         f"{json.dumps(option['request']['body'])}")
    return "\n".join(lines)
