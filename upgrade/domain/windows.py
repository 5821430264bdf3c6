"""Maintenance windows: when a cluster-changing step may start.

A window is AKS's ``maintenanceWindow`` shape (``Microsoft.ContainerService/managedClusters/
maintenanceConfigurations``): a schedule (``daily``, ``weekly``, ``absoluteMonthly`` or
``relativeMonthly``, each with an interval), a local ``startTime``, a duration, a first
``startDate``, ``notAllowedDates`` and the clock it is read on. ARM's windows carry a fixed
``utcOffset``; the policy's may name an IANA time zone instead (``timeZone``), read with
``zoneinfo``, so a window at 09:00 Europe/Berlin stays at 09:00 across daylight saving changes.
The legacy ``default`` configuration's ``timeInWeek`` (days and UTC hour slots) and
``notAllowedTime`` are read too.

Rules (AKS's documented behaviour where it documents one, else the safer choice, noted):

- an occurrence starts at ``startTime`` local time on a matching date and lasts the duration in
  elapsed time (a 4-hour window starting 01:00 on the night clocks go forward ends at 06:00 local);
  a ``startTime`` that does not exist that day (inside a spring-forward gap) is read as zoneinfo
  reads it (fold=0: the offset before the change);
- intervals count from ``startDate`` (no occurrence before it): days for ``daily``; calendar weeks
  starting on Sunday for ``weekly`` (a start date after that week's chosen day skips the week, as
  AKS schedules it); calendar months for the monthly schedules;
- ``absoluteMonthly`` on a day a month lacks (the 31st in April) has no occurrence that month (our
  choice: no window rather than one on a day nobody chose);
- ``relativeMonthly`` ``First``…``Fourth`` is the n-th such weekday of the month, ``Last`` the last;
- ``notAllowedDates`` are whole local days (start and end inclusive): an occurrence is cut where it
  enters one, so no time inside a not-allowed date is ever in a window.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from upgrade.errors import InvalidInput

ScheduleKind = Literal["daily", "weekly", "absoluteMonthly", "relativeMonthly"]
SCHEDULE_KINDS: tuple[ScheduleKind, ...] = ("daily", "weekly", "absoluteMonthly", "relativeMonthly")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEK_INDEXES = ("First", "Second", "Third", "Fourth", "Last")
# How far ahead the next opening is searched: a schedule every 12 months on a day only some months
# have, behind a long not-allowed span, still opens within this.
HORIZON_DAYS = 3 * 366 + 31
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")

# The actions a window can gate, as the policy names them.
ACTIONS = ("start", "create-green", "drain-batch", "commit", "rolling-start", "remediation")


@dataclass(frozen=True)
class Schedule:
    kind: ScheduleKind
    interval: int = 1
    day_of_week: int | None = None  # 0 = Monday (weekly, relativeMonthly)
    day_of_month: int | None = None  # 1..31 (absoluteMonthly)
    week_index: str | None = None  # First..Fourth, Last (relativeMonthly)

    def matches(self, day: date, anchor: date) -> bool:
        if day < anchor:
            return False
        if self.kind == "daily":
            return (day - anchor).days % self.interval == 0
        if self.kind == "weekly":
            if day.weekday() != self.day_of_week:
                return False
            weeks = (_week_start(day) - _week_start(anchor)).days // 7
            return weeks % self.interval == 0
        months = (day.year - anchor.year) * 12 + day.month - anchor.month
        if months % self.interval:
            return False
        if self.kind == "absoluteMonthly":
            return day.day == self.day_of_month
        if day.weekday() != self.day_of_week:
            return False
        if self.week_index == "Last":
            return (day + timedelta(days=7)).month != day.month
        return (day.day - 1) // 7 == WEEK_INDEXES.index(self.week_index or "First")


def _week_start(day: date) -> date:
    """The Sunday that starts ``day``'s calendar week."""
    return day - timedelta(days=(day.weekday() + 1) % 7)


