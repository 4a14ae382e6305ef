"""The Helm chart, rendered by Helm's engine and checked against Kubernetes' own schemas."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from molibackup import __version__
from tests.chart.helm import CHART, notes, of_kind, render, render_files, web_job

ROOT = CHART.parent
sys.path.insert(0, str(ROOT / "scripts"))

import chart_docs  # noqa: E402
import chart_schema  # noqa: E402

KUBERNETES_VERSIONS = ["1.29", "1.33", "1.37"]

VALUE_SETS = {
    "defaults-no-job": {},
    "one-job": {"jobs": {"web-daily": web_job()}},
    "irsa-several-jobs": {
        "serviceAccount": {"annotations": {
            "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/molibackup"}},
        "jobs": {"web-daily": web_job(), "db-hourly": web_job(
            schedule="15 * * * *", backoffLimit=0, suspend=True, timeZone="Europe/Paris",
            nodeSelector={"kubernetes.io/os": "linux"},
            tolerations=[{"key": "backup", "operator": "Exists", "effect": "NoSchedule"}])},
    },
    "secret-and-digest": {
        "image": {"repository": "registry.example.com/molibackup",
                  "digest": "sha256:" + "a" * 64},
        "serviceAccount": {"create": False, "name": "backup"},
        "credentials": {"existingSecret": "aws-keys"},
        "extraEnv": [{"name": "AWS_MAX_ATTEMPTS", "value": "20"}],
        "jobDefaults": {"startingDeadlineSeconds": None, "ttlSecondsAfterFinished": 0,
                        "affinity": {"nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [{"matchExpressions": [
                                    {"key": "zone", "operator": "In", "values": ["a"]}]}]}}}},
        "jobs": {"web-daily": web_job()},
    },
    "verify-with-its-own-role": {
        "verifyServiceAccount": {"annotations": {
            "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/molibackup-verify"}},
        "jobs": {"web-daily": web_job(verify={"schedule": "0 6 * * 0", "suspend": False})},
    },
}


def cronjob(values: dict[str, Any], name: str = "rel") -> dict[str, Any]:
    (only,) = of_kind(render(values, name), "CronJob")
    return only


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_every_object_is_valid_for_kubernetes(values: dict[str, Any], version: str) -> None:
    for obj in render(values):
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_helm_lint_is_clean(values: dict[str, Any]) -> None:
    report = helm_python.lint(str(CHART), values, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_one_cronjob_per_enabled_job() -> None:
    jobs = {"a": web_job(), "b": web_job(), "off": web_job()}
    jobs["off"]["config"]["enabled"] = False
    names = [c["metadata"]["name"] for c in of_kind(render({"jobs": jobs}), "CronJob")]
    assert sorted(names) == ["rel-molibackup-a", "rel-molibackup-b"]


def test_the_cronjob_runs_its_job_with_the_mounted_config_and_schema() -> None:
    job = cronjob({"jobs": {"web-daily": web_job()}})
    container = pod_spec(job)["containers"][0]
    assert container["args"] == ["-c", "/etc/molibackup/molibackup.yaml", "--schema",
                                 "/etc/molibackup/molibackup.schema.json", "--job", "web-daily"]
    assert container["image"] == f"ghcr.io/molibackup/molibackup:{__version__}"
    assert container["volumeMounts"] == [
        {"name": "config", "mountPath": "/etc/molibackup", "readOnly": True}]
    assert job["spec"]["schedule"] == "0 4 * * *"


def test_the_configmap_holds_the_config_and_the_schema_byte_for_byte() -> None:
    objects = render({"settings": {"loglevel": "debug", "logformat": "json"},
                      "jobs": {"web-daily": web_job(), "other": web_job()}})
    (configmap,) = of_kind(objects, "ConfigMap")
    schema_bytes = (ROOT / "schema" / "molibackup.schema.json").read_bytes()
    assert configmap["data"]["molibackup.schema.json"].encode() == schema_bytes
    config = yaml.safe_load(configmap["data"]["molibackup.yaml"])
    assert config == {"global": {"loglevel": "debug", "logformat": "json"},
                      "jobs": {"web-daily": web_job()["config"], "other": web_job()["config"]}}


def test_the_chart_copy_of_the_schema_is_the_source_one() -> None:
    assert (CHART / "files" / "molibackup.schema.json").read_bytes() == (
        ROOT / "schema" / "molibackup.schema.json").read_bytes(), "run `make chart`"


def test_the_values_schema_is_generated_from_the_runner_schema() -> None:
    assert (CHART / "values.schema.json").read_text() == chart_schema.render(), "make chart"
    assert chart_docs.render() in (CHART / "README.md").read_text(), "run `make chart`"
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_a_config_change_changes_the_pod_template() -> None:
    def checksum(retention: int) -> str:
        values = {"jobs": {"web-daily": web_job()}}
        values["jobs"]["web-daily"]["config"]["retention"] = retention
        template = cronjob(values)["spec"]["jobTemplate"]["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/config"])

    assert checksum(30) != checksum(31)
    assert checksum(30) == checksum(30)


def test_settings_are_rendered_only_when_set_and_zero_is_a_value() -> None:
    job = cronjob({"jobDefaults": {"startingDeadlineSeconds": None, "backoffLimit": 5},
                   "jobs": {"web-daily": web_job(backoffLimit=0, ttlSecondsAfterFinished=0)}})
    spec, job_spec = job["spec"], job["spec"]["jobTemplate"]["spec"]
    assert "startingDeadlineSeconds" not in spec
    assert "timeZone" not in spec
    assert "suspend" not in spec
    assert job_spec["backoffLimit"] == 0
    assert job_spec["ttlSecondsAfterFinished"] == 0
    assert spec["concurrencyPolicy"] == "Forbid"


def test_per_job_overrides_win_over_the_defaults() -> None:
    job = cronjob({"jobs": {"web-daily": web_job(timeZone="Europe/Paris", suspend=False,
                                                 concurrencyPolicy="Replace")}})
    assert job["spec"]["timeZone"] == "Europe/Paris"
    assert job["spec"]["suspend"] is False
    assert job["spec"]["concurrencyPolicy"] == "Replace"


def test_a_config_error_fails_the_job_at_once() -> None:
    policy = cronjob({"jobs": {"web-daily": web_job()}})["spec"]["jobTemplate"]["spec"][
        "podFailurePolicy"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "molibackup",
                                                 "operator": "In", "values": [1]}} in (
        policy["rules"])


def test_pods_are_hardened_by_default() -> None:
    spec = pod_spec(cronjob({"jobs": {"web-daily": web_job()}}))
    assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532,
                                       "runAsGroup": 65532, "fsGroup": 65532,
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    container = spec["containers"][0]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"


def test_standard_labels_are_on_every_object() -> None:
    for obj in render({"jobs": {"web-daily": web_job()}}):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "molibackup"
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == f"molibackup-{__version__}"


def test_irsa_annotates_the_service_account_the_pods_use() -> None:
    role = "arn:aws:iam::123456789012:role/molibackup"
    objects = render({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": role}},
                      "jobs": {"web-daily": web_job()}})
    (account,) = of_kind(objects, "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role
    assert pod_spec(of_kind(objects, "CronJob")[0])["serviceAccountName"] == (
        account["metadata"]["name"])
    assert "env" not in pod_spec(of_kind(objects, "CronJob")[0])["containers"][0]


def test_keys_come_from_the_existing_secret_and_never_from_the_configmap() -> None:
    objects = render({"credentials": {"existingSecret": "aws-keys"},
                      "jobs": {"web-daily": web_job()}})
    env = pod_spec(of_kind(objects, "CronJob")[0])["containers"][0]["env"]
    assert env == [
        {"name": "AWS_ACCESS_KEY_ID",
         "valueFrom": {"secretKeyRef": {"name": "aws-keys", "key": "AWS_ACCESS_KEY_ID"}}},
        {"name": "AWS_SECRET_ACCESS_KEY",
         "valueFrom": {"secretKeyRef": {"name": "aws-keys", "key": "AWS_SECRET_ACCESS_KEY"}}},
    ]


def test_irsa_and_a_key_secret_together_are_refused() -> None:
    values = {"credentials": {"existingSecret": "aws-keys"},
              "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:x"}},
              "jobs": {"web-daily": web_job()}}
    with pytest.raises(helm_python.HelmRenderError, match="static keys would silently win"):
        render_files(values)


def test_static_keys_in_a_job_config_are_refused() -> None:
    job = web_job()
    job["config"].update(accesskey_id="AKIAEXAMPLE", accesskey_secret="secret-value")
    with pytest.raises(helm_python.HelmRenderError, match=r"set credentials\.existingSecret"):
        render_files({"jobs": {"web-daily": job}})


def test_a_name_too_long_for_kubernetes_fails_the_render_clearly() -> None:
    long_job = "a" * 40
    with pytest.raises(helm_python.HelmRenderError, match="Kubernetes allows 52"):
        render_files({"jobs": {long_job: web_job()}}, name="production-backups")


def test_notes_say_how_to_run_a_job_now() -> None:
    text = notes({"jobs": {"web-daily": web_job()}})
    assert "rel-molibackup-web-daily" in text
    assert "kubectl -n backup create job --from=cronjob/rel-molibackup-web-daily" in text
    assert "logs" in text


def bad(job: dict[str, Any] | None = None, **values: Any) -> dict[str, Any]:
    return {"jobs": {"web-daily": job}, **values} if job is not None else values


def config_with(**options: Any) -> dict[str, Any]:
    job = web_job()
    job["config"].update(options)
    return job


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(bad({"schedule": "0 4 * * *", "config": {"module": "ebs-snapshot"}}),
                     "aws_region", id="job-without-aws_region"),
        pytest.param(bad({"config": web_job()["config"]}), "schedule", id="without-schedule"),
        pytest.param(bad(web_job(schedule="every day")), "schedule", id="schedule-in-words"),
        pytest.param(bad(web_job(schedule="0 4 * *")), "schedule", id="schedule-of-4-fields"),
        pytest.param(bad(web_job(verify={"schedule": "weekly"})), "schedule",
                     id="verify-schedule-in-words"),
        pytest.param(bad(config_with(retension=3)), "retension", id="unknown-job-option"),
        pytest.param(bad(config_with(retention=-3)), "retention", id="negative-retention"),
        pytest.param(bad(config_with(module="rsync")), "module", id="unknown-module"),
        pytest.param(bad(web_job(backoffLimit=-1)), "backoffLimit", id="negative-backoff"),
        pytest.param(bad(web_job(colour="blue")), "colour", id="unknown-job-key"),
        pytest.param({"jobs": {"Web_Daily": web_job()}}, "Web_Daily", id="not-a-dns-name"),
        pytest.param({"settings": {"loglevel": "loud"}}, "loglevel", id="bad-loglevel"),
        pytest.param({"image": {"repository": "x", "digest": "latest"}}, "digest",
                     id="bad-digest"),
        pytest.param({"unknown": 1}, "unknown", id="unknown-top-level-value"),
    ],
)
def test_the_values_schema_refuses_bad_values(values: dict[str, Any], expected: str) -> None:
    with helm_python.Chart.load(CHART) as chart, pytest.raises(
            helm_python.HelmValuesError, match=expected):
        chart.validate_schema(values)


@pytest.mark.parametrize("schedule", ["0 4 * * *", "*/15 * * * *", "0 4 * * MON-FRI",
                                      "30 2 1,15 * *", "0 0 ? JAN,JUL SUN", "@daily"])
def test_the_values_schema_takes_cron_schedules(schedule: str) -> None:
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema({"jobs": {"web-daily": web_job(
            schedule=schedule, verify={"schedule": schedule})}})


def test_the_notes_list_the_verify_cronjobs_too() -> None:
    text = notes({"jobs": {"web-daily": web_job(verify={"schedule": "0 6 * * 0"})}})
    assert "rel-molibackup-web-daily-verify" in text
    assert '"0 6 * * 0"' in text


def test_the_readme_example_values_are_valid() -> None:
    text = (CHART / "README.md").read_text()
    block = text.split("cat > my-values.yaml <<'YAML'\n", 1)[1].split("YAML\n", 1)[0]
    values = yaml.safe_load(block)
    objects = render(values)
    assert len(of_kind(objects, "CronJob")) == 2
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33", strict=True)


def test_chart_and_package_versions_agree() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
    assert Path(CHART / "values.yaml").is_file()


def test_verify_schedule_renders_a_second_cronjob_running_verify_with_its_own_role() -> None:
    values = VALUE_SETS["verify-with-its-own-role"]
    backup, verify = sorted(of_kind(render(values), "CronJob"),
                            key=lambda job: job["metadata"]["name"])
    assert verify["metadata"]["name"] == "rel-molibackup-web-daily-verify"
    assert verify["spec"]["schedule"] == "0 6 * * 0"
    assert pod_spec(verify)["containers"][0]["args"] == [
        "-c", "/etc/molibackup/molibackup.yaml", "--schema",
        "/etc/molibackup/molibackup.schema.json", "verify", "--job", "web-daily"]
    assert pod_spec(verify)["serviceAccountName"] == "rel-molibackup-verify"
    assert pod_spec(backup)["serviceAccountName"] == "rel-molibackup"
    accounts = {sa["metadata"]["name"]: sa for sa in of_kind(render(values), "ServiceAccount")}
    assert accounts["rel-molibackup-verify"]["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/molibackup-verify"}


def test_without_a_verify_role_the_verify_cronjob_uses_the_backup_service_account() -> None:
    jobs = of_kind(render({"jobs": {"web-daily": web_job(verify={"schedule": "0 6 * * 0"})}}),
                   "CronJob")
    assert {pod_spec(job)["serviceAccountName"] for job in jobs} == {"rel-molibackup"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_shards_render_an_indexed_job_whose_shards_retry_alone(version: str) -> None:
    objects = render({"jobs": {"fleet": web_job(shards=3, parallelism=2)}})
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    spec = cronjob({"jobs": {"fleet": web_job(shards=3, parallelism=2)}})[
        "spec"]["jobTemplate"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
        "Indexed", 3, 2)
    assert spec["backoffLimitPerIndex"] == 2
    assert "backoffLimit" not in spec
    env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["MOLIBACKUP_SHARDS"] == "3"


def test_one_shard_is_todays_cronjob() -> None:
    spec = cronjob({"jobs": {"web-daily": web_job()}})["spec"]["jobTemplate"]["spec"]
    assert "completionMode" not in spec
    assert spec["backoffLimit"] == 2
