"""The step executor over in-memory fakes: at-least-once delivery, crashes, stale copies, claims."""

from __future__ import annotations

import json

import pytest

from tests.fakes import FakePlatform, SimulatedCrash
from upgrade.domain.runs import RunRecord
from upgrade.domain.steps import Done, Failed, Next, Outcome, Retry, StepMessage
from upgrade.errors import TemporaryError
from upgrade.services import run_failures, step_runner
from upgrade.services.registry import StepSpec
from upgrade.services.step_runner import StepContext, run_step_message

CLUSTER = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-prod"


class RecordingStep:
    """A step whose side effects are counted; ``outcome`` is what it returns."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.calls: list[StepContext] = []
        self.during: list = []  # callables run inside the handler (a concurrent delivery)

    def __call__(self, ctx: StepContext) -> Outcome:
        self.calls.append(ctx)
        for action in self.during:
            action()
        return self.outcome


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform(allowed_clusters=frozenset({CLUSTER}))


def install(monkeypatch: pytest.MonkeyPatch, **handlers: RecordingStep) -> None:
    registry = {name: StepSpec(name, handler) for name, handler in handlers.items()}
    monkeypatch.setattr(step_runner, "step_registry", lambda: registry)
    monkeypatch.setattr(run_failures, "step_registry", lambda: registry)


def start_run(platform: FakePlatform, step: str = "work", run_id: str = "run-1", pool: str = "user1") -> StepMessage:
    now = platform.clock.now()
    platform.runs.create(
        RunRecord(run_id=run_id, kind="ping", cluster=CLUSTER, pool=pool, state=step, status="running",
                  created_at=now, updated_at=now)
    )
    return StepMessage(v=1, run_id=run_id, step=step, cluster=CLUSTER, pool=pool, attempt=1)


@pytest.mark.parametrize(
    ("outcome", "status", "state", "attempt", "sent"),
    [
        (Next("after", delay_seconds=30, facts={"pools": 1}), "running", "after", 1, [("after", 1, 30.0)]),
        (Retry(delay_seconds=10, reason="PDB blocks eviction"), "running", "work", 2, [("work", 2, 10.0)]),
        (Done(summary="all nodes on 1.31"), "succeeded", "work", 1, []),
        (Failed(reason="drain timed out"), "failed", "work", 1, []),
    ],
    ids=["next", "retry", "done", "failed"],
)
def test_a_message_is_executed_and_its_outcome_moves_the_run(
    monkeypatch, platform, outcome, status, state, attempt, sent
):
    # GIVEN a running run whose live step is "work"
    work = RecordingStep(outcome)
    install(monkeypatch, work=work, after=RecordingStep(Done()))
    message = start_run(platform)

    # WHEN the message is delivered
    report = run_step_message(message.to_json(), platform, message_id="m1")

    # THEN the handler ran once, the run moved in one write, the follow-up was sent with its delay
    assert report.result == "executed"
    assert len(work.calls) == 1
    run = platform.runs.get("run-1")
    assert (run.status, run.state, run.attempt, run.claim) == (status, state, attempt, None)
    assert [(s.message.step, s.message.attempt, s.delay_seconds) for s in platform.queue.take()] == sent
    assert [h.outcome for h in platform.runs.history("run-1")] == [type(outcome).__name__.lower()]


def test_facts_of_the_outcome_are_merged_into_the_run(monkeypatch, platform):
    # GIVEN a run that already learnt a fact
    install(monkeypatch, work=RecordingStep(Next("after", facts={"green_pool": "green131"})))
    message = start_run(platform)
    run = platform.runs.get("run-1")
    platform.runs.update(run.evolve(now=platform.clock.now(), facts={"blue_pool": "user1"}))

    # WHEN the step returns new facts
    run_step_message(message.to_json(), platform, message_id="m1")

    # THEN both are kept
    assert platform.runs.get("run-1").facts == {"blue_pool": "user1", "green_pool": "green131"}


@pytest.mark.parametrize(
    ("outcome", "second_result", "sends_after_duplicate"),
    [
        (Done(), "stale", 0),  # the run is final: the copy is dropped
        (Next("after"), "resent", 1),  # the transition's message is re-sent; its own copy is then stale
    ],
    ids=["after-done", "after-next"],
)
def test_a_duplicate_delivery_does_not_execute_the_step_again(
    monkeypatch, platform, outcome, second_result, sends_after_duplicate
):
    # GIVEN a step that already ran to completion
    work = RecordingStep(outcome)
    install(monkeypatch, work=work, after=RecordingStep(Done()))
    message = start_run(platform)
    run_step_message(message.to_json(), platform, message_id="m1")
    platform.queue.take()

    # WHEN the queue delivers the same message again
    report = run_step_message(message.to_json(), platform, message_id="m1", dequeue_count=2)

    # THEN the handler is not called again
    assert report.result == second_result
    assert len(work.calls) == 1
    assert len(platform.queue.take()) == sends_after_duplicate


def test_a_resent_follow_up_that_arrives_twice_runs_once(monkeypatch, platform):
    # GIVEN a step whose follow-up was sent, then re-sent by a duplicate delivery
    after = RecordingStep(Done())
    install(monkeypatch, work=RecordingStep(Next("after")), after=after)
    message = start_run(platform)
    run_step_message(message.to_json(), platform, message_id="m1")
    run_step_message(message.to_json(), platform, message_id="m1", dequeue_count=2)
    first, second = platform.queue.take()

    # WHEN both copies of the follow-up are delivered
    results = [
        run_step_message(first.message.to_json(), platform, message_id="m2").result,
        run_step_message(second.message.to_json(), platform, message_id="m3").result,
    ]

    # THEN the follow-up step executed exactly once
    assert results == ["executed", "stale"]
    assert len(after.calls) == 1


def test_a_crash_between_the_side_effect_and_the_state_write_reruns_the_idempotent_step(monkeypatch, platform):
    # GIVEN a worker that dies after the handler acted but before the transition was written
    work = RecordingStep(Next("after"))
    install(monkeypatch, work=work, after=RecordingStep(Done()))
    message = start_run(platform)

    def crash_on_transition(run: RunRecord) -> None:
        if run.claim is None:  # the transition write clears the claim; the claim write sets it
            platform.runs.before_update = None
            raise SimulatedCrash("worker died before writing the transition")

    platform.runs.before_update = crash_on_transition
    with pytest.raises(SimulatedCrash):
        run_step_message(message.to_json(), platform, message_id="m1")
    assert platform.runs.get("run-1").state == "work"

    # WHEN the host redelivers the message (same id, its own claim)
    report = run_step_message(message.to_json(), platform, message_id="m1", dequeue_count=2)

    # THEN the step runs again (handlers check before acting) and the run moves on once
    assert report.result == "executed"
    assert len(work.calls) == 2
    assert platform.runs.get("run-1").state == "after"
    assert [s.message.step for s in platform.queue.take()] == ["after"]


def test_a_crash_between_the_state_write_and_the_send_resends_from_the_outbox(monkeypatch, platform):
    # GIVEN a worker that wrote the transition but died before sending the next message
    work = RecordingStep(Next("after", delay_seconds=20))
    install(monkeypatch, work=work, after=RecordingStep(Done()))
    message = start_run(platform)
    platform.queue.fail_sends = 1
    with pytest.raises(SimulatedCrash):
        run_step_message(message.to_json(), platform, message_id="m1")
    assert platform.queue.take() == []

    # WHEN the host redelivers the message
    report = run_step_message(message.to_json(), platform, message_id="m1", dequeue_count=2)

    # THEN the outbox message is sent, with its delay, and the step is not executed again
    assert report.result == "resent"
    assert len(work.calls) == 1
    assert [(s.message.step, s.delay_seconds) for s in platform.queue.take()] == [("after", 20.0)]


@pytest.mark.parametrize(
    ("step", "attempt"),
    [("work", 1), ("other", 1), ("after", 2)],
    ids=["older-attempt", "other-step", "newer-attempt"],
)
def test_a_stale_message_is_dropped(monkeypatch, platform, step, attempt):
    # GIVEN a run whose live step is after#1 (an operator decision or a retry moved it)
    work = RecordingStep(Done())
    install(monkeypatch, work=work, other=work, after=work)
    start_run(platform)
    run = platform.runs.get("run-1")
    platform.runs.update(run.evolve(now=platform.clock.now(), state="after", attempt=1))
    writes = platform.runs.writes

    # WHEN a message for another (step, attempt) arrives
    stale = StepMessage(v=1, run_id="run-1", step=step, cluster=CLUSTER, pool="user1", attempt=attempt)
    report = run_step_message(stale.to_json(), platform, message_id="m9")

    # THEN it is dropped without running or writing anything
    assert report.result == "stale"
    assert work.calls == []
    assert platform.runs.writes == writes
    assert platform.queue.take() == []


def test_a_claim_defers_a_concurrent_copy(monkeypatch, platform):
    # GIVEN a worker executing the live step
    work = RecordingStep(Done())
    install(monkeypatch, work=work)
    message = start_run(platform)
    concurrent: list = []
    work.during.append(
        lambda: concurrent.append(run_step_message(message.to_json(), platform, message_id="m2"))
    )

    # WHEN a second copy (another message id) arrives while the first runs
    first = run_step_message(message.to_json(), platform, message_id="m1")

    # THEN the copy is put back with a delay instead of executing
    assert [r.result for r in concurrent] == ["deferred"]
    assert first.result == "executed"
    assert len(work.calls) == 1
    deferred = platform.queue.take()
    assert [(s.message.step, s.message.attempt) for s in deferred] == [("work", 1)]
    assert deferred[0].delay_seconds > 0
    # AND once delivered again it is stale, because the first copy finished the run
    assert run_step_message(deferred[0].message.to_json(), platform, message_id="m2").result == "stale"


def test_an_expired_claim_lets_another_copy_take_over(monkeypatch, platform):
    # GIVEN a claim left by a worker that died mid-step
    work = RecordingStep(Done())
    install(monkeypatch, work=work)
    message = start_run(platform)
    run = platform.runs.get("run-1")
    platform.runs.update(
        run.evolve(now=platform.clock.now(), claim={"message_id": "dead", "until": platform.clock.now().isoformat()})
    )
    platform.clock.advance(1)

    # WHEN another copy arrives after the lease ran out
    report = run_step_message(message.to_json(), platform, message_id="m2")

    # THEN it executes
    assert report.result == "executed"
    assert len(work.calls) == 1


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"v": 1, "run_id": "run-1", "step": "work", "cluster": CLUSTER, "attempt": "first"}),
        json.dumps({"v": 2, "run_id": "run-1", "step": "work", "cluster": CLUSTER}),
        json.dumps({"v": 1, "run_id": "run-1", "step": "no-such-step", "cluster": CLUSTER}),
        json.dumps({"v": 1, "run_id": "run-1", "step": "work", "cluster": CLUSTER, "color": "blue"}),
    ],
    ids=["not-json", "wrong-type", "unknown-version", "unknown-step", "unknown-field"],
)
def test_an_invalid_message_goes_to_poison_without_touching_state(monkeypatch, platform, body, caplog):
    # GIVEN a running run
    work = RecordingStep(Done())
    install(monkeypatch, work=work)
    start_run(platform)
    writes = platform.runs.writes

    # WHEN an invalid message arrives
    report = run_step_message(body, platform, message_id="m1")

    # THEN it is moved to poison as is, with a log line naming the problem, and nothing else happens
    assert report.result == "poisoned"
    assert platform.queue.poison == [body]
    assert platform.runs.writes == writes
    assert platform.runs.get("run-1").status == "running"
    assert work.calls == []
    assert "moved to poison" in caplog.text


def test_a_cluster_outside_the_allow_list_fails_the_run_without_running_the_step(monkeypatch):
    # GIVEN a platform that allows another cluster only
    platform = FakePlatform(allowed_clusters=frozenset({CLUSTER.replace("aks-prod", "aks-test")}))
    work = RecordingStep(Done())
    install(monkeypatch, work=work)
    message = start_run(platform)

    # WHEN a step for the refused cluster arrives
    run_step_message(message.to_json(), platform, message_id="m1")

    # THEN the step does not run and the run is failed with the reason, and alerted on
    assert work.calls == []
    run = platform.runs.get("run-1")
    assert run.status == "failed"
    assert "ALLOWED_CLUSTERS" in run.reason
    assert [(a.kind, a.run_id) for a in platform.alerts.published] == [("run.failed", "run-1")]
    # AND the refusal is in the run's history (audited like any failure), with no cleanup
    assert [(h.step, h.outcome) for h in platform.runs.history("run-1")][-1:] == [("work", "refused")]


def test_a_throttled_read_of_a_refused_clusters_run_is_put_back_not_left_to_the_host(monkeypatch):
    # GIVEN a step for a cluster outside the allow-list, and a run store answering 503
    platform = FakePlatform(allowed_clusters=frozenset({CLUSTER.replace("aks-prod", "aks-test")}))
    install(monkeypatch, work=RecordingStep(Done()))
    message = start_run(platform)
    monkeypatch.setattr(platform.runs, "get", lambda run_id: (_ for _ in ()).throw(throttled("read")))
    # WHEN it is delivered, THEN nothing escapes to the host: the delivery is put back, counted
    report = run_step_message(message.to_json(), platform, message_id="m1")
    assert report.result == "storage-retry"
    [sent] = platform.queue.take()
    assert (sent.message.step, sent.message.storage_retry) == ("work", 1)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (step_runner.TemporaryError("ARM busy", delay_seconds=7), ("running", 2)),
        (step_runner.PermanentError("pool is gone"), ("failed", 1)),
    ],
    ids=["temporary-retries", "permanent-fails"],
)
def test_expected_errors_become_outcomes(monkeypatch, platform, error, expected):
    # GIVEN a step that raises one of the project's errors
    def raising(ctx: StepContext) -> Outcome:
        raise error

    monkeypatch.setattr(step_runner, "step_registry", lambda: {"work": StepSpec("work", raising)})
    message = start_run(platform)

    # WHEN it is executed
    report = run_step_message(message.to_json(), platform, message_id="m1")

    # THEN the executor maps it instead of letting it escape
    assert report.result == "executed"
    run = platform.runs.get("run-1")
    assert (run.status, run.attempt) == expected


def test_an_unexpected_exception_is_left_to_the_host(monkeypatch, platform):
    # GIVEN a step with a bug
    def buggy(ctx: StepContext) -> Outcome:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(step_runner, "step_registry", lambda: {"work": StepSpec("work", buggy)})
    message = start_run(platform)

    # WHEN it runs, THEN the exception escapes (the host retries, then poisons it)
    with pytest.raises(ZeroDivisionError):
        run_step_message(message.to_json(), platform, message_id="m1")
    assert platform.runs.get("run-1").status == "running"


def test_the_poison_handler_fails_the_run_records_it_and_alerts(platform):
    # GIVEN a running run whose step kept crashing
    message = start_run(platform, step="ping")

    # WHEN the poison queue delivers it
    run = run_failures.record_poisoned_step(message.to_json(), platform)

    # THEN the run is failed, its history says poison, and an alert names the run
    assert run is not None and run.status == "failed"
    assert [h.outcome for h in platform.runs.history("run-1")] == ["poison"]
    assert [(a.kind, a.run_id) for a in platform.alerts.published] == [("run.failed", "run-1")]
    # AND the pool is free for a new run
    assert platform.runs.find_active(CLUSTER, "user1") is None


@pytest.mark.parametrize("status", ["running", "aborted"], ids=["moved-on", "ended-otherwise"])
def test_a_stale_copy_in_the_poison_queue_leaves_the_run_where_it_is(monkeypatch, platform, status):
    # GIVEN a run that has moved past a step (work#2 is live), or that an operator aborted, while a
    # copy of work#1 kept crashing; and a cleanup hook
    cleanup = PoisonCleanup()
    monkeypatch.setattr(run_failures, "step_registry",
                        lambda: {"work": StepSpec("work", RecordingStep(Done("x")), on_poison=cleanup)})
    message = start_run(platform)
    run = platform.runs.get("run-1")
    platform.runs.update(run.evolve(now=platform.clock.now(), status=status, attempt=2))

    # WHEN that copy of work#1 reaches the poison queue
    kept = run_failures.record_poisoned_step(message.to_json(), platform)

    # THEN the run is left as it was: not failed, no cleanup, no alert; its history says what was seen
    assert kept is not None and platform.runs.get("run-1").status == status
    assert cleanup.calls == []
    assert platform.alerts.published == []
    assert [h.outcome for h in platform.runs.history("run-1")] == ["poison-stale"]


class PoisonCleanup:
    """A workflow's poison hook: records what it was given; ``error`` makes it fail."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[RunRecord, object]] = []

    def __call__(self, run: RunRecord, platform) -> str:
        self.calls.append((run, platform))
        if self.error is not None:
            raise self.error
        return "undid the half-done change"


