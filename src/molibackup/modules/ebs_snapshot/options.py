"""The module's own options, parsed from a validated job into a frozen dataclass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from molibackup import retention
from molibackup.config import JobConfig
from molibackup.errors import ConfigError


def parse_tag(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key, value


def merge_tags(
    job: JobConfig, single_option: str, map_option: str, problems: list[str]
) -> dict[str, str]:
    """Combine the `"K=V"` form and the map form of a tag selector; all tags must match."""
    tags = dict(job.options.get(map_option) or {})
    if single_option in job.options:
        key, value = parse_tag(job.options[single_option])
        if key in tags and tags[key] != value:
            problems.append(job.problem(
                single_option, f"tag {key!r} is {value!r} here but {tags[key]!r} in "
                f"{map_option}: no resource can match both"))
        tags[key] = value
    return tags


@dataclass(frozen=True)
class LockPolicy:
    mode: str
    duration_days: int


@dataclass(frozen=True)
class Options:
    aws_region: str
    policy: retention.Policy
    instance_id: str | None
    instance_tags: Mapping[str, str]
    volume_tags: Mapping[str, str]
    allow_empty: bool
    copy_volume_tags: bool
    lock: LockPolicy | None

    @classmethod
    def from_job(cls, job: JobConfig) -> Options:
        """The job's options, already validated by the schema; raises ConfigError for the
        contradictions a schema cannot express."""
        problems: list[str] = []
        raw = job.options
        instance_tags = merge_tags(job, "instance_tag", "instance_tags", problems)
        volume_tags = merge_tags(job, "volume_tag", "volume_tags", problems)
        if problems:
            raise ConfigError(problems)
        lock = None
        if "lock_mode" in raw:
            lock = LockPolicy(mode=raw["lock_mode"], duration_days=int(raw["lock_duration"]))
        return cls(
            aws_region=raw["aws_region"],
            policy=retention.Policy(retention_days=int(raw["retention"]),
                                    min_keep=int(raw["min_keep"])),
            instance_id=raw.get("instance_id"),
            instance_tags=instance_tags,
            volume_tags=volume_tags,
            allow_empty=bool(raw["allow_empty"]),
            copy_volume_tags=bool(raw["copy_volume_tags"]),
            lock=lock,
        )


