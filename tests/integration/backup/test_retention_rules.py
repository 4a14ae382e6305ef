"""Keep rules, min_interval and adoption of the original tool's snapshots, in the emulator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import CliRun
from tests.support.fleet import REGION, Fleet, tags_of

Run = Callable[..., CliRun]


@pytest.fixture
def run_job(job_cli: Callable[[str], Callable[..., CliRun]]) -> Callable[..., CliRun]:
    return job_cli("gfs")


def snapshot_dates(fleet: Fleet, job_name: str = "gfs") -> list[str]:
    return sorted((s["StartTime"].astimezone(UTC).date().isoformat()
                   for s in fleet.job_snapshots(job_name)), reverse=True)


def test_a_year_of_dailies_rotated_by_gfs_rules(
    aws_env: Any, fleet: Fleet, run_job: Any
) -> None:
    volume = fleet.volume({"Name": "db"})
    now = datetime(2026, 12, 31, 4, 0, tzinfo=UTC)
    first = date(2026, 1, 1)
    for day in range(365):
        moment = datetime.combine(first + timedelta(days=day), datetime.min.time(), UTC)
        moment += timedelta(hours=3)
        snapshot = fleet.job_snapshot(volume, "gfs", age_days=0)
        aws_env.set_snapshot_age(REGION, snapshot, (now - moment) / timedelta(days=1), now=now)
    # The selection matches nothing, so the run only rotates: the volume's history stays
    # the job's business even when the volume is no longer selected.
    result = run_job(instance_tag="Backup=none", allow_empty=True, keep_daily=7,
                     keep_weekly=5, keep_monthly=12, keep_yearly=75, clock=lambda: now)
    assert result.status == 0, result.log
    dailies = [f"2026-12-{day}" for day in range(31, 24, -1)]
    weeklies = ["2026-12-20", "2026-12-13", "2026-12-06"]
    monthlies = ["2026-11-30", "2026-10-31", "2026-09-30", "2026-08-31", "2026-07-31",
                 "2026-06-30", "2026-05-31", "2026-04-30", "2026-03-31", "2026-02-28",
                 "2026-01-31"]
    assert snapshot_dates(fleet) == dailies + weeklies + monthlies
    assert "deleted 344, kept 21" in result.log
    assert "(daily 2026-12-27, weekly 2026-W52)" in result.log
    assert "kept by no rule: keep_daily 7, keep_weekly 5, keep_monthly 12, keep_yearly 75, " \
           "min_keep 1)" in result.log


def test_the_same_rules_in_another_time_zone_see_other_days(
    aws_env: Any, fleet: Fleet, run_job: Any
) -> None:
    volume = fleet.volume({"Name": "db"})
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    late = fleet.job_snapshot(volume, "gfs", age_days=0)
    early = fleet.job_snapshot(volume, "gfs", age_days=0)
    aws_env.set_snapshot_age(REGION, late, 1.5, now=now)  # 19 Nov 00:00 UTC, 18 Nov in NY
    aws_env.set_snapshot_age(REGION, early, 1.75, now=now)  # 18 Nov 18:00 UTC
    utc = run_job("--dry-run", instance_tag="Backup=none", allow_empty=True, keep_daily=2,
                  clock=lambda: now)
    new_york = run_job("--dry-run", instance_tag="Backup=none", allow_empty=True,
                       keep_daily=2, timezone="America/New_York", clock=lambda: now)
    assert "would have deleted 0, kept 2" in utc.log
    assert "would have deleted 1, kept 1" in new_york.log
    assert f"dry run: would delete snapshot {early}" in new_york.log


def test_an_unknown_time_zone_is_a_config_error(run_job: Any) -> None:
    result = run_job("--validate", instance_tag="A=b", timezone="Mars/Olympus_Mons")
    assert result.status == 1
    assert "jobs.gfs.timezone: unknown time zone 'Mars/Olympus_Mons'" in result.log


# --- min_interval ---------------------------------------------------------------------------


def test_a_double_fired_cronjob_makes_no_second_snapshot(fleet: Fleet, run_job: Any) -> None:
    instance = fleet.instance({"Backup": "daily"}, {"data": {}})
    first = run_job(instance_tag="Backup=daily", min_interval="20h")
    second = run_job(instance_tag="Backup=daily", min_interval="20h")
    assert first.status == second.status == 0, second.log
    assert "created 2," in first.log
    assert "created 0 (2 recent enough)" in second.log
    assert "within min_interval 20h: backed up, no new snapshot" in second.log
    assert len(fleet.job_snapshots("gfs")) == len(instance.all_volumes)


@pytest.mark.parametrize(
    ("age_days", "state", "snapshotted"),
    [
        pytest.param(0.5, "pending", False, id="a-pending-one-counts"),
        pytest.param(0.5, "completed", False, id="a-recent-completed-one-counts"),
        pytest.param(0.5, "error", True, id="a-failed-one-does-not"),
        pytest.param(1.0, "completed", True, id="an-older-one-does-not"),
    ],
)
def test_min_interval_looks_at_the_newest_snapshot_of_the_job(
    fleet: Fleet, run_job: Any, age_days: float, state: str, snapshotted: bool
) -> None:
    volume = fleet.instance({"Backup": "daily"}).root_volume
    fleet.job_snapshot(volume, "gfs", age_days=age_days, state=state)
    result = run_job(instance_tag="Backup=daily", min_interval="20h")
    assert result.status == 0, result.log
    assert f"created {int(snapshotted)}" in result.log
    assert len(fleet.job_snapshots("gfs")) == 1 + snapshotted


def test_min_interval_is_honoured_by_a_dry_run(fleet: Fleet, run_job: Any) -> None:
    fleet.job_snapshot(fleet.instance({"Backup": "daily"}).root_volume, "gfs", age_days=0.1)
    result = run_job("--dry-run", instance_tag="Backup=daily", min_interval="1d")
    assert "would have created 0 (1 recent enough)" in result.log


@pytest.mark.parametrize("value", ["0h", "400d", "20", "h"])
def test_an_unusable_min_interval_is_refused(run_job: Any, value: str) -> None:
    result = run_job("--validate", instance_tag="A=b", min_interval=value)
    assert result.status == 1
    assert "jobs.gfs.min_interval: " in result.log


# --- adopting the original tool's snapshots -----------------------------------------------


def original_snapshot(fleet: Fleet, volume: str, name: str, age_days: float) -> str:
    """A snapshot as the original (Go) molibackup made it: no job tag."""
    moment = (datetime.now(UTC) - timedelta(days=age_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return fleet.snapshot(volume, {"Name": f"{name}-{moment}", "CreatedBy": "molibackup",
                                   "CreateDate": moment[:10], "Timestamp": moment},
                          age_days=age_days)


@pytest.fixture
def switched_fleet(fleet: Fleet) -> dict[str, str]:
    """A fleet backed up by the original tool, with a hand-made snapshot and another
    volume's snapshots made by the original tool for another configuration."""
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    other = fleet.instance({"Backup": "weekly"})
    data = web.volumes["data"]
    return {
        "data": data,
        "old": original_snapshot(fleet, data, "data", 100),
        "older": original_snapshot(fleet, data, "data", 200),
        "recent": original_snapshot(fleet, data, "data", 1),
        "by-hand": fleet.snapshot(data, {"Name": "before-upgrade"}, age_days=300),
        "other-volume": original_snapshot(fleet, other.root_volume, other.root_volume, 300),
    }


