"""Remediation of a quarantined (or cordoned) node, as idempotent queue steps.

Four ways out, from seed Scenario 2, each a run of kind ``remediation`` on the node's pool:

- ``scale-out``: take each blocking PDB's lease as relax-pdb does, record each blocking pod's
  workload's replicas, raise them by its pods blocked on the node (conditional on the scale's
  resourceVersion; when a HorizontalPodAutoscaler owns them, its minReplicas, and maxReplicas if
  needed, conditional on the HPA's), wait (delayed messages) until the workload's pods are Ready
  and the PDB allows the disruptions, evict the blocking pods, then restore the replicas (or the
  HPA's bounds) exactly, unless someone else changed them meanwhile (left as they set them, with
  an alert). A StatefulSet's added ordinals are the ones its scale-down removes; the claims
  Kubernetes keeps for them (whenScaled Retain) are named in an alert, never deleted. Refused
  when a blocking pod has no Deployment, ReplicaSet or StatefulSet, a StatefulSet is
  mid-rollout, two HPAs scale one workload, or the extra pods' cpu requests do not fit on the
  schedulable nodes (upgrade.domain.scale_out). Between the raise and the restore, a failure
  leads to the restore, and the poison handler restores too.
- ``relax-pdb``: take each blocking PDB's lease (one run at a time per PDB, across runs and
  pools: upgrade.domain.pdb_lease), recording its spec as the original, then relax it to allow
  one disruption, evict the blocking pods, and restore the original exactly, unless someone else
  changed the PDB meanwhile (left as they set it, with an alert). The lease is taken (its own
  transition) before the relax is applied, and every path after the relax, failure included,
  goes through the restore: a failing step leads to the restore step, and a step the host gives
  up on (the poison queue) restores it from the poison handler.
- ``delete-pod``: delete the blocking pods; refused for a pod without a controller unless forced,
  since nothing would recreate it.
- ``replace-node``: delete the machine through ARM (``begin_delete_machines``).

Then, for all four: remove the quarantine label (AKS ignores a quarantined node until it is
gone), re-apply the pool's version so the node finishes upgrading, scale the pool back to its
pre-upgrade count so the permanent surge node does not linger (deleting chosen machines when
another node is quarantined or a budget holds a pod on a healthy node, since AKS's scale-down
takes quarantined nodes, then the highest instance id; a failed scale-back fails the run), and
send the resolved notice.
Every step checks before acting, so a redelivery or a crash between effect and state write
converges to the same end.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import unquote

from upgrade.domain.alerts import Alert
from upgrade.domain.model import (
    QUARANTINE_LABEL,
    Autoscaler,
    ClusterRef,
    Node,
    pool_selector,
    require_allowed_cluster,
)
from upgrade.domain.pdb import eviction_blockers
from upgrade.domain.pdb_lease import (
    PdbLease,
    lease_key,
    lease_partition,
    plan_relax,
)
from upgrade.domain.policy import REMEDIATION_KINDS
from upgrade.domain.quarantine import PoolUpgradeFacts, is_application_pod
from upgrade.domain.runs import RunRecord
from upgrade.domain.scale_out import (
    ScaleRestore,
    added_claims,
    raised_bounds,
    restore_action,
    restore_bounds,
    reused_claims_refusal,
    room_refusal,
    scale_restore,
    scale_targets,
    statefulset_refusal,
)
from upgrade.domain.steps import Done, Failed, Next, Outcome, Retry, StepMessage
from upgrade.domain.versions import same_version
from upgrade.errors import Conflict, InvalidInput, NotAllowed, NotFound, PermanentError, TemporaryError
from upgrade.ports import Kube, Platform
from upgrade.services.outbox import create_run
from upgrade.services.pdb_leases import active_run, alert_edited, restore_leased_pdbs
from upgrade.services.quarantine_scan import resolve_cluster, resolve_node, rolling_upgrade_facts
from upgrade.services.registry import StepSpec
from upgrade.services.step_runner import StepContext

log = logging.getLogger("upgrade.remediation")

KIND = "remediation"
PLAN = "remediation.plan"
RECORD_PDB = "remediation.record_pdb"
RELAX_PDB = "remediation.relax_pdb"
EVICT = "remediation.evict"
RESTORE_PDB = "remediation.restore_pdb"
DELETE_POD = "remediation.delete_pod"
WAIT_PODS_GONE = "remediation.wait_pods_gone"
DELETE_MACHINE = "remediation.delete_machine"
UNQUARANTINE = "remediation.unquarantine"
REAPPLY_VERSION = "remediation.reapply_version"
WAIT_POOL = "remediation.wait_pool"
SCALE_BACK = "remediation.scale_back"
FINISH = "remediation.finish"
RECORD_SCALE = "remediation.record_scale"
RAISE_REPLICAS = "remediation.raise_replicas"
WAIT_SCALED_OUT = "remediation.wait_scaled_out"
RESTORE_SCALE = "remediation.restore_scale"
# Between the relax (or the raise) and the restore, anything that ends the attempt leads to the restore.
RELAXED_STEPS = (RELAX_PDB, EVICT)
SCALED_STEPS = (RAISE_REPLICAS, WAIT_SCALED_OUT, EVICT)
EVICTION_RETRY_SECONDS = 2.0
MAX_EVICTION_ERROR_ATTEMPTS = 5


def _blocking_pods(platform: Platform, cluster: ClusterRef, node: str) -> tuple[list, list]:
    kube = platform.kube(cluster)
    pods = [p for p in kube.list_pods(node=node) if is_application_pod(p)]
    pdbs = kube.list_pdbs()
    return pods, eviction_blockers(pods, pdbs)


def request_remediation(
    platform: Platform, cluster: ClusterRef | str, node: str, kind: str, actor: str, force: bool = False
) -> RunRecord:
    """Start a remediation run for ``node``. Raises InvalidInput (kind), NotAllowed (allow-list,
    policy off, an unmanaged pod without force), NotFound (node), Conflict (node not cordoned, or
    the pool has an active run: ``.code`` is its id)."""
    ref = cluster if isinstance(cluster, ClusterRef) else ClusterRef.parse(cluster)
    if kind not in REMEDIATION_KINDS:
        raise InvalidInput("remediation request", "kind", f"{kind!r} is not one of {', '.join(REMEDIATION_KINDS)}")
    require_allowed_cluster(ref, platform.allowed_clusters)
    target = platform.kube(ref).get_node(node)
    mode = platform.policy.for_pool(ref, target.pool).remediation.mode(kind)
    if mode == "off":
        raise NotAllowed(
            f"remediation {kind} is off for pool {target.pool} of {ref.name}: set UPGRADE_POLICY "
            f"remediation.{kind} to approval-required (or automatic) to allow it"
        )
    if not target.unschedulable:
        raise Conflict(f"node {node} is not cordoned: nothing to remediate")
    if kind == "scale-out":
        pods, blockers = _blocking_pods(platform, ref, node)
        _, refusal = _scale_out_plan(platform, ref, pods, blockers)
        if refusal:
            raise NotAllowed(f"scale-out refused for node {node}: {refusal}")
    if kind == "delete-pod" and not force:
        _, blockers = _blocking_pods(platform, ref, node)
        pods = {p.key: p for p in platform.kube(ref).list_pods(node=node)}
        unmanaged = [b.pod for b in blockers if pods.get(b.pod) is not None and pods[b.pod].owner_kind is None]
        if unmanaged:
            raise NotAllowed(
                f"pod {', '.join(unmanaged)} has no controller: deleting it would lose it for good; "
                "send force=true to delete it anyway"
            )
    now = platform.clock.now()
    run = RunRecord(
        run_id=f"remediate-{kind}-{uuid.uuid4().hex[:12]}",
        kind=KIND, cluster=ref.arm_id, pool=target.pool, state=PLAN, status="running",
        created_at=now, updated_at=now,
        options={"kind": kind, "node": node, "force": force, "requestedBy": actor, "policyMode": mode},
    )
    run = create_run(platform, run, StepMessage(v=1, run_id=run.run_id, step=PLAN, cluster=ref.arm_id,
                                                pool=target.pool, attempt=1, actor=actor), source=KIND)
    log.info("remediation %s of node %s on %s requested by %s: run %s", kind, node, ref.name, actor, run.run_id)
    return run


def remediation_request_from_http(
    platform: Platform, segment: str, node: str, body: object, *, actor: str
) -> RunRecord:
    """The POST /api/quarantine/{cluster}/{node}/remediate body: {kind, force?, clusterId?, requestedBy?}
    (an empty body is an empty object). ``actor`` is the signed-in caller; ``requestedBy`` (alerts'
    request bodies carry it) is accepted and ignored: a body never names who acted."""
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise InvalidInput("remediation request", "(body)", "must be a JSON object")
    unknown = sorted(set(body) - {"kind", "force", "clusterId", "requestedBy"})
    if unknown:
        raise InvalidInput("remediation request", unknown[0], "unknown field (expected kind, force, clusterId, requestedBy)")
    kind, force = body.get("kind"), body.get("force", False)
    if not isinstance(kind, str):
        raise InvalidInput("remediation request", "kind", f"is required: one of {', '.join(REMEDIATION_KINDS)}")
    if not isinstance(force, bool):
        raise InvalidInput("remediation request", "force", "must be true or false")
    cluster_id = body.get("clusterId")
    if cluster_id is not None and not isinstance(cluster_id, str):
        raise InvalidInput("remediation request", "clusterId", "must be the cluster's ARM id")
    cluster = resolve_cluster(platform, segment, cluster_id)
    return request_remediation(platform, cluster, unquote(node), kind, actor, force=force)


# ---- step plumbing -------------------------------------------------------------------------


def _scale_out_plan(platform: Platform, cluster: ClusterRef, pods: list, blockers: list) -> tuple[list, str | None]:
    """The workloads to raise for the blocking pods, or why scale-out cannot help."""
    kube = platform.kube(cluster)
    by_key = {p.key: p for p in pods}
    blocking = [by_key[k] for k in dict.fromkeys(b.pod for b in blockers) if k in by_key]
    namespaces = sorted({p.namespace for p in blocking})
    workloads = [w for ns in namespaces for w in kube.list_workloads(namespace=ns)]
    autoscalers = [a for ns in namespaces for a in kube.list_autoscalers(namespace=ns)]
    targets, refusals = scale_targets(blocking, workloads, autoscalers)
    if refusals:
        return targets, "; ".join(refusals)
    room = room_refusal(targets, kube.list_nodes(), kube.list_pods())
    return targets, room


def _failure_alert(ctx: StepContext, reason: str) -> None:
    opts = ctx.run.options
    ctx.platform.alerts.publish(
        Alert(kind="remediation.failed", severity="error", cluster=ctx.cluster.arm_id, pool=ctx.message.pool,
              node=opts.get("node"), run_id=ctx.run.run_id,
              summary=f"Remediation {opts.get('kind')} of node {opts.get('node')} failed: {reason}",
              details={"step": ctx.message.step}, dedup_key=f"{ctx.cluster.arm_id.lower()}|{ctx.run.run_id}|failed")
    )


def remediation_step(handler: Callable[[StepContext], Outcome]) -> Callable[[StepContext], Outcome]:
    """A permanent failure ends the run with an alert; between relax and restore any failure,
    expected or not, leads to the restore first."""

    @functools.wraps(handler)
    def guarded(ctx: StepContext) -> Outcome:
        try:
            outcome = handler(ctx)
        except TemporaryError:
            raise
        except Exception as exc:
            restore = _restore_step(ctx)
            if restore is not None:
                log.exception("remediation step %s failed after the change: restoring first", ctx.message.step)
                return Next(restore, args={"failure": f"{ctx.message.step}: {exc}"},
                            reason=f"{ctx.message.step} failed: restoring first")
            if not isinstance(exc, PermanentError):
                raise
            outcome = Failed(reason=str(exc))
        if isinstance(outcome, Failed):
            _failure_alert(ctx, outcome.reason)
            outcome = replace(outcome, alerted=True)
        return outcome

    return guarded


def _restore_step(ctx: StepContext) -> str | None:
    """The step that undoes this kind's temporary change, when ``ctx``'s step is after it."""
    kind, step = ctx.run.options.get("kind"), ctx.message.step
    if kind == "relax-pdb" and step in RELAXED_STEPS:
        return RESTORE_PDB
    if kind == "scale-out" and step in SCALED_STEPS:
        return RESTORE_SCALE
    return None


def _node(ctx: StepContext) -> str:
    return ctx.run.options["node"]


def _get_node(ctx: StepContext) -> Node | None:
    try:
        return ctx.platform.kube(ctx.cluster).get_node(_node(ctx))
    except NotFound:
        return None


def _poll(ctx: StepContext) -> float:
    return ctx.platform.policy.for_pool(ctx.cluster, ctx.message.pool).poll_seconds


def _through_wait_pool(ctx: StepContext, then: str, reason: str, facts: dict | None = None) -> Next:
    """Come back to ``then`` once the pool's operation (started here, or already running) is over."""
    return Next(WAIT_POOL, delay_seconds=_poll(ctx), args={"then": then}, reason=reason, facts=facts or {})


