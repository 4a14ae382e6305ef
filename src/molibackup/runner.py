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

from molibackup import workers
from molibackup.awserror import describe_unexpected
from molibackup.config import Config, JobConfig
from molibackup.errors import ConfigError, MolibackupError
from molibackup.interrupt import Interruption
from molibackup.modules import REGISTRY
from molibackup.modules.base import JobContext, JobResult, Module, Target
from molibackup.observe import Finished, JobRun, Reporter
from molibackup.observe.metrics import MetricsReporter
from molibackup.observe.pings import PingReporter
from molibackup.sharding import Shard, assign, key

if TYPE_CHECKING:
    from loguru import Logger

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class PreparedJob:
    job: JobConfig
    module: Module


@dataclass(frozen=True)
class JobOutcome:
    name: str
    result: JobResult

    @property
    def ok(self) -> bool:
        return self.result.ok


def prepare(config: Config, selected: Sequence[str] = ()) -> list[PreparedJob]:
    """The jobs to run, their module options parsed; every problem raised at once."""
    problems: list[str] = []
    for name in selected:
        if config.job(name) is None:
            known = ", ".join(job.name for job in config.jobs)
            problems.append(f"{config.path}: no job named {name!r} (jobs in this file: {known})")
    prepared = []
    for job in config.jobs:
        if selected and job.name not in selected:
            continue
        try:
            prepared.append(PreparedJob(job, REGISTRY[job.module].from_config(job)))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return prepared


def utc_now() -> datetime:
    return datetime.now(UTC)


def run_job(
    prepared: PreparedJob,
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
    job = prepared.job
    log = logger.bind(job=job.name)
    log.info(f"job {job.name}: starting ({job.module}{', dry run' if result.dry_run else ''})")
    context = JobContext(job=job, settings=config.settings, now=clock(), dry_run=result.dry_run,
                         run_id=str(uuid.uuid4()), log=log, stop=stop)
    run = JobRun(job, context.run_id, context.now, str(shard) if shard else None)
    if result.dry_run and reporters:
        log.info("dry run: no metrics pushed or written, no ping sent")
        reporters = ()
    for reporter in reporters:
        _report(log, reporter.job_started, run)
    started = time.monotonic()
    run_targets(prepared.module, context, result, targets, config.settings.target_concurrency)
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


def run_targets(module: Module, context: JobContext, result: JobResult,
                targets: Sequence[Target] | None, concurrency: int) -> None:
    """The job in each target, concurrently; one that fails fails alone. A job of one target
    in its own account runs as it always has."""
    if targets is None:
        try:
            targets = module.targets()
        except MolibackupError as exc:
            message = str(exc)
            context.log.error(f"job {context.job.name} failed: {message}")
            result.errors.append(message)
            return
    if len(targets) == 1 and module.for_target(targets[0]) is module:
        _run_module(module, context, result)
        return

    def one(target: Target) -> tuple[Target, JobResult]:
        own = JobResult(dry_run=result.dry_run)
        if context.stop.is_set():
            own.interrupted = True
            return target, own
        log = context.log.bind(target=target.label)
        try:
            _run_module(module.for_target(target), dataclasses.replace(context, log=log), own,
                        label=f" [{target.label}]")
        finally:
            _target_summary(context, target, own)
        return target, own

    def failed(target: Target, why: str) -> tuple[Target, JobResult]:
        own = JobResult(dry_run=result.dry_run, errors=[why], interrupted=context.stop.is_set())
        context.log.bind(target=target.label).error(
            f"job {context.job.name} [{target.label}] failed: {why}")
        _target_summary(context, target, own)
        return target, own

    def not_started(target: Target) -> tuple[Target, JobResult]:
        return target, JobResult(dry_run=result.dry_run, interrupted=True)

    at_once = min(concurrency, len(targets))
    processes = min(workers.usable_cpus(), at_once) if workers.available() else 1
    context.log.info(f"job {context.job.name}: {len(targets)} target(s), {at_once} at a time"
                     + (f" in {processes} processes" if processes > 1 else ""))
    if processes > 1:
        module.warm_up()  # once here, not in every worker
        for target, own in workers.run_each(targets, one, concurrency=concurrency,
                                            processes=processes, stop=context.stop,
                                            failed=failed, not_started=not_started):
            result.absorb(target, own)
        return
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="target") as pool:
        for target, own in pool.map(one, targets):
            result.absorb(target, own)


