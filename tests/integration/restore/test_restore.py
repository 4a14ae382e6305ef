"""`molibackup snapshots` and `molibackup restore` against the emulator, through the CLI.

The emulator ignores CreateVolume's ClientToken: that a repeated or retried restore makes one
volume is proved by the lookup by tag. It has no DescribeLockedSnapshots (taught in
`tests/support/emulator.py`), and completes a temporary restore from the archive tier at
once: "still restoring" is played by setting the tiering status in the emulator's state.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from moto.ec2.models.elastic_block_store import EBSBackend

from molibackup.actions.restore import PERMISSIONS
from molibackup.ebs import volumes
from tests.conftest import CliRun
from tests.support.cli import executable
from tests.support.ec2proxy import LOST_ANSWER, EC2Proxy, held
from tests.support.emulator import Emulator
from tests.support.fleet import REGION, Fleet, csi_volume, tags_of

Run = Callable[..., CliRun]
DR_REGION = "eu-central-1"
MUTATING = {"CreateVolume", "AttachVolume", "RestoreSnapshotTier", "CreateTags",
            "DeleteVolume", "DeleteSnapshot", "ModifySnapshotTier", "CopySnapshot"}


@pytest.fixture
def molibackup(job_cli: Callable[[str], Callable[..., CliRun]]) -> Callable[..., CliRun]:
    """Run a command with a config of one job `db` of these options."""
    return job_cli("db")


def restored_volumes(ec2: Any) -> list[dict[str, Any]]:
    return [v for v in ec2.describe_volumes()["Volumes"]
            if "molibackup:restore-id" in tags_of(v)]


def listing(result: CliRun) -> dict[str, Any]:
    assert result.status == 0, result.log
    document: dict[str, Any] = json.loads(result.out)
    return document


# --- molibackup snapshots ----------------------------------------------------------------


def test_snapshots_lists_each_volume_newest_first_with_what_rotation_would_do(
    fleet: Fleet, molibackup: Any
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    data = web.volumes["data"]
    recent = fleet.job_snapshot(data, "db", age_days=1)
    expired = fleet.job_snapshot(data, "db", age_days=40)
    fleet.snapshot(data, {"Name": "by hand"}, age_days=2)
    result = molibackup("snapshots", "--volume", data, "--output", "json",
                        instance_tag="Backup=daily", retention=30)
    (volume,) = listing(result)["jobs"][0]["volumes"]
    assert (volume["volume_id"], volume["status"], volume["name"]) == (data, "selected", "data")
    rows = volume["snapshots"]
    assert [row["snapshot_id"] for row in rows] == [recent, expired]
    assert rows[0]["rotation"] == {"action": "keep",
                                   "reasons": ["min_keep 1", "within retention 30d"]}
    assert rows[1]["rotation"] == {"action": "delete", "reasons": ["kept by no rule"]}
    assert (rows[0]["storage_tier"], rows[0]["locked"], rows[0]["size_gib"]) == (
        "standard", False, 1)


def test_snapshots_shows_volumes_gone_or_no_longer_selected(
    fleet: Fleet, molibackup: Any, ec2: Any
) -> None:
    fleet.instance({"Backup": "daily"})
    unselected = fleet.volume({"Name": "old-data"})
    gone = fleet.volume({"Name": "deleted"})
    fleet.job_snapshot(unselected, "db", age_days=3)
    fleet.job_snapshot(gone, "db", age_days=3)
    ec2.delete_volume(VolumeId=gone)
    volumes = {v["volume_id"]: v for v in listing(molibackup(
        "snapshots", "--output", "json", instance_tag="Backup=daily"))["jobs"][0]["volumes"]}
    assert volumes[unselected]["status"] == "not selected"
    assert volumes[gone]["status"] == "gone"


def test_snapshots_says_which_are_locked_and_shows_a_table(
    fleet: Fleet, molibackup: Any, aws_env: Emulator
) -> None:
    data = fleet.instance({"Backup": "daily"}, {"data": {}}).volumes["data"]
    locked = fleet.job_snapshot(data, "db", age_days=1)
    free = fleet.job_snapshot(data, "db", age_days=2)
    aws_env.lock(REGION, locked)
    result = molibackup("snapshots", "--volume", data, instance_tag="Backup=daily")
    assert result.status == 0, result.log
    rows = {line.split()[0]: line.split() for line in result.out.splitlines()
            if line.strip().startswith("snap-")}
    assert rows[locked][4] == "yes"
    assert rows[free][4] == "no"
    assert f"volume {data} (data): selected, 2 snapshot(s)" in result.out


def test_snapshots_of_a_claim_and_their_copies(fleet: Fleet, molibackup: Any) -> None:
    claimed = csi_volume(fleet, "payments", "db-0")
    other = csi_volume(fleet, "payments", "db-1")
    options = {"persistent_volume_claims": {"namespaces": ["payments"]},
               "copy_to": [{"region": DR_REGION}]}
    source = fleet.job_snapshot(claimed, "db", age_days=1)
    fleet.job_snapshot(other, "db", age_days=1)
    assert molibackup(**options).status == 0
    document = listing(molibackup("snapshots", "--claim", "payments/db-0", "--copies",
                                  "--output", "json", **options))
    (volume,) = document["jobs"][0]["volumes"]
    assert (volume["volume_id"], volume["claim"]) == (claimed, "payments/db-0")
    copied = next(row for row in volume["snapshots"] if row["snapshot_id"] == source)
    (copy,) = copied["copies"]
    assert (copy["region"], copy["state"]) == (DR_REGION, "completed")


def test_snapshots_of_a_volume_the_job_does_not_know_is_one_clear_line(
    fleet: Fleet, molibackup: Any
) -> None:
    fleet.instance({"Backup": "daily"})
    result = molibackup("snapshots", "--volume", "vol-0123456789abcdef0",
                        instance_tag="Backup=daily")
    assert result.status == 1
    assert "no job (db) selects or has snapshots of volume vol-0123456789abcdef0" in result.log


# --- molibackup restore: a volume ----------------------------------------------------------


def io_volume(fleet: Fleet) -> tuple[str, str]:
    """An instance in zone b with a gp3 data volume of 4000 IOPS and 250 MiB/s."""
    instance = fleet.instance({"Backup": "daily"})
    volume = fleet.volume({"Name": "pgdata"}, zone=f"{REGION}a", size=20, VolumeType="gp3",
                          Iops=4000, Throughput=250)
    fleet.client.attach_volume(VolumeId=volume, InstanceId=instance.instance_id,
                               Device="/dev/sdh")
    return instance.instance_id, volume


def test_a_volume_comes_back_as_it_was_tagged_with_where_it_comes_from(
    fleet: Fleet, molibackup: Any, ec2: Any
) -> None:
    instance, volume = io_volume(fleet)
    assert molibackup(instance_tag="Backup=daily").status == 0
    (snapshot,) = [s for s in fleet.job_snapshots("db") if s["VolumeId"] == volume]
    recorded = tags_of(snapshot)["molibackup:restore"]
    assert recorded == (f"az={REGION}a type=gp3 size=20 iops=4000 throughput=250 "
                        f"devices={instance}:/dev/sdh")
    result = molibackup("restore", "--job", "db", "--volume", volume,
                        instance_tag="Backup=daily")
    assert result.status == 0, result.log
    (made,) = restored_volumes(ec2)
    assert (made["AvailabilityZone"], made["VolumeType"], made["Iops"], made["Throughput"],
            made["Size"], made["SnapshotId"]) == (f"{REGION}a", "gp3", 4000, 250, 20,
                                                  snapshot["SnapshotId"])
    tags = tags_of(made)
    assert tags["molibackup:restored-from"] == snapshot["SnapshotId"]
    assert tags["molibackup:restored-from-volume"] == volume
    assert tags["molibackup:restored-for-job"] == "db"
    assert "molibackup:job" not in tags
    assert "CreatedBy" not in tags
    assert made["VolumeId"] in result.out


def test_the_same_restore_run_again_makes_no_second_volume(
    fleet: Fleet, molibackup: Any, ec2: Any
) -> None:
    _, volume = io_volume(fleet)
    assert molibackup(instance_tag="Backup=daily").status == 0
    first = molibackup("restore", "--job", "db", "--volume", volume, "--output", "json",
                       instance_tag="Backup=daily")
    again = molibackup("restore", "--job", "db", "--volume", volume, "--output", "json",
                       instance_tag="Backup=daily")
    assert first.status == again.status == 0
    assert json.loads(first.out)["volumes"][0]["volume_id"] == json.loads(
        again.out)["volumes"][0]["volume_id"]
    assert len(restored_volumes(ec2)) == 1


def test_lost_create_volume_answers_leave_exactly_one_volume(
    fleet: Fleet, molibackup: Any, ec2: Any, proxy: EC2Proxy
) -> None:
    _, volume = io_volume(fleet)
    assert molibackup(instance_tag="Backup=daily").status == 0
    lost = {"left": 2}

    def lose_two_answers(action: str, params: dict[str, str]) -> Any:
        if action == "CreateVolume" and lost["left"]:
            lost["left"] -= 1
            return LOST_ANSWER
        return None

    proxy.state.fault_rules.append(lose_two_answers)
    result = molibackup("restore", "--job", "db", "--volume", volume,
                        instance_tag="Backup=daily")
    assert result.status == 0, result.log
    assert proxy.calls["CreateVolume"] == 1  # the lookup found what the lost call made
    assert len(restored_volumes(ec2)) == 1


def test_a_deleted_source_volume_comes_back_from_the_recorded_attributes(
    fleet: Fleet, molibackup: Any, ec2: Any
) -> None:
    instance, volume = io_volume(fleet)
    assert molibackup(instance_tag="Backup=daily").status == 0
    ec2.detach_volume(VolumeId=volume, InstanceId=instance)
    ec2.delete_volume(VolumeId=volume)
    result = molibackup("restore", "--job", "db", "--volume", volume,
                        instance_tag="Backup=daily")
    assert result.status == 0, result.log
    (made,) = restored_volumes(ec2)
    assert (made["VolumeType"], made["Iops"], made["Throughput"]) == ("gp3", 4000, 250)


def test_an_old_snapshot_without_records_of_a_gone_volume_asks_for_what_it_lacks(
    fleet: Fleet, molibackup: Any, ec2: Any
) -> None:
    fleet.instance({"Backup": "daily"})
    gone = fleet.volume({"Name": "old"})
    fleet.job_snapshot(gone, "db", age_days=3)  # made before snapshots recorded attributes
    ec2.delete_volume(VolumeId=gone)
    result = molibackup("restore", "--job", "db", "--volume", gone, instance_tag="Backup=daily")
    assert result.status == 1
    assert "give --availability-zone" in result.log
    result = molibackup("restore", "--job", "db", "--volume", gone, "--availability-zone",
                        f"{REGION}b", instance_tag="Backup=daily")
    assert result.status == 1
    assert "give --volume-type" in result.log
    result = molibackup("restore", "--job", "db", "--volume", gone, "--availability-zone",
                        f"{REGION}b", "--volume-type", "gp3", instance_tag="Backup=daily")
    assert result.status == 0, result.log
    assert restored_volumes(ec2)[0]["AvailabilityZone"] == f"{REGION}b"


def test_at_takes_the_newest_snapshot_started_at_or_before_it(
    fleet: Fleet, molibackup: Any
) -> None:
    data = fleet.instance({"Backup": "daily"}, {"data": {}}).volumes["data"]
    fleet.job_snapshot(data, "db", age_days=1)
    five_days = fleet.job_snapshot(data, "db", age_days=5)
    fleet.job_snapshot(data, "db", age_days=10)
    result = molibackup("restore", "--job", "db", "--volume", data, "--at", "3d", "--dry-run",
                        "--output", "json", instance_tag="Backup=daily")
    assert result.status == 0, result.log
    assert json.loads(result.out)["volumes"][0]["snapshot_id"] == five_days
    future = molibackup("restore", "--job", "db", "--volume", data, "--at",
                        "2999-01-01T00:00:00Z", instance_tag="Backup=daily")
    assert future.status == 1
    assert "is in the future" in future.log


# --- a claim ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.29", "1.37"])
def test_a_claim_comes_back_as_a_bound_pv_and_pvc(
    fleet: Fleet, molibackup: Any, ec2: Any, tmp_path: Path, version: str
) -> None:
    claimed = csi_volume(fleet, "payments", "db-0")
    options = {"persistent_volume_claims": {"namespaces": ["payments"]}}
    assert molibackup(**options).status == 0
    manifest = tmp_path / "restore.yaml"
    result = molibackup("restore", "--job", "db", "--claim", "payments/db-0", "--manifest",
                        str(manifest), "--storage-class", "gp3", **options)
    assert result.status == 0, result.log
    pv, pvc = list(yaml.safe_load_all(manifest.read_text()))
    for document in (pv, pvc):
        kubernetes_validate.validate(document, version, strict=True)
    (made,) = restored_volumes(ec2)
    assert pv["spec"]["csi"] == {"driver": "ebs.csi.aws.com", "volumeHandle": made["VolumeId"],
                                 "fsType": "ext4"}
    assert pv["spec"]["claimRef"]["namespace"] == "payments"
    assert pv["spec"]["claimRef"]["name"] == pvc["metadata"]["name"] == "db-0"
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    assert pv["spec"]["storageClassName"] == pvc["spec"]["storageClassName"] == "gp3"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == [made["AvailabilityZone"]]
    assert tags_of(made)["kubernetes.io/created-for/pvc/name"] == "db-0"
    assert f"kubectl apply -f {manifest}" in result.out
    assert claimed != made["VolumeId"]


def test_a_claim_restored_beside_the_original_to_standard_output(
    fleet: Fleet, molibackup: Any
) -> None:
    csi_volume(fleet, "payments", "db-0")
    options = {"persistent_volume_claims": {"namespaces": ["payments"]}}
    assert molibackup(**options).status == 0
    result = molibackup("restore", "--job", "db", "--claim", "payments/db-0", "--manifest", "-",
                        "--claim-name", "db-0-restored", "--namespace", "staging", **options)
    assert result.status == 0, result.log
    pv, pvc = list(yaml.safe_load_all(result.out))
    assert (pvc["metadata"]["namespace"], pvc["metadata"]["name"]) == ("staging",
                                                                       "db-0-restored")
    assert pv["spec"]["storageClassName"] == ""


# --- an instance's set, from one run ------------------------------------------------------


def test_an_instances_volumes_come_back_from_one_run(
    fleet: Fleet, molibackup: Any, ec2: Any, aws_env: Emulator
) -> None:
    db = fleet.instance({"Role": "db"}, {"data": {}, "wal": {}})
    options = {"instance_tag": "Role=db", "consistency": "instance",
               "exclude_boot_volume": True}
    assert molibackup(**options).status == 0
    older = fleet.job_snapshots("db")
    older_run = {tags_of(s)["molibackup:run-id"] for s in older}
    for snapshot in older:  # a day before the next run (the emulator's clock is "now")
        aws_env.set_snapshot_age(REGION, snapshot["SnapshotId"], 1)
    assert molibackup(**options).status == 0
    newest = [s for s in fleet.job_snapshots("db")
              if tags_of(s)["molibackup:run-id"] not in older_run]
    result = molibackup("restore", "--job", "db", "--instance", db.instance_id,
                        "--output", "json", **options)
    assert result.status == 0, result.log
    document = json.loads(result.out)
    assert {v["snapshot_id"] for v in document["volumes"]} == {s["SnapshotId"] for s in newest}
    assert document["run_id"] == tags_of(newest[0])["molibackup:run-id"]
    assert {v["source_volume_id"] for v in document["volumes"]} == set(db.volumes.values())
    assert len(restored_volumes(ec2)) == 2
    # A run in which one volume's snapshot failed is not a consistent set: the one before is.
    aws_env.set_snapshot_state(REGION, newest[0]["SnapshotId"], "error")
    result = molibackup("restore", "--job", "db", "--instance", db.instance_id, "--dry-run",
                        "--output", "json", **options)
    assert json.loads(result.out)["run_id"] == older_run.pop()


# --- from a copy in another region --------------------------------------------------------


def test_a_copy_in_another_region_restores_with_the_same_command(
    fleet: Fleet, molibackup: Any, aws_env: Emulator
) -> None:
    _, volume = io_volume(fleet)
    options = {"instance_tag": "Backup=daily", "copy_to": [{"region": DR_REGION}]}
    assert molibackup(**options).status == 0  # snapshots made
    assert molibackup(**options).status == 0  # completed ones copied
    without_zone = molibackup("restore", "--job", "db", "--volume", volume, "--from-region",
                              DR_REGION, **options)
    assert without_zone.status == 1
    assert "--availability-zone is required with --from-region" in without_zone.log
    result = molibackup("restore", "--job", "db", "--volume", volume, "--from-region",
                        DR_REGION, "--availability-zone", f"{DR_REGION}a", "--output", "json",
                        **options)
    assert result.status == 0, result.log
    (made,) = json.loads(result.out)["volumes"]
    assert (made["availability_zone"], made["volume_type"], made["iops"]) == (
        f"{DR_REGION}a", "gp3", 4000)
    dr = aws_env.backend(DR_REGION).volumes[made["volume_id"]]
    assert dr.zone.name == f"{DR_REGION}a"


# --- the archive tier ---------------------------------------------------------------------


def test_an_archived_snapshot_is_brought_back_first_and_the_restore_says_come_back_later(
    fleet: Fleet, molibackup: Any, ec2: Any, proxy: EC2Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = fleet.instance({"Backup": "daily"}, {"data": {}}).volumes["data"]
    archived = fleet.job_snapshot(data, "db", age_days=200)
    ec2.modify_snapshot_tier(SnapshotId=archived, StorageTier="archive")
    restore_tier = EBSBackend.restore_snapshot_tier

    def still_restoring(self: Any, *args: Any, **kwargs: Any) -> Any:
        snapshot = restore_tier(self, *args, **kwargs)
        snapshot.last_tiering_operation_status = "temporary-restore-in-progress"
        return snapshot

    monkeypatch.setattr(EBSBackend, "restore_snapshot_tier", still_restoring)
    command = ("restore", "--job", "db", "--snapshot", archived, "--archive-days", "3")
    first = molibackup(*command, instance_tag="Backup=daily")
    assert first.status == 75, first.log
    assert "up to 72 hours" in first.out
    assert proxy.calls["RestoreSnapshotTier"] == 1
    second = molibackup(*command, instance_tag="Backup=daily")
    assert second.status == 75
    assert "still restoring" in second.out
    assert proxy.calls["RestoreSnapshotTier"] == 1  # not asked twice
    assert proxy.calls["CreateVolume"] == 0
    for snapshot in ec2.describe_snapshots(SnapshotIds=[archived])["Snapshots"]:
        assert snapshot["StorageTier"] == "archive"
    backend_snapshot = fleet.emulator.backend(REGION).snapshots[archived]
    backend_snapshot.last_tiering_operation_status = "temporary-restore-completed"
    third = molibackup(*command, instance_tag="Backup=daily")
    assert third.status == 0, third.log
    assert len(restored_volumes(ec2)) == 1


# --- refusals before any change -----------------------------------------------------------


def test_attaching_across_zones_is_refused_before_anything_is_made(
    fleet: Fleet, molibackup: Any, proxy: EC2Proxy
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    assert molibackup(instance_tag="Backup=daily").status == 0
    proxy.state.reset_counts()
    result = molibackup("restore", "--job", "db", "--volume", web.volumes["data"],
                        "--availability-zone", f"{REGION}b", "--attach", web.instance_id,
                        instance_tag="Backup=daily")
    assert result.status == 1
    assert f"the instance is in {REGION}a, the volume would be in {REGION}b" in result.log
    assert not MUTATING & set(proxy.calls)


def test_attach_puts_the_volume_on_the_instance_at_a_free_device(
    fleet: Fleet, molibackup: Any, ec2: Any
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    assert molibackup(instance_tag="Backup=daily").status == 0
    result = molibackup("restore", "--job", "db", "--volume", web.volumes["data"], "--attach",
                        web.instance_id, "--output", "json", instance_tag="Backup=daily")
    assert result.status == 0, result.log
    (made,) = restored_volumes(ec2)
    (attachment,) = made["Attachments"]
    assert attachment["InstanceId"] == web.instance_id
    assert attachment["Device"] == "/dev/sdg"  # /dev/sdf, the recorded one, is taken


def test_a_dry_run_makes_no_mutating_call(fleet: Fleet, molibackup: Any, proxy: EC2Proxy,
                                          ec2: Any, tmp_path: Path) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    assert molibackup(instance_tag="Backup=daily").status == 0
    proxy.state.reset_counts()
    result = molibackup("restore", "--job", "db", "--volume", web.volumes["data"], "--attach",
                        web.instance_id, "--manifest", str(tmp_path / "m.yaml"), "--namespace",
                        "a", "--claim-name", "b", "--dry-run", instance_tag="Backup=daily")
    assert result.status == 0, result.log
    assert "dry run: would create a volume from" in result.log
    assert not MUTATING & set(proxy.calls)
    assert restored_volumes(ec2) == []
    assert not (tmp_path / "m.yaml").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(("--volume", "vol-1", "--instance", "i-1"), "not allowed with argument",
                     id="two-selectors"),
        pytest.param(("--availability-zone", "us-west-2z"), "is not a zone of us-west-2",
                     id="zone-not-in-region"),
        pytest.param(("--size", "1"), "is smaller than snapshot", id="size-too-small"),
        pytest.param(("--manifest", "-", "--claim-name", "Not_Valid", "--namespace", "a"),
                     "is not a valid Kubernetes name", id="bad-claim-name"),
        pytest.param(("--device", "/dev/sdf"), "--device needs --attach", id="device-alone"),
        pytest.param(("--manifest", "-"), "give --namespace and --claim-name",
                     id="manifest-of-no-claim"),
        pytest.param(("--from-region", "ap-south-1"), "is not one of the job's copy_to",
                     id="not-a-destination"),
    ],
)
def test_bad_restore_requests_are_one_line_and_change_nothing(
    fleet: Fleet, molibackup: Any, proxy: EC2Proxy, args: tuple[str, ...], expected: str
) -> None:
    _instance, volume = io_volume(fleet)
    assert molibackup(instance_tag="Backup=daily").status == 0
    proxy.state.reset_counts()
    selector = () if "--volume" in args else ("--volume", volume)
    result = molibackup("restore", "--job", "db", *selector, *args, instance_tag="Backup=daily")
    assert result.status == 1, result.log
    assert expected in result.log
    assert "Traceback" not in result.log
    assert not MUTATING & set(proxy.calls)


def test_a_snapshot_that_is_not_the_jobs_is_refused_saying_whose_it_is(
    fleet: Fleet, molibackup: Any
) -> None:
    data = fleet.instance({"Backup": "daily"}, {"data": {}}).volumes["data"]
    other = fleet.job_snapshot(data, "another-job", age_days=1)
    by_hand = fleet.snapshot(data, {"Name": "before upgrade"})
    result = molibackup("restore", "--job", "db", "--snapshot", other,
                        instance_tag="Backup=daily")
    assert result.status == 1
    assert "it belongs to job another-job" in result.log
    result = molibackup("restore", "--job", "db", "--snapshot", by_hand,
                        instance_tag="Backup=daily")
    assert result.status == 1
    assert "made by hand or by another tool" in result.log


def test_a_restore_calls_exactly_the_permissions_of_the_restore_policy(
    aws_env: Emulator, fleet: Fleet, molibackup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault_role = "arn:aws:iam::210987654321:role/molibackup-vault"
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    options = {"instance_tag": "Backup=daily", "retention": 365,
               "copy_to": [{"region": DR_REGION, "role_arn": vault_role}]}
    archived = fleet.job_snapshot(web.volumes["data"], "db", age_days=100)
    fleet.client.modify_snapshot_tier(SnapshotId=archived, StorageTier="archive")
    assert molibackup(**options).status == 0
    assert molibackup(**options).status == 0
    with EC2Proxy(aws_env.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", proxy.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", proxy.url)
        assert molibackup("restore", "--job", "db", "--volume", web.volumes["data"],
                          "--attach", web.instance_id, **options).status == 0
        assert molibackup("restore", "--job", "db", "--snapshot", archived,
                          **options).status == 75
        assert molibackup("restore", "--job", "db", "--volume", web.volumes["data"],
                          "--from-region", DR_REGION, "--availability-zone", f"{DR_REGION}a",
                          **options).status == 0
        called = {f"{'sts' if action in ('AssumeRole', 'GetCallerIdentity') else 'ec2'}:"
                  f"{action}" for action, _ in proxy.state.requests}
    # Tags given at creation (CreateVolume's TagSpecifications) need ec2:CreateTags.
    assert called - {"sts:GetCallerIdentity"} | {"ec2:CreateTags"} == PERMISSIONS


# --- trust at the edges ---------------------------------------------------------------------


@pytest.mark.parametrize("case", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_deciding_makes_no_volume_and_a_rerun_makes_exactly_one(
    fleet: Fleet, write_config: Callable[..., Path], proxy: EC2Proxy, ec2: Any,
    case: tuple[int, int]
) -> None:
    signum, status = case
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    config = write_config({"jobs": {"db": {"module": "ebs-snapshot", "aws_region": REGION,
                                           "instance_tag": "Backup=daily"}}})
    command = [executable(), "-c", str(config), "restore", "--job", "db", "--volume",
               web.volumes["data"]]
    assert subprocess.run([executable(), "-c", str(config)], capture_output=True,
                          check=False).returncode == 0
    proxy.state.reset_counts()
    arrived, release = held(proxy, "DescribeAvailabilityZones")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert arrived.wait(timeout=60), "the restore asked for the zones"
        process.send_signal(signum)
        time.sleep(0.5)
    finally:
        release.set()
    out, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    assert not MUTATING & set(proxy.calls), proxy.calls
    assert restored_volumes(ec2) == []
    assert ": interrupted" in out
    proxy.state.fault_rules.clear()
    for _ in range(2):
        again = subprocess.run(command, capture_output=True, text=True, check=False)
        assert again.returncode == 0, again.stderr
    assert len(restored_volumes(ec2)) == 1


def test_the_device_reported_is_the_one_ec2_shows_when_run_again(
    fleet: Fleet, molibackup: Any, ec2: Any
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    assert molibackup(instance_tag="Backup=daily").status == 0
    args = ("restore", "--job", "db", "--volume", web.volumes["data"], "--attach",
            web.instance_id, "--output", "json")
    first = molibackup(*args, instance_tag="Backup=daily")
    assert first.status == 0, first.log
    (made,) = restored_volumes(ec2)
    shown = made["Attachments"][0]["Device"]
    for again in (molibackup(*args, instance_tag="Backup=daily"),
                  molibackup(*args, "--device", "/dev/sdp", instance_tag="Backup=daily")):
        assert again.status == 0, again.log
        (volume,) = json.loads(again.out)["volumes"]
        assert (volume["attached_to"], volume["device"]) == (web.instance_id, shown)
    text = molibackup(*args[:-2], "--device", "/dev/sdp", instance_tag="Backup=daily")
    assert f"attached to {web.instance_id} as {shown}" in text.out
    assert "/dev/sdp" not in text.out


def test_the_attach_hint_is_one_pasteable_command_per_volume(
    fleet: Fleet, molibackup: Any
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {}, "logs": {}})
    assert molibackup(instance_id=web.instance_id, consistency="instance").status == 0
    result = molibackup("restore", "--job", "db", "--instance", web.instance_id, "--output",
                        "json", instance_id=web.instance_id, consistency="instance")
    assert result.status == 0, result.log
    document = json.loads(result.out)
    made = [v["volume_id"] for v in document["volumes"]]
    commands = document["next_step"].split(", or ", 1)[1].split(" && ")
    assert len(commands) == len(made) >= 2
    for command, volume_id in zip(commands, made, strict=True):
        words = command.split()
        assert words[:3] == ["aws", "ec2", "attach-volume"]
        assert words[words.index("--volume-id") + 1] == volume_id
        assert words[words.index("--region") + 1] == REGION
        assert "," not in command


@pytest.mark.parametrize("where", ["no-such-dir/m.yaml", "."])
def test_a_manifest_that_cannot_be_written_is_refused_before_any_volume(
    fleet: Fleet, molibackup: Any, proxy: EC2Proxy, tmp_path: Path, where: str
) -> None:
    volume = csi_volume(fleet, "payments", "db-0", attach_to=fleet.instance({}).instance_id)
    assert molibackup(persistent_volume_claims={"namespaces": ["payments"]}).status == 0
    proxy.state.reset_counts()
    result = molibackup("restore", "--job", "db", "--claim", "payments/db-0", "--manifest",
                        str(tmp_path / where),
                        persistent_volume_claims={"namespaces": ["payments"]})
    assert result.status == 1, result.log
    assert "--manifest" in result.log
    assert not MUTATING & set(proxy.calls)
    assert restored_volumes(fleet.client) == []
    assert volume


@pytest.mark.parametrize(("option", "expected"), [
    (("--volume-type", "gp2", "--iops", "4000"), "--iops: a gp2 volume takes no IOPS"),
    (("--volume-type", "io2", "--throughput", "250", "--iops", "4000"),
     "--throughput: a io2 volume takes no throughput"),
    (("--volume-type", "st1", "--size", "125", "--throughput", "250"),
     "--throughput: a st1 volume takes no throughput"),
], ids=["iops-on-gp2", "throughput-on-io2", "throughput-on-st1"])
def test_an_option_the_volume_type_cannot_take_is_refused_not_dropped(
    fleet: Fleet, molibackup: Any, proxy: EC2Proxy, option: tuple[str, ...], expected: str
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    assert molibackup(instance_tag="Backup=daily").status == 0
    proxy.state.reset_counts()
    result = molibackup("restore", "--job", "db", "--volume", web.volumes["data"], *option,
                        instance_tag="Backup=daily")
    assert result.status == 1, result.log
    assert expected in result.log
    assert not MUTATING & set(proxy.calls)


def test_a_recorded_setting_the_new_type_cannot_take_is_said_in_one_line(
    fleet: Fleet, molibackup: Any, ec2: Any
) -> None:
    web = fleet.instance({"Backup": "daily"})
    data = fleet.volume({"Name": "data"}, VolumeType="gp3", Iops=4000, Throughput=250)
    fleet.client.attach_volume(VolumeId=data, InstanceId=web.instance_id, Device="/dev/sdf")
    assert molibackup(instance_tag="Backup=daily").status == 0
    result = molibackup("restore", "--job", "db", "--volume", data,
                        "--volume-type", "gp2", instance_tag="Backup=daily")
    assert result.status == 0, result.log
    warnings = [line for line in result.log.splitlines() if "does not take" in line]
    assert len(warnings) == 1
    assert "IOPS 4000 and MiB/s throughput 250" in warnings[0]
    (made,) = restored_volumes(ec2)
    assert made["VolumeType"] == "gp2"


# --- a claim's identity -------------------------------------------------------------------

CLAIMS = {"persistent_volume_claims": {"namespaces": ["payments"]}}


def restore_claim(molibackup: Any, tmp_path: Path, name: str) -> dict[str, Any]:
    result = molibackup("restore", "--job", "db", "--claim", "payments/db-0", "--manifest",
                        str(tmp_path / f"{name}.yaml"), "--output", "json", **CLAIMS)
    assert result.status == 0, result.log
    document: dict[str, Any] = json.loads(result.out)
    return document


def test_restored_copies_never_applied_are_not_the_claim_s_data(
    fleet: Fleet, molibackup: Any, ec2: Any, tmp_path: Path
) -> None:
    node = fleet.instance({"Name": "node-1"}).instance_id
    live = csi_volume(fleet, "payments", "db-0", attach_to=node)
    assert molibackup(**CLAIMS).status == 0
    (original,) = [s["SnapshotId"] for s in fleet.job_snapshots("db")]
    # Two restores whose manifests are never applied, each followed by a backup run.
    for attempt in ("first", "second"):
        assert restore_claim(molibackup, tmp_path, attempt)["status"] == "restored"
        time.sleep(1.1)  # EC2 times snapshots to the second: each run's are the newest
        backup = molibackup(**CLAIMS)
        assert backup.status == 0, backup.log
        warnings = [line for line in backup.log.splitlines()
                    if "claim payments/db-0 is carried by" in line]
        assert len(warnings) == 1, backup.log
        assert f"{live} (live)" in warnings[0]
        assert "(restored-unused)" in warnings[0]
    copies = {v["VolumeId"] for v in restored_volumes(ec2)}
    assert len(copies) == 2
    # No backup run took an unused copy as the claim.
    assert not copies & {s["VolumeId"] for s in fleet.job_snapshots("db")}
    # The restore takes the live volume's newest snapshot.
    newest = max((s for s in fleet.job_snapshots("db") if s["VolumeId"] == live),
                 key=lambda s: s["StartTime"])
    document = restore_claim(molibackup, tmp_path, "third")
    (volume,) = document["volumes"]
    assert volume["source_volume_id"] == live
    assert volume["snapshot_id"] == newest["SnapshotId"] != original
    # `snapshots --claim` names every volume carrying the claim and its state.
    listing = molibackup("snapshots", "--claim", "payments/db-0", "--output", "json", **CLAIMS)
    assert listing.status == 0, listing.log
    (job_listing,) = json.loads(listing.out)["jobs"]
    states = {c["volume_id"]: c["state"] for c in job_listing["claims"]["payments/db-0"]}
    assert states[live] == "live"
    assert {states[c] for c in copies} == {"restored-unused"}


def test_a_restore_by_claim_passes_over_snapshots_an_older_run_took_of_an_unused_copy(
    fleet: Fleet, molibackup: Any, ec2: Any, tmp_path: Path
) -> None:
    node = fleet.instance({"Name": "node-1"}).instance_id
    live = csi_volume(fleet, "payments", "db-0", attach_to=node)
    assert molibackup(**CLAIMS).status == 0
    restore_claim(molibackup, tmp_path, "unused")
    (copy,) = restored_volumes(ec2)
    # As a version that did not tell them apart would have done: a newer snapshot of the copy.
    stale = fleet.job_snapshot(copy["VolumeId"], "db", 0)
    fleet.client.create_tags(Resources=[stale], Tags=[
        {"Key": "molibackup:pvc-namespace", "Value": "payments"},
        {"Key": "molibackup:pvc-name", "Value": "db-0"}])
    result = molibackup("restore", "--job", "db", "--claim", "payments/db-0", "--dry-run",
                        "--output", "json", **CLAIMS)
    assert result.status == 0, result.log
    (volume,) = json.loads(result.out)["volumes"]
    assert volume["source_volume_id"] == live
    assert f"passed over 1 snapshot(s) of {copy['VolumeId']}" in result.log


def test_once_the_claim_moves_to_a_restored_volume_its_snapshots_are_the_newest(
    fleet: Fleet, molibackup: Any, ec2: Any, tmp_path: Path
) -> None:
    node = fleet.instance({"Name": "node-1"}).instance_id
    old = csi_volume(fleet, "payments", "db-0", attach_to=node)
    assert molibackup(**CLAIMS).status == 0
    restore_claim(molibackup, tmp_path, "moved")
    (copy,) = restored_volumes(ec2)
    # The manifest applied: the old volume let go, the restored one attached to the node.
    fleet.client.detach_volume(VolumeId=old, InstanceId=node)
    fleet.client.attach_volume(VolumeId=copy["VolumeId"], InstanceId=node, Device="/dev/sdg")
    time.sleep(1.1)  # EC2 times snapshots to the second: this run's are the newest
    backup = molibackup(**CLAIMS)
    assert backup.status == 0, backup.log
    taken = {s["VolumeId"] for s in fleet.job_snapshots("db")}
    assert copy["VolumeId"] in taken
    document = restore_claim(molibackup, tmp_path, "again")
    (volume,) = document["volumes"]
    assert volume["source_volume_id"] == copy["VolumeId"]
    listing = molibackup("snapshots", "--claim", "payments/db-0", "--output", "json", **CLAIMS)
    (job_listing,) = json.loads(listing.out)["jobs"]
    states = {c["volume_id"]: c["state"] for c in job_listing["claims"]["payments/db-0"]}
    assert states[copy["VolumeId"]] == "live"
    assert states[old] == "detached"


def test_the_wait_for_the_volume_is_said_and_bounded(
    fleet: Fleet, molibackup: Any, new_volumes: dict[str, str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    assert molibackup(instance_tag="Backup=daily").status == 0
    new_volumes["state"] = "creating"  # and so it stays
    # The wait's own clock runs 20 s a poll: five minutes pass in a moment.
    now = [0.0]
    monkeypatch.setattr(volumes, "clock", lambda: now[0])
    monkeypatch.setattr(volumes, "pause", lambda seconds: now.__setitem__(0, now[0] + 20))
    result = molibackup("restore", "--job", "db", "--volume", web.volumes["data"],
                        "--wait-timeout", "5m", instance_tag="Backup=daily")
    assert result.status == 2
    said = re.findall(r"waiting for vol-\w+ to become available: (\d+) s so far, at most "
                      r"300 s", result.log)
    assert said == ["0", "60", "120", "180", "240"], result.log
    assert "not available after 300 s" in result.log
