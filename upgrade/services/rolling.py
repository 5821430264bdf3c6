"""Rolling upgrades of an agent pool with surge, as queue steps, and the post-upgrade reconcile.

A run started by the product: ``rolling.apply_settings`` (snapshot the pool, apply the policy's
upgradeSettings if they differ) -> ``rolling.wait_pool`` -> ``rolling.set_version`` ->
``rolling.wait_pool`` -> ``rolling.reconcile``. A run AKS started on its own (auto-upgrade, the
portal) is recorded from NodePoolRollingStarted and enters at ``rolling.wait_pool``; the
Succeeded/Failed event moves it to the reconcile at once. The reconcile reads what the upgrade
left: quarantined and other cordoned nodes with their blocking pods and PDBs, surge nodes that
became permanent (pool count versus the snapshot; without one, one per quarantined node), and the
failure reason from ARM and Kubernetes events; it records them on the run and alerts.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, replace
from typing import Any

from upgrade.domain.alerts import Alert
from upgrade.domain.model import (
    NODE_IMAGE_LABEL,
    AgentPool,
    ClusterRef,
    Node,
    UpgradeSettings,
    pool_selector,
    require_allowed_cluster,
)
from upgrade.domain.quarantine import PoolUpgradeFacts
from upgrade.domain.runs import RunRecord
from upgrade.domain.steps import Done, Failed, Next, Outcome, Retry, StepMessage
from upgrade.domain.surge import QUOTA_ERROR_CODES, surge_node_count, validate_upgrade_settings
from upgrade.domain.versions import (
    NODE_IMAGE,
    check_target_version,
    is_node_image,
    kubernetes_target,
    same_version,
)
from upgrade.errors import Conflict, InvalidInput, NotFound, PermanentError
from upgrade.ports import Platform
from upgrade.services.outbox import create_run
from upgrade.services.quarantine_scan import alert_on_findings, read_cordoned
from upgrade.services.registry import StepSpec
from upgrade.services.step_runner import StepContext

log = logging.getLogger("upgrade.rolling")

KIND = "rolling"
APPLY_SETTINGS = "rolling.apply_settings"
WAIT_POOL = "rolling.wait_pool"
SET_VERSION = "rolling.set_version"
RECONCILE = "rolling.reconcile"
RESTORE_SETTINGS = "rolling.restore_settings"
# Attempts at putting the pool's own upgradeSettings back before the run ends saying it could not.
MAX_RESTORE_ATTEMPTS = 5
UPGRADE_EVENT_REASONS = ("Surge", "Drain", "Upgrade")


def _settings_applied(current: UpgradeSettings, desired: UpgradeSettings) -> bool:
    """Every field the run asks for is what the pool has (None asks for nothing)."""
    return all(
        wanted is None or str(getattr(current, name)) == str(wanted)
        for name, wanted in asdict(desired).items()
    )


def start_rolling_run(
    platform: Platform,
    *,
    cluster: ClusterRef | str,
    pool: str,
    target_version: str,
    options: dict[str, Any] | None = None,
    actor: str = "system",
    node_image: str | None = None,
) -> RunRecord:
    """Start a rolling upgrade of ``pool`` to ``target_version``, checked before anything is written
    or applied: a busy pool answers Conflict (``.code`` the active run) first, then a pool that does
    not exist NotFound, then a target that is not a newer version offered by the pool's upgrade
    profile InvalidInput listing what is offered. ``options.upgradeSettings`` (ARM names) override
    the policy's rolling settings field by field; ``options.restoreSettings`` the policy's choice to
    put the pool's own upgradeSettings back after the run. NotAllowed for a cluster outside the
    allow-list. ``node_image``: a node image run's image fixed at its start (a rollout's pin), the
    only one it will upgrade to (see ``set_node_image``)."""
    ref = cluster if isinstance(cluster, ClusterRef) else ClusterRef.parse(cluster)
    require_allowed_cluster(ref, platform.allowed_clusters)
    options = dict(options or {})
    unknown = sorted(set(options) - {"upgradeSettings", "pollSeconds", "restoreSettings"})
    if unknown:
        raise InvalidInput("rolling options", f"options.{unknown[0]}",
                           "unknown field (expected upgradeSettings, pollSeconds, restoreSettings)")
    if not isinstance(options.get("restoreSettings", False), bool):
        raise InvalidInput("rolling options", "options.restoreSettings", "must be true or false")
    active = platform.runs.find_active(ref.arm_id, pool)
    if active is not None:
        raise Conflict(f"run {active.run_id} is already active on pool {pool}", code=active.run_id)
    aks = platform.aks(ref)
    try:
        current = aks.get_pool(ref, pool)
    except NotFound as exc:
        raise NotFound(f"pool {pool} not found in cluster {ref.name}") from exc
    target = NODE_IMAGE if is_node_image(target_version) else check_target_version(
        target_version, pool=pool, current=current.orchestrator_version, offered=aks.available_upgrades(ref, pool))
    policy = platform.policy.for_pool(ref, pool)
    settings = {**policy.rolling.upgrade_settings_arm(), **(options.get("upgradeSettings") or {})}
    options["upgradeSettings"] = {k: (str(v) if k in ("maxSurge", "maxUnavailable", "maxBlockedNodes") and v is not None
                                      else v) for k, v in settings.items()}
    try:
        # As ARM will check them: the pool's own settings under the run's, against the pool's size.
        merged = current.upgrade_settings.with_overrides(UpgradeSettings.from_arm(options["upgradeSettings"]))
        validate_upgrade_settings(merged, mode=current.mode, pool_size=current.count)
    except InvalidInput as exc:
        raise InvalidInput("rolling options", f"options.upgradeSettings.{exc.field}", exc.problem) from exc
    options.setdefault("pollSeconds", policy.poll_seconds)
    options.setdefault("restoreSettings", policy.rolling.restore_settings)
    now = platform.clock.now()
    run = RunRecord(
        run_id=f"rolling-{pool}-{uuid.uuid4().hex[:12]}",
        kind=KIND, cluster=ref.arm_id, pool=pool, state=APPLY_SETTINGS, status="running",
        created_at=now, updated_at=now, target_version=target, options=options,
        facts={"started_by": actor, **({"target_node_image": node_image} if node_image and target == NODE_IMAGE else {})},
    )
    return create_run(platform, run, StepMessage(v=1, run_id=run.run_id, step=APPLY_SETTINGS, cluster=ref.arm_id,
                                                 pool=pool, attempt=1, actor=actor), source=KIND)


def pool_snapshot(pool: AgentPool) -> dict[str, Any]:
    return {
        "pre_upgrade_count": pool.count,
        "version_before": pool.orchestrator_version,
        "node_image_before": pool.node_image_version,
        "settings_before": pool.upgrade_settings.to_arm(),
    }


def _poll(ctx: StepContext) -> float:
    return float((ctx.run.options if ctx.run else {}).get("pollSeconds", ctx.platform.policy.for_pool(
        ctx.cluster, ctx.message.pool).poll_seconds))


def apply_settings(ctx: StepContext) -> Outcome:
    aks, run = ctx.platform.aks(ctx.cluster), ctx.run
    pool = aks.get_pool(ctx.cluster, ctx.message.pool)
    facts = {} if "pre_upgrade_count" in run.facts else pool_snapshot(pool)
    desired = UpgradeSettings.from_arm(run.options.get("upgradeSettings"))
    try:
        validate_upgrade_settings(desired, mode=pool.mode, pool_size=pool.count)
    except InvalidInput as exc:
        return Failed(reason=f"upgradeSettings refused for pool {pool.name}: {exc}", facts=facts)
    if pool.busy:
        return Retry(delay_seconds=_poll(ctx), reason=f"pool {pool.name} is {pool.provisioning_state}", facts=facts)
    if _settings_applied(pool.upgrade_settings, desired):
        return Next(SET_VERSION, reason="upgradeSettings already in place", facts=facts)
    merged = pool.upgrade_settings.with_overrides(desired)
    aks.begin_put_pool(ctx.cluster, replace(pool, upgrade_settings=merged), if_match=pool.etag)
    return Next(WAIT_POOL, delay_seconds=_poll(ctx), args={"then": SET_VERSION},
                reason="applying upgradeSettings", facts={**facts, "settings_applied": merged.to_arm()})


def wait_pool(ctx: StepContext) -> Outcome:
    """Wait for the pool's operation to end, then go on to ``args.then``."""
    pool = ctx.platform.aks(ctx.cluster).get_pool(ctx.cluster, ctx.message.pool)
    then = ctx.message.args.get("then", RECONCILE)
    if pool.busy:
        return Retry(delay_seconds=_poll(ctx), reason=f"pool {pool.name} is {pool.provisioning_state}")
    if pool.provisioning_state != "Succeeded" and then != RECONCILE:
        return Next(RECONCILE, reason=f"pool operation ended {pool.provisioning_state}: {pool.error or 'no message'}")
    return Next(then, reason=f"pool {pool.name} is {pool.provisioning_state}")


