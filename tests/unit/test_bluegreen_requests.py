"""What reaches a blue-green run from outside, and what it does with it: the audit actor of HTTP
requests, step messages the executor must refuse or drop, and a resume that keeps a drain's state.

Runs on the real step executor and the real HTTP triggers with in-memory ports and the fake
cluster of test_bluegreen_steps.
"""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from tests.unit.test_bluegreen_steps import (  # noqa: F401  (bluegreen_registered is an autouse fixture)
    CLUSTER,
    Driver,
    bluegreen_registered,
    make_platform,
    scenario3,
    start,
)
from upgrade import wiring
from upgrade.domain.identity import APPROVE, OPERATE, READ, encode_client_principal
from upgrade.domain.steps import Next, StepMessage
from upgrade.services.bluegreen import STEP_PREFIX, decide
from upgrade.services.step_runner import run_step_message
from upgrade.triggers import http_upgrades

# ---- the audit actor ---------------------------------------------------------------------------


def _call(trigger, platform, monkeypatch, *, route_params=None, body=None, headers=None) -> tuple[int, dict]:
    monkeypatch.setattr(wiring, "platform", lambda: platform)
    request = func.HttpRequest(method="POST", url="http://localhost/api/upgrades", headers=headers or {},
                               route_params=route_params or {}, body=json.dumps(body).encode() if body else b"")
    response = trigger.build().get_user_function()(request)
    return response.status_code, json.loads(response.get_body())


START_BODY = {"cluster": CLUSTER.arm_id, "pool": "blue", "targetVersion": "1.31", "strategy": "blue-green",
              "options": {"approval": {"required": True}}}


ALICE = encode_client_principal("alice@contoso.com", "a1a1a1a1-0000-4000-8000-000000000001",
                                [READ, OPERATE, APPROVE])
RECORDED = "alice@contoso.com (oid a1a1a1a1-0000-4000-8000-000000000001)"


@pytest.mark.parametrize("claimed", [None, "mallory", "alice@contoso.com"])
def test_the_signed_in_principal_is_the_actor_and_a_body_actor_is_ignored(monkeypatch, claimed):
    # GIVEN a request with App Service authentication's principal and perhaps a body actor
    platform = make_platform(scenario3())
    extra = {"actor": claimed} if claimed else {}
    headers = {"x-ms-client-principal": ALICE}
    # WHEN it starts a run and then decides on it
    status, run = _call(http_upgrades.start_upgrade, platform, monkeypatch, body={**START_BODY, **extra},
                        headers=headers)
    assert status == 202, run
    status, decided = _call(http_upgrades.decide_upgrade, platform, monkeypatch, body={**extra, "reason": "freeze"},
                            route_params={"run_id": run["id"], "decision": "pause"}, headers=headers)
    assert status == 200, decided
    # THEN the history, the decision record and the step message name the principal: name and object id
    history = platform.runs.history(run["id"])
    assert [(h.outcome, h.actor) for h in history] == [("started", RECORDED), ("decision", RECORDED)]
    assert decided["facts"]["decisions"][0]["actor"] == RECORDED
    assert platform.queue.sent[0].message.actor == RECORDED


