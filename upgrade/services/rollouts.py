"""Rollouts executed as queue steps (see ``upgrade.domain.rollouts`` for the plan and its stages).

A rollout is a run record of kind ``rollout`` on the step executor like any run: one live
``rollout.tick`` message, claimed, its transition one ETag-conditional write carrying the next
message in the outbox, its history rows the audit trail, found by the reconciler when lost. Its
``options.plan`` is the validated plan, ``target_version`` the one version resolved at the start
(or ``nodeImage``, with ``options.node_images`` the image pinned per family),
``facts.progress`` where the stage machine is, ``facts.clusters`` each cluster's pools and runs.

Each tick looks at the clusters in flight and moves the stage machine (``domain.rollouts.advance``).
A cluster's upgrade is its pools' ordinary runs, one pool after the other, each started through
the HTTP API's own start service with the strategy the policy gives the pool (so maintenance
windows, holds and the allow-list apply as to any run). Starting is idempotent: a pool that already
has an active upgrade to the rollout's target adopts it (any other active run fails the cluster), a
pool already at the target needs no run.

The run's status follows the rollout's: running while it is polled (running, soaking,
gate-blocked), paused while it waits for an operator (awaiting-approval, halted, paused),
succeeded when done, aborted. An operator's decision is one conditional write that, when the
rollout goes on, carries the next tick in the outbox (a tick that ran meanwhile finds the run moved
and its outcome is dropped; the runs it started are adopted by the next tick).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from upgrade.domain.alerts import Alert
from upgrade.domain.model import ClusterRef
from upgrade.domain.node_images import PoolImage, pool_image_check, resolve_node_images
from upgrade.domain.rollouts import (
    POLLED_STATUSES,
    ClusterEvidence,
    RolloutPlan,
    RolloutProgress,
    Step,
    advance,
    cluster_ended,
    decide,
    parse_plan,
    resolve_target,
    tag_selections,
    with_selected_clusters,
)
from upgrade.domain.runs import FINAL_STATUSES, HistoryEntry, RunRecord
from upgrade.domain.steps import Done, Outcome, Retry, StepMessage
from upgrade.domain.versions import NODE_IMAGE, is_node_image, normalize_version, same_version
from upgrade.errors import Conflict, InvalidInput, NotFound
from upgrade.ports import Platform
from upgrade.services.health_gate import gate_evidence
from upgrade.services.outbox import create_run, outbox_for, send_after_write
from upgrade.services.registry import StepSpec

KIND = "rollout"
TICK = "rollout.tick"
# Rollouts are listed from this state-store partition (rollout id -> created at): the run list
# holds every kind of run, newest first, and is not searched for rollouts.
INDEX_PARTITION = "rollouts"
MAX_LIST_LIMIT = 500
# A rollout entering one of these waits says so once (the status -> the alert's severity): the
# parked ones wait for an operator with no due time, the gate-blocked one until its findings go.
ALERTED_STATUSES = {"halted": "error", "gate-blocked": "error", "awaiting-approval": "warning"}


def _plan_of(run: RunRecord) -> RolloutPlan:
    return parse_plan(run.options["plan"], [*run.options["plan_clusters"]])


def _progress_of(run: RunRecord) -> RolloutProgress:
    return RolloutProgress.from_public(run.facts["progress"])


def _run_status(progress: RolloutProgress) -> str:
    if progress.status == "done":
        return "succeeded"
    if progress.status == "aborted":
        return "aborted"
    return "running" if progress.status in POLLED_STATUSES else "paused"


# ---- start ---------------------------------------------------------------------------------------


def _offered(platform: Platform, cluster: str) -> tuple[list[str], dict[str, str]]:
    """The versions every pool of ``cluster`` may be upgraded to (a pool already at a version
    counts as offering it), and each pool's version."""
    ref = ClusterRef.parse(cluster)
    aks = platform.aks(ref)
    pools = aks.list_pools(ref)
    common: set[str] | None = None
    for pool in pools:
        mine = {normalize_version(v) for v in aks.available_upgrades(ref, pool.name)}
        mine.add(normalize_version(pool.orchestrator_version))
        common = mine if common is None else common & mine
    return sorted(common or ()), {p.name: p.orchestrator_version for p in pools}


