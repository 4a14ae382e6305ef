"""Which snapshots to delete: a pure function of (snapshots, now, policy), no AWS in sight.

The rules, per volume:
- a volume whose new snapshot failed in this run keeps everything (a failing run must not
  erase the last good backups);
- the newest `min_keep` *completed* snapshots are kept whatever their age (pending or failed
  ones are not usable backups and never stand in for them);
- pending snapshots are kept (still being made);
- anything else older than `retention_days` is deleted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

COMPLETED = "completed"
FAILED = "error"


@dataclass(frozen=True, slots=True)
class Snapshot:
    snapshot_id: str
    volume_id: str
    start_time: datetime
    state: str
    name: str


@dataclass(frozen=True)
class Policy:
    retention_days: int
    min_keep: int = 1


@dataclass(frozen=True, slots=True)
class Decision:
    snapshot: Snapshot
    delete: bool
    reason: str
    age_days: int


def age_in_days(snapshot: Snapshot, now: datetime) -> int:
    return max(0, (now - snapshot.start_time) // timedelta(days=1))


def plan(
    snapshots: Iterable[Snapshot],
    now: datetime,
    policy: Policy,
    protected_volumes: frozenset[str] = frozenset(),
) -> list[Decision]:
    """One decision per snapshot, ordered by volume, newest first."""
    by_volume: dict[str, list[Snapshot]] = defaultdict(list)
    for snapshot in snapshots:
        by_volume[snapshot.volume_id].append(snapshot)

    cutoff = now - timedelta(days=policy.retention_days)
    decisions: list[Decision] = []
    for volume_id in sorted(by_volume):
        newest_first = sorted(by_volume[volume_id], key=lambda s: s.start_time, reverse=True)
        completed_seen = 0
        for snapshot in newest_first:
            age = age_in_days(snapshot, now)
            if snapshot.state == COMPLETED:
                completed_seen += 1
            if volume_id in protected_volumes:
                reason, delete = "this volume got no new snapshot in this run", False
            elif snapshot.state == COMPLETED and completed_seen <= policy.min_keep:
                reason, delete = f"among the newest {policy.min_keep} completed", False
            elif snapshot.state not in (COMPLETED, FAILED):
                reason, delete = f"{snapshot.state}, not completed", False
            elif snapshot.start_time < cutoff:
                reason, delete = "expired", True
            else:
                reason, delete = "within retention", False
            decisions.append(Decision(snapshot, delete, reason, age))
    return decisions
