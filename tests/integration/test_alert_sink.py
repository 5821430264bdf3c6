"""The Event Grid alert sink publishes through the real EventGridPublisherClient to the sandbox's
alerts receiver; a topic that fails is retried, then logged, never raises, and is reported as not
delivered."""

from __future__ import annotations

import logging

import pytest

from sandbox.alerts_receiver import AlertsReceiver
from upgrade.adapters.alerts import EventGridAlertSink, LogAlertSink, alert_sink_from_settings
from upgrade.domain.alerts import Alert
from upgrade.settings import load_settings

pytestmark = pytest.mark.integration

CLUSTER = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks"
ALERT = Alert(kind="node.quarantined", severity="error", cluster=CLUSTER, pool="np", node="n1", run_id="r1",
              summary="Node n1 is quarantined", blockers=({"pod": "apps/a", "pdb": "apps/a-pdb"},),
              options=({"kind": "relax-pdb", "command": "kubectl patch pdb …"},), dedup_key="k")


def settings(**values: str):
    return load_settings({"ALLOWED_CLUSTERS": CLUSTER, **values})


def test_alerts_reach_the_topic_as_cloudevents_and_are_logged(caplog):
    with AlertsReceiver() as receiver:
        sink = alert_sink_from_settings(settings(ALERTS_TOPIC_ENDPOINT=receiver.topic_endpoint,
                                                 ALERTS_TOPIC_KEY=receiver.key))
        assert isinstance(sink, EventGridAlertSink)
        with caplog.at_level(logging.INFO, logger="upgrade.alerts"):
            delivered = sink.publish(ALERT)
        [event] = receiver.alerts()
    assert delivered is True
    assert (event["type"], event["source"], event["subject"], event["severity"]) == (
        "com.aksupgrade.node.quarantined", CLUSTER, "pools/np/nodes/n1", "error")
    assert event["data"]["blockers"] == [{"pod": "apps/a", "pdb": "apps/a-pdb"}]
    assert event["data"]["runId"] == "r1"
    assert event["id"] == ALERT.event_id  # derived, so a re-published copy carries the same id
    [line] = [r.getMessage() for r in caplog.records if r.name == "upgrade.alerts"]
    assert '"type": "com.aksupgrade.node.quarantined"' in line


def test_a_failing_topic_is_retried_then_logged_and_never_raises(caplog):
    with AlertsReceiver() as receiver:
        sink = EventGridAlertSink(receiver.topic_endpoint, _key("wrong-key"), attempts=3, sleep=lambda s: None)
        with caplog.at_level(logging.WARNING, logger="upgrade.alerts"):
            delivered = sink.publish(ALERT)
        assert receiver.alerts() == []
    # AND the caller learns it was not delivered (so it can send it again later)
    assert delivered is False
    messages = [r.getMessage() for r in caplog.records if r.name == "upgrade.alerts"]
    assert sum("retrying" in m for m in messages) == 2
    assert any("not delivered" in m and "after 3 attempts" in m for m in messages)


def test_without_a_topic_alerts_are_only_logged(caplog):
    sink = alert_sink_from_settings(settings())
    assert isinstance(sink, LogAlertSink)
    with caplog.at_level(logging.INFO, logger="upgrade.alerts"):
        assert sink.publish(ALERT) is True  # the log line is the delivery
    assert any('"type": "com.aksupgrade.node.quarantined"' in r.getMessage() for r in caplog.records)


def _key(value: str):
    from azure.core.credentials import AzureKeyCredential

    return AzureKeyCredential(value)
