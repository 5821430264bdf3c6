"""Azure Kubernetes Fleet Manager gates and update runs (azure-mgmt-containerservicefleet, api-version
2026-06-01): read a gate, read its update run's stages, groups and members, and complete a gate
(a PATCH of ``properties.state``, conditional on the eTag the gate was read with)."""

from __future__ import annotations

from typing import Any

from upgrade.adapters.aks import ARM_SCOPE, SDK_RETRY_TOTAL, LoopbackBearerTokenPolicy, arm_error
from upgrade.domain.fleet import COMPLETED, FleetGate, GateRef, UpdateStage
from upgrade.settings import Settings, is_loopback_url


def _text(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _update_run_parts(arm_id: str) -> tuple[str, str, str]:
    """(resource group, fleet, update run) of ``…/fleets/{f}/updateRuns/{r}``."""
    parts = arm_id.strip("/").split("/")
    if len(parts) != 10 or parts[6].lower() != "fleets" or parts[8].lower() != "updateruns":
        raise ValueError(f"not a Fleet update run ARM id: {arm_id!r}")
    return parts[3], parts[7], parts[9]


class FleetGates:
    def __init__(self, client: Any) -> None:
        self._client = client

    def get_gate(self, gate: GateRef) -> FleetGate:
        try:
            found = self._client.gates.get(gate.resource_group, gate.fleet, gate.name)
        except Exception as exc:
            raise arm_error(f"get Fleet gate {gate.arm_id}", exc) from exc
        props = found.properties
        target = props.target if props is not None else None
        run = target.update_run_properties if target is not None else None
        return FleetGate(gate=gate, state=_text(props.state) if props else "", update_run=target.id if target else "",
                         stage=run.stage if run else None, group=run.group if run else None,
                         timing=_text(run.timing) if run else None, display_name=props.display_name if props else None,
                         etag=found.e_tag)

    def update_run_stages(self, update_run: str) -> list[UpdateStage]:
        resource_group, fleet, name = _update_run_parts(update_run)
        try:
            found = self._client.update_runs.get(resource_group, fleet, name)
        except Exception as exc:
            raise arm_error(f"get Fleet update run {update_run}", exc) from exc
        status = found.properties.status if found.properties is not None else None
        stages = []
        for stage in (status.stages if status is not None else None) or []:
            groups = {group.name: tuple(m.cluster_resource_id for m in (group.members or []) if m.cluster_resource_id)
                      for group in stage.groups or []}
            stages.append(UpdateStage(name=stage.name, groups=groups))
        return stages

    def complete_gate(self, found: FleetGate) -> None:
        """Set the gate Completed, only if it is unchanged since it was read (its eTag)."""
        from azure.core import MatchConditions
        from azure.mgmt.containerservicefleet.models import GatePatch, GatePatchProperties

        gate, etag = found.gate, found.etag
        try:
            self._client.gates.begin_update(
                gate.resource_group, gate.fleet, gate.name, GatePatch(properties=GatePatchProperties(state=COMPLETED)),
                etag=etag, match_condition=MatchConditions.IfNotModified if etag else None).result()
        except Exception as exc:
            raise arm_error(f"complete Fleet gate {gate.arm_id}", exc) from exc


def fleet_from_settings(settings: Settings, subscription_id: str) -> FleetGates:
    from azure.mgmt.containerservicefleet import ContainerServiceFleetMgmtClient

    from upgrade.adapters.auth import arm_credential

    credential = arm_credential(settings)
    kwargs: dict[str, Any] = {"retry_total": SDK_RETRY_TOTAL}
    if is_loopback_url(settings.arm_endpoint) and not settings.arm_endpoint.lower().startswith("https"):
        kwargs["authentication_policy"] = LoopbackBearerTokenPolicy(credential, ARM_SCOPE)
    return FleetGates(ContainerServiceFleetMgmtClient(credential, subscription_id, base_url=settings.arm_endpoint,
                                                      **kwargs))
