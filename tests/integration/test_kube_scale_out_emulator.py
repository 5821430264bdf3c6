"""The scale-out remediation's Kubernetes calls through the real ``kubernetes`` client against the
emulator: an HPA's bounds patched conditionally and acted on as the HPA controller does without
metrics, and a StatefulSet scaled through its Scale subresource, with its ordinals and claims."""

from __future__ import annotations

import time

import pytest

from upgrade.adapters.kube import kube_from_kubeconfig
from upgrade.errors import Conflict, NotFound

pytestmark = pytest.mark.integration


def _builder(when_scaled: str = "Retain", policy: str = "OrderedReady"):
    from sandbox.aks_emulator.scenarios import ClusterBuilder

    return (
        ClusterBuilder("aks-scale-out")
        .pool("work", count=3)
        .deployment("apps", "web", replicas=2, pool="work")
        .hpa("apps", "web-hpa", target=("Deployment", "web"), min_replicas=2, max_replicas=4)
        .statefulset("apps", "db", replicas=2, when_scaled=when_scaled, pod_management_policy=policy)
        .pdb("apps", "db-pdb", app="db", min_available=2)
    )


@pytest.fixture
def connect(emulator, tmp_path):
    kubes = []

    def start(**options):
        emu = emulator(_builder(**options))
        (emulated,) = emu.clusters()
        path = tmp_path / "kubeconfig"
        emu.write_kubeconfig(emulated.arm_id, path)
        kube = kube_from_kubeconfig(str(path))
        kubes.append(kube)
        return emulated, kube

    yield start
    for kube in kubes:
        kube.close()


def _wait_until(condition, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)
    return found


def _workload(kube, kind: str, name: str):
    return next(w for w in kube.list_workloads(namespace="apps") if (w.kind, w.name) == (kind, name))


def test_hpa_bounds_are_patched_only_at_the_version_read_and_the_hpa_brings_its_target_into_them(connect):
    _, kube = connect()
    # GIVEN web (2 replicas) scaled by web-hpa (2..4)
    [hpa] = kube.list_autoscalers(namespace="apps")
    assert (hpa.name, hpa.target_kind, hpa.target_name, hpa.min_replicas, hpa.max_replicas) == (
        "web-hpa", "Deployment", "web", 2, 4)
    assert kube.get_autoscaler("apps", "web-hpa") == hpa and hpa.resource_version
    # WHEN minReplicas is raised to 3 at the version read
    raised = kube.patch_autoscaler_bounds("apps", "web-hpa", 3, 4, resource_version=hpa.resource_version)
    # THEN it is stored, and the HPA controller scales web to its new minimum (no metrics needed for that)
    assert (raised.min_replicas, raised.max_replicas) == (3, 4) and raised.resource_version != hpa.resource_version
    _wait_until(lambda: _workload(kube, "Deployment", "web").ready == 3, "web at 3 Ready replicas")
    assert kube.get_scale("Deployment", "apps", "web").replicas == 3
    # AND a patch at a stale version is refused (409), leaving the bounds as they are
    with pytest.raises(Conflict) as stale:
        kube.patch_autoscaler_bounds("apps", "web-hpa", 2, 4, resource_version=hpa.resource_version)
    assert stale.value.status == 409
    # AND with the minimum back at 2 the HPA keeps 3 (within its bounds, only metrics would change it) ...
    current = kube.get_autoscaler("apps", "web-hpa")
    kube.patch_autoscaler_bounds("apps", "web-hpa", 2, 4, resource_version=current.resource_version)
    assert kube.get_scale("Deployment", "apps", "web").replicas == 3
    # ... while a maximum below the count brings it down to the maximum
    current = kube.get_autoscaler("apps", "web-hpa")
    kube.patch_autoscaler_bounds("apps", "web-hpa", 2, 2, resource_version=current.resource_version)
    _wait_until(lambda: kube.get_scale("Deployment", "apps", "web").replicas == 2, "web at the maximum 2")
    # AND bounds the API server refuses are a clear error; a missing HPA is NotFound
    current = kube.get_autoscaler("apps", "web-hpa")
    with pytest.raises(Exception, match="must be greater than or equal to `minReplicas`"):
        kube.patch_autoscaler_bounds("apps", "web-hpa", 3, 2, resource_version=current.resource_version)
    with pytest.raises(NotFound):
        kube.get_autoscaler("apps", "no-such-hpa")