def test_the_poison_handler_runs_the_workflows_cleanup_with_the_failed_run(monkeypatch, platform):
    # GIVEN a step whose workflow has a cleanup for poisoned steps
    cleanup = PoisonCleanup()
    monkeypatch.setattr(run_failures, "step_registry",
                        lambda: {"work": StepSpec("work", RecordingStep(Done("x")), on_poison=cleanup)})
    message = start_run(platform)
    # WHEN the poison queue delivers its message
    run_failures.record_poisoned_step(message.to_json(), platform)
    # THEN the cleanup ran once, on the run already recorded as failed, and its result is in the history
    [(run, given)] = cleanup.calls
    assert (run.run_id, run.status) == ("run-1", "failed") and given is platform
    assert [(h.outcome, h.reason) for h in platform.runs.history("run-1")][-1] == (
        "cleanup", "undid the half-done change")
    [alert] = platform.alerts.published
    assert (alert.kind, alert.details["cleanup"]) == ("run.failed", "undid the half-done change")


def test_the_poison_cleanup_never_acts_on_a_cluster_the_allow_list_no_longer_names(monkeypatch, platform):
    # GIVEN a run on a cluster that was taken out of ALLOWED_CLUSTERS after it started
    cleanup = PoisonCleanup()
    monkeypatch.setattr(run_failures, "step_registry",
                        lambda: {"work": StepSpec("work", RecordingStep(Done("x")), on_poison=cleanup)})
    message = start_run(platform)
    platform.allowed_clusters = frozenset()
    # WHEN its step is poisoned
    run_failures.record_poisoned_step(message.to_json(), platform)
    # THEN the run is failed, the cleanup did not run, and the alert says what was left to a person
    assert platform.runs.get("run-1").status == "failed"
    assert cleanup.calls == []
    assert [h.outcome for h in platform.runs.history("run-1")] == ["poison", "cleanup-refused"]
    [alert] = platform.alerts.published
    assert alert.kind == "run.failed" and "ALLOWED_CLUSTERS" in alert.details["cleanup"]


