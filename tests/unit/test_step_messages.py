"""The versioned step message schema: what is accepted, and the field every refusal names."""

from __future__ import annotations

import json

import pytest

from tests.fakes import FakePlatform
from upgrade.domain.steps import MAX_MESSAGE_BYTES, StepMessage, parse_step_message
from upgrade.errors import InvalidInput
from upgrade.services.step_runner import run_step_message

CLUSTER = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-prod"
VALID = {"v": 1, "run_id": "run-1", "step": "ping", "cluster": CLUSTER, "pool": "user1", "attempt": 1}


def body(**changes: object) -> str:
    message = {**VALID, **changes}
    return json.dumps({k: v for k, v in message.items() if v is not ...})


def test_a_valid_message_round_trips():
    # GIVEN a message as a producer writes it
    message = StepMessage(v=1, run_id="run-1", step="ping", cluster=CLUSTER, pool="user1", args={"hops": 2})

    # WHEN it is serialised and parsed back
    parsed = parse_step_message(message.to_json())

    # THEN nothing is lost, and optional fields have their defaults
    assert parsed == message
    assert (parsed.attempt, parsed.actor) == (1, "system")
    assert parsed.cluster_ref.name == "aks-prod"


def test_bytes_bodies_are_accepted():
    assert parse_step_message(body().encode()).step == "ping"


def test_a_message_without_optional_fields_is_valid():
    parsed = parse_step_message(body(pool=..., attempt=...))
    assert (parsed.pool, parsed.attempt, parsed.args) == (None, 1, {})


@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        ("not json", "(body)", "not JSON"),
        ("[1, 2]", "(body)", "must be a JSON object"),
        (b"\xff\xfe", "(body)", "not UTF-8"),
        ("x" * (MAX_MESSAGE_BYTES + 1), "(body)", "larger than"),
        (body(v=2), "v", "unsupported version 2"),
        (body(v=...), "v", "Field required"),
        (body(attempt="first"), "attempt", "integer"),
        (body(attempt=0), "attempt", "greater than or equal to 1"),
        (body(args=[1]), "args", "dictionary"),
        (body(run_id=""), "run_id", "at least 1"),
        (body(run_id="run/1"), "run_id", "pattern"),
        (body(step="Drain Node"), "step", "pattern"),
        (body(step=...), "step", "Field required"),
        (body(cluster="aks-prod"), "cluster", "not an AKS cluster ARM id"),
        (body(pool="x" * 13), "pool", "at most 12"),
        (body(color="blue"), "color", "unknown field"),
    ],
    ids=[
        "invalid-json", "not-an-object", "not-utf8", "too-large", "unknown-version", "missing-version",
        "attempt-wrong-type", "attempt-zero", "args-wrong-type", "empty-run-id", "run-id-with-slash",
        "step-bad-name", "missing-step", "cluster-not-arm-id", "pool-too-long", "unknown-field",
    ],
)
def test_an_invalid_message_is_refused_naming_the_field(raw, field, problem):
    # WHEN a malformed body is parsed
    with pytest.raises(InvalidInput) as refused:
        parse_step_message(raw)

    # THEN the one error type names the field and says what is wrong
    assert refused.value.field == field
    assert problem in refused.value.problem
    assert str(refused.value).startswith(f"invalid step message: {field}: ")


def test_an_unknown_step_is_refused_by_the_registry_and_poisoned():
    # GIVEN a well-formed message for a step no workflow registered
    raw = body(step="no-such-step")
    platform = FakePlatform()

    # WHEN the worker receives it
    report = run_step_message(raw, platform, message_id="m1")

    # THEN it goes to poison with the step named, never to a handler
    assert report.result == "poisoned"
    assert report.detail == "invalid step message: step: unknown step 'no-such-step'"
    assert platform.queue.poison == [raw]
