"""Which volumes match: tag and claim rules, on plain data."""

from __future__ import annotations

import pytest

from molibackup.ebs.options import ClaimSelector
from molibackup.ebs.selection import claim_matches, tags_match
from molibackup.ebs.tags import CLUSTER_TAG_PREFIX, LEGACY_CLUSTER_TAG, PVC_NAME, PVC_NAMESPACE


def claim(namespace: str = "payments", name: str = "data-db-0", **extra: str) -> dict[str, str]:
    return {PVC_NAMESPACE: namespace, PVC_NAME: name, **extra}


@pytest.mark.parametrize(
    ("tags", "wanted", "matches"),
    [
        pytest.param({"Backup": "daily", "Env": "prod"}, {"Backup": "daily"}, True,
                     id="a-subset-matches"),
        pytest.param({"Backup": "daily"}, {"Backup": "daily", "Env": "prod"}, False,
                     id="every-wanted-tag-must-be-there"),
        pytest.param({"Backup": "Daily"}, {"Backup": "daily"}, False, id="case-sensitive"),
        pytest.param({}, {}, True, id="no-wanted-tag-matches-all"),
    ],
)
def test_tags_match_only_when_every_wanted_tag_has_its_value(
    tags: dict[str, str], wanted: dict[str, str], matches: bool
) -> None:
    assert tags_match(tags, wanted) is matches


@pytest.mark.parametrize(
    ("tags", "selector", "matches"),
    [
        pytest.param(claim(), ClaimSelector(namespaces=("payments",)), True, id="namespace"),
        pytest.param(claim(), ClaimSelector(namespaces=("pay*",), names=("data-*",)), True,
                     id="globs"),
        pytest.param(claim(), ClaimSelector(namespaces=("team-*",)), False,
                     id="other-namespace"),
        pytest.param(claim(), ClaimSelector(names=("logs-*",)), False, id="other-name"),
        pytest.param({PVC_NAMESPACE: "payments"}, ClaimSelector(namespaces=("payments",)),
                     False, id="no-claim-name-is-no-claim"),
        pytest.param(claim(**{CLUSTER_TAG_PREFIX + "prod": "owned"}),
                     ClaimSelector(cluster="prod"), True, id="cluster-owned"),
        pytest.param(claim(**{CLUSTER_TAG_PREFIX + "prod": "shared"}),
                     ClaimSelector(cluster="prod"), True, id="cluster-shared"),
        pytest.param(claim(**{LEGACY_CLUSTER_TAG: "prod"}), ClaimSelector(cluster="prod"), True,
                     id="legacy-cluster-tag"),
        pytest.param(claim(**{CLUSTER_TAG_PREFIX + "dev": "owned"}),
                     ClaimSelector(cluster="prod"), False, id="another-cluster"),
    ],
)
def test_a_claim_matches_by_namespace_name_and_cluster(
    tags: dict[str, str], selector: ClaimSelector, matches: bool
) -> None:
    assert claim_matches(tags, selector) is matches