def test_a_failing_poison_cleanup_is_logged_and_alerted_and_the_poison_record_stays(monkeypatch, platform, caplog):
    # GIVEN a cleanup that fails
    cleanup = PoisonCleanup(RuntimeError("API server unreachable"))
    monkeypatch.setattr(run_failures, "step_registry",
                        lambda: {"work": StepSpec("work", RecordingStep(Done("x")), on_poison=cleanup)})
    message = start_run(platform)
    # WHEN the poison queue delivers the message
    run = run_failures.record_poisoned_step(message.to_json(), platform)
    # THEN the run is failed with its poison history, and the failed cleanup is logged and alerted
    assert run is not None and platform.runs.get("run-1").status == "failed"
    assert [h.outcome for h in platform.runs.history("run-1")] == ["poison", "cleanup-failed"]
    assert "API server unreachable" in caplog.text
    assert sorted((a.kind, a.severity) for a in platform.alerts.published) == [
        ("run.cleanup-failed", "critical"), ("run.failed", "error")]


# ---- transient storage errors: the step's own retry, never the host's ----------------------------


def throttled(what: str) -> TemporaryError:
    return TemporaryError(f"{what}: storage busy (503)", delay_seconds=5.0, status=503)


@pytest.mark.parametrize("retry", [0, 3, step_runner.MAX_STORAGE_RETRIES - 1])
def test_a_throttled_run_read_puts_the_same_delivery_back_with_a_growing_delay(monkeypatch, platform, retry):
    # GIVEN a live step whose run record cannot be read: the table answers 503
    work = RecordingStep(Done())
    install(monkeypatch, work=work)
    message = start_run(platform).model_copy(update={"storage_retry": retry})

    def busy(run_id: str) -> RunRecord:
        raise throttled(f"read run {run_id}")

    monkeypatch.setattr(platform.runs, "get", busy)

    # WHEN it is delivered
    report = run_step_message(message.to_json(), platform, message_id="m1")

    # THEN nothing escapes to the host: the same step and attempt is put back, counted, with backoff
    assert report.result == "storage-retry"
    assert work.calls == []
    [sent] = platform.queue.take()
    assert (sent.message.step, sent.message.attempt, sent.message.storage_retry) == ("work", 1, retry + 1)
    assert sent.delay_seconds == step_runner.storage_backoff(retry + 1) >= 1.0
    assert platform.queue.poison == []


