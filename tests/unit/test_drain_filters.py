"""The drain filters decide like kubectl drain: table tests over pod kinds and options."""

from __future__ import annotations

import pytest

from upgrade.domain.drain import (
    DrainContext,
    DrainOptions,
    DrainStatus,
    PodDrainReport,
    PodDrainState,
    Verdict,
    daemonsets_to_check,
    decide_pod,
    drain_status,
    pdb_hold,
    plan_drain,
)
from upgrade.domain.model import Pdb, Pod
from upgrade.domain.selectors import LabelSelector
from upgrade.errors import InvalidInput


def pod(name: str = "web-1", **overrides) -> Pod:
    fields = {"namespace": "apps", "name": name, "uid": f"uid-{name}", "node": "node-1",
              "owner_kind": "ReplicaSet", "owner_name": "web-5d8f", "labels": (("app", "web"),)}
    fields.update(overrides)
    return Pod(**fields)


NONE = DrainOptions()
ALL = DrainOptions(ignore_daemonsets=True, delete_emptydir_data=True, force=True)

CASES = [
    # (case, pod, options, verdict, reason contains)
    ("ReplicaSet pod is evicted", pod(), NONE, Verdict.KEEP, ""),
    ("terminating managed pod is waited for", pod(deleting=True), NONE, Verdict.KEEP, "already terminating"),
    ("DaemonSet pod refused without ignore-daemonsets", pod(owner_kind="DaemonSet", owner_name="agent"),
     NONE, Verdict.REFUSE, "ignore-daemonsets"),
    ("DaemonSet pod skipped with ignore-daemonsets", pod(owner_kind="DaemonSet", owner_name="agent"),
     ALL, Verdict.SKIP, "DaemonSet"),
    ("mirror pod skipped", pod(owner_kind="Node", owner_name="node-1", mirror=True), NONE, Verdict.SKIP,
     "mirror"),
    ("emptyDir refused without delete-emptydir-data", pod(empty_dir=True), NONE, Verdict.REFUSE,
     "delete-emptydir-data"),
    ("emptyDir evicted with a warning", pod(empty_dir=True), DrainOptions(delete_emptydir_data=True),
     Verdict.WARN, "emptyDir"),
    ("finished pod with emptyDir needs no option", pod(empty_dir=True, phase="Succeeded"), NONE,
     Verdict.KEEP, ""),
    ("unmanaged pod refused without force", pod(owner_kind=None, owner_name=None), NONE, Verdict.REFUSE,
     "force"),
    ("unmanaged pod evicted with force, warned", pod(owner_kind=None, owner_name=None),
     DrainOptions(force=True), Verdict.WARN, "nothing recreates it"),
    ("finished unmanaged pod needs no force", pod(owner_kind=None, phase="Failed"), NONE, Verdict.KEEP, ""),
    ("unmanaged emptyDir: local storage refuses first", pod(owner_kind=None, empty_dir=True), NONE,
     Verdict.REFUSE, "emptyDir"),
    ("unmanaged emptyDir with both options: both warnings", pod(owner_kind=None, empty_dir=True), ALL,
     Verdict.WARN, "emptyDir data is deleted; no controller"),
    ("DaemonSet with emptyDir is skipped before local storage", pod(owner_kind="DaemonSet", empty_dir=True),
     DrainOptions(ignore_daemonsets=True), Verdict.SKIP, "DaemonSet"),
]

