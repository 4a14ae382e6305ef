"""`molibackup verify`: read each volume's newest backup back (or restore it), prove it is
intact, and leave the evidence on the snapshot, in metrics and in the exit status.

Exit status: 0 every verification succeeded, 2 one failed (the others were still verified),
1 a config problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import Any

from molibackup.actions.base import Command, Invocation, Outcome, Status
from molibackup.actions.options import positive
from molibackup.actions.targets import Placed, job_contexts
from molibackup.ebs.catalog import owned_snapshot
from molibackup.ebs.permissions import VERIFY, actions
from molibackup.ebs.verify.verification import (
    JobVerification,
    Verification,
    Verifier,
    VerifyRequest,
    verify_job,
)
from molibackup.errors import JobError, MolibackupError, Refusal
from molibackup.observe import JobRun
from molibackup.observe.metrics import VerifyRun, VolumeVerified, publish_verification

#: What verify calls; the volume method adds CreateVolume, DeleteVolume (docs/reference/iam.md).
PERMISSIONS = actions(VERIFY)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=["blocks", "volume"],
                        help="override the job's verify.method")
    parser.add_argument("--sample", type=positive, metavar="N",
                        help="verify at most N volumes, those verified longest ago first")
    parser.add_argument("--snapshot", metavar="SNAP", help="verify this snapshot of the job")
    parser.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS,
                        help="say what would be read or created, change nothing")
    parser.add_argument("--output", choices=["text", "json"], default="text",
                        help="a table (default) or a JSON document, on standard output")


def run(invocation: Invocation) -> Outcome:
    args = invocation.args
    dry_run = bool(getattr(args, "dry_run", False))
    request = VerifyRequest(method=args.method, sample=args.sample, snapshot_id=args.snapshot,
                            dry_run=dry_run)
    results: list[JobVerification] = []
    interruption = invocation.interruption
    placed_jobs: list[Placed] = list(job_contexts(invocation))
    if args.snapshot is not None:
        placed_jobs = [owner_of(args.snapshot, placed_jobs)]
    with interruption.installed():
        for placed in placed_jobs:
            context = placed.context
            if interruption.requested:
                break
            log, now = context.log, context.now

            def on_start(verifier: Verifier) -> None:
                # Should the calls in flight outlast the grace time: no volume stays.
                interruption.last_words = verifier.delete_in_flight

            try:
                result = verify_job(context, request, on_start=on_start)
            except MolibackupError as exc:  # a JobError, or an AwsError
                result = JobVerification(context.job.name, context.job.region,
                                         errors=[str(exc)])
                log.error(f"job {context.job.name}: verification failed: {exc}")
            finally:
                interruption.last_words = lambda: None
            results.append(result)
            if not dry_run and result.candidates:
                publish_verification(invocation.config.settings,
                                     JobRun(context.job.config, "verify", now), metrics_of(result))
    show(results, args.output)
    if interruption.requested:
        return Outcome(Status.FAILED, interrupted_by=interruption.signal_number)
    return Outcome.of(all(result.ok for result in results))


def owner_of(snapshot_id: str, placed: list[Placed]) -> Placed:
    """The job (in its target) whose snapshot this is. A snapshot of none of them is the
    user's input: a Refusal, before anything is read or changed."""
    unreadable = []
    for each in placed:
        try:
            if owned_snapshot(each.context, snapshot_id) is not None:
                return each
        except MolibackupError as exc:  # that target cannot be read: say so, if no other has it
            unreadable.append(f"job {each.context.job.name}: {exc}")
    if unreadable:
        raise JobError(f"snapshot {snapshot_id} was not found, and not every job could be "
                       f"searched: {'; '.join(unreadable)}")
    names = ", ".join(dict.fromkeys(each.context.job.name for each in placed))
    raise Refusal(f"snapshot {snapshot_id} is not a snapshot of any job ({names}): check the "
                  "id with `molibackup snapshots`")


def metrics_of(result: JobVerification) -> VerifyRun:
    done = {v.volume_id: v for v in result.verifications}
    volumes = []
    for candidate in result.candidates:
        verification = done.get(candidate.volume_id)
        last = candidate.last_verified.timestamp() if candidate.last_verified else None
        if verification is not None and verification.ok:
            last = time.time()
        restore = (verification.seconds if verification is not None and verification.ok
                   and verification.method == "volume" else None)
        volumes.append(VolumeVerified(candidate.volume_id, candidate.volume_name, last,
                                      restore))
    return VerifyRun(tuple(volumes), sum(v.ok for v in result.verifications),
                     sum(not v.ok and not v.dry_run for v in result.verifications), time.time())


def status_of(verification: Verification) -> str:
    if verification.dry_run:
        return "dry run"
    return "verified" if verification.ok else "FAILED"


def document(results: list[JobVerification]) -> dict[str, Any]:
    return {"verified_at": datetime.now().astimezone().isoformat(), "jobs": [{
        "job": result.job, "region": result.region, "ok": result.ok, "errors": result.errors,
        "verifications": [{
            "volume_id": v.volume_id, "name": v.volume_name, "snapshot_id": v.snapshot_id,
            "method": v.method, "status": status_of(v), "content": v.content or None,
            "blocks_checked": v.checked, "blocks_read": v.read, "blocks_written": v.written,
            "seconds": round(v.seconds, 3), "detail": v.detail,
        } for v in result.verifications],
    } for result in results]}


def clip(text: str, width: int) -> str:
    """At most `width` characters, cut between words, with an ellipsis when cut."""
    if len(text) <= width:
        return text
    cut = text[:width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;:") + "…"


def show(results: list[JobVerification], output: str) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(document(results), indent=2) + "\n")
        sys.stdout.flush()
        return
    header = ("JOB", "VOLUME", "NAME", "SNAPSHOT", "METHOD", "STATUS", "FOUND", "BLOCKS",
              "SECONDS")
    rows: list[tuple[str, ...]] = []
    for result in results:
        for error in result.errors:
            rows.append((result.job, "-", "-", "-", "-", "ERROR", clip(error, 80), "-", "-"))
        for v in result.verifications:
            rows.append((result.job, v.volume_id, clip(v.volume_name, 32),
                         v.snapshot_id or "-", v.method, status_of(v),
                         clip(v.content or v.detail, 60),
                         f"{v.read}/{v.written}" if v.method == "blocks" and v.written else "-",
                         f"{v.seconds:.1f}"))
        if not result.verifications and not result.errors:
            rows.append((result.job, "-", "-", "-", "-", "nothing due", "-", "-", "-"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    sys.stdout.write("\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths,
                                                                          strict=True)).rstrip()
                               for row in [header, *rows]) + "\n")
    sys.stdout.flush()


COMMAND = Command(
    help="prove each volume's newest backup restores: read its blocks back (or restore it "
         "into a volume, then delete it) and tag the snapshot with the evidence",
    description="Verifies, per volume each job selects, its newest completed snapshot: by "
                "reading its first and random written blocks through the EBS direct APIs, "
                "each checked against its SHA-256 (method blocks), or by restoring it into a "
                "volume that is then deleted (method volume). Exit status 0 all verified, 2 "
                "one failed, 1 a config problem.",
    add_arguments=add_arguments, run=run)
