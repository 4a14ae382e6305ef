"""Faults a real account throws at a run: throttling, 5xx, lost answers, per-volume limits,
overlapping runs, an endpoint that does not answer. Through the fault-injecting proxy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from molibackup.ebs.backup import snapshotter
from tests.conftest import CliRun, job
from tests.support import faults
from tests.support.cli import executable
from tests.support.ec2proxy import LOST_ANSWER, EC2Proxy, Fault, empty_answer, random_faults
from tests.support.fleet import Fleet, Instance, tags_of

Run = Callable[..., CliRun]


@pytest.fixture
def proxy(aws_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[EC2Proxy]:
    with EC2Proxy(aws_env.url, max_page=25) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", server.url)
        yield server


def small_fleet(fleet: Fleet, instances: int = 4) -> tuple[list[Instance], set[str], set[str]]:
    """Tagged instances with two volumes each, two expired snapshots per data volume, and
    snapshots that are not the job's to delete."""
    built = [fleet.instance({"Backup": "daily"}, {f"data-{i}": {}}) for i in range(instances)]
    expired, foreign = set(), set()
    for instance in built:
        data = next(iter(instance.volumes.values()))
        expired |= {fleet.job_snapshot(data, "nightly", age_days=d) for d in (40, 41)}
        foreign.add(fleet.snapshot(data, {"Name": "hand-made"}, age_days=400))
        foreign.add(fleet.job_snapshot(data, "other-job", age_days=400))
    return built, expired, foreign


def new_snapshots_per_volume(fleet: Fleet, job_name: str = "nightly") -> Counter[str]:
    return Counter(tags_of(s)["molibackup:volume-id"] for s in fleet.job_snapshots(job_name)
                   if "molibackup:run-id" in tags_of(s))


def backup(write_config: Callable[..., Path], run_cli: Run, **settings: Any) -> CliRun:
    path = write_config({"global": {"concurrency": 4, **settings},
                         "jobs": {"nightly": job(instance_tag="Backup=daily", retention=30)}})
    return run_cli("-c", str(path))


def test_a_storm_of_throttles_and_server_errors_still_ends_well(
    fleet: Fleet, proxy: EC2Proxy, write_config: Callable[..., Path], run_cli: Run
) -> None:
    instances, expired, foreign = small_fleet(fleet)
    proxy.state.fault_rules.append(random_faults(0.3, seed=7))
    proxy.state.fault_rules.append(random_faults(
        0.2, seed=8, actions={"CreateSnapshot"}, faults=(LOST_ANSWER,)))
    result = backup(write_config, run_cli, max_attempts=15)
    assert result.status == 0, result.log
    assert sum(proxy.state.throttled.values()) + sum(proxy.calls.values()) > sum(
        proxy.state.answered.values()), "the storm did hit"
    every_volume = {v for i in instances for v in i.all_volumes}
    assert new_snapshots_per_volume(fleet) == dict.fromkeys(every_volume, 1)
    remaining = fleet.snapshot_ids()
    assert not expired & remaining
    assert foreign <= remaining


def test_lost_create_answers_never_make_duplicates(
    fleet: Fleet, proxy: EC2Proxy, write_config: Callable[..., Path], run_cli: Run
) -> None:
    instances, _, _ = small_fleet(fleet, instances=5)
    proxy.state.fault_rules.append(random_faults(
        0.3, seed=3, actions={"CreateSnapshot"}, faults=(LOST_ANSWER,)))
    result = backup(write_config, run_cli)
    assert result.status == 0, result.log
    assert "was lost" in result.log, "some answers were lost, and recovered"
    every_volume = {v for i in instances for v in i.all_volumes}
    assert new_snapshots_per_volume(fleet) == dict.fromkeys(every_volume, 1)


def test_a_lost_snapshot_not_yet_listed_is_found_on_a_second_look(
    fleet: Fleet, proxy: EC2Proxy, write_config: Callable[..., Path], run_cli: Run
) -> None:
    web = fleet.instance({"Backup": "daily"})
    seen: Counter[str] = Counter()

    def lose_once_then_list_late(action: str, params: dict[str, str]) -> Fault | None:
        seen[action] += 1
        if action == "CreateSnapshot" and seen[action] == 1:
            return LOST_ANSWER
        looking_for_it = "tag:molibackup:run-id" in params.values()
        if action == "DescribeSnapshots" and looking_for_it and seen["lookup"] == 0:
            seen["lookup"] += 1
            return Fault(200, "", body=empty_answer("DescribeSnapshots"))
        return None

    proxy.state.fault_rules.append(lose_once_then_list_late)
    result = backup(write_config, run_cli)
    assert result.status == 0, result.log
    assert proxy.calls["CreateSnapshot"] == 1, "the second look found it: no second create"
    assert new_snapshots_per_volume(fleet) == {web.root_volume: 1}


