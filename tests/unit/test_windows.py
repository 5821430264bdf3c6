"""Window arithmetic against AKS's schedule types: time zones, DST, monthly schedules, not-allowed dates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from upgrade.domain.windows import (
    MaintenanceConfig,
    config_from_arm,
    config_from_policy,
    upcoming,
    window_status,
)
from upgrade.errors import InvalidInput

UTC = UTC


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def arm(window: dict) -> MaintenanceConfig:
    return config_from_arm("aksManagedAutoUpgradeSchedule", {"maintenanceWindow": window})


def policy(window: dict) -> MaintenanceConfig:
    return config_from_policy("w", window, "maintenance.windows.w")


WEEKLY_SAT = {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Saturday"}}, "durationHours": 4,
              "startTime": "22:00", "utcOffset": "+00:00", "startDate": "2026-01-01"}

# (case, config, now, expected open, expected opens_at or closes_at)
CASES = [
    ("weekly: before the window", arm(WEEKLY_SAT), "2026-03-06T12:00:00+00:00", False, "2026-03-07T22:00:00+00:00"),
    ("weekly: inside, closes after midnight", arm(WEEKLY_SAT), "2026-03-08T01:00:00+00:00", True,
     "2026-03-08T02:00:00+00:00"),
    ("weekly: end is exclusive", arm(WEEKLY_SAT), "2026-03-08T02:00:00+00:00", False, "2026-03-14T22:00:00+00:00"),
    ("utcOffset +05:30 is a fixed offset", arm({**WEEKLY_SAT, "utcOffset": "+05:30"}),
     "2026-03-07T12:00:00+00:00", False, "2026-03-07T16:30:00+00:00"),
    # intervalWeeks counts Sunday-started weeks from startDate's week: startDate Tuesday 2026-04-14,
    # every 2 weeks on Sunday -> 2026-04-26 (the Sunday of 04-12 is before startDate; 04-19 is week 1).
    ("weekly interval 2 anchored on startDate's week",
     arm({"schedule": {"weekly": {"intervalWeeks": 2, "dayOfWeek": "Sunday"}}, "durationHours": 4,
          "startTime": "00:00", "startDate": "2026-04-14"}),
     "2026-04-14T10:00:00+00:00", False, "2026-04-26T00:00:00+00:00"),
    ("daily every 3 days from startDate",
     arm({"schedule": {"daily": {"intervalDays": 3}}, "durationHours": 6, "startTime": "01:00",
          "startDate": "2026-05-01"}),
     "2026-05-02T00:00:00+00:00", False, "2026-05-04T01:00:00+00:00"),
    ("nothing before startDate",
     arm({"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 6, "startTime": "01:00",
          "startDate": "2026-07-10"}),
     "2026-07-01T00:00:00+00:00", False, "2026-07-10T01:00:00+00:00"),
    ("absoluteMonthly on the 15th every 2 months",
     arm({"schedule": {"absoluteMonthly": {"intervalMonths": 2, "dayOfMonth": 15}}, "durationHours": 8,
          "startTime": "03:00", "startDate": "2026-01-01"}),
     "2026-02-10T00:00:00+00:00", False, "2026-03-15T03:00:00+00:00"),
    ("absoluteMonthly 31st skips months without one",
     arm({"schedule": {"absoluteMonthly": {"intervalMonths": 1, "dayOfMonth": 31}}, "durationHours": 4,
          "startTime": "03:00", "startDate": "2026-01-01"}),
     "2026-04-01T00:00:00+00:00", False, "2026-05-31T03:00:00+00:00"),
    ("relativeMonthly first Monday",
     arm({"schedule": {"relativeMonthly": {"intervalMonths": 1, "weekIndex": "First", "dayOfWeek": "Monday"}},
          "durationHours": 4, "startTime": "08:00", "startDate": "2026-01-01"}),
     "2026-06-02T00:00:00+00:00", False, "2026-07-06T08:00:00+00:00"),
    ("relativeMonthly last Friday (a five-Friday month)",
     arm({"schedule": {"relativeMonthly": {"intervalMonths": 1, "weekIndex": "Last", "dayOfWeek": "Friday"}},
          "durationHours": 4, "startTime": "20:00", "startDate": "2026-01-01"}),
     "2026-05-01T00:00:00+00:00", False, "2026-05-29T20:00:00+00:00"),
    ("relativeMonthly fourth Thursday every 3 months",
     arm({"schedule": {"relativeMonthly": {"intervalMonths": 3, "weekIndex": "Fourth", "dayOfWeek": "Thursday"}},
          "durationHours": 4, "startTime": "00:00", "startDate": "2026-01-01"}),
     "2026-01-23T00:00:00+00:00", False, "2026-04-23T00:00:00+00:00"),
    # Europe/Berlin: clocks go forward 2026-03-29 02:00 -> 03:00 and back 2026-10-25 03:00 -> 02:00.
    ("time zone: 09:00 Berlin is 08:00 UTC in winter",
     policy({"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 2, "startTime": "09:00",
             "timeZone": "Europe/Berlin"}),
     "2026-03-28T00:00:00+00:00", False, "2026-03-28T08:00:00+00:00"),
    ("DST forward: 09:00 Berlin is 07:00 UTC the next day",
     policy({"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 2, "startTime": "09:00",
             "timeZone": "Europe/Berlin"}),
     "2026-03-28T12:00:00+00:00", False, "2026-03-29T07:00:00+00:00"),
    ("DST forward: a 4-hour window from 01:00 is 4 elapsed hours (ends 06:00 local)",
     policy({"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 4, "startTime": "01:00",
             "timeZone": "Europe/Berlin"}),
     "2026-03-29T01:30:00+00:00", True, "2026-03-29T04:00:00+00:00"),
    ("DST back: 09:00 Berlin is 08:00 UTC again",
     policy({"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Sunday"}}, "durationHours": 2,
             "startTime": "09:00", "timeZone": "Europe/Berlin"}),
     "2026-10-24T12:00:00+00:00", False, "2026-10-25T08:00:00+00:00"),
    ("DST gap: 02:30 does not exist on 2026-03-29 in Berlin; read as zoneinfo does (fold=0)",
     policy({"schedule": {"daily": {"intervalDays": 1}}, "durationMinutes": 30, "startTime": "02:30",
             "timeZone": "Europe/Berlin"}),
     "2026-03-29T00:00:00+00:00", False, "2026-03-29T01:30:00+00:00"),
    ("US time zone: 22:00 New York after the November change is 03:00 UTC",
     policy({"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 1, "startTime": "22:00",
             "timeZone": "America/New_York"}),
     "2026-11-01T12:00:00+00:00", False, "2026-11-02T03:00:00+00:00"),
    ("not-allowed dates skip whole occurrences",
     arm({**WEEKLY_SAT, "notAllowedDates": [{"start": "2026-03-07", "end": "2026-03-20"}]}),
     "2026-03-06T12:00:00+00:00", False, "2026-03-21T22:00:00+00:00"),
    ("not-allowed date cuts an occurrence at local midnight",
     arm({**WEEKLY_SAT, "notAllowedDates": [{"start": "2026-03-08", "end": "2026-03-08"}]}),
     "2026-03-07T23:00:00+00:00", True, "2026-03-08T00:00:00+00:00"),
    ("not-allowed dates are local days of the window's zone",
     policy({"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 2, "startTime": "00:30",
             "timeZone": "Asia/Tokyo", "notAllowedDates": [{"start": "2026-01-02", "end": "2026-01-02"}]}),
     "2026-01-01T12:00:00+00:00", False, "2026-01-02T15:30:00+00:00"),
]


@pytest.mark.parametrize(("case", "config", "now", "is_open", "expected"), CASES, ids=[c[0] for c in CASES])
def test_window_status(case: str, config: MaintenanceConfig, now: str, is_open: bool, expected: str) -> None:
    status = window_status([config], at(now))
    assert status.open is is_open, status.describe()
    assert (status.closes_at if is_open else status.opens_at) == at(expected)


def test_union_of_configurations_opens_at_the_earliest_and_names_it() -> None:
    a = policy({"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 1, "startTime": "10:00"})
    b = config_from_policy("b", {"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 1,
                                 "startTime": "08:00"}, "b")
    status = window_status([a, b], at("2026-06-01T07:00:00+00:00"))
    assert (status.open, status.opens_at, status.config) == (False, at("2026-06-01T08:00:00+00:00"), "b")
    assert status.describe() == "waiting for window, opens at 2026-06-01T08:00:00Z (b)"
    inside = window_status([a, b], at("2026-06-01T10:30:00+00:00"))
    assert (inside.open, inside.closes_at, inside.config) == (True, at("2026-06-01T11:00:00+00:00"), "w")


def test_no_window_within_horizon_says_so() -> None:
    config = arm({**WEEKLY_SAT, "notAllowedDates": [{"start": "2026-01-01", "end": "2036-01-01"}]})
    status = window_status([config], at("2026-03-01T00:00:00+00:00"))
    assert not status.open and status.opens_at is None
    assert "no window" in status.describe()


def test_legacy_time_in_week_and_not_allowed_time() -> None:
    config = config_from_arm("default", {
        "timeInWeek": [{"day": "Monday", "hourSlots": [1, 2]}],
        "notAllowedTime": [{"start": "2026-06-01T00:00:00Z", "end": "2026-06-02T00:00:00Z"}],
    })
    # 2026-06-01 is a Monday inside notAllowedTime: next is Monday 06-08 01:00.
    assert window_status([config], at("2026-05-31T12:00:00+00:00")).opens_at == at("2026-06-08T01:00:00+00:00")
    assert window_status([config], at("2026-06-08T02:30:00+00:00")).open


def test_upcoming_lists_next_spans_in_order() -> None:
    spans = upcoming([arm(WEEKLY_SAT)], at("2026-03-01T03:00:00+00:00"), count=2)
    assert [(n, s.start) for n, s in spans] == [
        ("aksManagedAutoUpgradeSchedule", at("2026-03-07T22:00:00+00:00")),
        ("aksManagedAutoUpgradeSchedule", at("2026-03-14T22:00:00+00:00")),
    ]


BAD = [
    ({**WEEKLY_SAT, "durationHours": 2}, "durationHours", False),
    ({**WEEKLY_SAT, "utcOffset": "+5:30"}, "utcOffset", False),
    ({**WEEKLY_SAT, "utcOffset": None, "timeZone": "Mars/Olympus"}, "timeZone", True),
    ({**WEEKLY_SAT, "timeZone": "UTC"}, "timeZone", True),
    ({**WEEKLY_SAT, "schedule": {}}, "schedule", False),
    ({**WEEKLY_SAT, "schedule": {"daily": {"intervalDays": 1}, "weekly": {"intervalWeeks": 1}}}, "schedule", False),
    ({**WEEKLY_SAT, "schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Funday"}}}, "dayOfWeek", False),
    ({**WEEKLY_SAT, "schedule": {"relativeMonthly": {"intervalMonths": 1, "weekIndex": "Fifth",
                                                     "dayOfWeek": "Monday"}}}, "weekIndex", False),
    ({**WEEKLY_SAT, "startTime": "25:00"}, "startTime", False),
    ({**WEEKLY_SAT, "notAllowedDates": [{"start": "2026-02-02", "end": "2026-02-01"}]}, "notAllowedDates", False),
]


@pytest.mark.parametrize(("window", "field", "as_policy"), BAD)
def test_bad_windows_name_the_field(window: dict, field: str, as_policy: bool) -> None:
    with pytest.raises(InvalidInput) as caught:
        policy(window) if as_policy else arm(window)
    assert field in caught.value.field
