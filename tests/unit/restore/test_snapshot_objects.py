"""The CSI snapshot objects molibackup hands a cluster: valid as it would check them on
creation, named so that nothing collides, and the same bytes for the same snapshots."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
import yaml

from molibackup.ebs.restore.manifests import (
    SnapshotHandoff,
    claim_from_snapshot,
    dns_name,
    label_value,
    render_snapshots,
    volume_snapshot,
    volume_snapshot_content,
)
from tests.support import csi

DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def handoff(claim: str = "data-db-0", snapshot: str = "snap-0123456789abcdef0",
            namespace: str = "payments", **more: Any) -> SnapshotHandoff:
    return SnapshotHandoff(job="db", snapshot_id=snapshot, start_time="2026-12-01T04:00:02Z",
                           size_gib=20, namespace=namespace, claim_name=claim,
                           source_claim=f"payments/{claim}", **more)


def test_a_content_is_retained_pre_provisioned_and_bound_to_its_snapshot() -> None:
    given = handoff()
    content, snapshot = volume_snapshot_content(given), volume_snapshot(given)
    assert content["spec"] == {
        "deletionPolicy": "Retain", "driver": "ebs.csi.aws.com",
        "source": {"snapshotHandle": "snap-0123456789abcdef0"},
        "volumeSnapshotRef": {"name": snapshot["metadata"]["name"], "namespace": "payments"}}
    assert snapshot["spec"] == {"source": {
        "volumeSnapshotContentName": content["metadata"]["name"]}}
    assert "namespace" not in content["metadata"]
    assert snapshot["metadata"]["namespace"] == "payments"


@pytest.mark.parametrize("storage_class", [None, "ebs-gp3"])
def test_every_object_is_valid_as_a_cluster_checks_it(storage_class: str | None) -> None:
    given = handoff()
    for document in (volume_snapshot_content(given), volume_snapshot(given),
                     claim_from_snapshot(given, storage_class)):
        csi.check(document)
        assert DNS_SUBDOMAIN.fullmatch(document["metadata"]["name"])
        for value in document["metadata"]["labels"].values():
            assert len(value) <= 63


def test_the_claim_restores_from_the_snapshot_at_least_its_size() -> None:
    claim = claim_from_snapshot(handoff(), "ebs-gp3")
    assert claim["spec"]["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io",
                                           "kind": "VolumeSnapshot",
                                           "name": volume_snapshot(handoff())["metadata"]["name"]}
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["storageClassName"] == "ebs-gp3"
    assert "storageClassName" not in claim_from_snapshot(handoff(), None)["spec"]


def test_two_claims_or_two_snapshots_never_collide() -> None:
    long = "a" * 250
    names = [handoff(claim, snapshot, namespace)
             for claim in ("data-db-0", "data-db-1", long, long + "b")
             for snapshot in ("snap-0123456789abcdef0", "snap-0123456789abcdef1")
             for namespace in ("payments", "payments-dr")]
    for kind in (lambda h: h.snapshot_name, lambda h: h.content_name):
        made = [kind(h) for h in names]
        assert all(DNS_SUBDOMAIN.fullmatch(n) and len(n) <= 253 for n in made)
    assert len({(h.namespace, h.snapshot_name) for h in names}) == len(names)
    assert len({h.content_name for h in names}) == len(names)


def test_the_invalid_characters_and_long_labels_are_made_valid() -> None:
    assert dns_name("Data_DB", "snap-1") == "data-db-snap-1"
    assert len(label_value("x" * 100)) == 63
    assert label_value("x" * 100) != label_value("x" * 101)


def test_the_same_snapshots_give_the_same_bytes() -> None:
    given = [handoff(), handoff("data-db-1")]
    assert render_snapshots(given) == render_snapshots(list(given))
    assert [d["kind"] for d in yaml.safe_load_all(render_snapshots(given))] == [
        "VolumeSnapshotContent", "VolumeSnapshot"] * 2


@pytest.mark.parametrize("broken", [
    lambda c: c["spec"]["source"].update(volumeHandle="vol-1"),
    lambda c: c["spec"]["volumeSnapshotRef"].pop("namespace"),
    lambda c: c["spec"].update(deletionPolicy="Keep"),
    lambda c: c["spec"].update(colour="blue"),
], ids=["two-sources", "ref-without-namespace", "bad-policy", "unknown-field"])
def test_the_check_refuses_what_a_cluster_would(broken: Any) -> None:
    content = volume_snapshot_content(handoff())
    broken(content)
    with pytest.raises((AssertionError, jsonschema.ValidationError)):
        csi.check(content)
