"""Prometheus metrics of each job, for a Pushgateway or node-exporter's textfile collector.

Names follow `<namespace>_<subsystem>_<name>_<unit>`; a batch job's counts are gauges of
its last run. One grouping key per job (job="molibackup", molibackup_job=<name>,
instance="") so that jobs never overwrite each other and a pod's name never makes a new
series. A failed run leaves `molibackup_job_last_success_timestamp_seconds` as it was: it
is pushed with POST (which replaces only the metrics sent) and without that metric.
"""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import (
    basic_auth_handler,
    default_handler,
    generate_latest,
    push_to_gateway,
    pushadd_to_gateway,
)
from prometheus_client.parser import text_string_to_metric_families

from molibackup.config import GlobalSettings
from molibackup.observe import Finished, JobRun

GROUPING_JOB = "molibackup"
LAST_SUCCESS = "molibackup_job_last_success_timestamp_seconds"

#: Every metric: name, help, labels (besides molibackup_job). The metrics reference
#: (docs/reference/metrics.md) is checked against this list.
METRICS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("molibackup_job_last_run_timestamp_seconds", "When the job's last run ended.", ()),
    (LAST_SUCCESS, "When the job last ended without error.", ()),
    ("molibackup_job_success", "1 if the job's last run ended without error, else 0.", ()),
    ("molibackup_job_duration_seconds", "How long the job's last run took.", ()),
    ("molibackup_job_snapshots", "Snapshots of the last run by outcome: created, deleted, "
     "kept, skipped (deletions skipped), failed (errors).", ("outcome",)),
    ("molibackup_job_volumes_selected", "Volumes the job's last run selected.", ()),
    ("molibackup_job_volumes_recent", "Volumes not snapshotted because of min_interval.", ()),
    ("molibackup_job_api_calls", "EC2 requests sent by the last run, retries included.", ()),
    ("molibackup_job_api_throttled", "EC2 requests of the last run answered with throttling.",
     ()),
    ("molibackup_volume_last_snapshot_timestamp_seconds", "Start of the newest completed "
     "snapshot of each selected volume made by this job; 0 when it has none.",
     ("volume_id", "volume_name")),
    ("molibackup_job_snapshots_stored", "The job's snapshots after the last run, by storage "
     "tier.", ("tier",)),
    ("molibackup_job_orphaned_volumes", "Volumes with snapshots of the job that it no longer "
     "selects, or that no longer exist.", ()),
    ("molibackup_job_stored_bytes", "What the job's snapshots store, as far as their sizes "
     "are known (molibackup report --sizes tags them).", ()),
    ("molibackup_target_success", "For a job of several targets: 1 if the last run in that "
     "account and region ended without error, else 0.", ("account", "region")),
    ("molibackup_target_snapshots", "For a job of several targets: snapshots of the last run "
     "in that account and region by outcome.", ("account", "region", "outcome")),
)


def registry_for(run: JobRun, finished: Finished) -> CollectorRegistry:
    """The run's metrics; without the last-success one when the run failed."""
    with_last_success = finished.succeeded
    result = finished.result
    ended = run.started.timestamp() + finished.duration_seconds
    registry = CollectorRegistry()
    gauges = {name: Gauge(name, text, ["molibackup_job", *labels], registry=registry)
              for name, text, labels in METRICS
              if with_last_success or name != LAST_SUCCESS}
    job = run.job.name

    def put(name: str, value: float, *labels: str) -> None:
        gauges[name].labels(job, *labels).set(value)

    put("molibackup_job_last_run_timestamp_seconds", ended)
    if with_last_success:
        put(LAST_SUCCESS, ended)
    put("molibackup_job_success", float(finished.succeeded))
    put("molibackup_job_duration_seconds", finished.duration_seconds)
    for outcome, count in (("created", result.created), ("deleted", result.deleted),
                           ("kept", result.kept), ("skipped", result.skipped),
                           ("failed", len(result.errors))):
        put("molibackup_job_snapshots", count, outcome)
    put("molibackup_job_volumes_selected", len(result.volumes))
    put("molibackup_job_volumes_recent", result.recent)
    put("molibackup_job_api_calls", finished.api_calls)
    put("molibackup_job_api_throttled", finished.api_throttled)
    for volume in result.volumes:
        newest = volume.newest_completed.timestamp() if volume.newest_completed else 0.0
        put("molibackup_volume_last_snapshot_timestamp_seconds", newest, volume.volume_id,
            volume.name)
    for tier, count in sorted(result.tiers.items()):
        put("molibackup_job_snapshots_stored", count, tier)
    for target, own in result.targets:
        account = target.account or "own"
        put("molibackup_target_success", float(own.ok and not own.interrupted), account,
            target.region)
        for outcome, count in (("created", own.created), ("deleted", own.deleted),
                               ("failed", len(own.errors))):
            put("molibackup_target_snapshots", count, account, target.region, outcome)
    put("molibackup_job_orphaned_volumes", result.orphans)
    if result.stored_bytes is not None:
        put("molibackup_job_stored_bytes", result.stored_bytes)
    return registry


