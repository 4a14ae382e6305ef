"""Carrying out retention decisions: log why each snapshot stays, delete the others."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import TYPE_CHECKING

from molibackup import retention
from molibackup.aws.clients import paginate
from molibackup.ebs.job import JobContext
from molibackup.errors import AwsError
from molibackup.jobs import JobResult

if TYPE_CHECKING:
    from loguru import Logger
    from mypy_boto3_ec2 import EC2Client


class Deletion(StrEnum):
    DELETED = "deleted"
    WOULD_DELETE = "would delete"
    SKIPPED = "skipped"
    FAILED = "failed"


def describe(decision: retention.Decision, policy: retention.Policy) -> str:
    snap = decision.snapshot
    text = (f"snapshot {snap.snapshot_id} {snap.name} volume={snap.volume_id} "
            f"age={retention.format_age(decision.age_days)}")
    if policy.retention_days is not None:
        text += f" retention={policy.retention_days}d"
    return text


FAST_RESTORE = ("fast snapshot restore is enabled (EC2 refuses to delete it): disable it to "
                "let rotation delete the snapshot")
FSR_ENABLED = frozenset({"enabling", "optimizing", "enabled"})


def fast_restored(client: EC2Client, snapshot_ids: list[str], log: Logger) -> set[str]:
    """Which of these snapshots have fast snapshot restore enabled in some zone. Should the
    lookup fail, none: EC2's refusal to delete such a snapshot is then the skip."""
    found: set[str] = set()
    try:
        for start in range(0, len(snapshot_ids), 200):
            for raw in paginate(client, "describe_fast_snapshot_restores",
                                "FastSnapshotRestores", Filters=[
                                    {"Name": "snapshot-id",
                                     "Values": snapshot_ids[start:start + 200]}]):
                if raw.get("State") in FSR_ENABLED:
                    found.add(str(raw["SnapshotId"]))
    except AwsError as exc:
        log.warning(f"could not read fast snapshot restores ({exc}): deleting as usual")
    return found


def delete_one(client: EC2Client, snapshot_id: str, context: JobContext
               ) -> tuple[Deletion, str | None]:
    """What happened to the snapshot, and a detail for the log."""
    if context.stop.is_set():
        return Deletion.SKIPPED, "not deleted: the run was interrupted"
    if context.dry_run:
        return Deletion.WOULD_DELETE, None
    try:
        client.delete_snapshot(SnapshotId=snapshot_id)
    except AwsError as exc:
        code, text = exc.code, exc.aws_message
        if code == "InvalidSnapshot.NotFound":
            return Deletion.DELETED, " (already gone)"
        if code == "InvalidSnapshot.InUse":
            return Deletion.SKIPPED, f"in use by an AMI ({text})"
        if "lock" in code.lower() or "lock" in text.lower():
            return Deletion.SKIPPED, f"locked against deletion ({text})"
        if "fast snapshot restore" in text.lower():
            return Deletion.SKIPPED, FAST_RESTORE
        return Deletion.FAILED, str(exc)
    return Deletion.DELETED, None


def apply(client: EC2Client, decisions: list[retention.Decision], policy: retention.Policy,
          result: JobResult, context: JobContext, *, where: str = "") -> None:
    """Delete what the decisions say; `where` names a copy destination in the log."""
    log = context.log
    to_delete = []
    for decision in decisions:
        if decision.delete:
            to_delete.append(decision)
        else:
            result.kept += 1
            log.info(f"kept {describe(decision, policy)}{where} ({decision.reason})")
    if not to_delete:
        return
    rules = policy.describe()
    restorable = fast_restored(client, [d.snapshot.snapshot_id for d in to_delete], log)

    def delete(decision: retention.Decision
               ) -> tuple[retention.Decision, Deletion, str | None]:
        if decision.snapshot.snapshot_id in restorable:
            return decision, Deletion.SKIPPED, FAST_RESTORE
        return (decision, *delete_one(client, decision.snapshot.snapshot_id, context))

    with ThreadPoolExecutor(max_workers=context.settings.concurrency,
                            thread_name_prefix="delete") as pool:
        for decision, outcome, detail in pool.map(delete, to_delete):
            what = describe(decision, policy) + where
            why = f"{decision.reason}: {rules}"
            if outcome == Deletion.DELETED:
                result.deleted += 1
                log.info(f"deleted {what}{detail or ''} ({why})")
                if decision.snapshot.storage_tier == "archive":
                    log.warning(f"snapshot {decision.snapshot.snapshot_id} was in the archive "
                                "tier: EC2 bills an archived snapshot for at least 90 days")
            elif outcome == Deletion.WOULD_DELETE:
                result.deleted += 1
                log.info(f"dry run: would delete {what} ({why})")
            elif outcome == Deletion.SKIPPED:
                result.skipped += 1
                log.warning(f"skipped {what}: {detail}")
            else:
                message = f"could not delete {what}: {detail}"
                result.errors.append(message)
                log.error(message)