def test_backoff_grows_and_is_capped():
    delays = [step_runner.storage_backoff(n) for n in range(1, 12)]
    assert delays == sorted(delays)
    assert delays[0] == step_runner.STORAGE_RETRY_BASE_SECONDS
    assert delays[-1] == step_runner.STORAGE_RETRY_MAX_SECONDS


def test_storage_failing_for_hours_reaches_the_host_and_so_the_poison_queue(monkeypatch, platform):
    # GIVEN a delivery put back MAX_STORAGE_RETRIES times already
    install(monkeypatch, work=RecordingStep(Done()))
    message = start_run(platform).model_copy(update={"storage_retry": step_runner.MAX_STORAGE_RETRIES})
    monkeypatch.setattr(platform.runs, "get", lambda run_id: (_ for _ in ()).throw(throttled("read")))

    # WHEN storage still fails THEN the error goes to the host (whose redeliveries end in poison)
    with pytest.raises(TemporaryError):
        run_step_message(message.to_json(), platform, message_id="m1")
    assert platform.queue.take() == []


def test_a_throttled_transition_write_releases_the_claim_and_the_put_back_copy_finishes_the_step(
    monkeypatch, platform
):
    # GIVEN a step that acted, then its transition write was throttled
    work = RecordingStep(Next("after"))
    install(monkeypatch, work=work, after=RecordingStep(Done()))
    message = start_run(platform)

    def throttle_transition(run: RunRecord) -> None:
        if run.claim is None and run.state == "after":  # the transition (the claim release is let through)
            platform.runs.before_update = None
            raise throttled("update run")

    platform.runs.before_update = throttle_transition
    report = run_step_message(message.to_json(), platform, message_id="m1")
    assert report.result == "storage-retry"
    run = platform.runs.get("run-1")
    assert (run.state, run.claim) == ("work", None)  # not moved, and no claim holds the copy off
    [put_back] = platform.queue.take()

    # WHEN the put-back copy arrives (a new queue message id)
    report = run_step_message(put_back.message.to_json(), platform, message_id="m2")

    # THEN the idempotent step runs again and the run moves on once
    assert report.result == "executed"
    assert len(work.calls) == 2
    assert platform.runs.get("run-1").state == "after"
    assert [(s.message.step, s.message.storage_retry) for s in platform.queue.take()] == [("after", 0)]


