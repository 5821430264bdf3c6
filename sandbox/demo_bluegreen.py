"""Scenario 3 of the seed, played through function_app: a blue-green pool upgrade, commit and rollback.

Each path starts a run over the HTTP API and prints the cluster as the seed's table does at each of
the run's steps that changes it (green created, blue cordoned, each drain batch, validation, the
decision): every node with its pool, version, status and application pods. The commit path ends as
the seed's 5A (green is the pool, every pod Ready on it, blue gone); the rollback path, where the
operator rolls back at the approval gate, as 5B (the pods are back on blue, green is gone).
``sandbox.demo`` plays both, each on its own seed-bluegreen cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.demo import DemoContext

BLUE = "blue"
# Short soaks and a quick poll so a path takes seconds; one node per drain batch, as the seed's step 3.
DEMO_OPTIONS = {"drainBatchSize": "1", "batchSoakMinutes": 0.02, "finalSoakMinutes": 0.03, "pollIntervalSeconds": 1,
                "validation": {"readyTimeoutMinutes": 0.5}}
FINAL = ("succeeded", "failed", "rolled-back", "aborted")
# The run's states after which the cluster looks different (or the operator decides): a table each.
STATES_WITH_TABLES = {"bluegreen.drain_batch", "bluegreen.batch_soak", "bluegreen.final_soak",
                      "bluegreen.await_decision", "bluegreen.drain_green", "bluegreen.wait_green_deleted",
                      "bluegreen.done"}


def play_commit(ctx: DemoContext) -> None:
    run = start(ctx, approval=False)
    run = ctx.follow_run(run["id"], until=FINAL, tables_at=_with_table)
    ctx.step(f"final (5A): run {run['status']}: {run['reason']}")
    view = ctx.tables(pods=True)
    ctx.expect(run["status"] == "succeeded", f"the commit path ended {run['status']}: {run['reason']}")
    pools = {node.pool for node in view.nodes}
    ctx.expect(BLUE not in pools and len(pools) == 1, f"expected green alone, saw pools {sorted(pools)}")
    ctx.expect(all(node.version.startswith(run["targetVersion"]) for node in view.nodes),
               "a green node is not at the target version")
    _expect_apps_ready(ctx, view)


def play_rollback(ctx: DemoContext) -> None:
    run = start(ctx, approval=True)
    run = ctx.follow_run(run["id"], until=("awaiting-decision", *FINAL), tables_at=_with_table)
    ctx.expect(run["status"] == "awaiting-decision", f"the run did not wait for a decision: {run['status']}")
    ctx.step(f"the operator decides to roll back: POST /api/upgrades/{run['id']}/rollback")
    status, body = ctx.request("POST", f"/api/upgrades/{run['id']}/rollback",
                               body={"reason": "the operator prefers blue after validation"})
    ctx.expect(status in (200, 202), f"rollback refused: HTTP {status} {body}")
    run = ctx.follow_run(run["id"], until=FINAL, tables_at=_with_table)
    ctx.step(f"final (5B): run {run['status']}: {run['reason']}")
    view = ctx.tables(pods=True)
    ctx.expect(run["status"] == "rolled-back", f"the rollback path ended {run['status']}: {run['reason']}")
    ctx.expect({node.pool for node in view.nodes} == {BLUE}, "expected blue alone after the rollback")
    ctx.expect(not any("cordoned" in node.status for node in view.nodes), "a blue node is still cordoned")
    _expect_apps_ready(ctx, view)


def start(ctx: DemoContext, *, approval: bool) -> dict[str, Any]:
    ctx.step("start: blue (1.30) runs A, B, C, D")
    ctx.tables(pods=True)
    options = {**DEMO_OPTIONS, **({"approval": {"required": True}} if approval else {})}
    status, run = ctx.request("POST", "/api/upgrades", body={
        "cluster": ctx.cluster_id, "pool": BLUE, "targetVersion": "1.31", "strategy": "blue-green",
        "options": options})
    ctx.expect(status == 202, f"start refused: HTTP {status} {run}")
    ctx.console.print(f"POST /api/upgrades -> 202 {run['id']} ({BLUE} -> {run['targetVersion']}, "
                      f"approval {'required' if approval else 'not required'})")
    return run


def _with_table(run: dict[str, Any]) -> bool:
    return run["state"] in STATES_WITH_TABLES or run["status"] in FINAL


def _expect_apps_ready(ctx: DemoContext, view: Any) -> None:
    ctx.expect(sorted(p.app for p in view.pods if p.state == "Ready") == ["A", "B", "C", "D"],
               f"expected A, B, C, D Ready once each, saw {view.pods}")
