"""The plumbing every blue-green step shares: the run's options and clock, pools and their nodes,
``advance`` (an event looked up in the transition table becomes the step's Outcome, with the
entry delay of the next state), one drain pass over a set of nodes, soaks, and the run's alerts.

A handler looks at the cluster, acts only if needed, and reports an *event*; ``advance`` asks
``upgrade.domain.bluegreen.next_state`` what follows. Waiting is a delayed message (``Retry`` or
``Next`` with a delay): soaks, the approval window, pods terminating, PDB-blocked evictions, ARM
operations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from upgrade.domain.alerts import Alert
from upgrade.domain.bluegreen import (
    KIND,
    NAMED_NODES,
    STATE_STATUS,
    GuardContext,
    cleanup_left,
    next_state,
)
from upgrade.domain.bluegreen_options import BlueGreenOptions
from upgrade.domain.drain import DrainStatus
from upgrade.domain.model import AgentPool, ClusterRef, Node, pool_selector
from upgrade.domain.pool_names import RUN_TAG, ownership_refusal
from upgrade.domain.runs import RunRecord
from upgrade.domain.steps import Failed, Next, Outcome, Retry
from upgrade.errors import NotAllowed, NotFound, PermanentError
from upgrade.ports import Aks, Kube
from upgrade.services.drain import DrainState, drain_node_step
from upgrade.services.step_runner import StepContext

log = logging.getLogger("upgrade.bluegreen")


STEP_PREFIX = "bluegreen."


# ---- helpers ----------------------------------------------------------------------------------


def run_options(run: RunRecord) -> BlueGreenOptions:
    return BlueGreenOptions.parse(run.options)


def current_time(ctx: StepContext) -> datetime:
    return ctx.platform.clock.now()


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def pool_nodes(kube: Kube, pool: str) -> list[Node]:
    return sorted(
        (n for n in kube.list_nodes(label_selector=pool_selector(pool)) if n.pool == pool),
        key=lambda n: n.name,
    )


def find_pool(aks: Aks, cluster: ClusterRef, name: str) -> AgentPool | None:
    try:
        return aks.get_pool(cluster, name)
    except NotFound:
        return None


def entry_of(target: str, now: datetime, options: BlueGreenOptions) -> tuple[float, dict[str, Any], dict | None]:
    """What entering ``target`` takes: (delay, facts, args). Waits start here, as delayed messages."""
    poll = options.poll_interval_seconds
    if target == "batch_soak":
        until = now + timedelta(seconds=options.batch_soak_seconds)
        return options.batch_soak_seconds, {"soakUntil": until.isoformat()}, {}
    if target == "final_soak":
        until = now + timedelta(seconds=options.final_soak_seconds)
        return options.final_soak_seconds, {"soakUntil": until.isoformat()}, {}
    if target == "await_decision":
        seconds = options.approval.timeout_minutes * 60
        return seconds, {"decisionDeadline": (now + timedelta(seconds=seconds)).isoformat()}, {}
    if target == "validate":
        return 0.0, {}, {"since": now.isoformat()}
    if target in ("wait_green_ready", "wait_green_deleted"):
        return poll, {}, {}
    return 0.0, {}, {}


def advance(ctx: StepContext, event: str, *, reason: str = "", facts: Mapping[str, Any] | None = None,
             retry_after: float | None = None, args: dict | None = None) -> Outcome:
    """Look the event up in the transition table; a self-transition is a Retry after ``retry_after``."""
    run = ctx.run
    assert run is not None  # every blue-green step is run-bound
    options = run_options(run)
    facts = dict(facts or {})
    state = ctx.message.step.removeprefix(STEP_PREFIX)
    target = next_state(state, event, GuardContext(options, {**run.facts, **facts}, run.status))
    if target == state:
        delay = options.poll_interval_seconds if retry_after is None else retry_after
        return Retry(delay_seconds=max(1.0, delay), reason=reason or event, args=args, facts=facts)
    delay, entry_facts, entry_args = entry_of(target, current_time(ctx), options)
    facts.update(entry_facts)
    if target == "failed":
        facts.setdefault("failure", reason or event)
        facts.setdefault("failedIn", state)  # what is left to clean up depends on where it failed
    if target == "await_decision":
        # The wait ends in a timeout decision nobody took: the operator hears that it started.
        run_alert(ctx, "run.awaiting-decision", "warning",
                  f"waiting for approve or rollback until {facts['decisionDeadline']} ({reason or event}); "
                  f"without a decision: {options.approval.on_timeout} (rollback unless validation passed)",
                  decisionDeadline=facts["decisionDeadline"], onTimeout=options.approval.on_timeout)
    return Next(STEP_PREFIX + target, delay_seconds=delay, args=entry_args, reason=reason or event, facts=facts,
                status=STATE_STATUS.get(target, "running"))


def blue_of(ctx: StepContext) -> str:
    assert ctx.run is not None and ctx.run.pool
    return ctx.run.pool


def green_of(ctx: StepContext) -> str:
    assert ctx.run is not None
    name = ctx.run.facts.get("greenPool")
    if not name:
        raise PermanentError("the run has no green pool name recorded (preflight did not finish)")
    return name


def owns(pool: AgentPool, run_id: str) -> bool:
    """Whether ``pool`` was created by run ``run_id`` (its ownership tag)."""
    return pool.tag_map().get(RUN_TAG) == run_id


class NotOwned(NotAllowed):
    """The run was about to act on a pool it does not own: refused (the run alerts and stops)."""

    def __init__(self, message: str, *, pool: str) -> None:
        super().__init__(message)
        self.pool = pool


def commit_validated(facts: Mapping[str, Any]) -> bool:
    """Green passed validation, or an operator's approval overrode a failed one (recorded)."""
    return bool((facts.get("validation") or {}).get("passed")) or bool(facts.get("validationOverridden"))


