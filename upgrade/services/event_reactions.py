"""Reactions to AKS events (``on_aks_event``), safe under duplicate and out-of-order delivery.

Each event is claimed by id in the state store (an insert that a duplicate loses), reacted to,
and only then marked done. A copy that finds the event done is a duplicate; one that finds it
claimed by a worker that is still within EVENT_CLAIM (reacting now) asks Event Grid to deliver it
again later (TemporaryError); one that finds an older claim (its worker died mid-reaction) takes
it over and reacts, so a killed worker never turns the redelivery into a "duplicate". Runs are
created and moved with their next message in their outbox (``services.outbox``). Per event type:
- NewKubernetesVersionAvailable: per pool, the policy's ``onNewVersion``: notify, or run the
  preflight and send its report (surge nodes, extra vCPU quota, blockers), or start the upgrade
  (rolling or blue-green). An automatic start is held back, with the report, when the preflight
  predicts the upgrade will not succeed;
- ClusterSupportEnding / ClusterSupportEnded: a warning / an error alert;
- NodePoolRollingStarted: record a rolling run with a snapshot of the pool, unless a run of the
  product already holds the pool (its own upgrade, a remediation) or the pool's operation is
  already over (a late copy: its Succeeded/Failed reconciles);
- NodePoolRollingSucceeded / Failed: move the pool's rolling run to its post-upgrade reconcile,
  or create a run that starts there (Succeeded may arrive before Started).
A run is only ever moved while it waits for the pool, never while a step that acts is running.
An event of a cluster outside ALLOWED_CLUSTERS is ignored.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from upgrade.domain import events as ev
from upgrade.domain.alerts import Alert
from upgrade.domain.model import ClusterRef, is_allowed_cluster
from upgrade.domain.preflight import PlannedUpgrade, preflight
from upgrade.domain.reactions import (
    THEN_NOTIFY,
    THEN_REPORT,
    THEN_START_BLUE_GREEN,
    THEN_START_ROLLING,
    planned_reaction,
)
from upgrade.domain.runs import RunRecord
from upgrade.domain.steps import StepMessage
from upgrade.domain.versions import version_key
from upgrade.errors import Conflict, InvalidInput, PermanentError, TemporaryError
from upgrade.ports import Platform
from upgrade.services import rolling
from upgrade.services.outbox import create_run, outbox_for, send_after_write
from upgrade.services.snapshot import take_snapshot

log = logging.getLogger("upgrade.events")

EVENTS_PARTITION = "aks-events"
# A claim older than this was left by a worker that died mid-reaction: another may take it over.
EVENT_CLAIM = timedelta(minutes=5)
# A Started (Succeeded) arriving this soon after the run its counterpart made belongs to that run.
LATE_EVENT_WINDOW = timedelta(hours=1)


def react_to_events(events: list[ev.AksEvent], platform: Platform) -> list[str]:
    """React to each event once; returns one description per event."""
    return [_react_once(event, platform) for event in events]


def _react_once(event: ev.AksEvent, platform: Platform) -> str:
    label = f"{event.short_type} {event.id} ({event.cluster.name})"
    if not is_allowed_cluster(event.cluster, platform.allowed_clusters):
        # A subscription may deliver events of clusters the app must not touch: not even read them.
        log.warning("AKS event %s of %s ignored: the cluster is not in ALLOWED_CLUSTERS", event.id, event.cluster)
        return f"{label}: ignored, the cluster is not in ALLOWED_CLUSTERS"
    for _ in range(3):
        claimed = _claim(event, platform)
        if claimed is None:
            return f"{label}: duplicate delivery, already handled"
        if claimed:
            break
    else:
        raise TemporaryError(f"event {event.id}: its record kept changing; deliver it again")
    try:
        outcome = _react(event, platform)
    except BaseException:
        # Let the redelivery react: the claim would otherwise swallow the event for good.
        platform.state.delete(EVENTS_PARTITION, event.id)
        raise
    record, etag = claimed
    platform.state.put(EVENTS_PARTITION, event.id, {**record, "done": True, "outcome": outcome[:2000]}, etag=etag)
    return f"{label}: {outcome}"


def _claim(event: ev.AksEvent, platform: Platform) -> tuple[dict, str] | bool | None:
    """The event's claim (record, etag) for this worker; None when the event is done; False when
    the record changed meanwhile (look again). Raises TemporaryError while another worker reacts."""
    now = platform.clock.now()
    record = {"type": event.event_type, "cluster": event.cluster.arm_id, "at": now.isoformat(), "done": False}
    current = platform.state.get(EVENTS_PARTITION, event.id)
    try:
        if current is None:
            return record, platform.state.put(EVENTS_PARTITION, event.id, record, etag=None)
        stored, etag = current
        if stored.get("done", True):  # a record without "done" was written when claims were final
            return None
        if now - datetime.fromisoformat(stored["at"]) < EVENT_CLAIM:
            raise TemporaryError(f"event {event.id} is being handled by another worker; deliver it again",
                                 delay_seconds=EVENT_CLAIM.total_seconds())
        log.warning("AKS event %s: the worker that claimed it at %s did not finish: reacting again", event.id,
                    stored["at"])
        return record, platform.state.put(EVENTS_PARTITION, event.id, record, etag=etag)
    except Conflict:
        return False


def _react(event: ev.AksEvent, platform: Platform) -> str:
    if isinstance(event, ev.NewKubernetesVersionAvailable):
        return on_new_version(event, platform)
    if isinstance(event, ev.ClusterSupportEnding | ev.ClusterSupportEnded):
        return on_support_ending(event, platform)
    if isinstance(event, ev.NodePoolRollingStarted):
        return on_rolling_started(event, platform)
    if isinstance(event, ev.NodePoolRollingSucceeded | ev.NodePoolRollingFailed):
        return on_rolling_finished(event, platform)
    return "no reaction"


# ---- new version -----------------------------------------------------------------------------


def choose_target_version(available: list[str], latest_stable: str) -> str | None:
    """The newest version the pool's upgrade profile offers that is not past the latest stable."""
    eligible = [v for v in available if version_key(v) <= version_key(latest_stable)]
    return max(eligible, key=version_key) if eligible else None


