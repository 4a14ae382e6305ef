"""The README stays true: its reference is the schema's, its IAM policy the module's."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from molibackup.actions.restore import PERMISSIONS as RESTORE_PERMISSIONS
from molibackup.actions.verify import PERMISSIONS as VERIFY_PERMISSIONS
from molibackup.ebs.job import EbsJob

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
sys.path.insert(0, str(ROOT / "scripts"))

import config_reference  # noqa: E402
import metrics_reference  # noqa: E402
import retention_example  # noqa: E402


def test_the_config_reference_matches_the_schema() -> None:
    assert config_reference.render() in README, "run `make docs`"


def test_the_worked_retention_example_is_what_the_code_decides() -> None:
    assert retention_example.render() in README, "run `make docs`"


def test_the_readme_lists_every_metric_the_code_pushes() -> None:
    assert metrics_reference.render() in README, "run `make docs`"


def policies() -> list[dict[str, Any]]:
    """The README's IAM policies: the job's role first, then a copy destination's."""
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", README, flags=re.S)
            if '"Statement"' in block]


def test_the_iam_policy_grants_exactly_what_the_modules_call() -> None:
    policy = policies()[0]
    granted: set[str] = set()
    for statement in policy["Statement"]:
        actions = statement["Action"]
        granted |= {actions} if isinstance(actions, str) else set(actions)
    needed = EbsJob.permissions
    assert granted == needed


def test_the_iam_policy_only_deletes_snapshots_tagged_by_molibackup() -> None:
    for statement in [s for policy in policies() for s in policy["Statement"]]:
        actions = statement["Action"]
        if "ec2:DeleteSnapshot" in actions:
            assert statement["Condition"] == {
                "StringEquals": {"aws:ResourceTag/CreatedBy": "molibackup"}}


def test_a_copy_destination_role_can_only_copy_read_and_delete_its_copies() -> None:
    destination = policies()[1]
    granted = {action for s in destination["Statement"]
               for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert granted == {"ec2:DescribeSnapshots", "ec2:CopySnapshot", "ec2:CreateTags",
                       "ec2:DeleteSnapshot"}


def test_the_restore_policy_grants_exactly_what_a_restore_calls() -> None:
    restore = policies()[2]
    granted = {action for s in restore["Statement"]
               for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert granted == RESTORE_PERMISSIONS


def test_the_backup_role_needs_no_create_volume() -> None:
    backup = policies()[0]
    granted = {action for s in backup["Statement"]
               for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "ec2:CreateVolume" not in granted
    assert "ec2:AttachVolume" not in granted


def test_the_verify_policy_grants_exactly_what_verify_calls() -> None:
    verify = policies()[3]
    granted = {action for s in verify["Statement"]
               for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert granted == VERIFY_PERMISSIONS
