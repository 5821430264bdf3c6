"""Blue-green node pool upgrades as queue steps, and the use cases that start and steer them.

Every state of ``upgrade.domain.bluegreen.TRANSITIONS`` that does work is a step handler here.
A handler looks at the cluster, acts only if needed (create green only if absent, cordon only
schedulable nodes, delete only the pool this run created and labelled), reports an *event*, and
the transition table names the next state. Waiting is a delayed message (``Retry``/``Next`` with a
delay): soaks, the approval window, pods terminating, PDB-blocked evictions, ARM operations.

Ownership of the green pool is provable: the run records the green pool's name in its facts
(preflight, before any create call) and labels the pool's nodes with the run id
(``GREEN_RUN_LABEL``); rollback deletes a pool only when both agree.

Also here: ``start_bluegreen_run``, ``decide`` (approve, rollback, pause, resume, abort) and the
registry of custom validation checks (named callables registered in code).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from upgrade.domain.alerts import Alert
from upgrade.domain.bluegreen import (
    KIND,
    STATE_STATUS,
    BlueGreenOptions,
    GuardContext,
    TransitionNotAllowed,
    cleanup_left,
    green_pool_name,
    green_pool_spec,
    next_state,
    plan_batches,
    quota_estimate,
)
from upgrade.domain.drain import DrainStatus
from upgrade.domain.model import AgentPool, ClusterRef, Node, pool_selector, require_allowed_cluster
from upgrade.domain.pdb import eviction_blockers
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.domain.steps import Done, Failed, Next, Outcome, Retry, StepMessage, parse_step_message
from upgrade.domain.validation import (
    BlueOrigin,
    CheckResult,
    ValidationReport,
    blue_origin_workloads,
    check_workloads,
    validate_workloads,
)
from upgrade.domain.versions import version_key
from upgrade.errors import Conflict, InvalidInput, NotAllowed, NotFound, PermanentError, TemporaryError
from upgrade.ports import Aks, Kube, Platform
from upgrade.services.drain import DrainState, drain_node_step
from upgrade.services.registry import StepSpec
from upgrade.services.step_runner import StepContext

log = logging.getLogger("upgrade.bluegreen")

# Step names are prefixed: the step registry is shared with the other workflows.
STEP_PREFIX = "bluegreen."

GREEN_RUN_LABEL = "aksupgrade.io/bluegreen-run"
HTTP_PROBE_TIMEOUT_SECONDS = 5.0
_VERSION = r"^\d+\.\d+(\.\d+)?$"

# ---- custom validation checks -----------------------------------------------------------------


@dataclass(frozen=True)
class CheckContext:
    """What a custom check sees: the platform (ports), the cluster and the run's pools."""

    platform: Platform
    cluster: ClusterRef
    run: RunRecord
    blue_nodes: tuple[str, ...]
    green_nodes: tuple[str, ...]

    def kube(self) -> Kube:
        return self.platform.kube(self.cluster)


CustomCheck = Callable[[CheckContext], CheckResult]
CUSTOM_CHECKS: dict[str, CustomCheck] = {}


def register_check(name: str) -> Callable[[CustomCheck], CustomCheck]:
    """Register a custom validation check under ``name`` (``options.validation.customChecks``).
    The check returns a CheckResult; TemporaryError means "not yet" (pending), any other
    exception fails the check with its message."""

    def register(check: CustomCheck) -> CustomCheck:
        if name in CUSTOM_CHECKS and CUSTOM_CHECKS[name] is not check:
            raise ValueError(f"custom check {name!r} is registered twice")
        CUSTOM_CHECKS[name] = check
        return check

    return register


# ---- helpers ----------------------------------------------------------------------------------


def _options(run: RunRecord) -> BlueGreenOptions:
    return BlueGreenOptions.parse(run.options)


def _now(ctx: StepContext) -> datetime:
    return ctx.platform.clock.now()


def _at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _pool_nodes(kube: Kube, pool: str) -> list[Node]:
    return sorted(
        (n for n in kube.list_nodes(label_selector=pool_selector(pool)) if n.pool == pool),
        key=lambda n: n.name,
    )


def _get_pool(aks: Aks, cluster: ClusterRef, name: str) -> AgentPool | None:
    try:
        return aks.get_pool(cluster, name)
    except NotFound:
        return None


def _entry(target: str, now: datetime, options: BlueGreenOptions) -> tuple[float, dict[str, Any], dict | None]:
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


def _advance(ctx: StepContext, event: str, *, reason: str = "", facts: Mapping[str, Any] | None = None,
             retry_after: float | None = None, args: dict | None = None) -> Outcome:
    """Look the event up in the transition table; a self-transition is a Retry after ``retry_after``."""
    run = ctx.run
    assert run is not None  # every blue-green step is run-bound
    options = _options(run)
    facts = dict(facts or {})
    state = ctx.message.step.removeprefix(STEP_PREFIX)
    target = next_state(state, event, GuardContext(options, {**run.facts, **facts}, run.status))
    if target == state:
        delay = options.poll_interval_seconds if retry_after is None else retry_after
        return Retry(delay_seconds=max(1.0, delay), reason=reason or event, args=args, facts=facts)
    delay, entry_facts, entry_args = _entry(target, _now(ctx), options)
    facts.update(entry_facts)
    if target == "failed":
        facts.setdefault("failure", reason or event)
        facts.setdefault("failedIn", state)  # what is left to clean up depends on where it failed
    return Next(STEP_PREFIX + target, delay_seconds=delay, args=entry_args, reason=reason or event, facts=facts,
                status=STATE_STATUS.get(target, "running"))


