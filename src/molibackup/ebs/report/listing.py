"""What `molibackup snapshots` shows of a job: per volume (selected, no longer selected, or
gone), its snapshots newest first with what the next rotation would do, and their copies."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import boto3

from molibackup import retention
from molibackup.aws.clients import caller_account, ec2_client
from molibackup.config import GlobalSettings
from molibackup.ebs.catalog import (
    SnapshotInfo,
    existing_volumes,
    job_copies,
    job_snapshots,
    locked_snapshot_ids,
)
from molibackup.ebs.job import EbsJob, JobContext
from molibackup.ebs.selection import Selector
from molibackup.ebs.tags import Volume
from molibackup.errors import AwsError, JobError

if TYPE_CHECKING:
    from loguru import Logger
    from mypy_boto3_ec2 import EC2Client


SELECTED, NOT_SELECTED, GONE = "selected", "not selected", "gone"


@dataclass(frozen=True)
class Narrowing:
    """At most one of --volume, --claim NAMESPACE/NAME, --instance."""

    volume_id: str | None = None
    claim: tuple[str, str] | None = None
    instance_id: str | None = None

    def admits(self, volume_id: str, claim: tuple[str, str] | None,
               instance_ids: tuple[str, ...]) -> bool:
        if self.volume_id is not None:
            return volume_id == self.volume_id
        if self.claim is not None:
            return claim == self.claim
        if self.instance_id is not None:
            return self.instance_id in instance_ids
        return True

    def describe(self) -> str:
        if self.volume_id:
            return f"volume {self.volume_id}"
        if self.claim:
            return f"claim {self.claim[0]}/{self.claim[1]}"
        if self.instance_id:
            return f"instance {self.instance_id}"
        return "every volume"


@dataclass(frozen=True)
class CopyInfo:
    region: str
    account: str
    snapshot_id: str
    state: str


@dataclass(frozen=True)
class Row:
    snapshot: SnapshotInfo
    decision: retention.Decision
    locked: bool | None  # None: the locks could not be read
    copies: tuple[CopyInfo, ...] = ()


@dataclass
class VolumeListing:
    volume_id: str
    name: str
    status: str
    claim: str | None
    rows: list[Row] = field(default_factory=list)
    #: Of a claim's volume: live, restored-unused or detached (claims.py).
    claim_state: str | None = None


@dataclass
class JobListing:
    job: str
    region: str
    account: str | None = None  # of a job over several accounts; None: the job's own
    volumes: list[VolumeListing] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Claim (namespace/name) -> every volume carrying it and its state.
    claims: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def list_job(context: JobContext, *, narrowing: Narrowing, with_copies: bool) -> JobListing:
    job, settings, log, now = context.job, context.settings, context.log, context.now
    options = job.options
    listing = JobListing(job.name, options.aws_region)
    session = job.session()
    client = ec2_client(session, options.aws_region, settings)
    selector = Selector(options, client, log, job_name=job.name)
    selected = {v.volume_id: v for v in selector.select(job.instance_id())}
    states = {volume.volume_id: state for volume, state in selector.claim_volumes}
    for carrier, state in selector.claim_volumes:
        if carrier.claim is not None and narrowing.claim in (
                None, (carrier.claim.namespace, carrier.claim.name)):
            listing.claims.setdefault(carrier.name, []).append((carrier.volume_id, state))
    if narrowing.claim is None:  # unasked, only the claims that several volumes carry
        listing.claims = {claim: found for claim, found in listing.claims.items()
                          if len(found) > 1}
    snapshots = job_snapshots(client, job.name)
    by_volume: dict[str, list[SnapshotInfo]] = defaultdict(list)
    for snapshot in snapshots:
        by_volume[snapshot.volume_id].append(snapshot)
    volumes = [volume_listing(volume_id, selected.get(volume_id), by_volume[volume_id])
               for volume_id in sorted({*selected, *by_volume})]
    volumes = [v for v in volumes if narrowing.admits(
        v.volume_id, _claim(selected.get(v.volume_id), by_volume[v.volume_id]),
        _instances(selected.get(v.volume_id), by_volume[v.volume_id]))]
    unselected = [v.volume_id for v in volumes if v.status != SELECTED]
    if unselected:
        alive = existing_volumes(client, unselected)
        for volume in volumes:
            if volume.status != SELECTED and volume.volume_id not in alive:
                volume.status = GONE
    shown = [s for v in volumes for s in by_volume[v.volume_id]]
    locked = locks(client, [s.snapshot_id for s in shown], listing, log)
    copies = (copies_of(job, session, settings, listing) if with_copies and shown else {})
    decisions = {d.snapshot.snapshot_id: d for d in retention.plan(
        [s.record() for s in shown], now, options.policy)}
    for volume in volumes:
        volume.rows = [Row(s, decisions[s.snapshot_id],
                           None if locked is None else s.snapshot_id in locked,
                           tuple(copies.get(s.snapshot_id, ())))
                       for s in by_volume[volume.volume_id]]
    for volume in volumes:
        volume.claim_state = states.get(volume.volume_id)
    listing.volumes = volumes
    return listing


def volume_listing(volume_id: str, volume: Volume | None, snapshots: list[SnapshotInfo]
                   ) -> VolumeListing:
    if volume is not None:
        claim = f"{volume.claim.namespace}/{volume.claim.name}" if volume.claim else None
        return VolumeListing(volume_id, volume.name, SELECTED, claim)
    newest = snapshots[0] if snapshots else None
    claim = newest.claim_text if newest else None
    name = claim or (newest.tags.get("Name", "").rsplit("-", 3)[0] if newest else "") or "-"
    return VolumeListing(volume_id, name, NOT_SELECTED, claim)


def _claim(volume: Volume | None, snapshots: list[SnapshotInfo]) -> tuple[str, str] | None:
    if volume is not None and volume.claim is not None:
        return volume.claim.namespace, volume.claim.name
    return next((s.claim for s in snapshots if s.claim), None)


def _instances(volume: Volume | None, snapshots: list[SnapshotInfo]) -> tuple[str, ...]:
    found = set(volume.instance_ids if volume else ())
    for snapshot in snapshots:
        found.update(snapshot.instance_ids)
    return tuple(sorted(found))


def locks(client: EC2Client, snapshot_ids: list[str], listing: JobListing, log: Logger
          ) -> set[str] | None:
    if not snapshot_ids:
        return set()
    try:
        return locked_snapshot_ids(client, snapshot_ids)
    except AwsError as exc:
        log.warning(f"could not read the snapshots' locks ({exc}): shown as unknown")
        return None


def copies_of(job: EbsJob, session: boto3.Session, settings: GlobalSettings,
              listing: JobListing) -> dict[str, list[CopyInfo]]:
    """Source snapshot id -> its copies in every copy_to destination."""
    found: dict[str, list[CopyInfo]] = defaultdict(list)
    options = job.options
    account = caller_account(session, options.aws_region)
    for target in options.copy_to:
        try:
            client = ec2_client(job.destination(session, target),
                                target.region, settings)
            for copy in job_copies(client, job.name, options.aws_region, account):
                if copy.source_snapshot_id:
                    found[copy.source_snapshot_id].append(CopyInfo(
                        target.region, target.account or account, copy.snapshot_id,
                        copy.state))
        except (AwsError, JobError) as exc:
            listing.errors.append(f"copies in {target.describe()}: {exc}")
    return found
