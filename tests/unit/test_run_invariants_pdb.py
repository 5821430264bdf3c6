"""A stateful property test of relax-pdb remediations over the in-memory fakes (hypothesis
``RuleBasedStateMachine``, faults from tests/unit/run_machine.py): two pools whose quarantined
nodes one PDB blocks, relax-pdb runs requested on either at random moments (one lease per PDB
across runs and pools), operators pausing, resuming and aborting them, the PDB's owners editing it
at random moments (before, during or after a relax); every message delivered in any order,
duplicated, delayed or lost; crashes between side effects and state writes; storage faults; the
reconciler's timer. After every rule, besides the invariants every run kind shares, and once every
run has ended and the quarantine scan has swept the leases of runs that died:

- the PDB is exactly what its owners last set: the original, restored, or their own edit, which
  the app never overwrites;
- an edit made while a run had the PDB relaxed, to something else than the PDB was before the
  relax, is named by a ``remediation.pdb-not-restored`` alert.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import rule

from tests.fakes import SimulatedCrash
from tests.unit.fake_cluster import CLUSTER, two_pools_one_pdb
from tests.unit.run_machine import FaultyRunMachine
from upgrade.domain.pdb_lease import lease_partition
from upgrade.errors import Conflict, InvalidInput, NotAllowed, NotFound, TemporaryError
from upgrade.services.decisions import decide
from upgrade.services.quarantine_scan import scan_cluster
from upgrade.services.remediation import request_remediation

PDB = "default/a-pdb"
NODES = ("aks-nodepool1-1", "aks-nodepool2-1")
SELECTOR = {"matchLabels": {"app": "a"}}
OWNER_SPECS = ({"selector": SELECTOR, "minAvailable": 2}, {"selector": SELECTOR, "minAvailable": 1},
               {"selector": SELECTOR, "maxUnavailable": "50%"}, {"selector": SELECTOR, "maxUnavailable": 1})


class RelaxPdbMachine(FaultyRunMachine):
    APPS = {"a": 2, "b": 1, "c": 1, "d": 1}

    def __init__(self) -> None:
        super().__init__()
        fake = two_pools_one_pdb()
        self.owners_spec = dict(fake.pdb_specs[PDB])
        # the owners' spec when the app's last relax began (None once the app restored it), and
        # whether the owners edited the PDB since
        self.relaxed_from: dict | None = None
        self.edited_while_relaxed = False
        self.alert_due = False
        self.edit_after_the_apps_next_write: dict | None = None
        self.setup_faults(fake, remediation={"relax-pdb": "automatic"})
        patch = fake.patch_pdb_spec

        def patch_then_edit(namespace, name, spec, **kwargs):
            result = patch(namespace, name, spec, **kwargs)
            if spec == self.owners_spec:
                self.relaxed_from = None  # restored by the app
            else:
                self._edit_alert_due()  # a new relax: the last one is over
                self.relaxed_from, self.edited_while_relaxed = dict(self.owners_spec), False
            edit, self.edit_after_the_apps_next_write = self.edit_after_the_apps_next_write, None
            if edit is not None:
                self.the_owners_edit_the_pdb(edit)
            return result

        fake.patch_pdb_spec = patch_then_edit

    @rule(node=st.sampled_from(NODES))
    def request_relax_pdb(self, node: str) -> None:
        try:
            request_remediation(self.platform, CLUSTER, node, "relax-pdb", actor="op")
        except (Conflict, NotFound, TemporaryError, SimulatedCrash):
            pass  # the pool has an active run, the node is gone or fixed, or the request failed before its write
        self._collect()

    @rule(node=st.sampled_from(NODES), decision=st.sampled_from(["pause", "resume", "abort"]))
    def operator_decides(self, node: str, decision: str) -> None:
        run = self.platform.runs.find_active(CLUSTER.arm_id, node.split("-")[1])
        if run is None:
            return
        try:
            decide(self.platform, run.run_id, decision, "op")
        except (Conflict, InvalidInput, NotAllowed, TemporaryError, SimulatedCrash):
            pass  # not applicable now, storage busy, or the app died mid-request: the operator tries again
        self._collect()

    @rule(spec=st.sampled_from(OWNER_SPECS))
    def the_owners_edit_the_pdb(self, spec: dict) -> None:
        """kubectl apply by the PDB's owners; while the app has it relaxed, theirs must win."""
        self._close_when_released()
        if self.relaxed_from is not None:
            self.edited_while_relaxed = True
        self.fake.edit_pdb(PDB, spec)
        self.owners_spec = dict(spec)

    def _close_when_released(self) -> None:
        """No run holds the PDB's lease any more: its relax is over (restored, or left as the
        owners set it)."""
        if self.relaxed_from is not None and not self.platform.state.list(lease_partition(CLUSTER)):
            self._edit_alert_due()
            self.relaxed_from = None

    def _edit_alert_due(self) -> None:
        """The owners changed the PDB while the app had it relaxed, to something else than what
        it was before the relax: the app left their spec, and an alert must say so."""
        if self.relaxed_from is not None and self.edited_while_relaxed and self.owners_spec != self.relaxed_from:
            self.alert_due = True

    @rule(spec=st.sampled_from(OWNER_SPECS))
    def the_owners_edit_the_pdb_right_after_the_apps_next_write(self, spec: dict) -> None:
        """The owners' kubectl apply lands just after the app's next write (a relax or a restore)."""
        self.edit_after_the_apps_next_write = spec

    @rule()
    def every_run_ends_then_the_scan_sweeps(self) -> None:
        """The faults stop; runs finish, or the operator aborts those parked or left without a
        message; the quarantine scan restores what a dead run left relaxed. Then the PDB is what
        its owners last set, and an edit made while it was relaxed is named by an alert."""
        self.throttle_updates = self.throttle_sends = 0
        self.crash_next_transition = False
        for _ in range(300):
            active = self._active_runs()
            if not active:
                break
            if self.pending:
                self.platform.clock.advance(60)  # a minute between deliveries: polls reach their deadlines
                self._deliver(0)
                continue
            for run in active:
                decide(self.platform, run.run_id, "abort", "op")
            self._collect()
        assert not self._active_runs()
        scan_cluster(self.platform, CLUSTER)
        self._collect()  # what the scan started (an automatic remediation) runs on from here
        assert self.fake.pdb_specs[PDB] == self.owners_spec
        self._close_when_released()
        if self.alert_due:
            named = [a for a in self.platform.alerts.published
                     if a.kind == "remediation.pdb-not-restored" and a.details.get("pdb") == PDB]
            assert named, "an edit made while the PDB was relaxed was not alerted"


RelaxPdbMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])
test_relax_pdb_run_invariants = RelaxPdbMachine.TestCase
