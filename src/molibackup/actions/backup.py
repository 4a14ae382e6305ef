"""The backup run (no command given): every job, one after another, then a summary."""

from __future__ import annotations

import argparse

from molibackup import runner
from molibackup.actions.base import Command, Invocation, Outcome, Status
from molibackup.sharding import Shard


def add_arguments(_parser: argparse.ArgumentParser) -> None:
    """The run's flags are the top-level ones (--job, --dry-run)."""


def run(invocation: Invocation) -> Outcome:
    interruption = invocation.interruption
    shard = (Shard.parse(invocation.args.shard) if invocation.args.shard
             else Shard.from_environment())
    with interruption.installed():
        outcomes = runner.run(invocation.config, invocation.jobs,
                              force_dry_run=invocation.args.dry_run, clock=invocation.clock,
                              interruption=interruption, shard=shard)
    if interruption.requested:
        return Outcome(Status.FAILED, interrupted_by=interruption.signal_number)
    return Outcome.of(all(outcome.ok for outcome in outcomes))


COMMAND = Command(help="run the jobs: snapshot, rotate, archive, copy (the default)",
                  description="Run every job (or those given with --job).",
                  add_arguments=add_arguments, run=run)
