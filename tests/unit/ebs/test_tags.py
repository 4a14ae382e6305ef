"""How snapshots are tagged: ours first, within EC2's 50, never overridden."""

from __future__ import annotations

from datetime import UTC, datetime

from molibackup.ebs.tags import (
    CREATED_BY,
    JOB_TAG,
    MAX_TAGS,
    VOLUME_TAG,
    Claim,
    Volume,
    instance_snapshot_tags,
    is_owned_by,
    snapshot_name,
    snapshot_tags,
    tag_list,
)

NOW = datetime(2026, 11, 28, 4, 0, 3, tzinfo=UTC)


def as_dict(tags: list[dict[str, str]] | list) -> dict[str, str]:  # type: ignore[type-arg]
    return {tag["Key"]: tag["Value"] for tag in tags}


def volume(**tags: str) -> Volume:
    return Volume("vol-1", "web-data", ("i-1",), tags)


def test_a_snapshot_is_named_after_its_volume_and_the_time() -> None:
    assert snapshot_name(volume(), NOW) == "web-data-2026-11-28T04:00:03Z"


def test_a_long_name_is_cut_to_fit_the_description_limit() -> None:
    long = Volume("vol-1", "x" * 300, (), {})
    assert len(snapshot_name(long, NOW)) == 255
    assert snapshot_name(long, NOW).endswith("-2026-11-28T04:00:03Z")


def test_ownership_tags_come_first_and_volume_tags_never_override_them() -> None:
    tags = as_dict(snapshot_tags(volume(**{JOB_TAG: "other", "Team": "web"}), "job", NOW,
                                 "run-1", copy_volume_tags=True))
    assert tags[JOB_TAG] == "job"
    assert tags[CREATED_BY[0]] == CREATED_BY[1]
    assert tags[VOLUME_TAG] == "vol-1"
    assert tags["Team"] == "web"


def test_aws_tags_of_the_volume_are_not_copied() -> None:
    tags = as_dict(snapshot_tags(volume(**{"aws:cloudformation:stack-name": "s"}), "job", NOW,
                                 "run-1", copy_volume_tags=True))
    assert not any(key.startswith("aws:") for key in tags)


def test_volume_tags_are_copied_only_when_asked() -> None:
    tags = as_dict(snapshot_tags(volume(Team="web"), "job", NOW, "run-1",
                                 copy_volume_tags=False))
    assert "Team" not in tags


def test_a_claims_snapshot_carries_the_claim() -> None:
    claimed = Volume("vol-1", "payments/db-0", (), {}, claim=Claim("payments", "db-0", "pv-1"))
    tags = as_dict(snapshot_tags(claimed, "job", NOW, "run-1", copy_volume_tags=False))
    assert (tags["molibackup:pvc-namespace"], tags["molibackup:pvc-name"],
            tags["molibackup:pv-name"]) == ("payments", "db-0", "pv-1")


def test_never_more_than_fifty_tags_and_ours_are_kept() -> None:
    many = {f"k{index}": "v" for index in range(80)}
    tags = tag_list({"Name": "n", JOB_TAG: "job"}, many)
    assert len(tags) == MAX_TAGS
    assert as_dict(tags)[JOB_TAG] == "job"


def test_an_instance_snapshot_leaves_its_name_to_the_volume_when_tags_are_copied() -> None:
    with_copy = as_dict(instance_snapshot_tags("i-1", "i-1-t", "job", NOW, "run",
                                               copy_volume_tags=True))
    without = as_dict(instance_snapshot_tags("i-1", "i-1-t", "job", NOW, "run",
                                             copy_volume_tags=False))
    assert "Name" not in with_copy
    assert without["Name"] == "i-1-t"


def test_a_snapshot_belongs_to_a_job_only_with_both_tags() -> None:
    assert is_owned_by({CREATED_BY[0]: CREATED_BY[1], JOB_TAG: "a"}, "a")
    assert not is_owned_by({JOB_TAG: "a"}, "a")
    assert not is_owned_by({CREATED_BY[0]: CREATED_BY[1], JOB_TAG: "b"}, "a")