@dataclass(frozen=True)
class Span:
    """[start, end) in UTC."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Window:
    """One recurring window of a maintenance configuration."""

    schedule: Schedule
    start_time: time
    duration: timedelta
    zone: tzinfo
    start_date: date | None = None
    not_allowed_dates: tuple[tuple[date, date], ...] = ()

    def spans(self, since: datetime) -> Iterator[Span]:
        """The window's allowed spans that end after ``since``, earliest first (within the horizon)."""
        local_since = since.astimezone(self.zone).date()
        first = local_since - timedelta(days=self.duration.days + 1)
        anchor = self.start_date or date(1970, 1, 1)
        for offset in range(HORIZON_DAYS):
            day = first + timedelta(days=offset)
            if not self.schedule.matches(day, anchor):
                continue
            start = datetime.combine(day, self.start_time, tzinfo=self.zone).astimezone(UTC)
            for span in self._allowed(Span(start, start + self.duration)):
                if span.end > since:
                    yield span

    def _allowed(self, span: Span) -> list[Span]:
        """``span`` without the local days of ``not_allowed_dates``."""
        pieces = [span]
        for first, last in self.not_allowed_dates:
            block = Span(_local_midnight(first, self.zone), _local_midnight(last + timedelta(days=1), self.zone))
            pieces = [p for piece in pieces for p in _minus(piece, block)]
        return pieces


def _local_midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _minus(span: Span, block: Span) -> list[Span]:
    if block.end <= span.start or block.start >= span.end:
        return [span]
    left = [Span(span.start, block.start)] if block.start > span.start else []
    right = [Span(block.end, span.end)] if block.end < span.end else []
    return left + right


@dataclass(frozen=True)
class MaintenanceConfig:
    """A named set of windows (an ARM maintenance configuration or a policy window), minus the
    ``not_allowed`` UTC spans (the legacy ``notAllowedTime``)."""

    name: str
    windows: tuple[Window, ...]
    not_allowed: tuple[Span, ...] = ()
    source: str = "policy"  # "cluster" (ARM) or "policy"

    def _window_spans(self, window: Window, since: datetime) -> Iterator[Span]:
        for span in window.spans(since):
            pieces = [span]
            for block in self.not_allowed:
                pieces = [p for piece in pieces for p in _minus(piece, block)]
            yield from (p for p in pieces if p.end > since)

    def spans(self, since: datetime) -> Iterator[Span]:
        """Every allowed span ending after ``since``, earliest first."""
        return iter(sorted((s for w in self.windows for s in self._window_spans(w, since)), key=lambda s: s.start))

    def next_span(self, now: datetime) -> Span | None:
        """The span open at ``now``, else the next one to open; None if none opens in the horizon."""
        firsts = (next(self._window_spans(w, now), None) for w in self.windows)
        return min((s for s in firsts if s is not None), key=lambda s: s.start, default=None)


@dataclass(frozen=True)
class WindowStatus:
    """Whether an action may start now, and when its window closes or next opens."""

    open: bool
    opens_at: datetime | None  # the next opening when closed (None: none within the horizon)
    closes_at: datetime | None  # the current window's end when open
    config: str = ""  # the configuration whose window decides
    missing: tuple[str, ...] = ()  # configurations the action names that do not exist

    def describe(self) -> str:
        if self.open:
            return f"inside maintenance window {self.config} until {_fmt(self.closes_at)}"
        if self.opens_at is None:
            named = ", ".join(self.missing) if self.missing else self.config or "its windows"
            return f"waiting for window: no window of {named} opens within {HORIZON_DAYS} days"
        return f"waiting for window, opens at {_fmt(self.opens_at)} ({self.config})"


