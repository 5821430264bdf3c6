"""A stateful property test of the run machinery over the in-memory fakes (hypothesis
``RuleBasedStateMachine``): rolling runs on sibling pools of one cluster, next to a foreign pool no
run owns; operator decisions and AKS's Succeeded/Failed events (some redelivered) at random moments; every message delivered, duplicated, delayed,
reordered or lost; workers dying between a step's side effect and its state write; storage
faults (throttled run writes and queue sends); the reconciler's timer. After every rule:

- no pool without an active run of its own is ever written to (the foreign pool never);
- no application pod is lost (every workload keeps its replicas);
- an AKS event redelivered creates no second run;
- every active run either has its live message queued, is held by a live claim, is parked
  (paused, stuck), or is found by the reconciler's query once it is due: and after the reconciler
  has run past a run's due time, every active run has a live message queued or is stuck.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.fakes import FakePlatform, SentMessage, SimulatedCrash
from tests.unit.fake_cluster import CLUSTER, FakeCluster
from upgrade.domain.events import parse_events
from upgrade.domain.policy import parse_policy
from upgrade.domain.runs import PARKED_STATUSES
from upgrade.errors import Conflict, TemporaryError
from upgrade.services import registry, rolling
from upgrade.services.decisions import decide
from upgrade.services.event_reactions import react_to_events
from upgrade.services.reconciler import reconcile_runs
from upgrade.services.step_runner import run_step_message

SIBLINGS = ("userpool1", "userpool2")
FOREIGN = "userpool3"
MARGIN = 30.0
APPS = {"a": "userpool1", "b": "userpool2", "c": FOREIGN}


class RunMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        registry.step_registry.cache_clear()
        self.fake = FakeCluster()
        for pool in (*SIBLINGS, FOREIGN):
            self.fake.add_pool(pool, 2, "1.30.0")
            for index in (1, 2):
                self.fake.add_node(f"aks-{pool}-{index}", pool, "1.30.0")
        for app, pool in APPS.items():
            for index in (1, 2):
                self.fake.add_pod("default", f"{app}-{index}", f"aks-{pool}-{index}", app=app)
        self.platform = FakePlatform(
            kubes={CLUSTER.arm_id: self.fake}, aks_by_subscription={CLUSTER.subscription_id: self.fake},
            allowed_clusters=frozenset({CLUSTER.arm_id}),
            policy=parse_policy(json.dumps({"defaults": {"pollSeconds": 1}})))
        self.pending: list[SentMessage] = []
        self.ids = 0
        self.unowned_writes: list[str] = []
        self.crash_next_transition = False
        self.throttle_updates = 0
        self.throttle_sends = 0
        self._wrap_ports()

    # ---- fault plumbing -------------------------------------------------------------------------

    def _wrap_ports(self) -> None:
        real_put = self.fake.begin_put_pool
        runs = self.platform.runs

        def owned_put(cluster, pool, *, if_match=None):
            holder = runs.find_active(CLUSTER.arm_id, pool.name)
            if holder is None or holder.pool != pool.name:
                self.unowned_writes.append(pool.name)
            real_put(cluster, pool, if_match=if_match)

        self.fake.begin_put_pool = owned_put

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

    # ---- rules ----------------------------------------------------------------------------------

    @rule(pool=st.sampled_from(SIBLINGS))
    def start(self, pool: str) -> None:
        try:
            rolling.start_rolling_run(self.platform, cluster=CLUSTER, pool=pool, target_version="1.31", actor="op")
        except (Conflict, TemporaryError, SimulatedCrash):
            pass  # the pool has an active run, or the request failed before its write: nothing started
        except Exception as exc:  # only what a start may answer
            assert "not newer" in str(exc) or "not offered" in str(exc), exc
        self._collect()

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), duplicate=st.booleans())
    def deliver(self, data, duplicate: bool) -> None:
        index = data.draw(st.integers(0, len(self.pending) - 1), label="message")  # any order
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

    @rule(pool=st.sampled_from(SIBLINGS), outcome=st.sampled_from(["Succeeded", "Failed"]),
          event=st.integers(1, 3))
    def aks_reports_the_pool_finished(self, pool: str, outcome: str, event: int) -> None:
        """AKS's NodePoolRolling<outcome>, with a few ids so that Event Grid redelivers some."""
        [parsed] = parse_events({
            "id": f"{pool}-{outcome}-{event}", "topic": CLUSTER.arm_id, "subject": CLUSTER.name,
            "eventType": f"Microsoft.ContainerService.NodePoolRolling{outcome}",
            "eventTime": self.platform.clock.now().isoformat(), "dataVersion": "1", "data": {"nodePoolName": pool}})
        try:
            react_to_events([parsed], self.platform)
        except (TemporaryError, SimulatedCrash):
            pass  # Event Grid delivers it again later
        self._collect()

    @rule(pool=st.sampled_from(SIBLINGS), decision=st.sampled_from(["pause", "resume", "abort"]))
    def operator_decides(self, pool: str, decision: str) -> None:
        run = self.platform.runs.find_active(CLUSTER.arm_id, pool)
        if run is None:
            return
        try:
            decide(self.platform, run.run_id, decision, "op")
        except (Conflict, TemporaryError, SimulatedCrash):
            pass  # not applicable now, storage busy, or the app died mid-request: the operator tries again
        self._collect()

    @rule(seconds=st.sampled_from([1.0, 10.0, 60.0]))
    def reconciler_timer(self, seconds: float) -> None:
        self.platform.clock.advance(seconds)
        self.throttle_updates = self.throttle_sends = 0
        try:
            reconcile_runs(self.platform, margin_seconds=MARGIN)
        except SimulatedCrash:
            pass  # the timer's worker died mid-way: the next period looks again
        self._collect()

    @rule()
    def long_quiet_then_two_reconciles(self) -> None:
        """Nothing is delivered for a long while: after the reconciler has run past every due time,
        each active run has its live message queued, or is stuck (with an alert)."""
        self.throttle_updates = self.throttle_sends = 0
        self.crash_next_transition = False
        for _ in range(2):
            self.platform.clock.advance(3600)
            reconcile_runs(self.platform, margin_seconds=MARGIN)
            self._collect()
        live = {(m.message.run_id, m.message.step, m.message.attempt) for m in self.pending}
        stuck_alerted = {a.run_id for a in self.platform.alerts.published if a.kind == "run.stuck"}
        for run in self._active_runs():
            if run.status == "paused":
                continue
            if run.status == "stuck":
                assert run.run_id in stuck_alerted
                continue
            assert (run.run_id, run.state, run.attempt) in live, (run.run_id, run.state, run.attempt, run.status)

    # ---- invariants -----------------------------------------------------------------------------

    def _active_runs(self):
        return [r for r in self.platform.runs.list_runs(limit=10_000) if r.active]

    @invariant()
    def no_pool_without_its_own_active_run_is_written(self) -> None:
        assert self.unowned_writes == []

    @invariant()
    def no_application_pod_is_lost(self) -> None:
        counts = Counter(p.labels and dict(p.labels).get("app") for p in self.fake.pods.values()
                         if p.namespace == "default")
        assert {app: counts[app] for app in APPS} == dict.fromkeys(APPS, 2)

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
    def each_aks_event_is_reacted_to_once(self) -> None:
        events = Counter(r.facts.get("finished_event") for r in self.platform.runs.list_runs(limit=10_000)
                         if r.facts.get("finished_by_event"))
        assert all(count == 1 for event, count in events.items() if event), events

    @invariant()
    def at_most_one_active_run_per_pool(self) -> None:
        pools = Counter(r.pool for r in self._active_runs())
        assert all(count == 1 for count in pools.values()), pools

    def teardown(self) -> None:
        registry.step_registry.cache_clear()


RunMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
test_run_invariants = RunMachine.TestCase