# The four places where the drain once differed from kubectl drain, each as kubectl decides
# (kubectl pkg/drain filters.go; the 500 is in test_drain_engine and the owner rule in the adapter).
ORPHANS = DrainContext(missing_daemonsets=frozenset({("apps", "gone-agent")}))
KUBECTL_PARITY = [
    # skipDeletedFilter skips a terminating pod only past --skip-wait-for-delete-timeout (default 0:
    # never); unreplicatedFilter then refuses a pod without a controller unless --force.
    ("terminating unmanaged pod is refused without force", pod(deleting=True, owner_kind=None, owner_name=None),
     NONE, DrainContext(), Verdict.REFUSE, "use force"),
    ("terminating unmanaged pod is waited for with force", pod(deleting=True, owner_kind=None, owner_name=None),
     DrainOptions(force=True), DrainContext(), Verdict.WARN, "no controller"),
    # localStorageFilter does not look at the deletion timestamp either.
    ("terminating emptyDir pod is refused without delete-emptydir-data", pod(deleting=True, empty_dir=True),
     NONE, DrainContext(), Verdict.REFUSE, "delete-emptydir-data"),
    # daemonSetFilter: a finished DaemonSet pod "can be removed" like any finished pod.
    ("finished DaemonSet pod is deleted", pod(owner_kind="DaemonSet", owner_name="agent", phase="Succeeded"),
     NONE, DrainContext(), Verdict.KEEP, ""),
    ("failed DaemonSet pod is deleted", pod(owner_kind="DaemonSet", owner_name="agent", phase="Failed"),
     DrainOptions(ignore_daemonsets=True), DrainContext(), Verdict.KEEP, ""),
    # daemonSetFilter: the DaemonSet's GET answers NotFound: deleted with a warning under --force ...
    ("orphaned DaemonSet pod is deleted with force", pod(owner_kind="DaemonSet", owner_name="gone-agent"),
     DrainOptions(force=True), ORPHANS, Verdict.WARN, "DaemonSet gone-agent not found"),
    # ... else the NotFound is the drain's error, even with --ignore-daemonsets.
    ("orphaned DaemonSet pod is refused without force", pod(owner_kind="DaemonSet", owner_name="gone-agent"),
     DrainOptions(ignore_daemonsets=True), ORPHANS, Verdict.REFUSE, "use force"),
    ("a live DaemonSet beside an orphan is still skipped", pod(owner_kind="DaemonSet", owner_name="agent"),
     DrainOptions(ignore_daemonsets=True, force=True), ORPHANS, Verdict.SKIP, "ignoring DaemonSet"),
]


@pytest.mark.parametrize(("case", "subject", "options", "context", "verdict", "reason"), KUBECTL_PARITY,
                         ids=[c[0] for c in KUBECTL_PARITY])
def test_terminating_and_daemonset_pods_decide_like_kubectl(case, subject, options, context, verdict, reason):
    decision = decide_pod(subject, options, context)
    assert decision.verdict is verdict
    assert reason in decision.reason
    # A terminating pod kept is waited for, never evicted again.
    assert decision.evict is (verdict in (Verdict.KEEP, Verdict.WARN) and not subject.deleting)


def test_only_the_daemonsets_of_unfinished_pods_are_looked_up():
    pods = [pod("a", owner_kind="DaemonSet", owner_name="agent"),
            pod("b", owner_kind="DaemonSet", owner_name="done", phase="Succeeded"),
            pod("c")]
    assert daemonsets_to_check(pods) == {("apps", "agent")}


@pytest.mark.parametrize(("case", "subject", "options", "verdict", "reason"), CASES, ids=[c[0] for c in CASES])
def test_filters_decide_like_kubectl(case, subject, options, verdict, reason):
    # GIVEN a pod and drain options  WHEN the filters decide
    decision = decide_pod(subject, options)
    # THEN the verdict and its reason are kubectl's
    assert decision.verdict is verdict
    assert reason in decision.reason


def test_plan_separates_evictions_waits_skips_and_refusals():
    # GIVEN a node with one pod of each kind, and a pod of another node
    pods = [
        pod("web-1"),
        pod("web-2", deleting=True),
        pod("agent", owner_kind="DaemonSet"),
        pod("bare", owner_kind=None),
        pod("elsewhere", node="node-2"),
    ]
    # WHEN a drain is planned with ignore-daemonsets only
    plan = plan_drain("node-1", pods, DrainOptions(ignore_daemonsets=True))
    # THEN only node-1's pods are planned, each in its place
    assert [d.pod.name for d in plan.to_evict] == ["web-1"]
    assert [d.pod.name for d in plan.to_wait_for] == ["web-1", "web-2"]
    assert [d.pod.name for d in plan.skipped] == ["agent"]
    assert [d.pod.name for d in plan.refused] == ["bare"]


@pytest.mark.parametrize("selector", ["app in", "!app=web", "a=(b"])
def test_bad_label_selector_is_refused_naming_the_field(selector):
    with pytest.raises(InvalidInput, match="pod_selector"):
        DrainOptions(pod_selector=selector)


