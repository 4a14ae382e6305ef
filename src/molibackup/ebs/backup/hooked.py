"""Snapshots bracketed by hooks: per instance, pre -> the snapshots -> post (see hooks.py)."""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from molibackup.ebs.backup.creation import Creation, Creations
from molibackup.ebs.backup.hooks import APPLICATION, CRASH, HookRunner
from molibackup.ebs.hook_options import HookOptions
from molibackup.ebs.tags import CONSISTENCY_TAG, FREEZE_TAG, Volume
from molibackup.errors import AwsError

if TYPE_CHECKING:
    from loguru import Logger


class HookedCreations:
    """What Creations does, with each instance's snapshots between its pre and post."""

    def __init__(self, creations: Creations, hooks: HookOptions, runner: HookRunner) -> None:
        self.creations = creations
        self.hooks = hooks
        self.runner = runner
        self.context = creations.context
        self.log: Logger = creations.context.log

    def run(self, volumes: list[Volume], attached: dict[str, list[str]] | None = None
            ) -> list[Creation]:
        if not volumes:
            return []
        groups: dict[str, list[Volume]] = defaultdict(list)
        for volume in volumes:
            groups[volume.instance_ids[0] if volume.instance_ids else ""].append(volume)
        unattached = groups.pop("", [])
        plain = [self.creations.one_volume(volume) for volume in unattached]
        instances = sorted(groups)
        if self.context.dry_run:
            return plain + [c for instance in instances for c in self.dry_run(instance,
                                                                             groups[instance])]
        if self.context.stop.is_set():
            return plain + [Creation(v, not_started=True) for i in instances for v in groups[i]]
        pre = self.runner.send(self.hooks.pre, instances, "pre") if self.hooks.pre else {}
        with ThreadPoolExecutor(max_workers=self.context.settings.concurrency,
                                thread_name_prefix="hooked") as pool:
            done = pool.map(lambda i: self.one_instance(i, groups[i], (attached or {}).get(
                i, []), pre.get(i)), instances)
            return plain + [c for batch in done for c in batch]

    def dry_run(self, instance: str, group: list[Volume]) -> list[Creation]:
        steps = [f"pre hook ({self.hooks.pre.describe()})"] if self.hooks.pre else []
        steps.append(f"snapshot {len(group)} volume(s)")
        steps += [f"post hook ({self.hooks.post.describe()})"] if self.hooks.post else []
        self.log.info(f"dry run: would run on instance {instance}: {', then '.join(steps)}; "
                      "no command sent")
        return [Creation(volume) for volume in group]

    def one_instance(self, instance: str, group: list[Volume], attached: list[str],
                     pre_command: str | None) -> list[Creation]:
        consistency, problem, skip = APPLICATION, None, False
        if self.hooks.pre is not None:
            invocation = self.runner.wait(pre_command, instance, "pre", self.context.stop)
            if not invocation.succeeded:
                problem = (f"instance {instance}: pre hook {invocation.status}"
                           + (f": {invocation.last_line}" if invocation.last_line else ""))
                skip = (self.hooks.on_pre_failure == "skip"
                        or invocation.status == "Interrupted")
                consistency = CRASH
                self.log.error(problem + ("; no snapshot of it (on_pre_failure: skip), its "
                                          "older snapshots are all kept" if skip else
                                          "; snapshotting it crash-consistent"))
        pre_end = time.monotonic()
        creations = ([] if skip else self.snapshot(instance, group, attached, consistency))
        post_start = time.monotonic()
        post_due, post_command = self.post(instance, pre_command)
        window_ms = round((post_start - pre_end) * 1000)
        made = [c.made.snapshot_id for c in creations if c.made]
        if self.hooks.pre is not None and pre_command is not None:
            self.log.info(f"instance {instance}: {consistency}-consistent, frozen for "
                          f"{window_ms} ms (pre's end to post's start)")
            self.tag_window(instance, made, window_ms)
        post_problem = self.post_outcome(instance, post_due, post_command)
        if skip:
            creations = [Creation(volume, error=f"{problem} (volume {volume.volume_id})")
                         for volume in group]
        elif creations and (problem or post_problem):
            creations[0].hook_error = "; ".join(p for p in (problem, post_problem) if p)
        elif post_problem:
            creations = [Creation(group[0], hook_error=post_problem)]
        return creations

    def snapshot(self, instance: str, group: list[Volume], attached: list[str],
                 consistency: str) -> list[Creation]:
        extra = {CONSISTENCY_TAG: consistency}
        if self.creations.options.consistency == "instance":
            return self.creations.one_instance(instance, group, attached, extra)
        with ThreadPoolExecutor(max_workers=len(group), thread_name_prefix="volume") as pool:
            return list(pool.map(lambda v: self.creations.one_volume(v, extra), group))

    def post(self, instance: str, pre_command: str | None) -> tuple[bool, str | None]:
        """(whether post was due, its command id): post goes out whenever pre was sent, or
        may have been (or when there is no pre)."""
        if self.hooks.post is None or (self.hooks.pre is not None and pre_command is None):
            return False, None
        return True, self.runner.send(self.hooks.post, [instance], "post")[instance]

    def post_outcome(self, instance: str, due: bool, command: str | None) -> str | None:
        if not due:
            return None
        invocation = self.runner.wait(command, instance, "post")
        if invocation.succeeded:
            return None
        guard = (f" (the guard thaws {', '.join(self.hooks.freeze)} {self.hooks.max_freeze} s "
                 "after the freeze)" if self.hooks.freeze else "")
        problem = (f"instance {instance}: post hook {invocation.status}"
                   + (f": {invocation.last_line}" if invocation.last_line else "") + guard)
        self.log.error(problem)
        return problem

    def tag_window(self, instance: str, snapshot_ids: list[str], window_ms: int) -> None:
        if not snapshot_ids:
            return
        try:
            self.creations.snapshotter.clients.main.create_tags(
                Resources=snapshot_ids, Tags=[{"Key": FREEZE_TAG, "Value": str(window_ms)}])
        except AwsError as exc:
            self.log.warning(f"instance {instance}: the freeze window was not tagged: {exc}")