# The args each step reads: its live message carries them over from the step's previous attempt.
STEP_ARGS: dict[str, tuple[str, ...]] = {"drain_batch": ("drain",), "drain_green": ("drain",), "validate": ("since",)}


def check_step_args(step: str, args: Mapping[str, Any]) -> None:
    """Refuse args a step does not take or cannot read, naming the field (InvalidInput)."""
    allowed = STEP_ARGS.get(step, ())
    for key in args:
        if key not in allowed:
            raise InvalidInput("step message", f"args.{key}",
                               f"not an argument of step {step} (it takes: {', '.join(allowed) or 'none'})")
    since = args.get("since")
    if since is not None:
        try:
            if not isinstance(since, str) or datetime.fromisoformat(since).tzinfo is None:
                raise ValueError(since)
        except ValueError:
            raise InvalidInput("step message", "args.since", "must be an ISO 8601 time with a UTC offset") from None
    drain = args.get("drain")
    if drain is not None:
        if not isinstance(drain, Mapping):
            raise InvalidInput("step message", "args.drain", "must be an object of node name -> drain progress")
        for node, state in drain.items():
            try:
                if state is not None and not isinstance(state, Mapping):
                    raise TypeError(type(state).__name__)
                DrainState.from_dict(state)
            except (TypeError, ValueError, AttributeError) as exc:
                raise InvalidInput("step message", f"args.drain.{node}", f"not a drain progress: {exc}") from None


def _guarded(step: str, handler: Callable[[StepContext], Outcome]) -> Callable[[StepContext], Outcome]:
    """``handler`` as the registry runs it. A permanent error in the step (a refused API call, a
    live message whose args it cannot read, an event the table lacks) becomes the table's ``error``
    event, so the run rolls back or fails with an alert as the table says; where the table has no
    way out (done, failed) or cannot be consulted (unreadable options), the run fails here with the
    alert. Transient errors stay Retries."""

    def run_guarded(ctx: StepContext) -> Outcome:
        try:
            check_step_args(step, ctx.message.args)
            return handler(ctx)
        except (InvalidInput, PermanentError) as exc:
            reason = f"{step}: {exc}"
        try:
            return _advance(ctx, "error", reason=reason,
                            facts={"rollbackAfterFailure": True, "rollbackCause": reason})
        except TransitionNotAllowed:
            return _fail_here(ctx, reason)
        except (InvalidInput, PermanentError) as exc:
            return _fail_here(ctx, f"{reason}; the transition table could not be consulted: {exc}")

    run_guarded.__name__ = handler.__name__
    return run_guarded


def _blue(ctx: StepContext) -> str:
    assert ctx.run is not None and ctx.run.pool
    return ctx.run.pool


def _green(ctx: StepContext) -> str:
    assert ctx.run is not None
    name = ctx.run.facts.get("greenPool")
    if not name:
        raise PermanentError("the run has no green pool name recorded (preflight did not finish)")
    return name


def _owns_green(pool: AgentPool, run_id: str) -> bool:
    return dict(pool.node_labels).get(GREEN_RUN_LABEL) == run_id


# ---- steps ------------------------------------------------------------------------------------


def preflight(ctx: StepContext) -> Outcome:
    """Blue exists below the target, the target is offered; derive green; report quota and PDBs."""
    run, cluster = ctx.run, ctx.cluster
    assert run is not None and run.target_version
    aks, kube = ctx.platform.aks(cluster), ctx.platform.kube(cluster)
    blue = _get_pool(aks, cluster, _blue(ctx))
    if blue is None:
        return _advance(ctx, "refused", reason=f"pool {_blue(ctx)} not found in {cluster.name}")
    target = run.target_version
    if version_key(blue.orchestrator_version) >= version_key(target):
        return _advance(ctx, "refused", reason=f"pool {blue.name} runs {blue.orchestrator_version}, "
                                                f"not lower than the target {target}")
    offered = aks.available_upgrades(cluster, blue.name)
    if target not in offered:
        return _advance(ctx, "refused", reason=f"{target} is not offered by pool {blue.name}'s upgrade profile "
                                                f"(offered: {', '.join(offered) or 'none'})")
    green = green_pool_name(blue.name, target)
    if _get_pool(aks, cluster, green) is not None:
        return _advance(ctx, "refused", reason=f"a pool named {green} already exists; this run did not create it")
    nodes = _pool_nodes(kube, blue.name)
    names = {n.name for n in nodes}
    pods_on_blue = [p for p in kube.list_pods() if p.node in names]
    blockers = eviction_blockers(pods_on_blue, kube.list_pdbs())
    quota = quota_estimate(blue)
    reason = (f"green pool {green} will mirror {blue.name} at {target}; quota while both exist: "
              f"+{quota['extraNodes']} nodes, +{quota['extraVcpus'] or 'an unknown number of'} vCPUs; "
              f"{len(blockers)} pod(s) a PDB blocks now")
    return _advance(ctx, "passed", reason=reason, facts={
        "bluePool": {"name": blue.name, "version": blue.orchestrator_version, "count": blue.count,
                     "mode": blue.mode, "vmSize": blue.vm_size},
        "greenPool": green,  # recorded before the create call: the only pool this run may delete
        "blueSchedulable": [n.name for n in nodes if not n.unschedulable],
        "quota": quota,
        "pdbBlockers": [b.to_public() for b in blockers],
    })


