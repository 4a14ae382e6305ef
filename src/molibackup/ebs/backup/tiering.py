"""The archive tier: old snapshots the rules keep for long move to cheaper storage.

EC2's terms, which the docs repeat: an archived snapshot is billed for at least 90 days
in the archive (deleting it earlier is billed as if it had stayed), takes up to 72 hours to
restore, and is stored as a full snapshot. Each volume's newest snapshots (those `min_keep`
and `keep_last` keep) stay in the standard tier, ready for a quick restore.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from molibackup import retention
from molibackup.ebs.job import JobContext
from molibackup.errors import AwsError
from molibackup.jobs import JobResult

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

ARCHIVE = "archive"
ALREADY = "already archiving"


def to_archive(decisions: list[retention.Decision], archive_after_days: int,
               now: datetime) -> list[retention.Decision]:
    """Kept, completed, standard-tier snapshots older than the limit, newest ones excepted."""
    cutoff = now - timedelta(days=archive_after_days)
    chosen = []
    for decision in decisions:
        snap = decision.snapshot
        if (decision.delete or snap.state != retention.COMPLETED
                or snap.storage_tier == ARCHIVE or snap.start_time >= cutoff):
            continue
        if any(reason.rule in retention.NEWEST_RULES for reason in decision.reasons):
            continue
        chosen.append(decision)
    return chosen


def archive(client: EC2Client, decisions: list[retention.Decision], archive_after_days: int,
            result: JobResult, context: JobContext) -> None:
    chosen = to_archive(decisions, archive_after_days, context.now)
    if not chosen:
        return
    log = context.log

    def move(decision: retention.Decision) -> tuple[retention.Decision, str | None]:
        if context.stop.is_set() or context.dry_run:
            return decision, None
        try:
            client.modify_snapshot_tier(SnapshotId=decision.snapshot.snapshot_id,
                                        StorageTier="archive")
        except AwsError as exc:
            if exc.code == "IncorrectState" and "archiv" in exc.aws_message.lower():
                return decision, ALREADY  # moving to the archive since an earlier run
            return decision, str(exc)
        return decision, None

    with ThreadPoolExecutor(max_workers=context.settings.concurrency,
                            thread_name_prefix="archive") as pool:
        for decision, error in pool.map(move, chosen):
            snap = decision.snapshot
            what = (f"snapshot {snap.snapshot_id} {snap.name} volume={snap.volume_id} "
                    f"age={retention.format_age(decision.age_days)}")
            if context.stop.is_set():
                continue
            if error == ALREADY:
                log.info(f"{what} is already being archived")
            elif error:
                message = f"could not archive {what}: {error}"
                result.errors.append(message)
                log.error(message)
            elif context.dry_run:
                result.archived += 1
                log.info(f"dry run: would archive {what} (older than archive_after "
                         f"{archive_after_days}d)")
            else:
                result.archived += 1
                log.info(f"archiving {what} (older than archive_after {archive_after_days}d)")
