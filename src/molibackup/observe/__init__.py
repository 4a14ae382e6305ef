"""What happens around a job: metrics and dead-man's-switch pings. Never fails a job.

The runner hands each reporter a job's start and its finished `JobResult`; a reporter that
fails logs a warning and the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from molibackup.config import JobConfig
from molibackup.jobs import JobResult


@dataclass(frozen=True)
class JobRun:
    """One run of one job, as reporters see it."""

    job: JobConfig
    run_id: str
    started: datetime
    shard: str | None = None  # INDEX/COUNT when the job's targets are spread over pods


@dataclass(frozen=True)
class Finished:
    """How a run of a job ended."""

    result: JobResult
    duration_seconds: float
    api_calls: int
    api_throttled: int

    @property
    def succeeded(self) -> bool:
        return self.result.succeeded


class Reporter(Protocol):
    def job_started(self, run: JobRun) -> None: ...

    def job_finished(self, run: JobRun, finished: Finished) -> None: ...
