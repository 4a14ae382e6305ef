"""The ebs-snapshot module against the EC2 emulator, through the CLI as users run it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRun, job
from tests.support.ec2proxy import EC2Proxy, Fault
from tests.support.fleet import Fleet, tags_of
from tests.support.imds import MetadataServer

Run = Callable[..., CliRun]
NAME_PATTERN = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.fixture
def backup(write_config: Callable[..., Path], run_cli: Run) -> Callable[..., CliRun]:
    """Run one job (given as options) or several (given as a jobs mapping)."""

    def run(jobs: dict[str, Any] | None = None, *args: str,
            settings: dict[str, Any] | None = None, **options: Any) -> CliRun:
        path = write_config({"global": settings or {},
                             "jobs": jobs or {"nightly": job(**options)}})
        return run_cli("-c", str(path), *args)

    return run



def new_snapshot_volumes(fleet: Fleet, job_name: str = "nightly") -> list[str]:
    return sorted(tags_of(s)["molibackup:volume-id"] for s in fleet.job_snapshots(job_name)
                  if re.search(NAME_PATTERN, s["Description"]))


# --- selecting ----------------------------------------------------------------------------


def test_instance_id_backs_up_every_volume_of_that_instance(fleet: Fleet, backup: Any) -> None:
    web = fleet.instance({"Name": "web"}, {"data": {}, "logs": {}})
    fleet.instance({"Name": "other"}, {"other-data": {}})
    result = backup(instance_id=web.instance_id)
    assert result.status == 0, result.log
    assert new_snapshot_volumes(fleet) == sorted(web.all_volumes)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param({"instance_tag": "Backup=daily"}, ["prod", "staging"], id="instance_tag"),
        pytest.param({"instance_tags": {"Backup": "daily", "Env": "prod"}}, ["prod"],
                     id="instance_tags-all-must-match"),
        pytest.param({"instance_tag": "Backup=daily", "instance_tags": {"Env": "prod"}},
                     ["prod"], id="both-forms-combined"),
    ],
)
def test_instance_tags_select_instances_carrying_all_of_them(
    fleet: Fleet, backup: Any, selector: dict[str, Any], expected: list[str]
) -> None:
    instances = {
        "prod": fleet.instance({"Backup": "daily", "Env": "prod"}),
        "staging": fleet.instance({"Backup": "daily", "Env": "staging"}),
        "wrong-case": fleet.instance({"Backup": "Daily", "Env": "prod"}),
        "untagged": fleet.instance({}),
    }
    result = backup(**selector)
    assert result.status == 0, result.log
    assert new_snapshot_volumes(fleet) == sorted(
        v for name in expected for v in instances[name].all_volumes)


@pytest.mark.parametrize(
    "selector",
    [pytest.param({"volume_tag": "Backup=true"}, id="volume_tag"),
     pytest.param({"volume_tags": {"Backup": "true"}}, id="volume_tags")],
)
def test_volume_tags_narrow_the_volumes_of_the_selected_instances(
    fleet: Fleet, backup: Any, selector: dict[str, Any]
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {"Backup": "true"}, "tmp": {}})
    other = fleet.instance({}, {"other": {"Backup": "true"}})
    result = backup(instance_tag="Backup=daily", **selector)
    assert result.status == 0, result.log
    assert new_snapshot_volumes(fleet) == [web.volumes["data"]]
    assert other.volumes["other"] not in new_snapshot_volumes(fleet)


def test_without_instance_selection_every_attached_volume_in_the_region_is_backed_up(
    fleet: Fleet, backup: Any
) -> None:
    a = fleet.instance({"Name": "a"}, {"a-data": {}})
    b = fleet.instance({}, {})
    loose = fleet.volume({"Name": "not-attached"})
    result = backup()
    assert result.status == 0, result.log
    assert "every instance in us-west-2 is in scope" in result.log
    assert new_snapshot_volumes(fleet) == sorted([*a.all_volumes, *b.all_volumes])
    assert loose not in new_snapshot_volumes(fleet)


def test_instance_id_and_tags_narrow_each_other(fleet: Fleet, backup: Any) -> None:
    untagged = fleet.instance({}, {})
    tagged = fleet.instance({"Backup": "daily"}, {})
    assert backup(instance_id=tagged.instance_id, instance_tag="Backup=daily").status == 0
    result = backup(instance_id=untagged.instance_id, instance_tag="Backup=daily")
    assert result.status == 2
    assert "no volume matched" in result.log


def test_a_stopped_instance_is_still_backed_up(fleet: Fleet, backup: Any, ec2: Any) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    ec2.stop_instances(InstanceIds=[web.instance_id])
    assert backup(instance_tag="Backup=daily").status == 0
    assert new_snapshot_volumes(fleet) == sorted(web.all_volumes)


def test_an_unknown_instance_id_fails_the_job_with_its_name(fleet: Fleet, backup: Any) -> None:
    result = backup(instance_id="i-0123456789abcdef0")
    assert result.status == 2
    assert "instance i-0123456789abcdef0 does not exist in region us-west-2" in result.log
    assert "Traceback" not in result.log


def test_a_job_that_matches_nothing_fails_and_says_what_it_looked_for(
    fleet: Fleet, backup: Any
) -> None:
    fleet.instance({"Backup": "weekly"}, {})
    result = backup(instance_tags={"Backup": "daily"})
    assert result.status == 2
    assert "no volume matched (region us-west-2, instance tags {'Backup': 'daily'})" in result.log


def test_allow_empty_turns_an_empty_match_into_a_warning(fleet: Fleet, backup: Any) -> None:
    result = backup(instance_tags={"Backup": "daily"}, allow_empty=True)
    assert result.status == 0, result.log
    assert "WARNING" in result.log
    assert "no volume matched" in result.log


# --- creating -----------------------------------------------------------------------------


def test_snapshots_are_named_and_tagged_at_creation(fleet: Fleet, backup: Any) -> None:
    web = fleet.instance({"Backup": "daily"}, {"web-data": {"Team": "web"}})
    assert backup(instance_tag="Backup=daily").status == 0
    by_volume = {tags_of(s)["molibackup:volume-id"]: s for s in fleet.job_snapshots("nightly")}
    data = by_volume[web.volumes["web-data"]]
    tags = tags_of(data)
    assert re.fullmatch(rf"web-data-{NAME_PATTERN}", data["Description"])
    assert tags["Name"] == data["Description"]
    assert tags["CreatedBy"] == "molibackup"
    assert tags["molibackup:job"] == "nightly"
    assert tags["molibackup:instance-id"] == web.instance_id
    assert re.fullmatch(NAME_PATTERN, tags["molibackup:created-at"])
    assert tags["molibackup:run-id"]
    assert "Team" not in tags, "volume tags are copied only when asked"
    root = by_volume[web.root_volume]
    assert root["Description"].startswith(f"{web.root_volume}-"), "no Name tag: the volume id"


def test_copy_volume_tags_copies_the_volumes_own_tags_but_not_ours(
    fleet: Fleet, backup: Any
) -> None:
    web = fleet.instance({"Backup": "daily"},
                         {"web-data": {"Team": "web", "CostCenter": "42",
                                       "CreatedBy": "terraform"}})
    assert backup(instance_tag="Backup=daily", volume_tag="Team=web", copy_volume_tags=True,
                  ).status == 0
    (snap,) = fleet.job_snapshots("nightly")
    tags = tags_of(snap)
    assert tags["Team"] == "web"
    assert tags["CostCenter"] == "42"
    assert tags["CreatedBy"] == "molibackup", "our ownership tags always win"
    assert tags["molibackup:volume-id"] == web.volumes["web-data"]


# --- rotating -----------------------------------------------------------------------------


def test_snapshots_older_than_retention_are_deleted_and_younger_ones_kept(
    fleet: Fleet, backup: Any
) -> None:
    web = fleet.instance({"Backup": "daily"}, {})
    volume = web.root_volume
    young = fleet.job_snapshot(volume, "nightly", age_days=29)
    old = fleet.job_snapshot(volume, "nightly", age_days=31)
    older = fleet.job_snapshot(volume, "nightly", age_days=200)
    result = backup(instance_tag="Backup=daily", retention=30)
    assert result.status == 0, result.log
    remaining = fleet.snapshot_ids()
    assert young in remaining
    assert old not in remaining
    assert older not in remaining
    assert re.search(rf"deleted snapshot {old} old-31d volume={volume} age=31.0d retention=30d",
                     result.log)
    assert "created 1, deleted 2, kept 2, skipped 0, failed 0" in result.log


def test_only_the_jobs_own_snapshots_are_ever_considered(
    fleet: Fleet, backup: Any, ec2: Any
) -> None:
    web = fleet.instance({"Backup": "daily"}, {})
    volume = web.root_volume
    hand_made = fleet.snapshot(volume, {"Name": "before-upgrade"}, age_days=400)
    untagged = fleet.snapshot(volume, age_days=400)
    other_tool = fleet.snapshot(volume, {"CreatedBy": "dlm"}, age_days=400)
    original_go_tool = fleet.snapshot(volume, {"CreatedBy": "molibackup"}, age_days=400)
    other_job = fleet.job_snapshot(volume, "weekly", age_days=400)
    image = ec2.create_image(InstanceId=web.instance_id, Name="golden")["ImageId"]
    ami_snapshots = {s["SnapshotId"] for s in ec2.describe_snapshots(
        Filters=[{"Name": "description", "Values": [f"*{image}*"]}])["Snapshots"]}
    result = backup(instance_tag="Backup=daily", retention=1)
    assert result.status == 0, result.log
    remaining = fleet.snapshot_ids() | {s["SnapshotId"] for s in ec2.describe_snapshots(
        OwnerIds=["self"])["Snapshots"]}
    for snapshot in (hand_made, untagged, other_tool, original_go_tool, other_job,
                     *ami_snapshots):
        assert snapshot in remaining
    assert "deleted 0" in result.log


def test_two_jobs_on_one_volume_each_keep_their_own_retention(fleet: Fleet, backup: Any) -> None:
    web = fleet.instance({"Backup": "daily"}, {})
    volume = web.root_volume
    daily_60 = fleet.job_snapshot(volume, "daily", age_days=60)
    monthly_60 = fleet.job_snapshot(volume, "monthly", age_days=60)
    monthly_120 = fleet.job_snapshot(volume, "monthly", age_days=120)
    result = backup({"daily": job(instance_tag="Backup=daily", retention=30),
                     "monthly": job(instance_tag="Backup=daily", retention=90)})
    assert result.status == 0, result.log
    remaining = fleet.snapshot_ids()
    assert daily_60 not in remaining
    assert monthly_60 in remaining
    assert monthly_120 not in remaining


def test_a_failed_snapshot_keeps_every_old_one_of_that_volume(
    fleet: Fleet, backup: Any, proxy: EC2Proxy
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"broken": {}, "fine": {}})
    broken, fine = web.volumes["broken"], web.volumes["fine"]
    broken_old = [fleet.job_snapshot(broken, "nightly", age_days=d) for d in (40, 50)]
    fine_old = fleet.job_snapshot(fine, "nightly", age_days=40)

    def fail_broken_volume(action: str, params: dict[str, str]) -> Fault | None:
        if action == "CreateSnapshot" and params.get("VolumeId") == broken:
            return Fault(400, "IncorrectState", f"The volume '{broken}' is not available.")
        return None

    proxy.state.fault_rules.append(fail_broken_volume)
    result = backup(instance_tag="Backup=daily", retention=30)
    assert result.status == 2
    assert f"volume {broken} (broken): snapshot not created" in result.log
    remaining = fleet.snapshot_ids()
    assert set(broken_old) <= remaining, "no new backup: the old ones must all stay"
    assert fine_old not in remaining, "other volumes are rotated as usual"


def test_min_keep_keeps_the_newest_completed_backups_of_a_detached_volume(
    fleet: Fleet, backup: Any, ec2: Any
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"gone": {}})
    gone = web.volumes["gone"]
    snaps = [fleet.job_snapshot(gone, "nightly", age_days=d) for d in (40, 50, 60)]
    ec2.detach_volume(VolumeId=gone, InstanceId=web.instance_id)
    ec2.delete_volume(VolumeId=gone)
    result = backup(instance_tag="Backup=daily", retention=30, min_keep=2)
    assert result.status == 0, result.log
    remaining = fleet.snapshot_ids()
    assert snaps[0] in remaining
    assert snaps[1] in remaining
    assert snaps[2] not in remaining


def test_a_pending_snapshot_does_not_replace_the_last_completed_one(
    fleet: Fleet, backup: Any
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"detached-later": {}})
    volume = web.volumes["detached-later"]
    fleet.client.detach_volume(VolumeId=volume, InstanceId=web.instance_id)
    fleet.job_snapshot(volume, "nightly", age_days=35, state="pending")
    completed = fleet.job_snapshot(volume, "nightly", age_days=40)
    assert backup(instance_tag="Backup=daily").status == 0
    assert completed in fleet.snapshot_ids()


def test_snapshots_in_use_by_an_ami_are_skipped_with_a_warning(
    fleet: Fleet, backup: Any, ec2: Any, aws_env: Any
) -> None:
    web = fleet.instance({"Backup": "daily"}, {})
    in_use = fleet.job_snapshot(web.root_volume, "nightly", age_days=90)
    expired = fleet.job_snapshot(web.root_volume, "nightly", age_days=91)
    image = ec2.register_image(Name="from-backup", RootDeviceName="/dev/sda1",
                               BlockDeviceMappings=[{"DeviceName": "/dev/sda1",
                                                     "Ebs": {"SnapshotId": in_use}}])["ImageId"]
    aws_env.backend("us-west-2").snapshots[in_use].from_ami = image
    result = backup(instance_tag="Backup=daily")
    assert result.status == 0, result.log
    assert re.search(rf"WARNING .*skipped snapshot {in_use} .*in use by an AMI", result.log)
    assert expired not in fleet.snapshot_ids()
    assert "skipped 1" in result.log


def test_locked_snapshots_are_skipped_with_a_warning(
    fleet: Fleet, backup: Any, proxy: EC2Proxy
) -> None:
    # The emulator has no snapshot lock: the proxy answers DeleteSnapshot as EC2 does for a
    # locked snapshot (an error whose message names the lock).
    web = fleet.instance({"Backup": "daily"}, {})
    locked = fleet.job_snapshot(web.root_volume, "nightly", age_days=90)
    expired = fleet.job_snapshot(web.root_volume, "nightly", age_days=91)
    proxy.state.fault_rules.append(lambda action, params: Fault(
        400, "InvalidParameterValue", f"The snapshot '{locked}' is locked and can't be deleted.")
        if action == "DeleteSnapshot" and params["SnapshotId"] == locked else None)
    result = backup(instance_tag="Backup=daily")
    assert result.status == 0, result.log
    assert re.search(rf"WARNING .*skipped snapshot {locked} .*locked against deletion",
                     result.log)
    assert expired not in fleet.snapshot_ids()


def test_a_snapshot_already_gone_counts_as_deleted(
    fleet: Fleet, backup: Any, proxy: EC2Proxy
) -> None:
    web = fleet.instance({"Backup": "daily"}, {})
    vanishing = fleet.job_snapshot(web.root_volume, "nightly", age_days=90)
    proxy.state.fault_rules.append(lambda action, params: Fault(
        400, "InvalidSnapshot.NotFound", f"The snapshot '{vanishing}' does not exist.")
        if action == "DeleteSnapshot" else None)
    result = backup(instance_tag="Backup=daily")
    assert result.status == 0, result.log
    assert f"deleted snapshot {vanishing}" in result.log
    assert "(already gone)" in result.log


def test_other_delete_errors_fail_the_job_after_trying_the_rest(
    fleet: Fleet, backup: Any, proxy: EC2Proxy
) -> None:
    web = fleet.instance({"Backup": "daily"}, {})
    stubborn = fleet.job_snapshot(web.root_volume, "nightly", age_days=90)
    others = [fleet.job_snapshot(web.root_volume, "nightly", age_days=d) for d in (91, 92)]
    proxy.state.fault_rules.append(lambda action, params: Fault(
        400, "InvalidParameterValue", "Something else went wrong.")
        if action == "DeleteSnapshot" and params["SnapshotId"] == stubborn else None)
    result = backup(instance_tag="Backup=daily", settings={"max_attempts": 1})
    assert result.status == 2
    assert f"could not delete snapshot {stubborn}" in result.log
    assert not set(others) & fleet.snapshot_ids()


def test_pagination_follows_every_page(fleet: Fleet, backup: Any, proxy: EC2Proxy) -> None:
    proxy.state.max_page = 2
    instances = [fleet.instance({"Backup": "daily"}, {f"data-{i}": {}}) for i in range(3)]
    old = [fleet.job_snapshot(i.root_volume, "nightly", age_days=d)
           for i in instances for d in (40, 41)]
    result = backup(instance_tag="Backup=daily")
    assert result.status == 0, result.log
    assert len(new_snapshot_volumes(fleet)) == 6
    assert not set(old) & fleet.snapshot_ids()
    for action in ("DescribeInstances", "DescribeVolumes", "DescribeSnapshots"):
        pages = [p for a, p in proxy.state.requests if a == action]
        assert len(pages) >= 2, f"{action} was not paged"
        assert all(p.get("MaxResults") for p in pages), f"{action} without MaxResults"
        assert any(p.get("NextToken") for p in pages), f"{action}: NextToken not followed"


def test_dry_run_changes_nothing_and_says_what_it_would_do(
    fleet: Fleet, backup: Any, proxy: EC2Proxy
) -> None:
    web = fleet.instance({"Backup": "daily"}, {})
    fleet.job_snapshot(web.root_volume, "nightly", age_days=90)
    expired = fleet.job_snapshot(web.root_volume, "nightly", age_days=91)
    before = fleet.snapshot_ids()
    result = backup(instance_tag="Backup=daily", dryrun=True)
    assert result.status == 0, result.log
    assert fleet.snapshot_ids() == before
    assert "dry run: would create snapshot" in result.log
    assert f"dry run: would delete snapshot {expired}" in result.log
    assert "would have created 1, would have deleted 1, kept 1" in result.log
    assert not {"CreateSnapshot", "DeleteSnapshot", "CreateTags"} & set(proxy.calls)


def test_the_dry_run_flag_overrides_every_job(
    fleet: Fleet, write_config: Callable[..., Path], run_cli: Run
) -> None:
    fleet.instance({"Backup": "daily"}, {})
    path = write_config({"jobs": {"a": job(instance_tag="Backup=daily"),
                                  "b": job(instance_tag="Backup=daily")}})
    result = run_cli("-c", str(path), "--dry-run")
    assert result.status == 0
    assert fleet.snapshots() == []


# --- the local instance, through IMDSv2 ---------------------------------------------------


def test_local_finds_the_instance_through_imdsv2(
    fleet: Fleet, backup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = fleet.instance({}, {"data": {}})
    fleet.instance({}, {"elsewhere": {}})
    with MetadataServer(web.instance_id) as imds:
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
        monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
        result = backup(instance_id="local")
    assert result.status == 0, result.log
    assert f"instance_id 'local' is {web.instance_id}" in result.log
    assert imds.requests[0] == ("PUT", "/latest/api/token"), "IMDSv2: token first"
    assert new_snapshot_volumes(fleet) == sorted(web.all_volumes)


def test_local_without_metadata_says_why_and_what_to_do(
    fleet: Fleet, backup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.instance({}, {})
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", "1")
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    result = backup(instance_id="local")
    assert result.status == 2
    assert "instance metadata service at http://127.0.0.1:9/ did not answer" in result.log
    assert "hop limit must be 2" in result.log
    assert "Traceback" not in result.log


def test_local_with_metadata_disabled_says_so(fleet: Fleet, backup: Any) -> None:
    result = backup(instance_id="local")
    assert result.status == 2
    assert "AWS_EC2_METADATA_DISABLED=true" in result.log


# --- the original README's examples -------------------------------------------------------


def test_the_original_readmes_three_jobs_run_as_documented(
    fleet: Fleet, write_config: Callable[..., Path], run_cli: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = fleet.instance({}, {"one-data": {}})
    here = fleet.instance({}, {"here-data": {}})
    tagged = fleet.instance({"Molibackup_enabled": "true"},
                            {"tagged-data": {"Molibackup_enabled": "true"}, "tagged-tmp": {}})
    text = f"""\
