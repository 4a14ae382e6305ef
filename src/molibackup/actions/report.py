"""`molibackup report`: hygiene and cost, per job: snapshots per volume, orphans, stored bytes
and an estimated monthly cost (--sizes), quota headroom, and what would block a delete.

Exit status 0, or 2 when a section could not be read (said per section; the rest is still
reported), 1 a config problem.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from datetime import datetime
from typing import Any

from loguru import logger

from molibackup.actions.base import Command, Invocation, Outcome
from molibackup.actions.targets import job_contexts
from molibackup.ebs.report.reporting import JobReport, VolumeReport, report_job
from molibackup.ebs.report.sizes import GIB
from molibackup.errors import MolibackupError
from molibackup.observe import JobRun
from molibackup.observe.metrics import ReportRun, publish_report

ESTIMATE = "estimate at global.prices (USD per GB-month)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", action="store_true",
                        help="also what each snapshot stores (EBS direct APIs, kept in a tag "
                             "on it) and an estimated monthly cost")
    parser.add_argument("--output", choices=["text", "json", "csv"], default="text",
                        help="tables (default), a JSON document, or CSV (a row per volume)")


def run(invocation: Invocation) -> Outcome:
    args, now = invocation.args, invocation.clock()
    reports: list[JobReport] = []
    for placed in job_contexts(invocation):
        context = placed.context
        try:
            report = report_job(context, sizes=args.sizes)
        except MolibackupError as exc:
            report = JobReport(context.job.name, context.job.region, errors={"job": str(exc)})
        reports.append(report)
        publish_report(invocation.config.settings, JobRun(context.job.config, "report", now),
                       metrics_of(report))
    render = {"json": as_json, "csv": as_csv}.get(args.output, as_text)
    sys.stdout.write(render(reports, now))
    sys.stdout.flush()
    for report in reports:
        for section, why in report.errors.items():
            logger.bind(job=report.job).error(f"job {report.job}: {section}: could not be "
                                              f"read: {why}")
    return Outcome.of(not any(report.errors for report in reports))


def metrics_of(report: JobReport) -> ReportRun:
    return ReportRun(
        tiers={tier: sum(v.tiers.get(tier, 0) for v in report.volumes)
               for tier in ("standard", "archive")},
        orphans=len(report.orphans),
        stored_bytes=report.total("stored_bytes"),
        monthly_cost=report.total("monthly_cost"),
        quota_used=report.quota.used if report.quota else None,
        quota_limit=report.quota.limit if report.quota else None,
        ended=time.time())


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def volume_document(volume: VolumeReport) -> dict[str, Any]:
    return {"volume_id": volume.volume_id, "name": volume.name, "status": volume.status,
            "claim": volume.claim, "orphan": volume.orphan, "states": volume.states,
            "tiers": volume.tiers, "oldest": _time(volume.oldest),
            "newest": _time(volume.newest), "locked": volume.locked, "copies": volume.copies,
            "stored_bytes": volume.stored_bytes,
            "estimated_monthly_cost_usd": (round(volume.monthly_cost, 4)
                                           if volume.monthly_cost is not None else None)}


def as_json(reports: list[JobReport], now: datetime) -> str:
    document = {"reported_at": now.isoformat(), "jobs": [{
        "job": r.job, "region": r.region, "errors": r.errors,
        "volumes": [volume_document(v) for v in r.volumes],
        "orphans": [{"volume_id": v.volume_id, "status": v.status, "since": _time(v.newest)}
                    for v in r.orphans],
        "totals": {"snapshots": sum(sum(v.states.values()) for v in r.volumes),
                   "stored_bytes": r.total("stored_bytes"),
                   "estimated_monthly_cost_usd": (round(cost, 4) if (cost := r.total(
                       "monthly_cost")) is not None else None),
                   "cost_basis": ESTIMATE if r.sizes else None},
        "quota": ({"used": r.quota.used, "limit": r.quota.limit, "source": r.quota.source,
                   "share": round(r.quota.share, 4)} if r.quota else None),
        "fast_snapshot_restores": [{"snapshot_id": s, "availability_zone": z, "state": st}
                                   for s, z, st in r.fast_restores],
        "recycle_bin_rules": [{"identifier": rule.identifier, "days": rule.days,
                               "scope": rule.scope, "description": rule.description}
                              for rule in r.recycle_bin],
    } for r in reports]}
    return json.dumps(document, indent=2) + "\n"


CSV_FIELDS = ("job", "region", "volume_id", "name", "status", "claim", "snapshots",
              "completed", "pending", "error", "standard", "archive", "oldest", "newest",
              "locked", "copies", "stored_bytes", "estimated_monthly_cost_usd")


def as_csv(reports: list[JobReport], _now: datetime) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for report in reports:
        for v in report.volumes:
            writer.writerow({
                "job": report.job, "region": report.region, "volume_id": v.volume_id,
                "name": v.name, "status": v.status, "claim": v.claim or "",
                "snapshots": sum(v.states.values()), "completed": v.states.get("completed", 0),
                "pending": v.states.get("pending", 0), "error": v.states.get("error", 0),
                "standard": v.tiers.get("standard", 0), "archive": v.tiers.get("archive", 0),
                "oldest": _time(v.oldest) or "", "newest": _time(v.newest) or "",
                "locked": "" if v.locked is None else v.locked,
                "copies": sum(v.copies.values()),
                "stored_bytes": "" if v.stored_bytes is None else v.stored_bytes,
                "estimated_monthly_cost_usd": ("" if v.monthly_cost is None
                                               else f"{v.monthly_cost:.4f}")})
    return out.getvalue()


def table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def gib(value: float | None) -> str:
    """A size as people read it: GiB from 1 GiB on, MiB or KiB below (a small volume's
    few megabytes are not 0.00 GiB)."""
    if value is None:
        return "-"
    for unit, size in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value:.0f} B"


def as_text(reports: list[JobReport], _now: datetime) -> str:
    blocks = []
    for r in reports:
        lines = [f"job {r.job} ({r.region})"]
        header = ("VOLUME", "NAME", "STATUS", "SNAPSHOTS", "TIERS", "OLDEST", "NEWEST",
                  "LOCKED", "COPIES", "STORED", "USD/MONTH")
        rows = [(v.volume_id, v.name[:32], v.status, ", ".join(
                    f"{n} {state}" for state, n in sorted(v.states.items())),
                 ", ".join(f"{n} {tier}" for tier, n in sorted(v.tiers.items())),
                 (_time(v.oldest) or "-")[:10], (_time(v.newest) or "-")[:10],
                 "?" if v.locked is None else str(v.locked), str(sum(v.copies.values())),
                 gib(v.stored_bytes),
                 "-" if v.monthly_cost is None else f"{v.monthly_cost:.2f}")
                for v in r.volumes]
        lines += table([header, *rows]) if rows else ["  no volume, no snapshot"]
        if r.orphans:
            lines.append(f"  orphans: {len(r.orphans)} volume(s) with snapshots of the job "
                         "that it no longer selects or that no longer exist: " + ", ".join(
                             f"{v.volume_id} ({v.status}, since {(_time(v.newest) or '-')})"
                             for v in r.orphans))
        if r.sizes:
            cost = r.total("monthly_cost")
            lines.append(f"  stored: {gib(r.total('stored_bytes'))}, "
                         f"{'-' if cost is None else f'{cost:.2f}'} USD a month ({ESTIMATE})")
        if r.quota:
            warn = " WARNING: above 80 %" if r.quota.share >= 0.8 else ""
            lines.append(f"  quota: {r.quota.used} of {r.quota.limit} snapshots in "
                         f"{r.region} ({r.quota.share:.1%}, {r.quota.source}){warn}")
        for snapshot, zone, state in r.fast_restores:
            lines.append(f"  blocks a delete: {snapshot} has fast snapshot restore {state} in "
                         f"{zone} (EC2 refuses to delete it; disable it first)")
        for rule in r.recycle_bin:
            lines.append(f"  recycle bin: rule {rule.identifier} ({rule.scope}) keeps deleted "
                         f"snapshots of the job {rule.days} day(s), billed meanwhile")
        for section, why in r.errors.items():
            lines.append(f"  {section}: COULD NOT BE READ: {why}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


COMMAND = Command(
    help="hygiene and cost: snapshots per volume, orphans, stored bytes and cost (--sizes), "
         "quota headroom, and what blocks a delete (reads only, but for the size tags)",
    description="Reports, per job, its snapshots per volume or claim, the volumes it no "
                "longer selects or that are gone (orphans), with --sizes what each snapshot "
                "stores and an estimated monthly cost, the account's snapshot quota, and the "
                "fast snapshot restores and Recycle Bin rules that keep snapshots. Exit status "
                "0, 2 when a section could not be read, 1 a config problem.",
    add_arguments=add_arguments, run=run)