def wait_pool(ctx: StepContext) -> Outcome:
    """Wait for the pool's operation to end, then go back to ``args.then``, whatever its outcome:
    each step that waits reads how it ended (a failed delete, re-apply or scale-back fails the run)."""
    pool = ctx.platform.aks(ctx.cluster).get_pool(ctx.cluster, ctx.message.pool)
    if pool.busy:
        return Retry(delay_seconds=_poll(ctx), reason=f"pool {pool.name} is {pool.provisioning_state}")
    return Next(ctx.message.args["then"], reason=f"pool {pool.name} is {pool.provisioning_state}")


# ---- plan ----------------------------------------------------------------------------------


def plan(ctx: StepContext) -> Outcome:
    """Decide the pool's target count and what blocks the node, once (facts already set: keep)."""
    run, kind = ctx.run, ctx.run.options["kind"]
    if "target_count" in run.facts:
        return Next(_first_step(kind), reason="plan already recorded")
    node = _get_node(ctx)
    if node is None:
        return Next(UNQUARANTINE, reason=f"node {_node(ctx)} is already gone")
    pool = ctx.platform.aks(ctx.cluster).get_pool(ctx.cluster, ctx.message.pool)
    pods, blockers = _blocking_pods(ctx.platform, ctx.cluster, node.name)
    pre = rolling_upgrade_facts(ctx.platform, ctx.cluster).get(ctx.message.pool, PoolUpgradeFacts()).pre_upgrade_count
    # A quarantined node has a permanent surge replacement: once it is fixed, one node is extra.
    extra = 1 if node.quarantined else 0
    target = max(pre, pool.count - extra) if pre is not None else pool.count - extra
    by_key = {p.key: p for p in pods}
    if kind == "delete-pod" and not run.options.get("force"):
        unmanaged = [b.pod for b in blockers if by_key[b.pod].owner_kind is None]
        if unmanaged:
            return Failed(reason=f"pod {', '.join(unmanaged)} has no controller; force was not set")
    facts = {
        "target_count": target,
        "pre_upgrade_count": pre,
        "count_before": pool.count,
        "pool_version": pool.orchestrator_version,
        "node_version": node.kubernetes_version,
        "was_quarantined": node.quarantined,
        "blocking_pods": [{"pod": b.pod, "uid": by_key[b.pod].uid, "pdb": b.pdb} for b in blockers],
        "blocking_pdbs": sorted({b.pdb for b in blockers}),
        "relax_to": {b.pdb: b.expected_pods - b.current_healthy + 1 for b in blockers},
    }
    if not blockers and kind != "replace-node":
        return Next(UNQUARANTINE, reason="no PDB blocks the node's pods now", facts=facts)
    if kind == "scale-out":
        targets, refusal = _scale_out_plan(ctx.platform, ctx.cluster, pods, blockers)
        if refusal:
            return Failed(reason=f"scale-out refused: {refusal}")
        facts["scale_targets"] = [
            {"kind": t.kind, "namespace": t.namespace, "name": t.name, "add": t.add}
            | ({"autoscaler": t.autoscaler} if t.autoscaler else {}) for t in targets
        ]
    return Next(_first_step(kind), reason=f"{len(blockers)} blocking pod(s); pool to {target} node(s)", facts=facts)


