"""Maintenance windows gate the cluster-changing steps of real runs (blue-green, rolling, auto-start)."""

from __future__ import annotations

import json
from datetime import datetime

from tests.fakes import FakePlatform
from tests.unit.test_bluegreen_steps import (  # noqa: F401  (bluegreen_registered is an autouse fixture)
    CLUSTER,
    Driver,
    bluegreen_registered,
    make_platform,
    scenario3,
    start,
)
from upgrade.domain.policy import parse_policy
from upgrade.domain.runs import RunRecord
from upgrade.domain.steps import Retry, StepMessage
from upgrade.domain.windows import config_from_arm
from upgrade.errors import PermanentError
from upgrade.services import registry
from upgrade.services.step_runner import StepContext, run_step_message
from upgrade.services.upgrade_requests import decide_from_request
from upgrade.services.windows import gate, windows_report

PRODUCTION_MODULES = registry._workflow_modules
# DEFAULT_NOW is 2026-01-15T09:00Z: a daily one-minute window at 10:00 UTC is closed at the start.
NIGHT = {"schedule": {"daily": {"intervalDays": 1}}, "startTime": "10:00", "durationMinutes": 1, "timeZone": "UTC"}


def windowed(platform: FakePlatform, maintenance: dict) -> FakePlatform:
    platform.policy = parse_policy(json.dumps({"defaults": {"maintenance": maintenance}}))
    return platform


def nightly(cluster=None) -> FakePlatform:
    """scenario3 (or ``cluster``) gated by the daily one-minute window at 10:00 UTC."""
    return windowed(make_platform(cluster or scenario3()), {"windows": {"night": NIGHT}, "default": ["night"]})


def with_configs(fake, maintenance: dict) -> FakePlatform:
    """A platform over ``fake`` (a cluster with ARM maintenance configurations), gated by ``maintenance``."""
    return windowed(FakePlatform(kubes={CLUSTER.arm_id: fake}, aks_by_subscription={CLUSTER.subscription_id: fake},
                                 allowed_clusters=frozenset({CLUSTER.arm_id})), maintenance)


def deliver_first(platform: FakePlatform) -> RunRecord:
    [sent] = platform.queue.take()
    run_step_message(sent.message.to_json(), platform, message_id="m1")
    platform.queue.sent.append(sent)  # leave it for the driver, as the queue would redeliver the wait
    return platform.runs.get(sent.message.run_id)


def test_a_run_started_outside_its_window_waits_and_says_when_it_opens():
    platform = nightly()
    run = start(platform)
    [sent] = platform.queue.take()
    report = run_step_message(sent.message.to_json(), platform, message_id="m1")
    waiting = platform.runs.get(run.run_id)
    assert isinstance(report.outcome, Retry) and report.outcome.delay_seconds == 3600
    assert (waiting.status, waiting.state) == ("running", "bluegreen.preflight")
    assert waiting.reason == "waiting for window, opens at 2026-01-15T10:00:00Z (night)"
    assert waiting.facts["windowWait"]["opensAt"] == "2026-01-15T10:00:00+00:00"
    started, row = platform.runs.history(run.run_id)
    assert (started.outcome, row.outcome, row.reason) == ("started", "retry", waiting.reason)


def test_a_window_closing_mid_run_pauses_between_batches_and_the_run_resumes_and_ends_done():
    cluster = scenario3()
    platform = nightly(cluster)
    run = start(platform)
    final = Driver(platform).run(run_id=run.run_id)
    assert final.status == "succeeded", final.reason
    waits = final.facts["windowWaits"]
    # the start waits for the first opening; batch 2 finds the minute over and waits for the next day;
    # the commit after the final soak waits for the day after's window too
    assert [w["step"] for w in waits] == ["bluegreen.preflight", "bluegreen.drain_batch", "bluegreen.commit"]
    assert [w["opensAt"] for w in waits] == ["2026-01-15T10:00:00+00:00", "2026-01-16T10:00:00+00:00",
                                             "2026-01-17T10:00:00+00:00"]
    assert final.facts["windowWait"] is None
    history = platform.runs.history(run.run_id)
    waited = [h for h in history if h.reason.startswith("waiting for window")]
    assert {h.step for h in waited} == {"bluegreen.preflight", "bluegreen.drain_batch", "bluegreen.commit"}
    # no batch was cut: each batch drained entirely inside one window
    drained = [h for h in history if h.step == "bluegreen.drain_batch" and h.outcome == "next"]
    assert [h.at.date().isoformat() for h in drained] == ["2026-01-15", "2026-01-16"]
    assert "blue" not in cluster.pools and set(cluster.pools) == {"system", final.facts["greenPool"]}


