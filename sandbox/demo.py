"""``make demo``: the three seed scenarios played through function_app on the dev host, step by step.

One stage (``sandbox.up.Sandbox``: Azurite, the AKS emulator with every cluster the scenarios need,
the alerts receiver, and function_app on the dev host with the demo's ``UPGRADE_POLICY``, given as
``sandbox up --policy`` takes it and checked the same way) is started
once and serves every entry of ``SCENARIOS``, in order; each scenario has its own cluster, so none
sees another's runs, events or alerts. A scenario drives the app only through its public surfaces
(the Event Grid webhook, the HTTP routes, the step queue, and AKS's own API for what an operator does
outside the product) and prints each step as a rule line followed by the seed-style tables of
``sandbox.tables``. Emulated AKS runs fast (``DEMO_TIME_SCALE``) and the queue is polled often, so the
whole demo stays well under three minutes. The exit status is 1 when a scenario misses its promised
state. ``python -m sandbox.demo [WORD ...]`` plays only the scenarios whose names contain a word.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from urllib.request import urlopen

from rich.console import Console
from rich.table import Table

from sandbox import demo_bluegreen, demo_rolling
from sandbox.aks_emulator.arm import KUBERNETES_VERSIONS
from sandbox.aks_emulator.scenarios import SCENARIOS as SEEDS
from sandbox.aks_emulator.scenarios import ClusterBuilder
from sandbox.tables import ClusterView, ClusterWatch, node_table, print_cluster
from sandbox.up import Sandbox
from upgrade.domain.model import ClusterRef

DEMO_TIME_SCALE = 0.05  # real seconds per emulated AKS minute: a 30-minute drain timeout takes 1.5 s
# With a real control plane, controllers and kwok act in real time: a 30-minute drain timeout takes 15 s.
DEMO_REAL_TIME_SCALE = 0.5
DEMO_QUEUE_OVERRIDES = {"maxPollingInterval": 0.2}
DEMO_POLICY_DEFAULTS = {"pollSeconds": 1}  # rolling and remediation runs look at pool operations every second
FINAL_STATUSES = ("succeeded", "failed", "rolled-back", "aborted")
POLL_SECONDS = 0.1


class DemoFailed(AssertionError):
    """A scenario did not reach the state it promised."""


@dataclass(frozen=True)
class DemoCluster:
    """An emulated cluster of the stage: a seed under its own name, and its UPGRADE_POLICY entry."""

    name: str
    seed: str
    policy: Mapping[str, Any] = field(default_factory=dict)

    def builder(self) -> ClusterBuilder:
        builder = SEEDS[self.seed]()
        builder.name = self.name
        return builder

    @property
    def arm_id(self) -> str:
        builder = self.builder()
        return ClusterRef(builder.subscription_id, builder.resource_group, builder.name).arm_id


@dataclass
class DemoContext:
    """What a scenario plays with: the stage, its own cluster on it, and the console."""

    sandbox: Sandbox
    console: Console
    cluster_name: str
    steps_shown: int = 0

    @property
    def cluster(self) -> Any:
        """The EmulatedCluster (for what AKS itself does: events, ARM calls an operator makes)."""
        return self.sandbox.clusters[self.cluster_name]

    @property
    def cluster_id(self) -> str:
        return self.cluster.arm_id

    @property
    def kubeconfig(self) -> str:
        """The operator's kubeconfig: the app's credentials on the emulator; on a real API server,
        its admin (the app identity may only do what the product does, and watching is not that)."""
        if self.cluster.real_kubernetes:
            return str(self.cluster.backend.admin_kubeconfig)
        return self.sandbox.kubeconfig(self.cluster_name)

    # ---- printing ---------------------------------------------------------------------------------
    def step(self, text: str) -> None:
        self.steps_shown += 1
        self.console.rule(f"[bold]step {self.steps_shown}[/bold]: {text}", align="left")

    def tables(self, title: str = "nodes", *, pods: bool = False) -> ClusterView:
        return print_cluster(self.console, self.kubeconfig, title, pods=pods)

    def watch(self) -> ClusterWatch:
        """Follow the cluster's nodes and pods; ``follow_run`` and ``aks_steps`` print its steps."""
        return ClusterWatch(self.kubeconfig)

    def aks_steps(self, watch: ClusterWatch, *, wait: bool = False) -> None:
        """Print each settled state the cluster reached since the last call: what AKS did."""
        for what, view in watch.steps(wait=wait):
            self.step(f"AKS: {what}")
            self.console.print(node_table(view, "nodes"))
        if watch.errors:
            raise DemoFailed(f"watching the cluster failed: {watch.errors[0]}")

    def timeline(self, run: dict[str, Any]) -> None:
        table = Table(title=f"run {run['id']} ({run['kind']}): {run['status']}", title_justify="left")
        for column in ("at", "step", "attempt", "outcome", "reason"):
            table.add_column(column)
        for entry in run["timeline"]:
            table.add_row(entry["at"][11:23], entry["step"], str(entry["attempt"]), entry["outcome"],
                          entry["reason"])
        self.console.print(table)

    # ---- checking ---------------------------------------------------------------------------------
    def expect(self, holds: bool, problem: str) -> None:
        if not holds:
            raise DemoFailed(problem)

    def wait_until(self, what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (result := probe()):
            if time.monotonic() > deadline:
                raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(POLL_SECONDS)
        return result

    # ---- the app's public surfaces ----------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        assert self.sandbox.host is not None
        return self.sandbox.host.request(method, path, **kwargs)

    def run(self, run_id: str) -> dict[str, Any]:
        status, run = self.request("GET", f"/api/upgrades/{run_id}")
        self.expect(status == 200, f"GET /api/upgrades/{run_id} answered HTTP {status}: {run}")
        return run

    def runs(self) -> list[dict[str, Any]]:
        """This cluster's runs, newest first, as GET /api/upgrades lists them."""
        status, body = self.request("GET", f"/api/upgrades?cluster={quote(self.cluster_id, safe='')}")
        self.expect(status == 200, f"GET /api/upgrades answered HTTP {status}: {body}")
        return body["runs"]

    def follow_run(self, run_id: str, *, until: tuple[str, ...] = FINAL_STATUSES,
                   tables_at: Callable[[dict[str, Any]], bool] = lambda run: True,
                   watch: ClusterWatch | None = None, timeout: float = 120.0) -> dict[str, Any]:
        """A step per state the run enters, until its status is in ``until``. With a ``watch``, what
        AKS does in between is printed as steps of its own; without, the tables follow the run steps
        ``tables_at`` picks."""
        shown = None
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if watch is not None:
                self.aks_steps(watch, wait=run["state"] != shown)
            if run["state"] != shown:
                shown = run["state"]
                reason = f": {run['reason'][:110]}" if run["reason"] else ""
                self.step(f"{run['state']} ({run['status']}){reason}")
                if watch is None and tables_at(run):
                    self.tables()
            if run["status"] in until:
                return run
            self.expect(time.monotonic() < deadline, f"run {run_id} did not reach {until} in {timeout:.0f}s")
            time.sleep(POLL_SECONDS)

    def alerts(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """The alerts this cluster raised, as the alerts topic's receiver lists them (its alerts URL)."""
        assert self.sandbox.alerts is not None
        with urlopen(self.sandbox.alerts.alerts_url, timeout=10) as response:
            received = json.loads(response.read())
        return [a for a in received if (a.get("data") or {}).get("cluster", "").lower() == self.cluster_id.lower()
                and event_type in (None, a["type"])]


@dataclass(frozen=True)
class Scenario:
    name: str
    cluster: DemoCluster
    play: Callable[[DemoContext], None]


# ---- the clusters of the stage ----------------------------------------------------------------------
ROLLING = DemoCluster("aks-seed-rolling", "seed-rolling", demo_rolling.SCENARIO1_POLICY)
PDB = DemoCluster("aks-seed-pdb", "seed-pdb", demo_rolling.SCENARIO2_POLICY)
BLUEGREEN = DemoCluster("aks-seed-bluegreen", "seed-bluegreen")
BLUEGREEN_ROLLBACK = DemoCluster("aks-seed-bluegreen-rb", "seed-bluegreen")


# ---- the foundation: an event and a step through function_app ---------------------------------------
def foundation_event_and_step(ctx: DemoContext) -> None:
    """An AKS event through the Event Grid webhook, then a step message through the queue."""
    ctx.step("the cluster as the emulator serves it (kubernetes client)")
    ctx.tables(pods=True)

    ctx.step("AKS publishes NewKubernetesVersionAvailable; Event Grid delivers it to on_aks_event")
    event = {
        "id": str(uuid.uuid4()), "topic": ctx.cluster_id, "subject": ctx.cluster_name,
        "eventType": "Microsoft.ContainerService.NewKubernetesVersionAvailable",
        "eventTime": datetime.now(UTC).isoformat(), "dataVersion": "1", "metadataVersion": "1",
        "data": {"latestSupportedKubernetesVersion": KUBERNETES_VERSIONS[-1],
                 "latestStableKubernetesVersion": KUBERNETES_VERSIONS[-2],
                 "lowestMinorKubernetesVersion": KUBERNETES_VERSIONS[0].rsplit(".", 1)[0],
                 "latestPreviewKubernetesVersion": KUBERNETES_VERSIONS[-1]},
    }
    ctx.console.print_json(json.dumps(event))
    assert ctx.sandbox.host is not None
    mark = len(ctx.sandbox.host.logs)
    status, _ = ctx.request("POST", "/runtime/webhooks/EventGrid?functionName=on_aks_event", body=[event],
                            headers={"aeg-event-type": "Notification"})
    ctx.console.print(f"webhook answered HTTP {status} (202 = the function ran)")
    for line in ctx.sandbox.host.logs[mark:]:
        if "AKS event reaction" in line:
            ctx.console.print(f"  [dim]{line}[/dim]")
    ctx.expect(status == 202, f"the Event Grid webhook answered {status}")
    reports = ctx.wait_until("the preflight report alert", lambda: ctx.alerts("com.aksupgrade.version.available"), 10)
    for report in reports:
        ctx.console.print(f"alert received: {report['type']} ({report['data']['severity']}): "
                          f"{report['data']['summary']}")

    ctx.step("a run starts and its `ping` step goes through the queue to run_step (twice: hops=1)")
    run_id = start_ping_run(ctx, hops=1)
    run = ctx.wait_until("the ping run", lambda: (r := ctx.run(run_id))["status"] in FINAL_STATUSES and r)
    ctx.timeline(run)
    ctx.expect(run["status"] == "succeeded", f"the ping run ended {run['status']}: {run['reason']}")


def start_ping_run(ctx: DemoContext, **args: Any) -> str:
    """Create a ping run record and send its first step, as a service starting a run does."""
    from upgrade.adapters.queue import AzureStepQueue
    from upgrade.adapters.tables import TableRunStore
    from upgrade.domain.runs import RunRecord
    from upgrade.domain.steps import StepMessage
    from upgrade.settings import load_settings

    settings = load_settings(ctx.sandbox.settings)
    run_id = f"ping-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    TableRunStore.from_settings(settings).create(RunRecord(
        run_id=run_id, kind="ping", cluster=ctx.cluster_id, pool=None, state="ping", status="running",
        created_at=now, updated_at=now,
    ))
    AzureStepQueue.from_settings(settings).send(
        StepMessage(v=1, run_id=run_id, step="ping", cluster=ctx.cluster_id, args=args, actor="demo")
    )
    ctx.console.print(f"run {run_id}: step ping sent to the queue upgrade-steps")
    return run_id