def test_pod_selector_limits_the_plan():
    pods = [pod("web-1"), pod("api-1", labels=(("app", "api"),))]
    plan = plan_drain("node-1", pods, DrainOptions(pod_selector="app=api"))
    assert [d.pod.name for d in plan.decisions] == ["api-1"]


@pytest.mark.parametrize(
    ("options", "problem_field"),
    [(DrainOptions, "grace_seconds"), (DrainOptions, "timeout_seconds")],
)
def test_invalid_options_name_their_field(options, problem_field):
    with pytest.raises(InvalidInput, match=problem_field):
        options(**{problem_field: -5})


def test_options_round_trip_through_a_dict():
    options = DrainOptions(ignore_daemonsets=True, grace_seconds=3, pod_selector="app=web", timeout_seconds=60)
    assert DrainOptions.from_dict(options.to_dict()) == options
    assert options.eviction_grace_seconds == 3
    assert DrainOptions().eviction_grace_seconds is None


def test_pdb_hold_names_the_tightest_budget_and_several_budgets():
    web = pod("web-1")
    strict = Pdb("apps", "web-strict", LabelSelector.match_labels({"app": "web"}), min_available="1", disruptions_allowed=0,
                 current_healthy=1, desired_healthy=1, expected_pods=1)
    other_ns = Pdb("other", "web", LabelSelector.match_labels({"app": "web"}), max_unavailable="1", disruptions_allowed=1)
    hold = pdb_hold(web, [strict, other_ns])
    assert (hold.pdb, hold.disruptions_allowed) == ("apps/web-strict", 0)
    assert "minAvailable 1" in hold.reason
    second = Pdb("apps", "web-any", LabelSelector.match_labels({"app": "web"}), max_unavailable="1", disruptions_allowed=1)
    both = pdb_hold(web, [strict, second])
    assert both.pdb == "apps/web-any, apps/web-strict"
    assert pdb_hold(pod("api", labels=(("app", "api"),)), [strict]) is None


@pytest.mark.parametrize(
    ("states", "status"),
    [
        ((), DrainStatus.DRAINED),
        ((PodDrainState.GONE, PodDrainState.SKIPPED), DrainStatus.DRAINED),
        ((PodDrainState.GONE, PodDrainState.EVICTING), DrainStatus.IN_PROGRESS),
        ((PodDrainState.RETRYING,), DrainStatus.IN_PROGRESS),
        ((PodDrainState.EVICTING, PodDrainState.BLOCKED), DrainStatus.BLOCKED),
        ((PodDrainState.BLOCKED, PodDrainState.FAILED), DrainStatus.FAILED),
        ((PodDrainState.FAILED, PodDrainState.REFUSED), DrainStatus.REFUSED),
    ],
)
def test_node_status_from_pod_states(states, status):
    reports = [PodDrainReport("apps", f"p{i}", f"u{i}", s) for i, s in enumerate(states)]
    assert drain_status(reports) is status


@pytest.mark.parametrize(
    ("owners", "owner_kind"),
    [
        ([{"kind": "ReplicaSet", "name": "web-5d8f", "controller": True}], "ReplicaSet"),
        # kubectl's unreplicatedFilter asks metav1.GetControllerOf: a non-controller owner is no controller,
        # so the pod is unmanaged (refused without force).
        ([{"kind": "ConfigMap", "name": "cfg"}], None),
        ([{"kind": "ConfigMap", "name": "cfg", "controller": False},
          {"kind": "StatefulSet", "name": "db", "controller": True}], "StatefulSet"),
        ([], None),
    ],
)
def test_the_adapter_counts_only_the_controller_as_owner(owners, owner_kind):
    import json

    from upgrade.adapters.kube import _POD, pod_from_json

    raw = {"metadata": {"namespace": "apps", "name": "p", "uid": "u", "ownerReferences": owners},
           "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}}
    read = pod_from_json(_POD.decode(json.dumps(raw).encode()))
    assert read.owner_kind == owner_kind
    assert decide_pod(read, NONE).verdict is (Verdict.REFUSE if owner_kind is None else Verdict.KEEP)
