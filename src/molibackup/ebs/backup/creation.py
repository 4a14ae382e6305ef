"""What a run creates: one snapshot per volume, or one multi-volume call per instance; the
dry run, the answer checks and the locks. The calls themselves are the Snapshotter's."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from molibackup.ebs.backup.snapshotter import InstanceRequest, Made, Snapshotter
from molibackup.ebs.job import JobContext
from molibackup.ebs.options import LockPolicy, Options
from molibackup.ebs.tags import (
    Volume,
    instance_snapshot_tags,
    snapshot_name,
    snapshot_tags,
    timestamp,
)
from molibackup.errors import AwsError

if TYPE_CHECKING:
    from loguru import Logger
    from mypy_boto3_ec2 import EC2Client


@dataclass
class Creation:
    volume: Volume
    made: Made | None = None
    error: str | None = None  # the snapshot was not created
    not_started: bool = False  # the run was interrupted before this volume's turn
    lock_error: str | None = None  # created, but not locked
    hook_error: str | None = None  # created (or skipped), but a hook failed

    @property
    def errors(self) -> list[str]:
        return [e for e in (self.error, self.lock_error, self.hook_error) if e]


class Creations:
    def __init__(self, options: Options, snapshotter: Snapshotter, context: JobContext) -> None:
        self.job_name = context.job.name
        self.options = options
        self.snapshotter = snapshotter
        self.context = context

    def run(self, volumes: list[Volume],
            attached: dict[str, list[str]] | None = None) -> list[Creation]:
        """Snapshots of `volumes`; with consistency: instance, `attached` holds every volume
        attached to each of their instances (to exclude those not selected)."""
        if not volumes:
            return []
        with ThreadPoolExecutor(max_workers=self.context.settings.concurrency,
                                thread_name_prefix="create") as pool:
            # map() yields in submission order, so the log reads volume by volume.
            if self.options.consistency != "instance":
                return list(pool.map(self.one_volume, volumes))
            groups: dict[str, list[Volume]] = defaultdict(list)
            for volume in volumes:
                groups[volume.instance_ids[0]].append(volume)
            work = [(instance, group, (attached or {}).get(instance, []))
                    for instance, group in sorted(groups.items())]
            return [c for batch in pool.map(lambda item: self.one_instance(*item), work)
                    for c in batch]

    # --- one volume at a time -----------------------------------------------------------

    def one_volume(self, volume: Volume, extra: Mapping[str, str] | None = None) -> Creation:
        log, context = self.context.log, self.context
        if context.stop.is_set():
            return Creation(volume, not_started=True)
        name = snapshot_name(volume, context.now)
        if context.dry_run:
            log.info(f"dry run: would create snapshot {name} of volume {volume.volume_id}")
            return Creation(volume)
        tags = snapshot_tags(volume, self.job_name, context.now, context.run_id,
                             self.options.copy_volume_tags, extra=extra)
        made, error = self.snapshotter.create(volume, name, tags)
        if error is not None:
            message = f"volume {volume.volume_id} ({volume.name}): snapshot not created: {error}"
            log.error(message + "; its older snapshots are all kept")
            return Creation(volume, error=message)
        assert made is not None
        log.info(f"created snapshot {made.snapshot_id} {name} of volume {volume.volume_id}")
        return self.locked(Creation(volume, made=made))

    # --- every volume of an instance at one moment --------------------------------------

    def one_instance(self, instance_id: str, group: list[Volume], attached: list[str],
                     extra: Mapping[str, str] | None = None) -> list[Creation]:
        log, context = self.context.log, self.context
        if context.stop.is_set():
            return [Creation(volume, not_started=True) for volume in group]
        selected = {volume.volume_id for volume in group}
        boot_selected = any(volume.boot for volume in group)
        boot_ids = {volume.volume_id for volume in group if volume.boot}
        excluded = tuple(sorted(v for v in attached if v not in selected and v not in boot_ids))
        shown = ", ".join(sorted(selected))
        if context.dry_run:
            log.info(f"dry run: would snapshot {len(group)} volume(s) of instance {instance_id} "
                     f"in one crash-consistent call: {shown}")
            return [Creation(volume) for volume in group]
        name = f"{instance_id}-{timestamp(context.now)}"
        request = InstanceRequest(
            instance_id=instance_id, exclude_boot=not boot_selected,
            exclude_data_volume_ids=excluded, description=name,
            tags=instance_snapshot_tags(instance_id, name, self.job_name, context.now,
                                        context.run_id,
                                        copy_volume_tags=self.options.copy_volume_tags,
                                        volumes=tuple(group), extra=extra),
            copy_volume_tags=self.options.copy_volume_tags)
        made, error = self.snapshotter.create_for_instance(request)
        by_volume = {m.volume_id: m for m in made or []}
        problem = error or self.check_answer(instance_id, group, by_volume)
        extras = [m for volume_id, m in by_volume.items() if volume_id not in selected]
        self.discard(extras, instance_id)
        if problem:
            message = (f"instance {instance_id}: the crash-consistent snapshot of {shown} "
                       f"failed: {problem}")
            log.error(message + "; the older snapshots of these volumes are all kept")
            return [Creation(volume, made=by_volume.get(volume.volume_id),
                             error=message if i == 0 else f"{message} (volume "
                             f"{volume.volume_id})") for i, volume in enumerate(group)]
        creations = []
        for volume in group:
            snapshot = by_volume[volume.volume_id]
            log.info(f"created snapshot {snapshot.snapshot_id} {name} of volume "
                     f"{volume.volume_id} (with every selected volume of {instance_id})")
            creations.append(self.locked(Creation(volume, made=snapshot)))
        return creations

    @staticmethod
    def check_answer(instance_id: str, group: list[Volume], by_volume: dict[str, Made]
                     ) -> str | None:
        missing = [v.volume_id for v in group if v.volume_id not in by_volume]
        if missing:
            return f"EC2 made no snapshot of {', '.join(missing)}"
        failed = [f"{m.snapshot_id} ({m.volume_id})" for v in group
                  if (m := by_volume[v.volume_id]).state == "error"]
        if failed:
            return f"snapshot(s) in error state: {', '.join(failed)}"
        return None

    def discard(self, extras: list[Made], instance_id: str) -> None:
        """Snapshots this run made of volumes the job does not select: not the job's to keep."""
        for snapshot in extras:
            try:
                self.snapshotter.clients.main.delete_snapshot(SnapshotId=snapshot.snapshot_id)
                self.context.log.warning(
                    f"instance {instance_id}: EC2 also snapshotted volume {snapshot.volume_id}, "
                    f"which the job does not select; deleted that snapshot "
                    f"{snapshot.snapshot_id}")
            except AwsError as exc:
                self.context.log.warning(f"instance {instance_id}: could not delete snapshot "
                                         f"{snapshot.snapshot_id} of unselected volume "
                                         f"{snapshot.volume_id}: {exc}")

    # --- locks --------------------------------------------------------------------------

    def locked(self, creation: Creation) -> Creation:
        if self.options.lock and creation.made:
            creation.lock_error = lock_snapshot(self.snapshotter.clients.main,
                                                creation.made.snapshot_id, self.options.lock,
                                                self.context.log)
        return creation


def lock_snapshot(client: EC2Client, snapshot_id: str, lock: LockPolicy, log: Logger
                  ) -> str | None:
    """Lock a new snapshot; an error message when that failed (the snapshot stays)."""
    try:
        client.lock_snapshot(SnapshotId=snapshot_id, LockMode=lock.mode,  # type: ignore[arg-type]
                             LockDuration=lock.duration_days)
    except AwsError as exc:
        message = f"snapshot {snapshot_id} created but not locked: {exc}"
        log.error(message)
        return message
    log.info(f"locked snapshot {snapshot_id} in {lock.mode} mode for {lock.duration_days} "
             "day(s)")
    return None
