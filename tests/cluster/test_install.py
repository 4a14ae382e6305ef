"""The chart installed into a real cluster (kind, EKS...): each CronJob's Job succeeds.

Needs KUBECONFIG pointing at a cluster, `kubectl` on the PATH, the image available to the
cluster (for kind: `kind load docker-image`), and MOLIBACKUP_CLUSTER_VALUES naming a values
file whose jobs can reach EC2 (real credentials, or AWS_ENDPOINT_URL_EC2 in extraEnv pointing
at an emulator the cluster can reach). Run with `make test-cluster`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import of_kind, render

pytestmark = pytest.mark.cluster

if not os.environ.get("KUBECONFIG"):
    pytest.skip("no cluster: set KUBECONFIG (and MOLIBACKUP_CLUSTER_VALUES) to run the "
                "cluster tests, see `make test-cluster`", allow_module_level=True)

from pykube import CronJob, Job  # noqa: E402
from pytest_helm_charts.clusters import Cluster  # noqa: E402
from pytest_helm_charts.k8s.job import create_job_and_run_to_completion  # noqa: E402

NAMESPACE = "molibackup-test"


@pytest.fixture(scope="module")
def installed(kube_cluster: Cluster) -> list[dict[str, Any]]:
    values_path = os.environ.get("MOLIBACKUP_CLUSTER_VALUES")
    if not values_path:
        pytest.fail("set MOLIBACKUP_CLUSTER_VALUES to a values file with at least one job")
    values = yaml.safe_load(Path(values_path).read_text())
    objects = render(values, name="e2e", namespace=NAMESPACE)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    kube_cluster.kubectl("apply", std_input=yaml.safe_dump_all([namespace, *objects]))
    return objects


def test_every_cronjob_runs_to_completion(kube_cluster: Cluster,
                                          installed: list[dict[str, Any]]) -> None:
    client = kube_cluster.kube_client
    assert client is not None
    cronjobs = of_kind(installed, "CronJob")
    assert cronjobs, "the values define no enabled job"
    for cronjob in cronjobs:
        live = CronJob.objects(client, namespace=NAMESPACE).get(name=cronjob["metadata"]["name"])
        template = live.obj["spec"]["jobTemplate"]
        job = Job(client, {"apiVersion": "batch/v1", "kind": "Job",
                           "metadata": {"name": f"{cronjob['metadata']['name'][:40]}-e2e",
                                        "namespace": NAMESPACE},
                           "spec": template["spec"]})
        done = create_job_and_run_to_completion(client, NAMESPACE, job, timeout_sec=600)
        assert done.obj["status"].get("succeeded") == 1, done.obj["status"]