def create_green(ctx: StepContext) -> Outcome:
    """Create the green pool if absent, mirroring blue at the target version, labelled with the run."""
    run, cluster = ctx.run, ctx.cluster
    assert run is not None and run.target_version
    aks = ctx.platform.aks(cluster)
    green = _green(ctx)
    existing = _get_pool(aks, cluster, green)
    if existing is not None:
        if not _owns_green(existing, run.run_id):
            raise NotAllowed(f"pool {green} exists but was not created by run {run.run_id}: not touching it")
        return _advance(ctx, "requested", reason=f"green pool {green} already requested ({existing.provisioning_state})")
    blue = aks.get_pool(cluster, _blue(ctx))
    spec = green_pool_spec(blue, name=green, target_version=run.target_version)
    labels = {**dict(spec.node_labels), GREEN_RUN_LABEL: run.run_id}
    aks.begin_put_pool(cluster, replace(spec, node_labels=tuple(sorted(labels.items()))))
    return _advance(ctx, "requested", reason=f"creating green pool {green} ({blue.count} x {blue.vm_size}, "
                                             f"{run.target_version})",
                    facts={"greenRequestedAt": _now(ctx).isoformat()})


def wait_green_ready(ctx: StepContext) -> Outcome:
    run, cluster = ctx.run, ctx.cluster
    assert run is not None
    options = _options(run)
    green = _green(ctx)
    pool = _get_pool(ctx.platform.aks(cluster), cluster, green)
    started = _at(run.facts.get("greenRequestedAt")) or _now(ctx)
    late = (_now(ctx) - started).total_seconds() > options.green_ready_timeout_minutes * 60
    if pool is not None and pool.provisioning_state == "Failed":
        return _advance(ctx, "create_failed", reason=f"green pool {green} failed: {pool.error or 'no reason given'}",
                        facts={"rollbackAfterFailure": True, "rollbackCause": f"green pool {green} failed to create"})
    nodes = _pool_nodes(ctx.platform.kube(cluster), green) if pool is not None else []
    ready = [n for n in nodes if n.ready]
    if pool is not None and pool.provisioning_state == "Succeeded" and len(ready) >= pool.count == len(nodes):
        return _advance(ctx, "ready", reason=f"green pool {green}: {len(ready)} node(s) Ready",
                        facts={"greenNodes": [n.name for n in nodes], "cordonStarted": True})
    state = pool.provisioning_state if pool else "not visible yet"
    if late:
        return _advance(ctx, "timed_out", reason=f"green pool {green} not ready after "
                                                  f"{options.green_ready_timeout_minutes:g} min ({state})",
                        facts={"rollbackAfterFailure": True, "rollbackCause": "green pool not ready in time"})
    return _advance(ctx, "pending", reason=f"green pool {green}: {state}, {len(ready)}/{pool.count if pool else '?'} "
                                           "node(s) Ready")


def cordon_blue(ctx: StepContext) -> Outcome:
    """Cordon every schedulable blue node; record blue's workloads and the drain batches."""
    run, cluster = ctx.run, ctx.cluster
    assert run is not None
    kube = ctx.platform.kube(cluster)
    nodes = _pool_nodes(kube, _blue(ctx))
    known = set(run.facts.get("blueSchedulable", []))
    cordoned_by_run = sorted(known | {n.name for n in nodes if n.name not in known and not n.unschedulable})
    for node in nodes:
        if not node.unschedulable:
            kube.set_unschedulable(node.name, True)
    names = [n.name for n in nodes]
    origin = blue_origin_workloads(kube.list_pods(), names, kube.list_workloads())
    batches = plan_batches(names, _options(run).drain_batch_size)
    return _advance(ctx, "cordoned", reason=f"cordoned {len(names)} blue node(s); {len(batches)} drain batch(es)",
                    facts={"blueNodes": names, "blueCordonedByRun": cordoned_by_run, "batches": batches,
                           "batchIndex": 0, "blueOrigin": [o.to_dict() for o in origin]})


@dataclass(frozen=True)
class DrainPass:
    event: str  # drained | blocked | refused | timed_out
    reason: str
    retry_after: float
    states: dict  # per-node drain state for the next pass (step args)
    blockers: list  # pods holding the drain up, with the PDB that blocks each


def _drain_nodes(ctx: StepContext, nodes: list[str], options: BlueGreenOptions) -> DrainPass:
    """One non-blocking drain pass over ``nodes`` (each node's evictions go out concurrently)."""
    kube = ctx.platform.kube(ctx.cluster)
    drain_options = replace(options.drain_options(), timeout_seconds=options.drain_timeout_seconds)
    states: dict = dict(ctx.message.args.get("drain") or {})
    now = ctx.platform.clock.now().timestamp
    progresses = []
    for node in nodes:
        try:
            progress = drain_node_step(kube, node, drain_options, DrainState.from_dict(states.get(node)), now=now)
        except NotFound:
            states[node] = None  # the node is gone: nothing left to drain on it
            continue
        states[node] = progress.state.to_dict()
        progresses.append(progress)
    statuses = {p.status for p in progresses}
    summary = "; ".join(p.summary() for p in progresses if p.status is not DrainStatus.DRAINED)
    blockers = [b for p in progresses for b in p.to_facts()["blockers"]]
    if not progresses or statuses == {DrainStatus.DRAINED}:
        return DrainPass("drained", f"drained {', '.join(nodes)}", 0.0, {}, [])
    if statuses & {DrainStatus.REFUSED, DrainStatus.FAILED}:
        return DrainPass("refused", f"drain cannot finish: {summary}", 0.0, states, blockers)
    if DrainStatus.TIMED_OUT in statuses:
        reason = f"drain timeout {options.drain_timeout_minutes:g} min passed: {summary}"
        return DrainPass("timed_out", reason, 0.0, states, blockers)
    retry = min(p.retry_after_seconds for p in progresses if not p.status.final)
    return DrainPass("blocked", summary, retry, states, blockers)


