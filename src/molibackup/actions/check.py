"""`molibackup check`: is every volume each job selects backed up recently enough?

It sees what metrics cannot: a selection that grew, a snapshot that never completed,
deletions that silently did nothing. It only reads (Describe* calls), never writes.
Exit status 0 when every volume has a completed snapshot of its job newer than the limit,
2 when one has not (or a job could not be checked).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TextIO

from loguru import logger

from molibackup.actions.base import Command, Invocation, Outcome
from molibackup.actions.options import duration
from molibackup.actions.targets import job_contexts
from molibackup.durations import format_duration
from molibackup.ebs.inventory import coverage
from molibackup.ebs.job import EbsJob
from molibackup.errors import MolibackupError
from molibackup.jobs import VolumeBackup
from molibackup.retention import format_age

DEFAULT_MAX_AGE = timedelta(days=2)
OK, STALE, NONE, UNVERIFIED = "ok", "stale", "none", "unverified"


@dataclass(frozen=True)
class JobCoverage:
    job: str
    max_age: timedelta
    volumes: list[VolumeBackup]
    error: str | None = None
    verified_within: timedelta | None = None
    target: str | None = None  # account/region, for a job of several targets

    @property
    def label(self) -> str:
        return f"{self.job} [{self.target}]" if self.target else self.job

    def status(self, volume: VolumeBackup, now: datetime) -> str:
        if volume.newest_completed is None:
            return NONE
        if now - volume.newest_completed > self.max_age:
            return STALE
        if self.verified_within is not None and (
                volume.verified_at is None or now - volume.verified_at > self.verified_within):
            return UNVERIFIED
        return OK

    def ok(self, now: datetime) -> bool:
        return self.error is None and all(self.status(v, now) == OK for v in self.volumes)


def max_age_for(min_interval: timedelta | None, given: timedelta | None) -> timedelta:
    """The limit: --max-age, else twice the job's min_interval (one missed run is
    tolerated, two are not), else two days."""
    if given is not None:
        return given
    return 2 * min_interval if min_interval is not None else DEFAULT_MAX_AGE


def check_jobs(invocation: Invocation, max_age: timedelta | None,
               verified_within: timedelta | None = None) -> list[JobCoverage]:
    coverages = []

    def unknown(job: EbsJob, exc: MolibackupError) -> None:
        limit = max_age_for(job.min_interval, max_age)
        coverages.append(JobCoverage(job.name, limit, [], str(exc), verified_within))

    for placed in job_contexts(invocation, unknown=unknown):
        job, log, label = placed.context.job, placed.context.log, placed.label
        limit = max_age_for(job.min_interval, max_age)
        try:
            volumes = coverage(placed.context)
        except MolibackupError as exc:  # a JobError, or an AwsError
            coverages.append(JobCoverage(job.name, limit, [], str(exc), verified_within, label))
            continue
        if not volumes:
            log.warning(f"job {job.name}{f' [{label}]' if label else ''}: selects no volume")
        coverages.append(JobCoverage(job.name, limit, volumes, None, verified_within, label))
    return coverages


def _age(volume: VolumeBackup, now: datetime) -> float | None:
    if volume.newest_completed is None:
        return None
    return max(0.0, (now - volume.newest_completed).total_seconds())


def as_json(coverages: list[JobCoverage], now: datetime) -> str:
    document = {
        "ok": all(c.ok(now) for c in coverages),
        "checked_at": now.isoformat(),
        "jobs": [{
            "job": c.job,
            "target": c.target,
            "ok": c.ok(now),
            "max_age_seconds": c.max_age.total_seconds(),
            "error": c.error,
            "volumes": [{
                "volume_id": v.volume_id,
                "name": v.name,
                "status": c.status(v, now),
                "snapshot_id": v.snapshot_id,
                "snapshot_time": v.newest_completed.isoformat() if v.newest_completed else None,
                "age_seconds": _age(v, now),
                "pending": v.pending,
                "verified_at": v.verified_at.isoformat() if v.verified_at else None,
            } for v in c.volumes],
        } for c in coverages],
    }
    return json.dumps(document, indent=2)


def as_table(coverages: list[JobCoverage], now: datetime) -> str:
    header = ("JOB", "VOLUME", "NAME", "NEWEST COMPLETED SNAPSHOT", "AGE", "MAX AGE", "STATUS")
    rows: list[tuple[str, ...]] = []
    for c in coverages:
        limit = format_duration(c.max_age)
        if c.error:
            rows.append((c.label, "-", "-", "-", "-", limit, f"ERROR: {c.error}"))
            continue
        if not c.volumes:
            rows.append((c.label, "-", "-", "-", "-", limit, "no volume selected"))
        for v in c.volumes:
            age = _age(v, now)
            status = c.status(v, now).upper() if c.status(v, now) != OK else OK
            if v.pending:
                status += f" ({v.pending} pending)"
            rows.append((c.label, v.volume_id, v.name[:40], v.snapshot_id or "-",
                         format_age(age / 86400) if age is not None else "-", limit, status))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def report(coverages: list[JobCoverage], now: datetime, output: str,
           stream: TextIO | None = None) -> bool:
    """Print the coverage (to stdout); whether every volume is covered."""
    stream = sys.stdout if stream is None else stream
    stream.write((as_json(coverages, now) if output == "json" else as_table(coverages, now))
                 + "\n")
    stream.flush()
    uncovered = sum(1 for c in coverages for v in c.volumes if c.status(v, now) != OK)
    failed = [c.job for c in coverages if c.error]
    if failed:
        logger.error(f"could not check job(s): {', '.join(failed)}")
    if uncovered:
        logger.error(f"{uncovered} volume(s) without a completed snapshot within the limit"
                     + (", or not verified within the limit" if any(
                         c.verified_within for c in coverages) else ""))
    elif not failed:
        logger.info("every selected volume has a recent completed snapshot")
    return not uncovered and not failed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-age", metavar="DURATION", type=duration,
                        help="the oldest a newest completed snapshot may be, such as 36h or "
                             "2d (default: twice the job's min_interval, else 2d)")
    parser.add_argument("--verified-within", metavar="DURATION", type=duration,
                        help="also fail a volume whose newest verification (molibackup "
                             "verify) is older than this, such as 7d, or that was never "
                             "verified")
    parser.add_argument("--output", choices=["text", "json"], default="text",
                        help="a table (default) or a JSON document, on standard output")


def run(invocation: Invocation) -> Outcome:
    now = invocation.clock()
    coverages = check_jobs(invocation, invocation.args.max_age,
                           invocation.args.verified_within)
    return Outcome.of(report(coverages, now, invocation.args.output))


COMMAND = Command(
    help="report, for every volume each job selects, the age of its newest completed "
         "snapshot; exit 2 when one is older than the limit",
    description="Read-only coverage check: lists every volume each job selects with the age "
                "of its newest completed snapshot of that job. Exit status 0 when all are "
                "recent enough, 2 when one is not, 1 on a config problem.",
    add_arguments=add_arguments, run=run)
