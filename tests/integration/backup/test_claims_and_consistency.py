"""Kubernetes claims as a selection, crash-consistent instances, boot volumes, archive tier.

The emulator's CreateSnapshots ignores ExcludeDataVolumeIds and CopyTagsFromSource, which
real EC2 honours: `tests/support/emulator.py` teaches it both (see
`honour_create_snapshots_parameters`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import CliRun
from tests.support.ec2proxy import LOST_ANSWER, EC2Proxy, Fault
from tests.support.fleet import CLUSTER, REGION, Fleet, csi_volume, tags_of

Run = Callable[..., CliRun]


@pytest.fixture
def run_job(job_cli: Callable[[str], Callable[..., CliRun]]) -> Callable[..., CliRun]:
    return job_cli("k8s")



@pytest.fixture
def cluster_fleet(fleet: Fleet) -> dict[str, str]:
    node = fleet.instance({"Name": "node-1"}).instance_id
    return {
        "payments/data-db-0": csi_volume(fleet, "payments", "data-db-0", attach_to=node),
        "payments/data-db-1": csi_volume(fleet, "payments", "data-db-1"),  # rescheduling
        "search/data-es-0": csi_volume(fleet, "search", "data-es-0", attach_to=node,
                                       Tier="gold"),
        "monitoring/prom-0": csi_volume(fleet, "monitoring", "prom-0", cluster="staging"),
        "not-a-claim": fleet.volume({"Name": "hand-made"}),
    }


def claimed(fleet: Fleet) -> dict[str, dict[str, str]]:
    return {s["VolumeId"]: tags_of(s) for s in fleet.job_snapshots("k8s")}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param({"namespaces": ["payments"]},
                     {"payments/data-db-0", "payments/data-db-1"}, id="namespace"),
        pytest.param({"names": ["data-*"]},
                     {"payments/data-db-0", "payments/data-db-1", "search/data-es-0"},
                     id="name-glob"),
        pytest.param({"cluster": "staging"}, {"monitoring/prom-0"}, id="cluster"),
        pytest.param({"namespaces": ["pay*", "search"], "names": ["*-0"], "cluster": CLUSTER},
                     {"payments/data-db-0", "search/data-es-0"}, id="all-together"),
    ],
)
def test_claims_are_selected_attached_or_not(
    cluster_fleet: dict[str, str], fleet: Fleet, run_job: Any, selector: dict[str, Any],
    expected: set[str],
) -> None:
    result = run_job(persistent_volume_claims=selector)
    assert result.status == 0, result.log
    assert set(claimed(fleet)) == {cluster_fleet[name] for name in expected}


def test_claim_snapshots_are_named_and_tagged_after_their_claims(
    cluster_fleet: dict[str, str], fleet: Fleet, run_job: Any
) -> None:
    result = run_job(persistent_volume_claims={"namespaces": ["payments"]})
    assert result.status == 0, result.log
    tags = claimed(fleet)[cluster_fleet["payments/data-db-1"]]
    assert re.fullmatch(r"payments/data-db-1-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", tags["Name"])
    assert tags["molibackup:pvc-namespace"] == "payments"
    assert tags["molibackup:pvc-name"] == "data-db-1"
    assert tags["molibackup:pv-name"].startswith("pvc-")
    restore = fleet.snapshots(**{"molibackup:pvc-namespace": "payments",
                                 "molibackup:pvc-name": "data-db-1"})
    assert len(restore) == 1
    assert "not attached, claim payments/data-db-1" in result.log


def test_claims_combine_with_volume_tags(
    cluster_fleet: dict[str, str], fleet: Fleet, run_job: Any
) -> None:
    result = run_job(persistent_volume_claims={"names": ["data-*"]}, volume_tags={"Tier": "gold"})
    assert result.status == 0, result.log
    assert set(claimed(fleet)) == {cluster_fleet["search/data-es-0"]}


def test_a_long_claim_name_keeps_the_description_within_ec2s_limit(
    fleet: Fleet, run_job: Any
) -> None:
    volume = csi_volume(fleet, "n" * 63, "c" * 253)
    assert run_job(persistent_volume_claims={"cluster": CLUSTER}).status == 0
    (snapshot,) = fleet.job_snapshots("k8s")
    assert snapshot["VolumeId"] == volume
    assert len(snapshot["Description"]) <= 255


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({"instance_tag": "Role=node"}, "jobs.k8s.instance_tag: cannot be "
                     "combined with persistent_volume_claims", id="with-instance-tag"),
        pytest.param({"instance_id": "local"}, "jobs.k8s.instance_id: cannot be combined",
                     id="with-instance-id"),
        pytest.param({"consistency": "instance"}, "jobs.k8s.consistency: 'instance' needs an "
                     "instance selection", id="with-instance-consistency"),
    ],
)
def test_claims_refuse_instance_options(run_job: Any, options: dict[str, Any],
                                        expected: str) -> None:
    result = run_job("--validate", persistent_volume_claims={"namespaces": ["x"]}, **options)
    assert result.status == 1
    assert expected in result.log


def test_an_empty_claim_selector_is_refused(run_job: Any) -> None:
    result = run_job("--validate", persistent_volume_claims={})
    assert result.status == 1
    assert "jobs.k8s.persistent_volume_claims: must not be empty" in result.log


# --- crash-consistent instances ---------------------------------------------------------------


@pytest.fixture
def database(fleet: Fleet) -> Any:
    return fleet.instance({"Role": "db"}, {"data": {"Backup": "yes"}, "wal": {"Backup": "yes"},
                                           "scratch": {}})


def test_one_call_per_instance_excluding_boot_and_unselected_volumes(
    database: Any, fleet: Fleet, run_job: Any, proxy: EC2Proxy
) -> None:
    other = fleet.instance({"Role": "db"}, {"data2": {"Backup": "yes"}})
    result = run_job(instance_tag="Role=db", volume_tags={"Backup": "yes"},
                     consistency="instance")
    assert result.status == 0, result.log
    assert proxy.calls["CreateSnapshots"] == 2
    assert proxy.calls["CreateSnapshot"] == 0
    snapshots = fleet.job_snapshots("k8s")
    assert sorted(s["VolumeId"] for s in snapshots) == sorted(
        [database.volumes["data"], database.volumes["wal"], other.volumes["data2"]])
    request = next(p for action, p in proxy.state.requests if action == "CreateSnapshots"
                   and p["InstanceSpecification.InstanceId"] == database.instance_id)
    assert request["InstanceSpecification.ExcludeBootVolume"] == "true"
    excluded = [v for k, v in request.items()
                if k.startswith("InstanceSpecification.ExcludeDataVolumeId")]
    assert excluded == [database.volumes["scratch"]]
    assert "created 3, deleted 0" in result.log


def test_a_whole_instance_includes_its_boot_volume_and_can_copy_volume_tags(
    database: Any, fleet: Fleet, run_job: Any
) -> None:
    result = run_job(instance_id=database.instance_id, consistency="instance",
                     copy_volume_tags=True)
    assert result.status == 0, result.log
    by_volume = {s["VolumeId"]: tags_of(s) for s in fleet.job_snapshots("k8s")}
    assert set(by_volume) == set(database.all_volumes)
    assert by_volume[database.volumes["wal"]]["Name"] == "wal"
    assert by_volume[database.volumes["wal"]]["Backup"] == "yes"
    assert len({tags["molibackup:run-id"] for tags in by_volume.values()}) == 1


def test_a_failed_instance_call_keeps_every_older_snapshot_of_its_volumes(
    database: Any, fleet: Fleet, run_job: Any, proxy: EC2Proxy
) -> None:
    web = fleet.instance({"Role": "db"})
    old_db = [fleet.job_snapshot(v, "k8s", age_days=90) for v in database.all_volumes]
    old_web = fleet.job_snapshot(web.root_volume, "k8s", age_days=90)
    fresh_web = fleet.job_snapshot(web.root_volume, "k8s", age_days=1)
    proxy.state.fault_rules.append(lambda action, params: Fault(
        400, "InvalidParameterValue", "refused") if action == "CreateSnapshots"
        and params.get("InstanceSpecification.InstanceId") == database.instance_id else None)
    result = run_job(instance_tag="Role=db", consistency="instance", retention=30)
    assert result.status == 2
    remaining = fleet.snapshot_ids()
    assert set(old_db) <= remaining
    assert old_web not in remaining
    assert fresh_web in remaining
    assert f"instance {database.instance_id}: the crash-consistent snapshot" in result.log


def test_a_snapshot_in_error_state_fails_the_whole_instance(
    database: Any, fleet: Fleet, run_job: Any, proxy: EC2Proxy
) -> None:
    old = fleet.job_snapshot(database.volumes["data"], "k8s", age_days=90)

    def one_in_error(answer: bytes) -> bytes:
        return re.sub(rb"(<snapshotId>[^<]+</snapshotId>)", rb"\1<state>error</state>",
                      answer, count=1)

    proxy.state.fault_rules.append(lambda action, params: Fault(
        200, "", rewrite=one_in_error) if action == "CreateSnapshots" else None)
    result = run_job(instance_id=database.instance_id, consistency="instance", retention=30)
    assert result.status == 2
    assert "snapshot(s) in error state" in result.log
    assert old in fleet.snapshot_ids()


def test_a_lost_answer_is_recovered_without_duplicates(
    database: Any, fleet: Fleet, run_job: Any, proxy: EC2Proxy
) -> None:
    lost = {"done": False}

    def lose_first(action: str, params: dict[str, str]) -> Fault | None:
        if action == "CreateSnapshots" and not lost["done"]:
            lost["done"] = True
            return LOST_ANSWER
        return None

    proxy.state.fault_rules.append(lose_first)
    result = run_job(instance_id=database.instance_id, consistency="instance")
    assert result.status == 0, result.log
    assert proxy.calls["CreateSnapshots"] == 1
    assert sorted(s["VolumeId"] for s in fleet.job_snapshots("k8s")) == sorted(
        database.all_volumes)
    assert "the answer to CreateSnapshots was lost" in result.log


def test_a_dry_run_names_the_instance_and_creates_nothing(
    database: Any, fleet: Fleet, run_job: Any
) -> None:
    result = run_job("--dry-run", instance_id=database.instance_id, consistency="instance")
    assert result.status == 0
    assert f"would snapshot 4 volume(s) of instance {database.instance_id} in one" in result.log
    assert fleet.snapshots() == []


# --- boot volumes -------------------------------------------------------------------------------


@pytest.mark.parametrize("consistency", ["volume", "instance"])
def test_boot_volumes_can_be_left_out(
    database: Any, fleet: Fleet, run_job: Any, consistency: str
) -> None:
    result = run_job(instance_tag="Role=db", exclude_boot_volume=True, consistency=consistency)
    assert result.status == 0, result.log
    assert sorted(s["VolumeId"] for s in fleet.job_snapshots("k8s")) == sorted(
        database.volumes.values())


def test_boot_volumes_can_be_left_out_when_every_instance_is_in_scope(
    database: Any, fleet: Fleet, run_job: Any
) -> None:
    result = run_job(exclude_boot_volume=True)
    assert result.status == 0, result.log
    assert database.root_volume not in {s["VolumeId"] for s in fleet.job_snapshots("k8s")}
    assert f"volume {database.root_volume} is the boot volume" in result.log


# --- the archive tier ---------------------------------------------------------------------------


def tier_of(aws_env: Any, snapshot_id: str) -> str:
    return str(aws_env.backend(REGION).snapshots[snapshot_id].storage_tier)


def test_old_kept_snapshots_are_archived_once_and_the_newest_never(
    aws_env: Any, fleet: Fleet, run_job: Any, proxy: EC2Proxy
) -> None:
    volume = fleet.instance({"Role": "db"}).root_volume
    ages = {"d200": 200, "d120": 120, "d60": 60}
    ids = {name: fleet.job_snapshot(volume, "k8s", age_days=age) for name, age in ages.items()}
    options = {"instance_tag": "Role=db", "retention": 365, "archive_after": 90}
    result = run_job(**options)
    assert result.status == 0, result.log
    assert {name: tier_of(aws_env, i) for name, i in ids.items()} == {
        "d200": "archive", "d120": "archive", "d60": "standard"}
    assert "archived 2" in result.log
    proxy.state.reset_counts()
    again = run_job(**options)
    assert again.status == 0
    assert proxy.calls["ModifySnapshotTier"] == 0


def test_the_newest_snapshot_is_never_archived_however_old(
    aws_env: Any, fleet: Fleet, run_job: Any
) -> None:
    volume = fleet.volume({"Name": "detached"})
    newest = fleet.job_snapshot(volume, "k8s", age_days=400)
    older = fleet.job_snapshot(volume, "k8s", age_days=500)
    result = run_job(instance_tag="Role=none", allow_empty=True, keep_monthly=24,
                     archive_after=90)
    assert result.status == 0, result.log
    assert tier_of(aws_env, newest) == "standard"
    assert tier_of(aws_env, older) == "archive"


def test_retention_still_deletes_archived_snapshots(
    aws_env: Any, fleet: Fleet, run_job: Any
) -> None:
    volume = fleet.instance({"Role": "db"}).root_volume
    old = fleet.job_snapshot(volume, "k8s", age_days=200)
    aws_env.backend(REGION).snapshots[old].storage_tier = "archive"
    result = run_job(instance_tag="Role=db", retention=150, archive_after=90)
    assert result.status == 0, result.log
    assert old not in fleet.snapshot_ids()
    assert "EC2 bills an archived snapshot for at least 90 days" in result.log


def test_a_dry_run_archives_nothing(aws_env: Any, fleet: Fleet, run_job: Any) -> None:
    volume = fleet.instance({"Role": "db"}).root_volume
    old = fleet.job_snapshot(volume, "k8s", age_days=200)
    fleet.job_snapshot(volume, "k8s", age_days=1)
    result = run_job("--dry-run", instance_tag="Role=db", retention=365, archive_after=90)
    assert f"dry run: would archive snapshot {old}" in result.log
    assert tier_of(aws_env, old) == "standard"
