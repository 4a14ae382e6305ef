"""The installed `molibackup` command as a subprocess: exit codes, logs, secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from molibackup import __version__
from tests.conftest import CliRun, job
from tests.support.cli import molibackup
from tests.support.ec2proxy import EC2Proxy, Fault
from tests.support.fleet import Fleet

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_version() -> None:
    result = molibackup("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"molibackup {__version__}"


def test_python_dash_m_works_too() -> None:
    result = subprocess.run([sys.executable, "-m", "molibackup", "--version"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert __version__ in result.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "file not found", id="missing-file"),
        pytest.param("jobs: [\n", "invalid YAML at line 2", id="invalid-yaml"),
        pytest.param("", "the file is empty", id="empty-file"),
        pytest.param("jobs:\n  a: {module: ebs-snapshot, aws_region: us-west-2, retension: 3}\n",
                     "jobs.a.retension: unknown option (did you mean 'retention'?)",
                     id="unknown-option"),
    ],
)
def test_a_config_problem_exits_1_with_one_line_and_no_traceback(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "molibackup.yaml"
    if content is not None:
        path.write_text(content)
    result = molibackup("-c", str(path))
    assert result.returncode == 1
    assert expected in result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_no_config_anywhere_exits_1(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    result = molibackup(env=env)
    assert result.returncode == 1
    assert "no configuration file found" in result.stderr


def test_the_config_is_found_through_the_environment_and_named_in_the_log(
    aws_env: Any, fleet: Fleet, write_config: Callable[..., Path]
) -> None:
    fleet.instance({"Backup": "daily"})
    path = write_config({"jobs": {"a": job(instance_tag="Backup=daily")}})
    result = molibackup(env={**os.environ, "MOLIBACKUP_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert f"configuration: {path}" in result.stderr


def test_validate_checks_without_touching_aws(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_config({"jobs": {"a": job(instance_id="local"), "b": job(enabled=False)}})
    env = {**os.environ, "AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:9"}  # nothing listens there
    result = molibackup("-c", str(path), "--validate", env=env)
    assert result.returncode == 0, result.stderr
    assert "configuration valid: 2 job(s): a, b" in result.stderr
    broken = write_config({"jobs": {"a": job(retention=0)}}, name="broken.yaml")
    assert molibackup("-c", str(broken), "--validate", env=env).returncode == 1


def test_a_failing_job_exits_2_and_the_others_still_run(
    aws_env: Any, fleet: Fleet, write_config: Callable[..., Path]
) -> None:
    fleet.instance({"Backup": "daily"})
    path = write_config({"jobs": {
        "first": job(instance_tag="Backup=daily"),
        "broken": job(instance_id="i-0123456789abcdef0"),
        "last": job(instance_tag="Backup=daily"),
    }})
    result = molibackup("-c", str(path))
    assert result.returncode == 2
    assert "job first: ok" in result.stderr
    assert "job broken: FAILED" in result.stderr
    assert "job last: ok" in result.stderr
    assert "3 job(s) run: 2 ok, 1 failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert fleet.job_snapshots("first")
    assert fleet.job_snapshots("last")


def test_an_answer_on_a_pipe_arrives_whole_with_the_exit_status(
    aws_env: Any, fleet: Fleet, write_config: Callable[..., Path]
) -> None:
    """The command exits without the interpreter's teardown: its answer and its log arrive
    whole, with the exit status."""
    for _ in range(2):
        fleet.instance({"Backup": "daily"}, {"data": {}})
    path = write_config({"jobs": {"daily": job(instance_tag="Backup=daily")}})
    backup = molibackup("-c", str(path))
    assert backup.returncode == 0
    assert backup.stderr.rstrip().endswith("1 job(s) run: 1 ok, 0 failed")
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    listing = molibackup("-c", str(path), "snapshots", "--output", "json", env=buffered)
    assert listing.returncode == 0, listing.stderr
    volumes = json.loads(listing.stdout)["jobs"][0]["volumes"]
    assert len(volumes) == 4
    assert all(len(volume["snapshots"]) == 1 for volume in volumes)


def test_leaving_flushes_what_was_written_and_keeps_the_status() -> None:
    """A pipe is block-buffered unless PYTHONUNBUFFERED is set (as in the image)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from molibackup.cli import leave; "
         "sys.stdout.write('answer'); sys.stderr.write('log'); leave(3)"],
        capture_output=True, text=True, timeout=60, check=False, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (3, "answer", "log")


def test_job_runs_only_the_named_jobs(
    fleet: Fleet, write_config: Callable[..., Path], run_cli: Callable[..., CliRun]
) -> None:
    fleet.instance({"Backup": "daily"})
    path = write_config({"jobs": {name: job(instance_tag="Backup=daily")
                                  for name in ("a", "b", "c")}})
    result = run_cli("-c", str(path), "--job", "a", "--job", "c")
    assert result.status == 0, result.log
    assert fleet.job_snapshots("a")
    assert fleet.job_snapshots("c")
    assert not fleet.job_snapshots("b")


def test_an_unknown_job_name_is_a_config_error(
    write_config: Callable[..., Path], run_cli: Callable[..., CliRun]
) -> None:
    path = write_config({"jobs": {"a": job()}})
    result = run_cli("-c", str(path), "--job", "nope")
    assert result.status == 1
    assert f"{path}: no job named 'nope' (jobs in this file: a)" in result.log


