"""Nothing stranded: a run whose live message is lost is re-sent by the reconciler, or marked stuck
with an alert naming it; operators pause, resume and abort any run kind."""

from __future__ import annotations

import json

import pytest

from tests.fakes import FakePlatform
from tests.unit.fake_cluster import CLUSTER, POOL, FakeCluster, deliver_all, scenario2_after_upgrade
from upgrade.domain.policy import parse_policy
from upgrade.domain.runs import RunRecord
from upgrade.domain.steps import StepMessage
from upgrade.errors import Conflict, InvalidInput, PermanentError
from upgrade.services import rolling
from upgrade.services.decisions import decide
from upgrade.services.outbox import outbox_for
from upgrade.services.reconciler import MAX_RESENDS, reconcile_runs
from upgrade.services.remediation import EVICT, request_remediation
from upgrade.services.step_runner import run_step_message

pytestmark = pytest.mark.usefixtures("production_steps")

MARGIN = 60.0
NODE1 = "aks-nodepool1-1"


def rolling_cluster() -> FakeCluster:
    fake = FakeCluster()
    fake.add_pool(POOL, 2, "1.30.0")
    fake.add_node("aks-nodepool1-1", POOL, "1.30.0")
    fake.add_node("aks-nodepool1-2", POOL, "1.30.0")
    return fake


def platform_for(fake: FakeCluster, **defaults) -> FakePlatform:
    return FakePlatform(kubes={CLUSTER.arm_id: fake}, aks_by_subscription={CLUSTER.subscription_id: fake},
                        allowed_clusters=frozenset({CLUSTER.arm_id}),
                        policy=parse_policy(json.dumps({"defaults": {"pollSeconds": 1, **defaults}})))


def start(platform: FakePlatform) -> RunRecord:
    return rolling.start_rolling_run(platform, cluster=CLUSTER, pool=POOL, target_version="1.31.7", actor="alice")


def deliver(platform: FakePlatform, count: int) -> None:
    for sent in platform.queue.take()[:count]:
        platform.clock.advance(sent.delay_seconds)
        run_step_message(sent.message.to_json(), platform, message_id=f"m-{sent.message.step}-{sent.message.attempt}")


def test_a_start_writes_its_first_message_in_the_runs_outbox():
    platform = platform_for(rolling_cluster())
    run = start(platform)
    stored = platform.runs.get(run.run_id)
    assert stored.outbox["from"] == ["start", "rolling"]
    assert StepMessage.model_validate_json(stored.outbox["message"]).step == rolling.APPLY_SETTINGS
    assert [s.message.step for s in platform.queue.sent] == [rolling.APPLY_SETTINGS]


@pytest.mark.parametrize("delivered_before_loss", [0, 1, 2], ids=["start", "after-one-step", "after-two-steps"])
def test_a_cleared_queue_is_recovered_by_the_reconciler_and_the_run_ends_done(delivered_before_loss):
    # GIVEN a rolling run whose queue is cleared at some point (the live message deleted by mistake)
    fake = rolling_cluster()
    platform = platform_for(fake)
    run = start(platform)
    for _ in range(delivered_before_loss):
        deliver(platform, 1)
    platform.queue.take()
    # WHEN the run is not yet overdue THEN the reconciler leaves it alone
    assert reconcile_runs(platform, margin_seconds=MARGIN) == []
    # WHEN its due time plus the margin passes
    platform.clock.advance(MARGIN + 5)
    [note] = reconcile_runs(platform, margin_seconds=MARGIN)
    # THEN the live step is re-sent once, and the run finishes as if nothing was lost
    assert "re-sent" in note
    assert len(platform.queue.sent) == 1
    deliver_all(platform)
    final = platform.runs.get(run.run_id)
    assert final.status == "succeeded", final.reason
    assert fake.pools[POOL].orchestrator_version == "1.31.7"
    assert "resent" in [h.outcome for h in platform.runs.history(run.run_id)]


