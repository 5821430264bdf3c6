"""PodDisruptionBudget analysis (upgrade.domain.pdb): matching, live blockers, the disruption
controller's arithmetic and AKS's UnsatisfiablePDB pre-check."""

from __future__ import annotations

import pytest

from upgrade.domain.model import Pdb, Pod
from upgrade.domain.pdb import (
    desired_healthy,
    disruptions_allowed,
    eviction_blockers,
    expected_pods,
    pdbs_for_pod,
    scaled_value,
    unsatisfiable_pdbs,
)
from upgrade.domain.selectors import NOTHING, LabelSelector
from upgrade.errors import InvalidInput


def pod(name, *, app="web", ns="default", node="node-1", ready=True, phase="Running", deleting=False,
        owner=("ReplicaSet", "web-1")):
    owner_kind, owner_name = owner if owner else (None, None)
    return Pod(ns, name, f"uid-{name}", node, phase=phase, ready=ready, labels=(("app", app),),
               owner_kind=owner_kind, owner_name=owner_name, deleting=deleting)


def pdb(name="web", *, app="web", ns="default", min_available=None, max_unavailable=None, allowed=0, healthy=0,
        desired=0, expected=0):
    return Pdb(ns, name, LabelSelector.match_labels({"app": app}), min_available=min_available, max_unavailable=max_unavailable,
               disruptions_allowed=allowed, current_healthy=healthy, desired_healthy=desired,
               expected_pods=expected)


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [("2", 5, 2), (3, 5, 3), ("50%", 3, 2), ("50%", 4, 2), ("1%", 1, 1), ("0%", 9, 0), ("100%", 7, 7),
     ("34%", 3, 2)],
)
def test_scaled_value_rounds_percent_up(value, total, expected):
    assert scaled_value(value, total) == expected


def test_scaled_value_names_the_field_on_garbage():
    with pytest.raises(InvalidInput) as error:
        scaled_value("half", 3, field="maxUnavailable")
    assert error.value.field == "maxUnavailable"


@pytest.mark.parametrize(
    ("min_available", "max_unavailable", "expected", "healthy", "desired", "allowed"),
    [
        ("1", None, 1, 1, 1, 0),  # Scenario 2: a single replica with minAvailable 1
        ("1", None, 3, 3, 1, 2),
        ("50%", None, 3, 3, 2, 1),
        ("100%", None, 2, 2, 2, 0),
        (None, "1", 3, 3, 2, 1),
        (None, "0", 3, 3, 3, 0),
        (None, "34%", 3, 3, 1, 2),  # ceil(1.02) = 2 unavailable allowed
        (None, "1", 3, 1, 2, 0),  # unhealthy pods eat the budget
        ("2", None, 0, 0, 2, 0),  # nothing expected: never a disruption
        (None, None, 2, 2, 0, 2),
    ],
)
def test_disruption_controller_arithmetic(min_available, max_unavailable, expected, healthy, desired, allowed):
    # GIVEN a budget and the pods' health WHEN the controller computes status THEN these numbers
    assert desired_healthy(min_available, max_unavailable, expected) == desired
    assert disruptions_allowed(min_available, max_unavailable, expected_pods=expected,
                               current_healthy=healthy) == allowed


@pytest.mark.parametrize(
    ("budget", "replicas", "expected"),
    [
        (pdb(min_available="1"), None, 2),  # integer minAvailable: the pods selected
        (pdb(min_available="50%"), {("default", "ReplicaSet", "web-1"): 5}, 6),  # scale + the unmanaged pod
        (pdb(max_unavailable="1"), None, 3),  # without scales: the pods each controller has
    ],
)
def test_expected_pods(budget, replicas, expected):
    selected = [pod("a"), pod("b"), pod("c", owner=None)][: 2 if budget.min_available == "1" else 3]
    assert expected_pods(budget, selected, replicas) == expected


def test_pdbs_for_pod_matches_namespace_and_labels():
    covering = pdb("web", app="web")
    others = [pdb("db", app="db"), pdb("web", app="web", ns="other"), Pdb("default", "no-selector", NOTHING)]
    assert pdbs_for_pod(pod("a"), [covering, *others]) == [covering]


