"""`restore --claims NAMESPACE`: every claim of a namespace the job backs up, from one
moment, as volumes (PersistentVolumes and claims) or as VolumeSnapshots."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.conftest import CliRun
from tests.support import csi
from tests.support.ec2proxy import EC2Proxy
from tests.support.fleet import Fleet, csi_volume, tags_of

DR_REGION = "eu-central-1"
CLAIMS = {"persistent_volume_claims": {"namespaces": ["payments", "search"]}}
MUTATING = {"CreateVolume", "AttachVolume", "RestoreSnapshotTier", "CreateTags",
            "DeleteSnapshot", "CreateSnapshot", "CreateSnapshots"}
STATEFULSET = ["payments/data-db-0", "payments/data-db-1", "payments/data-db-2"]


@pytest.fixture
def molibackup(job_cli: Callable[[str], Callable[..., CliRun]]) -> Callable[..., CliRun]:
    return job_cli("db")


@pytest.fixture
def namespace(fleet: Fleet, molibackup: Any) -> dict[str, str]:
    """A StatefulSet's three claims in payments and one claim in search, backed up by two
    runs a second apart."""
    node = fleet.instance({"Name": "node-1"}).instance_id
    volumes = {claim: csi_volume(fleet, *claim.split("/"), attach_to=node)
               for claim in [*STATEFULSET, "search/data-es-0"]}
    for _ in range(2):
        assert molibackup(**CLAIMS).status == 0
        time.sleep(1.1)  # EC2 times snapshots to the second
    return volumes


def runs(fleet: Fleet) -> list[str]:
    """The job's runs, oldest first."""
    started: dict[str, Any] = {}
    for snapshot in fleet.job_snapshots("db"):
        run = tags_of(snapshot)["molibackup:run-id"]
        started[run] = min(started.get(run, snapshot["StartTime"]), snapshot["StartTime"])
    return sorted(started, key=lambda run: started[run])


def of_run(fleet: Fleet, run: str) -> dict[str, str]:
    """Claim -> the snapshot the run made of it."""
    return {f"{tags['molibackup:pvc-namespace']}/{tags['molibackup:pvc-name']}":
            snapshot["SnapshotId"] for snapshot in fleet.job_snapshots("db")
            if (tags := tags_of(snapshot))["molibackup:run-id"] == run}


def restore(molibackup: Any, tmp_path: Path, *args: str, name: str = "ns.yaml",
            options: dict[str, Any] | None = None) -> tuple[CliRun, list[dict[str, Any]]]:
    manifest = tmp_path / name
    result = molibackup("restore", "--job", "db", "--claims", "payments", "--manifest",
                        str(manifest), "--output", "json", *args, **(options or CLAIMS))
    documents = ([d for d in yaml.safe_load_all(manifest.read_text()) if d]
                 if manifest.exists() else [])
    return result, documents


def test_every_claim_of_the_namespace_comes_back_from_the_newest_run(
    fleet: Fleet, molibackup: Any, namespace: dict[str, str], ec2: Any, tmp_path: Path
) -> None:
    newest = of_run(fleet, runs(fleet)[-1])
    result, documents = restore(molibackup, tmp_path)
    assert result.status == 0, result.log
    document = json.loads(result.out)
    assert {v["claim"]: v["snapshot_id"] for v in document["volumes"]} == {
        claim: newest[claim] for claim in STATEFULSET}
    assert document["run_id"] == runs(fleet)[-1]
    volumes = [d for d in documents if d["kind"] == "PersistentVolume"]
    claims = [d for d in documents if d["kind"] == "PersistentVolumeClaim"]
    assert sorted(c["metadata"]["name"] for c in claims) == ["data-db-0", "data-db-1",
                                                            "data-db-2"]
    assert len({v["metadata"]["name"] for v in volumes}) == 3
    for claim in claims:
        (bound,) = [v for v in volumes if v["metadata"]["name"] == claim["spec"]["volumeName"]]
        assert bound["spec"]["claimRef"]["name"] == claim["metadata"]["name"]
    for document_ in documents:
        csi.check(document_)
    # The same command again makes nothing new.
    made = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    again, _ = restore(molibackup, tmp_path, name="again.yaml")
    assert again.status == 0, again.log
    assert {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]} == made
    assert json.loads(again.out)["restore_id"] == document["restore_id"]


def test_a_newer_run_that_lacks_a_claim_is_passed_over_and_said(
    fleet: Fleet, molibackup: Any, namespace: dict[str, str], ec2: Any, tmp_path: Path
) -> None:
    older, newer = runs(fleet)
    ec2.delete_snapshot(SnapshotId=of_run(fleet, newer)["payments/data-db-1"])
    result, _ = restore(molibackup, tmp_path)
    assert result.status == 0, result.log
    document = json.loads(result.out)
    assert document["run_id"] == older
    assert {v["snapshot_id"] for v in document["volumes"]} == {
        of_run(fleet, older)[claim] for claim in STATEFULSET}
    assert f"run {newer}" in result.log
    assert "passed over: it has no completed snapshot of payments/data-db-1" in result.log


