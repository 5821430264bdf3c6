"""Blue-green node pool upgrades: THE transition table, batch planning, quota, and what a failed run
leaves behind. The run's options are ``bluegreen_options``; green's name and ownership tags
``pool_names``; what green copies of blue ``pool_clone``.

A blue-green run creates a green pool that clones the blue one at the target version, cordons
blue, drains it batch by batch (soaking after each batch), validates the workloads on green,
soaks, optionally waits for an operator's decision, then commits (deletes blue) or rolls back
(uncordons blue, drains green, deletes green). Each state is one queue step; which state follows
which is the data in ``TRANSITIONS``, not code: a step reports an *event* and the table (with
its guards) names the next state. An operator's decision (approve, rollback, pause, resume,
abort) is an event too. Anything not in the table raises ``TransitionNotAllowed``.

Failures. A step that hits a permanent error (retrying cannot help: a refused API call, an
unreadable message) reports the ``error`` event, and every state that does work has an ``error``
row:

- ``preflight``: the run fails; nothing has changed in the cluster yet.
- ``create_green`` up to ``await_decision``: the run rolls back, whatever the run's options say.
  Before commit blue is whole and rollback undoes only what this run did (uncordon the nodes it
  cordoned, drain and delete the green pool it created), so it is the way back to where the run
  started; stopping there instead would hold twice the pool's quota and a cordoned blue pool until
  someone noticed. ``autoRollbackOnFailedValidation`` governs validation verdicts, which a person
  may judge otherwise; an error is not a verdict. A rollback after an error ends ``failed``.
- ``commit`` and the rollback states: the run fails; blue may be deleted, or a rollback is half
  done, and only a person can tell what should happen next.

Every run that ends ``failed`` raises the ``run.failed`` alert naming what it may have left
behind (``cleanup_left``). ``done`` and ``failed`` have no way out of the table; an error there
fails the run with that alert directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from upgrade.domain.bluegreen_options import BlueGreenOptions
from upgrade.domain.model import AgentPool
from upgrade.domain.preflight import vcpus_per_vm
from upgrade.domain.surge import resolve_count
from upgrade.errors import Conflict

KIND = "blue-green"

# ---- the green pool ---------------------------------------------------------------------------


def quota_estimate(blue: AgentPool) -> dict[str, Any]:
    """The extra quota a blue-green run holds while both pools exist (2x the pool's nodes); the
    vCPU figures are None for a VM size whose vCPUs are unknown."""
    vcpus = vcpus_per_vm(blue.vm_size)
    return {
        "vmSize": blue.vm_size,
        "extraNodes": blue.count,
        "extraVcpus": None if vcpus is None else blue.count * vcpus,
        "peakNodes": 2 * blue.count,
        "peakVcpus": None if vcpus is None else 2 * blue.count * vcpus,
    }


# ---- batches ----------------------------------------------------------------------------------


def drain_batch_size(setting: str, blue_node_count: int) -> int:
    """Nodes per batch: a count, or a percent of the blue pool rounded up; at least one node."""
    return max(1, resolve_count(setting, blue_node_count, field="drainBatchSize", default=None))


# What cordon_blue records, once: blue's nodes (an AKS pool has at most 1,000), the batch size, and
# the few nodes it found cordoned by someone else. The batches and the nodes this run cordoned are
# derived from them, so a run record holds one list of node names whatever the pool's size. A run
# recorded before keeps its "batches" and "blueCordonedByRun" lists; they are read as they are.


def batch_facts(blue_nodes: Sequence[str], setting: str, cordoned_by_run: Sequence[str]) -> dict[str, Any]:
    nodes = sorted(blue_nodes)
    ours = set(cordoned_by_run)
    return {"blueNodes": nodes, "batchSize": drain_batch_size(setting, len(nodes)), "batchIndex": 0,
            "blueNotCordonedByRun": [n for n in nodes if n not in ours]}


def batch_count(facts: Mapping[str, Any]) -> int:
    if "batches" in facts:
        return len(facts["batches"] or ())
    size = int(facts.get("batchSize") or 1)
    return -(-len(facts.get("blueNodes") or ()) // size)


def batch_nodes(facts: Mapping[str, Any], index: int) -> list[str]:
    """The nodes of drain batch ``index`` (0-based); none past the last."""
    if "batches" in facts:
        batches = facts["batches"] or []
        return list(batches[index]) if 0 <= index < len(batches) else []
    size = int(facts.get("batchSize") or 1)
    return list((facts.get("blueNodes") or [])[index * size : (index + 1) * size]) if index >= 0 else []


def blue_cordoned_by_run(facts: Mapping[str, Any]) -> list[str]:
    """The blue nodes this run cordoned (a rollback uncordons these, and no other)."""
    if "blueCordonedByRun" in facts:
        return list(facts["blueCordonedByRun"] or ())
    if "blueNodes" in facts:
        others = set(facts.get("blueNotCordonedByRun") or ())
        return [n for n in facts["blueNodes"] or () if n not in others]
    return list(facts.get("blueSchedulable") or ())


# How many node names a text for a person lists one by one; more are counted.
NAMED_NODES = 5


# ---- the transition table ---------------------------------------------------------------------

PRE_COMMIT_STATES = (
    "preflight",
    "create_green",
    "wait_green_ready",
    "cordon_blue",
    "drain_batch",
    "batch_soak",
    "validate",
    "final_soak",
    "await_decision",
)
ROLLBACK_STATES = ("rollback", "uncordon_blue", "drain_green", "delete_green", "wait_green_deleted")
TERMINAL_STATES = ("done", "failed", "aborted")
STEP_STATES = (*PRE_COMMIT_STATES, "commit", *ROLLBACK_STATES, "done", "failed")
STATES = (*PRE_COMMIT_STATES, "commit", *ROLLBACK_STATES, *TERMINAL_STATES)
DECISIONS = ("approve", "rollback", "pause", "resume", "abort")


@dataclass(frozen=True)
class GuardContext:
    """What guards may look at: the run's options, its facts and its status."""

    options: BlueGreenOptions
    facts: Mapping[str, Any]
    status: str = "running"


def _facts_flag(key: str) -> Callable[[GuardContext], bool]:
    return lambda ctx: bool(ctx.facts.get(key))


GUARDS: dict[str, Callable[[GuardContext], bool]] = {
    "batches_remain": lambda c: int(c.facts.get("batchIndex", 0)) < batch_count(c.facts),
    "blue_drained": lambda c: int(c.facts.get("batchIndex", 0)) >= batch_count(c.facts),
    "rollback_on_drain_timeout": lambda c: c.options.rollback_on_drain_timeout,
    "fail_on_drain_timeout": lambda c: not c.options.rollback_on_drain_timeout,
    "auto_rollback": lambda c: c.options.auto_rollback_on_failed_validation,
    "ask_operator": lambda c: not c.options.auto_rollback_on_failed_validation,
    "approval_required": lambda c: c.options.approval.required,
    "no_approval": lambda c: not c.options.approval.required,
    "validated": lambda c: bool((c.facts.get("validation") or {}).get("passed")),
    "commit_on_timeout": lambda c: c.options.approval.on_timeout == "commit"
    and bool((c.facts.get("validation") or {}).get("passed"))
    and not c.facts.get("commitRefused"),
    "rollback_on_timeout": lambda c: not (
        c.options.approval.on_timeout == "commit"
        and bool((c.facts.get("validation") or {}).get("passed"))
        and not c.facts.get("commitRefused")
    ),
    "rollback_after_failure": _facts_flag("rollbackAfterFailure"),
    "rollback_as_asked": lambda c: not c.facts.get("rollbackAfterFailure"),
    "running": lambda c: c.status != "paused",
    "paused": lambda c: c.status == "paused",
}


@dataclass(frozen=True)
class Transition:
    state: str
    event: str
    guard: str | None
    next_state: str


def _rows(state: str, *rows: tuple[str, str | None, str]) -> list[Transition]:
    return [Transition(state, event, guard, target) for event, guard, target in rows]


TRANSITIONS: tuple[Transition, ...] = (
    *_rows("preflight", ("passed", None, "create_green"), ("refused", None, "failed"), ("error", None, "failed")),
    *_rows("create_green", ("requested", None, "wait_green_ready"), ("error", None, "rollback")),
    *_rows(
        "wait_green_ready",
        ("pending", None, "wait_green_ready"),
        ("ready", None, "cordon_blue"),
        ("create_failed", None, "rollback"),
        ("timed_out", None, "rollback"),
        ("error", None, "rollback"),
    ),
    *_rows("cordon_blue", ("cordoned", None, "drain_batch"), ("error", None, "rollback")),
    *_rows(
        "drain_batch",
        ("blocked", None, "drain_batch"),
        ("drained", None, "batch_soak"),
        ("timed_out", "rollback_on_drain_timeout", "rollback"),
        ("timed_out", "fail_on_drain_timeout", "failed"),
        # pods the drain options refuse (unmanaged, emptyDir) never go: treated like a timeout
        ("refused", "rollback_on_drain_timeout", "rollback"),
        ("refused", "fail_on_drain_timeout", "failed"),
        ("error", None, "rollback"),
    ),
    *_rows(
        "batch_soak",
        ("soaking", None, "batch_soak"),
        ("soaked", "batches_remain", "drain_batch"),
        ("soaked", "blue_drained", "validate"),
        ("error", None, "rollback"),
    ),
    *_rows(
        "validate",
        ("pending", None, "validate"),
        ("passed", None, "final_soak"),
        ("failed", "auto_rollback", "rollback"),
        ("failed", "ask_operator", "await_decision"),
        ("error", None, "rollback"),
    ),
    *_rows(
        "final_soak",
        ("soaking", None, "final_soak"),
        ("passed", "approval_required", "await_decision"),
        ("passed", "no_approval", "commit"),
        ("failed", "auto_rollback", "rollback"),
        ("failed", "ask_operator", "await_decision"),
        ("approve", "validated", "commit"),  # skip the rest of the soak (GKE's complete-upgrade)
        ("error", None, "rollback"),
    ),
    *_rows(
        "await_decision",
        ("waiting", None, "await_decision"),
        ("timed_out", "commit_on_timeout", "commit"),
        ("timed_out", "rollback_on_timeout", "rollback"),
        ("approve", None, "commit"),
        ("error", None, "rollback"),
    ),
    *_rows(
        "commit",
        ("deleting", None, "commit"),
        ("committed", None, "done"),
        ("refused", None, "await_decision"),
        ("error", None, "failed"),
    ),
    *_rows("rollback", ("started", None, "uncordon_blue"), ("error", None, "failed")),
    *_rows("uncordon_blue", ("uncordoned", None, "drain_green"), ("error", None, "failed")),
    *_rows(
        "drain_green",
        ("blocked", None, "drain_green"),
        ("drained", None, "delete_green"),
        ("timed_out", None, "failed"),
        ("refused", None, "failed"),
        ("error", None, "failed"),
    ),
    *_rows("delete_green", ("requested", None, "wait_green_deleted"), ("error", None, "failed")),
    *_rows(
        "wait_green_deleted",
        ("deleting", None, "wait_green_deleted"),
        ("deleted", "rollback_after_failure", "failed"),
        ("deleted", "rollback_as_asked", "done"),
        ("error", None, "failed"),
    ),
    # Operator decisions. Rollback is allowed at any point before commit; pause/resume/abort on
    # any live state. Pause and resume keep the state (the run's status changes).
    *[Transition(s, "rollback", None, "rollback") for s in PRE_COMMIT_STATES],
    *[Transition(s, "pause", "running", s) for s in STEP_STATES if s not in ("done", "failed")],
    *[Transition(s, "resume", "paused", s) for s in STEP_STATES if s not in ("done", "failed")],
    *[Transition(s, "abort", None, "aborted") for s in STEP_STATES if s not in ("done", "failed")],
)

# The run status each state is entered with; every other live state runs.
STATE_STATUS = {"await_decision": "awaiting-decision"}


class TransitionNotAllowed(Conflict):
    """An event the table has no (guard-satisfied) row for in this state."""

    def __init__(self, state: str, event: str, detail: str = "") -> None:
        self.state = state
        self.event = event
        allowed = sorted({t.event for t in TRANSITIONS if t.state == state})
        text = f"{event!r} is not allowed in state {state!r}"
        text += f" ({detail})" if detail else f"; allowed there: {', '.join(allowed) or 'nothing (final state)'}"
        super().__init__(text, code=None)


def next_state(state: str, event: str, ctx: GuardContext) -> str:
    """The state the table names for ``event`` in ``state``; the first row whose guard holds."""
    rows = [t for t in TRANSITIONS if t.state == state and t.event == event]
    if not rows:
        raise TransitionNotAllowed(state, event)
    for row in rows:
        if row.guard is None or GUARDS[row.guard](ctx):
            return row.next_state
    guards = ", ".join(r.guard or "-" for r in rows)
    raise TransitionNotAllowed(state, event, f"no guard holds: {guards}")


def decisions_allowed(state: str, ctx: GuardContext) -> list[str]:
    """The operator decisions that apply in ``state`` now (their guards hold), in DECISIONS order."""
    return [d for d in DECISIONS
            if any(t.state == state and t.event == d and (t.guard is None or GUARDS[t.guard](ctx))
                   for t in TRANSITIONS)]


# ---- what a failed run leaves behind ------------------------------------------------------------

# States after which blue is schedulable again (the rollback uncordoned it).
_BLUE_UNCORDONED_IN = ("drain_green", "delete_green", "wait_green_deleted")


def cleanup_left(failed_in: str, facts: Mapping[str, Any], blue_pool: str) -> tuple[str, ...]:
    """What a run that failed in state ``failed_in`` may have left in the cluster, each with what a
    person does about it. Read from what the run recorded doing, not from the cluster: the failure
    may be that the cluster cannot be reached."""
    if failed_in == "preflight" or facts.get("rolledBack") or facts.get("committed"):
        return ()
    green = facts.get("greenPool")
    if green in (facts.get("notOwned") or ()):
        green = None  # a pool with green's name that this run did not create: never the run's to clean up
    if failed_in == "commit":
        return (f"blue pool {blue_pool}: cordoned and drained, its deletion not confirmed; the workloads run on "
                f"green pool {green}. Delete {blue_pool} (az aks nodepool delete) once green serves well, "
                "or uncordon it",)
    left: list[str] = []
    if facts.get("cordonStarted") and failed_in not in _BLUE_UNCORDONED_IN:
        cordoned = blue_cordoned_by_run(facts)
        nodes = ", ".join(cordoned[:NAMED_NODES]) if cordoned else f"the nodes of pool {blue_pool}"
        if len(cordoned) > NAMED_NODES:
            nodes = f"{len(cordoned)} nodes of pool {blue_pool} ({nodes}, ...)"
        left.append(f"blue nodes cordoned by this run: {nodes}. Uncordon them (kubectl uncordon) to keep blue")
    if green:
        if failed_in == "wait_green_deleted":
            left.append(f"green pool {green}: its deletion was not confirmed. Check it is gone, "
                        "else delete it again (az aks nodepool delete)")
        elif facts.get("greenRequestedAt") or facts.get("greenOwned"):
            left.append(f"green pool {green}, created by this run. Delete it (az aks nodepool delete) "
                        "to free its quota once no workload needs it")
        elif failed_in == "create_green":
            left.append(f"green pool {green}, if its creation went through (it then carries this "
                        "run's id in its aks-upgrade-run tag). Delete it (az aks nodepool delete)")
    return tuple(left)
