"""The README stays true: its reference is the schema's, its IAM policy the module's."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from molibackup.modules import REGISTRY

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


def test_the_iam_policy_grants_exactly_what_the_modules_call() -> None:
    (policy_text,) = [block for block in re.findall(r"```json\n(.*?)```", README, flags=re.S)
                      if '"Statement"' in block]
    policy = json.loads(policy_text)
    granted: set[str] = set()
    for statement in policy["Statement"]:
        actions = statement["Action"]
        granted |= {actions} if isinstance(actions, str) else set(actions)
    needed = set().union(*(module.permissions for module in REGISTRY.values()))
    assert granted == needed


def test_the_iam_policy_only_deletes_snapshots_tagged_by_molibackup() -> None:
    policy = json.loads(next(b for b in re.findall(r"```json\n(.*?)```", README, flags=re.S)
                             if '"Statement"' in b))
    for statement in policy["Statement"]:
        actions = statement["Action"]
        if "ec2:DeleteSnapshot" in actions:
            assert statement["Condition"] == {
                "StringEquals": {"aws:ResourceTag/CreatedBy": "molibackup"}}
