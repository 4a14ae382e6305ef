"""Which of the volumes that carry a Kubernetes claim's tags holds the claim's data.

The EBS CSI driver tags the volume it provisions for a claim. A restore by claim tags the
volume it makes the same way, so that once the claim's PersistentVolume points at it (and a
pod mounts it) the job backs it up as the claim. Until then a restored volume is not the
claim's state: its data is the snapshot it came from, and a manifest that is never applied
leaves it unused. So each volume of a claim is one of:

- live: attached (in use). Its snapshots are the claim's newest.
- restored-unused: made by a molibackup restore and never attached, as far as the job's
  snapshots tell (none of them recorded it attached). The backup run does not snapshot it
  as the claim, and a restore by claim never takes its snapshots.
- detached: any other (a pod being rescheduled, a volume the claim no longer uses). It is
  still backed up, as the original tool did: a claim's volume is detached while its pod
  moves, and a skipped backup then would be a missing one.

The rule leans on what EC2 shows and on the job's own snapshots, not on the cluster: a
restored volume becomes the claim's once it is attached, whatever points at it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from molibackup.aws.clients import paginate
from molibackup.ebs.catalog import SnapshotInfo
from molibackup.ebs.tags import RESTORE_ID_TAG, Volume, is_owned_by, tag_dict

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

LIVE, RESTORED_UNUSED, DETACHED = "live", "restored-unused", "detached"
IDS_PER_CALL = 200


def claim_state(tags: Mapping[str, str], attached: bool, seen_attached: bool) -> str:
    if attached:
        return LIVE
    if RESTORE_ID_TAG in tags and not seen_attached:
        return RESTORED_UNUSED
    return DETACHED


def seen_attached(client: EC2Client, job_name: str | None, volume_ids: Iterable[str]
                  ) -> set[str]:
    """Of these volumes, those of which a snapshot of the job recorded an attachment."""
    wanted = sorted(set(volume_ids))
    if not wanted or job_name is None:
        return set()
    found: set[str] = set()
    for start in range(0, len(wanted), IDS_PER_CALL):
        batch = wanted[start:start + IDS_PER_CALL]
        for raw in paginate(client, "describe_snapshots", "Snapshots", OwnerIds=["self"],
                            Filters=[{"Name": "volume-id", "Values": batch}]):
            if not is_owned_by(tag_dict(raw.get("Tags")), job_name):
                continue
            snapshot = SnapshotInfo.of(raw)
            if snapshot.shape is not None and snapshot.shape.devices:
                found.add(snapshot.volume_id)
    return found


def states_of(client: EC2Client, job_name: str | None, volumes: Sequence[Volume]
              ) -> dict[str, str]:
    """Volume id -> its state, for volumes of claims."""
    restored = [v.volume_id for v in volumes if not v.instance_ids and RESTORE_ID_TAG in v.tags]
    used = seen_attached(client, job_name, restored)
    return {v.volume_id: claim_state(v.tags, bool(v.instance_ids), v.volume_id in used)
            for v in volumes}


def several(volumes: Sequence[Volume], states: Mapping[str, str]) -> dict[str, list[str]]:
    """Claim (namespace/name) -> "vol-... (state)" of each of its volumes, for the claims
    that more than one volume carries."""
    by_claim: dict[str, list[str]] = {}
    for volume in volumes:
        if volume.claim is not None:
            name = f"{volume.claim.namespace}/{volume.claim.name}"
            by_claim.setdefault(name, []).append(
                f"{volume.volume_id} ({states[volume.volume_id]})")
    return {claim: sorted(found) for claim, found in by_claim.items() if len(found) > 1}
