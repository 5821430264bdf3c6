"""The PDB lease's decisions: what a relax writes, and whether a restore may write the original back."""

from __future__ import annotations

import pytest

from upgrade.domain.model import ClusterRef, PdbManifest
from upgrade.domain.pdb_lease import (
    PdbLease,
    RestoreAction,
    lease_key,
    lease_partition,
    plan_relax,
    restore_action,
    same_spec,
)

SELECTOR = {"matchLabels": {"app": "a"}}
ORIGINAL = {"selector": SELECTOR, "minAvailable": 1}
RELAXED = {"selector": SELECTOR, "maxUnavailable": 1}
OWNERS = {"selector": SELECTOR, "maxUnavailable": "50%"}

# Recorded at generation 3; the run's conditional write makes generation 4.
RECORDED = PdbLease("apps/a-pdb", "run-1", ORIGINAL, 3)
RELAXING = PdbLease("apps/a-pdb", "run-1", ORIGINAL, 3, RELAXED, 4)


def at(spec: dict, generation: int, resource_version: str = "900") -> PdbManifest:
    return PdbManifest(spec, resource_version, generation)


@pytest.mark.parametrize(
    ("case", "lease", "current", "action"),
    [
        ("still what the run wrote", RELAXING, at(RELAXED, 4), RestoreAction.RESTORE),
        # The disruption controller's status writes change the resourceVersion, never the generation.
        ("status updated since", RELAXING, at(RELAXED, 4, resource_version="977"), RestoreAction.RESTORE),
        ("the relax never happened", RELAXING, at(ORIGINAL, 3), RestoreAction.UNCHANGED),
        ("restored already", RELAXING, at(ORIGINAL, 5), RestoreAction.UNCHANGED),
        ("the same budget as a string", RELAXING, at({"selector": SELECTOR, "minAvailable": "1"}, 5),
         RestoreAction.UNCHANGED),
        ("the owners set another budget", RELAXING, at(OWNERS, 5), RestoreAction.EDITED),
        # Someone wrote the very same relaxed spec again: a later generation, so not the run's write.
        ("someone re-applied the relaxed spec", RELAXING, at(RELAXED, 5), RestoreAction.EDITED),
        ("the selector was edited", RELAXING, at({**RELAXED, "selector": {"matchLabels": {"app": "b"}}}, 5),
         RestoreAction.EDITED),
        ("never relaxed, edited since the record", RECORDED, at(OWNERS, 4), RestoreAction.EDITED),
    ],
)
def test_restore_only_what_the_run_wrote(case, lease, current, action):
    assert restore_action(lease, current) is action


RELAXED_2 = {"selector": SELECTOR, "maxUnavailable": 2}
OWNERS_SELECTOR = {"selector": {"matchLabels": {"app": "b"}}, "minAvailable": 1}


@pytest.mark.parametrize(
    ("case", "lease", "current", "max_unavailable", "write", "original", "relaxed", "relaxed_generation"),
    [
        ("first relax: write, expecting the next generation", RECORDED, at(ORIGINAL, 3), 1, True,
         ORIGINAL, RELAXED, 4),
        ("already relaxed by this lease (a redelivery): no write", RELAXING, at(RELAXED, 4), 1, False,
         ORIGINAL, RELAXED, 4),
        # A lease taken over from a run that ended relaxed keeps its original, never the relaxed spec.
        ("taken over, relaxed further: the original is kept", RELAXING, at(RELAXED, 4), 2, True,
         ORIGINAL, RELAXED_2, 5),
        ("an earlier write was refused (409): write again", RELAXING, at(ORIGINAL, 3), 1, True,
         ORIGINAL, RELAXED, 4),
        # The owners changed the PDB after the record and before any relax: theirs is the original,
        # and the relax keeps their selector.
        ("edited before the relax: adopted as the original", RECORDED, at(OWNERS_SELECTOR, 4), 1, True,
         OWNERS_SELECTOR, {"selector": {"matchLabels": {"app": "b"}}, "maxUnavailable": 1}, 5),
    ],
)
def test_plan_relax(case, lease, current, max_unavailable, write, original, relaxed, relaxed_generation):
    plan = plan_relax(lease, current, max_unavailable)
    assert plan.write is write
    assert (plan.lease.original, plan.lease.relaxed, plan.lease.relaxed_generation) == (
        original, relaxed, relaxed_generation)
    assert plan.adopted_edit is (original is OWNERS_SELECTOR)


@pytest.mark.parametrize(
    ("case", "current", "edited_after_relax"),
    [
        # The run's write was refused (409) because the owners' edit took generation 4 first.
        ("the owners' edit came before the run's relax", at(OWNERS, 4), False),
        # The run's relax made generation 4 (a crash kept it from being recorded); the owners' edit made 5.
        ("the owners edited the PDB the run had relaxed", at(OWNERS, 5), True),
    ],
)
def test_an_edit_after_the_runs_own_relax_is_told_apart(case, current, edited_after_relax):
    plan = plan_relax(RELAXING, current, 1)
    assert plan.adopted_edit and plan.lease.original == OWNERS
    assert plan.edited_after_relax is edited_after_relax


def test_a_lease_round_trips_through_storage_and_keys_fit_table_storage():
    assert PdbLease.from_storage(RELAXING.to_storage()) == RELAXING
    assert PdbLease.from_storage(RECORDED.to_storage()) == RECORDED
    assert lease_key("apps/a-pdb") == "apps:a-pdb"
    partition = lease_partition(ClusterRef("Sub", "RG", "AKS"))
    assert partition == "pdb-lease:sub:rg:aks" and "/" not in partition


def test_specs_compare_budgets_as_kubernetes_stores_them():
    assert same_spec({"minAvailable": 1}, {"minAvailable": "1", "maxUnavailable": None})
    assert not same_spec({"minAvailable": 1}, {"maxUnavailable": 1})
