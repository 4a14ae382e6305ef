"""Which snapshots to keep, and why: a pure function of (snapshots, now, policy).

The rules, per volume, each evaluated on its own as restic's `forget` does (a snapshot kept
as a daily can also be the weekly); a snapshot is kept when any rule keeps it:
- ``min_keep``: the newest N *completed* snapshots, whatever their age;
- ``keep_last``: the newest N completed snapshots;
- ``keep_hourly`` ... ``keep_yearly``: the newest completed snapshot of each of the last N
  hours, days, ISO weeks, months or years *that have one*, in the policy's time zone;
- ``retention``: every snapshot younger than that many days.
Pending snapshots are kept (still being made) but never fill a period or stand in for a
completed one; failed ones are kept only by ``retention``. A volume whose new snapshot failed
in this run keeps everything: a failing run must not erase the last good backups.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import ClassVar

COMPLETED = "completed"
FAILED = "error"
DEFAULT_RETENTION_DAYS = 30


class Rule(StrEnum):
    """Why a snapshot is kept, or deleted."""

    MIN_KEEP = "min_keep"
    LAST = "last"
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    YEARLY = "yearly"
    NOT_COMPLETED = "not completed"
    RETENTION = "retention"
    PROTECTED = "protected"  # the volume got no new snapshot in this run
    NO_RULE = "no rule"  # deleted: kept by no rule
    FAILED_EXPIRED = "failed, expired"  # deleted: in error state, outside retention


#: The rules that keep each volume's newest snapshots (never archived, for a quick restore).
NEWEST_RULES = frozenset({Rule.MIN_KEEP, Rule.LAST})


class Reason(str):
    """A reason as the log words it ("daily 2026-12-27"), and the rule it comes from.

    Equal reasons are one object: 100,000 decisions share a few texts, and each instance of a
    str subclass carries a dict of its own."""

    rule: Rule
    _shared: ClassVar[dict[tuple[Rule, str], Reason]] = {}

    def __new__(cls, rule: Rule, text: str) -> Reason:
        known = cls._shared.get((rule, text))
        if known is not None:
            return known
        reason = super().__new__(cls, text)
        reason.rule = rule
        cls._shared[(rule, text)] = reason
        return reason


@dataclass(frozen=True, slots=True)
class Snapshot:
    snapshot_id: str
    volume_id: str
    start_time: datetime
    state: str
    name: str
    storage_tier: str = "standard"
    stored_bytes: int | None = None  # what it stores, when a report has sized it


def _hour(moment: datetime) -> tuple[Hashable, str]:
    # The UTC offset keeps apart the two hours a clock shows twice when DST ends.
    return ((moment.date(), moment.hour, moment.utcoffset()),
            moment.strftime("%Y-%m-%dT%H") + moment.strftime("%z")[:3])


def _day(moment: datetime) -> tuple[Hashable, str]:
    return moment.date(), moment.strftime("%Y-%m-%d")


def _week(moment: datetime) -> tuple[Hashable, str]:
    year, week, _ = moment.isocalendar()
    return (year, week), f"{year}-W{week:02d}"


def _month(moment: datetime) -> tuple[Hashable, str]:
    return (moment.year, moment.month), moment.strftime("%Y-%m")


def _year(moment: datetime) -> tuple[Hashable, str]:
    return moment.year, str(moment.year)


#: Period rules: name, and the period a local time falls in (a key, and a label for logs).
PERIODS: tuple[tuple[str, Callable[[datetime], tuple[Hashable, str]]], ...] = (
    ("hourly", _hour), ("daily", _day), ("weekly", _week), ("monthly", _month),
    ("yearly", _year),
)


@dataclass(frozen=True)
class Policy:
    """What a job keeps. `retention_days` None: no age rule (keep rules only)."""

    retention_days: int | None = DEFAULT_RETENTION_DAYS
    min_keep: int = 1
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    timezone: tzinfo = UTC

    def period_counts(self) -> list[tuple[str, int]]:
        return [(name, getattr(self, f"keep_{name}")) for name, _ in PERIODS]

    def describe(self) -> str:
        """The policy in the words of the config file, for logs."""
        parts = [f"keep_last {self.keep_last}"] if self.keep_last else []
        parts += [f"keep_{name} {count}" for name, count in self.period_counts() if count]
        if self.retention_days is not None:
            parts.append(f"retention {self.retention_days}d")
        parts.append(f"min_keep {self.min_keep}")
        zone = str(self.timezone)
        return ", ".join(parts) + ("" if zone == "UTC" else f" ({zone})")


@dataclass(frozen=True, slots=True)
class Decision:
    snapshot: Snapshot
    delete: bool
    reasons: tuple[Reason, ...]
    age_days: float

    @property
    def reason(self) -> str:
        return ", ".join(self.reasons)


def age_in_days(snapshot: Snapshot, now: datetime) -> float:
    return max(0.0, (now - snapshot.start_time) / timedelta(days=1))


def format_age(days: float) -> str:
    """Ages in logs keep a decimal: 7.5d past a 7-day retention must not read as 7d.
    Rounded down, so that an age never reads as more than it is."""
    return f"{int(days * 10) / 10:.1f}d"


def _keep_reasons(newest_first: list[Snapshot], now: datetime, policy: Policy
                  ) -> dict[str, list[Reason]]:
    """For each snapshot id of one volume, the rules that keep it."""
    reasons: dict[str, list[Reason]] = defaultdict(list)
    completed = [s for s in newest_first if s.state == COMPLETED]
    for snapshot in completed[:policy.min_keep]:
        reasons[snapshot.snapshot_id].append(Reason(Rule.MIN_KEEP, f"min_keep {policy.min_keep}"))
    for snapshot in completed[:policy.keep_last]:
        reasons[snapshot.snapshot_id].append(Reason(Rule.LAST, f"last {policy.keep_last}"))
    for (name, period), (_, count) in zip(PERIODS, policy.period_counts(), strict=True):
        last_key: Hashable = None
        left = count
        for snapshot in completed:
            if left == 0:
                break
            key, label = period(snapshot.start_time.astimezone(policy.timezone))
            if key != last_key:
                reasons[snapshot.snapshot_id].append(Reason(Rule(name), f"{name} {label}"))
                last_key = key
                left -= 1
    for snapshot in newest_first:
        if snapshot.state not in (COMPLETED, FAILED):
            reasons[snapshot.snapshot_id].append(Reason(Rule.NOT_COMPLETED,
                                                        f"{snapshot.state}, not completed"))
    if policy.retention_days is not None:
        cutoff = now - timedelta(days=policy.retention_days)
        for snapshot in newest_first:
            if snapshot.start_time >= cutoff:
                reasons[snapshot.snapshot_id].append(Reason(
                    Rule.RETENTION, f"within retention {policy.retention_days}d"))
    return reasons


def plan(
    snapshots: Iterable[Snapshot],
    now: datetime,
    policy: Policy,
    protected_volumes: frozenset[str] = frozenset(),
    unprotected_volumes: frozenset[str] = frozenset(),
) -> list[Decision]:
    """One decision per snapshot, ordered by volume, newest first. `unprotected_volumes` (gone
    long enough, see orphan_retention) lose min_keep's protection; the other rules decide."""
    by_volume: dict[str, list[Snapshot]] = defaultdict(list)
    for snapshot in snapshots:
        by_volume[snapshot.volume_id].append(snapshot)

    decisions: list[Decision] = []
    for volume_id in sorted(by_volume):
        newest_first = sorted(by_volume[volume_id], key=lambda s: (s.start_time, s.snapshot_id),
                              reverse=True)
        if volume_id in protected_volumes:
            protected = Reason(Rule.PROTECTED, "this volume got no new snapshot in this run")
            decisions += [Decision(s, False, (protected,), age_in_days(s, now))
                          for s in newest_first]
            continue
        reasons = _keep_reasons(newest_first, now, replace(policy, min_keep=0)
                                if volume_id in unprotected_volumes else policy)
        for snapshot in newest_first:
            kept_by = reasons.get(snapshot.snapshot_id)
            if kept_by:
                decisions.append(Decision(snapshot, False, tuple(kept_by),
                                          age_in_days(snapshot, now)))
            else:
                why = (Reason(Rule.FAILED_EXPIRED, "failed (state error), outside retention")
                       if snapshot.state == FAILED else Reason(Rule.NO_RULE, "kept by no rule"))
                decisions.append(Decision(snapshot, True, (why,), age_in_days(snapshot, now)))
    return decisions
