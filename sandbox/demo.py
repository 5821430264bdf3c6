"""``make demo``: function_app on the local sandbox, step by step, with node and pod tables.

``SCENARIOS`` is the list the demo plays, in order. Each entry names the emulator seed it needs
and a callable that drives the app through its public surfaces only (Event Grid webhook, HTTP
routes, the step queue) and prints what happens with ``DemoContext``. Scenario issues append
theirs (seed scenario 1/2 rolling, 3 blue-green); one sandbox per seed is started and reused.
Emulated AKS runs fast (``DEMO_TIME_SCALE``) so the whole demo stays well under three minutes.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from sandbox.up import Sandbox

DEMO_TIME_SCALE = 0.5  # real seconds per emulated AKS minute
DEMO_QUEUE_OVERRIDES = {"maxPollingInterval": 0.5}


class DemoFailed(AssertionError):
    """A scenario did not reach the state it promised."""


@dataclass
class DemoContext:
    sandbox: Sandbox
    console: Console

    @property
    def cluster_id(self) -> str:
        return self.sandbox.endpoints()["clusterIds"][0]

    def step(self, number: int, text: str) -> None:
        self.console.rule(f"[bold]step {number}[/bold]: {text}", align="left")

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        assert self.sandbox.host is not None
        return self.sandbox.host.request(method, path, **kwargs)

    def tables(self, title: str) -> None:
        from sandbox.tables import print_cluster

        kubeconfig = self.sandbox.endpoints()["kubeconfig"]
        if kubeconfig:
            print_cluster(self.console, kubeconfig, title)

    def host_lines_since(self, mark: int, *needles: str) -> list[str]:
        assert self.sandbox.host is not None
        return [line for line in self.sandbox.host.logs[mark:] if any(n in line for n in needles)]

    def log_mark(self) -> int:
        assert self.sandbox.host is not None
        return len(self.sandbox.host.logs)

    def wait_for_run(self, run_id: str, *, final: bool = True, timeout: float = 120.0) -> dict[str, Any]:
        """Poll GET /api/upgrades/{id} until the run is final (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            status, run = self.request("GET", f"/api/upgrades/{run_id}")
            if status == 200 and (not final or run["status"] not in ("running", "paused", "awaiting-decision")):
                return run
            if time.monotonic() > deadline:
                raise DemoFailed(f"run {run_id} did not finish in {timeout}s (last: HTTP {status} {run})")
            time.sleep(0.3)

    def timeline(self, run: dict[str, Any]) -> None:
        table = Table(title=f"run {run['id']} ({run['kind']}): {run['status']}", title_justify="left")
        for column in ("at", "step", "attempt", "outcome", "reason"):
            table.add_column(column)
        for entry in run["timeline"]:
            table.add_row(entry["at"][11:23], entry["step"], str(entry["attempt"]), entry["outcome"], entry["reason"])
        self.console.print(table)


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: str | None  # the emulator scenario it needs (sandbox.aks_emulator.scenarios), or None
    play: Callable[[DemoContext], None]


def foundation_event_and_step(ctx: DemoContext) -> None:
    """An AKS event through the Event Grid webhook, then a step message through the queue."""
    ctx.step(1, "the cluster as the emulator serves it (kubernetes client)")
    ctx.tables("before")

    ctx.step(2, "AKS publishes NewKubernetesVersionAvailable; Event Grid delivers it to on_aks_event")
    event = {
        "id": str(uuid.uuid4()), "topic": ctx.cluster_id, "subject": ctx.cluster_id.rsplit("/", 1)[-1],
        "eventType": "Microsoft.ContainerService.NewKubernetesVersionAvailable",
        "eventTime": datetime.now(UTC).isoformat(), "dataVersion": "1", "metadataVersion": "1",
        "data": {"latestSupportedKubernetesVersion": "1.31.2", "latestStableKubernetesVersion": "1.31.2",
                 "lowestMinorKubernetesVersion": "1.30.0", "latestPreviewKubernetesVersion": "1.32.0"},
    }
    ctx.console.print_json(json.dumps(event))
    mark = ctx.log_mark()
    status, _ = ctx.request("POST", "/runtime/webhooks/EventGrid?functionName=on_aks_event", body=[event],
                            headers={"aeg-event-type": "Notification"})
    ctx.console.print(f"webhook answered HTTP {status} (202 = the function ran)")
    for line in ctx.host_lines_since(mark, "on_aks_event", "reaction", "AKS event"):
        ctx.console.print(f"  [dim]{line}[/dim]")
    if status != 202:
        raise DemoFailed(f"the Event Grid webhook answered {status}")

    ctx.step(3, "a run starts and its `ping` step goes through the queue to run_step (twice: hops=1)")
    run_id = start_ping_run(ctx, hops=1)
    run = ctx.wait_for_run(run_id)
    ctx.timeline(run)
    if run["status"] != "succeeded":
        raise DemoFailed(f"the ping run ended {run['status']}: {run['reason']}")


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
    Scenario("foundation: an AKS event and a step through function_app", "seed-rolling", foundation_event_and_step),
]


def main() -> int:
    console = Console(width=int(console_width()))
    failures = 0
    by_seed: dict[str | None, list[Scenario]] = {}
    for scenario in SCENARIOS:
        by_seed.setdefault(scenario.seed, []).append(scenario)
    for seed, scenarios in by_seed.items():
        console.rule(f"[bold blue]sandbox: Azurite + AKS emulator ({seed or 'no cluster'}) + dev host")
        with Sandbox(scenario=seed, time_scale=DEMO_TIME_SCALE, queue_overrides=DEMO_QUEUE_OVERRIDES,
                     forward_host_logs=False) as sandbox:
            for scenario in scenarios:
                console.rule(f"[bold green]{scenario.name}")
                try:
                    scenario.play(DemoContext(sandbox, console))
                    console.print(f"[green]done: {scenario.name}")
                except DemoFailed as exc:
                    failures += 1
                    console.print(f"[red]FAILED: {scenario.name}: {exc}")
    return 1 if failures else 0


def console_width() -> int:
    import shutil

    return max(120, shutil.get_terminal_size((140, 40)).columns)


if __name__ == "__main__":
    sys.exit(main())
