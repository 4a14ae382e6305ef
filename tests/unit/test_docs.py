"""The documentation stays true: its generated pages are what the code says, its IAM
policies what the code calls, and every link in it leads somewhere."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from molibackup.actions.restore import PERMISSIONS as RESTORE_PERMISSIONS
from molibackup.actions.verify import PERMISSIONS as VERIFY_PERMISSIONS
from molibackup.ebs.job import EbsJob

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", ROOT / "chart" / "README.md", *sorted(DOCS.rglob("*.md"))]
sys.path.insert(0, str(ROOT / "scripts"))

import config_reference  # noqa: E402
import iam_reference  # noqa: E402
import metrics_reference  # noqa: E402
import retention_example  # noqa: E402


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_the_config_reference_matches_the_schema() -> None:
    assert config_reference.render() in page("reference/configuration.md"), "run `make docs`"


def test_the_worked_retention_example_is_what_the_code_decides() -> None:
    assert retention_example.render() in page("how-to/backups.md"), "run `make docs`"


def test_the_iam_reference_shows_the_code_s_own_policies() -> None:
    text = page("reference/iam.md")
    for name in iam_reference.POLICIES:
        assert iam_reference.render(name) in text, "run `make docs`"


def test_the_metrics_reference_lists_every_metric_the_code_pushes() -> None:
    assert metrics_reference.render() in page("reference/metrics.md"), "run `make docs`"


def slug(heading: str) -> str:
    """The anchor GitHub (and mkdocs' toc with its GitHub slugs) gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"#{1,6} (.*)", line)
        if heading:
            found.add(slug(heading.group(1)))
    return found


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    broken = []
    for target in links(path):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        destination = (path.parent / file).resolve() if file else path
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme_or_another_page() -> None:
    linked = {(page.parent / target.partition("#")[0]).resolve()
              for page in PAGES for target in links(page) if not re.match(r"[a-z]+:", target)}
    orphans = [str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md") if p.resolve() not in linked]
    assert not orphans


def test_the_readme_is_a_short_front_door() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    assert "make demo" in readme
    assert "make test" in readme


def policies() -> list[dict[str, Any]]:
    """The README's IAM policies: the job's role first, then a copy destination's."""
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```",
                                                      page("reference/iam.md"), flags=re.S)
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
