"""`restore --as volumesnapshots`: a claim given back through the cluster's CSI snapshots
(no EBS volume made by molibackup), in the home region or from a copy_to region."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.conftest import CliRun
from tests.support import csi
from tests.support.ec2proxy import EC2Proxy
from tests.support.fleet import Fleet, csi_volume

DR_REGION = "eu-central-1"
MUTATING = {"CreateVolume", "AttachVolume", "RestoreSnapshotTier", "CreateTags",
            "DeleteSnapshot", "CreateSnapshot", "CreateSnapshots"}
CLAIMS = {"persistent_volume_claims": {"namespaces": ["payments", "search"]}}


@pytest.fixture
def molibackup(job_cli: Callable[[str], Callable[..., CliRun]]) -> Callable[..., CliRun]:
    return job_cli("db")


def volumes_in(ec2: Any) -> set[str]:
    return {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}


def objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_a_claim_becomes_a_content_a_snapshot_and_a_claim_and_no_volume(
    fleet: Fleet, molibackup: Any, ec2: Any, tmp_path: Path
) -> None:
    node = fleet.instance({"Name": "node-1"}).instance_id
    csi_volume(fleet, "payments", "data-db-0", attach_to=node)
    assert molibackup(**CLAIMS).status == 0
    (snapshot,) = [s["SnapshotId"] for s in fleet.job_snapshots("db")]
    before = volumes_in(ec2)
    manifest = tmp_path / "restore.yaml"
    result = molibackup("restore", "--job", "db", "--claim", "payments/data-db-0", "--as",
                        "volumesnapshots", "--manifest", str(manifest), "--storage-class",
                        "ebs-gp3", "--output", "json", **CLAIMS)
    assert result.status == 0, result.log
    assert volumes_in(ec2) == before
    content, volume_snapshot, claim = objects(manifest)
    for document in (content, volume_snapshot, claim):
        csi.check(document)
    assert content["spec"]["source"] == {"snapshotHandle": snapshot}
    assert content["spec"]["deletionPolicy"] == "Retain"
    assert claim["metadata"] == {**claim["metadata"], "name": "data-db-0",
                                 "namespace": "payments"}
    assert claim["spec"]["dataSource"]["name"] == volume_snapshot["metadata"]["name"]
    assert claim["spec"]["storageClassName"] == "ebs-gp3"
    document = json.loads(result.out)
    assert document["status"] == "handed over"
    assert "readyToUse" in document["next_step"]
    # The same command again: the same objects, nothing made.
    again = molibackup("restore", "--job", "db", "--claim", "payments/data-db-0", "--as",
                       "volumesnapshots", "--manifest", str(tmp_path / "again.yaml"),
                       "--storage-class", "ebs-gp3", **CLAIMS)
    assert again.status == 0, again.log
    assert (tmp_path / "again.yaml").read_text() == manifest.read_text()
    assert volumes_in(ec2) == before


def test_from_a_copy_region_the_handle_is_the_copy_s(
    fleet: Fleet, molibackup: Any, aws_env: Any, tmp_path: Path
) -> None:
    node = fleet.instance({"Name": "node-1"}).instance_id
    csi_volume(fleet, "payments", "data-db-0", attach_to=node)
    options = {**CLAIMS, "copy_to": [{"region": DR_REGION}]}
    assert molibackup(**options).status == 0
    dr = boto3.client("ec2", region_name=DR_REGION, endpoint_url=aws_env.url)
    copies = [s["SnapshotId"] for s in dr.describe_snapshots(OwnerIds=["self"], Filters=[
        {"Name": "tag:molibackup:job", "Values": ["db"]}])["Snapshots"]]
    assert len(copies) == 1
    manifest = tmp_path / "dr.yaml"
    result = molibackup("restore", "--job", "db", "--claim", "payments/data-db-0", "--as",
                        "volumesnapshots", "--from-region", DR_REGION, "--manifest",
                        str(manifest), **options)
    assert result.status == 0, result.log
    content = objects(manifest)[0]
    assert content["spec"]["source"]["snapshotHandle"] == copies[0]


def test_a_dry_run_writes_nothing_and_names_the_claim_and_its_snapshot(
    fleet: Fleet, molibackup: Any, proxy: EC2Proxy, tmp_path: Path
) -> None:
    node = fleet.instance({"Name": "node-1"}).instance_id
    csi_volume(fleet, "payments", "data-db-0", attach_to=node)
    assert molibackup(**CLAIMS).status == 0
    (snapshot,) = [s["SnapshotId"] for s in fleet.job_snapshots("db")]
    proxy.state.reset_counts()
    manifest = tmp_path / "dry.yaml"
    result = molibackup("restore", "--job", "db", "--claim", "payments/data-db-0", "--as",
                        "volumesnapshots", "--manifest", str(manifest), "--dry-run", **CLAIMS)
    assert result.status == 0, result.log
    assert not manifest.exists()
    assert not MUTATING & set(proxy.calls)
    assert f"payments/data-db-0 restoring from {snapshot}" in result.log


@pytest.mark.parametrize(("args", "expected"), [
    (("--attach", "i-0123456789abcdef0"), "--attach: --as volumesnapshots makes no volume"),
    (("--iops", "4000"), "--iops: --as volumesnapshots makes no volume"),
    (("--throughput", "250"), "--throughput: --as volumesnapshots"),
    (("--volume-type", "gp3"), "--volume-type: --as volumesnapshots"),
    (("--availability-zone", "us-west-2a"), "--availability-zone: --as volumesnapshots"),
], ids=["attach", "iops", "throughput", "volume-type", "availability-zone"])
def test_volume_options_are_refused_in_one_line(
    molibackup: Any, proxy: EC2Proxy, tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    result = molibackup("restore", "--job", "db", "--claim", "payments/data-db-0", "--as",
                        "volumesnapshots", "--manifest", str(tmp_path / "m.yaml"), *args,
                        **CLAIMS)
    assert result.status == 1
    errors = [line for line in result.log.splitlines() if " ERROR " in line]
    assert expected in errors[0]
    assert not MUTATING & set(proxy.calls)
