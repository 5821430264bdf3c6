"""The fault-injecting base of the stateful property tests of runs (hypothesis
``RuleBasedStateMachine``) over the in-memory fakes and the unit tests' one fake cluster: every
message delivered in any order, duplicated, delayed or lost; workers dying between a step's side
effect and its state write; throttled run writes and queue sends; the reconciler's timer. The
invariants every run kind shares hold after every rule; subclasses build the cluster, start their
runs and add their own invariants."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.fakes import FakePlatform, SentMessage, SimulatedCrash
from tests.unit.fake_cluster import CLUSTER, FakeCluster
from upgrade.domain.policy import parse_policy
from upgrade.domain.runs import PARKED_STATUSES
from upgrade.errors import TemporaryError
from upgrade.services import registry
from upgrade.services.reconciler import reconcile_runs
from upgrade.services.step_runner import run_step_message

MARGIN = 30.0


class FaultyRunMachine(RuleBasedStateMachine):
    """Subclasses build their cluster and call ``setup_faults(fake, **policy_defaults)``; ``APPS`` names each
    application (label ``app``, namespace default) and how many pods it keeps."""

    APPS: dict[str, int] = {}
    fake: FakeCluster
    platform: FakePlatform

    def setup_faults(self, fake: FakeCluster, **defaults: object) -> None:
        registry.step_registry.cache_clear()
        self.fake = fake
        self.platform = FakePlatform(
            kubes={CLUSTER.arm_id: fake}, aks_by_subscription={CLUSTER.subscription_id: fake},
            allowed_clusters=frozenset({CLUSTER.arm_id}),
            policy=parse_policy(json.dumps({"defaults": {"pollSeconds": 1, **defaults}})))
        self.pending: list[SentMessage] = []
        self.ids = 0
        self.crash_next_transition = False
        self.throttle_updates = 0
        self.throttle_sends = 0
        runs = self.platform.runs

        def faults(run) -> None:
            if self.throttle_updates > 0:
                self.throttle_updates -= 1
                raise TemporaryError("update run: storage busy (503)", status=503)
            if self.crash_next_transition and run.claim is None and run.outbox is not None:
                self.crash_next_transition = False
                raise SimulatedCrash("the worker died before writing the transition")

        runs.before_update = faults
        queue = self.platform.queue
        real_send = queue.send

        def send(message, *, delay_seconds=0.0):
            if self.throttle_sends > 0:
                self.throttle_sends -= 1
                raise TemporaryError("send: storage busy (503)", status=503)
            real_send(message, delay_seconds=delay_seconds)

        queue.send = send

    def _collect(self) -> None:
        self.pending.extend(self.platform.queue.take())

    def _active_runs(self):
        return [r for r in self.platform.runs.list_runs(limit=10_000) if r.active]

    def _reconcile(self) -> None:
        reconcile_runs(self.platform, margin_seconds=MARGIN)

    # ---- rules ----------------------------------------------------------------------------------

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), duplicate=st.booleans())
    def deliver(self, data, duplicate: bool) -> None:
        self._deliver(data.draw(st.integers(0, len(self.pending) - 1), label="message"), duplicate)  # any order

    def _deliver(self, index: int, duplicate: bool = False) -> None:
        sent = self.pending[index] if duplicate else self.pending.pop(index)
        self.platform.clock.advance(min(sent.delay_seconds, 5.0))
        self.ids += 1
        try:
            run_step_message(sent.message.to_json(), self.platform, message_id=f"m{self.ids}")
        except (SimulatedCrash, TemporaryError):
            if not duplicate:
                self.pending.append(sent)  # the host redelivers what it did not complete
        self._collect()

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def lose(self, data) -> None:
        self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1), label="lost"))

    @rule()
    def crash_during_the_next_transition(self) -> None:
        self.crash_next_transition = True

    @rule(updates=st.integers(0, 2), sends=st.integers(0, 2))
    def throttle_storage(self, updates: int, sends: int) -> None:
        self.throttle_updates, self.throttle_sends = updates, sends

    @rule(seconds=st.sampled_from([1.0, 10.0, 60.0]))
    def reconciler_timer(self, seconds: float) -> None:
        self.platform.clock.advance(seconds)
        self.throttle_updates = self.throttle_sends = 0
        try:
            self._reconcile()
        except SimulatedCrash:
            pass  # the timer's worker died mid-way: the next period looks again
        self._collect()

    @rule()
    def long_quiet_then_two_reconciles(self) -> None:
        """Nothing is delivered for a long while: after the reconciler has run past a run's due
        time, the run has its live message queued, or is stuck (with an alert). A run whose live
        message is not due yet (a blue-green approval window, a day long) is left to the invariant
        below: the reconciler finds it once it is due."""
        self.throttle_updates = self.throttle_sends = 0
        self.crash_next_transition = False
        not_due: set[str] = set()
        for _ in range(2):
            self.platform.clock.advance(3600)
            late = self.platform.clock.now() - timedelta(seconds=MARGIN)
            not_due = {r.run_id for r in self._active_runs() if (due := r.live_due()) is not None and due >= late}
            self._reconcile()
            self._collect()
        live = {(m.message.run_id, m.message.step, m.message.attempt) for m in self.pending}
        stuck_alerted = {a.run_id for a in self.platform.alerts.published if a.kind == "run.stuck"}
        for run in self._active_runs():
            if run.status == "paused" or run.run_id in not_due:
                continue
            if run.status == "stuck":
                assert run.run_id in stuck_alerted
                continue
            assert (run.run_id, run.state, run.attempt) in live, (run.run_id, run.state, run.attempt, run.status)

    # ---- invariants -----------------------------------------------------------------------------

    @invariant()
    def no_application_pod_is_lost(self) -> None:
        counts = Counter(p.labels and dict(p.labels).get("app") for p in self.fake.pods.values()
                         if p.namespace == "default")
        assert {app: counts[app] for app in self.APPS} == self.APPS

    @invariant()
    def every_active_run_has_a_live_message_or_is_found_when_due(self) -> None:
        live = {(m.message.run_id, m.message.step, m.message.attempt) for m in self.pending}
        far = self.platform.clock.now() + timedelta(days=3650)
        findable = {r.run_id for r in self.platform.runs.overdue(far, limit=10_000)}
        for run in self._active_runs():
            if run.status in PARKED_STATUSES:
                continue
            assert (run.run_id, run.state, run.attempt) in live or run.run_id in findable, run

    @invariant()
    def at_most_one_active_run_per_pool(self) -> None:
        pools = Counter(r.pool for r in self._active_runs())
        assert all(count == 1 for count in pools.values()), pools

    def teardown(self) -> None:
        registry.step_registry.cache_clear()