def _first_step(kind: str) -> str:
    return {"scale-out": RECORD_PDB, "relax-pdb": RECORD_PDB, "delete-pod": DELETE_POD,
            "replace-node": DELETE_MACHINE}[kind]


def _after_leases(ctx: StepContext) -> str:
    return RECORD_SCALE if ctx.run.options["kind"] == "scale-out" else RELAX_PDB


# ---- relax-pdb -----------------------------------------------------------------------------


def record_pdb(ctx: StepContext) -> Outcome:
    """Take each blocking PDB's lease (upgrade.domain.pdb_lease): one run relaxes a PDB at a time,
    across runs and pools. A new lease records the PDB as it is as the original; a lease left by
    a run that is over is taken over with its original; a lease an active run holds is waited for.
    The relax is a later step, so the record is durable before any PDB changes."""
    if "pdb_leases" in ctx.run.facts:
        return Next(_after_leases(ctx), reason="leases already taken")
    kube, state = ctx.platform.kube(ctx.cluster), ctx.platform.state
    partition = lease_partition(ctx.cluster)
    for key in ctx.run.facts["blocking_pdbs"]:
        found = state.get(partition, lease_key(key))
        if found is None:
            namespace, name = key.split("/", 1)
            try:
                lease = PdbLease.record(key, ctx.run.run_id, kube.get_pdb_manifest(namespace, name))
            except NotFound:
                continue  # deleted meanwhile: it blocks nothing any more
            try:
                state.put(partition, lease_key(key), lease.to_storage(), etag=None)
            except Conflict:
                return Retry(delay_seconds=1.0, reason=f"another run took the lease of PDB {key} just now")
            continue
        value, etag = found
        lease = PdbLease.from_storage(value)
        if lease.run_id == ctx.run.run_id:
            continue
        holder = active_run(ctx.platform, lease.run_id)
        if holder is not None:
            return _wait_for_lease(ctx, key, holder.run_id)
        # The holder is over (and its restore, if any, did not run): keep its original.
        state.put(partition, lease_key(key), replace(lease, run_id=ctx.run.run_id).to_storage(), etag=etag)
        log.warning("run %s takes over the lease of PDB %s left by run %s", ctx.run.run_id, key, lease.run_id)
    return Next(_after_leases(ctx), reason=f"leases of {', '.join(ctx.run.facts['blocking_pdbs'])} taken",
                facts={"pdb_leases": list(ctx.run.facts["blocking_pdbs"])})