def _fmt(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "?"


def window_status(configs: Sequence[MaintenanceConfig], now: datetime, *, missing: Sequence[str] = ()) -> WindowStatus:
    """The union of ``configs``' windows at ``now``: open if any is open (closing at the end of the
    latest open one that contains now), else the earliest next opening."""
    best: tuple[Span, str] | None = None
    open_spans: list[tuple[Span, str]] = []
    for config in configs:
        span = config.next_span(now)
        if span is None:
            continue
        if span.start <= now:
            open_spans.append((span, config.name))
        elif best is None or span.start < best[0].start:
            best = (span, config.name)
    if open_spans:
        span, name = max(open_spans, key=lambda item: item[0].end)
        return WindowStatus(True, None, span.end, name, tuple(missing))
    if best is None:
        return WindowStatus(False, None, None, ", ".join(c.name for c in configs), tuple(missing))
    return WindowStatus(False, best[0].start, None, best[1], tuple(missing))


def upcoming(configs: Sequence[MaintenanceConfig], now: datetime, count: int = 3) -> list[tuple[str, Span]]:
    """The next ``count`` spans of each configuration (open now or later), earliest first."""
    found: list[tuple[str, Span]] = []
    for config in configs:
        spans = config.spans(now)
        for _ in range(count):
            span = next(spans, None)
            if span is None:
                break
            found.append((config.name, span))
    return sorted(found, key=lambda item: item[1].start)


# ---- parsing the ARM / policy shape ----------------------------------------------------------------


def _zone(raw: Mapping[str, Any], where: str, what: str) -> tzinfo:
    zone_name, offset = raw.get("timeZone"), raw.get("utcOffset")
    if zone_name is not None and offset is not None:
        raise InvalidInput(what, f"{where}.timeZone", "give timeZone or utcOffset, not both")
    if zone_name is not None:
        try:
            return ZoneInfo(str(zone_name))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(what, f"{where}.timeZone", f"{zone_name!r} is not an IANA time zone") from exc
    if offset in (None, ""):
        return UTC
    match = _OFFSET.match(str(offset))
    if not match or int(match[3]) >= 60 or int(match[2]) > 14:
        raise InvalidInput(what, f"{where}.utcOffset", f"{offset!r} is not an offset like +05:30 or -07:00")
    # ARM's utcOffset is a fixed offset by definition; a named zone is the way to follow DST.
    sign = -1 if match[1] == "-" else 1
    return timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))