SCENARIOS: list[Scenario] = [
    Scenario("foundation: an AKS event and a step through function_app", PDB, foundation_event_and_step),
    Scenario("Scenario 1: rolling upgrade with surge (2 nodes, 1.30 -> 1.31, maxSurge 1)", ROLLING,
             demo_rolling.play_scenario1),
    Scenario("Scenario 2: restrictive PDB, undrainableNodeBehavior Cordon (maxSurge 2), then a remediation",
             PDB, demo_rolling.play_scenario2),
    Scenario("Scenario 3: blue-green pool upgrade, commit path (5A)", BLUEGREEN, demo_bluegreen.play_commit),
    Scenario("Scenario 3: blue-green pool upgrade, rollback path (5B)", BLUEGREEN_ROLLBACK,
             demo_bluegreen.play_rollback),
]


def upgrade_policy(clusters: list[DemoCluster]) -> str:
    """The demo's UPGRADE_POLICY: fast polling for everyone, each cluster's own entry on top."""
    return json.dumps({"defaults": DEMO_POLICY_DEFAULTS,
                       "clusters": {c.arm_id: dict(c.policy) for c in clusters if c.policy}})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description=__doc__.splitlines()[0])
    parser.add_argument("words", nargs="*", help="play only the scenarios whose names contain one of these")
    parser.add_argument("--kubernetes", choices=["emulated", "real"], default="emulated",
                        help="real: each cluster's nodes and workloads on its own real control plane "
                             "(sandbox.k8s; `make k8s` builds it), driven by the emulator's AKS half")
    args = parser.parse_args(argv)
    words = [w.lower() for w in args.words]
    scenarios = [s for s in SCENARIOS if not words or any(w in s.name.lower() for w in words)]
    clusters = list({s.cluster.name: s.cluster for s in scenarios}.values())
    console = Console(width=console_width())
    began = time.monotonic()
    real = args.kubernetes == "real"
    console.rule("[bold blue]stage: Azurite + AKS emulator + alerts receiver + function_app on the dev host"
                 + (" + a real control plane per cluster" if real else ""))
    results: list[tuple[str, str, float]] = []
    with ExitStack() as control_planes, Sandbox(
            seeds=[c.builder() for c in clusters], time_scale=DEMO_REAL_TIME_SCALE if real else DEMO_TIME_SCALE,
            queue_overrides=DEMO_QUEUE_OVERRIDES, forward_host_logs=False, policy=upgrade_policy(clusters),
            real_kubernetes=real_backends(control_planes) if real else None) as sandbox:
        console.print(f"stage up in {time.monotonic() - began:.1f}s: clusters {', '.join(sandbox.clusters)}; "
                      f"functions at {sandbox.endpoints()['functionsUrl']}")
        for scenario in scenarios:
            console.rule(f"[bold green]{scenario.name}")
            started = time.monotonic()
            try:
                scenario.play(DemoContext(sandbox, console, scenario.cluster.name))
                outcome = "done"
            except DemoFailed as exc:
                outcome = f"FAILED: {exc}"
            except Exception as exc:  # one broken scenario must not hide the others' results
                outcome = f"FAILED: {type(exc).__name__}: {exc}"
            results.append((scenario.name, outcome, time.monotonic() - started))
            console.print(f"[{'green' if outcome == 'done' else 'red'}]{outcome}: {scenario.name}")
    summary = Table(title=f"demo: {time.monotonic() - began:.0f}s in all", title_justify="left")
    for column in ("scenario", "result", "seconds"):
        summary.add_column(column)
    for name, outcome, seconds in results:
        summary.add_row(name, outcome, f"{seconds:.1f}", style=None if outcome == "done" else "red")
    console.print(summary)
    return 0 if all(outcome == "done" for _, outcome, _ in results) else 1


def real_backends(stack: ExitStack) -> Callable[[str], Any]:
    """A real control plane (no nodes yet) per cluster, stopped with ``stack``: the seeds reuse pool
    names, and one cluster's pool is all of its API server's nodes of that pool."""
    from sandbox.k8s.aks_backend import RealKube
    from sandbox.k8s.controlplane import ControlPlane

    def backend(cluster_name: str) -> Any:
        return RealKube(stack.enter_context(ControlPlane()))

    return backend


def console_width() -> int:
    import shutil

    return max(120, shutil.get_terminal_size((140, 40)).columns)


if __name__ == "__main__":
    sys.exit(main())
