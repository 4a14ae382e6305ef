"""`molibackup report`, and what rotation learns from it, against the emulator.

The emulator lacks fast snapshot restore (taught in tests/support/emulator.py), the Recycle
Bin (a stand-in server in tests/support/rbin.py answers ListRules and GetRule over HTTP) and
an `ebs` Service Quotas answer (its NoSuchResource is the default's case; the answer itself is
played by botocore's Stubber). Its ListChangedBlocks misses blocks written only in the second
snapshot; tests/support teaches it EC2's answer.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from loguru import logger
from moto.ebs.responses import EBSResponse

from molibackup import config
from molibackup.aws.clients import GuardedClient
from molibackup.ebs.job import EbsJob, JobContext
from molibackup.ebs.report import reporting
from tests.conftest import CliRun, job
from tests.support.ec2proxy import EC2Proxy, Fault
from tests.support.emulator import EC2_BLOCK_SIZE, Emulator
from tests.support.fleet import REGION, Fleet, tags_of
from tests.support.pushgateway import running_pushgateway
from tests.support.rbin import RecycleBin

Run = Callable[..., CliRun]
OPTIONS = {"instance_tag": "Backup=daily", "exclude_boot_volume": True}


@pytest.fixture
def molibackup(job_cli: Callable[[str], Callable[..., CliRun]]) -> Callable[..., CliRun]:
    return job_cli("db")


def document(result: CliRun) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(result.out)["jobs"][0]
    return report


def write_blocks(emulator: Emulator, volume: str, indexes: range, fill: int) -> None:
    for index in indexes:
        emulator.write_volume(REGION, volume, bytes([fill]) * EC2_BLOCK_SIZE,
                              at=index * EC2_BLOCK_SIZE)


@pytest.fixture
def ebs_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counted = {"ListSnapshotBlocks": 0, "ListChangedBlocks": 0}
    for name, method in (("ListSnapshotBlocks", "list_snapshot_blocks"),
                         ("ListChangedBlocks", "list_changed_blocks")):
        original = getattr(EBSResponse, method)

        def counting(self: Any, original: Any = original, name: str = name) -> Any:
            counted[name] += 1
            return original(self)

        monkeypatch.setattr(EBSResponse, method, counting)
    return counted


def test_orphans_are_gone_or_no_longer_selected_volumes_since_their_newest_snapshot(
    fleet: Fleet, molibackup: Any, ec2: Any
) -> None:
    fleet.instance({"Backup": "daily"}, {"data": {}})
    unselected = fleet.volume({"Name": "old-disk"})
    gone = fleet.volume({"Name": "deleted"})
    fleet.job_snapshot(unselected, "db", age_days=3)
    fleet.job_snapshot(gone, "db", age_days=9)
    ec2.delete_volume(VolumeId=gone)
    result = molibackup("report", "--output", "json", **OPTIONS)
    assert result.status == 0, result.log
    orphans = {o["volume_id"]: o for o in document(result)["orphans"]}
    assert set(orphans) == {unselected, gone}
    assert (orphans[gone]["status"], orphans[unselected]["status"]) == ("gone", "not selected")
    assert orphans[gone]["since"] < orphans[unselected]["since"]


def test_a_failed_volume_lookup_never_counts_a_volume_as_gone(
    fleet: Fleet, molibackup: Any, proxy: EC2Proxy
) -> None:
    fleet.instance({"Backup": "daily"})
    orphan = fleet.volume({"Name": "old-disk"})
    fleet.job_snapshot(orphan, "db", age_days=3)
    proxy.state.fault_rules.append(lambda action, params: Fault(
        400, "UnauthorizedOperation", "not allowed") if action == "DescribeVolumes" and any(
            value == "volume-id" for value in params.values()) else None)
    result = molibackup("report", "--output", "json", **OPTIONS)
    assert result.status == 2
    report = document(result)
    assert "snapshots" in report["errors"]
    assert report["orphans"] == []
    assert report["quota"] is not None  # the other sections are still reported


def test_sizes_count_the_blocks_each_snapshot_adds_and_are_computed_once(
    fleet: Fleet, molibackup: Any, aws_env: Emulator, ebs_calls: dict[str, int]
) -> None:
    data = fleet.instance({"Backup": "daily"}, {"data": {}}).volumes["data"]
    write_blocks(aws_env, data, range(0, 6), 1)
    assert molibackup(**OPTIONS).status == 0
    for snapshot in fleet.job_snapshots("db"):  # a day before the next (the emulator's "now")
        aws_env.set_snapshot_age(REGION, snapshot["SnapshotId"], 1)
    write_blocks(aws_env, data, range(4, 9), 2)  # 2 blocks changed, 3 new
    assert molibackup(**OPTIONS).status == 0
    first, second = sorted((s for s in fleet.job_snapshots("db") if s["VolumeId"] == data),
                           key=lambda s: s["StartTime"])
    result = molibackup("report", "--sizes", "--output", "json",
                        settings={"prices": {"standard": 1.0}}, **OPTIONS)
    assert result.status == 0, result.log
    assert tags_of(fleet.job_snapshots("db")[0])  # tagged
    sizes = {s["SnapshotId"]: int(tags_of(s)["molibackup:changed-bytes"])
             for s in fleet.job_snapshots("db") if s["VolumeId"] == data}
    assert sizes == {first["SnapshotId"]: 6 * EC2_BLOCK_SIZE,
                     second["SnapshotId"]: 5 * EC2_BLOCK_SIZE}
    volume = next(v for v in document(result)["volumes"] if v["volume_id"] == data)
    assert volume["stored_bytes"] == 11 * EC2_BLOCK_SIZE
    assert volume["estimated_monthly_cost_usd"] == pytest.approx(
        11 * EC2_BLOCK_SIZE / 1024**3, abs=1e-4)
    calls = dict(ebs_calls)
    again = molibackup("report", "--sizes", "--output", "json", **OPTIONS)
    assert again.status == 0
    assert ebs_calls == calls  # every size came from the tags


def test_the_csv_has_a_row_per_volume(fleet: Fleet, molibackup: Any) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {}, "logs": {}})
    assert molibackup(**OPTIONS).status == 0
    rows = list(csv.DictReader(io.StringIO(molibackup("report", "--output", "csv",
                                                      **OPTIONS).out)))
    assert {row["volume_id"] for row in rows} == set(web.volumes.values())
    assert all(row["completed"] == "1" and row["standard"] == "1" for row in rows)


def test_quota_headroom_defaults_when_service_quotas_has_no_answer(
    fleet: Fleet, molibackup: Any
) -> None:
    fleet.instance({"Backup": "daily"}, {"data": {}})
    quota = document(molibackup("report", "--output", "json", **OPTIONS))["quota"]
    assert quota["limit"] == 100_000
    assert quota["source"].startswith("the default")
    assert quota["used"] >= 1


def test_the_quota_comes_from_service_quotas_when_it_answers(
    aws_env: Emulator, monkeypatch: pytest.MonkeyPatch, fleet: Fleet
) -> None:
    # The emulator has no `ebs` quota: its answer is played by Stubber, which checks the
    # request against the real Service Quotas model.
    fleet.instance({"Backup": "daily"}, {"data": {}})
    loaded = config.build_config({"jobs": {"db": job(**OPTIONS)}}, Path("c.yaml"))
    module = EbsJob.from_config(loaded.jobs[0])
    quotas = GuardedClient(boto3.client("service-quotas", region_name=REGION))
    stubber = Stubber(quotas.raw)
    stubber.add_response("get_service_quota", {"Quota": {"Value": 1000.0}},
                         {"ServiceCode": "ebs", "QuotaCode": "L-309BACF6"})
    real = reporting.aws_client
    monkeypatch.setattr(reporting, "aws_client", lambda session, service, *a, **k: (
        quotas if service == "service-quotas" else real(session, service, *a, **k)))
    with stubber:
        report = reporting.Reporter(JobContext(
            job=module, settings=loaded.settings, now=datetime.now(UTC), log=logger,
            stop=threading.Event()), sizes=False)
        result = reporting.JobReport("db", REGION)
        report.quota(result)
    assert result.quota is not None
    assert (result.quota.limit, result.quota.source) == (1000, "Service Quotas")


def test_what_blocks_a_delete_is_reported_and_rotation_skips_it(
    fleet: Fleet, molibackup: Any, aws_env: Emulator, recycle_bin: RecycleBin
) -> None:
    data = fleet.instance({"Backup": "daily"}, {"data": {}}).volumes["data"]
    fast = fleet.job_snapshot(data, "db", age_days=60)
    fleet.job_snapshot(data, "db", age_days=1)
    aws_env.fast_restore(REGION, fast, f"{REGION}a")
    recycle_bin.rule("region-rule", 7)
    recycle_bin.rule("our-rule", 14, {"CreatedBy": "molibackup"})
    recycle_bin.rule("not-ours", 30, {"Team": "other"})
    report = document(molibackup("report", "--output", "json", **OPTIONS))
    assert report["fast_snapshot_restores"] == [
        {"snapshot_id": fast, "availability_zone": f"{REGION}a", "state": "enabled"}]
    assert {r["identifier"]: r["days"] for r in report["recycle_bin_rules"]} == {
        "region-rule": 7, "our-rule": 14}
    run = molibackup(**OPTIONS)
    assert run.status == 0, run.log
    assert "fast snapshot restore is enabled" in run.log
    assert fast in {s["SnapshotId"] for s in fleet.job_snapshots("db")}


def test_orphan_retention_lets_a_gone_volumes_history_age_out_and_no_other(
    fleet: Fleet, molibackup: Any, ec2: Any
) -> None:
    fleet.instance({"Backup": "daily"}, {"data": {}})
    gone = fleet.volume({"Name": "deleted"})
    detached = fleet.volume({"Name": "detached-claim"})
    gone_snapshots = [fleet.job_snapshot(gone, "db", age_days=age) for age in (40, 50)]
    kept = [fleet.job_snapshot(detached, "db", age_days=age) for age in (40, 50)]
    ec2.delete_volume(VolumeId=gone)
    without = molibackup(**OPTIONS)
    assert without.status == 0
    left = {s["SnapshotId"] for s in fleet.job_snapshots("db")}
    assert gone_snapshots[0] in left  # min_keep holds the newest, forever
    with_it = molibackup(orphan_retention=30, **OPTIONS)
    assert with_it.status == 0, with_it.log
    left = {s["SnapshotId"] for s in fleet.job_snapshots("db")}
    assert not set(gone_snapshots) & left
    assert kept[0] in left  # a volume that exists keeps its min_keep


def test_the_backup_run_pushes_tiers_and_orphans(fleet: Fleet, molibackup: Any) -> None:
    fleet.instance({"Backup": "daily"}, {"data": {}})
    orphan = fleet.volume({"Name": "old"})
    fleet.job_snapshot(orphan, "db", age_days=2)
    with running_pushgateway() as gateway:
        settings = {"metrics": {"pushgateway": gateway.url}}
        assert molibackup(settings=settings, **OPTIONS).status == 0
        assert gateway.value("molibackup_job_snapshots_stored", tier="standard") == 2
        assert gateway.value("molibackup_job_orphaned_volumes") == 1
        assert molibackup("report", settings=settings, **OPTIONS).status == 0
        assert gateway.value("molibackup_report_orphaned_volumes",
                             molibackup_command="report") == 1
        assert gateway.value("molibackup_report_snapshot_quota") == 100_000


def test_the_read_only_commands_never_say_they_back_up(fleet: Fleet, molibackup: Any) -> None:
    fleet.instance({"Backup": "daily"}, {"data": {}})
    backup = molibackup(instance_tag="Backup=daily")
    assert backup.status == 0, backup.log
    assert "volume(s) to back up" in backup.log
    for command in (("check",), ("snapshots",), ("report",), ("verify", "--dry-run")):
        result = molibackup(*command, instance_tag="Backup=daily")
        assert "to back up" not in result.log, command
        assert "volume(s) the job selects" in result.log, command
