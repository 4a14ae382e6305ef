"""The retention rules, on plain data: which snapshots a job deletes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from molibackup.retention import Policy, Snapshot, age_in_days, plan

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
    assert [(d.snapshot.snapshot_id, d.age_days, d.delete) for d in decisions] == [
        ("s0", 3, False), ("s1", 44, True)]


def test_age_is_never_negative_for_clock_skew() -> None:
    assert age_in_days(snap("future", -1), NOW) == 0
