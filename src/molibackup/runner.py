"""Runs the jobs one after another; a failing job is reported and the others still run."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loguru import logger

from molibackup.config import Config
from molibackup.ebs.backup.pipeline import Backup
from molibackup.ebs.job import EbsJob, JobContext
from molibackup.errors import ConfigError, MolibackupError, describe_unexpected
from molibackup.interrupt import Interruption
from molibackup.jobs import JobResult, Target
from molibackup.observe import Finished, JobRun, Reporter
from molibackup.observe.metrics import MetricsReporter
from molibackup.observe.pings import PingReporter
from molibackup.sharding import Shard, assign, key

if TYPE_CHECKING:
    from loguru import Logger

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class JobOutcome:
    name: str
    result: JobResult
    #: False while the job runs: a summary written then (the grace time after a signal ran
    #: out) must not call it ok.
    finished: bool = True

    @property
    def ok(self) -> bool:
        return self.result.ok


def prepare(config: Config, selected: Sequence[str] = ()) -> list[EbsJob]:
    """The jobs to run, their module options parsed; every problem raised at once."""
    problems: list[str] = []
    for name in selected:
        if config.job(name) is None:
            known = ", ".join(job.name for job in config.jobs)
            problems.append(f"{config.path}: no job named {name!r} (jobs in this file: {known})")
    prepared: list[EbsJob] = []
    for job in config.jobs:
        if selected and job.name not in selected:
            continue
        try:
            prepared.append(EbsJob.from_config(job))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return prepared


def utc_now() -> datetime:
    return datetime.now(UTC)


def run_job(
    job: EbsJob,
    config: Config,
    clock: Clock,
    *,
    result: JobResult,
    stop: threading.Event,
    reporters: Sequence[Reporter] = (),
    targets: Sequence[Target] | None = None,
    shard: Shard | None = None,
) -> JobResult:
    """Run one job in each of its targets (all of them, or those given)."""
    log = logger.bind(job=job.name)
    log.info(f"job {job.name}: starting ({job.config.module}"
             f"{', dry run' if result.dry_run else ''})")
    context = JobContext(job=job, settings=config.settings, now=clock(), dry_run=result.dry_run,
                         run_id=str(uuid.uuid4()), log=log, stop=stop)
    run = JobRun(job.config, context.run_id, context.now, str(shard) if shard else None)
    if result.dry_run and reporters:
        log.info("dry run: no metrics pushed or written, no ping sent")
        reporters = ()
    for reporter in reporters:
        _report(log, reporter.job_started, run)
    started = time.monotonic()
    run_targets(context, result, targets, config.settings.target_concurrency)
    finished = Finished(result, time.monotonic() - started, result.stats.calls,
                        result.stats.throttled)
    for reporter in reporters:
        _report(log, reporter.job_finished, run, finished)
    return result


def _report(log: Logger, call: Callable[..., None], *args: Any) -> None:
    """Reporters never fail a job, whatever goes wrong in them."""
    try:
        call(*args)
    except Exception as exc:
        log.warning(f"reporting failed: {type(exc).__name__}: {str(exc)[:200]}")


def run_targets(context: JobContext, result: JobResult, targets: Sequence[Target] | None,
                concurrency: int) -> None:
    """The job in each target, on a pool of threads; one that fails fails alone, and once
    the stop flag is set no target starts. A job of one target in its own account runs as
    it always has, in the calling thread.

    Threads, not processes: a target spends its time waiting on AWS, and the benchmark
    measured worker processes (forked after start-up) at no better than threads on the
    targets' wall time, for more memory and a fork that is only safe single-threaded."""
    job = context.job
    if targets is None:
        try:
            targets = job.targets()
        except MolibackupError as exc:
            message = str(exc)
            context.log.error(f"job {job.name} failed: {message}")
            result.errors.append(message)
            return
    if len(targets) == 1 and job.for_target(targets[0]) is job:
        _run_backup(context, result)
        return

    def one(target: Target) -> JobResult:
        own = JobResult(dry_run=result.dry_run)
        if context.stop.is_set():
            own.interrupted = True
            return own
        log = context.log.bind(target=target.label)
        try:
            _run_backup(dataclasses.replace(context, job=job.for_target(target), log=log), own,
                        label=f" [{target.label}]")
        finally:
            _target_summary(context, target, own)
        return own

    at_once = min(concurrency, len(targets))
    context.log.info(f"job {job.name}: {len(targets)} target(s), {at_once} at a time")
    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="target") as pool:
        for target, own in zip(targets, pool.map(one, targets), strict=True):
            result.absorb(target, own)