def start_rollout(platform: Platform, body: object, *, actor: str) -> RunRecord:
    """``POST /api/rollouts``: validate the plan against the allow-list and every cluster's offered
    versions, resolve the one target, record the rollout and send its first tick."""
    selections = tag_selections(body)
    if selections:
        body = _select_by_tags(platform, body, selections)
    plan = parse_plan(body, platform.allowed_clusters)
    offered: dict[str, list[str]] = {}
    images: list[PoolImage] = []
    for cluster in plan.clusters:
        try:
            if is_node_image(plan.target_version):
                images += _pool_images(platform, cluster)
            else:
                offered[cluster], _ = _offered(platform, cluster)
        except NotFound as exc:
            raise InvalidInput("rollout plan", "stages", f"cluster {cluster} not found: {exc}") from exc
    node_images = resolve_node_images(images) if is_node_image(plan.target_version) else {}
    target = NODE_IMAGE if node_images else resolve_target(plan, offered)
    now = platform.clock.now()
    run_id = f"rollout-{uuid.uuid4().hex[:12]}"
    progress = RolloutProgress.start(plan)
    first = plan.clusters[0]
    run = RunRecord(
        run_id=run_id, kind=KIND, cluster=first, pool=_lock_name(run_id), state=TICK, status="running",
        created_at=now, updated_at=now, target_version=target,
        options={"plan": plan.to_public(), "plan_clusters": list(plan.clusters),
                 **({"node_images": node_images} if node_images else {})},
        facts={"started_by": actor, "progress": progress.to_public(), "clusters": {}},
        reason=f"rollout of {len(plan.clusters)} cluster(s) in {len(plan.stages)} stage(s) to {_target_text(target, node_images)}",
    )
    message = StepMessage(v=1, run_id=run_id, step=TICK, cluster=first, pool=run.pool, attempt=1, actor=actor)
    run = create_run(platform, run, message, source=KIND)
    platform.state.put(INDEX_PARTITION, run_id, {"created_at": now.isoformat(), "name": plan.name}, etag=None)
    platform.runs.append_history(HistoryEntry(run_id, now, TICK, 0, "started", run.reason, actor))
    return run


def _pool_images(platform: Platform, cluster: str, pools: Sequence[str] | None = None) -> list[PoolImage]:
    """Each pool's node image and the latest its upgrade profile offers (all pools, or ``pools``)."""
    ref = ClusterRef.parse(cluster)
    aks = platform.aks(ref)
    found = aks.list_pools(ref) if pools is None else [aks.get_pool(ref, p) for p in pools]
    return [PoolImage(cluster, p.name, p.node_image_version, aks.latest_node_image_version(ref, p.name)) for p in found]


def _target_text(target: str, node_images: Mapping[str, str]) -> str:
    return f"node image {', '.join(sorted(node_images.values()))}" if node_images else target


def _select_by_tags(platform: Platform, body: Mapping[str, Any],
                    selections: Mapping[tuple[int, int], Mapping[str, str]]) -> dict[str, Any]:
    """Each tag-selected group's clusters, found through Azure Resource Graph in the subscriptions
    of the allow-list and kept only when allowed (resolved once, at the start)."""
    subscriptions = sorted({ClusterRef.parse(c).subscription_id for c in platform.allowed_clusters})
    search = platform.cluster_search()
    found = {where: search.clusters_tagged(subscriptions, tags) for where, tags in selections.items()}
    return with_selected_clusters(body, found, platform.allowed_clusters)


def _lock_name(run_id: str) -> str:
    """The run store keeps one active run per (cluster, pool): a rollout's own name, which no
    agent pool can have ("~" is not allowed in one), holds nothing but itself."""
    return "~" + run_id.rsplit("-", 1)[-1][:11]


# ---- the tick ------------------------------------------------------------------------------------