def test_a_run_whose_message_keeps_getting_lost_is_marked_stuck_with_an_alert_and_can_be_resumed():
    # GIVEN a run whose every re-sent message is lost too
    platform = platform_for(rolling_cluster())
    run = start(platform)
    for _ in range(MAX_RESENDS):
        platform.queue.take()
        platform.clock.advance(MARGIN + 5)
        [note] = reconcile_runs(platform, margin_seconds=MARGIN)
        assert "re-sent" in note
    platform.queue.take()
    platform.clock.advance(MARGIN + 5)

    # WHEN the reconciler finds it overdue once more
    [note] = reconcile_runs(platform, margin_seconds=MARGIN)

    # THEN it is stuck (keeping its pool), a critical alert names it, and it is no longer due
    stuck = platform.runs.get(run.run_id)
    assert "marked stuck" in note
    assert (stuck.status, stuck.active) == ("stuck", True)
    [alert] = [a for a in platform.alerts.published if a.kind == "run.stuck"]
    assert (alert.run_id, alert.severity) == (run.run_id, "critical")
    assert run.run_id in alert.summary
    platform.clock.advance(3600)
    assert reconcile_runs(platform, margin_seconds=MARGIN) == []
    # a late copy of the old message is dropped while stuck
    late = StepMessage.model_validate_json(stuck.outbox["message"])
    assert run_step_message(late.to_json(), platform, message_id="late").result == "stale"

    # WHEN the operator resumes it THEN the live step runs again, as a new attempt, to the end
    resumed = decide(platform, run.run_id, "resume", "bob")
    assert (resumed.status, resumed.attempt) == ("running", stuck.attempt + 1)
    deliver_all(platform)
    assert platform.runs.get(run.run_id).status == "succeeded"


def test_an_active_run_with_no_recorded_message_is_marked_stuck():
    # GIVEN a run written by an older version: active, nothing in its outbox
    platform = platform_for(rolling_cluster())
    now = platform.clock.now()
    platform.runs.create(RunRecord(run_id="old-1", kind="rolling", cluster=CLUSTER.arm_id, pool=POOL,
                                   state=rolling.WAIT_POOL, status="running", created_at=now, updated_at=now))
    platform.clock.advance(MARGIN + 1)
    [note] = reconcile_runs(platform, margin_seconds=MARGIN)
    assert "no message" in note
    assert platform.runs.get("old-1").status == "stuck"
    assert [a.run_id for a in platform.alerts.published if a.kind == "run.stuck"] == ["old-1"]


def test_a_message_the_queue_refuses_for_good_marks_the_run_stuck_and_the_sweep_goes_on(monkeypatch):
    # GIVEN two overdue runs whose messages were lost, and a queue that refuses the first one for good
    platform = platform_for(rolling_cluster())
    now = platform.clock.now()
    for run_id, pool in (("big-1", POOL), ("ok-1", "nodepool2")):
        message = StepMessage(v=1, run_id=run_id, step=rolling.WAIT_POOL, cluster=CLUSTER.arm_id, pool=pool)
        platform.runs.create(RunRecord(run_id=run_id, kind="rolling", cluster=CLUSTER.arm_id, pool=pool,
                                       state=rolling.WAIT_POOL, status="running", created_at=now, updated_at=now,
                                       outbox=outbox_for(message, ["start", "rolling"])))
    send = platform.queue.send

    def refuse_big(message: StepMessage, *, delay_seconds: float = 0.0) -> None:
        if message.run_id == "big-1":
            raise PermanentError("send wait_pool of run big-1: storage error 413: request body too large")
        send(message, delay_seconds=delay_seconds)

    monkeypatch.setattr(platform.queue, "send", refuse_big)
    platform.clock.advance(MARGIN + 1)
    # WHEN the reconciler runs
    notes = reconcile_runs(platform, margin_seconds=MARGIN)
    # THEN the refused run is stuck with an alert naming it, and the other run's step was re-sent
    assert len(notes) == 2
    assert platform.runs.get("big-1").status == "stuck"
    assert "413" in platform.runs.get("big-1").reason
    assert [a.run_id for a in platform.alerts.published if a.kind == "run.stuck"] == ["big-1"]
    assert [s.message.run_id for s in platform.queue.sent] == ["ok-1"]


def test_a_run_that_cannot_even_be_marked_stuck_does_not_stop_the_sweep(monkeypatch):
    # GIVEN two overdue runs with nothing in their outbox, the first of which the store refuses to write
    platform = platform_for(rolling_cluster())
    now = platform.clock.now()
    for run_id, pool in (("bad-1", POOL), ("old-1", "nodepool2")):
        platform.runs.create(RunRecord(run_id=run_id, kind="rolling", cluster=CLUSTER.arm_id, pool=pool,
                                       state=rolling.WAIT_POOL, status="running", created_at=now, updated_at=now))
    update = platform.runs.update

    def refuse_bad(run: RunRecord) -> RunRecord:
        if run.run_id == "bad-1":
            raise PermanentError("run bad-1: RecordTooLarge")
        return update(run)

    monkeypatch.setattr(platform.runs, "update", refuse_bad)
    platform.clock.advance(MARGIN + 1)
    # WHEN the reconciler runs, THEN nothing escapes: the other run is marked stuck, the refusal noted
    notes = reconcile_runs(platform, margin_seconds=MARGIN)
    assert any("bad-1" in n and "could not be recovered" in n for n in notes)
    assert platform.runs.get("old-1").status == "stuck"


