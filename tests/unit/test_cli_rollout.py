"""``python -m upgrade rollout``: a table of stages, groups and clusters with whole run ids; the data
itself with -o json; skip names a cluster by ARM id or by its unique name; a plan file goes to the API."""

from __future__ import annotations

import io
import json

import pytest

from upgrade.cli import main, rollout, status
from upgrade.errors import NotAllowed, NotFound, PermanentError

SUB = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters"
ROLLING_ID = "rolling-nodepool1-0123456789ab"


def rollout_body(status_: str = "halted") -> dict:
    def cluster(name: str, state: str, runs: dict | None = None) -> dict:
        return {"cluster": f"{SUB}/{name}", "status": state, "runs": runs or {}, "reason": ""}

    return {"id": "rollout-abcdef012345", "name": "fleet", "status": status_, "stage": 1, "targetVersion": "1.31.7",
            "reason": "stage staging: 1 cluster(s) failed", "updatedAt": "2026-01-01T00:00:00+00:00",
            "stages": [{"name": "dev", "groups": [{"name": "group-1", "clusters": [
                           cluster("aks-1", "done", {"nodepool1": ROLLING_ID})]}]},
                       {"name": "staging", "groups": [{"name": "east", "clusters": [
                           cluster("aks-2", "failed"), cluster("aks-3", "pending")]}]}]}


@pytest.fixture
def api(monkeypatch):
    calls: list[tuple[str, str, object]] = []

    def call(self, method, path, body=None):
        calls.append((method, path, body))
        return rollout_body()

    monkeypatch.setattr(status.UpgradeApi, "call", call)
    monkeypatch.setenv("COLUMNS", "60")  # narrow: ids must still be whole
    return calls


def test_show_prints_every_cluster_with_its_stage_status_and_whole_run_ids(api, capsys):
    assert main(["rollout", "show", "rollout-abcdef012345", "--api-url", "http://app.test"]) == 0
    out = capsys.readouterr().out
    assert "rollout-abcdef012345" in out and ROLLING_ID in out
    lines = [line.split() for line in out.splitlines()]
    assert ["staging", "east", "aks-2", "failed"] in [line[:4] for line in lines]
    assert ["dev", "group-1", "aks-1", "done"] in [line[:4] for line in lines]


def test_json_output_is_the_api_answer(api, capsys):
    assert main(["rollout", "show", "rollout-abcdef012345", "-o", "json", "--api-url", "http://app.test"]) == 0
    assert json.loads(capsys.readouterr().out) == rollout_body()


@pytest.mark.parametrize(("given", "sent"), [("aks-2", f"{SUB}/aks-2"), (f"{SUB}/aks-3", f"{SUB}/aks-3")])
def test_skip_sends_the_clusters_arm_id(api, given, sent):
    assert main(["rollout", "skip", "rollout-abcdef012345", given, "--reason", "r", "--api-url", "http://a"]) == 0
    assert api[-1] == ("POST", "/api/rollouts/rollout-abcdef012345/skip", {"reason": "r", "cluster": sent})


def test_skip_of_a_name_the_rollout_does_not_have_is_bad_input(api, capsys):
    assert main(["rollout", "skip", "rollout-abcdef012345", "aks-9", "--api-url", "http://a"]) == 2
    assert "CLUSTER" in capsys.readouterr().err


