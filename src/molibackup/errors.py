"""The exceptions that reach the user, each carrying its own message.

`ConfigError` ends the program with exit status 1 before any job runs; `JobError` fails
one job (exit status 2 at the end) while the others go on.
"""

from __future__ import annotations


class MolibackupError(Exception):
    """Base of the errors whose message is meant for the user, not a traceback."""


class ConfigError(MolibackupError):
    """The configuration cannot be used: one line per problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class JobError(MolibackupError):
    """A job could not do what it was asked; the message says what and why."""


class UsageError(MolibackupError):
    """The command line cannot be parsed (exit status 1, like a configuration problem)."""
