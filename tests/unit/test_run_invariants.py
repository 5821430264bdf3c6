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

from collections import Counter

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant, rule

from tests.fakes import SimulatedCrash
from tests.unit.fake_cluster import CLUSTER, FakeCluster
from tests.unit.run_machine import FaultyRunMachine
from upgrade.domain.events import parse_events
from upgrade.errors import Conflict, TemporaryError
from upgrade.services import rolling
from upgrade.services.decisions import decide
from upgrade.services.event_reactions import react_to_events

SIBLINGS = ("userpool1", "userpool2")
FOREIGN = "userpool3"
APPS = {"a": "userpool1", "b": "userpool2", "c": FOREIGN}


class RunMachine(FaultyRunMachine):
    APPS = dict.fromkeys(APPS, 2)

    def __init__(self) -> None:
        super().__init__()
        fake = FakeCluster()
        for pool in (*SIBLINGS, FOREIGN):
            fake.add_pool(pool, 2, "1.30.0")
            for index in (1, 2):
                fake.add_node(f"aks-{pool}-{index}", pool, "1.30.0")
        for app, pool in APPS.items():
            for index in (1, 2):
                fake.add_pod("default", f"{app}-{index}", f"aks-{pool}-{index}", app=app)
        self.unowned_writes: list[str] = []
        self.setup_faults(fake)
        real_put = self.fake.begin_put_pool
        runs = self.platform.runs

        def owned_put(cluster, pool, *, if_match=None):
            holder = runs.find_active(CLUSTER.arm_id, pool.name)
            if holder is None or holder.pool != pool.name:
                self.unowned_writes.append(pool.name)
            real_put(cluster, pool, if_match=if_match)

        self.fake.begin_put_pool = owned_put

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

    # ---- invariants -----------------------------------------------------------------------------

    @invariant()
    def no_pool_without_its_own_active_run_is_written(self) -> None:
        assert self.unowned_writes == []

    @invariant()
    def each_aks_event_is_reacted_to_once(self) -> None:
        events = Counter(r.facts.get("finished_event") for r in self.platform.runs.list_runs(limit=10_000)
                         if r.facts.get("finished_by_event"))
        assert all(count == 1 for event, count in events.items() if event), events


RunMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
test_run_invariants = RunMachine.TestCase