def test_a_throttled_send_after_the_transition_is_put_back_and_its_copy_resends_the_outbox(monkeypatch, platform):
    # GIVEN a transition written whose follow-up send was throttled
    work = RecordingStep(Next("after", delay_seconds=7))
    install(monkeypatch, work=work, after=RecordingStep(Done()))
    message = start_run(platform)
    real_send = platform.queue.send
    calls = {"n": 0}

    def send_throttled_once(msg, *, delay_seconds=0.0):
        calls["n"] += 1
        if calls["n"] == 1:
            raise throttled("send")
        real_send(msg, delay_seconds=delay_seconds)

    monkeypatch.setattr(platform.queue, "send", send_throttled_once)
    report = run_step_message(message.to_json(), platform, message_id="m1")

    # THEN the history row is written, and the original delivery is put back
    assert report.result == "storage-retry"
    assert [h.outcome for h in platform.runs.history("run-1")] == ["next"]
    [put_back] = platform.queue.take()
    assert (put_back.message.step, put_back.message.storage_retry) == ("work", 1)

    # WHEN it arrives THEN it re-sends the outbox without running the step again
    report = run_step_message(put_back.message.to_json(), platform, message_id="m2")
    assert report.result == "resent"
    assert len(work.calls) == 1
    assert [(s.message.step, s.delay_seconds) for s in platform.queue.take()] == [("after", 7.0)]


def test_a_failed_run_alerts_once_unless_its_workflow_did(monkeypatch, platform):
    # GIVEN two runs: one whose workflow alerts itself, one that does not
    install(monkeypatch, plain=RecordingStep(Failed(reason="pool refused")),
            own=RecordingStep(Failed(reason="already told", alerted=True)))
    first = start_run(platform, step="plain", run_id="run-1")
    second = start_run(platform, step="own", run_id="run-2", pool="user2")

    # WHEN both fail
    run_step_message(first.to_json(), platform, message_id="m1")
    run_step_message(second.to_json(), platform, message_id="m2")

    # THEN the executor raised run.failed for the first only, naming it
    failed = [a for a in platform.alerts.published if a.kind == "run.failed"]
    assert [(a.run_id, a.severity) for a in failed] == [("run-1", "error")]
    assert "pool refused" in failed[0].summary
