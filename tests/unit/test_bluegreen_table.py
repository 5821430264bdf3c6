"""Blue-green domain: the transition table, illegal moves, batch planning, green pool naming and spec,
and options validation."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upgrade.domain.bluegreen import (
    DECISIONS,
    GUARDS,
    PRE_COMMIT_STATES,
    STATES,
    STEP_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    GuardContext,
    TransitionNotAllowed,
    batch_count,
    batch_facts,
    batch_nodes,
    blue_cordoned_by_run,
    cleanup_left,
    drain_batch_size,
    next_state,
    quota_estimate,
)
from upgrade.domain.bluegreen_options import BlueGreenOptions
from upgrade.domain.model import AgentPool
from upgrade.errors import Conflict, InvalidInput


def ctx(facts=None, status="running", **options) -> GuardContext:
    return GuardContext(BlueGreenOptions.parse(options), facts or {}, status)


# ---- the table ---------------------------------------------------------------------------------

HAPPY_PATH = [
    ("preflight", "passed", {}, {}, "create_green"),
    ("create_green", "requested", {}, {}, "wait_green_ready"),
    ("wait_green_ready", "ready", {}, {}, "cordon_blue"),
    ("cordon_blue", "cordoned", {}, {}, "drain_batch"),
    ("drain_batch", "drained", {}, {}, "batch_soak"),
    ("batch_soak", "soaked", {"batches": [["a"], ["b"]], "batchIndex": 1}, {}, "drain_batch"),
    ("batch_soak", "soaked", {"batches": [["a"], ["b"]], "batchIndex": 2}, {}, "validate"),
    ("validate", "passed", {}, {}, "final_soak"),
    ("final_soak", "passed", {}, {}, "commit"),
    ("final_soak", "passed", {}, {"approval": {"required": True}}, "await_decision"),
    ("await_decision", "approve", {}, {}, "commit"),
    ("commit", "committed", {}, {}, "done"),
]

POLICY_ROWS = [
    # drain timeout: fail or roll back, per policy
    ("drain_batch", "timed_out", {}, {}, "failed"),
    ("drain_batch", "timed_out", {}, {"rollbackOnDrainTimeout": True}, "rollback"),
    ("drain_batch", "refused", {}, {}, "failed"),
    ("drain_batch", "blocked", {}, {}, "drain_batch"),
    # failed validation: automatic rollback, or the operator decides
    ("validate", "failed", {}, {}, "rollback"),
    ("validate", "failed", {}, {"autoRollbackOnFailedValidation": False}, "await_decision"),
    ("final_soak", "failed", {}, {}, "rollback"),
    ("final_soak", "approve", {"validation": {"passed": True}}, {}, "commit"),
    # approval timeout: commit only when asked to and validation passed
    ("await_decision", "timed_out", {"validation": {"passed": True}}, {"approval": {"onTimeout": "commit"}}, "commit"),
    ("await_decision", "timed_out", {"validation": {"passed": False}}, {"approval": {"onTimeout": "commit"}}, "rollback"),
    ("await_decision", "timed_out", {"validation": {"passed": True}, "commitRefused": "x"},
     {"approval": {"onTimeout": "commit"}}, "rollback"),
    ("await_decision", "timed_out", {"validation": {"passed": True}}, {}, "rollback"),
    ("commit", "refused", {}, {}, "await_decision"),
    # rollback sub-steps and how a rollback ends
    ("rollback", "started", {}, {}, "uncordon_blue"),
    ("uncordon_blue", "uncordoned", {}, {}, "drain_green"),
    ("drain_green", "drained", {}, {}, "delete_green"),
    ("drain_green", "timed_out", {}, {}, "failed"),
    ("delete_green", "requested", {}, {}, "wait_green_deleted"),
    ("wait_green_deleted", "deleted", {"rollbackAfterFailure": True}, {}, "failed"),
    ("wait_green_deleted", "deleted", {"rollbackAfterFailure": False}, {}, "done"),
    ("wait_green_ready", "create_failed", {}, {}, "rollback"),
    ("preflight", "refused", {}, {}, "failed"),
]


@pytest.mark.parametrize(("state", "event", "facts", "options", "expected"), HAPPY_PATH + POLICY_ROWS)
def test_table_names_the_next_state(state, event, facts, options, expected):
    # GIVEN a run in `state` with these facts and options / WHEN `event` happens / THEN the table says where to go
    assert next_state(state, event, ctx(facts, **options)) == expected


@pytest.mark.parametrize("state", PRE_COMMIT_STATES)
def test_rollback_is_allowed_at_any_point_before_commit(state):
    assert next_state(state, "rollback", ctx()) == "rollback"


@pytest.mark.parametrize(
    ("state", "event"),
    [
        ("commit", "rollback"),  # too late: blue may be gone
        ("uncordon_blue", "rollback"),
        ("wait_green_deleted", "approve"),
        ("preflight", "approve"),
        ("drain_batch", "approve"),
        ("done", "abort"),
        ("failed", "resume"),
        ("aborted", "rollback"),
        ("validate", "soaked"),
    ],
)
def test_illegal_moves_raise_naming_state_and_event(state, event):
    with pytest.raises(TransitionNotAllowed) as caught:
        next_state(state, event, ctx())
    assert caught.value.state == state and caught.value.event == event
    assert repr(event) in str(caught.value) and repr(state) in str(caught.value)
    assert isinstance(caught.value, Conflict)  # HTTP maps it to 409


def test_an_event_whose_guards_all_fail_is_refused_with_the_guards_named():
    # GIVEN final_soak before any validation passed / WHEN the operator approves / THEN refused
    with pytest.raises(TransitionNotAllowed, match="validated"):
        next_state("final_soak", "approve", ctx({"validation": {"passed": False}}))


@pytest.mark.parametrize(("decision", "status", "allowed"), [
    ("pause", "running", True), ("pause", "paused", False), ("resume", "paused", True), ("resume", "running", False),
])
def test_pause_and_resume_keep_the_state_and_check_the_status(decision, status, allowed):
    for state in ("drain_batch", "await_decision", "commit"):
        if allowed:
            assert next_state(state, decision, ctx(status=status)) == state
        else:
            with pytest.raises(TransitionNotAllowed):
                next_state(state, decision, ctx(status=status))


@pytest.mark.parametrize("auto_rollback", [True, False])
@pytest.mark.parametrize("state", [s for s in STEP_STATES if s not in TERMINAL_STATES])
def test_a_permanent_error_has_a_row_in_every_working_state(state, auto_rollback):
    # GIVEN any state that does work, whatever the auto-rollback option / WHEN a step reports `error`
    target = next_state(state, "error", ctx(autoRollbackOnFailedValidation=auto_rollback))
    # THEN before commit (once something changed) the run rolls back; at preflight, at commit and in a rollback it fails
    expected = "rollback" if state in PRE_COMMIT_STATES and state != "preflight" else "failed"
    assert target == expected


BLUE_NODES = ["aks-blue-0", "aks-blue-1"]
CORDONED = {"cordonStarted": True, "blueCordonedByRun": BLUE_NODES}
GREEN_ASKED = {"greenPool": "blueg1312", "greenRequestedAt": "2026-01-15T09:00:00+00:00"}


@pytest.mark.parametrize(("failed_in", "facts", "left"), [
    ("preflight", {"greenPool": "blueg1312"}, []),
    ("drain_batch", {**GREEN_ASKED, **CORDONED, "rolledBack": True}, []),
    ("done", {**GREEN_ASKED, **CORDONED, "committed": True}, []),
    ("commit", {**GREEN_ASKED, **CORDONED}, ["blue pool blue: cordoned and drained"]),
    ("drain_batch", {**GREEN_ASKED, **CORDONED},
     ["blue nodes cordoned by this run: aks-blue-0, aks-blue-1", "green pool blueg1312, created by this run"]),
    ("uncordon_blue", {**GREEN_ASKED, **CORDONED},
     ["blue nodes cordoned by this run: aks-blue-0, aks-blue-1", "green pool blueg1312, created by this run"]),
    ("drain_green", {**GREEN_ASKED, **CORDONED}, ["green pool blueg1312, created by this run"]),
    ("wait_green_deleted", {**GREEN_ASKED, **CORDONED}, ["green pool blueg1312: its deletion was not confirmed"]),
    ("uncordon_blue", {"greenPool": "blueg1312", "greenOwned": True}, ["green pool blueg1312, created by this run"]),
    ("create_green", {"greenPool": "blueg1312"}, ["green pool blueg1312, if its creation went through"]),
    ("create_green", GREEN_ASKED, ["green pool blueg1312, created by this run"]),
    ("uncordon_blue", {"greenPool": "g", "cordonStarted": True, "greenOwned": True},
     ["blue nodes cordoned by this run: the nodes of pool blue", "green pool g, created by this run"]),
    # a large pool: five nodes named, the rest counted
    ("drain_batch", {"cordonStarted": True, **batch_facts([f"n{i:04d}" for i in range(1000)], "10%",
                                                          [f"n{i:04d}" for i in range(1000)])},
     ["blue nodes cordoned by this run: 1000 nodes of pool blue (n0000, n0001, n0002, n0003, n0004, ...)"]),
])
def test_cleanup_left_names_what_a_failed_run_left_and_what_to_do(failed_in, facts, left):
    items = cleanup_left(failed_in, facts, "blue")
    assert len(items) == len(left), items
    for text, item in zip(left, items, strict=True):
        assert text in item and ("delete" in item.lower() or "uncordon" in item.lower()), item


def test_table_is_well_formed():
    # every state and target is known, every guard exists, terminal states have no way out
    for row in TRANSITIONS:
        assert row.state in STATES and row.next_state in STATES, row
        assert row.guard is None or row.guard in GUARDS, row
        assert row.state not in TERMINAL_STATES
    for state in STATES:
        if state not in TERMINAL_STATES:
            assert any(t.state == state for t in TRANSITIONS), state
            assert next_state(state, "abort", ctx()) == "aborted"
    assert set(DECISIONS) <= {t.event for t in TRANSITIONS}


@given(
    facts=st.fixed_dictionaries({
        "batches": st.lists(st.lists(st.just("n"), min_size=1, max_size=1), max_size=3),
        "batchIndex": st.integers(0, 4),
        "validation": st.fixed_dictionaries({"passed": st.booleans()}),
        "commitRefused": st.sampled_from([None, "no"]),
        "rollbackAfterFailure": st.booleans(),
    }),
    status=st.sampled_from(["running", "paused", "awaiting-decision"]),
    approval=st.booleans(),
    on_timeout=st.sampled_from(["commit", "rollback"]),
    auto_rollback=st.booleans(),
    rollback_on_timeout=st.booleans(),
)
def test_for_any_run_exactly_one_row_applies_per_guarded_event(
    facts, status, approval, on_timeout, auto_rollback, rollback_on_timeout
):
    # Guards on rows sharing (state, event) are mutually exclusive and exhaustive: never two answers.
    context = ctx(facts, status, approval={"required": approval, "onTimeout": on_timeout},
                  autoRollbackOnFailedValidation=auto_rollback, rollbackOnDrainTimeout=rollback_on_timeout)
    keyed = itertools.groupby(sorted(TRANSITIONS, key=lambda t: (t.state, t.event)), key=lambda t: (t.state, t.event))
    for (state, event), rows in keyed:
        rows = list(rows)
        holding = [r for r in rows if r.guard is None or GUARDS[r.guard](context)]
        assert len(holding) <= 1, (state, event, holding)
        guards = {r.guard for r in rows}
        if len(rows) > 1 and None not in guards and event not in ("approve",):
            assert len(holding) == 1, (state, event)


# ---- batches --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "nodes", "expected"), [
    ("10%", 2, 1), ("10%", 20, 2), ("10%", 21, 3), ("50%", 3, 2), ("100%", 7, 7), ("1%", 1000, 10),
    ("2", 5, 2), ("9", 3, 9), ("1", 0, 1), ("33%", 0, 1),
])
def test_drain_batch_size_counts_or_rounds_percent_up(setting, nodes, expected):
    assert drain_batch_size(setting, nodes) == expected


def batches_of(facts: dict) -> list[list[str]]:
    return [batch_nodes(facts, i) for i in range(batch_count(facts))]


def test_batches_in_stable_name_order_covering_every_node_once():
    nodes = ["aks-np-3", "aks-np-1", "aks-np-5", "aks-np-2", "aks-np-4"]
    facts = batch_facts(nodes, "40%", nodes)
    assert batches_of(facts) == [["aks-np-1", "aks-np-2"], ["aks-np-3", "aks-np-4"], ["aks-np-5"]]
    assert batches_of(batch_facts(list(reversed(nodes)), "40%", nodes)) == batches_of(facts)
    assert batches_of(batch_facts([], "10%", [])) == [] and batch_nodes(facts, 3) == []


@pytest.mark.parametrize(
    ("facts", "cordoned"),
    [
        ({**batch_facts(["n2", "n1", "n3"], "1", ["n1", "n3"])}, ["n1", "n3"]),
        ({"blueNodes": ["n1"], "blueCordonedByRun": ["n1", "n9"]}, ["n1", "n9"]),  # recorded before: as it is
        ({"blueSchedulable": ["n2"]}, ["n2"]),  # failed before cordon_blue recorded anything
        ({}, []),
    ],
    ids=["derived", "recorded list", "preflight's", "none"],
)
def test_the_nodes_a_run_cordoned(facts, cordoned):
    assert blue_cordoned_by_run(facts) == cordoned


def test_batches_recorded_as_lists_by_an_earlier_run_are_read_as_they_are():
    facts = {"batches": [["a"], ["b", "c"]], "blueNodes": ["a", "b", "c"], "batchSize": 1}
    assert batches_of(facts) == [["a"], ["b", "c"]]


# ---- green pool ---------------------------------------------------------------------------------
# Names and ownership: test_pool_names.py; the clone of blue: test_pool_clone.py.


def test_quota_while_both_pools_exist():
    blue = AgentPool(name="blue", mode="System", count=3, orchestrator_version="1.30.4", vm_size="Standard_D8s_v5")
    assert quota_estimate(blue) == {"vmSize": "Standard_D8s_v5", "extraNodes": 3, "extraVcpus": 24,
                                    "peakNodes": 6, "peakVcpus": 48}


# ---- options ----------------------------------------------------------------------------------------


def test_defaults_match_aks_blue_green_preview():
    options = BlueGreenOptions.parse({})
    assert (options.drain_batch_size, options.batch_soak_minutes, options.final_soak_minutes,
            options.drain_timeout_minutes) == ("10%", 15.0, 60.0, 30.0)
    assert options.auto_rollback_on_failed_validation and not options.approval.required
    assert BlueGreenOptions.parse(options.for_storage()) == options  # stored form reads back the same


def test_drain_options_map_to_the_drain_engine():
    drain = BlueGreenOptions.parse({"drain": {"force": True, "gracePeriodSeconds": 5, "podSelector": "app=web"}})
    engine = drain.drain_options()
    assert (engine.ignore_daemonsets, engine.delete_emptydir_data, engine.force, engine.grace_seconds,
            engine.pod_selector) == (True, True, True, 5, "app=web")


@pytest.mark.parametrize(("raw", "field", "problem"), [
    ({"drainBatchSize": "0"}, "options.drainBatchSize", "at least 1"),
    ({"drainBatchSize": "150%"}, "options.drainBatchSize", "between 1% and 100%"),
    ({"drainBatchSize": "ten"}, "options.drainBatchSize", "integer"),
    ({"drainBatchSize": True}, "options.drainBatchSize", "integer"),
    ({"batchSoakMinutes": -1}, "options.batchSoakMinutes", "greater than or equal"),
    ({"finalSoakMinutes": "long"}, "options.finalSoakMinutes", "number"),
    ({"drainTimeoutMinutes": 0}, "options.drainTimeoutMinutes", "greater than"),
    ({"drain": {"podSelector": "a in b"}}, "options.drain.podSelector", "must be followed by '(values)'"),
    ({"drain": {"gracePeriodSeconds": -2}}, "options.drain.gracePeriodSeconds", "greater than"),
    ({"validation": {"restartThreshold": -1}}, "options.validation.restartThreshold", "greater than"),
    ({"validation": {"httpProbes": [{"url": "ftp://x"}]}}, "options.validation.httpProbes.0.url", "pattern"),
    ({"validation": {"httpProbes": [{"url": "http://x", "expectedStatus": 99}]}},
     "options.validation.httpProbes.0.expectedStatus", "greater than"),
    ({"validation": {"customChecks": ["Not OK"]}}, "options.validation.customChecks", "not a check name"),
    ({"approval": {"onTimeout": "later"}}, "options.approval.onTimeout", "'commit' or 'rollback'"),
    ({"approval": {"timeoutMinutes": 0}}, "options.approval.timeoutMinutes", "greater than"),
    ({"unknown": 1}, "options.unknown", "unknown field"),
    ({"approval": {"required": True, "extra": 1}}, "options.approval.extra", "unknown field"),
])
def test_invalid_options_name_the_field(raw, field, problem):
    with pytest.raises(InvalidInput) as caught:
        BlueGreenOptions.parse(raw)
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_options_must_be_an_object():
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        BlueGreenOptions.parse(["10%"])
