"""What the read and restore commands share: their jobs, and names given on the command line."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Sequence

from loguru import logger

from molibackup.modules.base import Target
from molibackup.modules.ebs_snapshot import EbsSnapshot
from molibackup.runner import PreparedJob

#: Kubernetes names: a namespace is a DNS-1123 label, a claim a DNS-1123 subdomain.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?"
                           r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def namespace_name(text: str) -> str:
    if not DNS_LABEL.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Kubernetes namespace name (at most 63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit)")
    return text


def object_name(text: str) -> str:
    if not DNS_SUBDOMAIN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid Kubernetes name (at most 253 lowercase letters, digits, "
            "'-' and '.', starting and ending with a letter or digit)")
    return text


def claim_name(text: str) -> tuple[str, str]:
    """NAMESPACE/NAME of a PersistentVolumeClaim."""
    namespace, slash, name = text.partition("/")
    if not slash:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAMESPACE/NAME, such as "
                                         "payments/data-db-0")
    return namespace_name(namespace), object_name(name)


def add_target_arguments(parser: argparse.ArgumentParser, purpose: str) -> None:
    """--account and --region: one target of a job over several accounts or regions."""
    parser.add_argument("--account", metavar="ID",
                        help=f"of a job over several accounts, the one {purpose}")
    parser.add_argument("--region", metavar="REGION",
                        help=f"of a job over several regions, the one {purpose}")


def ebs_targets(jobs: Sequence[PreparedJob], account: str | None = None,
                region: str | None = None
                ) -> Iterator[tuple[PreparedJob, Target, EbsSnapshot]]:
    """The enabled jobs that make EBS snapshots, once per target (account x region),
    narrowed to an account and a region when given."""
    for prepared in jobs:
        if not prepared.job.enabled:
            continue
        if not isinstance(prepared.module, EbsSnapshot):
            logger.bind(job=prepared.job.name).warning(
                f"job {prepared.job.name}: module {prepared.job.module} has no EBS snapshots")
            continue
        for target in prepared.module.targets():
            if account is not None and (target.account or "") != account:
                continue
            if region is not None and target.region != region:
                continue
            yield prepared, target, prepared.module.for_target(target)


def ebs_jobs(jobs: Sequence[PreparedJob], account: str | None = None,
             region: str | None = None) -> Iterator[tuple[PreparedJob, EbsSnapshot]]:
    """What ebs_targets gives, without the targets."""
    for prepared, _, module in ebs_targets(jobs, account, region):
        yield prepared, module
