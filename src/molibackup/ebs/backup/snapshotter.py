"""CreateSnapshot(s) without duplicates, whatever the network does to the answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from molibackup.aws.clients import max_attempts
from molibackup.ebs.job import Clients, JobContext
from molibackup.ebs.recovery import GiveUp, SendOnce, Wait
from molibackup.ebs.tags import (
    INSTANCE_TAG,
    JOB_TAG,
    RUN_TAG,
    VOLUME_TAG,
    Volume,
)
from molibackup.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import TagTypeDef


@dataclass(frozen=True)
class Made:
    """A snapshot this run made, as EC2 described it (usually still pending)."""

    snapshot_id: str
    state: str
    start_time: datetime
    volume_id: str = ""


def made(raw: Any) -> Made:
    start = raw.get("StartTime")
    return Made(raw["SnapshotId"], str(raw.get("State") or "pending"),
                start.astimezone(UTC) if isinstance(start, datetime) else datetime.now(UTC),
                str(raw.get("VolumeId") or ""))


@dataclass(frozen=True)
class InstanceRequest:
    """What one CreateSnapshots call of an instance asks for."""

    instance_id: str
    exclude_boot: bool
    exclude_data_volume_ids: tuple[str, ...]
    description: str
    tags: list[TagTypeDef]
    copy_volume_tags: bool


T = TypeVar("T")


# EC2 allows one snapshot of a volume every 15 seconds (SnapshotCreationPerVolumeRateExceeded).
PER_VOLUME_RATE_WAIT = 15.0


def snapshot_limits(error: AwsError) -> Wait | GiveUp | None:
    """EC2's per-volume limits: waited out, or reported for a later run; never retried in a
    tight loop."""
    if error.code == "ConcurrentSnapshotLimitExceeded":
        return GiveUp("too many snapshots are still in progress; it will be snapshotted on a "
                      "later run")
    if error.code == "SnapshotCreationPerVolumeRateExceeded":
        return Wait(PER_VOLUME_RATE_WAIT, f"EC2 allows one snapshot per volume every "
                                          f"{PER_VOLUME_RATE_WAIT:.0f} s")
    return None


class Snapshotter:
    """Creates snapshots without duplicates: CreateSnapshot's retries, done by hand.

    Throttled or unsent requests are sent again after a backoff. When EC2 may have acted but
    the answer was lost (a 5xx, a timeout, a dropped connection), the run's snapshot of that
    volume is looked for by its run-id tag first, and only created again if it is not there.
    EC2's per-volume limits are waited out (one snapshot per volume every 15 s) or reported
    (too many snapshots of the volume in progress), never retried in a tight loop.
    """

    def __init__(self, clients: Clients, context: JobContext) -> None:
        self.clients = clients
        self.job_name = context.job.name
        self.run_id = context.run_id
        self.log = context.log
        self.send_once = SendOnce(max_attempts(context.settings), context.stop, context.log)

    def create(self, volume: Volume, name: str, tags: list[TagTypeDef]
               ) -> tuple[Made | None, str | None]:
        """(the snapshot made, None) or (None, why it failed)."""

        def send() -> Made:
            return made(self.clients.create.create_snapshot(
                VolumeId=volume.volume_id, Description=name,
                TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}]))

        return self.with_recovery(send, lambda error: self.recover(volume, error),
                                  f"volume {volume.volume_id}")

    def create_for_instance(self, request: InstanceRequest
                            ) -> tuple[list[Made] | None, str | None]:
        """One CreateSnapshots call: every selected volume of an instance at one moment."""

        def send() -> list[Made]:
            spec: dict[str, Any] = {"InstanceId": request.instance_id,
                                    "ExcludeBootVolume": request.exclude_boot}
            if request.exclude_data_volume_ids:
                spec["ExcludeDataVolumeIds"] = list(request.exclude_data_volume_ids)
            kwargs: dict[str, Any] = {
                "InstanceSpecification": spec, "Description": request.description,
                "TagSpecifications": [{"ResourceType": "snapshot", "Tags": request.tags}]}
            if request.copy_volume_tags:
                kwargs["CopyTagsFromSource"] = "volume"
            response = self.clients.create.create_snapshots(**kwargs)
            return [made(raw) for raw in response.get("Snapshots", [])]

        def recover(error: str) -> list[Made] | None:
            found = self.find_made(INSTANCE_TAG, request.instance_id)
            if found:
                self.log.warning(f"instance {request.instance_id}: the answer to "
                                 f"CreateSnapshots was lost ({error}); found the "
                                 f"{len(found)} snapshot(s) it made")
            return found or None

        return self.with_recovery(send, recover, f"instance {request.instance_id}")

    def with_recovery(self, send: Callable[[], T], recover: Callable[[str], T | None],
                      what: str) -> tuple[T | None, str | None]:
        return self.send_once(send, recover, what, snapshot_limits)

    def recover(self, volume: Volume, error: str) -> Made | None:
        found = self.find_made(VOLUME_TAG, volume.volume_id)[:1]
        if found:
            self.log.warning(f"volume {volume.volume_id}: the answer to CreateSnapshot was lost "
                             f"({error}); found the snapshot it made: {found[0].snapshot_id}")
        return found[0] if found else None

    def find_made(self, tag: str, value: str) -> list[Made]:
        """The snapshots this run made of a volume (VOLUME_TAG) or an instance
        (INSTANCE_TAG), if a call whose answer was lost made them."""
        what = ("instance", "snapshots") if tag == INSTANCE_TAG else ("volume", "a snapshot")
        try:
            found = self.clients.main.describe_snapshots(OwnerIds=["self"], Filters=[
                {"Name": f"tag:{RUN_TAG}", "Values": [self.run_id]},
                {"Name": f"tag:{tag}", "Values": [value]},
                {"Name": f"tag:{JOB_TAG}", "Values": [self.job_name]},
            ])["Snapshots"]
        except AwsError as exc:
            self.log.warning(f"{what[0]} {value}: could not look for {what[1]} a lost call "
                             f"may have made: {exc}")
            return []
        return [made(raw) for raw in sorted(found, key=lambda raw: raw["SnapshotId"])]