def _target_summary(context: JobContext, target: Target, own: JobResult) -> None:
    log = context.log.bind(target=target.label)
    (log.info if own.ok and not own.interrupted else log.error)(
        f"job {context.job.name} [{target.label}]: {own.status}: {own.summary()}")


def _run_backup(context: JobContext, result: JobResult, label: str = "") -> None:
    try:
        Backup(context.job).run(context, result)
        result.interrupted = result.interrupted or context.stop.is_set()
        return
    except MolibackupError as exc:  # a JobError, or an AwsError that stopped the job
        message = str(exc)
    except Exception as exc:  # one broken job must not stop the others
        context.log.opt(exception=True).debug("traceback of the unexpected error")
        message = (f"unexpected error: {describe_unexpected(exc)} (set loglevel: debug for the "
                   "traceback)")
    context.log.error(f"job {context.job.name}{label} failed: {message}")
    result.errors.append(message)
    result.interrupted = context.stop.is_set()


def default_reporters(config: Config) -> list[Reporter]:
    settings = config.settings
    reporters: list[Reporter] = []
    if settings.metrics.pushgateway or settings.metrics.textfile or any(
            job.pushgateway for job in config.jobs):
        reporters.append(MetricsReporter(settings))
    if settings.ping_url or any(job.ping_url for job in config.jobs):
        reporters.append(PingReporter(settings))
    return reporters


def run(
    config: Config,
    jobs: Sequence[EbsJob],
    *,
    force_dry_run: bool = False,
    clock: Clock = utc_now,
    interruption: Interruption,
    reporters: Sequence[Reporter] | None = None,
    shard: Shard | None = None,
) -> list[JobOutcome]:
    reporters = default_reporters(config) if reporters is None else reporters
    outcomes: list[JobOutcome] = []
    planned = plan_shard(jobs, shard) if shard else {}
    # If calls in flight outlast the grace time, the summary is still written.
    interruption.last_words = lambda: summarise(outcomes, jobs, interruption)
    for job in jobs:
        if interruption.requested:
            break
        if not job.enabled:
            logger.bind(job=job.name).info(
                f"job {job.name}: disabled (enabled: false), not run")
            continue
        if shard and job.name not in planned:
            continue
        result = JobResult(dry_run=force_dry_run or job.config.dryrun)
        # Listed before it runs: an interruption's last summary counts what it has done.
        outcomes.append(JobOutcome(job.name, result, finished=False))
        outcomes[-1] = JobOutcome(job.name, run_job(
            job, config, clock, result=result, stop=interruption.stop,
            reporters=reporters, targets=planned.get(job.name), shard=shard))
    if shard and not planned:
        logger.info(f"shard {shard}: no target falls to this shard; nothing to do")
    interruption.last_words = lambda: None
    summarise(outcomes, jobs, interruption)
    return outcomes


def plan_shard(jobs: Sequence[EbsJob], shard: Shard) -> dict[str, list[Target] | None]:
    """Job name -> the targets this shard runs (None: the job's targets could not be known,
    and this shard reports that); jobs with none here are left out."""
    listed: dict[str, list[Target] | None] = {}
    for job in jobs:
        if not job.enabled:
            continue
        try:
            listed[job.name] = job.targets()
        except MolibackupError:
            listed[job.name] = None
    mine = assign([(name, t) for name, targets in listed.items() for t in targets or []], shard)
    planned: dict[str, list[Target] | None] = {}
    for position, (name, targets) in enumerate(sorted(listed.items())):
        if targets is None:
            if position % shard.count == shard.index:
                planned[name] = None  # run_job lists again, and fails with its one line
            continue
        here = [t for t in targets if key(name, t) in mine]
        if here:
            planned[name] = here
    return planned


def summarise(outcomes: Sequence[JobOutcome], jobs: Sequence[EbsJob],
              interruption: Interruption) -> None:
    for outcome in outcomes:
        if not outcome.finished:  # still running when the grace time ran out
            outcome.result.interrupted = True
        log = logger.bind(job=outcome.name)
        line = f"job {outcome.name}: {outcome.result.status}: {outcome.result.summary()}"
        (log.info if outcome.ok and not outcome.result.interrupted else log.error)(line)
    failed = sum(not outcome.ok for outcome in outcomes)
    if interruption.requested:
        ran = {outcome.name for outcome in outcomes}
        not_started = [j.name for j in jobs if j.enabled and j.name not in ran]
        logger.error(f"run interrupted by {interruption.signal_name}: {len(outcomes)} job(s) "
                     f"started, {len(not_started)} not started"
                     + (f" ({', '.join(not_started)})" if not_started else ""))
        return
    logger.info(f"{len(outcomes)} job(s) run: {len(outcomes) - failed} ok, {failed} failed")
