"""Chart, image and config agree: run exactly what a rendered CronJob would run.

There is no cluster here, so this test plays the kubelet: it renders the chart with the
freshly built image, writes the ConfigMap's files to a directory mounted where the pod mounts
them, resolves the Secret reference, and runs the CronJob's container with podman: same
image, arguments, environment, user and read-only root, against the EC2 emulator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import of_kind, render, web_job
from tests.container.conftest import run
from tests.support.fleet import Fleet

pytestmark = pytest.mark.container

SECRET = {"name": "aws-keys", "data": {"AWS_ACCESS_KEY_ID": "AKIDFROMSECRET",
                                       "AWS_SECRET_ACCESS_KEY": "secret-from-the-secret"}}


def container_command(engine: str, pod: dict[str, Any], configmaps: dict[str, dict[str, str]],
                      workdir: Path) -> list[str]:
    """The podman command that runs the pod's only container as a kubelet would."""
    (container,) = pod["containers"]
    context, pod_context = container["securityContext"], pod["securityContext"]
    cmd = [engine, "run", "--rm", "--network", "host",
           "--user", f"{pod_context['runAsUser']}:{pod_context['runAsGroup']}"]
    if context.get("readOnlyRootFilesystem"):
        cmd.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        cmd += ["--security-opt", "no-new-privileges"]
    for capability in context.get("capabilities", {}).get("drop", []):
        cmd += ["--cap-drop", capability]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        source = workdir / mount["name"]
        source.mkdir()
        for filename, content in configmaps[volumes[mount["name"]]["configMap"]["name"]].items():
            (source / filename).write_text(content, encoding="utf-8")
        cmd += ["-v", f"{source}:{mount['mountPath']}:{'ro' if mount.get('readOnly') else 'rw'}"]
    for variable in container.get("env", []):
        if "valueFrom" in variable:
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["name"] == SECRET["name"]
            value = SECRET["data"][reference["key"]]
        else:
            value = variable["value"]
        cmd += ["-e", f"{variable['name']}={value}"]
    return [*cmd, container["image"], *container.get("args", [])]


def test_a_rendered_cronjob_runs_its_job_in_the_built_image(
    engine: str, image: str, aws_env: Any, fleet: Fleet, tmp_path: Path
) -> None:
    web = fleet.instance({"Backup": "daily"}, {"web-data": {}})
    fleet.instance({"Backup": "weekly"}, {"other-data": {}})
    repository, tag = image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag},
        "credentials": {"existingSecret": SECRET["name"]},
        "extraEnv": [{"name": "AWS_ENDPOINT_URL_EC2", "value": aws_env.url},
                     {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"}],
        "jobs": {"web-daily": web_job(), "weekly": web_job(schedule="0 5 * * 0")},
    }
    values["jobs"]["weekly"]["config"]["instance_tags"] = {"Backup": "weekly"}
    objects = render(values)
    configmaps = {c["metadata"]["name"]: c["data"] for c in of_kind(objects, "ConfigMap")}
    (daily,) = [c for c in of_kind(objects, "CronJob")
                if c["metadata"]["name"].endswith("-web-daily")]
    pod = daily["spec"]["jobTemplate"]["spec"]["template"]["spec"]

    result = run(*container_command(engine, pod, configmaps, tmp_path), timeout=300,
                 check=False)
    assert result.returncode == 0, result.stderr
    assert sorted(s["VolumeId"] for s in fleet.job_snapshots("web-daily")) == sorted(
        web.all_volumes)
    assert fleet.job_snapshots("weekly") == [], "--job runs only the CronJob's own job"
    assert "secret-from-the-secret" not in result.stderr
    assert '"job": "web-daily"' in result.stderr, "the chart's default is JSON logs"