def _date(value: object, where: str, what: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidInput(what, where, f"{value!r} is not a date (YYYY-MM-DD)") from exc


def _int(raw: Mapping[str, Any], key: str, where: str, what: str, low: int, high: int, default: int | None = None) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(what, f"{where}.{key}", f"must be an integer from {low} to {high}")
    return value


def _weekday(raw: Mapping[str, Any], where: str, what: str) -> int:
    value = raw.get("dayOfWeek")
    if value not in WEEKDAYS:
        raise InvalidInput(what, f"{where}.dayOfWeek", f"must be one of {', '.join(WEEKDAYS)}")
    return WEEKDAYS.index(value)


def parse_schedule(raw: object, where: str, what: str) -> Schedule:
    if not isinstance(raw, Mapping):
        raise InvalidInput(what, where, "must be an object")
    kinds = [k for k in raw if raw.get(k) is not None]
    unknown = [k for k in kinds if k not in SCHEDULE_KINDS]
    if unknown:
        raise InvalidInput(what, f"{where}.{unknown[0]}", f"unknown schedule type (expected {', '.join(SCHEDULE_KINDS)})")
    if len(kinds) != 1:
        raise InvalidInput(what, where, f"needs exactly one of {', '.join(SCHEDULE_KINDS)}")
    kind: ScheduleKind = kinds[0]
    body = raw[kind]
    at = f"{where}.{kind}"
    if not isinstance(body, Mapping):
        raise InvalidInput(what, at, "must be an object")
    if kind == "daily":
        return Schedule(kind, _int(body, "intervalDays", at, what, 1, 7))
    if kind == "weekly":
        return Schedule(kind, _int(body, "intervalWeeks", at, what, 1, 4), day_of_week=_weekday(body, at, what))
    if kind == "absoluteMonthly":
        return Schedule(kind, _int(body, "intervalMonths", at, what, 1, 6),
                        day_of_month=_int(body, "dayOfMonth", at, what, 1, 31))
    index = body.get("weekIndex")
    if index not in WEEK_INDEXES:
        raise InvalidInput(what, f"{at}.weekIndex", f"must be one of {', '.join(WEEK_INDEXES)}")
    return Schedule(kind, _int(body, "intervalMonths", at, what, 1, 6), day_of_week=_weekday(body, at, what),
                    week_index=index)


def _start_time(value: object, where: str, what: str) -> time:
    text = str(value or "")
    if not re.fullmatch(r"\d{2}:\d{2}", text):
        raise InvalidInput(what, where, f"{value!r} is not a time like 09:00")
    try:
        return time.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(what, where, f"{value!r} is not a time like 09:00") from exc


def parse_window(raw: Mapping[str, Any], where: str, what: str, *, minutes_allowed: bool) -> Window:
    """A ``maintenanceWindow`` (ARM: durationHours 4-24, utcOffset); the policy's may also give
    ``durationMinutes`` and an IANA ``timeZone`` (``minutes_allowed``)."""
    zone = _zone(raw, where, what)
    if minutes_allowed and "durationMinutes" in raw:
        if "durationHours" in raw:
            raise InvalidInput(what, f"{where}.durationMinutes", "give durationHours or durationMinutes, not both")
        duration = timedelta(minutes=_int(raw, "durationMinutes", where, what, 1, 24 * 60))
    else:
        duration = timedelta(hours=_int(raw, "durationHours", where, what, 1 if minutes_allowed else 4, 24))
    start_date = _date(raw["startDate"], f"{where}.startDate", what) if raw.get("startDate") else None
    spans: list[tuple[date, date]] = []
    for index, item in enumerate(raw.get("notAllowedDates") or []):
        at = f"{where}.notAllowedDates[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidInput(what, at, "must be an object with start and end dates")
        first, last = _date(item.get("start"), f"{at}.start", what), _date(item.get("end"), f"{at}.end", what)
        if last < first:
            raise InvalidInput(what, f"{at}.end", "is before start")
        spans.append((first, last))
    return Window(
        schedule=parse_schedule(raw.get("schedule"), f"{where}.schedule", what),
        start_time=_start_time(raw.get("startTime"), f"{where}.startTime", what),
        duration=duration,
        zone=zone,
        start_date=start_date,
        not_allowed_dates=tuple(spans),
    )


def _time_in_week(items: Iterable[Any], where: str, what: str) -> tuple[Window, ...]:
    """The legacy ``timeInWeek`` (day and UTC hour slots): one weekly one-hour window per slot."""
    windows = []
    for index, item in enumerate(items):
        at = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidInput(what, at, "must be an object with day and hourSlots")
        day = _weekday({"dayOfWeek": item.get("day")}, at, what)
        for hour in item.get("hourSlots") or range(24):
            if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
                raise InvalidInput(what, f"{at}.hourSlots", "hours are integers from 0 to 23")
            windows.append(Window(Schedule("weekly", 1, day_of_week=day), time(hour), timedelta(hours=1),
                                  UTC))
    return tuple(windows)


def config_from_arm(name: str, properties: Mapping[str, Any]) -> MaintenanceConfig:
    """A maintenance configuration's ``properties`` as ARM returns them."""
    what = "maintenance configuration"
    windows: list[Window] = []
    if properties.get("maintenanceWindow"):
        windows.append(parse_window(properties["maintenanceWindow"], f"{name}.maintenanceWindow", what,
                                    minutes_allowed=False))
    windows.extend(_time_in_week(properties.get("timeInWeek") or [], f"{name}.timeInWeek", what))
    blocked = []
    for index, item in enumerate(properties.get("notAllowedTime") or []):
        try:
            start, end = (datetime.fromisoformat(str(item[k])) for k in ("start", "end"))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(what, f"{name}.notAllowedTime[{index}]", "needs start and end times") from exc
        blocked.append(Span(_utc(start), _utc(end)))
    return MaintenanceConfig(name, tuple(windows), tuple(blocked), source="cluster")


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def config_from_policy(name: str, raw: Mapping[str, Any], where: str) -> MaintenanceConfig:
    return MaintenanceConfig(name, (parse_window(raw, where, "setting", minutes_allowed=True),), source="policy")
