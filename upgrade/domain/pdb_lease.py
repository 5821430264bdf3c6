"""A PodDisruptionBudget relaxed by one run at a time, and restored only if no one else changed it.

The relax-pdb remediation writes a PDB the cluster's owners also edit, and two runs (on two pools
whose pods one PDB covers, or a run after a run that died) may want the same PDB. Rules:

- One lease per PDB across runs and pools: a row in the state store, keyed by cluster and PDB.
  The first run records the PDB's spec in it as the original; a run finding the lease held by an
  active run waits for it; a lease left by a run that is over is taken over with its original
  (so a second run never records a relaxed spec as "the original").
- Before relaxing, the lease says what the run writes and which ``metadata.generation`` its write
  produces: the write is conditional on the resourceVersion read just before, so it bumps the
  generation by exactly one. A crash between the write and any later record cannot lose it.
- The restore writes the original back only while the PDB is exactly what the run wrote: its
  generation is the one the run's write produced (a spec edit by anyone else bumps it; the
  disruption controller's status updates change the resourceVersion, not the generation) and its
  spec the relaxed one. The restore itself is conditional on the resourceVersion just read, so an
  edit in between is a 409, never overwritten. Anything else someone changed is left as it is,
  and the run alerts.

Pure: the services read and write the lease and the PDB through their ports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from upgrade.domain.model import ClusterRef, PdbManifest
from upgrade.domain.quarantine import relaxed_spec

BUDGET_FIELDS = ("minAvailable", "maxUnavailable")


def same_spec(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two PDB specs are the same (a budget of 1 and "1" are one budget; absent is null)."""
    for key in set(a) | set(b):
        left, right = a.get(key), b.get(key)
        if key in BUDGET_FIELDS:
            left, right = (None if left is None else str(left)), (None if right is None else str(right))
        if left != right:
            return False
    return True


def lease_partition(cluster: ClusterRef) -> str:
    """Table storage keys may not hold '/': the cluster by its id parts."""
    return f"pdb-lease:{cluster.subscription_id}:{cluster.resource_group}:{cluster.name}".lower()


def lease_key(pdb: str) -> str:
    """``namespace/name`` as a row key (':' never occurs in a Kubernetes name)."""
    return pdb.replace("/", ":", 1)


@dataclass(frozen=True)
class PdbLease:
    """Who relaxes one PDB, its spec before any relax, and what the holder writes."""

    pdb: str  # namespace/name
    run_id: str
    original: dict[str, Any]
    original_generation: int
    relaxed: dict[str, Any] | None = None  # the spec the holder writes; None until it relaxes
    relaxed_generation: int | None = None  # metadata.generation its conditional write produces

    def to_storage(self) -> dict[str, Any]:
        return {
            "pdb": self.pdb,
            "run_id": self.run_id,
            "original": self.original,
            "original_generation": self.original_generation,
            "relaxed": self.relaxed,
            "relaxed_generation": self.relaxed_generation,
        }

    @classmethod
    def from_storage(cls, value: Mapping[str, Any]) -> PdbLease:
        return cls(
            pdb=value["pdb"],
            run_id=value["run_id"],
            original=dict(value["original"]),
            original_generation=int(value["original_generation"]),
            relaxed=dict(value["relaxed"]) if value.get("relaxed") is not None else None,
            relaxed_generation=value.get("relaxed_generation"),
        )

    @classmethod
    def record(cls, pdb: str, run_id: str, current: PdbManifest) -> PdbLease:
        """A new lease: the PDB as it is now is the original."""
        return cls(pdb, run_id, dict(current.spec), current.generation)

    def holds_relaxed(self, current: PdbManifest) -> bool:
        """Whether the PDB is exactly what the holder wrote: no one changed its spec since."""
        return (
            self.relaxed is not None
            and current.generation == self.relaxed_generation
            and same_spec(current.spec, self.relaxed)
        )


@dataclass(frozen=True)
class RelaxPlan:
    """What relaxing one PDB to ``wanted`` takes: the lease to store first, and whether to write."""

    lease: PdbLease
    write: bool
    adopted_edit: bool = False  # someone changed the PDB since it was recorded: their spec is the original
    # ... after the run's own relax had landed (the generation went past the one its write made):
    # an edit made while the PDB was relaxed, which the operator must hear of
    edited_after_relax: bool = False


def plan_relax(lease: PdbLease, current: PdbManifest, max_unavailable: int) -> RelaxPlan:
    """The lease (with the original kept, or another's edit adopted as the new original), the spec
    to write (the original relaxed to ``max_unavailable``) and the generation of the run's write,
    conditional on ``current.resource_version``."""
    adopted = after_relax = False
    if not lease.holds_relaxed(current) and not same_spec(current.spec, lease.original):
        # Neither the original nor the holder's relax: the owners changed it. That is the original now.
        after_relax = lease.relaxed_generation is not None and current.generation > lease.relaxed_generation
        lease = replace(lease, original=dict(current.spec), original_generation=current.generation,
                        relaxed=None, relaxed_generation=None)
        adopted = True
    wanted = relaxed_spec(lease.original, max_unavailable)
    if same_spec(current.spec, wanted):
        return RelaxPlan(replace(lease, relaxed=dict(wanted), relaxed_generation=current.generation), False,
                         adopted, after_relax)
    return RelaxPlan(replace(lease, relaxed=dict(wanted), relaxed_generation=current.generation + 1), True, adopted,
                     after_relax)


class RestoreAction(StrEnum):
    RESTORE = "restore"  # the PDB is what the run wrote: write the original back, conditionally
    UNCHANGED = "unchanged"  # the PDB is the original already (never relaxed, or restored)
    EDITED = "edited"  # someone else changed it since the relax: leave it as they set it


def restore_action(lease: PdbLease, current: PdbManifest) -> RestoreAction:
    if same_spec(current.spec, lease.original):
        return RestoreAction.UNCHANGED
    if lease.holds_relaxed(current):
        return RestoreAction.RESTORE
    return RestoreAction.EDITED
