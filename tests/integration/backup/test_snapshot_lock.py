"""Locking new snapshots (lock_mode / lock_duration).

The emulator does not implement LockSnapshot (it answers HTTP 500), so the call itself is
tested with botocore's Stubber, which still checks each request against EC2's real service
model; the wiring of a whole run is tested against the emulator, where the lock fails.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from loguru import logger

from molibackup import config
from molibackup.aws.clients import GuardedClient
from molibackup.ebs.backup.creation import lock_snapshot
from molibackup.ebs.job import EbsJob
from tests.conftest import CliRun, job
from tests.support.fleet import Fleet


def locked_module(**options: Any) -> EbsJob:
    loaded = config.build_config({"jobs": {"locked": {
        "module": "ebs-snapshot", "aws_region": "us-west-2", "retention": 30, **options}}},
        Path("test.yaml"))
    return EbsJob.from_config(loaded.jobs[0])


def guarded_client() -> Any:
    """A client as molibackup makes them: its failures arrive as AwsError."""
    return GuardedClient(boto3.client("ec2", region_name="us-west-2", aws_access_key_id="x",
                                      aws_secret_access_key="y"))


@pytest.mark.parametrize(("mode", "days"), [("governance", 7), ("compliance", 3650)])
def test_a_new_snapshot_is_locked_with_the_configured_mode_and_duration(
    mode: str, days: int
) -> None:
    module = locked_module(lock_mode=mode, lock_duration=days)
    client = guarded_client()
    with Stubber(client.raw) as stub:
        stub.add_response(
            "lock_snapshot",
            {"SnapshotId": "snap-0123456789abcdef0", "LockState": mode, "LockDuration": days},
            expected_params={"SnapshotId": "snap-0123456789abcdef0", "LockMode": mode,
                             "LockDuration": days})
        assert module.options.lock is not None
        assert lock_snapshot(client, "snap-0123456789abcdef0", module.options.lock,
                             logger.bind(job="locked")) is None
        stub.assert_no_pending_responses()


def test_a_refused_lock_is_reported_and_the_snapshot_stays() -> None:
    module = locked_module(lock_mode="compliance", lock_duration=30)
    client = guarded_client()
    with Stubber(client.raw) as stub:
        stub.add_client_error("lock_snapshot", service_error_code="UnauthorizedOperation",
                              service_message="not authorized", http_status_code=403)
        assert module.options.lock is not None
        message = lock_snapshot(client, "snap-0123456789abcdef0", module.options.lock,
                                logger.bind(job="locked"))
    assert message is not None
    assert "snapshot snap-0123456789abcdef0 created but not locked" in message
    assert "ec2:LockSnapshot" in message


def test_a_run_whose_lock_fails_fails_the_job_but_keeps_the_snapshot(
    fleet: Fleet, write_config: Callable[..., Path], run_cli: Callable[..., CliRun]
) -> None:
    web = fleet.instance({"Backup": "daily"})
    path = write_config({"global": {"max_attempts": 1}, "jobs": {
        "locked": job(instance_tag="Backup=daily", lock_mode="governance", lock_duration=7)}})
    result = run_cli("-c", str(path))
    assert result.status == 2
    assert "created but not locked" in result.log
    (snapshot,) = fleet.job_snapshots("locked")
    assert snapshot["VolumeId"] == web.root_volume


def test_a_dry_run_does_not_lock(
    fleet: Fleet, write_config: Callable[..., Path], run_cli: Callable[..., CliRun]
) -> None:
    fleet.instance({"Backup": "daily"})
    path = write_config({"jobs": {"locked": job(instance_tag="Backup=daily", dryrun=True,
                                                lock_mode="governance", lock_duration=7)}})
    result = run_cli("-c", str(path))
    assert result.status == 0, result.log
    assert fleet.snapshots() == []
