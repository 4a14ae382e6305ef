"""The chart's PrometheusRule, checked and unit-tested by the real promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import of_kind, render, web_job
from tests.support.pushgateway import require

VALUES = {
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus"}},
    "monitoring": {"pushgateway": "http://pushgateway.monitoring:9091"},
    "jobs": {"web-daily": web_job(),
             "db-hourly": web_job(schedule="15 * * * *", staleAfter="2h",
                                  volumeStaleAfter="3h",
                                  verify={"schedule": "0 6 * * *", "verifiedWithin": "3h"})},
}
WEB = 'job="molibackup", molibackup_job="web-daily", instance=""'
DB = 'job="molibackup", molibackup_job="db-hourly", instance=""'


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    (rule,) = of_kind(render(VALUES), "PrometheusRule")
    path = tmp_path_factory.mktemp("rules") / "molibackup-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("promtool", "prometheus"), *args], capture_output=True,
                          text=True, check=False, timeout=120)


def test_no_rule_is_rendered_unless_asked() -> None:
    assert of_kind(render({"jobs": {"web-daily": web_job()}}), "PrometheusRule") == []


def test_the_rule_carries_the_selection_labels() -> None:
    (rule,) = of_kind(render(VALUES), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    assert rule["metadata"]["labels"]["app.kubernetes.io/name"] == "molibackup"


def test_the_rules_pass_promtool_check(rules_file: Path) -> None:
    result = promtool("check", "rules", str(rules_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout  # 4 per job, and db-hourly's verify
    assert "inconsistency" not in result.stdout + result.stderr


STALE = {"web-daily": ("26h", "2d"), "db-hourly": ("2h", "3h")}


def annotations(name: str, job: str, volume_id: str = "", volume_name: str = "",
                molibackup_command: str = "") -> dict[str, str]:
    stale, volume_stale = STALE[job]
    return {
        "MolibackupJobFailed": {
            "summary": f"molibackup job {job} failed",
            "description": f"The last run of the backup job {job} failed; its log says why "
                           "(kubectl -n backup logs job/<the latest Job of the CronJob>)."},
        "MolibackupJobNotSucceeded": {
            "summary": f"molibackup job {job} has not succeeded for {stale}",
            "description": f"The backup job {job} has not succeeded for more than {stale}: "
                           "see the logs of its latest Jobs."},
        "MolibackupJobNeverSucceeded": {
            "summary": f"molibackup job {job} has pushed no success for {stale}",
            "description": f"No success of the backup job {job} reached the Pushgateway: is "
                           "its CronJob running, and monitoring.pushgateway set?"},
        "MolibackupVolumeNotBackedUp": {
            "summary": f"volume {volume_id} has no snapshot younger than {volume_stale}",
            "description": f"The newest completed snapshot of volume {volume_id} "
                           f"({volume_name}) made by the job {job} is older than "
                           f"{volume_stale}, or there is none."},
        "MolibackupVolumeNotVerified": {
            "summary": f"volume {volume_id} has no backup verified within {volume_stale}",
            "description": f"No backup of volume {volume_id} ({volume_name}) of the job {job} "
                           f"was read back intact by molibackup verify within {volume_stale}, "
                           "or none ever was: see the logs of its verify CronJob."},
    }[name]


def alert(name: str, job: str, **labels: str) -> dict[str, Any]:
    """An expected alert (an empty label, such as instance="", is no label at all)."""
    return {"exp_labels": {"alertname": name, "severity": "warning", "molibackup_job": job,
                           "job": "molibackup", **labels},
            "exp_annotations": annotations(name, job, **labels)}


ALERT_TESTS: list[dict[str, Any]] = [
    {   # a failed run alerts at once; a later success clears it
        "interval": "1h",
        "input_series": [
            {"series": f"molibackup_job_success{{{WEB}}}", "values": "1 0 1"},
            {"series": f"molibackup_job_last_success_timestamp_seconds{{{WEB}}}",
             "values": "0 0 7200"},
        ],
        "alert_rule_test": [
            {"eval_time": "0h", "alertname": "MolibackupJobFailed", "exp_alerts": []},
            {"eval_time": "1h", "alertname": "MolibackupJobFailed",
             "exp_alerts": [alert("MolibackupJobFailed", "web-daily")]},
            {"eval_time": "2h", "alertname": "MolibackupJobFailed", "exp_alerts": []},
        ],
    },
    {   # no success for longer than staleAfter: 26h for web-daily, 2h for db-hourly
        "interval": "1h",
        "input_series": [
            {"series": f"molibackup_job_last_success_timestamp_seconds{{{WEB}}}",
             "values": "0x30"},
            {"series": f"molibackup_job_last_success_timestamp_seconds{{{DB}}}",
             "values": "0x30"},
        ],
        "alert_rule_test": [
            {"eval_time": "2h", "alertname": "MolibackupJobNotSucceeded", "exp_alerts": []},
            {"eval_time": "3h", "alertname": "MolibackupJobNotSucceeded",
             "exp_alerts": [alert("MolibackupJobNotSucceeded", "db-hourly")]},
            {"eval_time": "27h", "alertname": "MolibackupJobNotSucceeded",
             "exp_alerts": [alert("MolibackupJobNotSucceeded", "db-hourly"),
                            alert("MolibackupJobNotSucceeded", "web-daily")]},
        ],
    },
    {   # a job that never pushed a success alerts after its staleAfter
        "interval": "1h",
        "input_series": [
            {"series": f"molibackup_job_last_success_timestamp_seconds{{{WEB}}}",
             "values": "0x30"},
        ],
        "alert_rule_test": [
            {"eval_time": "1h", "alertname": "MolibackupJobNeverSucceeded", "exp_alerts": []},
            {"eval_time": "3h", "alertname": "MolibackupJobNeverSucceeded",
             "exp_alerts": [alert("MolibackupJobNeverSucceeded", "db-hourly")]},
        ],
    },
    {   # a volume whose newest snapshot is too old, or that has none (0)
        "interval": "1h",
        "input_series": [
            {"series": "molibackup_volume_last_snapshot_timestamp_seconds"
                       f"{{{DB}, volume_id=\"vol-fresh\", volume_name=\"data\"}}",
             "values": "0 3600 7200 10800 14400 18000"},
            {"series": "molibackup_volume_last_snapshot_timestamp_seconds"
                       f"{{{DB}, volume_id=\"vol-stuck\", volume_name=\"logs\"}}",
             "values": "0 3600 3600 3600 3600 3600"},
            {"series": "molibackup_volume_last_snapshot_timestamp_seconds"
                       f"{{{WEB}, volume_id=\"vol-new\", volume_name=\"new\"}}",
             "values": "0x5"},
        ],
        "alert_rule_test": [
            {"eval_time": "4h", "alertname": "MolibackupVolumeNotBackedUp", "exp_alerts": []},
            {"eval_time": "5h", "alertname": "MolibackupVolumeNotBackedUp",
             "exp_alerts": [alert("MolibackupVolumeNotBackedUp", "db-hourly",
                                  volume_id="vol-stuck", volume_name="logs")]},
        ],
    },
    {   # a volume whose newest backup was not verified within verifiedWithin (3h), or never
        "interval": "1h",
        "input_series": [
            {"series": "molibackup_verify_last_success_timestamp_seconds"
                       f"{{{DB}, molibackup_command=\"verify\", volume_id=\"vol-ok\", "
                       "volume_name=\"data\"}",
             "values": "0 3600 7200 10800 14400 18000"},
            {"series": "molibackup_verify_last_success_timestamp_seconds"
                       f"{{{DB}, molibackup_command=\"verify\", volume_id=\"vol-bad\", "
                       "volume_name=\"logs\"}",
             "values": "0 3600 3600 3600 3600 3600"},
        ],
        "alert_rule_test": [
            {"eval_time": "4h", "alertname": "MolibackupVolumeNotVerified", "exp_alerts": []},
            {"eval_time": "5h", "alertname": "MolibackupVolumeNotVerified",
             "exp_alerts": [alert("MolibackupVolumeNotVerified", "db-hourly",
                                  volume_id="vol-bad", volume_name="logs",
                                  molibackup_command="verify")]},
        ],
    },
    {   # ... and with volumeStaleAfter 2d, a web-daily volume without any snapshot alerts
        "interval": "6h",
        "input_series": [
            {"series": "molibackup_volume_last_snapshot_timestamp_seconds"
                       f"{{{WEB}, volume_id=\"vol-new\", volume_name=\"new\"}}",
             "values": "0x10"},
        ],
        "alert_rule_test": [
            {"eval_time": "42h", "alertname": "MolibackupVolumeNotBackedUp", "exp_alerts": []},
            {"eval_time": "54h", "alertname": "MolibackupVolumeNotBackedUp",
             "exp_alerts": [alert("MolibackupVolumeNotBackedUp", "web-daily",
                                  volume_id="vol-new", volume_name="new")]},
        ],
    },
]


def test_each_alert_fires_on_synthetic_series(rules_file: Path) -> None:
    tests = rules_file.parent / "molibackup-rules.test.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [rules_file.name],
                                     "evaluation_interval": "1m", "tests": ALERT_TESTS}))
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
