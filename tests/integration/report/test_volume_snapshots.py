"""`molibackup snapshots --output volumesnapshots`: a claim's backups handed to the cluster as
pre-provisioned VolumeSnapshotContent and VolumeSnapshot pairs, for `kubectl apply -f -`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.conftest import CliRun
from tests.support import csi
from tests.support.fleet import Fleet, csi_volume

CLAIMS = {"persistent_volume_claims": {"namespaces": ["payments", "search"]}}


@pytest.fixture
def molibackup(job_cli: Callable[[str], Callable[..., CliRun]]) -> Callable[..., CliRun]:
    return job_cli("db")


@pytest.fixture
def claims(fleet: Fleet, molibackup: Any) -> dict[str, str]:
    """Three claims of a StatefulSet and one elsewhere, backed up twice."""
    node = fleet.instance({"Name": "node-1"}).instance_id
    volumes = {f"payments/data-db-{i}": csi_volume(fleet, "payments", f"data-db-{i}",
                                                   attach_to=node) for i in range(3)}
    volumes["search/data-es-0"] = csi_volume(fleet, "search", "data-es-0", attach_to=node)
    for _ in range(2):
        assert molibackup(**CLAIMS).status == 0
        time.sleep(1.1)  # EC2 times snapshots to the second
    return volumes


def exported(molibackup: Any, *args: str) -> tuple[CliRun, list[dict[str, Any]]]:
    result = molibackup("snapshots", "--output", "volumesnapshots", *args, **CLAIMS)
    assert result.status == 0, result.log
    return result, [d for d in yaml.safe_load_all(result.out) if d]


def test_every_completed_snapshot_of_a_claim_becomes_a_valid_pair(
    fleet: Fleet, molibackup: Any, claims: dict[str, str]
) -> None:
    _, documents = exported(molibackup)
    for document in documents:
        csi.check(document)
    contents = [d for d in documents if d["kind"] == "VolumeSnapshotContent"]
    snapshots = [d for d in documents if d["kind"] == "VolumeSnapshot"]
    assert len(contents) == len(snapshots) == 8  # 4 claims x 2 runs
    assert {c["spec"]["source"]["snapshotHandle"] for c in contents} == {
        s["SnapshotId"] for s in fleet.job_snapshots("db")}
    by_name = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in snapshots}
    for content in contents:
        ref = content["spec"]["volumeSnapshotRef"]
        bound = by_name[(ref["namespace"], ref["name"])]
        assert bound["spec"]["source"]["volumeSnapshotContentName"] == (
            content["metadata"]["name"])
        assert content["spec"]["deletionPolicy"] == "Retain"
        assert content["spec"]["driver"] == "ebs.csi.aws.com"
    assert {s["metadata"]["namespace"] for s in snapshots} == {"payments", "search"}
    labels = snapshots[0]["metadata"]["labels"]
    assert labels["molibackup.io/job"] == "db"
    assert labels["app.kubernetes.io/managed-by"] == "molibackup"


def test_one_claim_alone_and_the_same_state_gives_the_same_bytes(
    molibackup: Any, claims: dict[str, str]
) -> None:
    first, documents = exported(molibackup, "--claim", "payments/data-db-1")
    again, _ = exported(molibackup, "--claim", "payments/data-db-1")
    assert first.out == again.out
    assert len(documents) == 4
    assert {d["metadata"]["labels"]["molibackup.io/claim"] for d in documents} == {"data-db-1"}


def test_archived_snapshots_are_left_out_with_a_line(
    fleet: Fleet, molibackup: Any, claims: dict[str, str], ec2: Any
) -> None:
    oldest = min((s for s in fleet.job_snapshots("db")
                  if s["VolumeId"] == claims["search/data-es-0"]), key=lambda s: s["StartTime"])
    ec2.modify_snapshot_tier(SnapshotId=oldest["SnapshotId"], StorageTier="archive")
    result, documents = exported(molibackup, "--claim", "search/data-es-0")
    assert "1 snapshot(s) in the archive tier left out" in result.log
    handles = [d["spec"]["source"]["snapshotHandle"] for d in documents
               if d["kind"] == "VolumeSnapshotContent"]
    assert oldest["SnapshotId"] not in handles
    assert len(handles) == 1
    listing = molibackup("snapshots", "--claim", "search/data-es-0", "--output", "json",
                         **CLAIMS)
    assert json.loads(listing.out)["jobs"]