---
global:
  loglevel: info

jobs:
    myjob01:
      module: ebs-snapshot
      enabled: true
      dryrun: false
      retention: 180
      aws_region: "us-west-2"
      accesskey_id: "MyAccessKeyId"
      accesskey_secret: "MyAccessKeySecret"
      instance_id: "{one.instance_id}"
    myjob02:
      module: ebs-snapshot
      enabled: true
      dryrun: false
      retention: 60
      aws_region: "us-west-2"
      accesskey_id: "MyAccessKeyId"
      accesskey_secret: "MyAccessKeySecret"
      instance_id: "local"
    myjob03:
      module: ebs-snapshot
      enabled: true
      dryrun: false
      retention: 90
      aws_region: "us-west-2"
      accesskey_id: "MyAccessKeyId"
      accesskey_secret: "MyAccessKeySecret"
      instance_tag: "Molibackup_enabled=true"
      volume_tag: "Molibackup_enabled=true"
"""
    with MetadataServer(here.instance_id) as imds:
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
        monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
        result = run_cli("-c", str(write_config(text)))
    assert result.status == 0, result.log
    assert new_snapshot_volumes(fleet, "myjob01") == sorted(one.all_volumes)
    assert new_snapshot_volumes(fleet, "myjob02") == sorted(here.all_volumes)
    assert new_snapshot_volumes(fleet, "myjob03") == [tagged.volumes["tagged-data"]]
    assert "MyAccessKeySecret" not in result.log
