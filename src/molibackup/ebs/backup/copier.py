"""Copies outside the blast radius: the job's snapshots in other regions and accounts.

Each run copies, to each destination, every completed snapshot of the job that has no copy
there yet and that the destination's rules would keep, newest first; then rotates the
destination's copies by its own rules. A copy's age is its source's (carried in a tag).
EC2 allows only so many copies in flight per destination region: past that, the rest wait
for the next run, which is not a failure.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3

from molibackup import retention
from molibackup.aws.clients import assume_role, ec2_client, paginate, session_name_for
from molibackup.ebs.backup import rotation
from molibackup.ebs.job import JobContext
from molibackup.ebs.options import CopyTarget
from molibackup.ebs.tags import (
    CREATED_BY,
    JOB_TAG,
    MAX_DESCRIPTION,
    OWN_PREFIX,
    RESTORE_KEYS,
    RESTORE_TAG,
    SHARE_TAG_PREFIX,
    SOURCE_ACCOUNT_TAG,
    SOURCE_REGION_TAG,
    SOURCE_SNAPSHOT_TAG,
    SOURCE_TIME_TAG,
    VOLUME_TAG,
    tag_dict,
    tag_list,
    timestamp,
)
from molibackup.errors import AwsError, JobError
from molibackup.jobs import JobResult

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import TagTypeDef

#: EC2's quota of concurrent snapshot copies per destination region.
COPIES_IN_FLIGHT = 20
COPY_WORKERS = 5
LIMIT_CODES = frozenset({"ResourceLimitExceeded", "SnapshotCopyLimitExceeded",
                         "ConcurrentSnapshotLimitExceeded"})


@dataclass
class Source:
    """Where the job's own snapshots are."""

    session: boto3.Session
    client: EC2Client
    region: str
    account: str


@dataclass
class Outcome:
    copied: list[tuple[str, retention.Snapshot]] = field(default_factory=list)  # copy, source
    failed_volumes: set[str] = field(default_factory=set)
    limited: bool = False


def copy_everywhere(source: Source, snapshots: list[retention.Snapshot], context: JobContext,
                    result: JobResult, targets: tuple[CopyTarget, ...]) -> None:
    for target in targets:
        if context.stop.is_set():
            return
        try:
            Destination(source, target, context, result).run(snapshots)
        except (JobError, AwsError) as exc:
            message = f"copies to {target.describe()}: {exc}"
            context.log.error(message)
            result.errors.append(message)


def copies_wanted(sources: list[retention.Snapshot], existing: list[retention.Snapshot],
                  copied: set[str], now: datetime, policy: retention.Policy
                  ) -> tuple[list[retention.Snapshot], list[retention.Snapshot]]:
    """The completed sources without a copy in a destination that its rules would keep,
    newest first; and those its rules would not keep (older than they keep)."""
    candidates = [s for s in sources
                  if s.state == retention.COMPLETED and s.snapshot_id not in copied]
    if not candidates:
        return [], []
    decisions = retention.plan([*existing, *candidates], now, policy)
    keep = {d.snapshot.snapshot_id for d in decisions if not d.delete}
    wanted = sorted((s for s in candidates if s.snapshot_id in keep),
                    key=lambda s: s.start_time, reverse=True)
    return wanted, [s for s in candidates if s.snapshot_id not in keep]