def is_quota_error(exc: PermanentError) -> bool:
    return (exc.code or "") in QUOTA_ERROR_CODES or "quota" in str(exc).lower()


def surge_unavailable_alert(cluster: ClusterRef, pool: AgentPool, run_id: str | None, reason: str,
                            target_version: str | None) -> Alert:
    surge = surge_node_count(pool.count, pool.upgrade_settings.max_surge)
    return Alert(
        kind="upgrade.surge-unavailable",
        severity="error",
        cluster=cluster.arm_id,
        pool=pool.name,
        run_id=run_id,
        summary=(
            f"Pool {pool.name} cannot get its {surge} surge node(s) of {pool.vm_size} to upgrade to "
            f"{target_version}: {reason}. Raise the vCPU quota, lower maxSurge, or set maxUnavailable "
            "(no surge, less capacity during the upgrade)."
        ),
        details={"surgeNodes": surge, "vmSize": pool.vm_size, "maxSurge": pool.upgrade_settings.max_surge,
                 "armError": reason},
        dedup_key=f"{cluster.arm_id.lower()}|{pool.name}|surge-unavailable",
    )


def set_node_image(ctx: StepContext) -> Outcome:
    """``set_version`` of a node image run: AKS's upgradeNodeImageVersion to the latest image the
    pool's upgrade profile offers (recorded as ``target_node_image`` the first time, unless the run
    was started with it). upgradeNodeImageVersion takes no version, so once the latest is another
    image than the recorded one (AKS published a newer one while the run waited, for its maintenance
    window or a busy pool) the run fails before upgrading anything rather than overshoot it."""
    aks, run = ctx.platform.aks(ctx.cluster), ctx.run
    pool = aks.get_pool(ctx.cluster, ctx.message.pool)
    offered = aks.latest_node_image_version(ctx.cluster, pool.name)
    latest = run.facts.get("target_node_image") or offered
    facts = {"target_node_image": latest}
    if pool.busy:
        return Retry(delay_seconds=_poll(ctx), reason=f"pool {pool.name} is {pool.provisioning_state}", facts=facts)
    if not latest or pool.node_image_version == latest:
        return Next(RECONCILE, reason=f"pool {pool.name} already on node image {pool.node_image_version}", facts=facts)
    if offered != latest:
        return _ending(ctx, Failed(
            reason=f"pool {pool.name} not upgraded: this run is for node image {latest}, but AKS now offers it "
                   f"{offered or 'none'} (upgradeNodeImageVersion goes only to the latest); start a new run",
            facts={**facts, "node_image_offered": offered}))
    try:
        aks.begin_upgrade_node_image(ctx.cluster, pool.name)
    except PermanentError as exc:
        if is_quota_error(exc):
            ctx.platform.alerts.publish(surge_unavailable_alert(ctx.cluster, pool, run.run_id, str(exc), latest))
            return _ending(ctx, Failed(reason=f"surge nodes unavailable: {exc}",
                                       facts={**facts, "surge_unavailable": str(exc)}, alerted=True))
        raise
    return Next(WAIT_POOL, delay_seconds=_poll(ctx), args={"then": RECONCILE},
                reason=f"upgrading pool {pool.name} to node image {latest}", facts={**facts, "version_set": True})


