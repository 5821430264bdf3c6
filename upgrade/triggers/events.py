"""Event Grid trigger (``on_aks_event``): AKS system-topic events, and the Fleet Manager gate events of
the Azure Resource Notifications AKS Resources system topic."""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("upgrade.triggers.events")


def event_as_dict(event: func.EventGridEvent) -> dict:
    """The host's event object as the JSON it came in, for the domain parser.

    A subscription in the CloudEvents 1.0 schema delivers a ``func.CloudEvent`` to the same
    trigger (the worker refuses a Union annotation, so the check is at run time).
    """
    if isinstance(event, func.CloudEvent):
        return {
            "specversion": "1.0",
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": event.time.isoformat() if event.time else None,
            "data": event.get_json(),
        }
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "dataVersion": event.data_version,
        "data": event.get_json(),
    }


@bp.function_name("on_aks_event")
@bp.event_grid_trigger(arg_name="event")
def on_aks_event(event: func.EventGridEvent) -> None:
    from upgrade.domain.events import parse_events
    from upgrade.domain.fleet import is_gate_event
    from upgrade.errors import InvalidInput
    from upgrade.services.event_reactions import react_to_events
    from upgrade.wiring import platform

    payload = event_as_dict(event)
    if is_gate_event(payload):
        _on_fleet_gate_event(payload)
        return
    try:
        events = parse_events(payload)
    except InvalidInput as exc:
        # Retrying a malformed event cannot help: log what was wrong and drop it.
        log.error("AKS event %s refused: %s", event.id, exc)
        return
    for reaction in react_to_events(events, platform()):
        log.info("AKS event reaction: %s", reaction)


def _on_fleet_gate_event(payload: dict) -> None:
    from upgrade.domain.fleet import parse_gate_event
    from upgrade.errors import InvalidInput
    from upgrade.services.fleet_gates import react_to_gate_event
    from upgrade.wiring import platform

    try:
        gate_event = parse_gate_event(payload)
    except InvalidInput as exc:
        log.error("Fleet gate event %s refused: %s", payload.get("id"), exc)
        return
    log.info("Fleet gate event reaction: %s", react_to_gate_event(gate_event, platform()))