def test_a_statefulset_scales_by_its_highest_ordinals_one_at_a_time_and_keeps_their_claims(connect):
    emulated, kube = connect()
    # GIVEN StatefulSet db (2 replicas, OrderedReady, claims retained when scaled), settled
    db = _workload(kube, "StatefulSet", "db")
    assert (db.desired, db.ready) == (2, 2)
    state = db.statefulset
    assert state.current_revision and state.current_revision == state.update_revision
    assert (state.pod_management_policy, state.when_scaled, state.claim_templates) == ("OrderedReady", "Retain",
                                                                                      ("data",))
    assert (state.update_strategy, state.replicas, state.updated_replicas) == ("RollingUpdate", 2, 2)
    assert kube.list_volume_claims(namespace="apps") == ["data-db-0", "data-db-1"]
    scale = kube.get_scale("StatefulSet", "apps", "db")
    # WHEN it is raised to 4 at the version read while no node takes a pod (all cordoned)
    nodes = [n.name for n in kube.list_nodes(label_selector="kubernetes.azure.com/agentpool=work")]
    for node in nodes:
        kube.set_unschedulable(node, True)
    kube.replace_scale("StatefulSet", "apps", "db", 4, resource_version=scale.resource_version)
    for _ in range(3):
        emulated.kube.tick()
    # THEN ordinal 2 comes first (Pending), and 3 not before 2 is Running and Ready
    pods = {p.name: p for p in kube.list_pods(namespace="apps", label_selector="app=db")}
    assert sorted(pods) == ["db-0", "db-1", "db-2"] and pods["db-2"].phase == "Pending"
    for node in nodes:
        kube.set_unschedulable(node, False)
    _wait_until(lambda: _workload(kube, "StatefulSet", "db").ready == 4, "db at 4 Ready replicas")
    assert kube.list_volume_claims(namespace="apps") == ["data-db-0", "data-db-1", "data-db-2", "data-db-3"]
    # WHEN it is scaled back to 2
    scale = kube.get_scale("StatefulSet", "apps", "db")
    kube.replace_scale("StatefulSet", "apps", "db", 2, resource_version=scale.resource_version)
    # THEN the highest ordinals go, and their claims stay (whenScaled Retain)
    _wait_until(lambda: sorted(p.name for p in kube.list_pods(namespace="apps", label_selector="app=db"))
                == ["db-0", "db-1"], "db back to ordinals 0 and 1")
    assert kube.list_volume_claims(namespace="apps") == ["data-db-0", "data-db-1", "data-db-2", "data-db-3"]
    # AND a staged rollout shows as a pending update revision
    emulated.kube.begin_statefulset_rollout("apps", "db", partition=2)
    state = _workload(kube, "StatefulSet", "db").statefulset
    assert state.update_revision != state.current_revision and state.partition == 2


def test_a_statefulset_that_deletes_claims_when_scaled_leaves_none_behind(connect):
    emulated, kube = connect(when_scaled="Delete", policy="Parallel")
    nodes = [n.name for n in kube.list_nodes(label_selector="kubernetes.azure.com/agentpool=work")]
    for node in nodes:
        kube.set_unschedulable(node, True)
    scale = kube.get_scale("StatefulSet", "apps", "db")
    kube.replace_scale("StatefulSet", "apps", "db", 4, resource_version=scale.resource_version)
    emulated.kube.tick()
    # Parallel: both new ordinals at once, without waiting for each other
    assert {"db-2", "db-3"} <= {p.name for p in kube.list_pods(namespace="apps", label_selector="app=db")}
    for node in nodes:
        kube.set_unschedulable(node, False)
    _wait_until(lambda: _workload(kube, "StatefulSet", "db").ready == 4, "db at 4 Ready replicas")
    # (a claim no pod mounts, left from before, is no removed pod's)
    emulated.kube.add_volume_claim("apps", "data-db-7")
    scale = kube.get_scale("StatefulSet", "apps", "db")
    kube.replace_scale("StatefulSet", "apps", "db", 2, resource_version=scale.resource_version)
    _wait_until(lambda: kube.list_volume_claims(namespace="apps") == ["data-db-0", "data-db-1", "data-db-7"],
                "the removed ordinals' claims deleted, the one left from before kept")