def _wait_for_lease(ctx: StepContext, key: str, holder: str) -> Outcome:
    """Wait for another run's restore of the PDB, up to the drain timeout."""
    now = ctx.platform.clock.now()
    deadline = ctx.message.args.get("lease_deadline") or (now + timedelta(minutes=_drain_timeout(ctx))).isoformat()
    if now >= datetime.fromisoformat(deadline):
        return Failed(reason=f"PDB {key} is still relaxed by run {holder}: this run did not touch it")
    return Retry(delay_seconds=_poll(ctx), args={**ctx.message.args, "lease_deadline": deadline},
                 reason=f"PDB {key} is relaxed by run {holder}: waiting for its restore")


def _lease(ctx: StepContext, key: str) -> tuple[PdbLease, str] | None:
    """This run's lease of ``key`` (None when it holds none: released, or never taken)."""
    found = ctx.platform.state.get(lease_partition(ctx.cluster), lease_key(key))
    if found is None:
        return None
    lease = PdbLease.from_storage(found[0])
    return (lease, found[1]) if lease.run_id == ctx.run.run_id else None


def relax_pdb(ctx: StepContext) -> Outcome:
    """Relax each leased PDB: the lease says first what is written and the generation it makes,
    then the write goes, conditional on the resourceVersion read (a 409: read again, next time)."""
    kube, state = ctx.platform.kube(ctx.cluster), ctx.platform.state
    for key in ctx.run.facts["pdb_leases"]:
        held = _lease(ctx, key)
        if held is None:
            continue
        lease, etag = held
        namespace, name = key.split("/", 1)
        try:
            current = kube.get_pdb_manifest(namespace, name)
        except NotFound:
            continue
        plan = plan_relax(lease, current, ctx.run.facts["relax_to"].get(key, 1))
        if plan.edited_after_relax:
            # this run's relax had landed (a crash kept it from being recorded) and the owners edited it since
            alert_edited(ctx.platform, ctx.cluster, lease, current, pool=ctx.message.pool, node=_node(ctx))
        elif plan.adopted_edit:
            log.warning("PDB %s was changed after run %s recorded it: relaxing from the new spec", key, ctx.run.run_id)
        if plan.lease != lease:
            state.put(lease_partition(ctx.cluster), lease_key(key), plan.lease.to_storage(), etag=etag)
        if plan.write:
            try:
                kube.patch_pdb_spec(namespace, name, plan.lease.relaxed or {}, resource_version=current.resource_version)
            except Conflict:
                return Retry(delay_seconds=1.0, reason=f"PDB {key} changed while being relaxed: reading it again")
    deadline = ctx.platform.clock.now() + timedelta(minutes=_drain_timeout(ctx))
    return Next(EVICT, reason="PDB relaxed to allow one disruption", facts={"pdb_relaxed": True},
                args={"deadline": deadline.isoformat()})


def _drain_timeout(ctx: StepContext) -> float:
    return ctx.platform.policy.for_pool(ctx.cluster, ctx.message.pool).rolling.drain_timeout_or_default


def _pods_still_there(ctx: StepContext) -> list[dict[str, str]]:
    present = {p.key: p.uid for p in ctx.platform.kube(ctx.cluster).list_pods(node=_node(ctx))}
    return [p for p in ctx.run.facts["blocking_pods"] if present.get(p["pod"]) == p["uid"]]


def evict(ctx: StepContext) -> Outcome:
    """Evict the blocking pods (a 429 means the relaxed budget is not visible yet: try again)."""
    kube = ctx.platform.kube(ctx.cluster)
    held, errors = [], []
    for pod in _pods_still_there(ctx):
        namespace, name = pod["pod"].split("/", 1)
        try:
            kube.evict(namespace, name)
        except NotFound:
            continue
        except TemporaryError as exc:
            (held if exc.status == 429 else errors).append(f"{pod['pod']}: {exc}")
    restore = _restore_step(ctx) or RESTORE_PDB
    if not held and not errors:
        return Next(restore, reason="blocking pods evicted", facts={"evicted": True})
    deadline = ctx.message.args.get("deadline")
    if deadline and ctx.platform.clock.now() >= datetime.fromisoformat(deadline):
        return Next(restore, args={"failure": f"eviction still refused at the drain timeout: {'; '.join(held + errors)}"},
                    reason="eviction timed out: restoring first")
    if errors and ctx.message.attempt >= MAX_EVICTION_ERROR_ATTEMPTS:
        # The API keeps failing (not a PDB's 429): do not leave the change in place while it does.
        return Next(restore, args={"failure": f"eviction failed {ctx.message.attempt} times: {'; '.join(errors)}"},
                    reason="eviction keeps failing: restoring first")
    return Retry(delay_seconds=EVICTION_RETRY_SECONDS, reason="; ".join(held + errors))


def restore_pdb(ctx: StepContext) -> Outcome:
    """Put every leased PDB back exactly, unless someone else changed it since the relax (then it is
    left as they set it, with an alert); release the leases; then fail if the attempt had."""
    restored = restore_leased_pdbs(ctx.platform, ctx.cluster, ctx.run)
    failure = ctx.message.args.get("failure")
    note = "; ".join(restored.edited) if restored.edited else "the original PDB was restored"
    if failure:
        return Failed(reason=f"{failure}; {note}", facts=restored.facts())
    return Next(UNQUARANTINE, reason=note, facts=restored.facts())


def restore_after_poison(run: RunRecord, platform: Platform) -> str:
    """The poison cleanup of every remediation step: a run that dies between the raise and the
    restore must not leave its replicas raised, nor one between the relax and the restore a PDB
    relaxed (nor keep its lease)."""
    notes = []
    if run.facts.get("scales") and run.facts.get("scale_restored") is None:
        restored, edited, scale_notes = _restore_scales(platform, ClusterRef.parse(run.cluster), run)
        notes.append("; ".join(edited) or f"replicas restored: {', '.join(restored) or '(already as recorded)'}")
        notes += scale_notes
    notes.append(restore_pdbs_after_poison(run, platform))
    return "; ".join(notes)


def restore_pdbs_after_poison(run: RunRecord, platform: Platform) -> str:
    """A run that dies between the relax and the restore must not leave a PDB relaxed (nor keep
    its lease)."""
    if not run.facts.get("pdb_leases") or run.facts.get("pdb_restored") is not None:
        return "no relaxed PDB to restore"
    restored = restore_leased_pdbs(platform, ClusterRef.parse(run.cluster), run)
    log.warning("remediation run %s poisoned: restored PDB(s) %s", run.run_id, ", ".join(restored.restored) or "(none)")
    if restored.edited:
        return "; ".join(restored.edited)
    if restored.restored:
        return f"original PDB restored: {', '.join(restored.restored)}"
    return f"PDB already as recorded: {', '.join(restored.unchanged) or '(deleted)'}"


