"""Which snapshot (or which run's set) a restore takes: pure functions over the catalog."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from molibackup import durations
from molibackup.ebs.catalog import SnapshotInfo


def parse_moment(text: str, now: datetime, zone: tzinfo) -> datetime:
    """--at: an ISO 8601 time (without an offset: in the job's time zone), or a duration
    meaning that long ago (36h, 2d). ValueError in a user's words."""
    try:
        return now - durations.parse(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO 8601 time (2026-11-30T04:00:00Z) nor a "
                         "duration such as 36h or 2d") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    if moment > now:
        raise ValueError(f"{text!r} is in the future: a restore takes a snapshot of the past")
    return moment.astimezone(UTC)


def newest_completed(snapshots: Sequence[SnapshotInfo], at: datetime | None = None
                     ) -> SnapshotInfo | None:
    """The newest completed snapshot, or the newest started at or before `at`."""
    candidates = [s for s in snapshots if s.completed and (at is None or s.start_time <= at)]
    return max(candidates, key=lambda s: (s.start_time, s.snapshot_id), default=None)


@dataclass(frozen=True)
class RunSet:
    """The snapshots one run made of an instance's volumes."""

    run_id: str
    snapshots: tuple[SnapshotInfo, ...]

    @property
    def start_time(self) -> datetime:
        return min(s.start_time for s in self.snapshots)


def runs_of_instance(snapshots: Sequence[SnapshotInfo], instance_id: str) -> list[RunSet]:
    """The runs that snapshotted this instance, newest first, one volume each (the newest of
    a run, should a volume appear twice)."""
    by_run: dict[str, dict[str, SnapshotInfo]] = defaultdict(dict)
    for snapshot in snapshots:
        if instance_id in snapshot.instance_ids and snapshot.run_id:
            seen = by_run[snapshot.run_id].get(snapshot.volume_id)
            if seen is None or snapshot.start_time > seen.start_time:
                by_run[snapshot.run_id][snapshot.volume_id] = snapshot
    runs = [RunSet(run_id, tuple(sorted(found.values(), key=lambda s: s.volume_id)))
            for run_id, found in by_run.items()]
    return sorted(runs, key=lambda run: (run.start_time, run.run_id), reverse=True)


def newest_complete_run(runs: Sequence[RunSet], at: datetime | None = None) -> RunSet | None:
    """The newest run whose every snapshot completed (at or before `at`)."""
    for run in runs:
        if all(s.completed for s in run.snapshots) and (at is None or run.start_time <= at):
            return run
    return None


def restore_id(job: str, snapshot_ids: Sequence[str], zone: str, claim: str | None,
               where: str) -> str:
    """The same restore (job, snapshots, zone, target claim, account/region) has the same
    id, run after run: it finds the volumes it made instead of making more."""
    key = "|".join([job, ",".join(sorted(snapshot_ids)), zone, claim or "", where])
    return "restore-" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class NamespaceMoment:
    """The run a namespace's claims are restored from, and why newer runs were not."""

    taken: RunSet | None  # one snapshot per claim; None when no run holds them all
    passed_over: tuple[tuple[RunSet, tuple[str, ...]], ...]  # newer runs, the claims each lacks
    claims: tuple[str, ...]  # namespace/name of every claim restored


def claim_runs(snapshots: Sequence[SnapshotInfo], namespace: str,
               at: datetime | None = None) -> list[RunSet]:
    """The runs that snapshotted claims of `namespace` (completed, started at or before
    `at`), newest first, one snapshot per claim: the newest of the run, the one taken
    while attached when the run found the claim on several volumes."""
    by_run: dict[str, dict[str, SnapshotInfo]] = defaultdict(dict)
    for snapshot in snapshots:
        if (snapshot.claim is None or snapshot.claim[0] != namespace or not snapshot.run_id
                or not snapshot.completed or (at is not None and snapshot.start_time > at)):
            continue
        claim = str(snapshot.claim_text)
        seen = by_run[snapshot.run_id].get(claim)
        if seen is None or _preferred(snapshot) > _preferred(seen):
            by_run[snapshot.run_id][claim] = snapshot
    runs = [RunSet(run_id, tuple(found[claim] for claim in sorted(found)))
            for run_id, found in by_run.items()]
    return sorted(runs, key=lambda run: (run.start_time, run.run_id), reverse=True)


def _preferred(snapshot: SnapshotInfo) -> tuple[bool, datetime, str]:
    attached = bool(snapshot.shape is not None and snapshot.shape.devices)
    return attached, snapshot.start_time, snapshot.snapshot_id


def namespace_moment(runs: Sequence[RunSet], claims: Sequence[str]) -> NamespaceMoment:
    """The newest run in which every claim has a completed snapshot; the newer runs that
    lack one, each with what it lacks."""
    wanted = tuple(sorted(set(claims)))
    passed: list[tuple[RunSet, tuple[str, ...]]] = []
    for run in runs:
        held = {str(s.claim_text) for s in run.snapshots}
        lacking = tuple(claim for claim in wanted if claim not in held)
        if not lacking:
            chosen = RunSet(run.run_id, tuple(s for s in run.snapshots
                                              if str(s.claim_text) in wanted))
            return NamespaceMoment(chosen, tuple(passed), wanted)
        passed.append((run, lacking))
    return NamespaceMoment(None, tuple(passed), wanted)
