"""What each snapshot really stores, from the EBS direct APIs, computed once and kept in tags.

EC2's FullSnapshotSizeInBytes is the full size, not what a snapshot adds: the incremental size
is the blocks changed since the volume's previous snapshot (ListChangedBlocks; for a volume's
first, ListSnapshotBlocks) times the block size the API reports. It is tagged on the snapshot
(`molibackup:changed-bytes`), so a second report makes no EBS call for it. An archived
snapshot is stored in full: its full size is kept in `molibackup:full-bytes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from molibackup.ebs.blocks import changed_block_count, list_blocks
from molibackup.ebs.catalog import SnapshotInfo
from molibackup.ebs.tags import CHANGED_BYTES_TAG, FULL_BYTES_TAG
from molibackup.errors import AwsError

if TYPE_CHECKING:
    from loguru import Logger
    from mypy_boto3_ec2 import EC2Client

GIB = 1024**3


@dataclass
class Sizes:
    changed: dict[str, int] = field(default_factory=dict)  # snapshot id -> bytes it adds
    full: dict[str, int] = field(default_factory=dict)  # archived snapshot id -> full bytes
    ebs_calls: int = 0
    errors: list[str] = field(default_factory=list)

    def stored(self, snapshot: SnapshotInfo) -> int | None:
        """What the snapshot is billed for: its full size in the archive, else its increment."""
        if snapshot.storage_tier == "archive":
            return self.full.get(snapshot.snapshot_id)
        return self.changed.get(snapshot.snapshot_id)


def _cached(snapshot: SnapshotInfo, tag: str) -> int | None:
    try:
        return int(snapshot.tags[tag]) if tag in snapshot.tags else None
    except ValueError:
        return None


class SizeCounter:
    def __init__(self, ec2: EC2Client, ebs: Any, log: Logger) -> None:
        self.ec2 = ec2
        self.ebs = ebs
        self.log = log
        self.sizes = Sizes()

    def volume(self, snapshots: Sequence[SnapshotInfo]) -> None:
        """Sizes of one volume's completed snapshots (any order)."""
        previous: SnapshotInfo | None = None
        for snapshot in sorted((s for s in snapshots if s.completed),
                               key=lambda s: (s.start_time, s.snapshot_id)):
            try:
                self.one(snapshot, previous)
            except AwsError as exc:
                self.sizes.errors.append(f"snapshot {snapshot.snapshot_id}: {exc}")
            previous = snapshot

    def one(self, snapshot: SnapshotInfo, previous: SnapshotInfo | None) -> None:
        changed = _cached(snapshot, CHANGED_BYTES_TAG)
        if changed is None:
            if previous is None:
                blocks = list_blocks(self.ebs, snapshot.snapshot_id)
                changed = len(blocks.tokens) * blocks.block_size
            else:
                count, block_size = changed_block_count(self.ebs, previous.snapshot_id,
                                                        snapshot.snapshot_id)
                changed = count * block_size
            self.sizes.ebs_calls += 1
            self.keep(snapshot, CHANGED_BYTES_TAG, changed)
        self.sizes.changed[snapshot.snapshot_id] = changed
        if snapshot.storage_tier == "archive":
            full = _cached(snapshot, FULL_BYTES_TAG)
            if full is None:
                blocks = list_blocks(self.ebs, snapshot.snapshot_id)
                full = len(blocks.tokens) * blocks.block_size
                self.sizes.ebs_calls += 1
                self.keep(snapshot, FULL_BYTES_TAG, full)
            self.sizes.full[snapshot.snapshot_id] = full

    def keep(self, snapshot: SnapshotInfo, tag: str, value: int) -> None:
        """The size in a tag on the snapshot, so that it is never computed again."""
        try:
            self.ec2.create_tags(Resources=[snapshot.snapshot_id],
                                 Tags=[{"Key": tag, "Value": str(value)}])
        except AwsError as exc:
            self.log.warning(f"snapshot {snapshot.snapshot_id}: size not kept in its tags "
                             f"({exc}): the next report computes it again")


def monthly_cost(stored_bytes: int, tier: str, prices: dict[str, float]) -> float:
    """USD per month at the configured price per GB-month (GiB, as AWS bills EBS)."""
    return stored_bytes / GIB * prices[tier]
