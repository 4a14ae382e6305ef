"""The container image, built from the Dockerfile and run as users run it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import job
from tests.container.conftest import ROOT, make, run
from tests.support.fleet import Fleet, ec2_client_as

pytestmark = pytest.mark.container


def docker_run(engine: str, image: str, *args: str, config: Path | None = None,
               env: dict[str, str] | None = None) -> Any:
    cmd = [engine, "run", "--rm", "--read-only", "--network", "host"]
    if config is not None:
        cmd += ["-v", f"{config}:/config/molibackup.yaml:ro"]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    return run(*cmd, image, *args, timeout=300, check=False)


def test_it_answers_version_as_its_non_root_user(engine: str, image: str) -> None:
    result = docker_run(engine, image, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("molibackup ")
    ids = run(engine, "run", "--rm", "--entrypoint", "/opt/molibackup/bin/python", image,
              "-c", "import os; print(os.getuid(), os.getgid())").stdout.split()
    assert ids == ["65532", "65532"]


def test_the_image_is_configured_as_documented(engine: str, image: str) -> None:
    (info,) = json.loads(run(engine, "image", "inspect", image).stdout)
    config = info["Config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["molibackup"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    labels = config["Labels"]
    for label in ("source", "version", "revision", "licenses"):
        assert labels.get(f"org.opencontainers.image.{label}"), label


def test_the_final_image_holds_no_pip_and_no_build_tools(engine: str, image: str) -> None:
    probe = ("import importlib.util, os; "
             "print(importlib.util.find_spec('pip') is None, "
             "os.path.exists('/opt/build-tools'), os.path.exists('/src'))")
    result = run(engine, "run", "--rm", "--entrypoint", "/opt/molibackup/bin/python", image,
                 "-c", probe)
    assert result.stdout.split() == ["True", "False", "False"]


def test_it_runs_a_real_job_read_only_against_the_emulator(
    engine: str, image: str, aws_env: Any, fleet: Fleet, write_config: Callable[..., Path]
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"web-data": {}})
    expired = {fleet.job_snapshot(web.volumes["web-data"], "web", age_days=d) for d in (60, 61)}
    config = write_config({"jobs": {"web": job(instance_tag="Backup=daily", retention=30)}})
    config.chmod(0o444)
    result = docker_run(engine, image, "-c", "/config/molibackup.yaml", config=config, env={
        "AWS_ENDPOINT_URL_EC2": aws_env.url, "AWS_ACCESS_KEY_ID": "AKIDCONTAINER",
        "AWS_SECRET_ACCESS_KEY": "container-secret", "AWS_EC2_METADATA_DISABLED": "true"})
    assert result.returncode == 0, result.stderr
    new = fleet.job_snapshots("web")
    assert sorted(s["VolumeId"] for s in new) == sorted(web.all_volumes)
    assert not expired & fleet.snapshot_ids()
    assert "container-secret" not in result.stderr


def test_a_job_over_several_regions_runs_each_in_a_process_of_its_own_in_the_image(
    engine: str, image: str, aws_env: Any, write_config: Callable[..., Path]
) -> None:
    """The image's Python forks the targets' processes, read-only, as its non-root user."""
    regions = ["us-east-1", "eu-west-1", "ap-southeast-2"]
    fleets = {region: Fleet(ec2_client_as(aws_env.url, region), aws_env, region)
              for region in regions}
    for found in fleets.values():
        found.instance({"Backup": "daily"}, {"data": {}})
    options = {k: v for k, v in job(aws_regions=regions, instance_tag="Backup=daily").items()
               if k != "aws_region"}
    config = write_config({"jobs": {"fleet": options}})
    config.chmod(0o444)
    result = docker_run(engine, image, "-c", "/config/molibackup.yaml", config=config, env={
        "AWS_ENDPOINT_URL_EC2": aws_env.url, "AWS_ACCESS_KEY_ID": "AKIDCONTAINER",
        "AWS_SECRET_ACCESS_KEY": "container-secret", "AWS_EC2_METADATA_DISABLED": "true"})
    assert result.returncode == 0, result.stderr
    for region, found in fleets.items():
        assert len(found.job_snapshots("fleet")) == 2, region
        assert f"job fleet [own account/{region}]: ok: created 2" in result.stderr
    assert "Warning" not in result.stderr
    assert "container-secret" not in result.stderr


def test_a_broken_config_exits_1_with_a_clear_message(
    engine: str, image: str, write_config: Callable[..., Path]
) -> None:
    config = write_config("jobs:\n  web: {module: ebs-snapshot, retention: ninety}\n")
    result = docker_run(engine, image, "-c", "/config/molibackup.yaml", config=config)
    assert result.returncode == 1
    assert "/config/molibackup.yaml: jobs.web.retention: must be a whole number" in result.stderr
    assert "missing required option 'aws_region'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_image_adds_less_than_60_mb_to_its_base(engine: str, image: str) -> None:
    runtime_base = os.environ.get("RUNTIME_IMAGE_AMD64")
    if runtime_base is None:
        pytest.skip("the runtime base is the public image; set RUNTIME_IMAGE_AMD64 to a "
                    "local one to measure against it")
    sizes = [int(run(engine, "image", "inspect", "--format", "{{.Size}}", name).stdout)
             for name in (image, runtime_base)]
    added_mb = (sizes[0] - sizes[1]) / 1e6
    print(f"image adds {added_mb:.1f} MB over {runtime_base}")
    assert added_mb < 60


def test_the_sbom_in_the_image_lists_exactly_the_installed_distributions(
    engine: str, image: str, tmp_path: Path
) -> None:
    container = run(engine, "create", image).stdout.strip()
    try:
        run(engine, "cp", f"{container}:/usr/share/doc/molibackup/sbom.cdx.json",
            str(tmp_path / "sbom.json"))
    finally:
        run(engine, "rm", container, check=False)
    sbom = json.loads((tmp_path / "sbom.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    listed = {(c["name"].lower(), c["version"]) for c in sbom["components"]}
    root = sbom["metadata"]["component"]
    listed.add((root["name"].lower(), root["version"]))
    installed = run(engine, "run", "--rm", "--entrypoint", "/opt/molibackup/bin/python", image,
                    "-c", "import importlib.metadata as m, json; print(json.dumps(sorted("
                    "[d.metadata['Name'].lower(), d.version] for d in m.distributions())))")
    assert listed == {tuple(pair) for pair in json.loads(installed.stdout)}
    lock = (ROOT / "requirements.lock").read_text()
    for component in sbom["components"]:
        (sha256,) = [h["content"] for h in component["hashes"] if h["alg"] == "SHA-256"]
        assert f"sha256:{sha256}" in lock, component["name"]  # the wheel the lock allows


def test_two_release_builds_of_the_same_commit_have_the_same_digest_per_platform(
    engine: str,
) -> None:
    name = "localhost/molibackup:release-test"
    digests = []
    for _ in range(2):
        output = make("docker-release", engine, name, "--no-cache",
                      variables={"PLATFORMS": "linux/amd64,linux/arm64"})
        digests.append({line.split()[0]: line.split()[1] for line in output.splitlines()
                        if line.startswith(f"{name}-")})
        run(engine, "manifest", "rm", name, check=False)
    assert set(digests[0]) == {f"{name}-amd64", f"{name}-arm64"}
    assert all(len(d.removeprefix("sha256:")) == 64 for d in digests[0].values())
    assert digests[0] == digests[1]


def test_make_sbom_writes_the_images_sbom_as_a_build_artifact(engine: str, image: str) -> None:
    output = make("sbom", engine, image)
    artifact = ROOT / output.strip().splitlines()[-1]
    assert artifact.name.endswith(".cdx.json")
    sbom = json.loads(artifact.read_text())
    assert sbom["metadata"]["component"]["name"] == "molibackup"
    assert {c["name"].lower() for c in sbom["components"]} >= {"boto3", "pyyaml", "loguru"}
