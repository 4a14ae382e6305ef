"""One job over accounts x regions, targets run concurrently, and sharding over pods.

The emulator keeps one state per account and region; STS AssumeRole into
arn:aws:iam::<account>:role/<name> gives credentials acting in that account, and
Organizations lists the accounts it created.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from molibackup.ebs.backup.pipeline import Backup
from molibackup.jobs import Target
from molibackup.sharding import Shard, assign
from tests.conftest import CliRun, job
from tests.support.cli import executable
from tests.support.ec2proxy import EC2Proxy, Fault
from tests.support.emulator import Emulator
from tests.support.fleet import ROLE, Fleet, ec2_client_as

Run = Callable[..., CliRun]
REGIONS = ["us-west-2", "eu-west-1", "ap-southeast-2"]
PROD, STAGING = "111111111111", "222222222222"


def fleet_in(aws_env: Emulator, account: str, region: str) -> Fleet:
    return Fleet(ec2_client_as(aws_env.url, region, account), aws_env, region, account)


@pytest.fixture
def fleets(aws_env: Emulator) -> dict[tuple[str, str], Fleet]:
    """A tagged instance with a data volume in every account and region."""
    found = {}
    for account in (PROD, STAGING):
        for region in REGIONS:
            fleet = fleet_in(aws_env, account, region)
            fleet.instance({"Backup": "daily"}, {"data": {}})
            found[(account, region)] = fleet
    return found


@pytest.fixture
def molibackup(write_config: Callable[..., Path], run_cli: Run) -> Callable[..., CliRun]:
    def run(*args: str, **options: Any) -> CliRun:
        """A job of these options; one given as None is left out (aws_region: None)."""
        options = {k: v for k, v in job(**options).items() if v is not None}
        return run_cli("-c", str(write_config({"jobs": {"fleet": options}})), *args)

    return run


FLEET = {"aws_region": None, "aws_regions": REGIONS, "instance_tag": "Backup=daily",
         "exclude_boot_volume": True,
         "accounts": [{"role_arn": ROLE.format(PROD), "name": "prod"},
                      {"role_arn": ROLE.format(STAGING)}]}


def test_a_job_over_regions_and_accounts_backs_up_each_target_and_nowhere_else(
    fleets: dict[tuple[str, str], Fleet], write_config: Callable[..., Path], run_cli: Run,
    aws_env: Emulator
) -> None:
    prod_west = fleets[(PROD, "us-west-2")]
    expired = prod_west.job_snapshot(next(iter(prod_west.client.describe_volumes(Filters=[
        {"Name": "tag:Name", "Values": ["data"]}])["Volumes"]))["VolumeId"], "fleet", 60)
    elsewhere = fleet_in(aws_env, PROD, "eu-central-1")
    elsewhere.instance({"Backup": "daily"}, {"data": {}})
    result = run_cli("-c", str(write_config({"jobs": {"fleet": {
        "module": "ebs-snapshot", **{k: v for k, v in FLEET.items() if v is not None}}}})))
    assert result.status == 0, result.log
    for (account, region), fleet in fleets.items():
        made = fleet.job_snapshots("fleet")
        assert len(made) == 1, (account, region)
        assert f"job fleet [{account}/{region}]: ok: created 1" in result.log
    assert expired not in prod_west.snapshot_ids()
    assert elsewhere.job_snapshots("fleet") == []
    assert "job fleet: ok: created 6, deleted 1" in result.log


def test_a_denied_role_fails_its_targets_alone(
    fleets: dict[tuple[str, str], Fleet], write_config: Callable[..., Path], run_cli: Run,
    aws_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EC2Proxy(aws_env.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", proxy.url)
        proxy.state.fault_rules.append(lambda action, params: Fault(
            403, "AccessDenied", "not authorized") if action == "AssumeRole"
            and STAGING in params.get("RoleArn", "") else None)
        result = run_cli("-c", str(write_config({"jobs": {"fleet": {
            "module": "ebs-snapshot", **{k: v for k, v in FLEET.items() if v is not None}}}})))
    assert result.status == 2
    for region in REGIONS:
        assert len(fleets[(PROD, region)].job_snapshots("fleet")) == 1
        assert f"job fleet [{STAGING}/{region}] failed: could not assume role" in result.log
    assert "job fleet: FAILED: created 3" in result.log


def test_an_organizations_accounts_by_globs(
    aws_env: Emulator, write_config: Callable[..., Path], run_cli: Run
) -> None:
    organizations = boto3.client("organizations", region_name="us-east-1",
                                 endpoint_url=aws_env.url)
    organizations.create_organization(FeatureSet="ALL")
    ids = {}
    for name in ("prod-a", "prod-b", "sandbox"):
        status = organizations.create_account(Email=f"{name}@example.com",
                                              AccountName=name)["CreateAccountStatus"]
        ids[name] = organizations.describe_create_account_status(
            CreateAccountRequestId=status["Id"])["CreateAccountStatus"]["AccountId"]
    for account in ids.values():
        fleet_in(aws_env, account, "us-west-2").instance({"Backup": "daily"}, {"data": {}})
    config = write_config({"jobs": {"org": {
        "module": "ebs-snapshot", "aws_region": "us-west-2", "instance_tag": "Backup=daily",
        "exclude_boot_volume": True, "allow_empty": True,
        "organization": {"role_name": "molibackup", "accounts": ["prod-*"],
                         "exclude": [ids["prod-b"]]}}}})
    result = run_cli("-c", str(config))
    assert result.status == 0, result.log
    made = {name: len(fleet_in(aws_env, account, "us-west-2").job_snapshots("org"))
            for name, account in ids.items()}
    assert made == {"prod-a": 1, "prod-b": 0, "sandbox": 0}


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_every_target_is_in_exactly_one_shard(count: int) -> None:
    targets = [("fleet", Target(region, account)) for account in (PROD, STAGING, None)
               for region in REGIONS] + [("other", Target("us-west-2"))]
    shares = [assign(targets, Shard(index, count)) for index in range(count)]
    everything = [key for share in shares for key in share]
    assert len(everything) == len(set(everything)) == len(targets)
    assert shares == [assign(list(reversed(targets)), Shard(i, count)) for i in range(count)]


def test_two_shards_one_after_the_other_back_up_every_target_once(
    fleets: dict[tuple[str, str], Fleet], molibackup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert molibackup("--shard", "0/2", **FLEET).status == 0
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    monkeypatch.setenv("MOLIBACKUP_SHARDS", "2")
    assert molibackup(**FLEET).status == 0
    made = {key: len(f.job_snapshots("fleet")) for key, f in fleets.items()}
    assert made == dict.fromkeys(fleets, 1)


def test_a_shard_with_no_target_says_so(aws_env: Emulator, molibackup: Any) -> None:
    result = molibackup("--shard", "5/6", instance_tag="A=b")
    assert result.status == 0, result.log
    assert "shard 5/6: no target falls to this shard; nothing to do" in result.log


@pytest.mark.parametrize(("args", "env", "expected"), [
    pytest.param(("--shard", "3/3"), {}, "INDEX must be from 0 to COUNT - 1", id="too-big"),
    pytest.param(("--shard", "a/b"), {}, "is not INDEX/COUNT", id="not-numbers"),
    pytest.param((), {"MOLIBACKUP_SHARDS": "3"}, "JOB_COMPLETION_INDEX is not", id="no-index"),
])
def test_a_bad_shard_is_a_usage_error(molibackup: Any, monkeypatch: pytest.MonkeyPatch,
                                      args: tuple[str, ...], env: dict[str, str],
                                      expected: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = molibackup(*args, instance_tag="A=b")
    assert result.status == 1
    assert expected in result.log


def test_check_and_snapshots_see_every_target(
    fleets: dict[tuple[str, str], Fleet], molibackup: Any
) -> None:
    assert molibackup(**FLEET).status == 0
    check = molibackup("check", "--output", "json", **FLEET)
    assert check.status == 0, check.log
    assert len(json.loads(check.out)["jobs"]) == 6
    listing = json.loads(molibackup("snapshots", "--output", "json", **FLEET).out)
    assert sorted(j["region"] for j in listing["jobs"]) == sorted(REGIONS * 2)
    assert all(len(j["volumes"]) == 1 for j in listing["jobs"])


@pytest.mark.parametrize(("options", "expected"), [
    pytest.param({"aws_regions": REGIONS}, "give aws_region (one region) or aws_regions",
                 id="both-region-forms"),
    pytest.param({"accounts": [{"role_arn": ROLE.format(PROD)}],
                  "role_arn": ROLE.format(STAGING)}, "leave role_arn out", id="role-and-accounts"),
    pytest.param({"accounts": [{"role_arn": ROLE.format(PROD)}],
                  "organization": {"role_name": "x"}}, "not both", id="accounts-and-org"),
])
def test_contradicting_targets_are_refused(molibackup: Any, options: dict[str, Any],
                                           expected: str) -> None:
    result = molibackup("--validate", instance_tag="A=b", **options)
    assert result.status == 1
    assert expected in result.log


def test_no_region_at_all_is_one_line(write_config: Callable[..., Path], run_cli: Run) -> None:
    config = write_config({"jobs": {"fleet": {"module": "ebs-snapshot", "instance_tag": "A=b"}}})
    result = run_cli("-c", str(config), "--validate")
    assert result.status == 1
    assert "jobs.fleet: missing required option 'aws_region'" in result.log


def test_restore_in_a_job_of_several_targets_says_which_with_account_and_region(
    fleets: dict[tuple[str, str], Fleet], molibackup: Any
) -> None:
    assert molibackup(**FLEET).status == 0
    fleet = fleets[(STAGING, "eu-west-1")]
    (snapshot,) = fleet.job_snapshots("fleet")
    unsaid = molibackup("restore", "--job", "fleet", "--volume", snapshot["VolumeId"], **FLEET)
    assert unsaid.status == 1
    assert "say which with --account and --region" in unsaid.log
    result = molibackup("restore", "--job", "fleet", "--volume", snapshot["VolumeId"],
                        "--account", STAGING, "--region", "eu-west-1", "--output", "json",
                        **FLEET)
    assert result.status == 0, result.log
    made = json.loads(result.out)["volumes"][0]["volume_id"]
    assert made in {v["VolumeId"] for v in fleet.client.describe_volumes()["Volumes"]}


def test_verify_and_report_cover_every_target(
    fleets: dict[tuple[str, str], Fleet], molibackup: Any
) -> None:
    assert molibackup(**FLEET).status == 0
    report = json.loads(molibackup("report", "--output", "json", **FLEET).out)
    assert len(report["jobs"]) == 6
    verify = molibackup("verify", "--dry-run", "--output", "json", **FLEET)
    assert verify.status == 0, verify.log
    assert len(json.loads(verify.out)["jobs"]) == 6


def test_an_organization_that_cannot_be_listed_fails_the_job_before_any_target(
    fleets: dict[tuple[str, str], Fleet], molibackup: Any, aws_env: Emulator,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    with EC2Proxy(aws_env.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", proxy.url)
        proxy.state.fault_rules.append(lambda action, params: Fault(
            400, "AccessDeniedException", "You don't have permissions to access this resource.")
            if action == "ListAccounts" else None)
        result = molibackup(**{**FLEET, "accounts": None,
                               "organization": {"role_name": "molibackup"}})
    assert result.status == 2
    (line,) = [line for line in result.log.splitlines() if "ListAccounts" in line]
    assert "AccessDeniedException" in line
    assert "Traceback" not in result.log
    assert " target(s)" not in result.log
    assert all(fleet.job_snapshots("fleet") == [] for fleet in fleets.values())


def test_snapshots_narrowed_to_an_account_and_a_region(
    fleets: dict[tuple[str, str], Fleet], molibackup: Any
) -> None:
    assert molibackup(**FLEET).status == 0
    listing = molibackup("snapshots", "--account", STAGING, "--region", "eu-west-1",
                         "--output", "json", **FLEET)
    assert listing.status == 0, listing.log
    (only,) = json.loads(listing.out)["jobs"]
    assert (only["account"], only["region"]) == (STAGING, "eu-west-1")
    (snapshot,) = fleets[(STAGING, "eu-west-1")].job_snapshots("fleet")
    assert [s["snapshot_id"] for v in only["volumes"] for s in v["snapshots"]] == [
        snapshot["SnapshotId"]]


def test_snapshots_of_a_target_no_job_has_is_one_line(
    fleets: dict[tuple[str, str], Fleet], molibackup: Any
) -> None:
    result = molibackup("snapshots", "--region", "eu-central-1", **FLEET)
    assert result.status == 1
    assert "no job has a target in region eu-central-1: check --account and --region" in (
        result.log)
    assert "Traceback" not in result.log
    table = molibackup("snapshots", "--account", PROD, "--region", "us-west-2", **FLEET)
    assert table.status == 0, table.log
    assert f"job fleet ({PROD}/us-west-2)" in table.out


def test_an_organization_is_read_to_its_last_page_and_only_its_active_accounts_run(
    aws_env: Emulator, molibackup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    organizations = boto3.client("organizations", region_name="us-east-1",
                                 endpoint_url=aws_env.url)
    organizations.create_organization(FeatureSet="ALL")
    ids = []
    for number in range(23):  # 24 accounts with the management one: two pages of 20
        status = organizations.create_account(Email=f"team{number}@example.com",
                                              AccountName=f"team-{number:02d}")
        ids.append(organizations.describe_create_account_status(
            CreateAccountRequestId=status["CreateAccountStatus"]["Id"]
        )["CreateAccountStatus"]["AccountId"])
    organizations.close_account(AccountId=ids[21])
    with EC2Proxy(aws_env.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", proxy.url)
        listing = molibackup("snapshots", "--output", "json", aws_region="us-west-2",
                             instance_tag="Backup=daily", allow_empty=True,
                             organization={"role_name": "molibackup", "accounts": ["team-*"]})
    assert listing.status == 0, listing.log
    assert proxy.calls["ListAccounts"] == 2
    listed = [job["account"] for job in json.loads(listing.out)["jobs"]]
    assert listed == sorted(set(ids) - {ids[21]})


# --- each target in a process of its own ---------------------------------------------------


def fleet_config(write_config: Callable[..., Path], settings: dict[str, Any] | None = None,
                 **options: Any) -> Path:
    return write_config({**({"global": settings} if settings else {}), "jobs": {"fleet": {
        "module": "ebs-snapshot", **{k: v for k, v in FLEET.items() if v is not None},
        **options}}})


def processes_running(config: Path) -> list[int]:
    """The processes (a runner, its targets' children) started with this config file."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(config).encode() in command:
                found.append(int(entry.name))
    return found


def test_a_target_that_breaks_fails_alone(
    fleets: dict[tuple[str, str], Fleet], write_config: Callable[..., Path], run_cli: Run,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target whose run breaks (an unexpected error) fails alone: the targets beside it,
    and those not yet started, finish and are counted."""
    run = Backup.run

    def breaks_in_eu_west_1(self: Backup, context: Any, result: Any) -> None:
        if self.options.aws_region == "eu-west-1":
            raise RuntimeError("the target broke")
        run(self, context, result)

    monkeypatch.setattr(Backup, "run", breaks_in_eu_west_1)
    result = run_cli("-c", str(fleet_config(write_config, {"target_concurrency": 2})))
    assert result.status == 2, result.log
    for account in (PROD, STAGING):
        assert (f"job fleet [{account}/eu-west-1] failed: unexpected error: RuntimeError: "
                "the target broke") in result.log
        assert fleets[(account, "eu-west-1")].job_snapshots("fleet") == []
        for region in ("us-west-2", "ap-southeast-2"):
            assert len(fleets[(account, region)].job_snapshots("fleet")) == 1
    assert "job fleet: FAILED: created 4" in result.log


def test_every_target_s_log_lines_reach_the_log_as_json(
    fleets: dict[tuple[str, str], Fleet], write_config: Callable[..., Path], run_cli: Run
) -> None:
    result = run_cli("-c", str(fleet_config(write_config)), "--log-format", "json")
    assert result.status == 0, result.log
    lines = [json.loads(line) for line in result.log.splitlines()]
    summaries = {line["target"]: line["message"] for line in lines
                 if line.get("target") and line["message"].startswith("job fleet [")}
    assert summaries == {f"{account}/{region}": f"job fleet [{account}/{region}]: ok: created 1, "
                         "deleted 0, kept 1, skipped 0, failed 0"
                         for account in (PROD, STAGING) for region in REGIONS}


def test_the_targets_run_as_many_at_a_time_as_target_concurrency_allows(
    fleets: dict[tuple[str, str], Fleet], write_config: Callable[..., Path], run_cli: Run
) -> None:
    result = run_cli("-c", str(fleet_config(write_config)))
    assert result.status == 0, result.log
    assert "job fleet: 6 target(s), 4 at a time\n" in result.log + "\n"
    for fleet in fleets.values():
        assert len(fleet.job_snapshots("fleet")) == 1
    assert "job fleet: ok: created 6" in result.log


def held_creates(proxy: EC2Proxy) -> tuple[threading.Event, threading.Event]:
    """(a CreateSnapshot has arrived, let the CreateSnapshots held go on)."""
    arrived, release = threading.Event(), threading.Event()

    def hold(action: str, _: dict[str, str]) -> Fault | None:
        if action == "CreateSnapshot":
            arrived.set()
            release.wait(timeout=60)
        return None

    proxy.state.fault_rules.append(hold)
    return arrived, release


def test_sigterm_stops_every_target_and_leaves_no_process_behind(
    fleets: dict[tuple[str, str], Fleet], write_config: Callable[..., Path],
    aws_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    prod_west = fleets[(PROD, "us-west-2")]
    volume = prod_west.client.describe_volumes(Filters=[
        {"Name": "tag:Name", "Values": ["data"]}])["Volumes"][0]["VolumeId"]
    expired = prod_west.job_snapshot(volume, "fleet", 60)
    config = fleet_config(write_config, retention=7)
    with EC2Proxy(aws_env.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", proxy.url)
        arrived, release = held_creates(proxy)
        process = subprocess.Popen([executable(), "-c", str(config)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            assert arrived.wait(timeout=60), "a snapshot was asked for"
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
        finally:
            release.set()
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert stderr.count("received SIGTERM") == 1, stderr
    assert "rotation not started, nothing deleted" in stderr
    assert "job fleet: INTERRUPTED" in stderr
    assert expired in prod_west.snapshot_ids()
    assert processes_running(config) == []