def _handler_for(url: str) -> tuple[str, Callable[..., Any]]:
    """The URL without its credentials, and a handler that sends them as basic auth."""
    parts = urllib.parse.urlsplit(url)
    if not parts.username:
        return url, default_handler
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    bare = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    username = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")

    def handler(url: str, method: str, timeout: float | None, headers: Any, data: bytes
                ) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return bare, handler


def shown(url: str) -> str:
    """A Pushgateway URL for the log: without credentials, path or query."""
    parts = urllib.parse.urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


class MetricsReporter:
    def __init__(self, settings: GlobalSettings) -> None:
        self.settings = settings.metrics

    def job_started(self, run: JobRun) -> None:
        """Metrics are pushed once, at the end."""

    def job_finished(self, run: JobRun, finished: Finished) -> None:
        succeeded = finished.succeeded
        registry = registry_for(run, finished)
        log = logger.bind(job=run.job.name)
        gateway = run.job.pushgateway or self.settings.pushgateway
        if gateway:
            self.push(gateway, run, registry, replace=succeeded, log=log)
        if self.settings.textfile:
            self.write_textfile(self.settings.textfile, run, registry, succeeded, log)

    def push(self, gateway: str, run: JobRun, registry: CollectorRegistry, replace: bool,
             log: Any, *, command: str | None = None) -> None:
        url, handler = _handler_for(gateway)
        send = push_to_gateway if replace else pushadd_to_gateway
        grouping = {"molibackup_job": run.job.name, "instance": "",
                    **({"molibackup_command": command} if command else {}),
                    **({"shard": run.shard.replace("/", "-of-")} if run.shard else {})}
        try:
            send(url, job=GROUPING_JOB, registry=registry, handler=handler,
                 grouping_key=grouping, timeout=self.settings.timeout)
        except Exception as exc:  # a monitoring outage must never fail a backup
            log.warning(f"metrics not pushed to the Pushgateway at {shown(gateway)}: "
                        f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        log.info(f"metrics pushed to the Pushgateway at {shown(gateway)}")

    def write_textfile(self, directory: Path, run: JobRun, registry: CollectorRegistry,
                       succeeded: bool, log: Any, *, command: str | None = None) -> None:
        suffix = (f"_{command}" if command else "") + (
            f"_shard{run.shard.split('/')[0]}" if run.shard else "")
        path = directory / f"molibackup_{run.job.name}{suffix}.prom"
        text = generate_latest(registry).decode()
        try:
            if not succeeded:
                text += previous_last_success(path, run.job.name)
            atomic_write(path, text)
        except OSError as exc:
            log.warning(f"metrics not written to {path}: {exc.strerror or exc}")
            return
        log.info(f"metrics written to {path}")


def previous_last_success(path: Path, job: str) -> str:
    """The last-success sample of an earlier run's file, so that a failure keeps it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == LAST_SUCCESS and sample.labels.get("molibackup_job") == job:
                return (f"# HELP {LAST_SUCCESS} When the job last ended without error.\n"
                        f"# TYPE {LAST_SUCCESS} gauge\n"
                        f'{LAST_SUCCESS}{{molibackup_job="{job}"}} {sample.value!r}\n')
    return ""


def atomic_write(path: Path, text: str) -> None:
    """Write next to the target, then rename: the collector never reads half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise



# --- verify -------------------------------------------------------------------------------

VERIFY_COMMAND = "verify"
VERIFY_LAST_SUCCESS = "molibackup_verify_last_success_timestamp_seconds"
#: The metrics of `molibackup verify`, under the grouping key of the job plus
#: molibackup_command="verify", so that they never replace the backup run's.
VERIFY_METRICS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("molibackup_verify_last_run_timestamp_seconds", "When the job's last verify run ended.",
     ()),
    (VERIFY_LAST_SUCCESS, "When the newest backup of each selected volume was last read back "
     "intact (its snapshot's molibackup:verified-at); 0 when never.",
     ("volume_id", "volume_name")),
    ("molibackup_verify_restore_seconds", "How long the last verification volume of each "
     "volume took to become available (method volume).", ("volume_id", "volume_name")),
    ("molibackup_verify_verifications", "Verifications of the last verify run by outcome: "
     "verified, failed.", ("outcome",)),
)


