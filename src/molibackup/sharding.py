"""Which shard runs which target: a pure function of (targets, index, count).

Every pod of a Kubernetes Indexed Job computes the same sorted list of (job, account, region)
and takes every COUNT-th from its INDEX: each target runs in exactly one shard, whatever the
order the pods start in, run after run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from molibackup.errors import UsageError
from molibackup.jobs import Target

SHARD = re.compile(r"(\d{1,5})/(\d{1,5})")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = SHARD.fullmatch(text.strip())
        if not match:
            raise UsageError(f"--shard {text!r} is not INDEX/COUNT, such as 0/3")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or index >= count:
            raise UsageError(f"--shard {text}: INDEX must be from 0 to COUNT - 1, and COUNT "
                             "at least 1")
        return cls(index, count)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Shard | None:
        """A Kubernetes Indexed Job's JOB_COMPLETION_INDEX with MOLIBACKUP_SHARDS."""
        env = os.environ if env is None else env
        count = env.get("MOLIBACKUP_SHARDS")
        if not count:
            return None
        index = env.get("JOB_COMPLETION_INDEX")
        if index is None:
            raise UsageError("MOLIBACKUP_SHARDS is set but JOB_COMPLETION_INDEX is not: run "
                             "as an Indexed Job, or give --shard INDEX/COUNT")
        return cls.parse(f"{index}/{count}")


def key(job: str, target: Target) -> tuple[str, str, str]:
    return job, target.account or "", target.region


def assign(targets: Sequence[tuple[str, Target]], shard: Shard) -> set[tuple[str, str, str]]:
    """The keys of the targets this shard runs."""
    ordered = sorted({key(job, target) for job, target in targets})
    return {k for position, k in enumerate(ordered) if position % shard.count == shard.index}
