"""What a restore is asked, what it decides, and what it reports: plain records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import boto3

from molibackup.ebs.catalog import SnapshotInfo
from molibackup.ebs.job import JobContext
from molibackup.ebs.restore.manifests import ClaimRestore, SnapshotHandoff
from molibackup.ebs.volumes import MadeVolume, VolumeSpec
from molibackup.errors import Refusal

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


@dataclass(frozen=True)
class RestoreRequest:
    """What the command line asks for; exactly one of volume, claim, instance, snapshot."""

    volume_id: str | None = None
    claim: tuple[str, str] | None = None
    claims_namespace: str | None = None  # --claims: every claim of it, from one run
    instance_id: str | None = None
    snapshot_id: str | None = None
    at: str | None = None
    from_region: str | None = None
    zone: str | None = None
    volume_type: str | None = None
    iops: int | None = None
    throughput: int | None = None
    size_gib: int | None = None
    kms_key_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    attach: str | None = None
    device: str | None = None
    manifest: str | None = None
    claim_name: str | None = None
    namespace: str | None = None
    storage_class: str | None = None
    fs_type: str = "ext4"
    restore_id: str | None = None
    wait: bool = True
    wait_timeout: timedelta = timedelta(minutes=15)
    archive_days: int = 1
    dry_run: bool = False
    #: --as volumesnapshots: no volume; the claim gets a VolumeSnapshot to restore from.
    as_snapshots: bool = False


@dataclass(frozen=True)
class Planned:
    """One volume the restore makes, and from what."""

    snapshot: SnapshotInfo
    spec: VolumeSpec
    device: str | None = None  # with --attach
    claim: ClaimRestore | None = None  # the claim its manifests bind, if any


@dataclass
class RestoreResult:
    job: str
    region: str
    restore_id: str
    status: str  # restored, would restore, archive restore started, still restoring
    planned: list[Planned]
    run_id: str | None = None
    volumes: dict[str, MadeVolume] = field(default_factory=dict)  # by snapshot id
    attached: dict[str, str] = field(default_factory=dict)  # volume id -> device
    manifest: str | None = None  # the YAML written
    claim: ClaimRestore | None = None
    next_step: str = ""
    #: Every claim the manifest binds (a namespace's, or the one of `claim`).
    claims: list[ClaimRestore] = field(default_factory=list)
    #: --as volumesnapshots: each claim's snapshot, as handed to the cluster.
    handoffs: list[SnapshotHandoff] = field(default_factory=list)

    @property
    def waiting_for_archive(self) -> bool:
        return self.status in ("archive restore started", "still restoring")


@dataclass(frozen=True)
class Where:
    session: boto3.Session
    client: EC2Client
    region: str
    label: str  # "us-west-2", or "eu-central-1 (account 210987654321)" for a copy
    copy_of: tuple[str, str] | None  # (source region, source account) when from a copy


@dataclass(frozen=True)
class Decision:
    """Everything a restore decided before its first change."""

    where: Where
    snapshots: list[SnapshotInfo]
    run_id: str | None  # an instance's: the run its snapshots come from
    restore_id: str
    planned: list[Planned]
    claim: ClaimRestore | None


class Step:
    """A part of a restore: its job's context and request, under short names."""

    def __init__(self, context: JobContext, request: RestoreRequest) -> None:
        self.context = context
        self.job = context.job.name
        self.settings = context.settings
        self.log = context.log
        self.now = context.now
        self.stop = context.stop
        self.request = request

    def problem(self, message: str) -> Refusal:
        return Refusal(f"job {self.job}: restore: {message}")
