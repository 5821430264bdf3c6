"""``python -m upgrade status`` renders what the app answers as plain text: run reasons, actors and
timeline entries come from operators and clusters, so rich markup in them is printed, never applied."""

from __future__ import annotations

import argparse

import pytest

from upgrade.cli import status

CLUSTER = "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1"
# Text that rich would read as markup: a closing tag with no opening one raises MarkupError,
# an opening one would silently restyle (and drop) what the operator wrote.
HOSTILE = "drain blocked by [/x] PDB [bold]shop/a-pdb[/bold] \\[esc]"


def run_body(reason: str = HOSTILE) -> dict:
    return {
        "id": "bg-1", "kind": "blue-green", "cluster": CLUSTER, "pool": "blue[/p]", "targetVersion": "1.31.2",
        "state": "bluegreen.drain_batch", "status": "running", "reason": reason,
        "updatedAt": "2026-01-15T09:00:00+00:00", "facts": {"greenPool": "blueg1312[red]"},
        "timeline": [{"at": "2026-01-15T09:00:00+00:00", "step": "bluegreen.drain_batch", "attempt": 3,
                      "outcome": "retry", "actor": "[/actor]", "reason": reason}],
    }


@pytest.fixture
def app_answers(monkeypatch):
    """The app's HTTP API as the CLI sees it: each GET path answers this JSON."""
    answers: dict[str, object] = {}

    def call(api, method, path, body=None):
        assert method == "GET"
        return answers[path]

    monkeypatch.setattr(status.UpgradeApi, "call", call)
    monkeypatch.setenv("COLUMNS", "400")  # one line per row: the assertions read whole cells
    return answers


def status_args(run_id: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(run_id=run_id, cluster=None, limit=20, output=None, api_url="http://app.test",
                              api_scope="")


def test_a_run_shown_as_a_timeline_prints_markup_in_remote_text_literally(app_answers, capsys):
    # GIVEN the app answers a run whose reason, pool, green pool and actor contain rich markup
    app_answers["/api/upgrades/bg-1"] = run_body()
    # WHEN the operator runs `status bg-1`
    assert status.run(status_args("bg-1")) == 0
    # THEN it does not crash and prints the text exactly as the app recorded it
    out = capsys.readouterr().out
    assert f"reason: {HOSTILE}" in out
    assert out.count(HOSTILE) == 2  # the run's reason and the timeline entry's
    assert "blue[/p] -> 1.31.2" in out and "green pool blueg1312[red]" in out and "[/actor]" in out
    assert "state drain_batch  status running" in out


def test_the_run_list_prints_markup_in_remote_text_literally(app_answers, capsys):
    app_answers["/api/upgrades?limit=20"] = {"runs": [run_body()]}
    assert status.run(status_args()) == 0
    out = capsys.readouterr().out
    assert "blue[/p]" in out and "bg-1" in out


@pytest.mark.parametrize("reason", ["[/x]", "[/]", "[bold]unclosed", "a [link=file:///etc/passwd]b[/link]"])
def test_any_reason_renders_as_written(reason, app_answers, capsys):
    app_answers["/api/upgrades/bg-1"] = run_body(reason)
    status.run(status_args("bg-1"))
    assert f"reason: {reason}" in capsys.readouterr().out


@pytest.mark.parametrize(("run", "heading"), [
    ({"targetVersion": "1.31.2"}, "bg-1  blue-green  aks1/blue[/p] -> 1.31.2"),
    # a remediation has no target version: its header names what it does, never "nodepool1 -> "
    ({"kind": "remediation", "pool": "nodepool1", "targetVersion": None,
      "options": {"kind": "relax-pdb", "node": "aks-nodepool1-1"}},
     "bg-1  remediation  aks1/nodepool1: relax-pdb node aks-nodepool1-1"),
])
def test_the_run_heading_names_what_the_run_does(run, heading, app_answers, capsys):
    app_answers["/api/upgrades/bg-1"] = {**run_body(), **run}
    status.run(status_args("bg-1"))
    first = capsys.readouterr().out.splitlines()[0]
    assert first == heading and not first.rstrip().endswith("->")
