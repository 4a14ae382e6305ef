"""Metrics to a real Pushgateway and to a textfile, pings, and the coverage check."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CliRun, job
from tests.support.ec2proxy import MUTATING, EC2Proxy, Fault
from tests.support.emulator import Emulator, free_port
from tests.support.fleet import ROLE, Fleet, ec2_client_as
from tests.support.pushgateway import Pushgateway, running_pushgateway

Run = Callable[..., CliRun]
GROUP = {"job": "molibackup", "instance": ""}


@pytest.fixture(scope="module")
def pushgateway_server() -> Iterator[Pushgateway]:
    with running_pushgateway() as gateway:
        yield gateway


@pytest.fixture
def pushgateway(pushgateway_server: Pushgateway) -> Pushgateway:
    pushgateway_server.wipe()
    return pushgateway_server


@pytest.fixture
def run_config(write_config: Callable[..., Path], run_cli: Run) -> Callable[..., CliRun]:
    def run(config: dict[str, Any], *args: str) -> CliRun:
        return run_cli("-c", str(write_config(config)), *args)

    return run


# --- the Pushgateway --------------------------------------------------------------------------


def test_a_run_pushes_the_jobs_metrics_and_each_volumes_newest_snapshot(
    fleet: Fleet, run_config: Any, pushgateway: Pushgateway
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    fleet.job_snapshot(web.root_volume, "web", age_days=40)
    result = run_config({"global": {"metrics": {"pushgateway": pushgateway.url}},
                         "jobs": {"web": job(instance_tag="Backup=daily")}})
    assert result.status == 0, result.log
    assert "metrics pushed to the Pushgateway" in result.log
    labels = {**GROUP, "molibackup_job": "web"}
    assert pushgateway.value("molibackup_job_success", **labels) == 1
    assert pushgateway.value("molibackup_job_volumes_selected", **labels) == 2
    for outcome, count in (("created", 2), ("deleted", 1), ("kept", 2), ("skipped", 0),
                           ("failed", 0)):
        assert pushgateway.value("molibackup_job_snapshots", outcome=outcome, **labels) == count
    ran = pushgateway.value("molibackup_job_last_run_timestamp_seconds", **labels)
    assert ran is not None
    assert pushgateway.value("molibackup_job_last_success_timestamp_seconds", **labels) == ran
    assert (pushgateway.value("molibackup_job_api_calls", **labels) or 0) >= 4
    assert pushgateway.value("molibackup_job_api_throttled", **labels) == 0
    volumes = pushgateway.samples("molibackup_volume_last_snapshot_timestamp_seconds")
    by_volume = {dict(key)["volume_id"]: (dict(key)["volume_name"], value)
                 for key, value in volumes.items()}
    assert set(by_volume) == set(web.all_volumes)
    assert by_volume[web.volumes["data"]][0] == "data"
    assert all(value > ran - 60 for _, value in by_volume.values())


def test_two_jobs_never_overwrite_each_other(
    fleet: Fleet, run_config: Any, pushgateway: Pushgateway
) -> None:
    fleet.instance({"Backup": "daily"})
    config = {"global": {"metrics": {"pushgateway": pushgateway.url}},
              "jobs": {"first": job(instance_tag="Backup=daily"),
                       "second": job(instance_tag="Backup=daily")}}
    assert run_config(config, "--job", "first").status == 0
    assert run_config(config, "--job", "second").status == 0
    successes = pushgateway.samples("molibackup_job_success")
    assert {dict(key)["molibackup_job"] for key in successes} == {"first", "second"}
    assert all(dict(key)["instance"] == "" for key in successes)


def test_a_failed_run_keeps_the_time_of_the_last_success(
    fleet: Fleet, run_config: Any, pushgateway: Pushgateway
) -> None:
    fleet.instance({"Backup": "daily"})
    gateway = {"metrics": {"pushgateway": pushgateway.url}}
    assert run_config({"global": gateway,
                       "jobs": {"web": job(instance_tag="Backup=daily")}}).status == 0
    labels = {**GROUP, "molibackup_job": "web"}
    success = pushgateway.value("molibackup_job_last_success_timestamp_seconds", **labels)
    failed = run_config({"global": gateway, "jobs": {"web": job(instance_tag="Backup=gone")}})
    assert failed.status == 2
    assert pushgateway.value("molibackup_job_success", **labels) == 0
    assert pushgateway.value("molibackup_job_last_success_timestamp_seconds",
                             **labels) == success
    assert (pushgateway.value("molibackup_job_last_run_timestamp_seconds", **labels)
            or 0) > (success or 0)


def test_a_job_can_push_to_its_own_pushgateway(
    fleet: Fleet, run_config: Any, pushgateway: Pushgateway
) -> None:
    fleet.instance({"Backup": "daily"})
    result = run_config({"jobs": {"web": job(instance_tag="Backup=daily",
                                             metrics={"pushgateway": pushgateway.url})}})
    assert result.status == 0
    assert pushgateway.value("molibackup_job_success", molibackup_job="web") == 1


def test_an_unreachable_pushgateway_is_a_warning_not_a_failure(
    fleet: Fleet, run_config: Any
) -> None:
    fleet.instance({"Backup": "daily"})
    result = run_config({"global": {"metrics": {"pushgateway": f"http://127.0.0.1:{free_port()}",
                                                "timeout": 2}},
                         "jobs": {"web": job(instance_tag="Backup=daily")}})
    assert result.status == 0, result.log
    assert "WARNING" in result.log
    assert "metrics not pushed to the Pushgateway at http://127.0.0.1:" in result.log


def test_a_dry_run_pushes_nothing(
    fleet: Fleet, run_config: Any, pushgateway: Pushgateway
) -> None:
    fleet.instance({"Backup": "daily"})
    result = run_config({"global": {"metrics": {"pushgateway": pushgateway.url}},
                         "jobs": {"web": job(instance_tag="Backup=daily")}}, "--dry-run")
    assert result.status == 0
    assert "dry run: no metrics pushed or written, no ping sent" in result.log
    assert pushgateway.samples("molibackup_job_success") == {}


def test_pushgateway_credentials_are_used_and_never_logged(
    fleet: Fleet, run_config: Any
) -> None:
    fleet.instance({"Backup": "daily"})
    server = RecordingServer()
    with server.running():
        url = f"http://pusher:s3cret-pass-word@127.0.0.1:{server.port}"
        result = run_config({"global": {"metrics": {"pushgateway": url}},
                             "jobs": {"web": job(instance_tag="Backup=daily")}})
    assert result.status == 0
    assert "s3cret-pass-word" not in result.log
    (request,) = server.requests
    assert request.method == "PUT"
    parts = request.path.removeprefix("/metrics/").split("/")
    assert dict(zip(parts[::2], parts[1::2], strict=True)) == {
        "job": "molibackup", "molibackup_job": "web", "instance@base64": "="}
    assert request.headers["Authorization"].startswith("Basic ")


# --- the textfile collector -------------------------------------------------------------------


def read_textfile(path: Path) -> dict[str, float]:
    return {sample.name + str(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(path.read_text())
            for sample in family.samples}


def test_metrics_are_written_for_the_textfile_collector(
    fleet: Fleet, run_config: Any, tmp_path: Path
) -> None:
    fleet.instance({"Backup": "daily"})
    directory = tmp_path / "textfile"
    directory.mkdir()
    config = {"global": {"metrics": {"textfile": str(directory)}},
              "jobs": {"web": job(instance_tag="Backup=daily")}}
    assert run_config(config).status == 0
    path = directory / "molibackup_web.prom"
    first = read_textfile(path)
    success_key = "molibackup_job_last_success_timestamp_seconds[('molibackup_job', 'web')]"
    assert first["molibackup_job_success[('molibackup_job', 'web')]"] == 1
    assert list(directory.iterdir()) == [path]  # no temporary file left behind
    config["jobs"] = {"web": job(instance_tag="Backup=gone")}
    assert run_config(config).status == 2
    second = read_textfile(path)
    assert second["molibackup_job_success[('molibackup_job', 'web')]"] == 0
    assert second[success_key] == first[success_key]


def test_an_unwritable_textfile_directory_is_a_warning(fleet: Fleet, run_config: Any) -> None:
    fleet.instance({"Backup": "daily"})
    result = run_config({"global": {"metrics": {"textfile": "/nonexistent/textfile"}},
                         "jobs": {"web": job(instance_tag="Backup=daily")}})
    assert result.status == 0
    assert "metrics not written to /nonexistent/textfile/molibackup_web.prom" in result.log


# --- pings ------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: str
    headers: dict[str, str]


@dataclass
class RecordingServer:
    status: int = 200
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    def running(self) -> Any:
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode() if length else ""
                parts = urllib.parse.urlsplit(self.path)
                recorder.requests.append(Request(self.command, parts.path,
                                                 dict(urllib.parse.parse_qsl(parts.query)),
                                                 body, dict(self.headers)))
                self.send_response(recorder.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_POST = do_PUT = do_GET = answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)

        class Running:
            def __enter__(self) -> RecordingServer:
                thread.start()
                return recorder

            def __exit__(self, *exc: object) -> None:
                server.shutdown()
                server.server_close()

        return Running()


def test_pings_announce_the_start_and_the_success_with_the_run_id(
    fleet: Fleet, run_config: Any
) -> None:
    fleet.instance({"Backup": "daily"})
    server = RecordingServer()
    with server.running():
        ping = f"http://127.0.0.1:{server.port}/ping/0f6e2c4a-uuid"
        result = run_config({"jobs": {"web": job(instance_tag="Backup=daily", ping_url=ping)}})
    assert result.status == 0, result.log
    start, end = server.requests
    assert (start.path, end.path) == ("/ping/0f6e2c4a-uuid/start", "/ping/0f6e2c4a-uuid")
    assert start.query["rid"] == end.query["rid"]
    assert "job web: ok: created 1" in end.body
    assert "0f6e2c4a-uuid" not in result.log
    assert "ping 'success' delivered" in result.log


def test_a_failed_job_pings_fail_with_its_errors(fleet: Fleet, run_config: Any) -> None:
    server = RecordingServer()
    with server.running():
        ping = f"http://127.0.0.1:{server.port}/ping/abc"
        result = run_config({"global": {"ping_url": ping},
                             "jobs": {"web": job(instance_tag="Backup=gone")}})
    assert result.status == 2
    start, end = server.requests
    assert (start.path, end.path) == ("/ping/abc/start", "/ping/abc/fail")
    assert "job web: FAILED" in end.body
    assert "no volume matched" in end.body


def test_a_ping_that_cannot_be_delivered_is_a_warning(fleet: Fleet, run_config: Any) -> None:
    fleet.instance({"Backup": "daily"})
    server = RecordingServer(status=500)
    with server.running():
        ping = f"http://127.0.0.1:{server.port}/ping/abc"
        result = run_config({"jobs": {"web": job(instance_tag="Backup=daily", ping_url=ping)}})
    assert result.status == 0
    assert "ping 'start' not delivered: the server answered HTTP 500" in result.log
    assert "ping 'success' not delivered" in result.log


# --- a job over several targets ---------------------------------------------------------------

PROD, STAGING = "111111111111", "222222222222"
TARGET_REGIONS = ["us-west-2", "eu-west-1"]


@pytest.fixture
def denied_staging(aws_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A tagged instance in every account and region; assuming the staging role is denied."""
    for account in (PROD, STAGING):
        for region in TARGET_REGIONS:
            Fleet(ec2_client_as(aws_env.url, region, account), aws_env, region,
                  account).instance({"Backup": "daily"}, {"data": {}})
    with EC2Proxy(aws_env.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", proxy.url)
        proxy.state.fault_rules.append(lambda action, params: Fault(
            403, "AccessDenied", "not authorized") if action == "AssumeRole"
            and STAGING in params.get("RoleArn", "") else None)
        yield


def fleet_job(**options: Any) -> dict[str, Any]:
    return {"module": "ebs-snapshot", "aws_regions": TARGET_REGIONS,
            "instance_tag": "Backup=daily", "exclude_boot_volume": True,
            "accounts": [{"role_arn": ROLE.format(PROD)}, {"role_arn": ROLE.format(STAGING)}],
            **options}


def test_each_target_pushes_its_outcome_under_its_account_and_region(
    denied_staging: None, run_config: Any, pushgateway: Pushgateway
) -> None:
    result = run_config({"global": {"metrics": {"pushgateway": pushgateway.url}},
                         "jobs": {"fleet": fleet_job()}})
    assert result.status == 2, result.log
    labels = {**GROUP, "molibackup_job": "fleet"}
    assert pushgateway.value("molibackup_job_success", **labels) == 0
    assert pushgateway.value("molibackup_job_snapshots", outcome="created", **labels) == 2
    success = {(dict(key)["account"], dict(key)["region"]): value for key, value
               in pushgateway.samples("molibackup_target_success").items()}
    assert success == {(PROD, region): 1 for region in TARGET_REGIONS} | {
        (STAGING, region): 0 for region in TARGET_REGIONS}
    for region in TARGET_REGIONS:
        assert pushgateway.value("molibackup_target_snapshots", account=PROD, region=region,
                                 outcome="created", **labels) == 1
        assert pushgateway.value("molibackup_target_snapshots", account=STAGING,
                                 region=region, outcome="created", **labels) == 0


def test_a_job_over_several_targets_pings_once_and_fails_when_one_target_does(
    denied_staging: None, run_config: Any
) -> None:
    server = RecordingServer()
    with server.running():
        ping = f"http://127.0.0.1:{server.port}/ping/fleet"
        result = run_config({"jobs": {"fleet": fleet_job(ping_url=ping)}})
    assert result.status == 2, result.log
    start, end = server.requests
    assert (start.path, end.path) == ("/ping/fleet/start", "/ping/fleet/fail")
    assert start.query["rid"] == end.query["rid"]
    assert "job fleet: FAILED: created 2" in end.body
    for region in TARGET_REGIONS:
        assert f"[{STAGING}/{region}] could not assume role" in end.body
        assert f"job fleet [{PROD}/{region}]: ok: created 1" in result.log


def test_a_job_over_several_targets_that_all_succeed_pings_success_once(
    aws_env: Emulator, run_config: Any
) -> None:
    for region in TARGET_REGIONS:
        Fleet(ec2_client_as(aws_env.url, region, PROD), aws_env, region,
              PROD).instance({"Backup": "daily"}, {"data": {}})
    server = RecordingServer()
    with server.running():
        ping = f"http://127.0.0.1:{server.port}/ping/fleet"
        result = run_config({"jobs": {"fleet": fleet_job(
            ping_url=ping, accounts=[{"role_arn": ROLE.format(PROD)}])}})
    assert result.status == 0, result.log
    assert [r.path for r in server.requests] == ["/ping/fleet/start", "/ping/fleet"]
    assert "job fleet: ok: created 2" in server.requests[1].body


# --- the coverage check -----------------------------------------------------------------------


@pytest.fixture
def covered_fleet(fleet: Fleet) -> dict[str, str]:
    web = fleet.instance({"Backup": "daily"}, {"fresh": {}, "stale": {}, "pending": {},
                                               "none": {}})
    fleet.job_snapshot(web.root_volume, "web", age_days=0.2)
    fleet.job_snapshot(web.volumes["fresh"], "web", age_days=1)
    fleet.job_snapshot(web.volumes["stale"], "web", age_days=3)
    fleet.job_snapshot(web.volumes["pending"], "web", age_days=0.1, state="pending")
    fleet.job_snapshot(web.volumes["none"], "other-job", age_days=0.1)
    return {"root": web.root_volume, **web.volumes}


def test_check_lists_every_volume_and_fails_on_the_uncovered_ones(
    aws_env: Any, covered_fleet: dict[str, str], write_config: Callable[..., Path],
    run_cli: Run, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write_config({"jobs": {"web": job(instance_tag="Backup=daily")}})
    with EC2Proxy(aws_env.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", proxy.url)
        result = run_cli("-c", str(path), "check", "--output", "json")
    assert result.status == 2
    assert not set(proxy.calls) & MUTATING
    document = json.loads(result.log[result.log.index("{"):result.log.rindex("}") + 1])
    statuses = {v["volume_id"]: (v["status"], v["pending"])
                for v in document["jobs"][0]["volumes"]}
    assert statuses == {
        covered_fleet["root"]: ("ok", 0), covered_fleet["fresh"]: ("ok", 0),
        covered_fleet["stale"]: ("stale", 0), covered_fleet["pending"]: ("none", 1),
        covered_fleet["none"]: ("none", 0)}
    assert document["ok"] is False
    assert document["jobs"][0]["max_age_seconds"] == 2 * 86400


def test_check_prints_a_table_and_honours_max_age(
    covered_fleet: dict[str, str], write_config: Callable[..., Path], run_cli: Run
) -> None:
    path = write_config({"jobs": {"web": job(instance_tag="Backup=daily")}})
    result = run_cli("-c", str(path), "check", "--max-age", "12h")
    assert result.status == 2
    lines = {line.split()[1]: line for line in result.log.splitlines()
             if line.startswith("web ")}
    assert lines[covered_fleet["root"]].rstrip().endswith("ok")
    assert "STALE" in lines[covered_fleet["fresh"]]
    assert "NONE (1 pending)" in lines[covered_fleet["pending"]]
    assert "12h" in lines[covered_fleet["root"]]


def test_check_passes_when_every_volume_is_covered(
    fleet: Fleet, write_config: Callable[..., Path], run_cli: Run
) -> None:
    web = fleet.instance({"Backup": "daily"})
    fleet.job_snapshot(web.root_volume, "web", age_days=0.9)
    path = write_config({"jobs": {"web": job(instance_tag="Backup=daily", min_interval="10h"),
                                  "other": job(instance_tag="Backup=none")}})
    assert run_cli("-c", str(path), "check", "--job", "web").status == 2  # 2 x 10h < 0.9d
    assert run_cli("-c", str(path), "check", "--job", "web", "--max-age", "1d").status == 0
