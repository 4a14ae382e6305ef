"""The IAM permissions a job declares are exactly the calls it makes.

Jobs using every feature (tags, locks, the archive tier, adoption, expiry, copies to another
account, instance-consistent snapshots, hooks) run through the recording proxy, with STS routed
through it too; the actions it saw are compared with the job's `permissions`, which the
IAM policy reference is checked against (tests/unit/test_docs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from molibackup.ebs.job import EbsJob
from tests.conftest import CliRun, job
from tests.support.ec2proxy import EC2Proxy
from tests.support.fleet import Fleet

STS_ACTIONS = frozenset({"AssumeRole", "GetCallerIdentity"})
SSM_ACTIONS = frozenset({"SendCommand", "GetCommandInvocation"})
#: Calls every identity may make, which no policy grants.
UNGATED = frozenset({"sts:GetCallerIdentity"})
VAULT_ROLE = "arn:aws:iam::210987654321:role/molibackup-vault"


def test_the_module_calls_exactly_the_permissions_it_declares(
    aws_env: Any, fleet: Fleet, write_config: Callable[..., Path],
    run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    db = fleet.instance({"Role": "db"}, {"data": {}, "wal": {}})
    fleet.job_snapshot(web.root_volume, "everything", age_days=400)  # expired: deleted
    fleet.job_snapshot(web.volumes["data"], "everything", age_days=200)  # kept: archived
    fleet.snapshot(web.volumes["data"], {"CreatedBy": "molibackup"}, age_days=3)  # adopted
    config = write_config({"global": {"max_attempts": 2}, "jobs": {
        "everything": job(instance_tag="Backup=daily", retention=365, archive_after=90,
                          adopt_untagged=True, lock_mode="governance", lock_duration=1,
                          copy_to=[{"region": "eu-central-1", "role_arn": VAULT_ROLE}]),
        "together": job(instance_tag="Role=db", consistency="instance",
                        hooks={"freeze": ["/data"]}),
    }})
    with EC2Proxy(aws_env.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", proxy.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", proxy.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", proxy.url)
        run_cli("-c", str(config))
        called = {("sts" if action in STS_ACTIONS else "ssm" if action in SSM_ACTIONS
                   else "ec2") + f":{action}" for action, _ in proxy.state.requests}
    assert db.instance_id  # the second job snapshotted its instance in one call
    assert called - UNGATED == EbsJob.permissions
