"""`molibackup verify` against the emulator, through the CLI.

The emulator's EC2 snapshots have no blocks (the EBS direct APIs live in another backend)
and its block size is 512: `tests/support/emulator.py` gives a snapshot the blocks of its
volume (`Emulator.write_volume`) in EC2's block size, with their SHA-256, and pages block
listings as EC2 does. The volumes hold real filesystems made by mkfs.ext4, mkfs.xfs and
sgdisk (`tests/support/images.py`). A volume that stays creating or fails is played by the
emulator's volume state, which the tests set.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CliRun, job
from tests.support.cli import executable
from tests.support.ec2proxy import EC2Proxy
from tests.support.emulator import Emulator
from tests.support.fleet import REGION, Fleet, tags_of
from tests.support.images import image
from tests.support.pushgateway import running_pushgateway

Run = Callable[..., CliRun]
MUTATING = {"CreateVolume", "DeleteVolume", "CreateTags", "DeleteSnapshot", "CreateSnapshot"}


@pytest.fixture
def molibackup(job_cli: Callable[[str], Callable[..., CliRun]]) -> Callable[..., CliRun]:
    return job_cli("db")


def volume_with(fleet: Fleet, instance: str, name: str, kind: str | None) -> str:
    """A data volume of `instance`, holding a `kind` filesystem (or nothing written)."""
    volume = fleet.attached_volume(instance, {"Name": name})
    if kind is not None:
        for offset, data in image(kind):
            fleet.emulator.write_volume(REGION, volume, data, at=offset)
    return volume


@pytest.fixture
def backed_up(fleet: Fleet, molibackup: Any) -> dict[str, str]:
    """An instance with an ext4, an XFS and a GPT-partitioned data volume, backed up once."""
    instance = fleet.instance({"Backup": "daily"}).instance_id
    volumes = {kind: volume_with(fleet, instance, kind, kind)
               for kind in ("ext4", "xfs", "gpt-ext4")}
    assert molibackup(instance_tag="Backup=daily", exclude_boot_volume=True).status == 0
    return volumes


def snapshot_of(fleet: Fleet, volume: str) -> dict[str, Any]:
    (snapshot,) = [s for s in fleet.job_snapshots("db") if s["VolumeId"] == volume]
    return snapshot


def verifications(result: CliRun) -> dict[str, dict[str, Any]]:
    return {v["volume_id"]: v for v in json.loads(result.out)["jobs"][0]["verifications"]}


OPTIONS = {"instance_tag": "Backup=daily", "exclude_boot_volume": True}


def test_blocks_tell_ext4_xfs_and_a_gpt_partition_and_leave_evidence(
    fleet: Fleet, molibackup: Any, backed_up: dict[str, str]
) -> None:
    result = molibackup("verify", "--output", "json", **OPTIONS)
    assert result.status == 0, result.log
    found = verifications(result)
    assert {kind: found[volume]["content"] for kind, volume in backed_up.items()} == {
        "ext4": "ext4 (data)", "xfs": "xfs (data)", "gpt-ext4": "gpt:ext4 (data)"}
    ext4 = found[backed_up["ext4"]]
    assert ext4["status"] == "verified"
    # Every written block but the first (read to tell the filesystem), 16 at most.
    assert ext4["blocks_checked"] == min(16, ext4["blocks_written"] - 1) > 0
    tags = tags_of(snapshot_of(fleet, backed_up["xfs"]))
    checked = found[backed_up["xfs"]]["blocks_checked"]
    assert tags["molibackup:verified"] == f"blocks xfs (data) {checked}/{checked}"
    assert datetime.fromisoformat(tags["molibackup:verified-at"].replace("Z", "+00:00")) > (
        datetime.now(UTC) - timedelta(minutes=5))


def test_a_corrupted_block_fails_exactly_that_volume(
    fleet: Fleet, molibackup: Any, backed_up: dict[str, str], aws_env: Emulator
) -> None:
    broken = snapshot_of(fleet, backed_up["xfs"])["SnapshotId"]
    aws_env.corrupt_block(REGION, broken, 0)
    result = molibackup("verify", "--output", "json", **OPTIONS)
    assert result.status == 2
    found = verifications(result)
    assert found[backed_up["xfs"]]["status"] == "FAILED"
    assert "block 0: its data does not match its checksum" in found[backed_up["xfs"]]["detail"]
    assert found[backed_up["ext4"]]["status"] == found[backed_up["gpt-ext4"]]["status"] == (
        "verified")
    assert "molibackup:verified" not in tags_of(snapshot_of(fleet, backed_up["xfs"]))


def test_a_snapshot_without_blocks_fails_clearly(fleet: Fleet, molibackup: Any) -> None:
    instance = fleet.instance({"Backup": "daily"}).instance_id
    empty = volume_with(fleet, instance, "empty", None)
    assert molibackup(**OPTIONS).status == 0
    result = molibackup("verify", "--output", "json", **OPTIONS)
    assert result.status == 2
    assert "no written blocks" in verifications(result)[empty]["detail"]


def test_an_unknown_content_fails_only_when_a_filesystem_is_required(
    fleet: Fleet, molibackup: Any
) -> None:
    instance = fleet.instance({"Backup": "daily"}).instance_id
    raw = fleet.attached_volume(instance, {"Name": "raw"})
    fleet.emulator.write_volume(REGION, raw, b"\x01" * 4096, at=1 << 20)
    assert molibackup(**OPTIONS).status == 0
    lenient = molibackup("verify", "--output", "json", **OPTIONS)
    assert lenient.status == 0, lenient.log
    assert verifications(lenient)[raw]["content"] == "unknown"
    strict = molibackup("verify", verify={"require_filesystem": True}, **OPTIONS)
    assert strict.status == 2


def test_sampling_goes_round_the_fleet_run_after_run(
    fleet: Fleet, molibackup: Any, backed_up: dict[str, str]
) -> None:
    seen = []
    for _ in range(3):
        result = molibackup("verify", "--output", "json", verify={"sample": 1}, **OPTIONS)
        assert result.status == 0, result.log
        (volume,) = verifications(result)
        seen.append(volume)
        time.sleep(1.1)  # verified-at has a resolution of one second
    assert sorted(seen) == sorted(backed_up.values())
    again = molibackup("verify", "--output", "json", verify={"sample": 1}, **OPTIONS)
    assert list(verifications(again)) == [seen[0]]  # the one verified longest ago
    recent = molibackup("verify", "--output", "json", verify={"every": "1d"}, **OPTIONS)
    assert verifications(recent) == {}  # all verified within a day


def test_check_fails_a_volume_not_verified_within_the_limit(
    molibackup: Any, backed_up: dict[str, str]
) -> None:
    before = molibackup("check", "--verified-within", "7d", "--output", "json", **OPTIONS)
    assert before.status == 2
    assert {v["status"] for v in json.loads(before.out)["jobs"][0]["volumes"]} == {
        "unverified"}
    assert molibackup("verify", **OPTIONS).status == 0
    after = molibackup("check", "--verified-within", "7d", **OPTIONS)
    assert after.status == 0, after.log


def test_the_snapshots_listing_shows_the_verification(
    molibackup: Any, backed_up: dict[str, str]
) -> None:
    assert molibackup("verify", **OPTIONS).status == 0
    listing = molibackup("snapshots", "--volume", backed_up["ext4"], "--output", "json",
                         **OPTIONS)
    (row,) = json.loads(listing.out)["jobs"][0]["volumes"][0]["snapshots"]
    assert row["verification"]["outcome"].startswith("blocks ext4 (data)")


def test_a_dry_run_reads_nothing_it_would_change(
    molibackup: Any, backed_up: dict[str, str], proxy: EC2Proxy
) -> None:
    proxy.state.reset_counts()
    for method in ("blocks", "volume"):
        result = molibackup("verify", "--method", method, "--dry-run", **OPTIONS)
        assert result.status == 0, result.log
        assert "dry run: would verify snapshot" in result.log
    assert not MUTATING & set(proxy.calls)


def test_the_metrics_reach_the_pushgateway_beside_the_backups(
    molibackup: Any, backed_up: dict[str, str]
) -> None:
    with running_pushgateway() as gateway:
        settings = {"metrics": {"pushgateway": gateway.url}}
        assert molibackup(settings=settings, **OPTIONS).status == 0
        assert molibackup("verify", settings=settings, **OPTIONS).status == 0
        for volume in backed_up.values():
            last = gateway.value("molibackup_verify_last_success_timestamp_seconds",
                                 molibackup_job="db", volume_id=volume,
                                 molibackup_command="verify")
            assert last is not None
            assert last > time.time() - 300
        assert gateway.value("molibackup_verify_verifications", outcome="verified") == 3
        assert gateway.value("molibackup_job_success", molibackup_job="db") == 1  # kept


# --- the volume method ----------------------------------------------------------------------


def verification_volumes(ec2: Any) -> list[dict[str, Any]]:
    return [v for v in ec2.describe_volumes()["Volumes"]
            if "molibackup:verification-of" in tags_of(v)]


def test_the_volume_method_makes_and_deletes_one_volume_per_snapshot(
    molibackup: Any, backed_up: dict[str, str], proxy: EC2Proxy, ec2: Any
) -> None:
    proxy.state.reset_counts()
    result = molibackup("verify", "--method", "volume", "--output", "json", **OPTIONS)
    assert result.status == 0, result.log
    assert proxy.calls["CreateVolume"] == proxy.calls["DeleteVolume"] == 3
    assert verification_volumes(ec2) == []
    assert all(v["status"] == "verified" for v in verifications(result).values())


def test_a_verification_volume_that_fails_is_deleted_too(
    molibackup: Any, backed_up: dict[str, str], ec2: Any, new_volumes: dict[str, str]
) -> None:
    new_volumes["state"] = "error"
    result = molibackup("verify", "--method", "volume", "--sample", "1", **OPTIONS)
    assert result.status == 2
    assert "is in error state" in result.log
    assert verification_volumes(ec2) == []


def verifying_by_volume(write_config: Callable[..., Path], ec2: Any
                        ) -> subprocess.Popen[str]:
    """`verify --method volume` as a process, once its verification volume exists."""
    config = write_config({"jobs": {"db": job(**OPTIONS)}})
    process = subprocess.Popen([executable(), "-c", str(config), "verify", "--method",
                                "volume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while not verification_volumes(ec2):
        assert time.monotonic() < deadline, "no verification volume was made"
        time.sleep(0.2)
    return process


def test_sigterm_deletes_the_verification_volume_before_exiting(
    backed_up: dict[str, str], ec2: Any, new_volumes: dict[str, str],
    write_config: Callable[..., Path]
) -> None:
    new_volumes["state"] = "creating"  # and so it stays
    process = verifying_by_volume(write_config, ec2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert verification_volumes(ec2) == []
    assert "deleted verification volume" in stderr


def test_a_second_signal_still_deletes_the_verification_volume_at_once(
    backed_up: dict[str, str], ec2: Any, new_volumes: dict[str, str],
    write_config: Callable[..., Path]
) -> None:
    new_volumes["state"] = "creating"  # and so it stays
    process = verifying_by_volume(write_config, ec2)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - sent < 15, "the second signal ends the run at once"
    assert process.returncode == 130, stderr
    assert "received SIGINT again: exiting now" in stderr
    assert verification_volumes(ec2) == []
    assert "deleted verification volume" in stderr


def test_a_killed_runs_leftover_is_deleted_by_the_next_run_and_nothing_else(
    fleet: Fleet, molibackup: Any, backed_up: dict[str, str], ec2: Any
) -> None:
    long_ago = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    just_now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    mine = {"molibackup:verification-of": "snap-0", "molibackup:verify-job": "db"}
    leftover = fleet.volume({**mine, "molibackup:verify-started": long_ago})
    in_progress = fleet.volume({**mine, "molibackup:verify-started": just_now})
    other_job = fleet.volume({**mine, "molibackup:verify-job": "other",
                              "molibackup:verify-started": long_ago})
    unrelated = fleet.volume({"Name": "precious", "molibackup:verify-started": long_ago})
    dry = molibackup("verify", "--method", "volume", "--dry-run", **OPTIONS)
    assert "dry run: would delete verification volume" in dry.log
    assert leftover in {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    result = molibackup("verify", "--method", "volume", **OPTIONS)
    assert result.status == 0, result.log
    left = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    assert leftover not in left
    assert {in_progress, other_job, unrelated} <= left


def test_verify_options_are_validated(write_config: Callable[..., Path], run_cli: Run
                                      ) -> None:
    path = write_config(yaml.safe_dump({"jobs": {"db": job(
        instance_tag="A=b", verify={"method": "quick", "blocks": 0, "every": "soon"})}}))
    result = run_cli("-c", str(path), "--validate")
    assert result.status == 1
    assert "jobs.db.verify.method: must be one of: blocks, volume" in result.log
    assert "jobs.db.verify.blocks: must be a whole number between 1 and 1000" in result.log
    assert "jobs.db.verify.every: must be a duration" in result.log


@pytest.mark.parametrize("whose", ["no such snapshot", "another job's", "made by hand"])
def test_a_snapshot_of_no_job_is_the_user_s_input_one_line_and_exit_1(
    fleet: Fleet, write_config: Callable[..., Path], run_cli: Run, whose: str
) -> None:
    instance = fleet.instance({"Backup": "daily"}).instance_id
    volume = fleet.attached_volume(instance, {"Name": "data"})
    snapshot = {"no such snapshot": lambda: "snap-0123456789abcdef0",
                "another job's": lambda: fleet.job_snapshot(volume, "elsewhere", 1),
                "made by hand": lambda: fleet.snapshot(volume)}[whose]()
    config = write_config({"jobs": {name: job(instance_tag="Backup=daily")
                                    for name in ("db", "web")}})
    result = run_cli("-c", str(config), "verify", "--snapshot", snapshot)
    assert result.status == 1, result.log
    errors = [line for line in result.log.splitlines() if " ERROR " in line]
    assert len(errors) == 2, result.log  # the refusal, then "nothing was done"
    assert f"snapshot {snapshot} is not a snapshot of any job (db, web)" in errors[0]
    assert errors[1].endswith("nothing was done")


def test_a_snapshot_is_verified_by_its_own_job_alone(
    fleet: Fleet, write_config: Callable[..., Path], run_cli: Run, backed_up: dict[str, str]
) -> None:
    snapshot = snapshot_of(fleet, backed_up["ext4"])["SnapshotId"]
    config = write_config({"jobs": {"web": job(instance_tag="Role=web", allow_empty=True),
                                    "db": job(**OPTIONS)}})
    result = run_cli("-c", str(config), "verify", "--snapshot", snapshot, "--output", "json")
    assert result.status == 0, result.log
    (only,) = json.loads(result.out)["jobs"]
    assert only["job"] == "db"
    assert [v["snapshot_id"] for v in only["verifications"]] == [snapshot]