def test_the_per_volume_rate_limit_is_waited_out(
    fleet: Fleet, proxy: EC2Proxy, write_config: Callable[..., Path], run_cli: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(snapshotter, "PER_VOLUME_RATE_WAIT", 0.3)
    web = fleet.instance({"Backup": "daily"})
    refused: set[str] = set()

    def too_soon_once(action: str, params: dict[str, str]) -> Fault | None:
        if action == "CreateSnapshot" and params["VolumeId"] not in refused:
            refused.add(params["VolumeId"])
            return Fault(400, "SnapshotCreationPerVolumeRateExceeded",
                         "The maximum per volume CreateSnapshot request rate has been exceeded.")
        return None

    proxy.state.fault_rules.append(too_soon_once)
    started = time.monotonic()
    result = backup(write_config, run_cli)
    assert result.status == 0, result.log
    assert time.monotonic() - started >= 0.3, "it waited instead of retrying at once"
    assert new_snapshots_per_volume(fleet) == {web.root_volume: 1}
    assert "one snapshot per volume every" in result.log


def test_too_many_snapshots_in_progress_is_reported_for_that_volume_only(
    fleet: Fleet, proxy: EC2Proxy, write_config: Callable[..., Path], run_cli: Run
) -> None:
    busy = fleet.instance({"Backup": "daily"})
    calm = fleet.instance({"Backup": "daily"})
    busy_old = fleet.job_snapshot(busy.root_volume, "nightly", age_days=50)
    fleet.job_snapshot(busy.root_volume, "nightly", age_days=49)
    proxy.state.fault_rules.append(lambda action, params: Fault(
        400, "ConcurrentSnapshotLimitExceeded", "Maximum snapshots in progress for the volume.")
        if action == "CreateSnapshot" and params["VolumeId"] == busy.root_volume else None)
    result = backup(write_config, run_cli)
    assert result.status == 2
    assert f"volume {busy.root_volume}" in result.log
    assert "still in progress" in result.log
    creates = [p for a, p in proxy.state.requests
               if a == "CreateSnapshot" and p["VolumeId"] == busy.root_volume]
    assert len(creates) == 1, "not retried in a loop"
    assert new_snapshots_per_volume(fleet) == {calm.root_volume: 1}
    assert busy_old in fleet.snapshot_ids(), "no new snapshot: the old ones stay"


def test_two_overlapping_runs_of_one_job_both_finish_safely(
    aws_env: Any, fleet: Fleet, write_config: Callable[..., Path]
) -> None:
    instances, expired, foreign = small_fleet(fleet, instances=3)
    path = write_config({"jobs": {"nightly": job(instance_tag="Backup=daily", retention=30)}})
    with EC2Proxy(aws_env.url, latency=0.03) as slow:
        env = {**os.environ, "AWS_ENDPOINT_URL_EC2": slow.url}
        executable = str(Path(sys.executable).parent / "molibackup")
        runs = [subprocess.Popen([executable, "-c", str(path)], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(2)]
        outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    per_volume = new_snapshots_per_volume(fleet)
    assert set(per_volume) == {v for i in instances for v in i.all_volumes}
    assert all(count >= 1 for count in per_volume.values())
    remaining = fleet.snapshot_ids()
    assert not expired & remaining
    assert foreign <= remaining


def test_a_job_stopped_by_an_error_still_reports_what_it_did(
    fleet: Fleet, proxy: EC2Proxy, write_config: Callable[..., Path], run_cli: Run
) -> None:
    web = fleet.instance({"Backup": "daily"})
    expired = fleet.job_snapshot(web.root_volume, "nightly", age_days=90)
    proxy.state.fault_rules.append(lambda action, params: Fault(
        403, "UnauthorizedOperation", "You are not authorized.")
        if action == "DescribeSnapshots" else None)
    result = backup(write_config, run_cli)
    assert result.status == 2
    assert "not allowed to call ec2:DescribeSnapshots" in result.log
    assert "FAILED: created 1, deleted 0" in result.log
    assert expired in fleet.snapshot_ids(), "no listing, no deletion"


def test_an_endpoint_that_never_answers_fails_the_job_in_bounded_time(
    aws_env: Any, write_config: Callable[..., Path], run_cli: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with faults.silent_endpoint() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", url)
        started = time.monotonic()
        result = backup(write_config, run_cli, max_attempts=2, read_timeout=1,
                        connect_timeout=1)
        elapsed = time.monotonic() - started
    assert result.status == 2
    assert elapsed < 15
    assert "did not answer ec2:DescribeInstances in time" in result.log
    assert "no answer within 1 s, 2 attempt(s)" in result.log
    assert "Traceback" not in result.log


def test_api_calls_stay_close_to_one_per_create_and_delete(
    fleet: Fleet, proxy: EC2Proxy, write_config: Callable[..., Path], run_cli: Run
) -> None:
    instances, expired, _ = small_fleet(fleet, instances=12)
    proxy.state.reset_counts()
    result = backup(write_config, run_cli)
    assert result.status == 0, result.log
    creates, deletes = proxy.calls["CreateSnapshot"], proxy.calls["DeleteSnapshot"]
    assert creates == sum(len(i.all_volumes) for i in instances)
    assert deletes == len(expired)
    total = sum(proxy.calls.values())
    assert proxy.calls["DescribeInstances"] == 1
    assert proxy.calls["DescribeVolumes"] == 1
    assert proxy.calls["DescribeSnapshots"] <= 3  # pages of 25
    assert total <= 1.15 * (creates + deletes) + 5
    assert all(p.get("Owner.1") == "self" for a, p in proxy.state.requests
               if a == "DescribeSnapshots")


def signalled_when_answered(event: threading.Event) -> Fault:
    """The call forwarded and answered as is, `event` set once the emulator has answered."""
    def answered(answer: bytes) -> bytes:
        event.set()
        return answer

    return Fault(200, "", rewrite=answered)


def test_backups_are_made_while_the_listing_of_the_job_s_snapshots_goes_on(
    fleet: Fleet, proxy: EC2Proxy, write_config: Callable[..., Path], run_cli: Run
) -> None:
    """Rotation's listing does not hold the backups back. Here it is answered only once a
    snapshot has been made, so it holds that run's own snapshots too: each counted once."""
    instances, expired, foreign = small_fleet(fleet, instances=2)
    made = threading.Event()
    held: list[bool] = []

    def listing_after_a_create(action: str, params: dict[str, str]) -> Fault | None:
        if action == "CreateSnapshot":
            return signalled_when_answered(made)
        inventory = "tag:molibackup:run-id" not in params.values() and "NextToken" not in params
        if action == "DescribeSnapshots" and inventory and not made.is_set():
            held.append(made.wait(timeout=10))
        return None

    proxy.state.fault_rules.append(listing_after_a_create)
    result = backup(write_config, run_cli)
    assert result.status == 0, result.log
    # [True]: the listing was held until a snapshot was made; [] (under load): the first
    # snapshot was made before the listing was even sent. [False] would be the failure: the
    # listing held, and no snapshot made while it was, for 10 s: the backups waited on it.
    assert held in ([True], []), "the backups waited for the listing"
    every_volume = {v for i in instances for v in i.all_volumes}
    assert new_snapshots_per_volume(fleet) == dict.fromkeys(every_volume, 1)
    remaining = fleet.snapshot_ids()
    assert not expired & remaining
    assert foreign <= remaining
    assert f"created {len(every_volume)}, deleted {len(expired)}, kept {len(every_volume)}," \
        in result.log


def test_sigterm_during_a_long_listing_exits_without_waiting_for_its_last_page(
    fleet: Fleet, proxy: EC2Proxy, write_config: Callable[..., Path]
) -> None:
    """A stopped run rotates nothing, so it does not wait for the rest of a listing that
    runs alongside the creation: here four pages, each answered after two seconds."""
    web = fleet.instance({"Backup": "daily"})
    expired = {fleet.job_snapshot(web.root_volume, "nightly", age_days=40 + i) for i in range(90)}
    made = threading.Event()

    def slow_listing(action: str, params: dict[str, str]) -> Fault | None:
        if action == "CreateSnapshot":
            return signalled_when_answered(made)
        if action == "DescribeSnapshots" and "tag:molibackup:run-id" not in params.values():
            time.sleep(2)
        return None

    proxy.state.fault_rules.append(slow_listing)
    config = write_config({"jobs": {"nightly": job(instance_tag="Backup=daily", retention=30)}})
    process = subprocess.Popen([executable(), "-c", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert made.wait(timeout=60), "a snapshot was made"
    process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert time.monotonic() - stopped < 5, "it did not list every page first"
    assert expired <= fleet.snapshot_ids(), "nothing deleted"