def set_version(ctx: StepContext) -> Outcome:
    aks, run = ctx.platform.aks(ctx.cluster), ctx.run
    if is_node_image(run.target_version):
        return set_node_image(ctx)
    pool = aks.get_pool(ctx.cluster, ctx.message.pool)
    if pool.busy:
        if same_version(pool.orchestrator_version, run.target_version):
            # The version PUT went out (a redelivery after a crash): wait for it.
            return Next(WAIT_POOL, delay_seconds=_poll(ctx), args={"then": RECONCILE},
                        reason=f"pool {pool.name} is {pool.provisioning_state}", facts={"version_set": True})
        return Retry(delay_seconds=_poll(ctx), reason=f"pool {pool.name} is {pool.provisioning_state}")
    if same_version(pool.orchestrator_version, run.target_version) and pool.provisioning_state == "Succeeded":
        return Next(RECONCILE, reason=f"pool already set to {pool.orchestrator_version}")
    try:
        aks.begin_put_pool(ctx.cluster, replace(pool, orchestrator_version=run.target_version), if_match=pool.etag)
    except PermanentError as exc:
        if is_quota_error(exc):
            ctx.platform.alerts.publish(surge_unavailable_alert(ctx.cluster, pool, run.run_id, str(exc), run.target_version))
            return _ending(ctx, Failed(reason=f"surge nodes unavailable: {exc}", facts={"surge_unavailable": str(exc)},
                                       alerted=True))
        raise
    return Next(WAIT_POOL, delay_seconds=_poll(ctx), args={"then": RECONCILE},
                reason=f"upgrading pool {pool.name} to {run.target_version}", facts={"version_set": True})


