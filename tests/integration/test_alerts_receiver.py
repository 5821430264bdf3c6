"""The sandbox's alerts topic receives exactly what azure-eventgrid publishes, and what the app's sink sends."""

from __future__ import annotations

import json
from urllib.request import Request, urlopen

import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridPublisherClient

from sandbox.alerts_receiver import AlertsReceiver
from tests.integration.conftest_storage import TEST_CLUSTER, storage_settings
from upgrade.adapters.alerts import alert_sink_from_settings
from upgrade.domain.alerts import Alert

pytestmark = pytest.mark.integration

ALERT = Alert(kind="node.quarantined", severity="error", cluster=TEST_CLUSTER, pool="user1",
              node="aks-user1-0", summary="aks-user1-0 is quarantined: pod A is blocked by PDB shop/a")


def listed(receiver: AlertsReceiver) -> list[dict]:
    with urlopen(receiver.alerts_url) as response:
        return json.load(response)


def test_a_cloudevents_batch_published_with_the_key_is_listed_and_can_be_cleared():
    with AlertsReceiver() as receiver:
        # WHEN the SDK publishes two events with the topic key
        client = EventGridPublisherClient(receiver.topic_endpoint, AzureKeyCredential(receiver.key))
        client.send([CloudEvent(source=TEST_CLUSTER, type="com.aksupgrade.run.failed", data={"n": i})
                     for i in range(2)])

        # THEN GET /alerts lists both, in order
        assert [(e["type"], e["data"]) for e in listed(receiver)] == [
            ("com.aksupgrade.run.failed", {"n": 0}), ("com.aksupgrade.run.failed", {"n": 1})
        ]
        # AND DELETE /alerts clears them
        urlopen(Request(receiver.alerts_url, method="DELETE")).close()
        assert listed(receiver) == []


def test_a_publish_with_a_wrong_key_is_refused():
    with AlertsReceiver() as receiver:
        client = EventGridPublisherClient(receiver.topic_endpoint, AzureKeyCredential("wrong"))
        with pytest.raises(ClientAuthenticationError):
            client.send(CloudEvent(source=TEST_CLUSTER, type="com.aksupgrade.run.failed", data={}), retry_total=0)
        assert listed(receiver) == []


def test_the_apps_alert_sink_delivers_to_the_receiver():
    # GIVEN the receiver configured as the app's alerts topic
    with AlertsReceiver() as receiver:
        settings = storage_settings("UseDevelopmentStorage=true", ALERTS_TOPIC_ENDPOINT=receiver.topic_endpoint,
                                    ALERTS_TOPIC_KEY=receiver.key)

        # WHEN the app publishes an alert
        alert_sink_from_settings(settings).publish(ALERT)

        # THEN it is listed as a CloudEvent carrying the alert
        assert [(e["type"], e["data"]["node"]) for e in listed(receiver)] == [
            ("com.aksupgrade.node.quarantined", "aks-user1-0")
        ]
