"""Typed AKS events (upgrade.domain.events) from the recorded samples under tests/events/."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from upgrade.domain import events as ev
from upgrade.domain.model import ClusterRef
from upgrade.errors import InvalidInput

EVENTS = Path(__file__).resolve().parent.parent / "events"
CLUSTER = ClusterRef("8f2b7c3e-4d5a-4b6c-9e1f-2a3b4c5d6e7f", "rg-prod-weu", "aks-prod-weu")

# type name -> (class, the data attributes the sample carries)
EXPECTED = {
    "NewKubernetesVersionAvailable": (ev.NewKubernetesVersionAvailable, {
        "latest_supported_kubernetes_version": "1.31.2",
        "latest_stable_kubernetes_version": "1.31.2",
        "lowest_minor_kubernetes_version": "1.29.9",
        "latest_preview_kubernetes_version": "1.32.0",
    }),
    "ClusterSupportEnding": (ev.ClusterSupportEnding, {"kubernetes_version": "1.29.9"}),
    "ClusterSupportEnded": (ev.ClusterSupportEnded, {"kubernetes_version": "1.28.5"}),
    "NodePoolRollingStarted": (ev.NodePoolRollingStarted, {"node_pool_name": "userpool"}),
    "NodePoolRollingSucceeded": (ev.NodePoolRollingSucceeded, {"node_pool_name": "userpool"}),
    "NodePoolRollingFailed": (ev.NodePoolRollingFailed, {"node_pool_name": "userpool"}),
}
SCHEMAS = {"eventgrid": ev.EVENT_GRID_SCHEMA, "cloudevents": ev.CLOUD_EVENT_SCHEMA}


def sample(path: str) -> str:
    return (EVENTS / path).read_text()


@pytest.mark.parametrize("folder", sorted(SCHEMAS))
@pytest.mark.parametrize("type_name", sorted(EXPECTED))
@pytest.mark.parametrize("as_", ["text", "bytes", "dict"])
def test_every_type_in_both_schemas(folder, type_name, as_):
    # GIVEN a recorded event WHEN parsed from text, bytes or the trigger's dict THEN one typed event
    raw = sample(f"{folder}/{type_name}.json")
    payload = {"text": raw, "bytes": raw.encode(), "dict": json.loads(raw)}[as_]
    (event,) = ev.parse_events(payload)
    cls, data = EXPECTED[type_name]
    assert type(event) is cls
    assert event.event_type == f"Microsoft.ContainerService.{type_name}" == event.to_public()["type"]
    assert event.cluster == CLUSTER
    assert event.schema == SCHEMAS[folder]
    assert event.subject == "aks-prod-weu"
    assert event.id == json.loads(raw)["id"]
    assert event.event_time is not None and event.event_time.tzinfo is not None
    assert {name: getattr(event, name) for name in data} == data
    assert event.to_public()["data"] == json.loads(raw)["data"]


def test_all_event_types_lists_the_six_full_type_strings():
    assert sorted(ev.ALL_EVENT_TYPES) == sorted(f"Microsoft.ContainerService.{t}" for t in EXPECTED)


def test_event_time_keeps_the_instant():
    (event,) = ev.parse_events(sample("eventgrid/NodePoolRollingStarted.json"))
    assert event.event_time == datetime(2026, 11, 20, 10, 13, 7, 905138, tzinfo=UTC)


def test_optional_preview_version_may_be_absent():
    body = json.loads(sample("eventgrid/NewKubernetesVersionAvailable.json"))
    del body["data"]["latestPreviewKubernetesVersion"]
    (event,) = ev.parse_events(body)
    assert event.latest_preview_kubernetes_version is None


def test_trigger_dict_without_event_time_is_accepted():
    # GIVEN what the trigger builds when the host gave no eventTime WHEN parsed THEN time is None
    body = json.loads(sample("eventgrid/NodePoolRollingFailed.json")) | {"eventTime": None}
    (event,) = ev.parse_events(body)
    assert event.event_time is None


def test_array_keeps_order_and_ignores_unknown_types_with_an_info_log(caplog):
    # GIVEN a batch with two AKS events and a storage event WHEN parsed
    with caplog.at_level(logging.INFO, logger="upgrade.domain.events"):
        parsed = ev.parse_events(sample("array/eventgrid-batch.json"))
    # THEN the two AKS events come back in order and the other is logged, not raised
    assert [type(e) for e in parsed] == [ev.NodePoolRollingStarted, ev.NodePoolRollingSucceeded]
    assert any("Microsoft.Storage.BlobCreated" in r.getMessage() and r.levelno == logging.INFO
               for r in caplog.records)


def test_single_unknown_event_gives_nothing():
    body = json.loads(sample("eventgrid/NodePoolRollingStarted.json")) | {"eventType": "Contoso.Thing"}
    assert ev.parse_events(body) == []


@pytest.mark.parametrize(
    ("path", "field", "fragment"),
    [
        ("malformed/docs-sample-topic-without-slash.json", "topic", "resourceGroupsrg-prod-weu"),
        ("malformed/missing-node-pool-name.json", "data.nodePoolName", "non-empty"),
        ("malformed/missing-event-type.json", "eventType", "required"),
        ("malformed/bad-event-time.json", "eventTime", "ISO 8601"),
        ("malformed/cloudevent-source-not-a-cluster.json", "source", "not an AKS cluster ARM id"),
        ("malformed/array-with-bad-second-event.json", "[1].data", "JSON object"),
        ("malformed/not-json.json", "payload", "not JSON"),
    ],
)
def test_malformed_samples_raise_one_error_naming_the_field(path, field, fragment):
    # GIVEN a malformed recorded event WHEN parsed THEN InvalidInput names the field, on one line
    with pytest.raises(InvalidInput) as error:
        ev.parse_events(sample(path))
    assert error.value.field == field
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"\xff\xfe", "payload"),
        ("[]", "payload"),
        ("42", "payload"),
        (42, "payload"),
        ("[1]", "[0]"),
        ({"eventType": "Microsoft.ContainerService.ClusterSupportEnded"}, "id"),
        ({"specversion": "0.3", "id": "x", "type": "t"}, "specversion"),
        ({"specversion": "1.0", "id": "x", "source": CLUSTER.arm_id}, "type"),
        ({"id": "x", "eventType": "Microsoft.ContainerService.ClusterSupportEnded", "topic": CLUSTER.arm_id,
          "data": {"kubernetesVersion": 1.29}}, "data.kubernetesVersion"),
        ({"id": "x", "eventType": "Microsoft.ContainerService.ClusterSupportEnded", "data": {}}, "topic"),
        ({"id": "x", "eventType": "Microsoft.ContainerService.ClusterSupportEnded", "topic": CLUSTER.arm_id,
          "eventTime": 5, "data": {"kubernetesVersion": "1.29.9"}}, "eventTime"),
    ],
)
def test_malformed_inline_inputs(payload, field):
    with pytest.raises(InvalidInput) as error:
        ev.parse_events(payload)
    assert error.value.field == field


def test_events_are_frozen():
    (event,) = ev.parse_events(sample("cloudevents/NodePoolRollingStarted.json"))
    with pytest.raises(AttributeError):
        event.node_pool_name = "other"  # type: ignore[misc]
