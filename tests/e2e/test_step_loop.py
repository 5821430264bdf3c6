"""The step loop end to end: function_app on the dev host over Azurite, through real queues and tables."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest
from azure.storage.queue import QueueClient

from sandbox.app_settings import PLACEHOLDER_CLUSTER
from sandbox.easy_auth import READER
from tests.e2e.conftest import wait_until
from upgrade.adapters.queue import AzureStepQueue
from upgrade.adapters.tables import TableRunStore
from upgrade.domain.identity import encode_client_principal
from upgrade.domain.runs import RunRecord
from upgrade.domain.steps import StepMessage
from upgrade.settings import load_settings
from upgrade.storage_names import STEP_QUEUE

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def storage(devhost):
    settings = load_settings({"AzureWebJobsStorage": devhost.app_settings["AzureWebJobsStorage"],
                              "ALLOWED_CLUSTERS": PLACEHOLDER_CLUSTER})
    return AzureStepQueue.from_settings(settings), TableRunStore.from_settings(settings)


def start_ping_run(storage, **args) -> StepMessage:
    """Create a ping run and send its first step, as a service starting a run does."""
    queue, runs = storage
    run_id = f"ping-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    runs.create(RunRecord(run_id=run_id, kind="ping", cluster=PLACEHOLDER_CLUSTER, pool=None, state="ping",
                          status="running", created_at=now, updated_at=now))
    message = StepMessage(v=1, run_id=run_id, step="ping", cluster=PLACEHOLDER_CLUSTER, args=args)
    queue.send(message)
    return message


def run_status(devhost, run_id: str) -> dict:
    status, body = devhost.request("GET", f"/api/upgrades/{run_id}")
    assert status == 200, body
    return body


def deliveries(devhost, function: str, run_id: str) -> list[dict]:
    return [i for i in devhost.invocations(function) if run_id in i.get("body", "")]


def test_a_ping_message_is_executed_and_its_follow_up_too(devhost, storage):
    # GIVEN a ping run that chains one more ping
    message = start_ping_run(storage, hops=1)

    # WHEN the host delivers the messages (the executor writes the run's transition first and its
    # history row after, so a reader may see "succeeded" a moment before the last timeline row)
    run = wait_until(lambda: (r := run_status(devhost, message.run_id))["status"] == "succeeded"
                     and any(t["outcome"] == "done" for t in r["timeline"]) and r,
                     what="the ping run to succeed and record its last step")

    # THEN both steps ran once each and the timeline shows them in order
    assert [(t["step"], t["outcome"]) for t in run["timeline"]] == [("ping", "next"), ("ping", "done")]
    assert run["facts"] == {"pings": 2}
    runs = deliveries(devhost, "run_step", message.run_id)
    assert [(r["dequeueCount"], r["succeeded"]) for r in runs] == [(1, True), (1, True)]


def test_a_failing_step_is_redelivered_then_poisoned_and_the_run_failed(devhost, storage):
    # GIVEN a step that crashes on every delivery
    message = start_ping_run(storage, crash="simulated bug")

    # WHEN the host has retried it maxDequeueCount times
    run = wait_until(lambda: (r := run_status(devhost, message.run_id))["status"] == "failed"
                     and any(t["outcome"] == "poison" for t in r["timeline"]) and r,
                     what="on_poison_step to fail the run and record it")

    # THEN it was delivered five times with a growing dequeue count, each a failure
    attempts = deliveries(devhost, "run_step", message.run_id)
    assert [(a["dequeueCount"], a["succeeded"]) for a in attempts] == [(n, False) for n in range(1, 6)]
    assert "RuntimeError: ping asked to crash: simulated bug" in attempts[-1]["error"]
    # AND moved to the poison queue, whose handler recorded it against the run
    devhost.wait_for_log(r"has reached MaxDequeueCount of 5 .* moved to 'upgrade-steps-poison'")
    poison_runs = wait_until(
        lambda: (found := deliveries(devhost, "on_poison_step", message.run_id)) and found[-1]["succeeded"] is not None
        and found, what="on_poison_step to finish")
    assert [p["succeeded"] for p in poison_runs] == [True]
    assert "moved to the poison queue" in run["reason"]
    assert [t["outcome"] for t in run["timeline"]] == ["poison"]


def test_an_invalid_message_goes_to_poison_with_a_clear_log_line(devhost):
    # GIVEN a message that is not a step message (but is validly base64-encoded)
    marker = uuid.uuid4().hex
    body = json.dumps({"v": 1, "run_id": marker, "step": "ping"})  # no cluster
    queue = QueueClient.from_connection_string(devhost.app_settings["AzureWebJobsStorage"], STEP_QUEUE)
    queue.send_message(base64.b64encode(body.encode()).decode())

    # WHEN the host delivers it
    line = devhost.wait_for_log(rf"step message refused, moved to poison: .*{marker}")

    # THEN the log names the missing field, it ran once without an error, and the poison handler saw it
    assert "invalid step message: cluster: Field required" in line
    finished = wait_until(lambda: [a["succeeded"] for a in deliveries(devhost, "run_step", marker)
                                    if a["succeeded"] is not None], what="run_step to finish")
    assert finished == [True]
    wait_until(lambda: deliveries(devhost, "on_poison_step", marker), what="on_poison_step to receive it")
    devhost.wait_for_log(rf"poison queue: unreadable step message .*{marker}")


def test_a_message_that_is_not_base64_goes_to_poison_without_a_run(devhost):
    # GIVEN a producer that forgot the base64 encoding host.json asks for
    marker = uuid.uuid4().hex
    queue = QueueClient.from_connection_string(devhost.app_settings["AzureWebJobsStorage"], STEP_QUEUE)
    queue.send_message(f"{{plain text {marker}}}")

    # THEN the host moves it to poison at once, and says why
    devhost.wait_for_log(r"Message decoding has failed")
    assert deliveries(devhost, "run_step", marker) == []


@pytest.mark.parametrize(
    ("path", "identity", "headers", "status"),
    [
        ("/api/upgrades/{run_id}", READER, {}, 200),
        ("/api/upgrades/{run_id}", None, {}, 401),  # the function key alone opens nothing here
        ("/api/upgrades/{run_id}?code={key}", None, {}, 401),
        # a client's own principal header is dropped, as App Service authentication drops it
        ("/api/upgrades/{run_id}", None, {"X-MS-CLIENT-PRINCIPAL": encode_client_principal(
            "mallory", "m-1", ["Upgrade.Read"])}, 401),
        ("/api/upgrades/no-such-run", READER, {}, 404),
    ],
    ids=["reader-token", "key-only", "key-in-query", "forged-principal-header", "unknown-run"],
)
def test_get_upgrade_needs_a_signed_in_reader(devhost, storage, path, identity, headers, status):
    # GIVEN a finished run
    message = start_ping_run(storage)
    wait_until(lambda: run_status(devhost, message.run_id)["status"] == "succeeded", what="the run to finish")

    # WHEN the status route is called with the function key and perhaps a token
    got, body = devhost.request("GET", path.format(run_id=message.run_id, key=devhost.function_key),
                                identity=identity, headers=headers)

    # THEN only a signed-in caller with Upgrade.Read gets the timeline
    assert got == status
    if status == 200:
        assert body["id"] == message.run_id
        assert [t["outcome"] for t in body["timeline"]] == ["done"]


def test_the_admin_endpoint_runs_a_queue_function_on_demand(devhost, storage):
    # GIVEN a run whose first step is handed to the admin API instead of the queue
    _, runs = storage
    message = StepMessage(v=1, run_id=f"admin-{uuid.uuid4().hex[:8]}", step="ping", cluster=PLACEHOLDER_CLUSTER)
    now = datetime.now(UTC)
    runs.create(RunRecord(run_id=message.run_id, kind="ping", cluster=PLACEHOLDER_CLUSTER, pool=None,
                          state="ping", status="running", created_at=now, updated_at=now))

    # WHEN it is posted to /admin/functions/run_step
    status, _ = devhost.request("POST", "/admin/functions/run_step", body={"input": message.to_json()})

    # THEN the host accepts it and runs it
    assert status == 202
    wait_until(lambda: run_status(devhost, message.run_id)["status"] == "succeeded", what="the admin run")
    assert devhost.request("POST", "/admin/functions/run_step", body={"input": "{}"}, with_key=False)[0] == 401


def test_the_event_grid_subscription_validation_handshake(devhost):
    # WHEN Event Grid validates the webhook endpoint (EventGridSchema subscriptions)
    events = [{"id": "1", "topic": "/subscriptions/x", "subject": "", "eventTime": "2026-01-15T09:00:00Z",
               "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "dataVersion": "2",
               "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                        "validationUrl": "https://example.invalid/validate"}}]
    status, body = devhost.request(
        "POST", "/runtime/webhooks/EventGrid?functionName=on_aks_event", body=events,
        headers={"aeg-event-type": "SubscriptionValidation"},
    )

    # THEN the host echoes the validation code, without running the function
    assert (status, body) == (200, {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})


def test_the_cloudevents_webhook_handshake_allows_the_origin(devhost):
    status, _ = devhost.request("OPTIONS", "/runtime/webhooks/EventGrid?functionName=on_aks_event",
                                headers={"WebHook-Request-Origin": "eventgrid.azure.net"}, with_key=False)
    assert status == 200


@pytest.mark.parametrize(
    ("query", "with_key", "status"),
    [("functionName=on_aks_event", False, 401), ("functionName=run_step", True, 404)],
    ids=["without-key", "not-an-event-grid-function"],
)
def test_the_event_grid_webhook_refuses_bad_calls(devhost, query, with_key, status):
    got, _ = devhost.request("POST", f"/runtime/webhooks/EventGrid?{query}", body=[],
                             headers={"aeg-event-type": "Notification"}, with_key=with_key)
    assert got == status


UNKNOWN_TYPE = "Microsoft.ContainerService.SomethingNewer"  # ignored by the app: no ARM call follows


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ([{"id": "eg-1", "topic": PLACEHOLDER_CLUSTER, "subject": "aks-sandbox", "eventType": UNKNOWN_TYPE,
           "eventTime": "2026-01-15T09:00:00Z", "dataVersion": "1", "data": {}}], "application/json"),
        ({"specversion": "1.0", "id": "ce-1", "source": PLACEHOLDER_CLUSTER, "subject": "aks-sandbox",
          "type": UNKNOWN_TYPE, "time": "2026-01-15T09:00:00Z", "data": {}}, "application/cloudevents+json"),
        ([{"specversion": "1.0", "id": "ce-2", "source": PLACEHOLDER_CLUSTER, "subject": "aks-sandbox",
           "type": UNKNOWN_TYPE, "time": "2026-01-15T09:00:00Z", "data": {}}], "application/cloudevents-batch+json"),
    ],
    ids=["event-grid-schema", "cloudevent", "cloudevents-batch"],
)
def test_a_notification_in_either_schema_reaches_on_aks_event(devhost, body, content_type):
    # WHEN Event Grid delivers an AKS event in the subscription's schema
    status, _ = devhost.request("POST", "/runtime/webhooks/EventGrid?functionName=on_aks_event", body=body,
                                headers={"aeg-event-type": "Notification", "Content-Type": content_type})

    # THEN on_aks_event ran and succeeded (an unknown type is ignored, not an error)
    event_id = (body[0] if isinstance(body, list) else body)["id"]
    runs = [i for i in devhost.invocations("on_aks_event") if i.get("eventId") == event_id]
    assert [r["succeeded"] for r in runs] == [True], runs[0].get("error") if runs else "not invoked"
    assert status == 202
