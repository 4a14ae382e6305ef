"""Shared fixtures: the EC2 emulator over real HTTP, a fleet builder, config files, the CLI."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto.ec2.models.elastic_block_store import Volume

from molibackup import cli
from tests.support.ec2proxy import EC2Proxy
from tests.support.emulator import Emulator
from tests.support.fleet import REGION, Fleet
from tests.support.rbin import RecycleBin

logging.getLogger("werkzeug").setLevel(logging.ERROR)

AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_EBS",
                 "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_SERVICE_QUOTAS",
                 "AWS_ENDPOINT_URL_RBIN", "AWS_ENDPOINT_URL_ORGANIZATIONS",
                 "AWS_RETRY_MODE",
                 "AWS_MAX_ATTEMPTS",
                 "AWS_EC2_METADATA_SERVICE_ENDPOINT", "MOLIBACKUP_CONFIG")


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    server = Emulator().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def recycle_bin() -> Iterator[RecycleBin]:
    server = RecycleBin()
    yield server
    server.stop()


@pytest.fixture
def aws_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
            recycle_bin: RecycleBin) -> Emulator:
    """A fresh emulator state, and an environment that reaches it and nothing else."""
    emulator.reset()
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTING000000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "environment-secret-do-not-log")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", emulator.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", emulator.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EBS", emulator.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", emulator.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICE_QUOTAS", emulator.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", emulator.url)
    recycle_bin.rules.clear()
    monkeypatch.setenv("AWS_ENDPOINT_URL_RBIN", recycle_bin.url)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return emulator


@pytest.fixture
def proxy(aws_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[EC2Proxy]:
    """Route molibackup's EC2 calls through a proxy that pages answers and can break calls."""
    with EC2Proxy(aws_env.url) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", server.url)
        yield server


@pytest.fixture
def ec2(aws_env: Emulator) -> Any:
    return boto3.client("ec2", region_name=REGION, endpoint_url=aws_env.url)


@pytest.fixture
def fleet(ec2: Any, aws_env: Emulator) -> Fleet:
    return Fleet(ec2, aws_env)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config (a dict, or YAML text) to a file and return its path."""

    def write(content: dict[str, Any] | str, name: str = "molibackup.yaml") -> Path:
        path = tmp_path / name
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@dataclass
class CliRun:
    status: int
    log: str  # standard error, then standard output
    out: str = ""  # standard output alone


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """Run `molibackup ARGS` in this process, as `main(argv)`; return status and log."""

    def run(*argv: str, **kwargs: Any) -> CliRun:
        capsys.readouterr()
        status = cli.main(list(argv), **kwargs)
        captured = capsys.readouterr()
        return CliRun(status, captured.err + captured.out, captured.out)

    return run


@pytest.fixture
def job_cli(write_config: Callable[..., Path], run_cli: Callable[..., CliRun]
            ) -> Callable[[str], Callable[..., CliRun]]:
    """`job_cli(NAME)(*args, settings=..., clock=..., **options)`: run `molibackup ARGS` with
    a config of one job NAME of these options (and these global settings)."""

    def for_job(name: str) -> Callable[..., CliRun]:
        def run(*args: str, settings: dict[str, Any] | None = None,
                clock: Callable[[], Any] | None = None, **options: Any) -> CliRun:
            path = write_config({"global": settings or {}, "jobs": {name: job(**options)}})
            return run_cli("-c", str(path), *args, **({"clock": clock} if clock else {}))

        return run

    return for_job


@pytest.fixture
def new_volumes(aws_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Set ["state"] to the state the emulator shows for every volume made from then on
    (real volumes take time, and may fail)."""
    wanted: dict[str, str] = {}
    states: dict[str, str] = {}
    status = Volume.status
    monkeypatch.setattr(Volume, "status", property(
        lambda self: states.get(self.id) or status.fget(self)))  # type: ignore[attr-defined]
    backend = type(aws_env.backend(REGION))
    create = backend.create_volume

    def create_volume(self: Any, *args: Any, **kwargs: Any) -> Any:
        volume = create(self, *args, **kwargs)
        if "state" in wanted:
            states[volume.id] = wanted["state"]
        return volume

    monkeypatch.setattr(backend, "create_volume", create_volume)
    return wanted


def job(**options: Any) -> dict[str, Any]:
    """An ebs-snapshot job in our test region; options override."""
    return {"module": "ebs-snapshot", "aws_region": REGION, **options}