def on_new_version(event: ev.NewKubernetesVersionAvailable, platform: Platform) -> str:
    cluster = event.cluster
    aks = platform.aks(cluster)
    policy = platform.policy
    snapshot = None
    notes = []
    for pool in sorted(aks.list_pools(cluster), key=lambda p: p.name):
        pool_policy = policy.for_pool(cluster, pool.name)
        then = planned_reaction(event, pool_policy)["then"]
        offered = aks.available_upgrades(cluster, pool.name)
        target = choose_target_version(offered, event.latest_stable_kubernetes_version)
        if target is None:
            notes.append(f"{pool.name}: no upgrade offered up to {event.latest_stable_kubernetes_version}")
            continue
        if then == THEN_NOTIFY:
            platform.alerts.publish(_version_alert(cluster, pool.name, target, event, None, "notify"))
            notes.append(f"{pool.name}: notified {target}")
            continue
        snapshot = snapshot or take_snapshot(platform, cluster)
        strategy = "blue-green" if then == THEN_START_BLUE_GREEN else pool_policy.strategy
        report = preflight(snapshot, PlannedUpgrade(
            pool=pool.name, strategy=strategy, target_version=target, offered_versions=tuple(offered),
            settings=pool_policy.rolling.to_upgrade_settings() if strategy == "rolling" else pool.upgrade_settings,
        ))
        if then == THEN_REPORT:
            platform.alerts.publish(_version_alert(cluster, pool.name, target, event, report, "report"))
            notes.append(f"{pool.name}: preflight report for {target} ({report.final_state})")
            continue
        if report.final_state != "Succeeded":
            platform.alerts.publish(_version_alert(cluster, pool.name, target, event, report, "held"))
            notes.append(f"{pool.name}: not started, the preflight predicts {report.final_state}")
            continue
        notes.append(f"{pool.name}: {_start(platform, cluster, pool.name, target, then, pool_policy, report)}")
    return "; ".join(notes) or "no pools"


def _start(platform: Platform, cluster: ClusterRef, pool: str, target: str, then: str, pool_policy, report) -> str:
    actor = "event:NewKubernetesVersionAvailable"
    try:
        if then == THEN_START_ROLLING:
            run = rolling.start_rolling_run(platform, cluster=cluster, pool=pool, target_version=target,
                                            options={"pollSeconds": pool_policy.poll_seconds}, actor=actor)
        else:
            from upgrade.services.bluegreen import start_bluegreen_run

            run = start_bluegreen_run(platform, cluster=cluster.arm_id, pool=pool, target_version=target,
                                      options=pool_policy.blue_green, actor=actor)
    except Conflict as exc:
        return f"not started: run {exc.code} already holds the pool"
    except (PermanentError, InvalidInput) as exc:
        platform.alerts.publish(Alert(kind="upgrade.not-started", severity="error", cluster=cluster.arm_id, pool=pool,
                                      summary=f"Automatic upgrade of pool {pool} to {target} refused: {exc}"))
        return f"not started: {exc}"
    platform.alerts.publish(_version_alert(cluster, pool, target, None, report, "started", run_id=run.run_id))
    return f"{run.kind} run {run.run_id} started to {target}"