def _start_pool_run(platform: Platform, cluster: str, pool: str, target: str, actor: str,
                    node_image: str | None = None) -> str:
    """Start (or adopt) pool ``pool``'s ordinary run to ``target`` with the policy's strategy and,
    for blue-green, the policy's ``blueGreen`` options (as an automatic start takes them; a rolling
    run reads its policy itself); ``node_image``: a node-image rollout's pin for the pool, the only
    image its run may upgrade to (it fails rather than overshoot it)."""
    from upgrade.services.upgrade_requests import STRATEGIES, bound_node_image, start_upgrade

    pool_policy = platform.policy.for_pool(cluster, pool)
    options = pool_policy.blue_green if pool_policy.strategy == "blue-green" else {}
    try:
        return start_upgrade(platform, {"cluster": cluster, "pool": pool, "targetVersion": target,
                                        "strategy": pool_policy.strategy, "options": options}, actor=actor,
                             node_image=node_image).run_id
    except Conflict as exc:
        if not exc.code:
            raise
        # the pool's active run: started by an earlier copy of this tick (adopted), or by someone
        # else; that one is adopted only when it goes where the rollout goes (not a remediation,
        # another version, or a node image run free to take whatever image AKS offers by then)
        active = platform.runs.get(exc.code)
        if node_image:
            goes_to = bound_node_image(active)
            same = goes_to == node_image
        else:
            goes_to = active.target_version
            same = bool(goes_to) and same_version(goes_to, target)
        if active.kind not in STRATEGIES or not same:
            raise Conflict(f"pool {pool} has another active run, {active.kind} run {active.run_id} "
                           f"(to {goes_to or 'no recorded target'}, not {node_image or target})") from exc
        return exc.code


