"""A job's options as the module parses them: defaults from the schema, contradictions
refused, credentials supplied by the module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from molibackup import config
from molibackup.ebs.options import Options
from molibackup.errors import ConfigError


def options(**raw: Any) -> Options:
    loaded = config.build_config({"jobs": {"j": {"module": "ebs-snapshot",
                                                 "aws_region": "us-west-2", **raw}}},
                                 Path("c.yaml"))
    return Options.from_job(loaded.jobs[0])


def test_every_default_is_the_schemas() -> None:
    parsed = options()
    assert parsed.policy.retention_days == 30
    assert parsed.policy.min_keep == 1
    assert parsed.consistency == "volume"
    assert parsed.adopt_untagged is False
    assert parsed.exclude_boot_volume is False
    assert str(parsed.policy.timezone) == "UTC"


def test_keep_rules_without_retention_keep_by_the_rules_only() -> None:
    assert options(keep_daily=7).policy.retention_days is None


def test_both_tag_forms_combine() -> None:
    parsed = options(instance_tag="Backup=daily", instance_tags={"Env": "prod"})
    assert dict(parsed.instance_tags) == {"Backup": "daily", "Env": "prod"}


def test_contradicting_tag_forms_are_refused() -> None:
    with pytest.raises(ConfigError, match="no resource can match both"):
        options(instance_tag="Backup=daily", instance_tags={"Backup": "weekly"})


def test_the_module_supplies_its_credentials() -> None:
    parsed = options(accesskey_id="AKIAEXAMPLE", accesskey_secret="s" * 40,
                     role_arn="arn:aws:iam::123456789012:role/r", external_id="ext-1")
    assert parsed.credentials.access_key_id == "AKIAEXAMPLE"
    assert parsed.credentials.role_arn == "arn:aws:iam::123456789012:role/r"
    assert parsed.credentials.external_id == "ext-1"
    assert "s" * 40 not in repr(parsed.credentials)


def test_a_copy_destination_without_rules_keeps_by_the_jobs() -> None:
    parsed = options(retention=7, min_keep=3, copy_to=[{"region": "eu-central-1"}])
    (target,) = parsed.copy_to
    assert (target.policy.retention_days, target.policy.min_keep) == (7, 3)
    assert target.copy_tags is True
    assert target.encrypted is False


def test_a_copy_destination_with_rules_of_its_own_gets_the_schemas_min_keep() -> None:
    parsed = options(min_keep=3, copy_to=[{"region": "eu-central-1", "retention": 90}])
    (target,) = parsed.copy_to
    assert (target.policy.retention_days, target.policy.min_keep) == (90, 1)


def test_a_kms_key_implies_encryption() -> None:
    parsed = options(copy_to=[{"region": "eu-central-1", "kms_key_id": "alias/vault"}])
    assert parsed.copy_to[0].encrypted is True


def test_instance_consistency_with_claims_is_refused() -> None:
    with pytest.raises(ConfigError, match="'instance' needs an instance selection"):
        options(consistency="instance", persistent_volume_claims={"namespaces": ["a"]})


def test_an_unknown_region_is_a_warning_naming_the_closest_known_one() -> None:
    loaded = config.build_config({"jobs": {"j": {"module": "ebs-snapshot",
                                                 "aws_region": "us-west-99"}}}, Path("c.yaml"))
    (warning,) = Options.from_job(loaded.jobs[0]).warnings(loaded.jobs[0])
    assert warning.startswith("c.yaml: jobs.j.aws_region: us-west-99 is not a region")
    assert "did you mean us-west-" in warning


def test_a_known_region_raises_no_doubt() -> None:
    loaded = config.build_config({"jobs": {"j": {"module": "ebs-snapshot",
                                                 "aws_region": "eu-west-1"}}}, Path("c.yaml"))
    assert Options.from_job(loaded.jobs[0]).warnings(loaded.jobs[0]) == []
