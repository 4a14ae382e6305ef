"""What a restore decides on plain data: which snapshot, which run, which id, the recorded
shape of a volume, and the manifests of a claim."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import kubernetes_validate
import pytest

from molibackup.ebs.catalog import SnapshotInfo
from molibackup.ebs.restore import choosing
from molibackup.ebs.restore.manifests import (
    ClaimRestore,
    persistent_volume,
    persistent_volume_claim,
)
from molibackup.ebs.tags import VolumeShape
from molibackup.ebs.volumes import VolumeSpec, free_device

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def snap(snapshot_id: str, hours_ago: float, state: str = "completed", *, run: str = "r1",
         instance: str = "i-1", volume: str = "vol-1") -> SnapshotInfo:
    return SnapshotInfo(snapshot_id, volume, NOW - timedelta(hours=hours_ago), state,
                        "standard", 8, snapshot_id, False,
                        {"molibackup:run-id": run, "molibackup:instance-id": instance})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("36h", NOW - timedelta(hours=36), id="a-duration-ago"),
        pytest.param("2026-11-30T04:00:00Z", datetime(2026, 11, 30, 4, tzinfo=UTC), id="utc"),
        pytest.param("2026-11-30T05:00:00", datetime(2026, 11, 30, 4, tzinfo=UTC),
                     id="no-offset-is-the-jobs-zone"),
    ],
)
def test_at_is_a_time_or_a_duration_ago(text: str, expected: datetime) -> None:
    assert choosing.parse_moment(text, NOW, ZoneInfo("Europe/Paris")) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("2999-01-01T00:00:00Z", "is in the future"), ("yesterday", "neither an ISO 8601 time")])
def test_at_refuses_the_future_and_nonsense(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choosing.parse_moment(text, NOW, UTC)


def test_the_newest_completed_snapshot_is_chosen_never_a_pending_one() -> None:
    history = [snap("pending", 1, "pending"), snap("new", 5), snap("old", 50)]
    assert choosing.newest_completed(history).snapshot_id == "new"  # type: ignore[union-attr]
    at = NOW - timedelta(hours=10)
    assert choosing.newest_completed(history, at).snapshot_id == "old"  # type: ignore[union-attr]
    assert choosing.newest_completed(history, NOW - timedelta(days=9)) is None


def test_an_instance_comes_back_from_its_newest_run_whose_every_snapshot_completed() -> None:
    history = [snap("a2", 1, "error", run="r2"), snap("b2", 1, run="r2", volume="vol-2"),
               snap("a1", 25, run="r1"), snap("b1", 25, run="r1", volume="vol-2"),
               snap("other", 2, run="r3", instance="i-9")]
    runs = choosing.runs_of_instance(history, "i-1")
    assert [run.run_id for run in runs] == ["r2", "r1"]
    chosen = choosing.newest_complete_run(runs)
    assert chosen is not None
    assert (chosen.run_id, [s.snapshot_id for s in chosen.snapshots]) == ("r1", ["a1", "b1"])


def test_the_same_restore_has_the_same_id_and_another_claim_another() -> None:
    first = choosing.restore_id("db", ["snap-b", "snap-a"], "us-west-2a", None, "us-west-2")
    assert first == choosing.restore_id("db", ["snap-a", "snap-b"], "us-west-2a", None,
                                        "us-west-2")
    assert first != choosing.restore_id("db", ["snap-a", "snap-b"], "us-west-2a", "ns/x",
                                        "us-west-2")
    assert first != choosing.restore_id("db", ["snap-a", "snap-b"], "us-west-2b", None,
                                        "us-west-2")


def test_a_volumes_shape_survives_its_tag() -> None:
    shape = VolumeShape("us-west-2a", "io2", 100, 16000, None,
                        (("i-1", "/dev/sdf"), ("i-2", "/dev/sdg")))
    assert VolumeShape.from_tag(shape.tag_value()) == shape
    assert shape.device_on("i-2") == "/dev/sdg"


def test_a_shape_tag_stays_within_ec2s_256_characters() -> None:
    many = tuple((f"i-{index:017x}", f"/dev/sd{chr(102 + index)}") for index in range(10))
    assert len(VolumeShape("us-west-2a", "gp3", 1, 3000, 125, many).tag_value()) <= 256


def test_iops_and_throughput_go_only_to_the_types_that_take_them() -> None:
    def arguments(volume_type: str) -> dict[str, object]:
        return VolumeSpec("snap-1", "us-west-2a", volume_type, 8, 3000, 125, None,
                          {}).create_arguments()

    assert {"Iops", "Throughput"} <= set(arguments("gp3"))
    assert "Iops" in arguments("io2")
    assert "Throughput" not in arguments("io2")
    assert not {"Iops", "Throughput"} & set(arguments("gp2"))


def test_a_free_device_is_the_recorded_one_when_free_else_the_first_free() -> None:
    assert free_device(["/dev/sda1", "/dev/sdf"], "/dev/sdh") == "/dev/sdh"
    assert free_device(["/dev/sda1", "/dev/sdf"], "/dev/sdf") == "/dev/sdg"
    assert free_device(["/dev/xvdf"]) == "/dev/sdg"


@pytest.mark.parametrize("version", ["1.29", "1.37"])
def test_the_manifests_of_a_claim_are_valid_kubernetes_objects(version: str) -> None:
    claim = ClaimRestore("payments", "db-0", "vol-0123456789abcdef0", "us-west-2a", 20,
                         "restore-0123456789abcdef", "snap-1")
    for document in (persistent_volume(claim), persistent_volume_claim(claim)):
        kubernetes_validate.validate(document, version, strict=True)
    assert persistent_volume_claim(claim)["spec"]["volumeName"] == claim.pv_name
