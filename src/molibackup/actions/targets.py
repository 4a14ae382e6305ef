"""What the read and restore commands share: their jobs, and names given on the command line."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from loguru import logger

from molibackup.actions.base import Invocation
from molibackup.ebs.job import EbsJob, JobContext
from molibackup.errors import MolibackupError
from molibackup.jobs import Target

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


@dataclass(frozen=True)
class Placed:
    """A job in one of its targets."""

    target: Target
    context: JobContext
    of: int  # how many targets the job has

    @property
    def label(self) -> str | None:
        """The target's name, where the job has several."""
        return self.target.label if self.of > 1 else None


def job_contexts(invocation: Invocation, account: str | None = None,
                 region: str | None = None,
                 unknown: Callable[[EbsJob, MolibackupError], None] | None = None,
                 ) -> Iterator[Placed]:
    """Every enabled job once per target (account x region), narrowed to an account and a
    region when given, each as the context a command works with: the one loop over a
    job's targets outside the backup run.

    A job whose targets cannot be listed (an organization that cannot be read) raises,
    unless `unknown` is given: then it is told, and the other jobs go on."""
    for job in invocation.jobs:
        if invocation.interruption.requested:  # a signal: no job or target starts after it
            return
        if not job.enabled:
            continue
        try:
            targets = job.targets()
        except MolibackupError as exc:
            if unknown is None:
                raise
            unknown(job, exc)
            continue
        for target in targets:
            if invocation.interruption.requested:
                return
            if account is not None and (target.account or "") != account:
                continue
            if region is not None and target.region != region:
                continue
            yield Placed(target, JobContext(
                job=job.for_target(target), settings=invocation.config.settings,
                now=invocation.clock(), log=logger.bind(job=job.name),
                stop=invocation.interruption.stop), len(targets))