def test_no_run_holding_every_claim_is_refused_naming_what_is_missing(
    fleet: Fleet, molibackup: Any, namespace: dict[str, str], tmp_path: Path, proxy: EC2Proxy
) -> None:
    for run in runs(fleet):
        fleet.client.delete_snapshot(SnapshotId=of_run(fleet, run)["payments/data-db-2"])
    proxy.state.reset_counts()
    result, documents = restore(molibackup, tmp_path)
    assert result.status == 1
    errors = [line for line in result.log.splitlines() if " ERROR " in line]
    assert "missing payments/data-db-2" in errors[0]
    assert documents == []
    assert not MUTATING & set(proxy.calls)


def test_at_takes_an_older_moment_and_namespace_moves_every_claim(
    fleet: Fleet, molibackup: Any, namespace: dict[str, str], tmp_path: Path
) -> None:
    older = runs(fleet)[0]
    moment = min(s["StartTime"] for s in fleet.job_snapshots("db")
                 if tags_of(s)["molibackup:run-id"] == runs(fleet)[1])
    at = (moment - timedelta(milliseconds=1)).isoformat()
    result, documents = restore(molibackup, tmp_path, "--at", at, "--namespace",
                                "payments-restored")
    assert result.status == 0, result.log
    assert json.loads(result.out)["run_id"] == older
    claims = [d for d in documents if d["kind"] == "PersistentVolumeClaim"]
    assert {c["metadata"]["namespace"] for c in claims} == {"payments-restored"}
    assert {d["spec"]["claimRef"]["namespace"] for d in documents
            if d["kind"] == "PersistentVolume"} == {"payments-restored"}


def test_a_dry_run_changes_nothing_and_names_each_claim_with_its_snapshot(
    fleet: Fleet, molibackup: Any, namespace: dict[str, str], proxy: EC2Proxy, tmp_path: Path
) -> None:
    newest = of_run(fleet, runs(fleet)[-1])
    proxy.state.reset_counts()
    result, documents = restore(molibackup, tmp_path, "--dry-run")
    assert result.status == 0, result.log
    assert documents == []
    assert not MUTATING & set(proxy.calls)
    for claim in STATEFULSET:
        assert f"claim {claim} (from {newest[claim]})" in result.log


def test_as_volumesnapshots_a_namespace_makes_no_volume(
    fleet: Fleet, molibackup: Any, namespace: dict[str, str], ec2: Any, tmp_path: Path
) -> None:
    before = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    result, documents = restore(molibackup, tmp_path, "--as", "volumesnapshots")
    assert result.status == 0, result.log
    assert {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]} == before
    assert [d["kind"] for d in documents] == [
        "VolumeSnapshotContent", "VolumeSnapshot", "PersistentVolumeClaim"] * 3
    for document in documents:
        csi.check(document)
    newest = of_run(fleet, runs(fleet)[-1])
    assert {d["spec"]["source"]["snapshotHandle"] for d in documents
            if d["kind"] == "VolumeSnapshotContent"} == {newest[c] for c in STATEFULSET}


def test_from_a_copy_region_the_namespace_comes_back_from_its_copies(
    fleet: Fleet, molibackup: Any, aws_env: Any, tmp_path: Path
) -> None:
    node = fleet.instance({"Name": "node-1"}).instance_id
    for claim in STATEFULSET:
        csi_volume(fleet, *claim.split("/"), attach_to=node)
    options = {**CLAIMS, "copy_to": [{"region": DR_REGION}]}
    assert molibackup(**options).status == 0
    dr = boto3.client("ec2", region_name=DR_REGION, endpoint_url=aws_env.url)
    copies = {s["SnapshotId"] for s in dr.describe_snapshots(OwnerIds=["self"], Filters=[
        {"Name": "tag:molibackup:job", "Values": ["db"]}])["Snapshots"]}
    assert len(copies) == 3
    result, documents = restore(molibackup, tmp_path, "--from-region", DR_REGION, "--as",
                                "volumesnapshots", options=options)
    assert result.status == 0, result.log
    assert {d["spec"]["source"]["snapshotHandle"] for d in documents
            if d["kind"] == "VolumeSnapshotContent"} == copies
    made, _ = restore(molibackup, tmp_path, "--from-region", DR_REGION,
                      "--availability-zone", f"{DR_REGION}a", name="dr-volumes.yaml",
                      options=options)
    assert made.status == 0, made.log
    assert {v["snapshot_id"] for v in json.loads(made.out)["volumes"]} == copies


@pytest.mark.parametrize(("args", "expected"), [
    (("--claims", "billing", "--manifest", "-"), "the job backs up no claim of namespace "
                                                 "billing"),
    (("--claims", "payments"), "--claims writes each claim's PersistentVolume"),
    (("--claims", "payments", "--manifest", "-", "--claim-name", "x"),
     "apply to one volume: leave them out with --claims"),
], ids=["namespace-without-claims", "without-manifest", "claim-name"])
def test_the_refusals_come_before_any_change(
    molibackup: Any, namespace: dict[str, str], proxy: EC2Proxy,
    args: tuple[str, ...], expected: str
) -> None:
    proxy.state.reset_counts()
    result = molibackup("restore", "--job", "db", *args, **CLAIMS)
    assert result.status == 1, result.log
    errors = [line for line in result.log.splitlines() if " ERROR " in line]
    assert expected in errors[0]
    assert not MUTATING & set(proxy.calls)