# ---- scale-out -----------------------------------------------------------------------------


def _target_key(target: dict) -> str:
    return f"{target['kind']}/{target['namespace']}/{target['name']}"


def _bounds(hpa: Autoscaler) -> list[int]:
    return [hpa.min_replicas, hpa.max_replicas]


def _record_target(kube: Kube, target: dict) -> dict:
    """What the run will raise for one workload, read before anything changes: its replicas and,
    for an HPA-owned one, the HPA's bounds; for a StatefulSet, the claims its added ordinals get."""
    current = kube.get_scale(target["kind"], target["namespace"], target["name"])
    record = {**target, "original": current.replicas, "raised_to": current.replicas + target["add"]}
    if target.get("autoscaler"):
        hpa = kube.get_autoscaler(target["namespace"], target["autoscaler"])
        raised = list(raised_bounds(hpa.min_replicas, hpa.max_replicas, current.replicas, target["add"]))
        record.update(raised_to=raised[0], bounds={"original": _bounds(hpa), "raised": raised})
    if target["kind"] == "StatefulSet":
        found = next((w for w in kube.list_workloads(namespace=target["namespace"])
                      if w.kind == "StatefulSet" and w.name == target["name"]), None)
        refusal = statefulset_refusal(_target_key(target), found.statefulset if found else None)
        if refusal or found is None or found.statefulset is None:
            raise PermanentError(f"scale-out refused: {refusal}")
        claims = added_claims(target["name"], found.statefulset, record["original"], record["raised_to"])
        existing = set(kube.list_volume_claims(namespace=target["namespace"])) if claims else set()
        before = [c for c in claims if c in existing]
        refusal = reused_claims_refusal(_target_key(target), found.statefulset, before)
        if refusal:
            raise PermanentError(f"scale-out refused: {refusal}")
        record.update(when_scaled=found.statefulset.when_scaled, claims=claims, claims_before=before,
                      pod_management_policy=found.statefulset.pod_management_policy)
    return record


def record_scale(ctx: StepContext) -> Outcome:
    """Record each workload's replicas as the original, and what the raise sets: durable before
    any replica count (or HPA bound) changes, so a retry or the restore knows both."""
    if "scales" in ctx.run.facts:
        return Next(RAISE_REPLICAS, reason="replicas already recorded")
    kube = ctx.platform.kube(ctx.cluster)
    try:
        scales = {_target_key(t): _record_target(kube, t) for t in ctx.run.facts["scale_targets"]}
    except PermanentError as exc:  # refused now (a StatefulSet's rollout began): give the leases back
        return Next(RESTORE_SCALE, reason=str(exc), args={"failure": str(exc)})
    return Next(RAISE_REPLICAS, reason="; ".join(_recorded(k, v) for k, v in scales.items()), facts={"scales": scales})


def _recorded(key: str, record: dict) -> str:
    text = f"{key}: {record['original']} replicas"
    if record.get("bounds"):
        low, high = record["bounds"]["original"]
        text += f", HorizontalPodAutoscaler {record['autoscaler']} minReplicas {low}, maxReplicas {high}"
    if record.get("claims"):
        text += f"; its added ordinals' claims {', '.join(record['claims'])} (whenScaled {record['when_scaled']})"
    return text


def _changed_before_raise(key: str, what: str) -> Next:
    return Next(RESTORE_SCALE, reason=f"{key} changed meanwhile",
                args={"failure": f"{what} before the scale-out: not raised"})


def raise_replicas(ctx: StepContext) -> Outcome:
    """Set each workload to its recorded raise (an HPA-owned one through the HPA's bounds),
    conditional on the resourceVersion read; one already there (a redelivery, a crash after the
    write) is left alone."""
    kube = ctx.platform.kube(ctx.cluster)
    for key, record in ctx.run.facts["scales"].items():
        if record.get("bounds"):
            hpa = kube.get_autoscaler(record["namespace"], record["autoscaler"])
            low, high = record["bounds"]["raised"]
            if _bounds(hpa) == [low, high]:
                continue
            if _bounds(hpa) != record["bounds"]["original"]:
                return _changed_before_raise(key, f"HorizontalPodAutoscaler {record['autoscaler']} went from "
                                                  f"{record['bounds']['original']} to {_bounds(hpa)}")
            try:
                kube.patch_autoscaler_bounds(record["namespace"], record["autoscaler"], low, high,
                                             resource_version=hpa.resource_version)
            except Conflict:
                return Retry(delay_seconds=1.0, reason=f"the HPA of {key} changed while being raised: reading it again")
            continue
        current = kube.get_scale(record["kind"], record["namespace"], record["name"])
        if current.replicas == record["raised_to"]:
            continue
        if current.replicas != record["original"]:
            return _changed_before_raise(key, f"{key} went from {record['original']} to {current.replicas} replicas")
        try:
            kube.replace_scale(record["kind"], record["namespace"], record["name"], record["raised_to"],
                               resource_version=current.resource_version)
        except Conflict:
            return Retry(delay_seconds=1.0, reason=f"the scale of {key} changed while being raised: reading it again")
    deadline = ctx.platform.clock.now() + timedelta(minutes=_drain_timeout(ctx))
    return Next(WAIT_SCALED_OUT, delay_seconds=_poll(ctx), args={"deadline": deadline.isoformat()},
                reason="replicas raised: " + ", ".join(_raised(k, v) for k, v in ctx.run.facts["scales"].items()))


def _raised(key: str, record: dict) -> str:
    if record.get("bounds"):
        low, high = record["bounds"]["raised"]
        return (f"{key} to {record['raised_to']} through HorizontalPodAutoscaler {record['autoscaler']} "
                f"(minReplicas {low}, maxReplicas {high})")
    return f"{key} to {record['raised_to']}"


def _not_all_ready(kube: Kube, scales: dict[str, dict]) -> list[str]:
    """The recorded workloads with fewer Ready replicas than the run raised them to, as
    ``key: ready/raised Ready``: one workload list per namespace."""
    ready = {(w.kind, w.namespace, w.name): w.ready
             for ns in sorted({r["namespace"] for r in scales.values()}) for w in kube.list_workloads(namespace=ns)}
    return [f"{key}: {have}/{record['raised_to']} Ready" for key, record in scales.items()
            if (have := ready.get((record["kind"], record["namespace"], record["name"]), 0)) < record["raised_to"]]


