"""What goes to the archive tier, and what is copied to a destination: pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from molibackup import retention
from molibackup.ebs.backup.copier import copies_wanted
from molibackup.ebs.backup.tiering import to_archive

NOW = datetime(2026, 12, 1, 4, tzinfo=UTC)


def snap(snapshot_id: str, age_days: float, state: str = "completed",
         tier: str = "standard") -> retention.Snapshot:
    return retention.Snapshot(snapshot_id, "vol-1", NOW - timedelta(days=age_days), state,
                              snapshot_id, tier)


def test_old_kept_snapshots_are_archived_but_never_the_newest() -> None:
    history = [snap("new", 0), snap("m1", 100), snap("m2", 200)]
    decisions = retention.plan(history, NOW, retention.Policy(retention_days=365))
    chosen = {d.snapshot.snapshot_id for d in to_archive(decisions, 90, NOW)}
    assert chosen == {"m1", "m2"}


def test_the_snapshots_min_keep_and_keep_last_hold_stay_in_the_standard_tier() -> None:
    history = [snap("a", 120), snap("b", 150), snap("c", 180)]
    policy = retention.Policy(retention_days=365, min_keep=1, keep_last=2)
    chosen = {d.snapshot.snapshot_id for d in to_archive(retention.plan(history, NOW, policy),
                                                         90, NOW)}
    assert chosen == {"c"}


def test_archived_pending_and_deleted_snapshots_are_not_archived_again() -> None:
    history = [snap("new", 0), snap("archived", 100, tier="archive"),
               snap("pending", 100, state="pending"), snap("expired", 400)]
    decisions = retention.plan(history, NOW, retention.Policy(retention_days=365))
    assert to_archive(decisions, 90, NOW) == []


def test_copies_wanted_are_completed_uncopied_sources_the_destination_keeps_newest_first(
) -> None:
    sources = [snap("old", 20), snap("new", 1), snap("mid", 5), snap("pending", 0, "pending"),
               snap("copied", 2)]
    wanted, too_old = copies_wanted(sources, [], {"copied"}, NOW,
                                    retention.Policy(retention_days=10))
    assert [s.snapshot_id for s in wanted] == ["new", "mid"]
    assert [s.snapshot_id for s in too_old] == ["old"]


def test_nothing_is_wanted_when_every_source_has_its_copy() -> None:
    assert copies_wanted([snap("a", 1)], [], {"a"}, NOW, retention.Policy()) == ([], [])