def test_start_posts_the_plan_file(api, tmp_path):
    plan = {"stages": [{"groups": [{"clusters": [f"{SUB}/aks-1"]}]}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    assert main(["rollout", "start", str(tmp_path / "plan.json"), "--api-url", "http://a"]) == 0
    assert api == [("POST", "/api/rollouts", plan)]


# ---- show --watch: a live table on a terminal, only the changes elsewhere -------------------------


def looks() -> list[dict]:
    """Four looks at a moving rollout: staging starts aks-2, nothing changes but the update time,
    aks-2's run is started, then the rollout stops moving (done)."""
    first = rollout_body("running")
    first["stages"][1]["groups"][0]["clusters"][0].update(status="pending")
    same = json.loads(json.dumps(first)) | {"updatedAt": "2026-01-01T00:00:05+00:00"}
    started = json.loads(json.dumps(same)) | {"updatedAt": "2026-01-01T00:00:10+00:00"}
    started["stages"][1]["groups"][0]["clusters"][0].update(status="running", runs={"nodepool1": ROLLING_ID})
    done = json.loads(json.dumps(started)) | {"status": "done", "reason": "every stage done",
                                              "updatedAt": "2026-01-01T00:00:15+00:00"}
    for cluster in done["stages"][1]["groups"][0]["clusters"]:
        cluster["status"] = "done"
    return [first, same, started, done]


def watched(output=None, *, terminal: bool):
    from rich.console import Console

    answers, slept = iter(looks()), []
    out = Console(file=io.StringIO(), force_terminal=terminal, width=160, color_system=None)
    last = rollout.watch(lambda: next(answers), every=7.0, output=output, out=out, sleep=slept.append)
    return out.file.getvalue(), last, slept


def test_watch_off_a_terminal_prints_the_table_once_then_only_what_changed():
    text, last, slept = watched(terminal=False)
    assert last["status"] == "done" and slept == [7.0, 7.0, 7.0]
    lines = text.splitlines()
    assert sum(line.startswith("STAGE") for line in lines) == 1  # one whole table, never reprinted
    changes = lines[lines.index(next(line for line in lines if line.startswith("00:00:10"))):]
    assert changes == [
        f"00:00:10  staging/east/aks-2: pending -> running  runs nodepool1={ROLLING_ID}",
        "00:00:15  status done  stage staging",
        "00:00:15  reason: every stage done",
        f"00:00:15  staging/east/aks-2: running -> done  runs nodepool1={ROLLING_ID}",
        "00:00:15  staging/east/aks-3: pending -> done",
    ]
    assert "00:00:05" not in text  # the look that changed nothing printed nothing


def test_watch_with_json_prints_one_document_per_change():
    text, _, _ = watched("json", terminal=True)
    documents = [json.loads(line) for line in text.splitlines()]
    expected = looks()
    assert documents == [expected[0], expected[2], expected[3]]


def test_watch_on_a_terminal_redraws_the_table_in_place_then_prints_the_last_state_whole():
    text, last, slept = watched(terminal=True)
    assert last["status"] == "done" and len(slept) == 3
    assert "\x1b[1A" in text and "\x1b[2K" in text  # the live table moved the cursor up and erased its lines
    final = text.rsplit("\x1b[2K", 1)[-1]  # after the live view is cleared: the last state, printed once
    assert "status done" in final and final.count("STAGE") == 1 and "status running" not in final


def test_ctrl_c_on_a_terminal_leaves_the_last_state_seen_printed_whole():
    from rich.console import Console

    first, second, *_ = looks()
    answers = iter([first, second])

    def fetch():
        try:
            return next(answers)
        except StopIteration:
            raise KeyboardInterrupt from None

    out = Console(file=io.StringIO(), force_terminal=True, width=160, color_system=None)
    with pytest.raises(KeyboardInterrupt):
        rollout.watch(fetch, every=7.0, output=None, out=out, sleep=lambda _: None)
    final = out.file.getvalue().rsplit("\x1b[2K", 1)[-1]  # after the live view is cleared
    assert "status running" in final and final.count("STAGE") == 1


def test_show_watch_of_a_rollout_that_is_not_moving_prints_it_once(api, capsys):
    assert main(["rollout", "show", "rollout-abcdef012345", "--watch", "--api-url", "http://app.test"]) == 0
    out = capsys.readouterr().out
    assert len(api) == 1 and out.count("STAGE") == 1 and "status halted" in out


def test_the_changes_name_the_whole_arm_id_with_wide_output():
    first, *_, done = looks()
    lines = rollout.rollout_changes(first, done, "wide")
    assert f"00:00:15  staging/east/{SUB}/aks-3: pending -> done" in lines
    assert rollout.rollout_changes(done, done) == []


def test_a_node_image_rollout_shows_the_image_it_pinned(monkeypatch, capsys):
    image = "AKSUbuntu-2204gen2containerd-202612.05.0"
    body = rollout_body("held") | {"targetVersion": "nodeImage", "nodeImages": {"AKSUbuntu-2204gen2containerd": image}}
    body["stages"][1]["groups"][0]["clusters"][1].update(status="held", reason=f"pool p can no longer reach {image}")
    monkeypatch.setattr(status.UpgradeApi, "call", lambda self, method, path, body_=None: body)
    assert main(["rollout", "show", "rollout-abcdef012345", "-o", "wide", "--api-url", "http://a"]) == 0
    out = capsys.readouterr().out
    assert f"rollout fleet -> nodeImage {image}" in out
    assert ["staging", "east", f"{SUB}/aks-3", "held"] in [line.split()[:4] for line in out.splitlines()]


def failing_then(errors, *, terminal: bool = False):
    """--watch over the looks, with ``errors`` raised by the looks after the first, in order."""
    from rich.console import Console

    answers, errors, slept = iter(looks()), list(errors), []

    def fetch():
        if slept and errors:
            raise errors.pop(0)
        return next(answers)

    out = Console(file=io.StringIO(), force_terminal=terminal, width=160, color_system=None)
    return (lambda: rollout.watch(fetch, every=7.0, output=None, out=out, sleep=slept.append)), out, slept


@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("error", [
    PermanentError("cannot reach the app at http://app: connection refused"),
    PermanentError("HTTP 503: the host is restarting", status=503),
    PermanentError("HTTP 429: too many requests", status=429),
])
def test_watch_looks_again_after_a_failure_that_passes(error, terminal):
    run, out, slept = failing_then([error, error], terminal=terminal)
    assert run()["status"] == "done"  # two failures in a row, then the looks go on to the end
    text = out.file.getvalue()
    assert f"look 1 of 3 failed: {error}; looking again in 7 s" in text and "look 2 of 3 failed" in text
    assert len(slept) == 5  # every failed look waited its interval too


@pytest.mark.parametrize("errors", [
    [PermanentError("HTTP 503: down", status=503)] * 3,  # the third failure in a row
    [NotFound("rollout r-1 not found")],  # a refusal: at once
    [NotAllowed("the Upgrade.Operator role is needed")],
    [PermanentError("HTTP 405: method not allowed", status=405)],
])
def test_watch_gives_up_on_a_refusal_or_the_third_failure_in_a_row(errors):
    run, out, _ = failing_then(errors)
    with pytest.raises(type(errors[-1])) as raised:
        run()
    assert raised.value is errors[-1]
    assert out.file.getvalue().count("failed:") == len(errors) - 1
