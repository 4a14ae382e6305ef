"""What `molibackup report` tells of a job: its snapshots per volume, its orphans, what they
store and cost, the account's snapshot quota, and what would block a delete.

Reads only, except the size cache (sizes.py). Each section that cannot be read is said so,
and the others are still reported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from molibackup.aws.clients import client as aws_client
from molibackup.aws.clients import ec2_client, paginate
from molibackup.ebs.catalog import SnapshotInfo
from molibackup.ebs.job import JobContext
from molibackup.ebs.report.listing import SELECTED, JobListing, Narrowing, list_job
from molibackup.ebs.report.sizes import SizeCounter, Sizes, monthly_cost
from molibackup.ebs.tags import CREATED_BY, JOB_TAG
from molibackup.errors import AwsError, MolibackupError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


SNAPSHOT_QUOTA = ("ebs", "L-309BACF6")  # Service Quotas: "Snapshots per Region"
DEFAULT_SNAPSHOT_QUOTA = 100_000
QUOTA_WARNING = 0.8
FSR_BLOCKING = frozenset({"enabling", "optimizing", "enabled"})


@dataclass
class VolumeReport:
    volume_id: str
    name: str
    status: str  # selected, not selected, gone
    claim: str | None
    states: dict[str, int]
    tiers: dict[str, int]
    oldest: datetime | None
    newest: datetime | None
    locked: int | None
    copies: dict[str, int]  # destination -> copies there
    stored_bytes: int | None = None
    monthly_cost: float | None = None

    @property
    def orphan(self) -> bool:
        return self.status != SELECTED


@dataclass(frozen=True)
class Quota:
    used: int
    limit: int
    source: str  # "Service Quotas", or why the default applies

    @property
    def share(self) -> float:
        return self.used / self.limit if self.limit else 0.0


@dataclass(frozen=True)
class RecycleBinRule:
    identifier: str
    days: int
    description: str
    scope: str  # "region" or the tags it matches


@dataclass
class JobReport:
    job: str
    region: str
    volumes: list[VolumeReport] = field(default_factory=list)
    quota: Quota | None = None
    fast_restores: list[tuple[str, str, str]] = field(default_factory=list)  # snap, zone, state
    recycle_bin: list[RecycleBinRule] = field(default_factory=list)
    sizes: bool = False
    errors: dict[str, str] = field(default_factory=dict)  # section -> why it is missing

    @property
    def orphans(self) -> list[VolumeReport]:
        return [v for v in self.volumes if v.orphan]

    def total(self, key: str) -> float | None:
        values = [getattr(v, key) for v in self.volumes if getattr(v, key) is not None]
        return sum(values) if values else None


def volume_report(volume: Any, snapshots: list[SnapshotInfo], locked: int | None,
                  copies: dict[str, int]) -> VolumeReport:
    times = [s.start_time for s in snapshots]
    return VolumeReport(volume.volume_id, volume.name, volume.status, volume.claim,
                        dict(Counter(s.state for s in snapshots)),
                        dict(Counter(s.storage_tier for s in snapshots)),
                        min(times, default=None), max(times, default=None), locked, copies)


class Reporter:
    def __init__(self, context: JobContext, *, sizes: bool) -> None:
        self.context = context
        self.job = context.job
        self.settings = context.settings
        self.log = context.log
        self.now = context.now
        self.with_sizes = sizes
        self.session = context.job.session()
        self.region = context.job.region
        self.ec2: EC2Client = ec2_client(self.session, self.region, self.settings)

    def run(self) -> JobReport:
        report = JobReport(self.job.name, self.region, sizes=self.with_sizes)
        listing = self.section(report, "snapshots", lambda: list_job(
            self.context, narrowing=Narrowing(), with_copies=bool(self.job.options.copy_to)))
        if isinstance(listing, JobListing):
            report.volumes = [self.volume(v) for v in listing.volumes]
            if listing.errors:
                report.errors["copies"] = "; ".join(listing.errors)
            if self.with_sizes:
                self.section(report, "sizes", lambda: self.sizes(report, listing))
        self.section(report, "quota", lambda: self.quota(report))
        snapshot_ids = [row.snapshot.snapshot_id for v in listing.volumes for row in v.rows
                        ] if isinstance(listing, JobListing) else []
        self.section(report, "fast snapshot restore",
                     lambda: self.fast_restores(report, snapshot_ids))
        self.section(report, "recycle bin", lambda: self.recycle_bin(report))
        return report

    def section(self, report: JobReport, name: str, read: Any) -> Any:
        try:
            return read()
        except MolibackupError as exc:  # an AwsError, or a JobError of the selection
            report.errors[name] = str(exc)  # in the report, and once in the log after it
            return None

    def volume(self, listed: Any) -> VolumeReport:
        snapshots = [row.snapshot for row in listed.rows]
        locks = [row.locked for row in listed.rows]
        locked = None if any(lock is None for lock in locks) else sum(map(bool, locks))
        copies: Counter[str] = Counter()
        for row in listed.rows:
            for copy in row.copies:
                copies[f"{copy.region}/{copy.account}"] += 1
        return volume_report(listed, snapshots, locked, dict(copies))

    def sizes(self, report: JobReport, listing: JobListing) -> Sizes:
        ebs = aws_client(self.session, "ebs", self.region, self.settings)
        counter = SizeCounter(self.ec2, ebs, self.log)
        by_volume = {v.volume_id: [row.snapshot for row in v.rows] for v in listing.volumes}
        for snapshots in by_volume.values():
            if self.context.stop.is_set():  # a signal: no further reads, no further tags
                break
            counter.volume(snapshots)
        sizes = counter.sizes
        prices = self.settings.prices
        for volume in report.volumes:
            stored = [(s, sizes.stored(s)) for s in by_volume[volume.volume_id]]
            known = [(s, size) for s, size in stored if size is not None]
            if known:
                volume.stored_bytes = sum(size for _, size in known)
                volume.monthly_cost = sum(monthly_cost(size, s.storage_tier, prices)
                                          for s, size in known)
        if sizes.errors:
            report.errors["sizes"] = f"{len(sizes.errors)} snapshot(s) not sized: " \
                                     f"{sizes.errors[0]}"
        return sizes

    def quota(self, report: JobReport) -> None:
        used = sum(1 for _ in paginate(self.ec2, "describe_snapshots", "Snapshots",
                                       OwnerIds=["self"]))
        try:
            quotas = aws_client(self.session, "service-quotas", self.region, self.settings)
            answer = quotas.get_service_quota(ServiceCode=SNAPSHOT_QUOTA[0],
                                              QuotaCode=SNAPSHOT_QUOTA[1])
            limit, source = int(answer["Quota"]["Value"]), "Service Quotas"
        except AwsError as exc:
            limit = DEFAULT_SNAPSHOT_QUOTA
            source = f"the default (Service Quotas did not answer: {exc.code or exc})"
        report.quota = Quota(used, limit, source)
        if report.quota.share >= QUOTA_WARNING:
            self.log.warning(f"the account holds {used} snapshots in {self.region}, "
                             f"{report.quota.share:.0%} of its quota of {limit}: ask for more, "
                             "or delete some")

    def fast_restores(self, report: JobReport, snapshot_ids: list[str]) -> None:
        for start in range(0, len(snapshot_ids), 200):
            batch = snapshot_ids[start:start + 200]
            for raw in paginate(self.ec2, "describe_fast_snapshot_restores",
                                "FastSnapshotRestores",
                                Filters=[{"Name": "snapshot-id", "Values": batch}]):
                if raw.get("State") in FSR_BLOCKING:
                    report.fast_restores.append((str(raw["SnapshotId"]),
                                                 str(raw.get("AvailabilityZone", "")),
                                                 str(raw["State"])))

    def recycle_bin(self, report: JobReport) -> None:
        """The Recycle Bin rules that keep (and bill) the job's deleted snapshots."""
        rbin = aws_client(self.session, "rbin", self.region, self.settings)
        ours = {CREATED_BY[0]: CREATED_BY[1], JOB_TAG: self.job.name}
        for raw in paginate(rbin, "list_rules", "Rules", ResourceType="EBS_SNAPSHOT"):
            rule = rbin.get_rule(Identifier=raw["Identifier"])
            tags = {(t["ResourceTagKey"], t.get("ResourceTagValue", ""))
                    for t in rule.get("ResourceTags", [])}
            excluded = {(t["ResourceTagKey"], t.get("ResourceTagValue", ""))
                        for t in rule.get("ExcludeResourceTags", [])}
            if excluded & set(ours.items()):
                continue
            if tags and not tags & set(ours.items()):
                continue
            period = rule.get("RetentionPeriod", {})
            days = int(period.get("RetentionPeriodValue", 0))
            scope = ("region" if not tags
                     else ", ".join(f"{k}={v}" for k, v in sorted(tags)))
            report.recycle_bin.append(RecycleBinRule(str(raw["Identifier"]), days,
                                                     str(rule.get("Description") or ""),
                                                     scope))


def report_job(context: JobContext, *, sizes: bool) -> JobReport:
    return Reporter(context, sizes=sizes).run()