def require_owned(ctx: StepContext, action: str, pool: str, tags: Mapping[str, str] | None = None) -> None:
    """Raise NotOwned unless this run may ``action`` (cordon, drain, scale, delete) ``pool``."""
    run = ctx.run
    assert run is not None
    refusal = ownership_refusal(action, pool, tags, run_id=run.run_id, blue=blue_of(ctx),
                                green=run.facts.get("greenPool"), validated_commit=commit_validated(run.facts))
    if refusal:
        raise NotOwned(refusal, pool=pool)


# At most this many pods holding a drain up are kept in the run's facts (and its alerts); the
# reason counts them all. A run record stays bounded however many pods a batch holds.
MAX_RECORDED_BLOCKERS = 20


@dataclass(frozen=True)
class DrainPass:
    event: str  # drained | blocked | refused | timed_out
    reason: str
    retry_after: float
    carried: dict  # what the next pass needs (step args), bounded whatever the batch's size
    blockers: list  # pods holding the drain up, with the PDB that blocks each (the first few)


def carried_drain(raw: Mapping[str, Any] | None) -> DrainState:
    """What one blue-green drain pass hands to the next in its step message: when the drain began
    (for the drain timeout) and which DaemonSets of the drained pods exist (asked once per drain).
    Bounded by the cluster's DaemonSets, not by nodes or pods: each pass reads the pods again from
    the cluster, as a drain's re-check does anyway (a pod with a deletionTimestamp is terminating;
    one gone is gone), and re-sends only evictions still needed. A message written before this
    form (node name -> that node's drain state) reads as its earliest start and every DaemonSet it
    knew. Raises TypeError/ValueError on anything else."""
    if not raw:
        return DrainState()
    if not isinstance(raw, Mapping):
        raise TypeError(f"must be an object, not {type(raw).__name__}")
    if "started_at" in raw:  # "_" is never in a node name
        started, daemonsets = raw["started_at"], raw.get("daemonsets") or {}
        if started is not None and (isinstance(started, bool) or not isinstance(started, (int, float))):
            raise ValueError("started_at must be a number of seconds")
        if not isinstance(daemonsets, Mapping) or not all(isinstance(v, bool) for v in daemonsets.values()):
            raise ValueError("daemonsets must be an object of namespace/name -> true or false")
        return DrainState(started_at=started, daemonsets=dict(daemonsets))
    per_node = [DrainState.from_dict(state) for state in raw.values() if state]
    starts = [s.started_at for s in per_node if s.started_at is not None]
    return DrainState(started_at=min(starts, default=None),
                      daemonsets={key: known for s in per_node for key, known in s.daemonsets.items()})