# ---- post-upgrade reconcile ----------------------------------------------------------------


def _event_lines(events: list[dict[str, Any]], nodes: set[str]) -> list[str]:
    lines = []
    for event in events:
        name = (event.get("object") or {}).get("name")
        if name in nodes and (event.get("type") == "Warning" or "evict" in str(event.get("message", "")).lower()):
            lines.append(f"{event.get('reason')}: {event.get('message')}")
    return lines[-20:]


def permanent_surge_nodes(node_count: int, pre_upgrade_count: object, quarantined: int) -> tuple[int, str]:
    """How many surge nodes the upgrade left as permanent members, and how that is known: from the
    run's snapshot of the pool's count, else from the quarantined nodes (with Cordon, AKS keeps one
    surge node per blocked node as its replacement and deletes the others)."""
    if isinstance(pre_upgrade_count, int):
        return max(0, node_count - pre_upgrade_count), "snapshot"
    return quarantined, "quarantined-nodes"


def reconcile_pool(platform: Platform, cluster: ClusterRef, pool_name: str, run: RunRecord) -> tuple[dict, list[str]]:
    """What the upgrade left, as run facts, plus the problems found (empty: all good)."""
    aks, kube = platform.aks(cluster), platform.kube(cluster)
    pool = aks.get_pool(cluster, pool_name)
    nodes: list[Node] = kube.list_nodes(label_selector=pool_selector(pool_name))
    pre_count = run.facts.get("pre_upgrade_count")
    facts = PoolUpgradeFacts(pre_upgrade_count=pre_count if isinstance(pre_count, int) else None,
                             target_version=pool.orchestrator_version)
    reading = read_cordoned(kube, cluster, pool=pool_name, pool_facts={pool_name: facts})
    quarantined = [f.node for f in reading.findings if f.quarantined]
    cordoned = [f.node for f in reading.findings if not f.quarantined]
    permanent_surge, surge_basis = permanent_surge_nodes(len(nodes), pre_count, len(quarantined))
    new_nodes = sorted(n.name for n in nodes if n.created_at and n.created_at >= run.created_at)
    problems: list[str] = []
    if pool.provisioning_state not in ("Succeeded",):
        problems.append(f"the pool's last operation ended {pool.provisioning_state}: {pool.error or 'AKS recorded no provisioningError on the pool'}")
    image = run.facts.get("target_node_image") if is_node_image(run.target_version) else None
    version = kubernetes_target(run.target_version)
    lagging = [n.name for n in nodes if (version and not same_version(n.kubernetes_version, version))
               or (image and n.label(NODE_IMAGE_LABEL) != image)]
    if lagging:
        problems.append(f"node(s) not at {image or version}: {', '.join(lagging)}")
    if quarantined:
        problems.append(f"quarantined node(s): {', '.join(quarantined)}")
    if cordoned:
        problems.append(f"cordoned node(s): {', '.join(cordoned)}")
    if permanent_surge:
        problems.append(
            f"{permanent_surge} surge node(s) stayed: the pool has {len(nodes)} nodes, {pre_count} before"
            if surge_basis == "snapshot" else
            f"{permanent_surge} surge node(s) stayed, one per quarantined node (AKS keeps one as each one's "
            f"replacement; the pool's count before the upgrade is unknown: its Started event was not seen first)"
        )
    events = _event_lines(kube.list_events(reasons=UPGRADE_EVENT_REASONS), {n.name for n in nodes}) if problems else []
    facts = {
        "final": {
            "provisioningState": pool.provisioning_state,
            "poolVersion": pool.orchestrator_version,
            "count": pool.count,
            "nodeImage": pool.node_image_version,
            "nodes": [{"name": n.name, "version": n.kubernetes_version, "nodeImage": n.label(NODE_IMAGE_LABEL),
                       "cordoned": n.unschedulable, "quarantined": n.quarantined}
                      for n in sorted(nodes, key=lambda n: n.name)],
        },
        "arm_error": pool.error,
        "quarantined_nodes": quarantined,
        "cordoned_nodes": cordoned,
        "blockers": [b.to_public() for f in reading.findings for b in f.blockers],
        "permanent_surge_nodes": permanent_surge,
        "permanent_surge_basis": surge_basis,
        "new_nodes": new_nodes,
        "kubernetes_events": events,
    }
    if reading.findings:
        alert_on_findings(platform, cluster, reading.findings, scope_pools=[pool_name], run_id=run.run_id)
    return facts, problems


