"""Maintenance windows applied to the product's own runs.

Which steps are cluster-changing, and at which point each may wait without leaving anything half
done, is listed here (``GATED_STEPS``): the blue-green run's start, green's creation, each drain
batch before its first eviction, the commit before blue's deletion is asked for, a rolling run's
settings and version writes, and a remediation's plan. The step runner asks ``gate`` before it runs
a step; outside a window the step is not run and its run waits for the next opening as a delayed
message (``Retry``), with ``reason`` "waiting for window, opens at …" and every wait recorded in
the run's ``windowWaits`` fact and its history. A drain batch in progress (a node half drained) and
a commit whose delete was asked for always go on: a window that closes meanwhile pauses the run at
its next safe point.

The windows are the pool policy's ``maintenance`` section: the policy's own windows and the
cluster's ARM ``maintenanceConfigurations`` by name. An operator's ``override-window`` decision on a
run (recorded with who, when and why) lets it go on regardless.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from upgrade.domain.alerts import Alert
from upgrade.domain.policy import ARM_MAINTENANCE_CONFIGS, MaintenancePolicy
from upgrade.domain.runs import HistoryEntry, RunRecord
from upgrade.domain.steps import Outcome, Retry, StepMessage
from upgrade.domain.windows import (
    ACTIONS,
    MaintenanceConfig,
    WindowStatus,
    config_from_policy,
    upcoming,
    window_status,
)
from upgrade.errors import Conflict, InvalidInput, UpgradeError
from upgrade.ports import Platform
from upgrade.services.outbox import live_message, outbox_for, send_after_write

# A wait longer than this wakes up and looks again (queue messages stay invisible for at most 7 days,
# and the windows, the policy or an override may have changed meanwhile).
MAX_WAIT_SECONDS = 6 * 3600.0
RECHECK_SECONDS = 3600.0
READ_RETRY_SECONDS = 300.0
READ_ALERT_SECONDS = 900.0  # windows unreadable this long are alerted (a single transient error is not)
OVERRIDE_DECISION = "override-window"


def _always(action: str) -> Callable[[Any], str | None]:
    return lambda ctx: action


def _drain_not_started(ctx: Any) -> str | None:
    return None if ctx.message.args.get("drain") else "drain-batch"


def _delete_not_asked(ctx: Any) -> str | None:
    return None if ctx.run.facts.get("blueDeleteRequestedAt") else "commit"


# step -> the action it is, when it is at a point where waiting leaves nothing half done (else None)
GATED_STEPS: Mapping[str, Callable[[Any], str | None]] = {
    "bluegreen.preflight": _always("start"),
    "bluegreen.create_green": _always("create-green"),
    "bluegreen.drain_batch": _drain_not_started,
    "bluegreen.commit": _delete_not_asked,
    "rolling.apply_settings": _always("rolling-start"),
    "rolling.set_version": _always("rolling-start"),
    "remediation.plan": _always("remediation"),
}


def configs_for(platform: Platform, cluster: Any, maintenance: MaintenancePolicy, names: Sequence[str],
                arm_cache: dict[str, list[MaintenanceConfig]] | None = None) -> tuple[list[MaintenanceConfig], list[str]]:
    """The configurations ``names`` name (policy windows, then the cluster's through ARM, read once
    and only when a name needs it), and the names found in neither."""
    cache = arm_cache if arm_cache is not None else {}
    if "arm" not in cache and any(n in ARM_MAINTENANCE_CONFIGS and n not in maintenance.windows for n in names):
        cache["arm"] = platform.aks(cluster).list_maintenance_configurations(cluster)
    arm = {c.name: c for c in cache.get("arm", [])}
    configs: list[MaintenanceConfig] = []
    missing = []
    for name in names:
        if name in maintenance.windows:
            configs.append(config_from_policy(name, maintenance.windows[name], f"maintenance.windows.{name}"))
        elif name in arm:
            configs.append(arm[name])
        else:
            missing.append(name)
    return configs, missing


def action_status(platform: Platform, cluster: Any, pool: str | None, action: str,
                  now: datetime) -> WindowStatus | None:
    """Whether ``action`` may start on the pool now; None when the policy gates it by no window."""
    maintenance = platform.policy.for_pool(cluster, pool).maintenance
    names = maintenance.names_for(action)
    if not names:
        return None
    configs, missing = configs_for(platform, cluster, maintenance, names)
    return window_status(configs, now, missing=missing)


def gate(ctx: Any, execute: Callable[[], Outcome]) -> Outcome:
    """Run the step (``execute``) if its action is inside a window, else wait for the next one."""
    run: RunRecord | None = ctx.run
    pick = GATED_STEPS.get(ctx.message.step)
    action = pick(ctx) if pick is not None and run is not None else None
    if action is None or run is None or run.facts.get("windowOverride"):
        return _cleared(run, execute())
    now = ctx.platform.clock.now()
    try:
        status = action_status(ctx.platform, ctx.cluster, ctx.message.pool, action, now)
    except UpgradeError as exc:
        return _read_failed(ctx, run, action, exc, now)
    if status is None or status.open:
        return _cleared(run, execute())
    return _wait(ctx, run, action, status, now)


def _wait(ctx: Any, run: RunRecord, action: str, status: WindowStatus, now: datetime) -> Retry:
    step = ctx.message.step
    opens_at = status.opens_at
    delay = (opens_at - now).total_seconds() if opens_at else RECHECK_SECONDS
    waiting = run.facts.get("windowWait") or {}
    record = {"step": step, "action": action, "since": waiting.get("since") or now.isoformat(),
              "opensAt": opens_at.isoformat() if opens_at else None, "config": status.config,
              "missing": list(status.missing)}
    waits = list(run.facts.get("windowWaits", []))
    if waiting.get("step") != step or waiting.get("since") != record["since"]:
        waits.append({k: record[k] for k in ("step", "action", "since", "opensAt")})
    elif waits:
        waits[-1] = {**waits[-1], "opensAt": record["opensAt"]}
    reason = status.describe()
    if status.missing:
        reason += f"; not found: {', '.join(status.missing)}"
    if opens_at is None and (waiting.get("step") != step or waiting.get("opensAt") is not None):
        _alert_no_opening(ctx, run, action, record["since"], reason)
    read_again = {"windowReadFailed": None} if run.facts.get("windowReadFailed") else {}
    return Retry(max(1.0, min(delay, MAX_WAIT_SECONDS)), reason=reason,
                 facts={"windowWait": record, "windowWaits": waits, **read_again})


def _read_failed(ctx: Any, run: RunRecord, action: str, exc: UpgradeError, now: datetime) -> Retry:
    """The windows could not be read (ARM's maintenance configurations): look again in a while; a
    failure that lasts (a permission the app lacks) would be silent, so once it has lasted
    ``READ_ALERT_SECONDS`` it is alerted (once: until a read succeeds)."""
    reason = f"maintenance windows of {action} could not be read: {exc}"
    failing = dict(run.facts.get("windowReadFailed") or {"since": now.isoformat(), "step": ctx.message.step})
    lasted = (now - datetime.fromisoformat(failing["since"])).total_seconds()
    if lasted >= READ_ALERT_SECONDS and not failing.get("alerted"):
        failing["alerted"] = True
        ctx.platform.alerts.publish(Alert(
            kind="run.window-unreadable", severity="error", cluster=run.cluster, pool=run.pool, run_id=run.run_id,
            summary=f"Run {run.run_id} waits since {failing['since']}: {reason}; "
                    f"it looks again every {READ_RETRY_SECONDS:.0f} s",
            details={"action": action, "step": ctx.message.step, "error": str(exc)},
            step=ctx.message.step, attempt=ctx.message.attempt, dedup_key=f"{run.run_id}|window-read|{failing['since']}",
        ))
    return Retry(READ_RETRY_SECONDS, reason=reason, facts={"windowReadFailed": failing})


def _alert_no_opening(ctx: Any, run: RunRecord, action: str, since: str, reason: str) -> None:
    """A wait no window ends (none opens within the horizon, or the configurations named are not
    found) would only be re-checked hourly: say so once per wait, with the ways out."""
    ctx.platform.alerts.publish(Alert(
        kind="run.window-never-opens", severity="error", cluster=run.cluster, pool=run.pool, run_id=run.run_id,
        summary=f"Run {run.run_id} waits for a maintenance window of {action} that does not open: {reason}; "
                "fix the policy or the cluster's maintenance configurations, or override-window",
        details={"action": action, "step": ctx.message.step, "since": since},
        step=ctx.message.step, attempt=ctx.message.attempt, dedup_key=f"{run.run_id}|window|{since}",
    ))


def _cleared(run: RunRecord | None, outcome: Outcome) -> Outcome:
    """The step's outcome, ending the window wait the run was in."""
    ended = {key: None for key in ("windowWait", "windowReadFailed") if run is not None and run.facts.get(key)}
    return replace(outcome, facts={**ended, **outcome.facts}) if ended else outcome


# ---- the operator's override ---------------------------------------------------------------------


def override_window(platform: Platform, run_id: str, actor: str, reason: str) -> RunRecord:
    """Let a run go on outside its windows: recorded with who, when and why; a run waiting for a
    window has its live step sent again now (written to its outbox first, as every decision is)."""
    if not reason.strip():
        raise InvalidInput("decision request", "reason", "an override of the maintenance windows needs a reason")
    for _ in range(5):
        run = platform.runs.get(run_id)
        if not run.active:
            raise Conflict(f"run {run_id} is {run.status}: no decision applies any more")
        now = platform.clock.now()
        changes: dict[str, Any] = {"facts": {"windowOverride": {"actor": actor, "at": now.isoformat(), "reason": reason}}}
        live = live_message(run)
        if run.facts.get("windowWait") and run.status == "running":
            message = StepMessage(v=1, run_id=run.run_id, step=run.state, cluster=run.cluster, pool=run.pool,
                                  attempt=run.attempt + 1, args=dict(live.args) if live else {}, actor=actor)
            changes.update(attempt=message.attempt, claim=None,
                           outbox=outbox_for(message, ["decision", OVERRIDE_DECISION]))
        try:
            updated = platform.runs.update(run.evolve(now=now, **changes))
        except Conflict:
            continue
        if "outbox" in changes:
            send_after_write(platform, updated)
        platform.runs.append_history(HistoryEntry(run.run_id, now, run.state, run.attempt, "decision",
                                                  f"{OVERRIDE_DECISION} by {actor}: {reason}", actor))
        return updated
    raise Conflict(f"run {run_id} kept changing; try the decision again")


# ---- what preflight shows --------------------------------------------------------------------------


def windows_report(platform: Platform, cluster: Any, pool: str, now: datetime, count: int = 3) -> dict[str, Any]:
    """Per gated action: open now or when it next opens, and the next windows of its configurations."""
    maintenance = platform.policy.for_pool(cluster, pool).maintenance
    report: dict[str, Any] = {}
    arm_cache: dict[str, list[MaintenanceConfig]] = {}
    for action in ACTIONS:
        names = maintenance.names_for(action)
        if not names:
            continue
        configs, missing = configs_for(platform, cluster, maintenance, names, arm_cache)
        status = window_status(configs, now, missing=missing)
        report[action] = {
            "windows": list(names), "missing": missing, "open": status.open, "status": status.describe(),
            "next": [{"config": n, "start": s.start.isoformat(), "end": s.end.isoformat()}
                     for n, s in upcoming(configs, now, count)[:count]],
        }
    return report
