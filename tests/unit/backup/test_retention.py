"""The retention rules, on plain data: which snapshots a job deletes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from molibackup.retention import Policy, Snapshot, age_in_days, format_age, plan

NOW = datetime(2026, 11, 28, 4, 0, 0, tzinfo=UTC)


def snap(ident: str, age_days: float, volume: str = "vol-a", state: str = "completed") -> Snapshot:
    return Snapshot(ident, volume, NOW - timedelta(days=age_days), state, f"name-{ident}")


def deleted(snapshots: list[Snapshot], policy: Policy, **kwargs: object) -> set[str]:
    return {d.snapshot.snapshot_id for d in plan(snapshots, NOW, policy, **kwargs) if d.delete}


@pytest.mark.parametrize(
    ("ages", "retention", "expected"),
    [
        pytest.param([1, 10, 29], 30, set(), id="all-within-retention"),
        pytest.param([1, 31, 45], 30, {"s1", "s2"}, id="older-than-retention-go"),
        pytest.param([1, 30.5], 30, {"s1"}, id="half-a-day-past-counts"),
        pytest.param([1, 29.99], 30, set(), id="just-inside-stays"),
        pytest.param([40, 50, 60], 30, {"s1", "s2"}, id="newest-completed-kept-when-all-expired"),
    ],
)
def test_snapshots_older_than_retention_are_deleted(
    ages: list[float], retention: int, expected: set[str]
) -> None:
    snapshots = [snap(f"s{i}", age) for i, age in enumerate(ages)]
    assert deleted(snapshots, Policy(retention)) == expected


def test_min_keep_keeps_that_many_newest_completed_whatever_their_age() -> None:
    snapshots = [snap("s0", 100), snap("s1", 200), snap("s2", 300), snap("s3", 400)]
    assert deleted(snapshots, Policy(30, min_keep=2)) == {"s2", "s3"}


def test_a_pending_snapshot_does_not_stand_in_for_a_completed_one() -> None:
    snapshots = [snap("new", 0, state="pending"), snap("old", 90)]
    assert deleted(snapshots, Policy(30)) == set()


def test_a_failed_snapshot_does_not_stand_in_for_a_completed_one() -> None:
    snapshots = [snap("broken", 1, state="error"), snap("old", 90), snap("older", 95)]
    assert deleted(snapshots, Policy(30)) == {"older"}


def test_expired_failed_snapshots_are_deleted() -> None:
    snapshots = [snap("good", 1), snap("broken", 40, state="error")]
    assert deleted(snapshots, Policy(30)) == {"broken"}


def test_pending_snapshots_are_never_deleted() -> None:
    snapshots = [snap("good", 1), snap("stuck", 40, state="pending")]
    assert deleted(snapshots, Policy(30)) == set()


def test_a_volume_without_a_new_snapshot_keeps_all_its_snapshots() -> None:
    snapshots = [snap("a1", 40, "vol-a"), snap("a2", 50, "vol-a"),
                 snap("b1", 40, "vol-b"), snap("b2", 50, "vol-b")]
    result = deleted(snapshots, Policy(1), protected_volumes=frozenset({"vol-a"}))
    assert result == {"b2"}


def test_volumes_are_rotated_independently() -> None:
    snapshots = [snap("a-new", 1, "vol-a"), snap("a-old", 40, "vol-a"), snap("b-old", 40, "vol-b")]
    assert deleted(snapshots, Policy(30)) == {"a-old"}


def test_every_snapshot_gets_a_decision_with_its_age() -> None:
    snapshots = [snap("s0", 3.7), snap("s1", 44.2)]
    decisions = plan(snapshots, NOW, Policy(30))
    assert [(d.snapshot.snapshot_id, format_age(d.age_days), d.delete) for d in decisions] == [
        ("s0", "3.7d", False), ("s1", "44.2d", True)]


def test_age_is_never_negative_for_clock_skew() -> None:
    assert age_in_days(snap("future", -1), NOW) == 0


# --- keep rules, as restic's forget evaluates them ----------------------------------------


def at(text: str, ident: str | None = None, state: str = "completed",
       volume: str = "vol-a") -> Snapshot:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Snapshot(ident or text, volume, moment.astimezone(UTC), state, text)


def kept(snapshots: list[Snapshot], now: datetime, **rules: Any) -> list[str]:
    policy = Policy(**{"retention_days": None, **rules})
    return [d.snapshot.snapshot_id for d in plan(snapshots, now, policy) if not d.delete]


def daily(first: date, last: date, hour: int = 3) -> list[Snapshot]:
    days = (last - first).days + 1
    return [at(f"{first + timedelta(days=i)}T{hour:02d}:00:00") for i in range(days)]


def test_a_year_of_dailies_with_7_daily_5_weekly_12_monthly_75_yearly() -> None:
    # restic's documented policy: the 7 dailies already hold the newest weekly (and monthly,
    # yearly): each rule counts on its own, so the weeklies add the Sundays of 3 more weeks
    # (2026-12-27 is a daily too), the monthlies the last day of 11 more months.
    history = daily(date(2026, 1, 1), date(2026, 12, 31))
    result = kept(history, datetime(2026, 12, 31, 4, tzinfo=UTC),
                  keep_daily=7, keep_weekly=5, keep_monthly=12, keep_yearly=75)
    dailies = [f"2026-12-{day}T03:00:00" for day in range(31, 24, -1)]
    weeklies = [f"2026-12-{day:02d}T03:00:00" for day in (20, 13, 6)]
    monthlies = [f"2026-{month:02d}-{last}T03:00:00" for month, last in
                 [(11, 30), (10, 31), (9, 30), (8, 31), (7, 31), (6, 30), (5, 31), (4, 30),
                  (3, 31), (2, 28), (1, 31)]]
    assert result == dailies + weeklies + monthlies


@pytest.mark.parametrize(
    ("times", "rules", "expected"),
    [
        pytest.param(["2026-11-01T10:00", "2026-11-05T10:00", "2026-11-09T10:00",
                      "2026-11-10T10:00"], {"keep_daily": 3},
                     ["2026-11-10T10:00", "2026-11-09T10:00", "2026-11-05T10:00"],
                     id="periods-that-have-a-snapshot-not-calendar-days"),
        pytest.param(["2026-11-10T01:00", "2026-11-10T13:00", "2026-11-10T23:00",
                      "2026-11-09T23:59"], {"keep_daily": 2},
                     ["2026-11-10T23:00", "2026-11-09T23:59"], id="newest-of-each-day"),
        pytest.param(["2026-11-10T01:00", "2026-11-10T13:00", "2026-11-09T23:00"],
                     {"keep_last": 2}, ["2026-11-10T13:00", "2026-11-10T01:00"],
                     id="keep-last-counts-snapshots-not-periods"),
        pytest.param(["2026-11-10T01:00", "2026-11-10T01:59", "2026-11-10T02:00"],
                     {"keep_hourly": 5}, ["2026-11-10T02:00", "2026-11-10T01:59"],
                     id="hourly"),
        pytest.param(["2026-12-28T10:00", "2027-01-01T10:00", "2027-01-04T10:00"],
                     {"keep_weekly": 2}, ["2027-01-04T10:00", "2027-01-01T10:00"],
                     id="1-january-2027-is-in-iso-week-53-of-2026"),
        pytest.param(["2021-12-27T10:00", "2022-01-01T10:00", "2022-01-03T10:00"],
                     {"keep_weekly": 3}, ["2022-01-03T10:00", "2022-01-01T10:00"],
                     id="1-january-2022-is-in-week-52-of-2021"),
        pytest.param(["2025-12-31T23:00", "2026-01-01T00:30", "2026-06-01T00:00"],
                     {"keep_yearly": 2, "keep_monthly": 1},
                     ["2026-06-01T00:00", "2025-12-31T23:00"], id="yearly-and-monthly"),
    ],
)
def test_keep_rules_keep_the_newest_snapshot_of_each_period(
    times: list[str], rules: dict[str, int], expected: list[str]
) -> None:
    snapshots = [at(t) for t in times]
    assert kept(snapshots, datetime(2027, 6, 1, tzinfo=UTC), min_keep=1, **rules) == expected


def test_periods_are_days_of_the_jobs_time_zone() -> None:
    # 23:30 UTC on 1 March is already 2 March in Paris: two different days there.
    snapshots = [at("2026-03-01T23:30:00+00:00", "late"), at("2026-03-01T12:00:00+00:00",
                                                            "noon")]
    now = datetime(2026, 3, 5, tzinfo=UTC)
    assert kept(snapshots, now, keep_daily=5) == ["late"]
    assert kept(snapshots, now, keep_daily=5, timezone=ZoneInfo("Europe/Paris")) == [
        "late", "noon"]


def test_the_hour_a_clock_shows_twice_when_dst_ends_is_two_hours() -> None:
    new_york = ZoneInfo("America/New_York")
    first = at("2026-11-01T05:30:00+00:00", "01:30 EDT")
    second = at("2026-11-01T06:30:00+00:00", "01:30 EST")
    now = datetime(2026, 11, 2, tzinfo=UTC)
    assert kept([second, first], now, keep_hourly=2, timezone=new_york) == [
        "01:30 EST", "01:30 EDT"]
    assert kept([second, first], now, keep_daily=2, timezone=new_york) == ["01:30 EST"]


def test_the_day_dst_starts_is_one_day() -> None:
    paris = ZoneInfo("Europe/Paris")
    snapshots = [at("2026-03-29T00:30:00+00:00", "01:30 CET"),
                 at("2026-03-29T21:30:00+00:00", "23:30 CEST")]
    assert kept(snapshots, datetime(2026, 3, 30, tzinfo=UTC), keep_daily=2,
                timezone=paris) == ["23:30 CEST"]


def test_pending_and_failed_snapshots_never_fill_a_period() -> None:
    snapshots = [at("2026-11-10T10:00", "pending", state="pending"),
                 at("2026-11-10T09:00", "failed", state="error"),
                 at("2026-11-09T10:00", "completed")]
    decisions = plan(snapshots, datetime(2026, 11, 11, tzinfo=UTC),
                     Policy(retention_days=None, keep_daily=1, min_keep=1))
    assert {d.snapshot.snapshot_id: d.delete for d in decisions} == {
        "pending": False, "failed": True, "completed": False}
    by_id = {d.snapshot.snapshot_id: d.reason for d in decisions}
    assert by_id["completed"] == "min_keep 1, daily 2026-11-09"
    assert by_id["pending"] == "pending, not completed"


def test_keep_rules_alone_keep_exactly_what_they_say() -> None:
    history = daily(date(2026, 9, 1), date(2026, 11, 30))
    result = kept(history, datetime(2026, 11, 30, 4, tzinfo=UTC), keep_daily=7)
    assert result == [f"2026-11-{day}T03:00:00" for day in range(30, 23, -1)]


def test_retention_and_keep_rules_add_up() -> None:
    history = daily(date(2026, 9, 1), date(2026, 11, 30))
    result = kept(history, datetime(2026, 11, 30, 4, tzinfo=UTC), retention_days=10,
                  keep_monthly=3)
    assert len(result) == 10 + 2  # the 10 days, and the ends of October and September


def test_every_kept_snapshot_says_which_rules_keep_it() -> None:
    history = daily(date(2026, 11, 1), date(2026, 11, 30))
    decisions = plan(history, datetime(2026, 11, 30, 4, tzinfo=UTC),
                     Policy(retention_days=7, keep_daily=2, keep_monthly=2))
    newest = decisions[0]
    assert newest.reason == ("min_keep 1, daily 2026-11-30, monthly 2026-11, "
                             "within retention 7d")
    assert decisions[-1].delete
    assert decisions[-1].reason == "kept by no rule"


def test_ages_keep_a_decimal_and_never_round_up() -> None:
    assert format_age(7.5) == "7.5d"
    assert format_age(6.99) == "6.9d"
    assert format_age(0) == "0.0d"