def _cluster_step(platform: Platform, cluster: str, entry: dict[str, Any], target: str, actor: str,
                  node_images: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """One look at a cluster in flight: its pools one after the other. Returns the cluster's entry
    and how its upgrade ended: ``done``, ``failed``, ``held`` (a node-image rollout's pool can no
    longer reach the pinned image: nothing started on it), or None (it goes on)."""
    entry = {"pools": entry.get("pools"), "runs": dict(entry.get("runs") or {}), "reason": entry.get("reason", "")}
    if entry["pools"] is None:
        if node_images:
            entry["pools"] = sorted(p.pool for p in _pool_images(platform, cluster)
                                    if p.current != node_images.get(p.family or ""))
        else:
            _, versions = _offered(platform, cluster)
            entry["pools"] = sorted(p for p, v in versions.items() if not same_version(v, target))
    for pool in entry["pools"]:
        run_id = entry["runs"].get(pool)
        if run_id is None:
            pinned = None
            if node_images:
                # AKS may have published a newer image since the pin: a run now would overshoot it
                try:
                    pinned = pool_image_check(*_pool_images(platform, cluster, [pool]), node_images)
                except ValueError as exc:
                    entry["reason"] = str(exc)
                    return entry, "held"
                except NotFound as exc:
                    entry["reason"] = f"pool {pool}: {exc}"
                    return entry, "failed"
                if pinned is None:
                    continue
            try:
                entry["runs"][pool] = _start_pool_run(platform, cluster, pool, target, actor, pinned)
            except (InvalidInput, NotFound, Conflict) as exc:
                entry["reason"] = f"pool {pool}: the run could not start: {exc}"
                return entry, "failed"
            return entry, None
        run = platform.runs.get(run_id)
        if run.status not in FINAL_STATUSES:
            return entry, None
        if run.status != "succeeded":
            entry["reason"] = f"pool {pool}: run {run_id} {run.status}: {run.reason}"
            return entry, "failed"
    at = _target_text(target, node_images)
    entry["reason"] = f"{len(entry['runs'])} pool(s) upgraded to {at}" if entry["runs"] else f"already at {at}"
    return entry, "done"


def _poll_seconds(platform: Platform, run: RunRecord) -> float:
    return platform.policy.for_pool(run.cluster, None).poll_seconds


def tick(ctx: Any) -> Outcome:
    """``rollout.tick``: the clusters in flight, then the stage machine; the next tick is due after
    the policy's pollSeconds (or the soak's end); a parked rollout's tick waits for a decision."""
    platform, run = ctx.platform, ctx.run
    plan, progress, now = _plan_of(run), _progress_of(run), platform.clock.now()
    node_images = run.options.get("node_images") or {}
    clusters = dict(run.facts.get("clusters") or {})
    ended: list[str] = []
    for cluster, status in progress.clusters.items():
        if status != "running":
            continue
        clusters[cluster], result = _cluster_step(platform, cluster, clusters.get(cluster, {}), run.target_version,
                                                  ctx.message.actor, node_images)
        if result is not None:
            progress = cluster_ended(progress, cluster, result, clusters[cluster]["reason"])
            ended.append(f"{cluster}: {result}: {clusters[cluster]['reason']}")
    checked: list = []

    def evidence(asked: Sequence[str]) -> dict[str, ClusterEvidence]:
        found = gate_evidence(platform, asked, lambda c: clusters.get(c, {}).get("runs") or {},
                              node_images=node_images)
        checked.append(platform.clock.now())  # the gate's verdict is known from here
        return found

    step = advance(plan, progress, now=now, evidence=evidence)
    gate_at = checked[-1] if checked else now
    for cluster in step.start:
        clusters[cluster], result = _cluster_step(platform, cluster, {}, run.target_version, ctx.message.actor,
                                                  node_images)
        if result is not None:  # nothing to upgrade, its first run refused, or held: ended at once
            step = replace(step, progress=cluster_ended(step.progress, cluster, result, clusters[cluster]["reason"]),
                           look_again_at=now)
    return _outcome(platform, run, step, clusters, ended, gate_at)


def _outcome(platform: Platform, run: RunRecord, step: Step, clusters: dict[str, Any], ended: list[str],
             gate_at: datetime) -> Outcome:
    progress = step.progress
    facts = {"progress": progress.to_public(), "clusters": clusters}
    if step.gate_passed is not None:
        facts["gates"] = [*run.facts.get("gates", []), {"stage": step.gate_passed, "passedAt": gate_at.isoformat()}]
    if step.start:
        facts["stageStarts"] = [*run.facts.get("stageStarts", []), {"stage": progress.stage, "clusters": len(step.start),
                                                                     "at": platform.clock.now().isoformat()}]
    reason = "; ".join([*ended, progress.reason]) if ended else progress.reason
    previous = run.facts.get("progress", {}).get("status")
    if progress.status != previous and progress.status in ALERTED_STATUSES:
        platform.alerts.publish(Alert(
            kind=f"rollout.{progress.status}", severity=ALERTED_STATUSES[progress.status], cluster=run.cluster, pool=None, run_id=run.run_id,
            summary=f"Rollout {run.run_id} ({run.options['plan'].get('name')}): {progress.reason}",
            details={"stage": progress.stage}, dedup_key=f"{run.run_id}:{progress.status}:{progress.stage}"))
    if progress.status == "done":
        at = _target_text(run.target_version, run.options.get("node_images") or {})
        return Done(summary=f"every cluster at {at}: {progress.reason}", facts=facts)
    status = _run_status(progress)
    delay = _poll_seconds(platform, run)
    if step.look_again_at is not None:
        delay = min(delay, max(0.0, (step.look_again_at - platform.clock.now()).total_seconds()))
    return Retry(delay_seconds=delay, reason=reason, facts=facts, status=status)


# ---- operators -----------------------------------------------------------------------------------


def decide_rollout(platform: Platform, rollout_id: str, decision: str, body: object, *, actor: str) -> RunRecord:
    """``POST /api/rollouts/{id}/{decision}`` with ``{reason?, cluster?}`` (``cluster``: the ARM id
    skip names). One conditional write; when the rollout goes on, its next tick rides in it."""
    body = body if body is not None else {}
    if not isinstance(body, Mapping):
        raise InvalidInput("rollout decision", "(body)", "must be a JSON object")
    unknown = sorted(set(body) - {"reason", "cluster", "actor"})
    if unknown:
        raise InvalidInput("rollout decision", unknown[0], "unknown field (allowed: actor, cluster, reason)")
    for key in ("reason", "cluster", "actor"):
        if key in body and not isinstance(body[key], str):
            raise InvalidInput("rollout decision", key, "must be a string")
    # ``actor`` is the signed-in caller; a body ``actor`` is accepted for older clients and ignored
    reason = body.get("reason") or ""
    for _ in range(5):
        run = _get(platform, rollout_id)
        now = platform.clock.now()
        if run.status == "stuck" and decision == "resume":
            # the reconciler could not re-send its tick: send it again, the stage machine as it was
            step = Step(_progress_of(run))
        elif run.status in FINAL_STATUSES:
            raise Conflict(f"rollout {rollout_id} is {run.status}: nothing to {decision}")
        else:
            step = decide(_plan_of(run), _progress_of(run), decision, now=now, cluster=body.get("cluster"))
        said = f"{decision}" + (f" {body['cluster']}" if body.get("cluster") else "") + f" by {actor}" + (
            f": {reason}" if reason else "")
        record = {"decision": decision, "actor": actor, "at": now.isoformat(), "reason": reason,
                  **({"cluster": body["cluster"]} if body.get("cluster") else {})}
        facts = {"progress": step.progress.to_public(), "decisions": [*run.facts.get("decisions", []), record]}
        status = _run_status(step.progress)
        changes: dict[str, Any] = {"claim": None, "reason": said, "status": status, "attempt": run.attempt + 1,
                                   "outbox": None}
        if status == "running":
            message = StepMessage(v=1, run_id=run.run_id, step=TICK, cluster=run.cluster, pool=run.pool,
                                  attempt=run.attempt + 1, actor=actor)
            changes["outbox"] = outbox_for(message, ["decision", decision])
        try:
            updated = platform.runs.update(run.evolve(now=now, facts=facts, **changes))
        except Conflict:
            continue
        send_after_write(platform, updated)
        platform.runs.append_history(HistoryEntry(run.run_id, now, run.state, run.attempt, "decision", said, actor))
        return updated
    raise Conflict(f"rollout {rollout_id} kept changing; try the decision again")


def _get(platform: Platform, rollout_id: str) -> RunRecord:
    run = platform.runs.get(rollout_id)
    if run.kind != KIND:
        raise NotFound(f"{rollout_id} is a {run.kind} run, not a rollout")
    return run


def rollout_view(platform: Platform, rollout_id: str) -> dict[str, Any]:
    """``GET /api/rollouts/{id}``: the plan, where it is, each cluster's runs, and the history."""
    run = _get(platform, rollout_id)
    history = sorted(platform.runs.history(rollout_id), key=lambda h: (h.at, h.attempt))
    return {**public(run), "timeline": [h.to_public() for h in history]}


def public(run: RunRecord) -> dict[str, Any]:
    plan = run.options["plan"]
    progress = run.facts.get("progress", {})
    clusters = run.facts.get("clusters", {})
    stages = []
    for index, stage in enumerate(plan["stages"]):
        groups = [{"name": g["name"], "clusters": [
            {"cluster": c, "status": progress.get("clusters", {}).get(c), "runs": (clusters.get(c) or {}).get("runs", {}),
             "reason": (clusters.get(c) or {}).get("reason", "")} for c in g["clusters"]]} for g in stage["groups"]]
        stages.append({**{k: v for k, v in stage.items() if k != "groups"}, "index": index, "groups": groups})
    status = progress.get("status")
    if run.status == "failed":  # the run machinery failed the rollout (a poisoned tick): say so
        status = "failed"
    return {"id": run.run_id, "kind": run.kind, "name": plan.get("name"), "status": status,
            "runStatus": run.status, "stage": progress.get("stage"), "targetVersion": run.target_version,
            "nodeImages": run.options.get("node_images") or None,
            "reason": run.reason, "createdAt": run.created_at.isoformat(), "updatedAt": run.updated_at.isoformat(),
            "startedBy": run.facts.get("started_by"), "stages": stages, "gates": run.facts.get("gates", []),
            "stageStarts": run.facts.get("stageStarts", []), "decisions": run.facts.get("decisions", [])}


def list_rollouts(platform: Platform, *, limit: str | None) -> dict[str, Any]:
    """``GET /api/rollouts[?limit=N]``: the newest rollouts."""
    limit = "50" if limit is None else limit
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIST_LIMIT:
        raise InvalidInput("query", "limit", f"must be an integer from 1 to {MAX_LIST_LIMIT}")
    index = sorted(platform.state.list(INDEX_PARTITION), key=lambda kv: kv[1].get("created_at", ""), reverse=True)
    found = []
    for rollout_id, _ in index[: int(limit)]:
        try:
            found.append(public(_get(platform, rollout_id)))
        except NotFound:
            continue
    return {"rollouts": found}


STEPS = {TICK: StepSpec(TICK, tick, lease_seconds=300.0)}
