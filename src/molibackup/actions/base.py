"""What every action is given and returns."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from molibackup.config import Config
from molibackup.ebs.job import EbsJob
from molibackup.interrupt import Interruption
from molibackup.runner import Clock


@dataclass(frozen=True)
class Invocation:
    config: Config
    jobs: Sequence[EbsJob]  # the jobs asked for (--job), every job without it
    args: argparse.Namespace
    clock: Clock
    interruption: Interruption


class Status(Enum):
    OK = "ok"
    FAILED = "failed"  # something the action was asked to do failed
    COME_BACK_LATER = "come back later"  # waiting on AWS (an archived snapshot's restore)


@dataclass(frozen=True)
class Outcome:
    status: Status
    #: The signal that interrupted the action, if one did (the CLI exits 128 + its number).
    interrupted_by: int | None = None

    @classmethod
    def of(cls, ok: bool) -> Outcome:
        return cls(Status.OK if ok else Status.FAILED)


@dataclass(frozen=True)
class Command:
    """A row of the table: what `--help` says, the command's own flags, and the action."""

    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Invocation], Outcome]
    #: What its --job means: "only this job (repeatable)", unless the command needs exactly
    #: one job, and says so here.
    job_help: str | None = None