def wait_scaled_out(ctx: StepContext) -> Outcome:
    """Go on once every raised workload has all its replicas Ready (an HPA sets them at its next
    sync; an OrderedReady StatefulSet adds them one at a time) and each blocking PDB allows as many
    disruptions as it has blocking pods; at the drain timeout, restore instead."""
    kube = ctx.platform.kube(ctx.cluster)
    waiting = _not_all_ready(kube, ctx.run.facts["scales"])
    blocked_by: dict[str, int] = {}
    for pod in _pods_still_there(ctx):
        blocked_by[pod["pdb"]] = blocked_by.get(pod["pdb"], 0) + 1
    allowed = {p.key: p.disruptions_allowed for p in kube.list_pdbs()}
    waiting += [f"PDB {key} allows {allowed[key]} of {n} disruption(s)"
                for key, n in sorted(blocked_by.items()) if key in allowed and allowed[key] < n]
    if not waiting:
        return Next(EVICT, reason="extra pods Ready and the PDB allows the disruption",
                    args={"deadline": ctx.message.args.get("deadline")})
    deadline = ctx.message.args.get("deadline")
    if deadline and ctx.platform.clock.now() >= datetime.fromisoformat(deadline):
        return Next(RESTORE_SCALE, args={"failure": f"not scaled out at the drain timeout: {'; '.join(waiting)}"},
                    reason="scale-out timed out: restoring the replicas")
    return Retry(delay_seconds=_poll(ctx), reason="; ".join(waiting))


# Re-reads of one workload's restore when its write meets a newer resourceVersion: the HPA
# controller writes the HPA's status every sync (15 s), which moves the resourceVersion without
# touching the bounds; the values are compared again on each read.
RESTORE_READS = 3


def _restore_one(kube: Kube, key: str, record: dict) -> tuple[ScaleRestore, object]:
    """Put one workload's replicas back if they are still what the run set, conditional on the
    resourceVersion read; an HPA's bounds one by one (a bound someone else changed stays, the
    other still at the run's raise goes back). Returns what was found (EDITED: someone else
    changed something) and the value found. A write refused as stale is read and decided again,
    up to RESTORE_READS times, then left to the step's retry (TemporaryError)."""
    for read in range(1, RESTORE_READS + 1):
        try:
            return _restore_once(kube, record)
        except Conflict as exc:
            if read == RESTORE_READS:
                what = "HPA" if record.get("bounds") else "scale"
                raise TemporaryError(f"the {what} of {key} changed while being restored ({read} reads): "
                                     "reading it again", delay_seconds=1.0) from exc
    raise AssertionError("unreachable")


def _restore_once(kube: Kube, record: dict) -> tuple[ScaleRestore, object]:
    if record.get("bounds"):
        hpa = kube.get_autoscaler(record["namespace"], record["autoscaler"])
        original, raised = record["bounds"]["original"], record["bounds"]["raised"]
        action = restore_action(original, raised, _bounds(hpa))
        low, high = restore_bounds(original, raised, _bounds(hpa))
        if [low, high] != _bounds(hpa):
            kube.patch_autoscaler_bounds(record["namespace"], record["autoscaler"], low, high,
                                         resource_version=hpa.resource_version)
        return action, _bounds(hpa)
    current = kube.get_scale(record["kind"], record["namespace"], record["name"])
    action = scale_restore(record, current.replicas)
    if action is ScaleRestore.RESTORE:
        kube.replace_scale(record["kind"], record["namespace"], record["name"], record["original"],
                           resource_version=current.resource_version)
    return action, current.replicas


def _alert_not_restored(platform: Platform, cluster: ClusterRef, run: RunRecord, key: str, record: dict,
                        current: object) -> str:
    if record.get("bounds"):
        what = f"HorizontalPodAutoscaler {record['namespace']}/{record['autoscaler']} of {key}"
        original, raised = record["bounds"]["original"], record["bounds"]["raised"]
        put_back = restore_bounds(original, raised, current)
        reason = (f"{what} was set to minReplicas/maxReplicas {current} by someone else while run {run.run_id} had "
                  f"raised them from {original} to {raised}: "
                  + (f"the bound they changed is left as they set it, the other put back: now {put_back}"
                     if put_back != current else "left as they set them"))
    else:
        reason = (f"{key} was set to {current} replicas by someone else while run {run.run_id} had "
                  f"raised it from {record['original']} to {record['raised_to']}: left as they set it")
        original, raised = record["original"], record["raised_to"]
    details = {"workload": key, "original": original, "raised_to": raised, "current": current}
    if record.get("bounds"):
        details["autoscaler"] = record["autoscaler"]
    platform.alerts.publish(Alert(
        kind="remediation.scale-not-restored", severity="warning", cluster=cluster.arm_id, pool=run.pool,
        node=run.options.get("node"), run_id=run.run_id, summary=f"{reason}. Check that the count is what you want.",
        details=details, dedup_key=f"{cluster.arm_id.lower()}|{run.run_id}|{key}|not-restored",
    ))
    return reason


def _claims_left(platform: Platform, cluster: ClusterRef, run: RunRecord, key: str, record: dict) -> str | None:
    """With whenScaled Retain, the claims the StatefulSet controller made for the run's added
    ordinals stay after the scale-down: name them (the run does not delete what it did not create)."""
    if record.get("when_scaled") != "Retain" or not record.get("claims"):
        return None
    existing = set(platform.kube(cluster).list_volume_claims(namespace=record["namespace"]))
    left = [c for c in record["claims"] if c in existing and c not in record.get("claims_before", ())]
    if not left:
        return None
    when = "once the HorizontalPodAutoscaler scales it back down" if record.get("bounds") else "after the scale-down"
    note = (f"{key}'s PersistentVolumeClaims {', '.join(left)} of the ordinals run {run.run_id} added stay {when} "
            "(persistentVolumeClaimRetentionPolicy.whenScaled: Retain); the run left them: delete them once no "
            "longer needed (a later scale-up would reuse them)")
    platform.alerts.publish(Alert(
        kind="remediation.claims-retained", severity="info", cluster=cluster.arm_id, pool=run.pool,
        node=run.options.get("node"), run_id=run.run_id, summary=note,
        details={"workload": key, "claims": left, "namespace": record["namespace"]},
        dedup_key=f"{cluster.arm_id.lower()}|{run.run_id}|{key}|claims-retained",
    ))
    return note