def test_disabled_jobs_are_not_run(
    fleet: Fleet, write_config: Callable[..., Path], run_cli: Callable[..., CliRun]
) -> None:
    fleet.instance({"Backup": "daily"})
    path = write_config({"jobs": {"off": job(instance_tag="Backup=daily", enabled=False)}})
    result = run_cli("-c", str(path))
    assert result.status == 0
    assert "disabled" in result.log
    assert fleet.snapshots() == []


def test_secrets_never_appear_in_the_log_even_at_debug_level(
    aws_env: Any, fleet: Fleet, write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet.instance({"Backup": "daily"})
    path = write_config({"global": {"loglevel": "debug"}, "jobs": {
        "keys": job(instance_tag="Backup=daily", accesskey_id="AKIAEXAMPLE",
                    accesskey_secret=SECRET),
        "crash": job(instance_tag="Backup=crash", accesskey_id="AKIAOTHER",
                     accesskey_secret=SECRET + "2"),
    }})
    with EC2Proxy(aws_env.url) as proxy:
        # An AWS error message that echoes the secret back must still be redacted.
        proxy.state.fault_rules.append(lambda action, params: Fault(
            400, "InvalidParameterValue", f"bad value {SECRET}2")
            if action == "DescribeInstances" and "crash" in params.values() else None)
        env = {**os.environ, "AWS_ENDPOINT_URL_EC2": proxy.url,
               "AWS_SESSION_TOKEN": "session-token-value-secret"}
        result = molibackup("-c", str(path), env=env)
        json_result = molibackup("-c", str(path), "--log-format", "json", env=env)
    assert result.returncode == json_result.returncode == 2
    for output in (result.stderr, json_result.stderr):
        assert "debug" in output.lower()
        assert "bad value ***" in output
        assert SECRET not in output
        assert "session-token-value-secret" not in output
        assert os.environ["AWS_SECRET_ACCESS_KEY"] not in output


def test_json_logs_are_one_object_per_line_each_with_its_job(
    aws_env: Any, fleet: Fleet, write_config: Callable[..., Path]
) -> None:
    fleet.instance({"Backup": "daily"})
    path = write_config({"global": {"logformat": "json"},
                         "jobs": {"web": job(instance_tag="Backup=daily")}})
    result = molibackup("-c", str(path))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"time", "level", "message"} <= set(records[0])
    job_records = [r for r in records if r.get("job") == "web"]
    assert any("created snapshot" in r["message"] for r in job_records)
    assert all(r["time"].endswith("+00:00") for r in records)


def test_the_log_format_flag_overrides_the_config(
    fleet: Fleet, write_config: Callable[..., Path], run_cli: Callable[..., CliRun]
) -> None:
    path = write_config({"global": {"logformat": "json"}, "jobs": {"a": job()}})
    result = run_cli("-c", str(path), "--validate", "--log-format", "text")
    assert not result.log.lstrip().startswith("{")


def test_an_unreachable_endpoint_fails_the_job_with_one_line(
    aws_env: Any, write_config: Callable[..., Path]
) -> None:
    path = write_config({"global": {"max_attempts": 2},
                         "jobs": {"a": job(instance_tag="Backup=daily")}})
    env = {**os.environ, "AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:9"}
    result = molibackup("-c", str(path), env=env)
    assert result.returncode == 2
    assert "cannot reach the EC2 endpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_denied_call_names_the_missing_permission(
    aws_env: Any, fleet: Fleet, write_config: Callable[..., Path]
) -> None:
    fleet.instance({"Backup": "daily"})
    path = write_config({"jobs": {"denied": job(instance_tag="Backup=daily"),
                                  "allowed": job(instance_tag="Backup=daily")}})
    with EC2Proxy(aws_env.url) as proxy:
        proxy.state.fault_rules.append(lambda action, params: Fault(
            403, "UnauthorizedOperation", "You are not authorized to perform this operation.")
            if action == "CreateSnapshot" and any(
                v == "denied" for v in params.values()) else None)
        result = molibackup("-c", str(path),
                            env={**os.environ, "AWS_ENDPOINT_URL_EC2": proxy.url})
    assert result.returncode == 2
    assert "not allowed to call ec2:CreateSnapshot (UnauthorizedOperation)" in result.stderr
    assert "job allowed: ok" in result.stderr


def test_a_dummy_key_too_short_to_be_a_credential_masks_no_ordinary_text(
    aws_env: Any, fleet: Fleet, write_config: Callable[..., Path]
) -> None:
    fleet.instance({"Backup": "daily"})
    path = write_config({"jobs": {"copy_to-job": job(instance_tag="Backup=daily")}},
                        name="c.yaml")
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": "y"}
    result = molibackup("-c", str(path), "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert f"configuration: {path}" in result.stderr
    assert "dry run" in result.stderr
    assert "copy_to-job" in result.stderr
    assert "***" not in result.stderr


def test_an_unknown_region_passes_validate_with_a_warning_naming_the_closest(
    write_config: Callable[..., Path]
) -> None:
    path = write_config({"jobs": {"web": job(aws_region="us-west-99", instance_tag="A=b")}})
    result = molibackup("-c", str(path), "--validate")
    assert result.returncode == 0, result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert "jobs.web.aws_region: us-west-99 is not a region" in warning
    assert "did you mean us-west-" in warning


def test_restore_help_says_it_takes_exactly_one_job() -> None:
    result = molibackup("restore", "--help")
    assert result.returncode == 0
    job_line = next(line for line in result.stdout.splitlines() if "--job NAME " in line)
    assert "exactly one" in job_line
    assert "repeatable" not in job_line