def drain_batch(ctx: StepContext) -> Outcome:
    run = ctx.run
    assert run is not None
    options = _options(run)
    index = int(run.facts.get("batchIndex", 0))
    batches = run.facts.get("batches", [])
    if index >= len(batches):
        return _advance(ctx, "drained", reason="no blue node left to drain")
    drained = _drain_nodes(ctx, batches[index], options)
    label = f"batch {index + 1}/{len(batches)}: "
    if drained.event == "drained":
        return _advance(ctx, "drained", reason=label + drained.reason,
                        facts={"batchIndex": index + 1, "drainBlockers": []})
    if drained.event == "blocked":
        return _advance(ctx, "blocked", reason=label + drained.reason, retry_after=drained.retry_after,
                        args={"drain": drained.states}, facts={"drainBlockers": drained.blockers})
    cause = label + drained.reason
    return _advance(ctx, drained.event, reason=cause, facts={
        "rollbackAfterFailure": True, "rollbackCause": cause, "drainBlockers": drained.blockers,
    })


def batch_soak(ctx: StepContext) -> Outcome:
    return _soak_then(ctx, lambda: _advance(ctx, "soaked", reason="batch soak over"))


def _soak_then(ctx: StepContext, after: Callable[[], Outcome]) -> Outcome:
    assert ctx.run is not None
    until = _at(ctx.run.facts.get("soakUntil"))
    now = _now(ctx)
    if until is not None and now < until:
        # Delivered early (a resume, a redelivery): wait out the rest of the soak.
        return _advance(ctx, "soaking", reason=f"soaking until {until.isoformat()}",
                        retry_after=(until - now).total_seconds())
    return after()


def _run_validation(ctx: StepContext) -> ValidationReport:
    run, cluster = ctx.run, ctx.cluster
    assert run is not None
    options = _options(run)
    kube = ctx.platform.kube(cluster)
    blue_nodes = [n.name for n in _pool_nodes(kube, _blue(ctx))]
    green_nodes = [n.name for n in _pool_nodes(kube, _green(ctx))]
    extra = [_http_probe(ctx, probe.url, probe.expected_status) for probe in options.validation.http_probes]
    check_ctx = CheckContext(ctx.platform, cluster, run, tuple(blue_nodes), tuple(green_nodes))
    extra += [_custom_check(name, check_ctx) for name in options.validation.custom_checks]
    return validate_workloads(
        [BlueOrigin.from_dict(o) for o in run.facts.get("blueOrigin", [])],
        kube.list_workloads(),
        kube.list_pods(),
        blue_nodes=blue_nodes,
        green_nodes=green_nodes,
        restart_threshold=options.validation.restart_threshold,
        extra=extra,
    )


def _http_probe(ctx: StepContext, url: str, expected: int) -> CheckResult:
    name = f"http {url}"
    try:
        status = ctx.platform.http_status(url, HTTP_PROBE_TIMEOUT_SECONDS)
    except OSError as exc:  # refused, timed out, no route: the service may still come up on green
        return CheckResult(name, False, f"unreachable: {exc}", pending=True)
    except PermanentError as exc:  # a URL or redirect the probe will not follow: waiting cannot help
        return CheckResult(name, False, f"refused: {exc}")
    if status != expected:
        return CheckResult(name, False, f"answered {status}, expected {expected}", pending=True)
    return CheckResult(name, True, f"answered {status}")


def _custom_check(name: str, check_ctx: CheckContext) -> CheckResult:
    check = CUSTOM_CHECKS.get(name)
    if check is None:
        return CheckResult(f"custom {name}", False, "no check registered under this name")
    try:
        result = check(check_ctx)
    except TemporaryError as exc:
        return CheckResult(f"custom {name}", False, str(exc), pending=True)
    except Exception as exc:  # a check's bug must fail the check, not crash the step
        return CheckResult(f"custom {name}", False, f"raised {type(exc).__name__}: {exc}")
    return replace(result, name=f"custom {result.name or name}")


def _validation_failed(ctx: StepContext, report: ValidationReport) -> Outcome:
    cause = f"validation failed: {report.summary}"
    return _advance(ctx, "failed", reason=cause, facts={
        "validation": report.to_facts(), "rollbackAfterFailure": True, "rollbackCause": cause,
    })


def validate(ctx: StepContext) -> Outcome:
    run = ctx.run
    assert run is not None
    options = _options(run)
    report = _run_validation(ctx)
    if report.passed:
        return _advance(ctx, "passed", reason=report.summary, facts={"validation": report.to_facts()})
    since = _at(ctx.message.args.get("since")) or _now(ctx)
    waited = (_now(ctx) - since).total_seconds()
    if report.pending and waited < options.validation.ready_timeout_minutes * 60:
        return _advance(ctx, "pending", reason=f"waiting for green: {report.summary}",
                        facts={"validation": report.to_facts()})
    return _validation_failed(ctx, report)


def final_soak(ctx: StepContext) -> Outcome:
    def revalidate() -> Outcome:
        report = _run_validation(ctx)
        if report.passed:
            return _advance(ctx, "passed", reason=f"final soak over; {report.summary}",
                            facts={"validation": report.to_facts()})
        return _validation_failed(ctx, report)

    return _soak_then(ctx, revalidate)