def test_a_drain_in_progress_is_never_cut_by_a_closing_window():
    platform = nightly()
    run = start(platform)
    half = StepMessage(v=1, run_id=run.run_id, step="bluegreen.drain_batch", cluster=CLUSTER.arm_id, pool="blue",
                       args={"drain": {"aks-blue-0": None}})
    ran = []
    outcome = gate(StepContext(half, platform, run), lambda: ran.append(1) or Retry(1, "draining"))
    assert ran == [1] and outcome.reason == "draining"
    fresh = half.model_copy(update={"args": {}})
    assert gate(StepContext(fresh, platform, run), lambda: ran.append(2) or Retry(1, "x")).reason.startswith(
        "waiting for window")
    assert ran == [1]


def test_an_override_is_recorded_and_the_waiting_step_goes_at_once():
    platform = nightly()
    run = start(platform)
    deliver_first(platform)
    platform.queue.take()
    updated = decide_from_request(platform, run.run_id, "override-window", {"reason": "hotfix CVE"}, actor="bob")
    assert updated.facts["windowOverride"]["actor"] == "bob"
    [resent] = platform.queue.take()
    assert (resent.message.step, resent.message.attempt, resent.delay_seconds) == ("bluegreen.preflight", 3, 0)
    platform.queue.sent.append(resent)
    final = Driver(platform).run(run_id=run.run_id)
    assert final.status == "succeeded" and "windowWaits" in final.facts and len(final.facts["windowWaits"]) == 1
    assert any(h.outcome == "decision" and "override-window by bob: hotfix CVE" in h.reason
               for h in platform.runs.history(run.run_id))


def test_an_override_needs_a_reason():
    platform = nightly()
    run = start(platform)
    try:
        decide_from_request(platform, run.run_id, "override-window", {}, actor="bob")
    except ValueError as exc:
        assert "reason" in str(exc)
    else:
        raise AssertionError("an override without a reason was accepted")


class ClusterWithConfigs:
    """scenario3's fake with ARM maintenance configurations."""

    def __init__(self, configs: dict) -> None:
        self.inner = scenario3()
        self.configs = [config_from_arm(name, props) for name, props in configs.items()]
        self.reads = 0

    def list_maintenance_configurations(self, cluster):
        self.reads += 1
        if isinstance(self.configs, Exception):
            raise self.configs
        return self.configs

    def __getattr__(self, name):
        return getattr(self.inner, name)


SATURDAY = {"maintenanceWindow": {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Saturday"}},
                                  "durationHours": 4, "startTime": "22:00", "utcOffset": "+00:00"}}


def test_the_clusters_arm_configuration_gates_the_action_it_is_named_for():
    fake = ClusterWithConfigs({"aksManagedAutoUpgradeSchedule": SATURDAY})
    platform = with_configs(fake, {"actions": {"start": ["aksManagedAutoUpgradeSchedule"]}})
    run = start(platform)
    waiting = deliver_first(platform)
    assert waiting.reason == "waiting for window, opens at 2026-01-17T22:00:00Z (aksManagedAutoUpgradeSchedule)"
    assert fake.reads == 1
    report = windows_report(platform, CLUSTER, "blue", datetime.fromisoformat("2026-01-15T09:00:00+00:00"))
    assert list(report) == ["start"] and report["start"]["next"][0]["start"] == "2026-01-17T22:00:00+00:00"
    assert run.run_id


def test_a_configuration_the_cluster_lacks_is_named_and_the_action_waits():
    fake = ClusterWithConfigs({})
    platform = with_configs(fake, {"default": ["aksManagedNodeOSUpgradeSchedule"]})
    run = start(platform)
    waiting = deliver_first(platform)
    assert "not found: aksManagedNodeOSUpgradeSchedule" in waiting.reason
    assert waiting.reason.startswith("waiting for window")
    # a wait no window ends is alerted once, not on each hourly look again
    [alert] = platform.alerts.published
    assert (alert.kind, alert.severity, alert.run_id) == ("run.window-never-opens", "error", run.run_id)
    assert "aksManagedNodeOSUpgradeSchedule" in alert.summary and "override-window" in alert.summary
    again = max(platform.queue.take(), key=lambda sent: sent.message.attempt)  # the wait's look again
    assert again.delay_seconds == 3600
    report = run_step_message(again.message.to_json(), platform, message_id="m2")
    assert isinstance(report.outcome, Retry) and platform.runs.get(run.run_id).reason == waiting.reason
    assert len(platform.alerts.published) == 1


def test_a_wait_for_a_window_that_opens_is_not_alerted():
    platform = nightly()
    start(platform)
    assert deliver_first(platform).reason.startswith("waiting for window, opens at")
    assert platform.alerts.published == []