def _version_alert(cluster: ClusterRef, pool: str, target: str, event: ev.NewKubernetesVersionAvailable | None,
                   report, mode: str, run_id: str | None = None) -> Alert:
    details: dict = {"targetVersion": target, "mode": mode}
    if event is not None:
        details["latestStable"] = event.latest_stable_kubernetes_version
        details["latestSupported"] = event.latest_supported_kubernetes_version
    summary = f"Kubernetes {target} is available for pool {pool} of {cluster.name}"
    severity = "info"
    blockers: tuple = ()
    if report is not None:
        details["preflight"] = report.to_public()
        quota = f"{report.extra_vcpus} extra vCPU" if report.extra_vcpus is not None else "an unknown vCPU quota"
        summary += (
            f": a {report.strategy} upgrade needs {report.surge_node_count} surge node(s) of {report.vm_size} "
            f"({quota}); predicted {report.final_state}"
        )
        if report.quarantined_nodes:
            summary += f", quarantining {', '.join(report.quarantined_nodes)}"
        if report.failed_nodes:
            summary += f", failing on {', '.join(report.failed_nodes)}"
        blockers = tuple(b.to_public() for b in report.blocked_now)
        if report.final_state != "Succeeded":
            severity = "warning"
    summary += {
        "notify": ".", "report": ".", "started": ": upgrade started.",
        "held": ": not started automatically, fix the blockers or start it by hand.",
    }[mode]
    return Alert(kind="upgrade.started" if mode == "started" else "version.available", severity=severity,
                 cluster=cluster.arm_id, pool=pool, run_id=run_id, summary=summary, blockers=blockers,
                 details=details, dedup_key=f"{cluster.arm_id.lower()}|{pool}|version|{target}|{mode}")


# ---- support ---------------------------------------------------------------------------------


def on_support_ending(event: ev.ClusterSupportEnding | ev.ClusterSupportEnded, platform: Platform) -> str:
    ended = isinstance(event, ev.ClusterSupportEnded)
    state = "has ended" if ended else "is ending"
    platform.alerts.publish(
        Alert(
            kind="cluster.support-ended" if ended else "cluster.support-ending",
            severity="error" if ended else "warning",
            cluster=event.cluster.arm_id,
            summary=f"Support for Kubernetes {event.kubernetes_version} on {event.cluster.name} {state}: "
                    "upgrade the control plane and the node pools.",
            details={"kubernetesVersion": event.kubernetes_version, "clusterName": event.cluster.name},
            dedup_key=f"{event.cluster.arm_id.lower()}|support|{event.kubernetes_version}|{int(ended)}",
        )
    )
    return f"alerted: support {state} ({'error' if ended else 'warning'})"


# ---- rolling started / finished --------------------------------------------------------------


def _latest_rolling_run(platform: Platform, cluster: ClusterRef, pool: str) -> RunRecord | None:
    return next((r for r in platform.runs.list_runs(cluster=cluster.arm_id, limit=50)
                 if r.kind == rolling.KIND and r.pool == pool), None)


def _event_time(event: ev.AksEvent) -> str | None:
    # Kept as text and compared only with other events' times: AKS's clock is not ours.
    return event.event_time.isoformat() if event.event_time else None


def _recent(platform: Platform, moment) -> bool:
    return platform.clock.now() - moment <= LATE_EVENT_WINDOW


def _already_reconciled(event: ev.AksEvent, latest: RunRecord | None, platform: Platform) -> bool:
    """A Succeeded/Failed that arrives after its run saw the pool finish and reconciled on its own."""
    if latest is None or latest.active or latest.facts.get("finished_event"):
        return False
    if not (latest.facts.get("version_set") or latest.facts.get("observed")):
        return False
    started_at = latest.facts.get("started_event_time")
    if started_at and event.event_time is not None and event.event_time < ev_time(started_at):
        return False
    return _recent(platform, latest.updated_at)


