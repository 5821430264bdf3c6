"""NewKubernetesVersionAvailable hands a blue-green pool over to the blue-green workflow."""

from __future__ import annotations

import pytest

from tests.unit.test_event_reactions import new_version, platform_for, seed_rolling_cluster
from upgrade.services.event_reactions import react_to_events

pytestmark = pytest.mark.usefixtures("production_steps")


def test_new_version_with_start_and_blue_green_strategy_starts_a_blue_green_run():
    # GIVEN a pool whose policy is blue-green, started automatically on a new version
    fake = seed_rolling_cluster()
    platform = platform_for(fake, {"onNewVersion": "start", "strategy": "blue-green"})
    # WHEN AKS announces a new version
    [note] = react_to_events([new_version()], platform)
    # THEN a blue-green run holds the pool, at the newest offered stable version, and it starts at preflight
    [run] = platform.runs.list_runs()
    assert (run.kind, run.pool, run.target_version, run.status) == ("blue-green", "nodepool1", "1.31.7", "running"), note
    [message] = [sent.message for sent in platform.queue.sent]
    assert message.step == "bluegreen.preflight" and message.run_id == run.run_id
    assert "upgrade.started" in [a.kind for a in platform.alerts.published]


def test_a_second_announcement_does_not_start_a_second_blue_green_run():
    fake = seed_rolling_cluster()
    platform = platform_for(fake, {"onNewVersion": "start", "strategy": "blue-green"})
    react_to_events([new_version("v1")], platform)
    # A different event id for the same version (AKS re-announces daily) finds the pool held.
    [note] = react_to_events([new_version("v2")], platform)
    assert len(platform.runs.list_runs()) == 1
    assert "already holds the pool" in note