def await_decision(ctx: StepContext) -> Outcome:
    """Runs when the approval window closes (a decision moves the run before that)."""
    run = ctx.run
    assert run is not None
    deadline = _at(run.facts.get("decisionDeadline"))
    now = _now(ctx)
    if deadline is not None and now < deadline:
        return _advance(ctx, "waiting", reason=run.reason, retry_after=(deadline - now).total_seconds())
    validated = bool((run.facts.get("validation") or {}).get("passed")) and not run.facts.get("commitRefused")
    cause = f"no decision before the approval timeout ({_options(run).approval.on_timeout} on timeout)"
    return _advance(ctx, "timed_out", reason=cause,
                    facts={"rollbackAfterFailure": not validated, "rollbackCause": cause})


def commit(ctx: StepContext) -> Outcome:
    """Delete the blue pool, and nothing else; refuse when it would lose capacity or availability."""
    run, cluster = ctx.run, ctx.cluster
    assert run is not None
    aks, kube = ctx.platform.aks(cluster), ctx.platform.kube(cluster)
    blue_name, green_name = _blue(ctx), _green(ctx)
    pools = {p.name: p for p in aks.list_pools(cluster)}
    blue = pools.get(blue_name)
    if blue is None:
        return _advance(ctx, "committed", reason=f"blue pool {blue_name} deleted; {green_name} is the pool now",
                        facts={"committed": True})
    if blue.provisioning_state == "Deleting":
        return _advance(ctx, "deleting", reason=f"deleting blue pool {blue_name}")
    refusal = _commit_refusal(ctx, kube, pools, blue, green_name)
    if refusal:
        return _advance(ctx, "refused", reason=f"commit refused: {refusal}", facts={"commitRefused": refusal})
    aks.begin_delete_pool(cluster, blue_name)
    return _advance(ctx, "deleting", reason=f"deleting blue pool {blue_name}",
                    facts={"blueDeleteRequestedAt": _now(ctx).isoformat()})


def _commit_refusal(ctx: StepContext, kube: Kube, pools: Mapping[str, AgentPool], blue: AgentPool,
                    green_name: str) -> str:
    assert ctx.run is not None
    green = pools.get(green_name)
    if green is None or green.provisioning_state != "Succeeded":
        return f"green pool {green_name} is {'missing' if green is None else green.provisioning_state}"
    if blue.mode == "System" and not any(p.mode == "System" for n, p in pools.items() if n != blue.name):
        return f"{blue.name} is the last System pool"
    blue_nodes = [n.name for n in _pool_nodes(kube, blue.name)]
    green_nodes = [n.name for n in _pool_nodes(kube, green_name)]
    origin = [BlueOrigin.from_dict(o) for o in ctx.run.facts.get("blueOrigin", [])]
    check = check_workloads(origin, kube.list_workloads(), kube.list_pods(),
                            blue_nodes=blue_nodes, green_nodes=green_nodes)
    return "" if check.passed else f"blue-origin workloads not ready on green: {check.reason}"


def rollback(ctx: StepContext) -> Outcome:
    assert ctx.run is not None
    return _advance(ctx, "started", reason=f"rolling back: {ctx.run.facts.get('rollbackCause', 'asked')}")


def uncordon_blue(ctx: StepContext) -> Outcome:
    """Uncordon the blue nodes this run cordoned (nodes cordoned by others stay as they were)."""
    run = ctx.run
    assert run is not None
    if not run.facts.get("cordonStarted"):
        return _advance(ctx, "uncordoned", reason="blue was never cordoned")
    kube = ctx.platform.kube(ctx.cluster)
    ours = set(run.facts.get("blueCordonedByRun", run.facts.get("blueSchedulable", [])))
    uncordoned = [n.name for n in _pool_nodes(kube, _blue(ctx)) if n.name in ours and n.unschedulable]
    for name in uncordoned:
        kube.set_unschedulable(name, False)
    return _advance(ctx, "uncordoned", reason=f"uncordoned {len(uncordoned)} blue node(s)")


def drain_green(ctx: StepContext) -> Outcome:
    run = ctx.run
    assert run is not None
    green = run.facts.get("greenPool")
    nodes = [n.name for n in _pool_nodes(ctx.platform.kube(ctx.cluster), green)] if green else []
    if not nodes:
        return _advance(ctx, "drained", reason="green has no nodes to drain")
    drained = _drain_nodes(ctx, nodes, _options(run))
    if drained.event == "drained":
        return _advance(ctx, "drained", reason=f"green: {drained.reason}")
    if drained.event == "blocked":
        return _advance(ctx, "blocked", reason=drained.reason, retry_after=drained.retry_after,
                        args={"drain": drained.states}, facts={"greenDrainBlockers": drained.blockers})
    return _advance(ctx, drained.event, reason=f"rollback stopped, both pools remain: {drained.reason}",
                    facts={"greenDrainBlockers": drained.blockers})


def delete_green(ctx: StepContext) -> Outcome:
    """Delete the green pool, only if this run created it (recorded name and the run's label)."""
    run, cluster = ctx.run, ctx.cluster
    assert run is not None
    green = run.facts.get("greenPool")
    aks = ctx.platform.aks(cluster)
    pool = _get_pool(aks, cluster, green) if green else None
    if pool is None:
        return _advance(ctx, "requested", reason="no green pool to delete")
    if not _owns_green(pool, run.run_id):
        raise NotAllowed(f"pool {green} was not created by run {run.run_id}: not deleting it")
    if pool.provisioning_state == "Deleting":
        return _advance(ctx, "requested", reason=f"green pool {green} is being deleted")
    aks.begin_delete_pool(cluster, green)
    return _advance(ctx, "requested", reason=f"deleting green pool {green}")


