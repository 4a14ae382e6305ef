"""`molibackup snapshots`: what each job has, per volume, and what its next rotation would do.

Reads only. Lists the volumes each job selects and the volumes that only have snapshots of
the job left (no longer selected, or gone), each with the job's snapshots newest first.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from loguru import logger

from molibackup.actions.base import Command, Invocation, Outcome
from molibackup.actions.targets import add_target_arguments, claim_name, job_contexts
from molibackup.ebs.report.listing import JobListing, Narrowing, Row, list_job
from molibackup.ebs.restore.manifests import SnapshotHandoff, render_snapshots
from molibackup.ebs.tags import VERIFIED_AT_TAG, VERIFIED_TAG
from molibackup.errors import MolibackupError, Refusal


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--volume", metavar="VOL", help="only this volume (vol-...)")
    which.add_argument("--claim", metavar="NAMESPACE/NAME", type=claim_name,
                       help="only the volume of this Kubernetes claim")
    which.add_argument("--instance", metavar="ID", help="only the volumes of this instance")
    add_target_arguments(parser, "to list")
    parser.add_argument("--copies", action="store_true",
                        help="also each snapshot's copies in the job's copy_to destinations")
    parser.add_argument("--output", choices=["text", "json", "volumesnapshots"],
                        default="text",
                        help="a table (default), a JSON document, or (volumesnapshots) a "
                             "VolumeSnapshotContent and VolumeSnapshot for every completed "
                             "snapshot of a claim, for kubectl apply -f -; on standard output")


def narrowing(args: argparse.Namespace) -> Narrowing:
    return Narrowing(volume_id=args.volume, claim=args.claim, instance_id=args.instance)


def run(invocation: Invocation) -> Outcome:
    args, now = invocation.args, invocation.clock()
    narrow = narrowing(args)
    listings: list[tuple[JobListing, tzinfo]] = []
    for placed in job_contexts(invocation, args.account, args.region):
        context = placed.context
        try:
            listing = list_job(context, narrowing=narrow, with_copies=args.copies)
        except MolibackupError as exc:  # a JobError, or an AwsError
            listing = JobListing(context.job.name, context.job.region, errors=[str(exc)])
        listing.account = placed.target.account
        for error in listing.errors:
            context.log.error(f"job {listing.job}: {error}")
        listings.append((listing, context.job.options.policy.timezone))
    if not listings and (args.account is not None or args.region is not None):
        raise Refusal(f"{invocation.config.path}: no job has a target in "
                      f"{where(args.account, args.region)}: check --account and --region"
                      ", or the --job")
    if narrow.describe() != "every volume" and not any(
            listing.volumes for listing, _ in listings if not listing.errors) and not any(
            listing.errors for listing, _ in listings):
        jobs = ", ".join(listing.job for listing, _ in listings)
        raise Refusal(f"{invocation.config.path}: no job ({jobs}) selects or has "
                      f"snapshots of {narrow.describe()}: check the id, or the --job")
    if args.output == "volumesnapshots":
        text = as_volume_snapshots([listing for listing, _ in listings])
    else:
        text = (as_json(listings, now) if args.output == "json"
                else as_table(listings, with_copies=args.copies))
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return Outcome.of(not any(listing.errors for listing, _ in listings))


def where(account: str | None, region: str | None) -> str:
    return " and ".join(part for part in (account and f"account {account}",
                                          region and f"region {region}") if part)


def place(listing: JobListing) -> str:
    """The region, after its account in a job over several accounts."""
    return f"{listing.account}/{listing.region}" if listing.account else listing.region


def _time(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="seconds")


def verification(row: Row) -> dict[str, str] | None:
    """The evidence `molibackup verify` left on the snapshot, if any."""
    moment = row.snapshot.tags.get(VERIFIED_AT_TAG)
    return {"at": moment, "outcome": row.snapshot.tags.get(VERIFIED_TAG, "")} if moment else None


def rotation(row: Row) -> dict[str, Any]:
    return {"action": "delete" if row.decision.delete else "keep",
            "reasons": [str(reason) for reason in row.decision.reasons]}


def as_json(listings: Sequence[tuple[JobListing, tzinfo]], now: datetime) -> str:
    document = {"listed_at": now.isoformat(), "jobs": [{
        "job": listing.job,
        "account": listing.account,
        "region": listing.region,
        "errors": listing.errors,
        "claims": {claim: [{"volume_id": volume_id, "state": state}
                           for volume_id, state in sorted(carriers)]
                   for claim, carriers in sorted(listing.claims.items())},
        "volumes": [{
            "volume_id": volume.volume_id,
            "name": volume.name,
            "status": volume.status,
            "claim": volume.claim,
            "claim_state": volume.claim_state,
            "snapshots": [{
                "snapshot_id": row.snapshot.snapshot_id,
                "start_time": _time(row.snapshot.start_time, zone),
                "state": row.snapshot.state,
                "storage_tier": row.snapshot.storage_tier,
                "locked": row.locked,
                "size_gib": row.snapshot.size_gib,
                "name": row.snapshot.name,
                "claim": row.snapshot.claim_text,
                "run_id": row.snapshot.run_id,
                "rotation": rotation(row),
                "verification": verification(row),
                "copies": [{"region": c.region, "account": c.account,
                            "snapshot_id": c.snapshot_id, "state": c.state}
                           for c in row.copies],
            } for row in volume.rows],
        } for volume in listing.volumes],
    } for listing, zone in listings]}
    return json.dumps(document, indent=2)


def as_table(listings: Sequence[tuple[JobListing, tzinfo]], with_copies: bool) -> str:
    header = ("SNAPSHOT", "START", "STATE", "TIER", "LOCKED", "SIZE", "NAME", "VERIFIED",
              "NEXT ROTATION")
    blocks: list[str] = []
    for listing, zone in listings:
        if listing.errors:
            blocks.append(f"job {listing.job} ({place(listing)}): ERROR: "
                          + "; ".join(listing.errors))
        for claim, carriers in sorted(listing.claims.items()):
            blocks.append(f"job {listing.job} ({place(listing)}), claim {claim}: carried by "
                          + ", ".join(f"{volume_id} ({state})"
                                      for volume_id, state in sorted(carriers)))
        if not listing.volumes and not listing.errors:
            blocks.append(f"job {listing.job} ({place(listing)}): no volume, no snapshot")
        for volume in listing.volumes:
            claim = (f", claim {volume.claim}" if volume.claim else "") + (
                f", {volume.claim_state}" if volume.claim_state else "")
            title = (f"job {listing.job} ({place(listing)}), volume {volume.volume_id} "
                     f"({volume.name}{claim}): {volume.status}, {len(volume.rows)} snapshot(s)")
            rows = [(row.snapshot.snapshot_id, _time(row.snapshot.start_time, zone),
                     row.snapshot.state, row.snapshot.storage_tier,
                     "?" if row.locked is None else "yes" if row.locked else "no",
                     f"{row.snapshot.size_gib} GiB", row.snapshot.name[:48],
                     (verification(row) or {}).get("at", "-"),
                     ("DELETE: " if row.decision.delete else "keep: ")
                     + row.decision.reason) for row in volume.rows]
            lines = [title, *(table([header, *rows]) if rows else ["  (no snapshot yet)"])]
            if with_copies:
                for row in volume.rows:
                    lines += [f"    {row.snapshot.snapshot_id} copy in {c.region} "
                              f"(account {c.account}): {c.snapshot_id} {c.state}"
                              for c in row.copies]
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def as_volume_snapshots(listings: Sequence[JobListing]) -> str:
    """Every completed snapshot of the jobs' claims as a VolumeSnapshotContent and
    VolumeSnapshot pair in the claim's namespace, oldest first; the archive tier's are left
    out (the CSI driver cannot make a volume of them), with a line saying how many."""
    handoffs, archived = [], 0
    for listing in listings:
        for volume in listing.volumes:
            for row in volume.rows:
                snapshot = row.snapshot
                if snapshot.claim is None or not snapshot.completed:
                    continue
                if snapshot.storage_tier == "archive":
                    archived += 1
                    continue
                namespace, name = snapshot.claim
                handoffs.append(SnapshotHandoff(
                    job=listing.job, snapshot_id=snapshot.snapshot_id,
                    start_time=snapshot.start_time.astimezone(UTC).isoformat(),
                    size_gib=snapshot.size_gib, namespace=namespace, claim_name=name,
                    source_claim=f"{namespace}/{name}"))
    if archived:
        logger.info(f"{archived} snapshot(s) in the archive tier left out: restore them from "
                    "the archive first (molibackup restore brings one back)")
    handoffs.sort(key=lambda h: (h.job, h.source_claim, h.start_time, h.snapshot_id))
    logger.info(f"{len(handoffs)} snapshot(s) of {len({h.source_claim for h in handoffs})} "
                "claim(s) as VolumeSnapshots")
    return render_snapshots(handoffs).rstrip("\n") if handoffs else ""


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in rows]


COMMAND = Command(
    help="list each job's snapshots per volume, newest first, and what the next rotation "
         "would do with each (reads only)",
    description="Lists, for every volume each job selects and every volume that only has "
                "snapshots of the job left, the job's snapshots newest first: time (in the "
                "job's time zone), state, tier, lock, size, name, and what the next rotation "
                "would do (kept, with its reasons, or deleted).",
    add_arguments=add_arguments, run=run)