@pytest.mark.parametrize(("env", "headers", "status", "words"), [
    ({}, {}, 401, "no signed-in caller"),
    ({}, {"x-ms-client-principal": "%%%"}, 401, "cannot be read"),
    # in Azure with App Service authentication off, even a well-formed header is not believed
    ({"WEBSITE_INSTANCE_ID": "abc"}, {"x-ms-client-principal": ALICE}, 401, "authentication is off"),
    ({"WEBSITE_INSTANCE_ID": "abc", "WEBSITE_AUTH_ENABLED": "False"}, {"x-ms-client-principal": ALICE}, 401,
     "authentication is off"),
    ({"WEBSITE_INSTANCE_ID": "abc", "WEBSITE_AUTH_ENABLED": "True"}, {"x-ms-client-principal": ALICE}, 202, ""),
    ({}, {"x-ms-client-principal": encode_client_principal("rita", "r-1", [READ])}, 403, "Upgrade.Operate"),
])
def test_the_start_route_fails_closed(monkeypatch, env, headers, status, words):
    # GIVEN the platform's settings and what the request carries
    for name in ("WEBSITE_INSTANCE_ID", "WEBSITE_AUTH_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    platform = make_platform(scenario3())
    # WHEN it asks to start a run
    got, answer = _call(http_upgrades.start_upgrade, platform, monkeypatch, body=START_BODY, headers=headers)
    # THEN only a trusted principal with Upgrade.Operate starts one; a refusal says why
    assert got == status, answer
    assert words in answer.get("message", "")
    assert bool(platform.queue.sent) == (status == 202)


def test_a_non_string_body_actor_is_refused(monkeypatch):
    platform = make_platform(scenario3())
    status, answer = _call(http_upgrades.start_upgrade, platform, monkeypatch, body={**START_BODY, "actor": 7},
                           headers={"x-ms-client-principal": ALICE})
    assert (status, answer["field"]) == (400, "actor")


@pytest.mark.parametrize(("decision", "body", "status", "field"), [
    ("approve", {"override": "yes"}, 400, "override"),
    ("approve", {"whilePaused": 1}, 400, "whilePaused"),
    ("approve", {"force": True}, 400, "force"),
    ("pause", {"override": True}, 400, "override"),
    ("approve", {"whilePaused": True}, 200, None),  # an approve that is not refused: the run awaits a decision
])
def test_decision_flags_are_booleans_for_approve_only(monkeypatch, decision, body, status, field):
    platform = make_platform(scenario3())
    started, run = _call(http_upgrades.start_upgrade, platform, monkeypatch, body=START_BODY,
                         headers={"x-ms-client-principal": ALICE})
    assert started == 202, run
    Driver(platform).run(run_id=run["id"])
    got, answer = _call(http_upgrades.decide_upgrade, platform, monkeypatch, body=body,
                        route_params={"run_id": run["id"], "decision": decision},
                        headers={"x-ms-client-principal": ALICE})
    assert got == status, answer
    assert field is None or answer["field"] == field


# ---- step messages the executor refuses or drops ----------------------------------------------


def _live_run(platform, *, state="drain_batch"):
    """A started run moved to ``state`` (attempt 2), as if earlier steps had run."""
    run = start(platform)
    stored = platform.runs.get(run.run_id)
    return platform.runs.update(stored.evolve(now=platform.clock.now(), state=STEP_PREFIX + state, attempt=2,
                                              facts={"greenPool": "blueg1312", "batches": [["aks-blue-0"]],
                                                     "batchIndex": 0, "blueCordonedByRun": []}))


def _message(run, **changes) -> str:
    fields = {"v": 1, "run_id": run.run_id, "step": run.state, "cluster": run.cluster, "pool": run.pool,
              "attempt": run.attempt, **changes}
    return json.dumps(fields)


BAD_MESSAGES = [
    # (case, message changes, result, words in the detail or the run's reason, run status after)
    ("unknown blue-green step", {"step": "bluegreen.shrink"}, "poisoned", "unknown step 'bluegreen.shrink'", "running"),
    ("wrong message version", {"v": 2}, "poisoned", "v", "running"),
    ("stale attempt", {"attempt": 1}, "stale", "run expects bluegreen.drain_batch#2, got bluegreen.drain_batch#1",
     "running"),
    ("another state's message", {"step": "bluegreen.commit"}, "stale", "run expects bluegreen.drain_batch#2",
     "running"),
    ("missing run", {"run_id": "bg-nosuch"}, "stale", "no such run", "running"),
    ("cluster not allowed", {"cluster": "/subscriptions/sub-1/resourceGroups/rg/providers/"
                                        "Microsoft.ContainerService/managedClusters/other"},
     "refused", "not in ALLOWED_CLUSTERS", "failed"),
    ("arg the step does not take", {"args": {"since": "2026-01-01T00:00:00+00:00", "force": True}}, "executed",
     "args.since: not an argument of step drain_batch", "running"),
    ("drain progress not an object", {"args": {"drain": "half"}}, "executed", "args.drain: not a drain progress: must be an object",
     "running"),
    ("drain progress unreadable", {"args": {"drain": {"started_at": "soon"}}}, "executed",
     "args.drain: not a drain progress: started_at must be a number", "running"),
    ("drain progress of the earlier per-node form unreadable", {"args": {"drain": {"aks-blue-0": {"held": {"x": {}}}}}},
     "executed", "args.drain: not a drain progress", "running"),
]


@pytest.mark.parametrize(("case", "changes", "result", "words", "status"), BAD_MESSAGES, ids=[c[0] for c in BAD_MESSAGES])
def test_bad_blue_green_step_messages_get_a_clear_outcome(case, changes, result, words, status):
    # GIVEN a blue-green run draining blue (attempt 2 is live)
    cluster = scenario3()
    platform = make_platform(cluster)
    run = _live_run(platform)
    # WHEN a bad message for it arrives
    report = run_step_message(_message(run, **changes), platform, message_id="m1")
    # THEN the executor says what it did and why; nothing touched the cluster
    after = platform.runs.get(run.run_id)
    assert report.result == result, report
    shown = report.detail + " " + after.reason + " " + getattr(report.outcome, "reason", "")
    assert words in shown, shown
    assert after.status == status
    assert not [key for key in cluster.calls if isinstance(key, tuple) and key[0] in ("cordon", "create_pool")]
    assert cluster.calls["evict"] == 0
    if result == "poisoned":
        assert platform.queue.poison and after.state == run.state
    if result == "executed":  # bad args of the live step: the table's error event (here: roll back)
        assert isinstance(report.outcome, Next) and report.outcome.step == STEP_PREFIX + "rollback"
        assert after.state == STEP_PREFIX + "rollback"


def test_bad_since_of_validate_is_named():
    platform = make_platform(scenario3())
    run = _live_run(platform, state="validate")
    report = run_step_message(_message(run, args={"since": "yesterday"}), platform, message_id="m1")
    assert "args.since: must be an ISO 8601 time" in report.outcome.reason


# ---- pause and resume keep the drain ------------------------------------------------------------


def test_resume_after_pause_keeps_the_drain_state_so_the_drain_timeout_does_not_restart():
    # GIVEN a drain that a PDB holds up (timeout 10 min), paused by an operator after a while
    cluster = scenario3()
    cluster.add_pdb("shop", "a-pdb", app="a", min_available=1)
    platform = make_platform(cluster)
    run = start(platform, {"drainTimeoutMinutes": 10})
    driver = Driver(platform)
    for _ in range(60):
        driver.run(run_id=run.run_id, max_deliveries=1)
        held = platform.runs.get(run.run_id)
        if held.state == STEP_PREFIX + "drain_batch" and held.attempt >= 3:
            break
    live = StepMessage.model_validate_json(held.outbox["message"])
    drain_before = live.args["drain"]
    started_at = drain_before["started_at"]
    assert started_at is not None
    decide(platform, run.run_id, "pause", "dave", "change freeze")
    driver.run(run_id=run.run_id, until_status=())  # copies delivered while paused are dropped
    platform.clock.advance(7 * 60)
    # WHEN the operator resumes
    resumed = decide(platform, run.run_id, "resume", "dave")
    # THEN the resumed message carries the drain's progress, its timeout's start included
    sent = StepMessage.model_validate_json(resumed.outbox["message"])
    assert (sent.step, sent.attempt) == (resumed.state, resumed.attempt)
    assert sent.args["drain"] == drain_before
    # AND the drain times out 10 minutes after it started, not 10 minutes after the resume
    final = driver.run(run_id=run.run_id)
    assert final.status == "failed" and "drain timeout" in final.reason
    timed_out = [h for h in platform.runs.history(run.run_id)
                 if h.step == STEP_PREFIX + "drain_batch" and h.outcome == "next"][-1]
    assert timed_out.at.timestamp() - started_at < 10 * 60 + 30