def _target_summary(context: JobContext, target: Target, own: JobResult) -> None:
    log = context.log.bind(target=target.label)
    (log.info if own.ok and not own.interrupted else log.error)(
        f"job {context.job.name} [{target.label}]: {own.status}: {own.summary()}")


def _run_module(module: Module, context: JobContext, result: JobResult, label: str = ""
                ) -> None:
    try:
        module.run(context, result)
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
    jobs: Sequence[PreparedJob],
    *,
    force_dry_run: bool = False,
    clock: Clock = utc_now,
    interruption: Interruption | None = None,
    reporters: Sequence[Reporter] | None = None,
    shard: Shard | None = None,
) -> list[JobOutcome]:
    interruption = interruption or Interruption()
    reporters = default_reporters(config) if reporters is None else reporters
    outcomes: list[JobOutcome] = []
    planned = plan_shard(jobs, shard) if shard else {}
    # If calls in flight outlast the grace time, the summary is still written.
    interruption.last_words = lambda: summarise(outcomes, jobs, interruption)
    for prepared in jobs:
        if interruption.requested:
            break
        if not prepared.job.enabled:
            logger.bind(job=prepared.job.name).info(
                f"job {prepared.job.name}: disabled (enabled: false), not run")
            continue
        if shard and prepared.job.name not in planned:
            continue
        result = JobResult(dry_run=force_dry_run or prepared.job.dryrun)
        # Listed before it runs: an interruption's last summary counts what it has done.
        outcomes.append(JobOutcome(prepared.job.name, result))
        outcomes[-1] = JobOutcome(prepared.job.name, run_job(
            prepared, config, clock, result=result, stop=interruption.stop,
            reporters=reporters, targets=planned.get(prepared.job.name), shard=shard))
    if shard and not planned:
        logger.info(f"shard {shard}: no target falls to this shard; nothing to do")
    interruption.last_words = lambda: None
    summarise(outcomes, jobs, interruption)
    return outcomes


def plan_shard(jobs: Sequence[PreparedJob], shard: Shard) -> dict[str, list[Target] | None]:
    """Job name -> the targets this shard runs (None: the job's targets could not be known,
    and this shard reports that); jobs with none here are left out."""
    listed: dict[str, list[Target] | None] = {}
    for prepared in jobs:
        if not prepared.job.enabled:
            continue
        try:
            listed[prepared.job.name] = prepared.module.targets()
        except MolibackupError:
            listed[prepared.job.name] = None
    mine = assign([(job, t) for job, targets in listed.items() for t in targets or []], shard)
    planned: dict[str, list[Target] | None] = {}
    for position, (job, targets) in enumerate(sorted(listed.items())):
        if targets is None:
            if position % shard.count == shard.index:
                planned[job] = None  # run_job lists again, and fails with its one line
            continue
        here = [t for t in targets if key(job, t) in mine]
        if here:
            planned[job] = here
    return planned


def summarise(outcomes: Sequence[JobOutcome], jobs: Sequence[PreparedJob],
              interruption: Interruption) -> None:
    for outcome in outcomes:
        log = logger.bind(job=outcome.name)
        line = f"job {outcome.name}: {outcome.result.status}: {outcome.result.summary()}"
        (log.info if outcome.ok and not outcome.result.interrupted else log.error)(line)
    failed = sum(not outcome.ok for outcome in outcomes)
    if interruption.requested:
        ran = {outcome.name for outcome in outcomes}
        not_started = [p.job.name for p in jobs if p.job.enabled and p.job.name not in ran]
        logger.error(f"run interrupted by {interruption.signal_name}: {len(outcomes)} job(s) "
                     f"started, {len(not_started)} not started"
                     + (f" ({', '.join(not_started)})" if not_started else ""))
        return
    logger.info(f"{len(outcomes)} job(s) run: {len(outcomes) - failed} ok, {failed} failed")