def _restore_scales(platform: Platform, cluster: ClusterRef, run: RunRecord) -> tuple[list[str], list[str], list[str]]:
    """Put each recorded workload back to its original replicas (an HPA-owned one: the HPA's
    original bounds) if still at the raise; one someone else changed is left, with an alert.
    Returns the restored, the reasons of those left, and notes: the claims a StatefulSet keeps, a
    workload (or its HPA) deleted meanwhile."""
    kube = platform.kube(cluster)
    restored, edited, notes = [], [], []
    for key, record in (run.facts.get("scales") or {}).items():
        try:
            action, current = _restore_one(kube, key, record)
        except NotFound:
            what = f"HorizontalPodAutoscaler {record['namespace']}/{record['autoscaler']} of {key}" \
                if record.get("bounds") else key
            notes.append(f"{what} was deleted meanwhile: nothing to restore")
            continue
        if action is ScaleRestore.EDITED:
            edited.append(_alert_not_restored(platform, cluster, run, key, record, current))
            continue
        if action is ScaleRestore.RESTORE:
            restored.append(key)
        note = _claims_left(platform, cluster, run, key, record)
        if note:
            notes.append(note)
    return restored, edited, notes


def _hpa_note(run: RunRecord) -> str:
    owned = [f"{k} (HorizontalPodAutoscaler {r['autoscaler']})" for k, r in (run.facts.get("scales") or {}).items()
             if r.get("bounds")]
    if not owned:
        return ""
    return (f"; the replicas of {', '.join(owned)} are the HPA's again: it scales them within the restored bounds "
            "from its metrics (with none, it keeps the count)")


def _evicted_not_back(ctx: StepContext) -> list[str]:
    """The Parallel StatefulSets not all Ready again after the eviction: their scale-down removes
    the run's added ordinal at once, without waiting for the evicted ordinal to come back (an
    OrderedReady one waits, and a ReplicaSet removes a pod not Ready first)."""
    parallel = {k: r for k, r in ctx.run.facts["scales"].items() if r.get("pod_management_policy") == "Parallel"}
    return _not_all_ready(ctx.platform.kube(ctx.cluster), parallel) if parallel else []


def restore_scale(ctx: StepContext) -> Outcome:
    """Restore the replicas (conditionally), release the PDB leases, then fail if the attempt had.
    After a successful eviction, a Parallel StatefulSet is first given until the drain timeout to
    have its evicted ordinals Ready again, so that the scale-down does not leave it short."""
    failure = ctx.message.args.get("failure")
    waiting = [] if failure else _evicted_not_back(ctx)
    if waiting:
        now = ctx.platform.clock.now()
        settle = ctx.message.args.get("settle_deadline") or (now + timedelta(minutes=_drain_timeout(ctx))).isoformat()
        if now < datetime.fromisoformat(settle):
            return Retry(delay_seconds=_poll(ctx), args={**ctx.message.args, "settle_deadline": settle},
                         reason="before scaling back, waiting for the evicted pods to be Ready again (a Parallel "
                                "StatefulSet's scale-down does not wait for them): " + "; ".join(waiting))
    restored, edited, scale_notes = _restore_scales(ctx.platform, ctx.cluster, ctx.run)
    released = restore_leased_pdbs(ctx.platform, ctx.cluster, ctx.run)
    notes = edited + list(released.edited)
    note = "; ".join(notes) if notes else f"replicas restored ({', '.join(restored) or 'already as recorded'})"
    note += _hpa_note(ctx.run) + "".join(f"; {n}" for n in scale_notes)
    if waiting:
        note += f"; scaled back at the drain timeout though not all Ready again ({'; '.join(waiting)})"
    facts = {**released.facts(), "scale_restored": not edited, "scales_not_restored": edited, "scale_notes": scale_notes}
    if failure:
        return Failed(reason=f"{failure}; {note}", facts=facts)
    return Next(UNQUARANTINE, reason=note, facts=facts)


# ---- delete-pod ----------------------------------------------------------------------------


def delete_pod(ctx: StepContext) -> Outcome:
    kube = ctx.platform.kube(ctx.cluster)
    for pod in _pods_still_there(ctx):
        namespace, name = pod["pod"].split("/", 1)
        try:
            kube.delete_pod(namespace, name)
        except NotFound:
            continue
    return Next(WAIT_PODS_GONE, delay_seconds=1.0, reason="blocking pod(s) deleted")


def wait_pods_gone(ctx: StepContext) -> Outcome:
    remaining = _pods_still_there(ctx)
    if remaining:
        return Retry(delay_seconds=EVICTION_RETRY_SECONDS, reason=f"waiting for {', '.join(p['pod'] for p in remaining)}")
    return Next(UNQUARANTINE, reason="blocking pods gone")


# ---- replace-node --------------------------------------------------------------------------


def delete_machine(ctx: StepContext) -> Outcome:
    aks = ctx.platform.aks(ctx.cluster)
    pool = aks.get_pool(ctx.cluster, ctx.message.pool)
    if pool.busy:
        return _through_wait_pool(ctx, DELETE_MACHINE, f"pool is {pool.provisioning_state}")
    if _get_node(ctx) is None:
        return Next(UNQUARANTINE, reason=f"machine {_node(ctx)} is gone")
    if ctx.run.facts.get("machine_delete_requested"):
        return Failed(reason=f"AKS did not delete machine {_node(ctx)}: {pool.error or pool.provisioning_state}")
    aks.begin_delete_machines(ctx.cluster, ctx.message.pool, [_node(ctx)])
    return _through_wait_pool(ctx, DELETE_MACHINE, f"deleting machine {_node(ctx)}",
                              facts={"machine_delete_requested": True})


# ---- after each: unquarantine, finish the upgrade, scale back ------------------------------


def unquarantine(ctx: StepContext) -> Outcome:
    kube = ctx.platform.kube(ctx.cluster)
    try:
        removed = kube.set_node_label(_node(ctx), QUARANTINE_LABEL, None)
    except NotFound:
        return Next(REAPPLY_VERSION, reason="node gone: no label to remove")
    return Next(REAPPLY_VERSION, reason="quarantine label removed" if removed else "no quarantine label")


