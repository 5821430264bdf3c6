"""Typed AKS Event Grid events (system topic ``Microsoft.ContainerService.ManagedClusters``).

Both delivery schemas occur in the wild and are accepted: the Event Grid schema (``topic``,
``eventType``, ``eventTime``, ``dataVersion``) and CloudEvents 1.0 (``source``, ``type``, ``time``,
``specversion``). Input is a dict (what the trigger builds from ``func.EventGridEvent``), a list of
dicts, or raw JSON text/bytes holding one event or an array. Each known event becomes a frozen
dataclass carrying the cluster's parsed ARM id; an unknown type is skipped with an info log;
anything malformed raises InvalidInput naming the field (``[1].data.nodePoolName`` in an array).
Delivery is at-least-once and unordered, so consumers deduplicate on ``id``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from upgrade.domain.model import ClusterRef
from upgrade.errors import InvalidInput

log = logging.getLogger(__name__)

EVENT_GRID_SCHEMA = "EventGridSchema"
CLOUD_EVENT_SCHEMA = "CloudEventSchemaV1_0"
TYPE_PREFIX = "Microsoft.ContainerService."
_WHAT = "AKS event"


@dataclass(frozen=True, kw_only=True)
class AksEvent:
    """What every AKS event carries. ``subject`` is the cluster name as Event Grid sent it."""

    event_type: ClassVar[str] = ""

    id: str
    cluster: ClusterRef
    subject: str | None
    event_time: datetime | None
    schema: str  # EVENT_GRID_SCHEMA | CLOUD_EVENT_SCHEMA
    data_version: str | None = None

    @property
    def short_type(self) -> str:
        return self.event_type.removeprefix(TYPE_PREFIX)

    def to_public(self) -> dict[str, Any]:
        """JSON-ready form (CLI output, logs, run facts)."""
        data = {json_name: getattr(self, attribute) for json_name, attribute, _ in _DATA_FIELDS[type(self)]}
        return {
            "type": self.event_type,
            "id": self.id,
            "cluster": {
                "armId": self.cluster.arm_id,
                "subscriptionId": self.cluster.subscription_id,
                "resourceGroup": self.cluster.resource_group,
                "name": self.cluster.name,
            },
            "subject": self.subject,
            "eventTime": self.event_time.isoformat() if self.event_time else None,
            "schema": self.schema,
            "data": data,
        }


@dataclass(frozen=True, kw_only=True)
class NewKubernetesVersionAvailable(AksEvent):
    event_type: ClassVar[str] = TYPE_PREFIX + "NewKubernetesVersionAvailable"

    latest_supported_kubernetes_version: str
    latest_stable_kubernetes_version: str
    lowest_minor_kubernetes_version: str
    latest_preview_kubernetes_version: str | None = None


@dataclass(frozen=True, kw_only=True)
class ClusterSupportEnding(AksEvent):
    event_type: ClassVar[str] = TYPE_PREFIX + "ClusterSupportEnding"

    kubernetes_version: str


@dataclass(frozen=True, kw_only=True)
class ClusterSupportEnded(AksEvent):
    event_type: ClassVar[str] = TYPE_PREFIX + "ClusterSupportEnded"

    kubernetes_version: str


@dataclass(frozen=True, kw_only=True)
class NodePoolRollingStarted(AksEvent):
    event_type: ClassVar[str] = TYPE_PREFIX + "NodePoolRollingStarted"

    node_pool_name: str


@dataclass(frozen=True, kw_only=True)
class NodePoolRollingSucceeded(AksEvent):
    event_type: ClassVar[str] = TYPE_PREFIX + "NodePoolRollingSucceeded"

    node_pool_name: str


@dataclass(frozen=True, kw_only=True)
class NodePoolRollingFailed(AksEvent):
    """AKS sends no reason: read it from the agent pool's ARM error or Kubernetes events."""

    event_type: ClassVar[str] = TYPE_PREFIX + "NodePoolRollingFailed"

    node_pool_name: str


# Per type: the class and its data fields as (JSON name, attribute, required).
_DATA_FIELDS: dict[type[AksEvent], tuple[tuple[str, str, bool], ...]] = {
    NewKubernetesVersionAvailable: (
        ("latestSupportedKubernetesVersion", "latest_supported_kubernetes_version", True),
        ("latestStableKubernetesVersion", "latest_stable_kubernetes_version", True),
        ("lowestMinorKubernetesVersion", "lowest_minor_kubernetes_version", True),
        ("latestPreviewKubernetesVersion", "latest_preview_kubernetes_version", False),
    ),
    ClusterSupportEnding: (("kubernetesVersion", "kubernetes_version", True),),
    ClusterSupportEnded: (("kubernetesVersion", "kubernetes_version", True),),
    NodePoolRollingStarted: (("nodePoolName", "node_pool_name", True),),
    NodePoolRollingSucceeded: (("nodePoolName", "node_pool_name", True),),
    NodePoolRollingFailed: (("nodePoolName", "node_pool_name", True),),
}
EVENT_CLASSES: dict[str, type[AksEvent]] = {cls.event_type: cls for cls in _DATA_FIELDS}
ALL_EVENT_TYPES: tuple[str, ...] = tuple(EVENT_CLASSES)