def test_windows_that_cannot_be_read_are_alerted_once_and_the_step_goes_when_they_can():
    fake = ClusterWithConfigs({"aksManagedAutoUpgradeSchedule": SATURDAY})
    configs, fake.configs = fake.configs, PermanentError("AuthorizationFailed: no read on maintenanceConfigurations")
    platform = with_configs(fake, {"actions": {"start": ["aksManagedAutoUpgradeSchedule"]}})
    run = start(platform)
    waiting = deliver_first(platform)
    assert waiting.reason.startswith("maintenance windows of start could not be read: AuthorizationFailed")
    again = max(platform.queue.take(), key=lambda sent: sent.message.attempt)
    assert again.delay_seconds == 300 and platform.alerts.published == []  # one failure may be transient
    for n in range(4):  # 5-minute looks: alerted once the failure has lasted 15 minutes, then not again
        platform.clock.advance(300)
        assert isinstance(run_step_message(again.message.to_json(), platform, message_id=f"m{n}").outcome, Retry)
        [again] = platform.queue.take()
        assert len(platform.alerts.published) == (0 if n < 2 else 1), n
    [alert] = platform.alerts.published
    assert (alert.kind, alert.severity, alert.run_id) == ("run.window-unreadable", "error", run.run_id)
    fake.configs = configs  # readable again: the window's own wait, and the failure is over
    run_step_message(again.message.to_json(), platform, message_id="m9")
    current = platform.runs.get(run.run_id)
    assert current.reason.startswith("waiting for window, opens at 2026-01-17T22:00:00Z")
    assert current.facts["windowReadFailed"] is None and len(platform.alerts.published) == 1


def test_an_automatic_start_on_a_new_version_waits_for_the_window(monkeypatch):
    from tests.unit.test_event_reactions import new_version, platform_for, seed_rolling_cluster
    from upgrade.services.event_reactions import react_to_events

    monkeypatch.setattr(registry, "_workflow_modules", PRODUCTION_MODULES)
    registry.step_registry.cache_clear()

    fake = seed_rolling_cluster()
    platform = platform_for(fake, {"onNewVersion": "start", "maintenance": {"windows": {"night": NIGHT},
                                                                           "default": ["night"]}})
    react_to_events([new_version()], platform)
    [run] = platform.runs.list_runs()
    waiting = deliver_first(platform)
    assert (run.kind, waiting.state) == ("rolling", "rolling.apply_settings")
    assert waiting.reason == "waiting for window, opens at 2026-01-15T10:00:00Z (night)"
    assert fake.calls["begin_put_pool"] == 0


def test_preflight_prints_the_next_windows_of_each_gated_action():
    from upgrade.services.preflight import preflight_from_request

    fake = ClusterWithConfigs({"aksManagedAutoUpgradeSchedule": SATURDAY})
    platform = with_configs(fake, {"windows": {"night": NIGHT}, "default": ["night"],
                                   "actions": {"drain-batch": ["aksManagedAutoUpgradeSchedule", "night"]}})
    report = preflight_from_request(platform, {"cluster": CLUSTER.arm_id, "pool": "blue", "strategy": "blue-green",
                                               "targetVersion": "1.31.2"})
    windows = report["maintenanceWindows"]
    assert set(windows) == {"start", "create-green", "drain-batch", "commit", "rolling-start", "remediation"}
    assert windows["start"]["status"] == "waiting for window, opens at 2026-01-15T10:00:00Z (night)"
    assert [n["start"] for n in windows["drain-batch"]["next"]] == [
        "2026-01-15T10:00:00+00:00", "2026-01-16T10:00:00+00:00", "2026-01-17T10:00:00+00:00"]
    assert fake.reads == 1


def test_the_cli_preflight_prints_the_windows_the_node_image_and_the_holds():
    from upgrade.cli.preflight import _gates_lines

    lines = _gates_lines({
        "nodeImage": {"current": "img-1", "latest": "img-2", "upToDate": False, "nodesBehind": ["n1"]},
        "maintenanceWindows": {"start": {"status": "waiting for window, opens at 2026-01-15T10:00:00Z (night)",
                                         "next": [{"config": "night", "start": "2026-01-15T10:00:00+00:00",
                                                   "end": "2026-01-15T10:01:00+00:00"}]}},
        "holds": [{"node": "n1", "source": "node", "by": "team-x", "reason": "batch"}],
    })
    assert lines == [
        "node image: img-1 -> latest img-2; nodes behind: n1",
        "window for start: waiting for window, opens at 2026-01-15T10:00:00Z (night); "
        "next: 2026-01-15T10:00Z-10:01Z (night)",
        "held: node n1 by team-x (node): batch",
    ]