def reconcile(ctx: StepContext) -> Outcome:
    run = ctx.run
    facts, problems = reconcile_pool(ctx.platform, ctx.cluster, ctx.message.pool, run)
    if not problems:
        at = (f"node image {run.facts.get('target_node_image')}" if is_node_image(run.target_version)
              else facts["final"]["poolVersion"])
        return _ending(ctx, Done(summary=f"pool {ctx.message.pool} upgraded: every node at {at}, "
                                         f"{facts['final']['count']} node(s), none cordoned", facts=facts))
    reason = "; ".join(problems)
    if facts["arm_error"] and any(code in facts["arm_error"] for code in QUOTA_ERROR_CODES):
        pool = ctx.platform.aks(ctx.cluster).get_pool(ctx.cluster, ctx.message.pool)
        ctx.platform.alerts.publish(surge_unavailable_alert(ctx.cluster, pool, run.run_id, facts["arm_error"],
                                                            run.target_version))
    ctx.platform.alerts.publish(
        Alert(
            kind="upgrade.failed" if facts["final"]["provisioningState"] != "Succeeded" else "upgrade.needs-attention",
            severity="error" if facts["final"]["provisioningState"] != "Succeeded" else "warning",
            cluster=ctx.cluster.arm_id,
            pool=ctx.message.pool,
            run_id=run.run_id,
            summary=f"Rolling upgrade of pool {ctx.message.pool} to {run.target_version or 'its version'}: {reason}.",
            blockers=tuple(facts["blockers"]),
            details={"quarantinedNodes": facts["quarantined_nodes"], "permanentSurgeNodes": facts["permanent_surge_nodes"],
                     "permanentSurgeBasis": facts["permanent_surge_basis"],
                     "armError": facts["arm_error"], "kubernetesEvents": facts["kubernetes_events"]},
            dedup_key=f"{ctx.cluster.arm_id.lower()}|{ctx.message.pool}|run|{run.run_id}",
        )
    )
    return _ending(ctx, Failed(reason=reason, facts=facts, alerted=True))


