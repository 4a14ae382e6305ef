"""What a job reports back, where it runs, and what it found: plain records shared by the
runner, the commands and the reporters."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from molibackup.aws.clients import CallStats

OK, FAILED, INTERRUPTED = "ok", "FAILED", "INTERRUPTED"


@dataclass(frozen=True)
class VolumeBackup:
    """A selected volume, and when its newest completed snapshot of the job was taken."""

    volume_id: str
    name: str
    newest_completed: datetime | None
    snapshot_id: str | None = None  # the newest completed one
    pending: int = 0  # snapshots of the job still being made
    verified_at: datetime | None = None  # when one of its snapshots was last verified


@dataclass(frozen=True)
class Target:
    """Where a job works: a region, in its own account (account None) or another's."""

    region: str
    account: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return f"{self.account or 'own account'}/{self.region}"


@dataclass
class JobResult:
    """What a job gathers as it goes, so that one stopped by an error still reports what it
    had done (snapshots created before a failed listing, say). Any error fails the job."""

    dry_run: bool = False  # created/deleted then count what would have been done
    created: int = 0
    recent: int = 0  # volumes not snapshotted: one of their snapshots is within min_interval
    deleted: int = 0
    kept: int = 0
    skipped: int = 0
    archived: int = 0
    copied: int = 0
    copying: bool = False  # the job copies elsewhere: the summary says how many
    errors: list[str] = field(default_factory=list)
    volumes: list[VolumeBackup] = field(default_factory=list)  # every volume selected
    interrupted: bool = False  # a signal stopped the job: what is counted is what was done
    tiers: dict[str, int] = field(default_factory=dict)  # the job's snapshots left, by tier
    orphans: int = 0  # volumes with snapshots of the job it no longer selects, or gone
    stored_bytes: int | None = None  # what the job's snapshots store, where known
    stats: CallStats = field(default_factory=CallStats)  # the job's AWS requests
    targets: list[tuple[Target, JobResult]] = field(default_factory=list)  # when several

    def absorb(self, target: Target, other: JobResult) -> None:
        """Count a target's result into the job's."""
        for name in ("created", "recent", "deleted", "kept", "skipped", "archived", "copied",
                     "orphans"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.copying = self.copying or other.copying
        self.interrupted = self.interrupted or other.interrupted
        self.errors += [f"[{target.label}] {error}" for error in other.errors]
        self.volumes += other.volumes
        for tier, count in other.tiers.items():
            self.tiers[tier] = self.tiers.get(tier, 0) + count
        if other.stored_bytes is not None:
            self.stored_bytes = (self.stored_bytes or 0) + other.stored_bytes
        self.stats.absorb(other.stats)
        self.targets.append((target, other))

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def succeeded(self) -> bool:
        return self.ok and not self.interrupted

    @property
    def status(self) -> str:
        """The status word of summaries and pings."""
        return INTERRUPTED if self.interrupted else OK if self.ok else FAILED

    def summary(self) -> str:
        would = "would have " if self.dry_run else ""
        recent = f" ({self.recent} recent enough)" if self.recent else ""
        copied = f", {would}copied {self.copied}" if self.copying else ""
        return (f"{would}created {self.created}{recent}{copied}, {would}deleted {self.deleted}, "
                f"kept {self.kept}, skipped {self.skipped}, failed {len(self.errors)}"
                + (f", {would}archived {self.archived}" if self.archived else "")
                + (" (dry run)" if self.dry_run else "")
                + (" (interrupted)" if self.interrupted else ""))
