"""Every command at the edges: an endpoint that never answers, and SIGTERM or SIGINT in the
middle of a call. Each command runs as users run it, a subprocess of the installed script.

The endpoint that never answers is a local socket that accepts connections and reads
forever; the call held for a signal is held by the test proxy in front of the emulator.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import job
from tests.support import faults
from tests.support.cli import executable
from tests.support.ec2proxy import EC2Proxy, held
from tests.support.emulator import Emulator
from tests.support.fleet import Fleet

#: Each command as a user runs it, against a job `db` selecting instances tagged Backup=daily.
COMMANDS = {
    "backup": (),
    "check": ("check",),
    "snapshots": ("snapshots",),
    "restore": ("restore", "--job", "db", "--volume", "VOLUME"),
    "verify": ("verify",),
    "report": ("report",),
}
MUTATING = {"CreateSnapshot", "CreateSnapshots", "DeleteSnapshot", "CreateVolume",
            "AttachVolume", "DeleteVolume", "CreateTags", "DeleteTags", "ModifySnapshotTier",
            "RestoreSnapshotTier", "CopySnapshot"}
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_EBS",
                      "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_SERVICE_QUOTAS",
                      "AWS_ENDPOINT_URL_RBIN", "AWS_ENDPOINT_URL_ORGANIZATIONS")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    with faults.silent_endpoint() as url:
        yield url


def command_line(config: Path, name: str, volume: str = "vol-0123456789abcdef0") -> list[str]:
    return [executable(), "-c", str(config),
            *(volume if arg == "VOLUME" else arg for arg in COMMANDS[name])]


def run_timed(command: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str],
                                                                  float]:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300,
                            check=False)
    return result, time.monotonic() - started


def seconds_to_first(log: str, pattern: str) -> float:
    """From the run's first log line to the first line holding `pattern`."""
    stamps = [(datetime.fromisoformat(m.group(1)), line) for line in log.splitlines()
              if (m := STAMP.match(line))]
    first = next(moment for moment, line in stamps if pattern in line)
    return (first - stamps[0][0]).total_seconds()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_against_an_endpoint_that_never_answers_every_command_ends_and_says_why(
    aws_env: Emulator, write_config: Callable[..., Path], silent_endpoint: str, name: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ENDPOINT_VARIABLES:
        monkeypatch.setenv(variable, silent_endpoint)
    config = write_config({"global": {"read_timeout": 2, "connect_timeout": 2},
                           "jobs": {"db": job(instance_tag="Backup=daily")}})
    result, elapsed = run_timed(command_line(config, name), dict(os.environ))
    log = result.stderr + result.stdout
    assert result.returncode == 2, log
    assert elapsed < 60, f"{name} took {elapsed:.0f} s"
    # The wait is announced while it lasts: what, where, which attempt.
    assert re.search(rf"waiting for [a-z0-9-]+:\w+ at {silent_endpoint}: no answer for \d+ s "
                     r"\(attempt 1 of 2", log), log
    # The failure names the endpoint and how long it waited.
    assert f"{silent_endpoint}/" in log
    assert "no answer within 2 s, 2 attempt(s)" in log
    assert not re.search(r": ok: |\bok\b.*created", log), log
    assert "every selected volume has a recent completed snapshot" not in log
    assert "Traceback" not in log


def test_with_the_default_timeouts_the_wait_is_announced_early_and_the_job_ends(
    aws_env: Emulator, write_config: Callable[..., Path], silent_endpoint: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ENDPOINT_VARIABLES:
        monkeypatch.setenv(variable, silent_endpoint)
    config = write_config({"jobs": {"db": job(instance_tag="Backup=daily")}})
    result, elapsed = run_timed(command_line(config, "backup"), dict(os.environ))
    log = result.stderr
    assert result.returncode == 2, log
    assert seconds_to_first(log, "waiting for ec2:DescribeInstances") < 60
    assert elapsed < 150, f"the job took {elapsed:.0f} s"
    assert "job db: FAILED" in log
    assert "no answer within 30 s, 2 attempt(s)" in log


@pytest.mark.parametrize("case", [(name, signum, status) for name in COMMANDS
                                  for signum, status in ((signal.SIGTERM, 143),
                                                         (signal.SIGINT, 130))],
                         ids=lambda case: f"{case[0]}-{signal.Signals(case[1]).name}")
def test_the_first_signal_means_the_same_for_every_command(
    fleet: Fleet, proxy: EC2Proxy, write_config: Callable[..., Path], run_cli: Any,
    case: tuple[str, int, int]
) -> None:
    name, signum, status = case
    web = fleet.instance({"Backup": "daily"}, {"data": {}})
    config = write_config({"jobs": {"db": job(instance_tag="Backup=daily")}})
    assert run_cli("-c", str(config)).status == 0  # a backup to list, restore and verify
    proxy.state.reset_counts()
    arrived, release = held(proxy)
    process = subprocess.Popen(command_line(config, name, web.volumes["data"]),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ))
    try:
        assert arrived.wait(timeout=60), "the command made a call"
        process.send_signal(signum)
        time.sleep(0.5)
    finally:
        release.set()
    out, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    assert err.count(f"received {signal.Signals(signum).name}") == 1, err
    assert not MUTATING & set(proxy.calls), proxy.calls
    assert "Traceback" not in err
    if name == "backup":
        assert "job db: INTERRUPTED" in err
    elif name == "restore":
        assert ": interrupted" in out
    else:
        assert out.strip(), f"{name} printed nothing of what it had read"


@pytest.fixture
def gateway_page() -> Iterator[str]:
    with faults.gateway_page() as url:
        yield url


@pytest.mark.parametrize("name", ["backup", "report", "check"])
def test_a_foreign_error_page_is_one_line_with_its_status_and_title(
    aws_env: Emulator, write_config: Callable[..., Path], gateway_page: str, name: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ENDPOINT_VARIABLES:
        monkeypatch.setenv(variable, gateway_page)
    config = write_config({"global": {"max_attempts": 2},
                           "jobs": {"db": job(instance_tag="Backup=daily")}})
    result, _ = run_timed(command_line(config, name), dict(os.environ))
    log = result.stderr + result.stdout
    assert result.returncode == 2, log
    assert "lorem ipsum" not in log
    assert "<html" not in log.lower()
    lines = [line for line in log.splitlines() if "502 Bad Gateway" in line]
    assert lines, log
    assert all("failed: HTTP 502 from the" in line for line in lines), lines
    first = lines[0]
    assert first.count("502 Bad Gateway") == 1
    assert 'not an AWS answer (a proxy or load balancer in the way?): "502 Bad Gateway"' in first