def test_an_expired_claim_is_dropped_and_the_step_re_sent():
    # GIVEN a worker that claimed the live step and died
    platform = platform_for(rolling_cluster())
    run = start(platform)
    [sent] = platform.queue.take()
    claimed = platform.runs.get(run.run_id)
    until = platform.clock.now().isoformat()
    platform.runs.update(claimed.evolve(now=platform.clock.now(), claim={"message_id": "dead", "until": until}))
    # WHEN the claim is long expired
    platform.clock.advance(MARGIN + 1)
    reconcile_runs(platform, margin_seconds=MARGIN)
    # THEN the claim is gone and the step was sent again
    assert platform.runs.get(run.run_id).claim is None
    assert [s.message.step for s in platform.queue.sent] == [sent.message.step]


def test_a_paused_run_is_never_due_and_pause_resume_abort_work_on_a_rolling_run():
    # GIVEN a running rolling run
    fake = rolling_cluster()
    platform = platform_for(fake)
    run = start(platform)
    # WHEN paused THEN its live message is dropped, and the reconciler leaves it alone however long
    paused = decide(platform, run.run_id, "pause", "carol", "freeze")
    assert paused.status == "paused"
    deliver_all(platform)
    assert platform.runs.get(run.run_id).state == rolling.APPLY_SETTINGS
    platform.clock.advance(86400)
    assert reconcile_runs(platform, margin_seconds=MARGIN) == []
    # decisions that do not apply now list only what does
    with pytest.raises(Conflict, match=r"pause does not apply now; you may: resume, abort$"):
        decide(platform, run.run_id, "pause", "carol")
    with pytest.raises(InvalidInput, match="not a decision on a rolling run"):
        decide(platform, run.run_id, "approve", "carol")
    # WHEN resumed, then aborted mid-way
    decide(platform, run.run_id, "resume", "carol")
    deliver(platform, 1)
    aborted = decide(platform, run.run_id, "abort", "carol", "wrong version")
    # THEN the run ends aborted, releases the pool, its queued step is stale, and an alert says so
    assert (aborted.status, aborted.active) == ("aborted", False)
    assert platform.runs.find_active(CLUSTER.arm_id, POOL) is None
    reports = [run_step_message(s.message.to_json(), platform, message_id="x") for s in platform.queue.take()]
    assert {r.result for r in reports} <= {"stale"}
    assert [a.kind for a in platform.alerts.published] == ["run.aborted"]
    with pytest.raises(Conflict, match="no decision applies any more"):
        decide(platform, run.run_id, "resume", "carol")


def test_aborting_a_remediation_while_its_pdb_is_relaxed_restores_the_pdb():
    # GIVEN a relax-pdb remediation that relaxed the PDB and is about to evict
    fake = scenario2_after_upgrade()
    platform = platform_for(fake, remediation={"relax-pdb": "approval-required"})
    original = dict(fake.pdb_specs["default/a-pdb"])
    run = request_remediation(platform, CLUSTER, NODE1, "relax-pdb", actor="alice")
    for _ in range(10):
        if platform.runs.get(run.run_id).state == EVICT:
            break
        deliver(platform, 1)
    assert platform.runs.get(run.run_id).state == EVICT
    assert fake.pdb_specs["default/a-pdb"] != original
    # WHEN the operator aborts it
    decide(platform, run.run_id, "abort", "dave")
    # THEN the PDB is back as it was, and the alert says what the abort undid
    assert fake.pdb_specs["default/a-pdb"] == original
    [alert] = [a for a in platform.alerts.published if a.kind == "run.aborted"]
    assert "restored" in alert.summary.lower()


def test_a_rollout_is_decided_on_its_own_route():
    platform = platform_for(rolling_cluster())
    now = platform.clock.now()
    platform.runs.create(RunRecord(run_id="ro-1", kind="rollout", cluster=CLUSTER.arm_id, pool=None, state="rollout.tick",
                                   status="running", created_at=now, updated_at=now))
    with pytest.raises(InvalidInput, match="POST /api/rollouts/ro-1/"):
        decide(platform, "ro-1", "pause", "op")