class Destination:
    def __init__(self, source: Source, target: CopyTarget, context: JobContext,
                 result: JobResult) -> None:
        self.source = source
        self.target = target
        self.context = context
        self.result = result
        self.log = context.log
        self.label = target.describe()
        session = source.session
        if target.role_arn:
            session = assume_role(source.session, target.role_arn, target.external_id,
                                  session_name_for(context.job.name, "molibackup-copy"))
        self.client = ec2_client(session, target.region, context.settings, stats=result.stats)
        self.copy_client = ec2_client(session, target.region, context.settings, attempts=1,
                                      stats=result.stats)
        self.shared = target.account is not None and target.account != source.account
        self.share_tag = f"{SHARE_TAG_PREFIX}{target.account}"

    def run(self, sources: list[retention.Snapshot]) -> None:
        copies = self.copies()
        if self.shared:
            self.unshare_copied(copies)
        copied_sources = {copy_source for copy_source, _ in copies.values()}
        existing = [record for _, record in copies.values()]
        wanted = self.wanted(sources, existing, copied_sources)
        in_flight = sum(r.state == "pending" for r in existing)
        outcome = self.copy(wanted, max(0, COPIES_IN_FLIGHT - in_flight))
        self.result.copied += len(outcome.copied)
        if self.shared and outcome.copied:
            self.unshare_copied(self.copies())
        new = [retention.Snapshot(copy_id, snap.volume_id, snap.start_time, "pending", snap.name)
               for copy_id, snap in outcome.copied]
        if self.context.stop.is_set():
            return
        decisions = retention.plan([*existing, *new], self.context.now, self.target.policy,
                                   protected_volumes=frozenset(outcome.failed_volumes))
        rotation.apply(self.client, decisions, self.target.policy, self.result, self.context,
                       where=f" in {self.label}")

    def copies(self) -> dict[str, tuple[str, retention.Snapshot]]:
        """The job's copies in this destination: id -> (source id, record dated by source)."""
        found = {}
        for raw in paginate(self.client, "describe_snapshots", "Snapshots", OwnerIds=["self"],
                            Filters=[{"Name": f"tag:{CREATED_BY[0]}", "Values": [CREATED_BY[1]]},
                                     {"Name": f"tag:{JOB_TAG}",
                                      "Values": [self.context.job.name]}]):
            tags = tag_dict(raw.get("Tags"))
            if (tags.get(SOURCE_REGION_TAG) != self.source.region
                    or tags.get(SOURCE_ACCOUNT_TAG) != self.source.account
                    or not tags.get(SOURCE_SNAPSHOT_TAG)):
                continue
            try:
                when = datetime.fromisoformat(tags[SOURCE_TIME_TAG].replace("Z", "+00:00"))
            except (KeyError, ValueError):
                when = raw["StartTime"]
            found[raw["SnapshotId"]] = (tags[SOURCE_SNAPSHOT_TAG], retention.Snapshot(
                raw["SnapshotId"], tags.get(VOLUME_TAG) or "unknown", when.astimezone(UTC),
                raw.get("State", "completed"), tags.get("Name", "")))
        return found

    def wanted(self, sources: list[retention.Snapshot], existing: list[retention.Snapshot],
               copied: set[str]) -> list[retention.Snapshot]:
        wanted, too_old = copies_wanted(sources, existing, copied, self.context.now,
                                        self.target.policy)
        for source in too_old:
            self.log.info(f"snapshot {source.snapshot_id} not copied to {self.label}: its "
                          "rules would not keep it (it is older than they keep)")
        return wanted

    def copy(self, wanted: list[retention.Snapshot], slots: int) -> Outcome:
        outcome = Outcome()
        if not wanted:
            return outcome
        if self.context.dry_run:
            for snap in wanted:
                self.log.info(f"dry run: would copy snapshot {snap.snapshot_id} {snap.name} "
                              f"(volume {snap.volume_id}) to {self.label}")
            self.result.copied += len(wanted)
            return outcome
        batch, waiting = wanted[:slots], wanted[slots:]
        if waiting:
            self.log.info(f"{len(waiting)} copy(ies) to {self.label} wait for the next run: "
                          f"EC2 allows {COPIES_IN_FLIGHT} copies in flight per region")
        tags = self.source_tags([s.snapshot_id for s in batch])
        with ThreadPoolExecutor(max_workers=COPY_WORKERS, thread_name_prefix="copy") as pool:
            results = list(pool.map(lambda s: self.copy_one(s, tags.get(s.snapshot_id, {}),
                                                            outcome), batch))
        for snap, (copy_id, error) in zip(batch, results, strict=True):
            if copy_id:
                outcome.copied.append((copy_id, snap))
                self.log.info(f"copying snapshot {snap.snapshot_id} {snap.name} to "
                              f"{self.label} as {copy_id}")
            elif error:
                message = f"snapshot {snap.snapshot_id} not copied to {self.label}: {error}"
                self.result.errors.append(message)
                self.log.error(message + " (it is tried again on the next run)")
        if outcome.limited:
            self.log.warning(f"EC2's limit of copies in flight to {self.label} was reached: "
                             "the rest are copied on the next run")
        return outcome

    def copy_one(self, snap: retention.Snapshot, source_tags: dict[str, str], outcome: Outcome
                 ) -> tuple[str | None, str | None]:
        if self.context.stop.is_set() or outcome.limited:
            return None, None
        if snap.volume_id in outcome.failed_volumes:
            return None, None  # a volume's copies never run ahead of its newest snapshot
        if self.shared and not self.share(snap.snapshot_id, "add"):
            outcome.failed_volumes.add(snap.volume_id)
            return None, "the source snapshot could not be shared with the destination account"
        copy_id = None
        try:
            kwargs: dict[str, Any] = {
                "SourceRegion": self.source.region, "SourceSnapshotId": snap.snapshot_id,
                "Description": f"{snap.name} (copy of {snap.snapshot_id} from "
                               f"{self.source.region})"[:MAX_DESCRIPTION],
                "TagSpecifications": [{"ResourceType": "snapshot",
                                       "Tags": self.copy_tags(snap, source_tags)}]}
            if self.target.encrypted:
                kwargs["Encrypted"] = True
            if self.target.kms_key_id:
                kwargs["KmsKeyId"] = self.target.kms_key_id
            response = self.copy_client.copy_snapshot(**kwargs)
            copy_id = str(response["SnapshotId"])
            return copy_id, None
        except AwsError as exc:
            if exc.code in LIMIT_CODES:
                outcome.limited = True
                return None, None
            outcome.failed_volumes.add(snap.volume_id)
            return None, self.explain_copy_error(exc)
        finally:
            # A started copy keeps its source shared until it has completed (see
            # unshare_copied); a copy that did not start never leaves a share behind.
            if self.shared and copy_id is None:
                self.share(snap.snapshot_id, "remove")

    def unshare_copied(self, copies: dict[str, tuple[str, retention.Snapshot]]) -> None:
        """Stop sharing the sources whose copy in this account has completed (or failed,
        or is gone): a share lasts as long as its copy is in progress, never longer."""
        assert self.target.account is not None
        in_progress = {source for source, record in copies.values()
                       if record.state == "pending"}
        shared = paginate(self.source.client, "describe_snapshots", "Snapshots",
                          OwnerIds=["self"], Filters=[
                              {"Name": "tag-key", "Values": [self.share_tag]},
                              {"Name": f"tag:{JOB_TAG}", "Values": [self.context.job.name]}])
        for raw in shared:
            if raw["SnapshotId"] not in in_progress:
                self.share(raw["SnapshotId"], "remove")

    def explain_copy_error(self, exc: AwsError) -> str:
        text = str(exc)
        lowered = text.lower()
        if "kms" in lowered or ("key" in lowered and "encrypt" in lowered):
            return (f"{text}: the source is encrypted with a KMS key the destination "
                    f"{'account' if self.shared else 'region'} cannot use; share a customer "
                    "managed key with it (snapshots encrypted with the default aws/ebs key "
                    "cannot be copied to another account)")
        return text

    def share(self, snapshot_id: str, operation: str) -> bool:
        """Share the source with the destination account for the copy, or stop sharing it;
        a share left behind is an error the operator must see."""
        assert self.target.account is not None
        client = self.source.client
        try:
            # The tag says which of the job's snapshots are shared, so that a later run finds
            # them and removes the share once the copy has completed.
            if operation == "add":
                client.create_tags(Resources=[snapshot_id],
                                   Tags=[{"Key": self.share_tag, "Value": "copying"}])
            client.modify_snapshot_attribute(
                SnapshotId=snapshot_id, Attribute="createVolumePermission",
                OperationType=operation,  # type: ignore[arg-type]
                UserIds=[self.target.account])
            if operation == "remove":
                client.delete_tags(Resources=[snapshot_id], Tags=[{"Key": self.share_tag}])
        except AwsError as exc:
            message = (f"snapshot {snapshot_id}: could not {operation} the share with account "
                       f"{self.target.account}: {exc}")
            if operation == "remove":
                message += " (the snapshot is still shared: remove the share by hand)"
            self.result.errors.append(message)
            self.log.error(message)
            return False
        return True

    def source_tags(self, snapshot_ids: list[str]) -> dict[str, dict[str, str]]:
        if not snapshot_ids:
            return {}
        answer = self.source.client.describe_snapshots(SnapshotIds=snapshot_ids)
        return {raw["SnapshotId"]: tag_dict(raw.get("Tags")) for raw in answer["Snapshots"]}

    def copy_tags(self, snap: retention.Snapshot, source_tags: dict[str, str]
                  ) -> list[TagTypeDef]:
        # What a restore from the copy needs travels with it: the volume's shape, its claim,
        # the run and instance it was made in.
        restore = {key: value for key, value in source_tags.items()
                   if key in RESTORE_KEYS or key.startswith(RESTORE_TAG)}
        ours = {"Name": snap.name or snap.snapshot_id, CREATED_BY[0]: CREATED_BY[1],
                JOB_TAG: self.context.job.name, VOLUME_TAG: snap.volume_id,
                SOURCE_SNAPSHOT_TAG: snap.snapshot_id, SOURCE_REGION_TAG: self.source.region,
                SOURCE_ACCOUNT_TAG: self.source.account,
                SOURCE_TIME_TAG: timestamp(snap.start_time), **restore}
        return tag_list(ours, source_tags if self.target.copy_tags else None,
                        skip_prefixes=("aws:", OWN_PREFIX))