def wait_green_deleted(ctx: StepContext) -> Outcome:
    run, cluster = ctx.run, ctx.cluster
    assert run is not None
    green = run.facts.get("greenPool")
    pool = _get_pool(ctx.platform.aks(cluster), cluster, green) if green else None
    if pool is None:
        cause = run.facts.get("rollbackCause", "")
        return _advance(ctx, "deleted", reason=f"rolled back ({cause}): workloads on blue, green deleted",
                        facts={"rolledBack": True})
    if pool.provisioning_state == "Failed":
        raise PermanentError(f"deleting green pool {green} failed: {pool.error or 'no reason given'}")
    return _advance(ctx, "deleting", reason=f"green pool {green}: {pool.provisioning_state}")


def done(ctx: StepContext) -> Outcome:
    run = ctx.run
    assert run is not None
    rolled_back = bool(run.facts.get("rolledBack"))
    status = "rolled-back" if rolled_back else "succeeded"
    summary = run.reason or status
    _alert(ctx, f"run.{status}", "warning" if rolled_back else "info", summary)
    return Done(summary=summary, status=status)


def failed(ctx: StepContext) -> Outcome:
    run = ctx.run
    assert run is not None
    reason = run.facts.get("failure") or run.reason or "failed"
    if run.facts.get("rolledBack"):
        reason = f"{run.facts.get('rollbackCause', reason)}; rolled back: workloads on blue, green deleted"
    return _failed_with_alert(ctx, reason, run.facts.get("failedIn") or "")


def _fail_here(ctx: StepContext, reason: str) -> Outcome:
    """End the run failed from the step that is running, without the table (see _guarded)."""
    assert ctx.run is not None
    state = ctx.message.step.removeprefix(STEP_PREFIX)
    failed_in = state
    if state == "failed":  # the run failed earlier: that failure comes first, and where it was
        failed_in = ctx.run.facts.get("failedIn") or state
        reason = f"{ctx.run.facts.get('failure') or ctx.run.reason}; then {reason}"
    log.error("run %s: %s; failed in %s without the transition table", ctx.run.run_id, reason, state)
    return _failed_with_alert(ctx, reason, failed_in, facts={"failure": reason, "failedIn": failed_in})


def _failed_with_alert(ctx: StepContext, reason: str, failed_in: str, facts: dict | None = None) -> Outcome:
    """Failed, with the run.failed alert naming what the run may have left for a person to clean up."""
    run = ctx.run
    assert run is not None
    left = cleanup_left(failed_in, run.facts, run.pool or "")
    if left:
        reason = f"{reason}. Left to clean up: " + "; ".join(left)
    _alert(ctx, "run.failed", "error", reason, leftToCleanUp=list(left), failedIn=failed_in or None)
    return Failed(reason=reason, facts={**(facts or {}), "leftToCleanUp": list(left)}, status="failed")


def _alert(ctx: StepContext, kind: str, severity: str, summary: str, **details: Any) -> None:
    run = ctx.run
    assert run is not None
    blockers = tuple([*(run.facts.get("drainBlockers") or ()), *(run.facts.get("greenDrainBlockers") or ())])
    ctx.platform.alerts.publish(Alert(
        kind=kind, severity=severity, cluster=run.cluster, pool=run.pool, run_id=run.run_id,
        summary=f"blue-green upgrade of {run.pool} to {run.target_version}: {summary}", blockers=blockers,
        details={"state": run.state, "greenPool": run.facts.get("greenPool"), "kind": KIND, **details},
        dedup_key=f"{run.run_id}:{kind}",
    ))


_HANDLERS: dict[str, Callable[[StepContext], Outcome]] = {
    "preflight": preflight,
    "create_green": create_green,
    "wait_green_ready": wait_green_ready,
    "cordon_blue": cordon_blue,
    "drain_batch": drain_batch,
    "batch_soak": batch_soak,
    "validate": validate,
    "final_soak": final_soak,
    "await_decision": await_decision,
    "commit": commit,
    "rollback": rollback,
    "uncordon_blue": uncordon_blue,
    "drain_green": drain_green,
    "delete_green": delete_green,
    "wait_green_deleted": wait_green_deleted,
    "done": done,
    "failed": failed,
}


def leftovers_after_poison(run: RunRecord, platform: Platform) -> str:
    """Poison hook: a step that kept crashing has left the cluster in a state no step can vouch for,
    so nothing is undone automatically; the poison alert names what the run may have left instead."""
    state = run.state.removeprefix(STEP_PREFIX)
    if state == "failed":  # the failed step itself crashed: what is left depends on where the run failed
        state = run.facts.get("failedIn") or state
    left = cleanup_left(state, run.facts, run.pool or "")
    return ("nothing undone automatically; left to clean up: " + "; ".join(left)) if left else "nothing to clean up"


STEPS: dict[str, StepSpec] = {
    STEP_PREFIX + name: StepSpec(STEP_PREFIX + name, _guarded(name, handler), on_poison=leftovers_after_poison)
    for name, handler in _HANDLERS.items()
}


# ---- use cases: start a run, decide on a run ----------------------------------------------------