def test_adopted_snapshots_of_the_original_tool_are_rotated(
    fleet: Fleet, run_job: Any, switched_fleet: dict[str, str]
) -> None:
    result = run_job(instance_tag="Backup=daily", retention=30, adopt_untagged=True)
    assert result.status == 0, result.log
    remaining = fleet.snapshot_ids()
    assert switched_fleet["old"] not in remaining
    assert switched_fleet["older"] not in remaining
    assert {switched_fleet["recent"], switched_fleet["by-hand"],
            switched_fleet["other-volume"]} <= remaining
    recent = next(s for s in fleet.snapshots() if s["SnapshotId"] == switched_fleet["recent"])
    assert tags_of(recent)["molibackup:job"] == "gfs"
    assert tags_of(recent)["molibackup:volume-id"] == switched_fleet["data"]
    untouched = {s["SnapshotId"]: tags_of(s) for s in fleet.snapshots()}
    assert "molibackup:job" not in untouched[switched_fleet["by-hand"]]
    assert "molibackup:job" not in untouched[switched_fleet["other-volume"]]
    assert "adopted 3 snapshot(s) of volume" in result.log


def test_without_adopt_untagged_the_original_snapshots_stay_as_they_are(
    fleet: Fleet, run_job: Any, switched_fleet: dict[str, str]
) -> None:
    before = {s["SnapshotId"]: tags_of(s) for s in fleet.snapshots()}
    result = run_job(instance_tag="Backup=daily", retention=30)
    assert result.status == 0, result.log
    after = {s["SnapshotId"]: tags_of(s) for s in fleet.snapshots()}
    assert {key: after[key] for key in before} == before


def test_a_dry_run_shows_the_adoption_and_its_rotation_and_changes_nothing(
    fleet: Fleet, run_job: Any, switched_fleet: dict[str, str]
) -> None:
    before = {s["SnapshotId"]: tags_of(s) for s in fleet.snapshots()}
    result = run_job("--dry-run", instance_tag="Backup=daily", retention=30,
                     adopt_untagged=True)
    assert result.status == 0, result.log
    assert {s["SnapshotId"]: tags_of(s) for s in fleet.snapshots()} == before
    assert "dry run: would adopt 3 snapshot(s)" in result.log
    assert f"dry run: would delete snapshot {switched_fleet['older']}" in result.log
    assert "would have deleted 2" in result.log
