"""The commands, one module each, in one table: a new command is a new module and a row.

Every action has the same signature: it is given an `Invocation` (the validated config, the
jobs asked for, its command line, the clock, the interruption flag) and returns an
`Outcome`; `cli` alone turns outcomes and errors into exit statuses.
"""

from __future__ import annotations

from molibackup.actions import backup, check, report, restore, snapshots, verify
from molibackup.actions.base import Command, Invocation, Outcome, Status

#: The command run when none is given.
DEFAULT = "backup"

ACTIONS: dict[str, Command] = {
    "backup": backup.COMMAND,
    "check": check.COMMAND,
    "snapshots": snapshots.COMMAND,
    "restore": restore.COMMAND,
    "verify": verify.COMMAND,
    "report": report.COMMAND,
}

__all__ = ["ACTIONS", "DEFAULT", "Command", "Invocation", "Outcome", "Status"]