def reapply_version(ctx: StepContext) -> Outcome:
    """Let AKS finish the node's upgrade: a PUT of the pool at its own version upgrades the nodes
    still behind (quarantined ones excepted). A node already at the version is only uncordoned."""
    aks, kube = ctx.platform.aks(ctx.cluster), ctx.platform.kube(ctx.cluster)
    pool = aks.get_pool(ctx.cluster, ctx.message.pool)
    if pool.busy:
        return _through_wait_pool(ctx, REAPPLY_VERSION, f"pool is {pool.provisioning_state}")
    nodes = kube.list_nodes(label_selector=pool_selector(ctx.message.pool))
    lagging = [n.name for n in nodes if not n.quarantined and not same_version(n.kubernetes_version, pool.orchestrator_version)]
    if not lagging:
        node = next((n for n in nodes if n.name == _node(ctx)), None)
        if node is not None and node.unschedulable:
            kube.set_unschedulable(node.name, False)
        return Next(SCALE_BACK, reason=f"every node at {pool.orchestrator_version}")
    if ctx.run.facts.get("version_reapplied"):
        return Failed(reason=f"node(s) {', '.join(lagging)} still not at {pool.orchestrator_version} after re-applying it: "
                             f"{pool.error or 'see the pool operation'}")
    aks.begin_put_pool(ctx.cluster, pool, if_match=pool.etag)
    return _through_wait_pool(ctx, REAPPLY_VERSION,
                              f"re-applying {pool.orchestrator_version} to upgrade {', '.join(lagging)}",
                              facts={"version_reapplied": True})


def scale_back(ctx: StepContext) -> Outcome:
    aks = ctx.platform.aks(ctx.cluster)
    pool = aks.get_pool(ctx.cluster, ctx.message.pool)
    if pool.busy:
        return _through_wait_pool(ctx, SCALE_BACK, f"pool is {pool.provisioning_state}")
    target = ctx.run.facts.get("target_count")
    scaled = target is not None and ctx.run.facts.get("scaled_to") == target
    if scaled and pool.provisioning_state == "Failed":
        # A failed scale-down keeps its requested count while the node it could not drain stays.
        return Failed(reason=f"scaling the pool back to {target} node(s) failed: {pool.error or 'see the pool operation'}")
    if target is None or pool.count == target:
        return Next(FINISH, reason=f"pool at {pool.count} node(s)")
    if scaled:
        return Failed(reason=f"pool is at {pool.count} node(s) after scaling to {target}: {pool.error or ''}")
    nodes = ctx.platform.kube(ctx.cluster).list_nodes(label_selector=pool_selector(ctx.message.pool))
    others_quarantined = [n for n in nodes if n.quarantined and n.name != _node(ctx)]
    healthy = [n for n in nodes if not n.quarantined]
    held = _nodes_a_budget_holds(ctx, {n.name for n in healthy}) if pool.count > target else set()
    if pool.count > target and (others_quarantined or held):
        # AKS's scale-down removes quarantined nodes first, then the highest instance ids: it would take
        # another stuck node (and its pods) with it, or a node hosting a pod its budget holds (the pod
        # just evicted may have landed there, and the drain then fails). Delete chosen machines
        # instead: nodes no budget holds first, then the newest.
        newest_first = sorted(healthy, key=lambda n: (n.created_at is not None, n.created_at or 0, n.name),
                              reverse=True)
        victims = [n.name for n in sorted(newest_first, key=lambda n: n.name in held)[: pool.count - target]]
        aks.begin_delete_machines(ctx.cluster, ctx.message.pool, victims)
        reason = f"deleting {', '.join(victims)} to bring the pool back to {target} node(s)"
    else:
        aks.begin_put_pool(ctx.cluster, replace(pool, count=target), if_match=pool.etag)
        reason = f"scaling pool from {pool.count} back to {target} node(s)"
    return _through_wait_pool(ctx, SCALE_BACK, reason, facts={"scaled_to": target})


def _nodes_a_budget_holds(ctx: StepContext, names: set[str]) -> set[str]:
    """Which of ``names`` host an application pod whose eviction a PDB refuses now: one pod list
    and one PDB list for the whole pool (a pod's verdict does not depend on the other pods given)."""
    kube = ctx.platform.kube(ctx.cluster)
    pods = [p for p in kube.list_pods() if p.node in names and is_application_pod(p)]
    return {b.node for b in eviction_blockers(pods, kube.list_pdbs()) if b.node}


def finish(ctx: StepContext) -> Outcome:
    kind, node = ctx.run.options["kind"], _node(ctx)
    current = _get_node(ctx)
    if current is not None and (current.quarantined or current.unschedulable):
        return Failed(reason=f"node {node} is still {'quarantined' if current.quarantined else 'cordoned'}")
    note = resolve_node(ctx.platform, ctx.cluster, node, how=f"remediated by {kind} (run {ctx.run.run_id})",
                        run_id=ctx.run.run_id)
    pool = ctx.platform.aks(ctx.cluster).get_pool(ctx.cluster, ctx.message.pool)
    return Done(summary=f"node {node} remediated by {kind}; pool {pool.name} at {pool.count} node(s), "
                        f"{pool.orchestrator_version}; {note}",
                facts={"final_count": pool.count, "resolved": note})


def _spec(name: str, handler: Callable[[StepContext], Outcome]) -> StepSpec:
    return StepSpec(name, remediation_step(handler), on_poison=restore_after_poison)


STEPS = {
    spec.name: spec
    for spec in (
        _spec(PLAN, plan), _spec(RECORD_PDB, record_pdb), _spec(RELAX_PDB, relax_pdb), _spec(EVICT, evict),
        _spec(RESTORE_PDB, restore_pdb), _spec(DELETE_POD, delete_pod), _spec(WAIT_PODS_GONE, wait_pods_gone),
        _spec(DELETE_MACHINE, delete_machine), _spec(UNQUARANTINE, unquarantine),
        _spec(REAPPLY_VERSION, reapply_version), _spec(WAIT_POOL, wait_pool), _spec(SCALE_BACK, scale_back),
        _spec(FINISH, finish), _spec(RECORD_SCALE, record_scale), _spec(RAISE_REPLICAS, raise_replicas),
        _spec(WAIT_SCALED_OUT, wait_scaled_out), _spec(RESTORE_SCALE, restore_scale),
    )
}