def ev_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def on_rolling_started(event: ev.NodePoolRollingStarted, platform: Platform) -> str:
    cluster, pool_name = event.cluster, event.node_pool_name
    active = platform.runs.find_active(cluster.arm_id, pool_name)
    if active is not None:
        return f"pool {pool_name} is held by {active.kind} run {active.run_id}: nothing to record"
    pool = platform.aks(cluster).get_pool(cluster, pool_name)
    if not pool.busy:
        # A late copy: the operation is over, and its Succeeded/Failed reconciles (or did).
        return f"Started for an operation already over (pool {pool.provisioning_state}): nothing to record"
    now = platform.clock.now()
    poll = platform.policy.for_pool(cluster, pool_name).poll_seconds
    run = RunRecord(
        run_id=f"rolling-{pool_name}-{uuid.uuid4().hex[:12]}", kind=rolling.KIND, cluster=cluster.arm_id,
        pool=pool_name, state=rolling.WAIT_POOL, status="running", created_at=now, updated_at=now,
        target_version=pool.orchestrator_version, options={"pollSeconds": poll},
        facts={**rolling.pool_snapshot(pool), "observed": True, "started_event": event.id,
               "started_event_time": _event_time(event)},
    )
    first = StepMessage(v=1, run_id=run.run_id, step=rolling.WAIT_POOL, cluster=cluster.arm_id, pool=pool_name,
                        args={"then": rolling.RECONCILE}, actor="event:NodePoolRollingStarted")
    try:
        run = create_run(platform, run, first, source="event:NodePoolRollingStarted", delay=poll)
    except Conflict as exc:
        return f"pool {pool_name} became busy (run {exc.code}): nothing to record"
    return f"recorded rolling run {run.run_id} (pool of {pool.count} node(s) at {pool.orchestrator_version})"


def _waiting_for_upgrade(run: RunRecord) -> bool:
    return run.state == rolling.WAIT_POOL and bool(run.facts.get("version_set") or run.facts.get("observed"))


def on_rolling_finished(event: ev.NodePoolRollingSucceeded | ev.NodePoolRollingFailed, platform: Platform) -> str:
    cluster, pool_name = event.cluster, event.node_pool_name
    outcome = "Succeeded" if isinstance(event, ev.NodePoolRollingSucceeded) else "Failed"
    finished = {"finished_event": event.id, "finished_event_outcome": outcome,
                "finished_event_time": _event_time(event)}
    actor = f"event:NodePoolRolling{outcome}"
    for _ in range(3):
        active = platform.runs.find_active(cluster.arm_id, pool_name)
        if active is not None and active.kind != rolling.KIND:
            return f"pool {pool_name} is held by {active.kind} run {active.run_id}, which checks the pool itself"
        if active is not None:
            if active.state == rolling.RECONCILE:
                return f"run {active.run_id} is already reconciling"
            if not _waiting_for_upgrade(active):
                return f"run {active.run_id} is at {active.state}: it reaches its reconcile by itself"
            # A new (state, attempt): the waiting step's own copy is then stale.
            message = StepMessage(v=1, run_id=active.run_id, step=rolling.RECONCILE, cluster=cluster.arm_id,
                                  pool=pool_name, attempt=1, actor=actor)
            try:
                moved = platform.runs.update(active.evolve(
                    now=platform.clock.now(), state=rolling.RECONCILE, attempt=1, claim=None,
                    outbox=outbox_for(message, ["event", actor]), facts=finished))
            except Conflict:
                continue  # the run moved meanwhile: look again
            send_after_write(platform, moved)
            return f"run {moved.run_id} moved to its post-upgrade reconcile ({outcome})"
        latest = _latest_rolling_run(platform, cluster, pool_name)
        if _already_reconciled(event, latest, platform):
            return f"run {latest.run_id} already reconciled the pool ({latest.status})"
        return _reconcile_without_run(platform, cluster, pool_name, finished, actor)
    return f"run on pool {pool_name} kept changing: left to its own reconcile"


def _reconcile_without_run(platform: Platform, cluster: ClusterRef, pool_name: str, finished: dict, actor: str) -> str:
    pool = platform.aks(cluster).get_pool(cluster, pool_name)
    now = platform.clock.now()
    run = RunRecord(
        run_id=f"rolling-{pool_name}-{uuid.uuid4().hex[:12]}", kind=rolling.KIND, cluster=cluster.arm_id,
        pool=pool_name, state=rolling.RECONCILE, status="running", created_at=now, updated_at=now,
        target_version=pool.orchestrator_version,
        facts={**finished, "observed": True, "finished_by_event": True},
    )
    first = StepMessage(v=1, run_id=run.run_id, step=rolling.RECONCILE, cluster=cluster.arm_id, pool=pool_name,
                        actor=actor)
    try:
        run = create_run(platform, run, first, source=actor)
    except Conflict as exc:
        return f"pool {pool_name} became busy (run {exc.code}): left to that run"
    return f"created run {run.run_id} for the post-upgrade reconcile ({finished['finished_event_outcome']})"
