"""Creating snapshots without duplicates, whatever the network does to the answers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from molibackup.aws import (
    AWS_ERRORS,
    FINAL,
    MAYBE_DONE,
    backoff_delay,
    error_code,
    explain,
    failure_kind,
    retry_settings,
)
from molibackup.modules.base import RunContext
from molibackup.modules.ebs_snapshot.tagging import JOB_TAG, RUN_TAG, VOLUME_TAG, Volume

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import TagTypeDef

@dataclass(frozen=True)
class Made:
    """A snapshot this run made, as EC2 described it (usually still pending)."""

    snapshot_id: str
    state: str
    start_time: datetime


def made(raw: Any) -> Made:
    start = raw.get("StartTime")
    return Made(raw["SnapshotId"], str(raw.get("State") or "pending"),
                start.astimezone(UTC) if isinstance(start, datetime) else datetime.now(UTC))


# EC2 allows one snapshot of a volume every 15 seconds (SnapshotCreationPerVolumeRateExceeded).
PER_VOLUME_RATE_WAIT = 15.0


class Creator:
    """Creates snapshots without duplicates: CreateSnapshot's retries, done by hand.

    Throttled or unsent requests are sent again after a backoff. When EC2 may have acted but
    the answer was lost (a 5xx, a timeout, a dropped connection), the run's snapshot of that
    volume is looked for by its run-id tag first, and only created again if it is not there.
    EC2's per-volume limits are waited out (one snapshot per volume every 15 s) or reported
    (too many snapshots of the volume in progress), never retried in a tight loop.
    """

    def __init__(self, job_name: str, client_without_retries: EC2Client,
                 client_with_retries: EC2Client, run_id: str, context: RunContext) -> None:
        self.job_name = job_name
        self.client = client_without_retries
        self.lookup_client = client_with_retries
        self.run_id = run_id
        self.log = context.log
        self.stop = context.stop
        self.max_attempts = int(str(retry_settings(context.settings)["total_max_attempts"]))

    def create(self, volume: Volume, name: str, tags: list[TagTypeDef]
               ) -> tuple[Made | None, str | None]:
        """(the snapshot made, None) or (None, why it failed)."""
        last_error = "no attempt made"
        answer_lost = False
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1 and self.stop.is_set():
                return None, f"{last_error} (not retried: the run was interrupted)"
            # Listings are eventually consistent: a snapshot that a lost call made may show
            # only after the backoff, so look again before sending another create.
            if answer_lost and (found := self.recover(volume, last_error)):
                return found, None
            try:
                response = self.client.create_snapshot(
                    VolumeId=volume.volume_id, Description=name,
                    TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}])
                return made(response), None
            except AWS_ERRORS as exc:
                last_error = explain(exc)
                code, kind = error_code(exc), failure_kind(exc)
                if code == "ConcurrentSnapshotLimitExceeded":
                    return None, (f"{last_error} (too many snapshots of this volume are still "
                                  "in progress; it will be snapshotted on a later run)")
                if code == "SnapshotCreationPerVolumeRateExceeded":
                    self.log.warning(f"volume {volume.volume_id}: EC2 allows one snapshot per "
                                     f"volume every {PER_VOLUME_RATE_WAIT:.0f} s; waiting")
                    time.sleep(PER_VOLUME_RATE_WAIT)
                    continue
                if kind == FINAL:
                    return None, last_error
                answer_lost = kind == MAYBE_DONE
                if answer_lost and (found := self.recover(volume, last_error)):
                    return found, None
                if attempt < self.max_attempts:
                    time.sleep(backoff_delay(attempt))
        return None, f"{last_error} (after {self.max_attempts} attempts)"

    def recover(self, volume: Volume, error: str) -> Made | None:
        found = self.find_lost(volume)
        if found:
            self.log.warning(f"volume {volume.volume_id}: the answer to CreateSnapshot was lost "
                             f"({error}); found the snapshot it made: {found.snapshot_id}")
        return found

    def find_lost(self, volume: Volume) -> Made | None:
        """The snapshot of this volume made by this run, if a lost call made one."""
        try:
            found = self.lookup_client.describe_snapshots(OwnerIds=["self"], Filters=[
                {"Name": f"tag:{RUN_TAG}", "Values": [self.run_id]},
                {"Name": f"tag:{VOLUME_TAG}", "Values": [volume.volume_id]},
                {"Name": f"tag:{JOB_TAG}", "Values": [self.job_name]},
            ])["Snapshots"]
        except AWS_ERRORS as exc:
            self.log.warning(f"volume {volume.volume_id}: could not look for a snapshot a lost "
                             f"call may have made: {explain(exc)}")
            return None
        first = sorted(found, key=lambda raw: raw["SnapshotId"])[:1]
        return made(first[0]) if first else None


