"""What every module provides, and what it reports back."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, Protocol, Self

from molibackup.aws import CallStats
from molibackup.config import GlobalSettings, JobConfig

if TYPE_CHECKING:
    import boto3
    from loguru import Logger


@dataclass(frozen=True)
class VolumeBackup:
    """A selected volume, and when its newest completed snapshot of the job was taken."""

    volume_id: str
    name: str
    newest_completed: datetime | None
    snapshot_id: str | None = None  # the newest completed one
    pending: int = 0  # snapshots of the job still being made


@dataclass
class JobResult:
    """Counts for the summary line; any error makes the job fail (exit status 2)."""

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
    dry_run: bool = False  # created/deleted then count what would have been done
    interrupted: bool = False  # a signal stopped the job: what is counted is what was done

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        would = "would have " if self.dry_run else ""
        recent = f" ({self.recent} recent enough)" if self.recent else ""
        copied = f", {would}copied {self.copied}" if self.copying else ""
        return (f"{would}created {self.created}{recent}{copied}, {would}deleted {self.deleted}, "
                f"kept {self.kept}, skipped {self.skipped}, failed {len(self.errors)}"
                + (f", {would}archived {self.archived}" if self.archived else "")
                + (" (dry run)" if self.dry_run else "")
                + (" (interrupted)" if self.interrupted else ""))


@dataclass(frozen=True)
class RunContext:
    """Everything a job needs from the runner; `now` is fixed once per job run.

    The module counts into `result` as it goes, so that a job stopped by an error still
    reports what it had done (snapshots created before a failed listing, say).
    """

    job: JobConfig
    settings: GlobalSettings
    dry_run: bool
    now: datetime
    log: Logger
    session_factory: Callable[[JobConfig], boto3.Session]
    result: JobResult = field(default_factory=JobResult)
    #: Set by SIGTERM/SIGINT: start nothing new (no snapshot, no deletion), report.
    stop: threading.Event = field(default_factory=threading.Event)
    #: Identifies this run of the job: in snapshot tags, pings and logs.
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    stats: CallStats = field(default_factory=CallStats)


class Module(Protocol):
    """A kind of backup. Registered by name in `molibackup.modules.REGISTRY`."""

    name: ClassVar[str]
    permissions: ClassVar[frozenset[str]]

    @classmethod
    def from_config(cls, job: JobConfig) -> Self:
        """Parse the job's module options; raise ConfigError listing every problem."""
        ...

    def run(self, context: RunContext) -> JobResult:
        """Do the job. Raise JobError for a failure that stops it early."""
        ...

    @property
    def min_interval(self) -> timedelta | None:
        """The shortest time between two backups of a volume, if the job sets one."""
        ...

    def coverage(self, context: RunContext) -> list[VolumeBackup]:
        """What the job would back up, and its newest backups; reads only, writes nothing."""
        ...