def _check_target_version(aks: Aks, cluster: ClusterRef, pool: AgentPool, target_version: object) -> str:
    """The exact version to create green at; "1.31" means the newest offered 1.31 patch."""
    if not isinstance(target_version, str) or not re.match(_VERSION, target_version.strip()):
        raise InvalidInput("upgrade request", "targetVersion", 'must be a Kubernetes version like "1.31" or "1.31.2"')
    target = target_version.strip()
    current = pool.orchestrator_version
    wanted = version_key(target)
    if wanted < version_key(current)[: len(wanted)] or wanted == version_key(current):
        raise InvalidInput("upgrade request", "targetVersion",
                           f"{target} is not newer than pool {pool.name}'s {current}: AKS cannot downgrade "
                           "a pool, and blue-green needs a newer version")
    offered = aks.available_upgrades(cluster, pool.name)
    matching = [v for v in offered if v == target or v.startswith(target + ".")]
    if not matching:
        raise InvalidInput("upgrade request", "targetVersion",
                           f"{target} is not offered by pool {pool.name}'s upgrade profile "
                           f"(offered: {', '.join(offered) or 'none'})")
    return max(matching, key=version_key)


def start_bluegreen_run(platform: Platform, *, cluster: str, pool: str, target_version: str,
                        options: Mapping[str, Any] | None, actor: str) -> RunRecord:
    """Validate the request against the cluster, create the run (one active run per pool) and
    send its first step. Raises InvalidInput, NotAllowed, NotFound or Conflict(code=active run id)."""
    ref = ClusterRef.parse(cluster, what="upgrade request", field="cluster")
    require_allowed_cluster(ref, platform.allowed_clusters)
    if not isinstance(pool, str) or not pool:
        raise InvalidInput("upgrade request", "pool", "must name the agent pool to upgrade")
    parsed = BlueGreenOptions.parse(options)
    unknown = [n for n in parsed.validation.custom_checks if n not in CUSTOM_CHECKS]
    if unknown:
        raise InvalidInput("options", "options.validation.customChecks",
                           f"no check registered as {', '.join(unknown)} "
                           f"(registered: {', '.join(sorted(CUSTOM_CHECKS)) or 'none'})")
    aks = platform.aks(ref)
    try:
        blue = aks.get_pool(ref, pool)
    except NotFound as exc:
        raise NotFound(f"pool {pool} not found in cluster {ref.name}") from exc
    target = _check_target_version(aks, ref, blue, target_version)
    active = platform.runs.find_active(ref.arm_id, pool)
    if active is not None:
        raise Conflict(f"run {active.run_id} is already active on pool {pool}", code=active.run_id)
    now = platform.clock.now()
    run = RunRecord(
        run_id=f"bg-{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}", kind=KIND, cluster=ref.arm_id, pool=pool,
        state=STEP_PREFIX + "preflight", status="running", created_at=now, updated_at=now,
        target_version=target, options=parsed.for_storage(), reason=f"started by {actor}",
    )
    run = platform.runs.create(run)  # the store's conditional insert is what enforces one active run
    platform.runs.append_history(HistoryEntry(run.run_id, now, run.state, 0, "started",
                                              f"blue-green {pool} {blue.orchestrator_version} -> {target}", actor))
    first = StepMessage(v=1, run_id=run.run_id, step=run.state, cluster=ref.arm_id, pool=pool, attempt=1, actor=actor)
    try:
        platform.queue.send(first)
    except Exception:
        platform.runs.update(run.evolve(now=platform.clock.now(), status="failed",
                                        reason="could not enqueue the first step; start again"))
        raise
    return run


def decide(platform: Platform, run_id: str, decision: str, actor: str, reason: str = "") -> RunRecord:
    """Apply an operator's decision to a blue-green run; recorded with who and when.

    approve/rollback move the run to commit/rollback; pause parks it (its live step is dropped
    until resume re-sends it); abort ends it where it is, cleaning nothing up."""
    from upgrade.domain.bluegreen import DECISIONS

    if decision not in DECISIONS:
        raise InvalidInput("decision", "decision", f"{decision!r} is not one of {', '.join(DECISIONS)}")
    actor = (actor or "anonymous")[:200]
    for _ in range(5):  # a step may write the run meanwhile: read again and re-decide
        run = platform.runs.get(run_id)
        if run.kind != KIND:
            raise NotAllowed(f"run {run_id} is a {run.kind} run; decisions apply to blue-green runs")
        if not run.active:
            raise Conflict(f"run {run_id} is {run.status}: no decision applies any more")
        state = run.state.removeprefix(STEP_PREFIX)
        options = _options(run)
        target = next_state(state, decision, GuardContext(options, run.facts, run.status))
        now = platform.clock.now()
        record = {"decision": decision, "actor": actor, "at": now.isoformat(), "reason": reason}
        facts: dict[str, Any] = {"decisions": [*run.facts.get("decisions", []), record]}
        changes: dict[str, Any] = {"claim": None, "reason": f"{decision} by {actor}" + (f": {reason}" if reason else "")}
        message: StepMessage | None = None
        delay = 0.0
        if decision == "pause":
            facts["pausedFromStatus"] = run.status
            changes.update(status="paused")
        elif decision == "abort":
            changes.update(state=STEP_PREFIX + "aborted", status="aborted", attempt=run.attempt + 1, outbox=None)
        else:
            attempt = run.attempt + 1  # a new (state, attempt): any copy of the old live message is stale
            if decision == "resume":
                status = run.facts.get("pausedFromStatus") or "running"
                args: dict = _live_args(run)
            else:
                status = STATE_STATUS.get(target, "running")
                delay, entry_facts, args = _entry(target, now, options)
                facts.update(entry_facts)
                if decision == "rollback":
                    facts.update(rollbackAfterFailure=False, rollbackCause=f"rollback asked by {actor}"
                                 + (f": {reason}" if reason else ""))
                if decision == "approve":
                    facts["commitRefused"] = None
            message = StepMessage(v=1, run_id=run.run_id, step=STEP_PREFIX + target, cluster=run.cluster,
                                  pool=run.pool, attempt=attempt, args=args or {}, actor=actor)
            changes.update(state=message.step, attempt=attempt, status=status, outbox={
                "from": ["decision", decision], "message": message.to_json(), "delay": delay})
        try:
            updated = platform.runs.update(run.evolve(now=now, facts=facts, **changes))
        except Conflict:
            continue
        log.info("run %s: %s by %s in %s -> %s", run_id, decision, actor, state, updated.state,
                 extra={"run_id": run_id, "decision": decision, "actor": actor})
        if message is not None:
            platform.queue.send(message, delay_seconds=delay)
        platform.runs.append_history(HistoryEntry(run.run_id, now, run.state, run.attempt, "decision",
                                                  changes["reason"], actor))
        if decision == "abort":
            platform.alerts.publish(Alert(
                kind="run.aborted", severity="warning", cluster=run.cluster, pool=run.pool, run_id=run.run_id,
                summary=f"blue-green upgrade of {run.pool} aborted by {actor} in {state}; pools left as they are",
                details={"greenPool": run.facts.get("greenPool"), "state": state}, dedup_key=f"{run.run_id}:aborted",
            ))
        return updated
    raise Conflict(f"run {run_id} kept changing; try the decision again")