# Where each envelope keeps the same information.
_ENVELOPES = {
    EVENT_GRID_SCHEMA: {"type": "eventType", "cluster": "topic", "time": "eventTime", "version": "dataVersion"},
    CLOUD_EVENT_SCHEMA: {"type": "type", "cluster": "source", "time": "time", "version": "specversion"},
}


def parse_events(payload: object) -> list[AksEvent]:
    """Every known AKS event in ``payload`` (dict, list, JSON str/bytes), in order."""
    document = _decode(payload)
    if isinstance(document, list):
        if not document:
            raise InvalidInput(_WHAT, "payload", "the event array is empty")
        parsed = [_parse_one(item, prefix=f"[{index}].") for index, item in enumerate(document)]
    else:
        parsed = [_parse_one(document, prefix="")]
    return [event for event in parsed if event is not None]


def skipped_events(payload: object) -> list[dict[str, str]]:
    """The events of ``payload`` that ``parse_events`` skips, each with its id, type and why."""
    document = _decode(payload)
    skipped = []
    for item in document if isinstance(document, list) else [document]:
        if not isinstance(item, dict):
            continue
        event_type = item.get(_ENVELOPES[CLOUD_EVENT_SCHEMA if "specversion" in item else EVENT_GRID_SCHEMA]["type"])
        if event_type not in EVENT_CLASSES:
            skipped.append({"id": str(item.get("id")), "type": str(event_type),
                            "reason": f"not an AKS event this app handles (it handles {', '.join(ALL_EVENT_TYPES)})"})
    return skipped


def _decode(payload: object) -> object:
    if isinstance(payload, bytes | bytearray):
        try:
            payload = payload.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput(_WHAT, "payload", f"not UTF-8 text ({exc.reason})") from exc
    if isinstance(payload, str):
        try:
            return json.loads(payload)
        except json.JSONDecodeError as exc:
            raise InvalidInput(_WHAT, "payload", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if isinstance(payload, dict | list):
        return payload
    raise InvalidInput(_WHAT, "payload", f"expected a JSON object or array, got {type(payload).__name__}")


def _parse_one(item: object, *, prefix: str) -> AksEvent | None:
    if not isinstance(item, dict):
        raise InvalidInput(_WHAT, prefix.rstrip(".") or "payload", "an event must be a JSON object")
    schema = CLOUD_EVENT_SCHEMA if "specversion" in item else EVENT_GRID_SCHEMA
    names = _ENVELOPES[schema]
    if schema == CLOUD_EVENT_SCHEMA and str(item["specversion"]) != "1.0":
        raise InvalidInput(_WHAT, prefix + "specversion", f"{item['specversion']!r} is not CloudEvents 1.0")
    event_type = _required_text(item, names["type"], prefix)
    event_id = _required_text(item, "id", prefix)
    cls = EVENT_CLASSES.get(event_type)
    if cls is None:
        log.info("Ignoring event %s of type %s: not an AKS event this app handles", event_id, event_type)
        return None
    cluster = ClusterRef.parse(item.get(names["cluster"]), what=_WHAT, field=prefix + names["cluster"])
    data = item.get("data")
    if not isinstance(data, dict):
        raise InvalidInput(_WHAT, prefix + "data", "must be a JSON object with the event's fields")
    values = {}
    for json_name, attribute, required in _DATA_FIELDS[cls]:
        value = data.get(json_name)
        if value is None and not required:
            values[attribute] = None
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(_WHAT, f"{prefix}data.{json_name}", "must be a non-empty string")
        values[attribute] = value.strip()
    subject = item.get("subject")
    data_version = item.get("dataVersion") if schema == EVENT_GRID_SCHEMA else item.get("dataversion")
    return cls(
        id=event_id,
        cluster=cluster,
        subject=subject if isinstance(subject, str) else None,
        event_time=_event_time(item.get(names["time"]), prefix + names["time"]),
        schema=schema,
        data_version=str(data_version) if data_version is not None else None,
        **values,
    )


def _required_text(item: dict, name: str, prefix: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(_WHAT, prefix + name, "is required and must be a non-empty string")
    return value.strip()


def _event_time(value: object, field: str) -> datetime | None:
    """Event time is informative only (ordering is not guaranteed), so it may be absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(_WHAT, field, "must be an ISO 8601 timestamp string")
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidInput(_WHAT, field, f"{value!r} is not an ISO 8601 timestamp") from exc
