"""relax-pdb against the emulator's API server: the restore is conditional, so a PDB its owners
changed while it was relaxed keeps their change (with an alert), and one only the disruption
controller touched (status writes) is restored exactly. The product's services run in process with
the real Kubernetes and AKS adapters (tests/integration/conftest_product.py)."""

from __future__ import annotations

import pytest

from upgrade.domain.pdb_lease import lease_partition
from upgrade.services.remediation import request_remediation
from upgrade.services.rolling import start_rolling_run

pytestmark = pytest.mark.integration

POLICY = {"rolling": {"maxBlockedNodes": "2"}, "remediation": {"relax-pdb": "approval-required"}}
NAMESPACE, PDB = "default", "app-a-pdb"


def quarantined_scenario_2(product):
    """Scenario 2 upgraded by the product: node 1 quarantined by pod A's PDB."""
    emu, app = product("seed-pdb", POLICY)
    run = start_rolling_run(app.platform, cluster=app.ref, pool="nodepool1", target_version="1.31")
    app.deliver(lambda: not app.run(run.run_id).active)
    (quarantined,) = app.run(run.run_id).facts["quarantined_nodes"]
    return emu, app, quarantined


def relax_until_evicting(app, node):
    remediation = request_remediation(app.platform, app.ref, node, "relax-pdb", actor="operator")
    app.deliver(lambda: app.run(remediation.run_id).state == "remediation.evict")
    relaxed = app.kube.get_pdb_manifest(NAMESPACE, PDB)
    assert relaxed.spec.get("maxUnavailable") == 1 and "minAvailable" not in relaxed.spec
    return remediation


def test_a_pdb_its_owners_changed_while_relaxed_keeps_their_change(product):
    # GIVEN a relax-pdb run that has relaxed pod A's PDB
    _, app, node = quarantined_scenario_2(product)
    original = app.kube.get_pdb_manifest(NAMESPACE, PDB).spec
    remediation = relax_until_evicting(app, node)
    # WHEN the PDB's owners set their own budget through the API meanwhile
    app.kube.policy.patch_namespaced_pod_disruption_budget(
        PDB, NAMESPACE, {"spec": {"maxUnavailable": "50%"}}, _content_type="application/merge-patch+json")
    theirs = app.kube.get_pdb_manifest(NAMESPACE, PDB).spec
    app.deliver(lambda: not app.run(remediation.run_id).active)
    # THEN the run did not overwrite it, said so, and an alert names the PDB and both specs
    assert app.kube.get_pdb_manifest(NAMESPACE, PDB).spec == theirs
    finished = app.run(remediation.run_id)
    assert finished.facts["pdb_restored"] is False
    [alert] = [a for a in app.platform.alerts.published if a.kind == "remediation.pdb-not-restored"]
    assert alert.details["original"] == original and alert.details["current"] == theirs
    assert app.platform.state.list(lease_partition(app.ref)) == []


def test_a_pdb_only_the_disruption_controller_touched_is_restored_exactly(product):
    # GIVEN a relax-pdb run that has relaxed pod A's PDB
    _, app, node = quarantined_scenario_2(product)
    original = app.kube.get_pdb_manifest(NAMESPACE, PDB)
    remediation = relax_until_evicting(app, node)
    # WHEN the run evicts pod A (the disruption controller rewrites the PDB's status) and restores
    app.deliver(lambda: not app.run(remediation.run_id).active)
    # THEN the spec is exactly the original: status writes are not edits
    finished = app.run(remediation.run_id)
    assert finished.status == "succeeded", finished.reason
    restored = app.kube.get_pdb_manifest(NAMESPACE, PDB)
    assert restored.spec == original.spec and restored.generation == original.generation + 2
    assert not [a for a in app.platform.alerts.published if a.kind == "remediation.pdb-not-restored"]