# ---- putting the pool's own upgradeSettings back (policy rolling.restoreSettings) -----------------


def _ending(ctx: StepContext, outcome: Done | Failed) -> Outcome:
    """``outcome``, or first the restore of the pool's upgradeSettings when the run changed them and
    its options ask for them back."""
    run = ctx.run
    if not (run.options.get("restoreSettings") and run.facts.get("settings_applied")
            and run.facts.get("settings_before") is not None):
        return outcome
    failed = isinstance(outcome, Failed)
    ending = {"failed": failed, "status": outcome.status, "text": outcome.reason if failed else outcome.summary}
    return Next(RESTORE_SETTINGS, args={"ending": ending}, facts=outcome.facts,
                reason="putting the pool's own upgradeSettings back")


def restore_settings(ctx: StepContext) -> Outcome:
    """Put back the upgradeSettings the pool had before the run, then end as the run ended."""
    aks, run = ctx.platform.aks(ctx.cluster), ctx.run
    pool = aks.get_pool(ctx.cluster, ctx.message.pool)
    before = UpgradeSettings.from_arm(run.facts["settings_before"])
    if pool.busy:
        return Retry(delay_seconds=_poll(ctx), reason=f"pool {pool.name} is {pool.provisioning_state}")
    ending = ctx.message.args.get("ending") or {}
    if _settings_applied(pool.upgrade_settings, before):
        note = "upgradeSettings restored to the pool's own"
        facts = {"settings_restored": before.to_arm()}
    elif ctx.message.attempt > MAX_RESTORE_ATTEMPTS:
        note = (f"upgradeSettings NOT restored after {MAX_RESTORE_ATTEMPTS} attempts: the pool has "
                f"{pool.upgrade_settings.to_arm()}, it had {before.to_arm()}")
        facts = {"settings_restored": None}
    else:
        aks.begin_put_pool(ctx.cluster, replace(pool, upgrade_settings=before), if_match=pool.etag)
        return Retry(delay_seconds=_poll(ctx), reason="restoring the pool's own upgradeSettings")
    text = f"{ending.get('text') or 'run ended'}; {note}"
    if ending.get("failed", False):
        return Failed(reason=text, facts=facts, status=ending.get("status", "failed"), alerted=True)
    return Done(summary=text, facts=facts, status=ending.get("status", "succeeded"))


STEPS = {
    APPLY_SETTINGS: StepSpec(APPLY_SETTINGS, apply_settings),
    WAIT_POOL: StepSpec(WAIT_POOL, wait_pool),
    SET_VERSION: StepSpec(SET_VERSION, set_version),
    RECONCILE: StepSpec(RECONCILE, reconcile),
    RESTORE_SETTINGS: StepSpec(RESTORE_SETTINGS, restore_settings),
}