@pytest.mark.parametrize(
    ("pods", "pdbs", "blocked"),
    [
        # GIVEN Scenario 2's pod A and its PDB: blocked
        ([pod("a")], [pdb(min_available="1", allowed=0, healthy=1, desired=1, expected=1)], ["default/a"]),
        ([pod("a")], [pdb(min_available="1", allowed=1, healthy=2, desired=1, expected=2)], []),
        ([pod("a", app="other")], [pdb(min_available="1")], []),  # no PDB covers it
        ([pod("a", deleting=True)], [pdb(min_available="1")], []),  # already terminating
        ([pod("a", phase="Pending", ready=False)], [pdb(min_available="1")], []),
        ([pod("a", phase="Succeeded", ready=False)], [pdb(min_available="1")], []),
        # an unready pod may go while the budget is met
        ([pod("a", ready=False)], [pdb(min_available="1", allowed=0, healthy=1, desired=1, expected=2)], []),
        ([pod("a", ready=False)], [pdb(min_available="2", allowed=0, healthy=1, desired=2, expected=2)],
         ["default/a"]),
        # two PDBs: the eviction subresource refuses whatever the budgets say
        ([pod("a")], [pdb("one", allowed=5), pdb("two", allowed=5)], ["default/a"]),
    ],
)
def test_eviction_blockers(pods, pdbs, blocked):
    assert [b.pod for b in eviction_blockers(pods, pdbs)] == blocked


def test_eviction_blocker_carries_the_numbers_and_a_reason():
    # GIVEN two replicas of web, a PDB allowing nothing WHEN analysed THEN the blocker explains it
    pods = [pod("a", node="node-1"), pod("b", node="node-2")]
    budget = pdb(min_available="2", allowed=0, healthy=2, desired=2, expected=2)
    first, second = eviction_blockers(pods, [budget])
    assert (first.pod, first.node, first.pdb, first.owner, first.replicas) == (
        "default/a", "node-1", "default/web", "ReplicaSet/web-1", 2)
    assert (first.min_available, first.disruptions_allowed, first.current_healthy, first.expected_pods) == (
        "2", 0, 2, 2)
    assert "default/web" in first.reason and "allows 0" in first.reason
    assert second.node == "node-2"
    assert first.to_public()["disruptionsAllowed"] == 0


def test_blocker_for_two_pdbs_names_both():
    (blocker,) = eviction_blockers([pod("a")], [pdb("one"), pdb("two")])
    assert blocker.pdb == "default/one, default/two"
    assert "more than one PDB" in blocker.reason


@pytest.mark.parametrize(
    ("pods", "pdbs", "problems"),
    [
        ([pod("a")], [pdb("x", min_available="1")], ["PDB default/x has minAvailable(1) >= expectedPods(1)"]),
        ([pod("a"), pod("b")], [pdb("x", min_available="1")], []),
        ([pod("a"), pod("b")], [pdb("x", min_available="100%")],
         ["PDB default/x has minAvailable(2) >= expectedPods(2)"]),
        ([pod("a"), pod("b")], [pdb("x", min_available="3")],
         ["PDB default/x has minAvailable(3) >= expectedPods(2)"]),
        ([pod("a"), pod("b")], [pdb("x", max_unavailable="0")], ["PDB default/x has maxUnavailable(0) == 0"]),
        ([pod("a"), pod("b")], [pdb("x", max_unavailable="0%")], ["PDB default/x has maxUnavailable(0%) == 0"]),
        ([pod("a"), pod("b")], [pdb("x", max_unavailable="10%")], []),  # rounds up to 1
        ([], [pdb("x", min_available="1")], []),  # selects nothing: nothing to block
        ([pod("a", phase="Succeeded"), pod("b"), pod("c")], [pdb("x", min_available="2")],
         ["PDB default/x has minAvailable(2) >= expectedPods(2)"]),
    ],
)
def test_unsatisfiable_pdbs(pods, pdbs, problems):
    assert unsatisfiable_pdbs(pods, pdbs) == problems