@dataclass(frozen=True)
class VolumeVerified:
    volume_id: str
    volume_name: str
    last_success: float | None  # seconds since the epoch
    restore_seconds: float | None = None


@dataclass(frozen=True)
class VerifyRun:
    volumes: tuple[VolumeVerified, ...]
    verified: int
    failed: int
    ended: float


def verify_registry(job: str, run: VerifyRun) -> CollectorRegistry:
    registry = CollectorRegistry()
    gauges = {name: Gauge(name, text, ["molibackup_job", *labels], registry=registry)
              for name, text, labels in VERIFY_METRICS}
    gauges["molibackup_verify_last_run_timestamp_seconds"].labels(job).set(run.ended)
    for outcome, count in (("verified", run.verified), ("failed", run.failed)):
        gauges["molibackup_verify_verifications"].labels(job, outcome).set(count)
    for volume in run.volumes:
        gauges[VERIFY_LAST_SUCCESS].labels(job, volume.volume_id, volume.volume_name).set(
            volume.last_success or 0.0)
        if volume.restore_seconds is not None:
            gauges["molibackup_verify_restore_seconds"].labels(
                job, volume.volume_id, volume.volume_name).set(volume.restore_seconds)
    return registry


def publish(settings: GlobalSettings, job_run: JobRun, registry: CollectorRegistry,
            command: str) -> None:
    """Push (replacing the command's last metrics, never the backup run's) and/or write a
    command's metrics; like every reporter, never fails what it reports on."""
    reporter = MetricsReporter(settings)
    log = logger.bind(job=job_run.job.name)
    gateway = job_run.job.pushgateway or reporter.settings.pushgateway
    if gateway:
        reporter.push(gateway, job_run, registry, replace=True, log=log, command=command)
    if reporter.settings.textfile:
        reporter.write_textfile(reporter.settings.textfile, job_run, registry, True, log,
                                command=command)


def publish_verification(settings: GlobalSettings, job_run: JobRun, run: VerifyRun) -> None:
    publish(settings, job_run, verify_registry(job_run.job.name, run), VERIFY_COMMAND)


# --- report -------------------------------------------------------------------------------

REPORT_COMMAND = "report"
#: The metrics of `molibackup report`, under the grouping key of the job plus
#: molibackup_command="report".
REPORT_METRICS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("molibackup_report_last_run_timestamp_seconds", "When the job's last report ended.", ()),
    ("molibackup_report_snapshots", "The job's snapshots by storage tier.", ("tier",)),
    ("molibackup_report_orphaned_volumes", "Volumes with snapshots of the job that it no "
     "longer selects, or that no longer exist.", ()),
    ("molibackup_report_stored_bytes", "What the job's snapshots store (report --sizes).", ()),
    ("molibackup_report_estimated_monthly_cost_dollars", "An estimate of what the job's "
     "snapshots cost a month, at global.prices (report --sizes).", ()),
    ("molibackup_report_account_snapshots", "Snapshots the account owns in the job's region "
     "(every tool's).", ()),
    ("molibackup_report_snapshot_quota", "The account's \"Snapshots per Region\" quota there.",
     ()),
)


@dataclass(frozen=True)
class ReportRun:
    tiers: dict[str, int]
    orphans: int
    stored_bytes: float | None
    monthly_cost: float | None
    quota_used: int | None
    quota_limit: int | None
    ended: float


def report_registry(job: str, run: ReportRun) -> CollectorRegistry:
    registry = CollectorRegistry()
    gauges = {name: Gauge(name, text, ["molibackup_job", *labels], registry=registry)
              for name, text, labels in REPORT_METRICS}
    gauges["molibackup_report_last_run_timestamp_seconds"].labels(job).set(run.ended)
    for tier, count in run.tiers.items():
        gauges["molibackup_report_snapshots"].labels(job, tier).set(count)
    gauges["molibackup_report_orphaned_volumes"].labels(job).set(run.orphans)
    for name, value in (("molibackup_report_stored_bytes", run.stored_bytes),
                        ("molibackup_report_estimated_monthly_cost_dollars", run.monthly_cost),
                        ("molibackup_report_account_snapshots", run.quota_used),
                        ("molibackup_report_snapshot_quota", run.quota_limit)):
        if value is not None:
            gauges[name].labels(job).set(value)
    return registry


def publish_report(settings: GlobalSettings, job_run: JobRun, run: ReportRun) -> None:
    publish(settings, job_run, report_registry(job_run.job.name, run), REPORT_COMMAND)