def drain_nodes(ctx: StepContext, nodes: list[str], options: BlueGreenOptions) -> DrainPass:
    """One non-blocking drain pass over ``nodes`` (each node's evictions go out concurrently)."""
    kube = ctx.platform.kube(ctx.cluster)
    drain_options = replace(options.drain_options(), timeout_seconds=options.drain_timeout_seconds)
    carried = carried_drain(ctx.message.args.get("drain"))
    now = ctx.platform.clock.now().timestamp
    started = now() if carried.started_at is None else carried.started_at
    daemonsets = dict(carried.daemonsets)
    progresses = []
    for node in nodes:
        try:
            progress = drain_node_step(kube, node, drain_options,
                                       DrainState(started_at=started, daemonsets=daemonsets), now=now)
        except NotFound:
            continue  # the node is gone: nothing left to drain on it
        daemonsets.update(progress.state.daemonsets)
        progresses.append(progress)
    statuses = {p.status for p in progresses}
    pending = [p for p in progresses if p.status is not DrainStatus.DRAINED]
    summary = drain_summary(pending)
    blockers = [b for p in progresses for b in p.to_facts()["blockers"]][:MAX_RECORDED_BLOCKERS]
    if not progresses or statuses == {DrainStatus.DRAINED}:
        return DrainPass("drained", f"drained {nodes_named(nodes)}", 0.0, {}, [])
    carry = {"started_at": started, "daemonsets": daemonsets}
    if statuses & {DrainStatus.REFUSED, DrainStatus.FAILED}:
        return DrainPass("refused", f"drain cannot finish: {summary}", 0.0, carry, blockers)
    if DrainStatus.TIMED_OUT in statuses:
        reason = f"drain timeout {options.drain_timeout_minutes:g} min passed: {summary}"
        return DrainPass("timed_out", reason, 0.0, carry, blockers)
    retry = min(p.retry_after_seconds for p in progresses if not p.status.final)
    return DrainPass("blocked", summary, retry, carry, blockers)


def nodes_named(nodes: list[str]) -> str:
    named = ", ".join(nodes[:NAMED_NODES])
    return named if len(nodes) <= NAMED_NODES else f"{len(nodes)} nodes ({named}, ...)"


def drain_summary(pending: list) -> str:
    """The nodes still draining: the first few by their own summary, the rest counted."""
    text = "; ".join(p.summary() for p in pending[:NAMED_NODES])
    return text if len(pending) <= NAMED_NODES else f"{len(pending)} nodes not drained yet: {text}; ..."


def soak_then(ctx: StepContext, after: Callable[[], Outcome]) -> Outcome:
    assert ctx.run is not None
    until = parse_time(ctx.run.facts.get("soakUntil"))
    now = current_time(ctx)
    if until is not None and now < until:
        # Delivered early (a resume, a redelivery): wait out the rest of the soak.
        return advance(ctx, "soaking", reason=f"soaking until {until.isoformat()}",
                        retry_after=(until - now).total_seconds())
    return after()


def fail_here(ctx: StepContext, reason: str, facts: Mapping[str, Any] | None = None) -> Outcome:
    """End the run failed from the step that is running, without the table (see steps.guarded)."""
    assert ctx.run is not None
    state = ctx.message.step.removeprefix(STEP_PREFIX)
    failed_in = state
    if state == "failed":  # the run failed earlier: that failure comes first, and where it was
        failed_in = ctx.run.facts.get("failedIn") or state
        reason = f"{ctx.run.facts.get('failure') or ctx.run.reason}; then {reason}"
    log.error("run %s: %s; failed in %s without the transition table", ctx.run.run_id, reason, state)
    return failed_with_alert(ctx, reason, failed_in, facts={**(facts or {}), "failure": reason, "failedIn": failed_in})


def failed_with_alert(ctx: StepContext, reason: str, failed_in: str, facts: dict | None = None) -> Outcome:
    """Failed, with the run.failed alert naming what the run may have left for a person to clean up."""
    run = ctx.run
    assert run is not None
    left = cleanup_left(failed_in, {**run.facts, **(facts or {})}, run.pool or "")
    if left:
        reason = f"{reason}. Left to clean up: " + "; ".join(left)
    refused = list((facts or {}).get("notOwned") or run.facts.get("notOwned") or ())
    run_alert(ctx, "run.failed", "error", reason, leftToCleanUp=list(left), failedIn=failed_in or None,
              refusedPools=refused)
    return Failed(reason=reason, facts={**(facts or {}), "leftToCleanUp": list(left)}, status="failed", alerted=True)


def run_alert(ctx: StepContext, kind: str, severity: str, summary: str, **details: Any) -> None:
    run = ctx.run
    assert run is not None
    blockers = tuple([*(run.facts.get("drainBlockers") or ()), *(run.facts.get("greenDrainBlockers") or ())])
    ctx.platform.alerts.publish(Alert(
        kind=kind, severity=severity, cluster=run.cluster, pool=run.pool, run_id=run.run_id,
        summary=f"blue-green upgrade of {run.pool} to {run.target_version}: {summary}", blockers=blockers,
        details={"state": run.state, "greenPool": run.facts.get("greenPool"), "kind": KIND, **details},
        dedup_key=f"{run.run_id}:{kind}",
    ))