def _live_args(run: RunRecord) -> dict:
    """The args of the run's live message, which the run's outbox holds when a step sent it: a
    resumed drain keeps its per-node progress (and its timeout's start), a resumed validate its start."""
    outbox = run.outbox or {}
    try:
        message = parse_step_message(outbox["message"])
    except (KeyError, TypeError, InvalidInput):
        return {}  # the first step (sent by start) or a decision's message: no args to keep
    return dict(message.args) if (message.step, message.attempt) == (run.state, run.attempt) else {}


START_FIELDS = frozenset({"cluster", "pool", "targetVersion", "strategy", "options", "actor"})
STRATEGIES = ("blue-green", "rolling")


def audit_actor(caller: str, claimed: object = None) -> str:
    """Who the audit trail names: the authenticated caller (App Service authentication's principal,
    else the function key's holder). Anyone holding the key can write any name in a body, so a
    claimed ``actor`` is kept only as "on behalf of", never as who acted."""
    caller = (caller or "anonymous").strip()
    claimed = claimed.strip() if isinstance(claimed, str) else ""
    return (caller if not claimed or claimed == caller else f"{caller} on behalf of {claimed}")[:200]


def start_upgrade(platform: Platform, body: object, *, actor: str) -> RunRecord:
    """``POST /api/upgrades``: validate the body and start a blue-green or rolling run. ``actor``
    is the authenticated caller; the body's ``actor`` is recorded as "on behalf of" (audit_actor)."""
    if not isinstance(body, Mapping):
        raise InvalidInput("upgrade request", "(body)", "must be a JSON object")
    unknown = sorted(set(body) - START_FIELDS)
    if unknown:
        raise InvalidInput("upgrade request", unknown[0], f"unknown field (allowed: {', '.join(sorted(START_FIELDS))})")
    for required in ("cluster", "pool", "targetVersion", "strategy"):
        if not isinstance(body.get(required), str) or not body[required].strip():
            raise InvalidInput("upgrade request", required, "is required (a non-empty string)")
    strategy = body["strategy"]
    if strategy not in STRATEGIES:
        raise InvalidInput("upgrade request", "strategy", f"{strategy!r} is not one of {', '.join(STRATEGIES)}")
    options = body.get("options") or {}
    if not isinstance(options, Mapping):
        raise InvalidInput("upgrade request", "options", "must be a JSON object")
    if "actor" in body and not isinstance(body["actor"], str):
        raise InvalidInput("upgrade request", "actor", "must be a string")
    arguments = {"cluster": body["cluster"].strip(), "pool": body["pool"].strip(),
                 "target_version": body["targetVersion"].strip(), "options": dict(options),
                 "actor": audit_actor(actor, body.get("actor"))}
    if strategy == "rolling":
        from upgrade.services.rolling import start_rolling_run

        return start_rolling_run(platform, **arguments)
    return start_bluegreen_run(platform, **arguments)


def decide_from_request(platform: Platform, run_id: str, decision: str, body: object, *, actor: str) -> RunRecord:
    """``POST /api/upgrades/{id}/{decision}`` with body ``{actor?, reason?}``; ``actor`` is the
    authenticated caller, the body's ``actor`` only "on behalf of" (audit_actor)."""
    body = body if body is not None else {}
    if not isinstance(body, Mapping):
        raise InvalidInput("decision request", "(body)", "must be a JSON object")
    unknown = sorted(set(body) - {"actor", "reason"})
    if unknown:
        raise InvalidInput("decision request", unknown[0], "unknown field (allowed: actor, reason)")
    for key in ("actor", "reason"):
        if key in body and not isinstance(body[key], str):
            raise InvalidInput("decision request", key, "must be a string")
    return decide(platform, run_id, decision, audit_actor(actor, body.get("actor")), body.get("reason") or "")
