"""Restoring relaxed PDBs and giving their leases back (upgrade.domain.pdb_lease's rules).

Used by the relax-pdb remediation (its restore step and its poison cleanup) and by the quarantine
scan, which restores the PDBs of leases whose run is over without having restored them, so a
relaxed PDB is never forgotten: it is restored exactly, or an alert says why not.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from upgrade.domain.alerts import Alert
from upgrade.domain.model import ClusterRef, PdbManifest
from upgrade.domain.pdb_lease import PdbLease, RestoreAction, lease_key, lease_partition, restore_action
from upgrade.domain.runs import RunRecord
from upgrade.errors import Conflict, NotFound, TemporaryError
from upgrade.ports import Platform

log = logging.getLogger("upgrade.pdb_leases")

# A 409 on the conditional restore (a status update or an edit in between): read again, this often.
RESTORE_CONFLICT_ATTEMPTS = 3


def active_run(platform: Platform, run_id: str) -> RunRecord | None:
    """The run if it is still active; None when it is over or unknown."""
    try:
        run = platform.runs.get(run_id)
    except NotFound:
        return None
    return run if run.active else None


@dataclass(frozen=True)
class Restored:
    restored: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    edited: tuple[str, ...] = ()  # why each PDB someone else changed was not restored

    def facts(self) -> dict:
        return {"pdb_restored": not self.edited, "pdbs_not_restored": list(self.edited)}


def restore_and_release(platform: Platform, cluster: ClusterRef, lease: PdbLease, etag: str, *,
                        pool: str | None, node: str | None) -> tuple[RestoreAction, str | None]:
    """Write the lease's original back if the PDB is still what its holder wrote (conditional on
    the resourceVersion read), then delete the lease. Returns what was done and, when someone else
    changed the PDB, the reason the alert gives. Raises TemporaryError when it keeps conflicting."""
    kube = platform.kube(cluster)
    namespace, name = lease.pdb.split("/", 1)
    current: PdbManifest | None = None
    for _ in range(RESTORE_CONFLICT_ATTEMPTS):
        try:
            current = kube.get_pdb_manifest(namespace, name)
        except NotFound:
            action = RestoreAction.UNCHANGED  # deleted meanwhile: nothing left to restore
            break
        action = restore_action(lease, current)
        if action is not RestoreAction.RESTORE:
            break
        try:
            kube.patch_pdb_spec(namespace, name, lease.original, resource_version=current.resource_version)
            break
        except Conflict:
            continue
    else:
        raise TemporaryError(f"PDB {lease.pdb} keeps changing while being restored: trying again", delay_seconds=2.0)
    reason = None
    if action is RestoreAction.EDITED and current is not None:
        reason = alert_edited(platform, cluster, lease, current, pool=pool, node=node)
    try:
        platform.state.delete(lease_partition(cluster), lease_key(lease.pdb), etag=etag)
    except Conflict:
        pass  # taken over meanwhile: the new holder restores it
    return action, reason


def restore_leased_pdbs(platform: Platform, cluster: ClusterRef, run: RunRecord) -> Restored:
    """Restore and release each PDB lease ``run`` holds."""
    partition = lease_partition(cluster)
    restored, unchanged, edited = [], [], []
    for key in run.facts.get("pdb_leases") or ():
        found = platform.state.get(partition, lease_key(key))
        if found is None or found[0].get("run_id") != run.run_id:
            continue  # released already
        action, reason = restore_and_release(platform, cluster, PdbLease.from_storage(found[0]), found[1],
                                             pool=run.pool, node=run.options.get("node"))
        (restored if action is RestoreAction.RESTORE else unchanged).append(key)
        if reason:
            edited.append(reason)
    return Restored(tuple(restored), tuple(unchanged), tuple(edited))


def sweep_stale_leases(platform: Platform, cluster: ClusterRef) -> list[str]:
    """Restore the PDBs of leases whose run is over (it died before its restore and its cleanup):
    one state-store list per scan."""
    notes = []
    partition = lease_partition(cluster)
    for key, value in platform.state.list(partition):
        lease = PdbLease.from_storage(value)
        if active_run(platform, lease.run_id) is not None:
            continue
        found = platform.state.get(partition, key)
        if found is None:
            continue
        lease, etag = PdbLease.from_storage(found[0]), found[1]
        if active_run(platform, lease.run_id) is not None:
            continue  # taken over meanwhile
        action, reason = restore_and_release(platform, cluster, lease, etag, pool=None, node=None)
        notes.append(reason or f"PDB {lease.pdb} left relaxed by run {lease.run_id}: {action.value}")
        log.warning("stale lease of PDB %s (run %s): %s", lease.pdb, lease.run_id, reason or action.value)
    return notes


def alert_edited(platform: Platform, cluster: ClusterRef, lease: PdbLease, current: PdbManifest, *,
                  pool: str | None, node: str | None) -> str:
    reason = (f"PDB {lease.pdb} was changed by someone else while run {lease.run_id} had it relaxed: "
              f"left as they set it ({json.dumps(current.spec, sort_keys=True)}), not restored to "
              f"{json.dumps(lease.original, sort_keys=True)}")
    platform.alerts.publish(Alert(
        kind="remediation.pdb-not-restored", severity="warning", cluster=cluster.arm_id, pool=pool, node=node,
        run_id=lease.run_id, summary=f"{reason}. Check that the budget is what you want.",
        details={"pdb": lease.pdb, "original": lease.original, "relaxed": lease.relaxed, "current": current.spec},
        dedup_key=f"{cluster.arm_id.lower()}|{lease.run_id}|{lease.pdb}|not-restored",
    ))
    log.warning("%s", reason)
    return reason
