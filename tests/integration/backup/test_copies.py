"""Copies in other regions and accounts, with their own rotation, against the emulator.

The emulator implements CopySnapshot across regions, ModifySnapshotAttribute and STS
AssumeRole with per-account state (a role of another account acts in that account). Its
CopySnapshot looks for the source in the caller's own account only, so a copy of a snapshot
shared by another account uses `copy_snapshots_shared_by_other_accounts` in
`tests/support/emulator.py`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from loguru import logger
from moto.backends import get_backend
from moto.ec2.models.elastic_block_store import EBSBackend

from molibackup import retention
from molibackup.aws.clients import ec2_client
from molibackup.config import build_config, default_settings
from molibackup.ebs.backup import copier
from molibackup.ebs.job import EbsJob, JobContext
from molibackup.ebs.options import CopyTarget
from molibackup.jobs import JobResult
from tests.conftest import CliRun
from tests.support.ec2proxy import EC2Proxy, Fault
from tests.support.emulator import ACCOUNT
from tests.support.fleet import REGION, Fleet, tags_of

Run = Callable[..., CliRun]
DR_REGION = "eu-central-1"
VAULT = "210987654321"
VAULT_ROLE = f"arn:aws:iam::{VAULT}:role/molibackup-vault"
WORKLOAD = "345678901234"
WORKLOAD_ROLE = f"arn:aws:iam::{WORKLOAD}:role/molibackup"


@pytest.fixture
def run_job(job_cli: Callable[[str], Callable[..., CliRun]]) -> Callable[..., CliRun]:
    return job_cli("dr")


def client_as(aws_env: Any, region: str, role_arn: str | None = None) -> Any:
    """An EC2 client of the emulator, in our account or, through a role, in another."""
    if role_arn is None:
        return boto3.client("ec2", region_name=region, endpoint_url=aws_env.url)
    sts = boto3.client("sts", region_name=region, endpoint_url=aws_env.url)
    credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName="test")["Credentials"]
    return boto3.client("ec2", region_name=region, endpoint_url=aws_env.url,
                        aws_access_key_id=credentials["AccessKeyId"],
                        aws_secret_access_key=credentials["SecretAccessKey"],
                        aws_session_token=credentials["SessionToken"])


def copies(client: Any, job_name: str = "dr") -> list[dict[str, Any]]:
    pages = client.get_paginator("describe_snapshots").paginate(
        OwnerIds=["self"], Filters=[{"Name": "tag:molibackup:job", "Values": [job_name]}])
    return [s for page in pages for s in page["Snapshots"]]


def test_completed_snapshots_are_copied_once_and_tagged_for_a_restore(
    aws_env: Any, fleet: Fleet, run_job: Any
) -> None:
    web = fleet.instance({"Backup": "daily"})
    pending = fleet.job_snapshot(web.root_volume, "dr", age_days=0.5, state="pending")
    first = run_job(instance_tag="Backup=daily", copy_to=[{"region": DR_REGION}])
    assert first.status == 0, first.log
    destination = client_as(aws_env, DR_REGION)
    made = copies(destination)
    sources = {tags_of(c)["molibackup:source-snapshot-id"] for c in made}
    assert pending not in sources  # still pending: copied on a later run
    assert len(made) == 1
    assert "copied 1" in first.log
    tags = tags_of(made[0])
    assert tags["molibackup:source-region"] == REGION
    assert tags["molibackup:source-account"] == ACCOUNT
    assert tags["molibackup:volume-id"] == web.root_volume
    assert tags["CreatedBy"] == "molibackup"
    aws_env.set_snapshot_state(REGION, pending, "completed")
    second = run_job(instance_tag="Backup=daily", copy_to=[{"region": DR_REGION}])
    third = run_job(instance_tag="Backup=daily", copy_to=[{"region": DR_REGION}])
    assert second.status == third.status == 0, second.log
    sources = [tags_of(c)["molibackup:source-snapshot-id"] for c in copies(destination)]
    assert pending in sources
    assert len(sources) == len(set(sources)) == 4  # every source once, none twice


def test_each_destination_keeps_by_its_own_rules_and_a_copy_is_as_old_as_its_source(
    aws_env: Any, fleet: Fleet, run_job: Any
) -> None:
    volume = fleet.instance({"Backup": "daily"}).root_volume
    ages = [1, 10, 20, 40]
    olds = [fleet.job_snapshot(volume, "dr", age_days=age) for age in ages]
    hand_made = client_as(aws_env, DR_REGION).create_snapshot(
        VolumeId=client_as(aws_env, DR_REGION).create_volume(
            Size=1, AvailabilityZone=f"{DR_REGION}a")["VolumeId"])["SnapshotId"]
    result = run_job(instance_tag="Backup=daily", retention=45,
                     copy_to=[{"region": DR_REGION, "retention": 15}])
    assert result.status == 0, result.log
    made = {tags_of(c)["molibackup:source-snapshot-id"] for c in copies(
        client_as(aws_env, DR_REGION))}
    assert olds[0] in made
    assert olds[1] in made
    assert olds[2] not in made  # older than the destination keeps
    assert olds[3] not in made
    assert "not copied to eu-central-1: its rules would not keep it" in result.log
    ids = {s["SnapshotId"] for s in client_as(aws_env, DR_REGION).describe_snapshots(
        OwnerIds=["self"])["Snapshots"]}
    assert hand_made in ids


def test_destination_copies_are_rotated_by_their_source_age(
    aws_env: Any, fleet: Fleet, run_job: Any
) -> None:
    volume = fleet.instance({"Backup": "daily"}).root_volume
    source = fleet.job_snapshot(volume, "dr", age_days=5)
    options = {"instance_tag": "Backup=daily", "retention": 60,
               "copy_to": [{"region": DR_REGION, "retention": 30}]}
    assert run_job(**options).status == 0
    (copy,) = [c for c in copies(client_as(aws_env, DR_REGION))
               if tags_of(c)["molibackup:source-snapshot-id"] == source]
    # The copy itself is new; what counts is when its data is from: 5 days, then 40.
    aws_env.backend(DR_REGION).create_tags([copy["SnapshotId"]], {
        "molibackup:source-time": "2000-01-01T00:00:00Z"})
    result = run_job(**options)
    assert result.status == 0, result.log
    remaining = {c["SnapshotId"] for c in copies(client_as(aws_env, DR_REGION))}
    assert copy["SnapshotId"] not in remaining
    assert f"deleted snapshot {copy['SnapshotId']}" in result.log
    assert "in eu-central-1" in result.log


def test_the_copy_limit_leaves_the_rest_for_the_next_run(
    aws_env: Any, fleet: Fleet, run_job: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    volumes = fleet.instance({"Backup": "daily"}, {f"d{i}": {} for i in range(3)}).all_volumes
    for volume in volumes:
        fleet.job_snapshot(volume, "dr", age_days=1)
    with EC2Proxy(aws_env.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", proxy.url)
        allowed = {"left": 2}

        def limit(action: str, params: dict[str, str]) -> Fault | None:
            if action != "CopySnapshot":
                return None
            if allowed["left"] > 0:
                allowed["left"] -= 1
                return None
            return Fault(400, "ResourceLimitExceeded", "too many snapshot copies in progress")

        proxy.state.fault_rules.append(limit)
        first = run_job(instance_tag="Backup=daily", copy_to=[{"region": DR_REGION}])
        proxy.state.fault_rules.clear()
        second = run_job(instance_tag="Backup=daily", copy_to=[{"region": DR_REGION}])
    assert first.status == 0, first.log
    assert "copied 2," in first.log
    assert "the rest are copied on the next run" in first.log
    assert second.status == 0
    # The earlier snapshots and those of both runs: every one copied, none twice.
    assert len(copies(client_as(aws_env, DR_REGION))) == 3 * len(volumes)


def test_a_dry_run_shows_copies_and_changes_nothing_anywhere(
    aws_env: Any, fleet: Fleet, run_job: Any
) -> None:
    volume = fleet.instance({"Backup": "daily"}).root_volume
    source = fleet.job_snapshot(volume, "dr", age_days=1)
    result = run_job("--dry-run", instance_tag="Backup=daily",
                     copy_to=[{"region": DR_REGION, "keep_daily": 30}])
    assert result.status == 0, result.log
    assert f"dry run: would copy snapshot {source}" in result.log
    assert "would have copied 1" in result.log
    assert copies(client_as(aws_env, DR_REGION)) == []


# --- other accounts ---------------------------------------------------------------------------


def test_a_job_with_role_arn_works_in_the_other_account(
    aws_env: Any, fleet: Fleet, run_job: Any
) -> None:
    workload = client_as(aws_env, REGION, WORKLOAD_ROLE)
    other = Fleet(workload, aws_env)
    instance = other.instance({"Backup": "daily"})
    fleet.instance({"Backup": "daily"})  # ours: not the job's business
    result = run_job(instance_tag="Backup=daily", role_arn=WORKLOAD_ROLE,
                     external_id="s3cr3t-external")
    assert result.status == 0, result.log
    assert [s["VolumeId"] for s in copies(workload)] == [instance.root_volume]
    assert fleet.job_snapshots("dr") == []
    assert "s3cr3t-external" not in result.log


def test_a_copy_to_another_account_shares_copies_and_unshares(
    aws_env: Any, fleet: Fleet, run_job: Any
) -> None:
    volume = fleet.instance({"Backup": "daily"}).root_volume
    source = fleet.job_snapshot(volume, "dr", age_days=1)
    result = run_job(instance_tag="Backup=daily",
                     copy_to=[{"region": DR_REGION, "role_arn": VAULT_ROLE, "retention": 90}])
    assert result.status == 0, result.log
    vault = copies(client_as(aws_env, DR_REGION, VAULT_ROLE))
    assert source in {tags_of(c)["molibackup:source-snapshot-id"] for c in vault}
    assert copies(client_as(aws_env, DR_REGION)) == []  # nothing in our own account there
    shared = client_as(aws_env, REGION).describe_snapshot_attribute(
        SnapshotId=source, Attribute="createVolumePermission")["CreateVolumePermissions"]
    assert shared == []  # the share is never left behind
    assert "eu-central-1 (account 210987654321)" in result.log


def test_a_denied_assume_role_is_one_line_naming_the_role(
    aws_env: Any, fleet: Fleet, run_job: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.instance({"Backup": "daily"})
    with EC2Proxy(aws_env.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", proxy.url)
        proxy.state.fault_rules.append(lambda action, params: Fault(
            403, "AccessDenied", "not authorized to perform sts:AssumeRole")
            if action == "AssumeRole" else None)
        result = run_job(instance_tag="Backup=daily", role_arn=WORKLOAD_ROLE)
    assert result.status == 2
    (line,) = [line for line in result.log.splitlines() if "failed:" in line]
    assert f"could not assume role {WORKLOAD_ROLE}: AccessDenied" in line
    assert "Traceback" not in result.log


@pytest.mark.parametrize(
    ("copy_to", "expected"),
    [
        pytest.param([{"region": REGION}], "copy_to.0: copies in the job's own region",
                     id="same-region-same-account"),
        pytest.param([{"region": DR_REGION}, {"region": DR_REGION}],
                     "copy_to.1: a second destination eu-central-1", id="twice"),
        pytest.param([{"region": DR_REGION, "external_id": "abc"}],
                     "'external_id' is set but 'role_arn' is missing", id="external-id-alone"),
        pytest.param([{"region": DR_REGION, "role_arn": "arn:aws:iam::1:role/x"}],
                     "copy_to.0.role_arn: must be an IAM role ARN", id="bad-role"),
    ],
)
def test_unusable_destinations_are_refused(run_job: Any, copy_to: list[Any],
                                           expected: str) -> None:
    result = run_job("--validate", instance_tag="A=b", copy_to=copy_to)
    assert result.status == 1
    assert expected in result.log


def test_an_encrypted_source_the_destination_cannot_use_is_explained_in_words() -> None:
    # The emulator checks no KMS key on CopySnapshot: the refusal real EC2 gives is played
    # by botocore's Stubber, which still checks the request against EC2's service model.
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="y")
    loaded = build_config({"jobs": {"dr": {"module": "ebs-snapshot", "aws_region": REGION}}},
                          Path("test.yaml"))
    context = JobContext(job=EbsJob.from_config(loaded.jobs[0]), settings=default_settings(),
                         now=datetime.now(UTC), dry_run=False, run_id="test",
                         log=logger.bind(job="dr"), stop=threading.Event())
    source = copier.Source(session, ec2_client(session, REGION, context.settings), REGION,
                           ACCOUNT)
    target = CopyTarget(region=DR_REGION, role_arn=None, external_id=None,
                        policy=retention.Policy(), encrypted=True, kms_key_id="alias/vault",
                        copy_tags=False)
    destination = copier.Destination(source, target, context, JobResult())
    snapshot = retention.Snapshot("snap-0123456789abcdef0", "vol-0123456789abcdef0",
                                  datetime.now(UTC), "completed", "db")
    with Stubber(destination.copy_client.raw) as stub:  # type: ignore[attr-defined]
        stub.add_client_error(
            "copy_snapshot", service_error_code="KMS.DisabledException",
            service_message="The KMS key is not usable.", http_status_code=400,
            expected_params={"SourceRegion": REGION, "SourceSnapshotId": snapshot.snapshot_id,
                             "Description": "db (copy of snap-0123456789abcdef0 from "
                                            f"{REGION})", "Encrypted": True,
                             "KmsKeyId": "alias/vault", "TagSpecifications": ANY})
        copy_id, error = destination.copy_one(snapshot, {}, copier.Outcome())
    assert copy_id is None
    assert error is not None
    assert "encrypted with a KMS key the destination region cannot use" in error


def test_a_share_lasts_while_its_copy_is_in_progress_and_not_longer(
    aws_env: Any, fleet: Fleet, run_job: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume = fleet.instance({"Backup": "daily"}).root_volume
    source = fleet.job_snapshot(volume, "dr", age_days=1)
    copying = EBSBackend.copy_snapshot

    def still_copying(self: Any, *args: Any, **kwargs: Any) -> Any:
        copy = copying(self, *args, **kwargs)
        copy.status = "pending"  # real copies take minutes to hours
        return copy

    monkeypatch.setattr(EBSBackend, "copy_snapshot", still_copying)
    options = {"instance_tag": "Backup=daily",
               "copy_to": [{"region": DR_REGION, "role_arn": VAULT_ROLE}]}
    assert run_job(**options).status == 0

    def shared_with() -> list[Any]:
        return client_as(aws_env, REGION).describe_snapshot_attribute(
            SnapshotId=source, Attribute="createVolumePermission")["CreateVolumePermissions"]

    assert shared_with() == [{"UserId": VAULT}]
    vault = get_backend("ec2")[VAULT][DR_REGION]
    for copy in vault.snapshots.values():
        copy.status = "completed"
    assert run_job(**options).status == 0
    assert shared_with() == []
    assert "molibackup:shared-with:" + VAULT not in tags_of(
        next(s for s in fleet.snapshots() if s["SnapshotId"] == source))
