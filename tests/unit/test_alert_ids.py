"""Alert CloudEvents ids: the same alert published again carries the same id; another does not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.fakes import FakePlatform
from upgrade.domain.alerts import Alert
from upgrade.domain.runs import RunRecord
from upgrade.domain.steps import Done, StepMessage
from upgrade.services import step_runner
from upgrade.services.registry import StepSpec

CLUSTER = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks"
BASE = Alert(kind="run.failed", severity="error", cluster=CLUSTER, summary="s", run_id="r1", step="bluegreen.commit",
             attempt=1)


@pytest.mark.parametrize(("change", "same"), [
    ({"summary": "worded differently", "details": {"x": 1}}, True),  # a run's alert: run, step, attempt, kind
    ({"run_id": "r2"}, False),
    ({"step": "bluegreen.validate"}, False),
    ({"attempt": 2}, False),
    ({"kind": "run.cleanup-failed"}, False),
    ({"node": "n2"}, False),  # one step may alert about several nodes
])
def test_the_id_is_derived_from_run_step_attempt_and_kind(change, same):
    assert (replace(BASE, **change).event_id == BASE.event_id) is same


def test_outside_a_run_the_dedup_key_or_summary_tells_alerts_apart():
    event = Alert(kind="version.available", severity="info", cluster=CLUSTER, summary="1.31", dedup_key="k1")
    assert replace(event, summary="other words").event_id == event.event_id
    assert replace(event, dedup_key="k2").event_id != event.event_id
    bare = Alert(kind="step.poisoned", severity="error", cluster="(unknown)", summary="body A")
    assert replace(bare, summary="body B").event_id != bare.event_id


def test_a_step_that_crashes_after_alerting_alerts_again_under_the_same_id(monkeypatch):
    # GIVEN a step that publishes an alert, and crashes after it on its first delivery
    platform = FakePlatform(allowed_clusters=frozenset({CLUSTER}))
    crashes = [RuntimeError("host died after the alert")]

    def alerting(ctx):
        ctx.platform.alerts.publish(Alert(kind="run.warning", severity="warning", cluster=CLUSTER, summary="w"))
        if crashes:
            raise crashes.pop()
        return Done(summary="ok")

    monkeypatch.setattr(step_runner, "step_registry", lambda: {"work": StepSpec("work", alerting)})
    now = platform.clock.now()
    platform.runs.create(RunRecord(run_id="run-1", kind="ping", cluster=CLUSTER, pool="p", state="work",
                                   status="running", created_at=now, updated_at=now))
    message = StepMessage(v=1, run_id="run-1", step="work", cluster=CLUSTER, pool="p", attempt=1)
    # WHEN the message is delivered, crashes, and the host delivers it again
    with pytest.raises(RuntimeError):
        step_runner.run_step_message(message.to_json(), platform, message_id="m1")
    step_runner.run_step_message(message.to_json(), platform, message_id="m1")
    # THEN both copies name the run, step and attempt, and carry one id
    first, second = platform.alerts.published
    assert (first.run_id, first.step, first.attempt) == ("run-1", "work", 1)
    assert first.event_id == second.event_id
