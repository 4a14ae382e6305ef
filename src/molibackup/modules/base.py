"""What the runner hands a job, what the job reports back, and what every module provides."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, Protocol, Self

from molibackup.aws import CallStats
from molibackup.config import GlobalSettings, JobConfig

if TYPE_CHECKING:
    from loguru import Logger

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


@dataclass(frozen=True)
class JobContext:
    """What the runner hands a job for one run; `now` is fixed once per run."""

    job: JobConfig
    settings: GlobalSettings
    now: datetime
    dry_run: bool
    #: Identifies this run of the job: in snapshot tags, pings and logs.
    run_id: str
    log: Logger
    #: Set by SIGTERM/SIGINT: start nothing new (no snapshot, no deletion), report.
    stop: threading.Event


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


class Module(Protocol):
    """A kind of backup. Registered by name in `molibackup.modules.REGISTRY`."""

    name: ClassVar[str]
    permissions: ClassVar[frozenset[str]]

    @classmethod
    def from_config(cls, job: JobConfig) -> Self:
        """Parse the job's module options; raise ConfigError listing every problem."""
        ...

    def warnings(self) -> list[str]:
        """Doubts about options that are valid but may be mistakes (an unknown region)."""
        ...

    def targets(self) -> list[Target]:
        """Where the job works: accounts x regions, sorted. JobError when they cannot be
        known (an organization that cannot be listed)."""
        ...

    def for_target(self, target: Target) -> Self:
        """The job as it runs in one target: its own session and region."""
        ...

    def warm_up(self) -> None:
        """Load what every target needs (service models) once, before the targets' processes
        are forked from this one."""
        ...

    def run(self, context: JobContext, result: JobResult) -> None:
        """Do the job, counting into `result`. Raise JobError for a failure that stops it."""
        ...

    @property
    def min_interval(self) -> timedelta | None:
        """The shortest time between two backups of a volume, if the job sets one."""
        ...

    def coverage(self, settings: GlobalSettings, log: Logger) -> list[VolumeBackup]:
        """What the job would back up, and its newest backups; reads only, writes nothing."""
        ...