def test_an_evicted_statefulset_pod_comes_back_under_its_own_name(connect):
    _, kube = connect()
    scale = kube.get_scale("StatefulSet", "apps", "db")
    kube.replace_scale("StatefulSet", "apps", "db", 3, resource_version=scale.resource_version)
    _wait_until(lambda: _workload(kube, "StatefulSet", "db").ready == 3, "db at 3 Ready replicas")
    before = kube.get_pod("apps", "db-0")
    kube.evict("apps", "db-0")
    _wait_until(lambda: (p := next((p for p in kube.list_pods(namespace="apps", label_selector="app=db")
                                    if p.name == "db-0"), None)) is not None and p.uid != before.uid and p.ready,
                "db-0 back, a new pod, Ready")


def test_the_alerts_commands_for_an_hpa_owned_deployment_work_with_kubectl(emulator, tmp_path):
    """The quarantine alert's scale-out commands for a workload an HPA scales, run by kubectl."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from sandbox.aks_emulator.scenarios import ClusterBuilder
    from upgrade.domain.model import ClusterRef
    from upgrade.domain.quarantine import diagnose_node

    # GIVEN web (2 replicas, scaled by web-hpa 2..2) with both pods on node 0, whose PDB allows no disruption
    emu = emulator(ClusterBuilder("aks-hpa-commands").pool("work", count=3)
                   .deployment("apps", "web", replicas=2, pool="work", place_on=[("work", 0), ("work", 0)])
                   .hpa("apps", "web-hpa", target=("Deployment", "web"), min_replicas=2, max_replicas=2)
                   .pdb("apps", "web-pdb", app="web", min_available=2))
    (emulated,) = emu.clusters()
    kubeconfig = tmp_path / "kubeconfig"
    emu.write_kubeconfig(emulated.arm_id, kubeconfig)
    kube = kube_from_kubeconfig(str(kubeconfig))
    try:
        [node] = sorted({p.node for p in kube.list_pods(namespace="apps", label_selector="app=web")})
        kube.set_unschedulable(node, True)
        finding = diagnose_node(ClusterRef.parse(emulated.arm_id), kube.get_node(node), kube.list_pods(node=node),
                                kube.list_pdbs(), autoscalers=kube.list_autoscalers(namespace="apps"))
        [scale_out] = [o for o in finding.options if o.kind == "scale-out"]
        commands = list(scale_out.commands)
        drain = next(i for i, c in enumerate(commands) if c.startswith("kubectl drain"))
        restore = [c for c in commands[drain + 1:] if c.startswith("kubectl patch hpa")]
        kubectl_dir = Path(sys.executable).parent
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path),
               "PATH": f"{kubectl_dir}:{os.environ['PATH']}"}

        def shell(lines: list[str]) -> subprocess.CompletedProcess:
            return subprocess.run(["/bin/sh", "-eu", "-c", "\n".join(lines)], env=env, capture_output=True,
                                  text=True, timeout=120, check=False)

        # WHEN an operator runs the raise (its reads, then the patch of the HPA's bounds), and, in the
        # same shell, the restore (the drain between them left out)
        seen = tmp_path / "bounds-while-raised"
        show = (f"kubectl get hpa web-hpa --namespace apps -o jsonpath='{{.spec.minReplicas}},{{.spec.maxReplicas}},' > "
                f"{seen}; kubectl get deployment web --namespace apps -o jsonpath='{{.spec.replicas}}' >> {seen}")
        done = shell([*commands[:drain], show, *restore])
        # THEN kubectl applied both: the HPA was at (4, 4) (2 replicas + 2 blocked) and had set web to 4
        # (the emulator's HPA controller acts at once), and is back at (2, 2)
        assert done.returncode == 0, done.stderr
        assert seen.read_text() == "4,4,4"
        hpa = kube.get_autoscaler("apps", "web-hpa")
        assert (hpa.min_replicas, hpa.max_replicas) == (2, 2)
        # AND the raise is refused (the patch's test operations fail) when the bounds changed after the reads
        edit = "kubectl patch hpa web-hpa --namespace apps --type merge -p '{\"spec\":{\"maxReplicas\":3}}'"
        stale = shell([*commands[: drain - 1], edit, commands[drain - 1]])
        assert stale.returncode != 0
        hpa = kube.get_autoscaler("apps", "web-hpa")
        assert (hpa.min_replicas, hpa.max_replicas) == (2, 3)
    finally:
        kube.close()
