"""Generate the chart's values.schema.json, embedding the runner's own JSON Schema.

Each job's `config` is validated against the runner's job definition, so `helm install`
refuses a job the runner would refuse. The runner's definitions are copied under the same
names, so its internal `$ref`s resolve unchanged. Run by `make chart`; a test fails when the
committed file differs from what this script generates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUNNER_SCHEMA = ROOT / "schema" / "molibackup.schema.json"
VALUES_SCHEMA = ROOT / "chart" / "values.schema.json"

NULLABLE_COUNT = {"type": ["integer", "null"], "minimum": 0}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
DURATION = {"type": "string", "pattern": "^[1-9][0-9]{0,5}[mhd]$"}
#: A CronJob schedule: five cron fields (numbers, ranges, steps, lists, *, ?, month and day
#: names), or a macro such as @daily. "every day" is refused at install, not at 4 a.m.
_CRON_ITEM = r"(\*|\?|[0-9]{1,2}(-[0-9]{1,2})?|[A-Za-z]{3}(-[A-Za-z]{3})?)(/[0-9]{1,2})?"
_CRON_FIELD = rf"{_CRON_ITEM}(,{_CRON_ITEM})*"
CRON = {"type": "string",
        "pattern": rf"^(@(annually|yearly|monthly|weekly|daily|midnight|hourly)"
                   rf"|{_CRON_FIELD}( +{_CRON_FIELD}){{4}})$"}


def job_settings() -> dict[str, Any]:
    """The CronJob settings of jobDefaults, which each job may override."""
    return {
        "timeZone": {"type": "string", "description": "IANA time zone of the schedule, "
                     "such as Europe/Paris; empty: the controller's (usually UTC)."},
        "concurrencyPolicy": {"type": "string", "enum": ["Allow", "Forbid", "Replace"],
                              "description": "Forbid: a run never overlaps the previous one."},
        "startingDeadlineSeconds": {**NULLABLE_COUNT, "description": "Seconds after the "
                                    "scheduled time a missed run may still start; null: no limit."},
        "backoffLimit": {**NULLABLE_COUNT, "description": "Retries of a failed run (exit "
                         "status 2). A config error (exit 1) is never retried."},
        "activeDeadlineSeconds": {**NULLABLE_COUNT, "description": "Seconds a run may take "
                                  "before it is stopped; null: no limit."},
        "terminationGracePeriodSeconds": {
            "type": "integer", "minimum": 25, "maximum": 3600,
            "description": "Seconds between SIGTERM and SIGKILL. molibackup waits at most 20 s "
                           "for the AWS calls in flight, then prints its summary and exits "
                           "143: keep this above 20."},
        "ttlSecondsAfterFinished": {**NULLABLE_COUNT, "description": "Seconds a finished Job "
                                    "(and its logs) is kept; null: kept until the history "
                                    "limits remove it."},
        "successfulJobsHistoryLimit": {**NULLABLE_COUNT, "description": "Successful Jobs kept."},
        "failedJobsHistoryLimit": {**NULLABLE_COUNT, "description": "Failed Jobs kept."},
        "resources": {"type": "object", "description": "Container resource requests and limits."},
        "nodeSelector": {**STRING_MAP, "description": "Node labels the pods must run on."},
        "tolerations": {"type": "array", "items": {"type": "object"},
                        "description": "Tolerations of the pods."},
        "affinity": {"type": "object", "description": "Affinity of the pods."},
        "podAnnotations": {**STRING_MAP, "description": "Extra annotations of the pods."},
        "podLabels": {**STRING_MAP, "description": "Extra labels of the pods."},
        "priorityClassName": {"type": "string", "description": "PriorityClass of the pods."},
        "staleAfter": {**DURATION, "description": "With prometheusRule: alert when the job has "
                       "not succeeded for this long (a little more than its schedule's period)."},
        "volumeStaleAfter": {**DURATION, "description": "With prometheusRule: alert when one "
                             "of the job's volumes has no completed snapshot younger than this."},
    }


def build() -> dict[str, Any]:
    runner = json.loads(RUNNER_SCHEMA.read_text(encoding="utf-8"))
    definitions = dict(runner["definitions"])
    definitions["settings"] = runner["properties"]["global"]
    settings = job_settings()
    job_entry = {
        "type": "object",
        "description": "One backup job: its schedule, its options, and any jobDefaults key.",
        "additionalProperties": False,
        "required": ["schedule", "config"],
        "properties": {
            "schedule": {**CRON, "description": "Cron schedule (five fields, or a macro such "
                                                "as @daily), such as \"0 4 * * *\"."},
            "suspend": {"type": "boolean", "description": "Suspend the CronJob."},
            "shards": {"type": "integer", "minimum": 1, "maximum": 100,
                       "description": "Spread the job's targets (accounts x regions) over this "
                                      "many pods: an Indexed Job, each pod running its shard "
                                      "(default 1: one pod)."},
            "parallelism": {"type": "integer", "minimum": 1, "maximum": 100,
                            "description": "With shards: how many pods run at once "
                                           "(default: shards)."},
            "config": {"description": "The job's options in the molibackup config file.",
                       "allOf": [{"$ref": "#/definitions/job"}]},
            "verify": {
                "type": "object", "additionalProperties": False, "required": ["schedule"],
                "description": "A second CronJob running `molibackup verify --job <job>`, which "
                               "proves the job's newest backups restore (how: config.verify).",
                "properties": {
                    "schedule": {**CRON, "description": "Cron schedule of the verification, "
                                                        "such as \"0 6 * * 0\"."},
                    "suspend": {"type": "boolean", "description": "Suspend that CronJob."},
                    "verifiedWithin": {**DURATION, "description": "With prometheusRule: alert "
                                       "when a volume's newest backup was not verified for "
                                       "this long (default 8d)."},
                },
            },
            **settings,
        },
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "molibackup chart values",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "global": {"type": "object", "description": "Helm's values shared with subcharts."},
            "image": {
                "type": "object", "additionalProperties": False,
                "description": "The molibackup image.",
                "required": ["repository"],
                "properties": {
                    "repository": {"type": "string", "minLength": 1,
                                   "description": "Image repository."},
                    "tag": {"type": "string", "description": "Image tag; empty: appVersion."},
                    "digest": {"type": "string", "pattern": "^(sha256:[a-f0-9]{64})?$",
                               "description": "Image digest; when set, pulled by digest."},
                    "pullPolicy": {"type": "string",
                                   "enum": ["Always", "IfNotPresent", "Never"],
                                   "description": "Image pull policy."},
                },
            },
            "monitoring": {
                "type": "object", "additionalProperties": False,
                "description": "Where every job's metrics and pings go.",
                "properties": {
                    "pushgateway": {"type": "string", "pattern": "^(https?://.+)?$",
                                    "description": "URL of a Prometheus Pushgateway (the "
                                    "config's global metrics.pushgateway)."},
                    "pingUrl": {"type": "string", "pattern": "^(https?://.+)?$",
                                "description": "A Healthchecks.io/Cronitor ping URL for every "
                                "job (the config's global ping_url)."},
                },
            },
            "prometheusRule": {
                "type": "object", "additionalProperties": False,
                "description": "A PrometheusRule alerting on the pushed metrics.",
                "properties": {
                    "enabled": {"type": "boolean", "description": "Render the PrometheusRule "
                                "(needs the Prometheus Operator's CRD)."},
                    "labels": {**STRING_MAP, "description": "Extra labels, such as the one "
                               "your Prometheus selects rules by."},
                    "severity": {"type": "string", "minLength": 1,
                                 "description": "Severity label of the alerts."},
                },
            },
            "dashboards": {
                "type": "object", "additionalProperties": False,
                "description": "A Grafana dashboard in a ConfigMap for Grafana's sidecar.",
                "properties": {
                    "enabled": {"type": "boolean", "description": "Render the ConfigMap."},
                    "namespace": {"type": "string", "description": "Its namespace; empty: "
                                  "the release's."},
                    "labels": {**STRING_MAP, "description": "Extra labels (grafana_dashboard: "
                               "\"1\" is always set)."},
                    "annotations": {**STRING_MAP, "description": "Its annotations, such as "
                                    "the sidecar's folder."},
                },
            },
            "imagePullSecrets": {"type": "array", "description": "Secrets to pull the image.",
                                 "items": {"type": "object", "required": ["name"]}},
            "nameOverride": {"type": "string", "description": "Replaces the chart name in "
                             "object names."},
            "fullnameOverride": {"type": "string", "description": "Replaces the release's "
                                 "full name in object names."},
            "serviceAccount": {
                "type": "object", "additionalProperties": False,
                "description": "The pods' ServiceAccount.",
                "properties": {
                    "create": {"type": "boolean", "description": "Create a ServiceAccount."},
                    "name": {"type": "string", "description": "Its name; empty: the release's "
                             "full name (or default when not created)."},
                    "annotations": {**STRING_MAP, "description": "Its annotations, such as "
                                    "eks.amazonaws.com/role-arn for IRSA."},
                    "automountToken": {"type": "boolean", "description": "Mount a Kubernetes "
                                       "API token (molibackup does not need one)."},
                },
            },
            "verifyServiceAccount": {
                "type": "object", "additionalProperties": False,
                "description": "A ServiceAccount of its own for the verify CronJobs (their IAM "
                               "role differs: EBS direct APIs, and CreateVolume/DeleteVolume "
                               "for the volume method). Without annotations or a name, they "
                               "use serviceAccount.",
                "properties": {
                    "name": {"type": "string", "description": "An existing ServiceAccount to "
                             "use; empty: one is created when annotations are given."},
                    "annotations": {**STRING_MAP, "description": "Its annotations, such as "
                                    "eks.amazonaws.com/role-arn of the verify role."},
                },
            },
            "credentials": {
                "type": "object", "additionalProperties": False,
                "description": "Static AWS keys from an existing Secret; leave empty with IRSA "
                               "or EKS Pod Identity.",
                "properties": {
                    "existingSecret": {"type": "string", "description": "Name of the Secret."},
                    "accessKeyIdKey": {"type": "string", "minLength": 1,
                                       "description": "Its key holding the access key id."},
                    "secretAccessKeyKey": {"type": "string", "minLength": 1,
                                           "description": "Its key holding the secret."},
                },
            },
            "settings": {"description": "The config file's global section.",
                         "allOf": [{"$ref": "#/definitions/settings"}]},
            "extraEnv": {"type": "array", "description": "Extra environment variables "
                         "(Kubernetes EnvVar objects).",
                         "items": {"type": "object", "required": ["name"]}},
            "jobDefaults": {"type": "object", "additionalProperties": False,
                            "description": "Settings of every CronJob.",
                            "properties": settings},
            "podSecurityContext": {"type": "object", "description": "The pods' security "
                                   "context (non-root, the image's UID, RuntimeDefault seccomp)."},
            "securityContext": {"type": "object", "description": "The container's security "
                                "context (read-only root, no privilege escalation, no "
                                "capabilities)."},
            "jobs": {
                "type": "object",
                "description": "The backup jobs, by name: one CronJob each.",
                "propertyNames": {"type": "string", "maxLength": 52,
                                  "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "additionalProperties": job_entry,
            },
        },
        "definitions": definitions,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    VALUES_SCHEMA.write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
