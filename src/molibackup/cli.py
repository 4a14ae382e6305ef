"""Command line: parse arguments, run, and turn the outcome into an exit status."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from loguru import logger

from molibackup import __version__, config, log, runner
from molibackup.actions import ACTIONS, DEFAULT, Invocation, Outcome, Status
from molibackup.aws.waiting import WATCHER
from molibackup.config import sensitive
from molibackup.errors import ConfigError, MolibackupError, Refusal, UsageError
from molibackup.interrupt import Interruption

EXIT_OK = 0
EXIT_CONFIG = 1  # the configuration, or the command line, cannot be used
EXIT_JOB_FAILED = 2
EXIT_COME_BACK_LATER = 75  # EX_TEMPFAIL: waiting on AWS; run the same command again later
# Interrupted runs exit with 128 + the signal's number: 143 (SIGTERM), 130 (SIGINT).
EXIT_STATUS = {Status.OK: EXIT_OK, Status.FAILED: EXIT_JOB_FAILED,
               Status.COME_BACK_LATER: EXIT_COME_BACK_LATER}

#: Credentials read from the environment; whitespace around them breaks every request.
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", *sensitive.SECRET_VARIABLES)
MAX_PROBLEM_LINES = 200


class _Parser(argparse.ArgumentParser):
    """Usage errors are the user's input problem (exit 1), written in the chosen log format."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="molibackup",
        description="Create and rotate AWS EBS snapshots as described in a YAML configuration.",
        epilog="Exit status: 0 every job succeeded; 1 the configuration or the command line "
               "cannot be used; 2 some job failed; 130 or 143 interrupted by SIGINT or SIGTERM.",
    )
    p.add_argument("-c", "--config", metavar="FILE",
                   help=f"configuration file (default: ${config.CONFIG_ENV}, "
                        f"{config.SYSTEM_CONFIG}, ~/molibackup/{config.CONFIG_NAME}, "
                        "or next to the executable)")
    p.add_argument("--job", action="append", default=[], metavar="NAME",
                   help="run only this job (repeatable)")
    p.add_argument("--dry-run", action="store_true",
                   help="log what would be done for every job, change nothing")
    p.add_argument("--validate", action="store_true",
                   help="check the configuration and exit (0 valid, 1 invalid); no AWS call")
    p.add_argument("--schema", metavar="FILE",
                   help="also validate against this JSON Schema (it can only add refusals)")
    p.add_argument("--log-format", choices=["text", "json"],
                   help="log as text or JSON lines (overrides global.logformat)")
    p.add_argument("--shard", metavar="INDEX/COUNT",
                   help="run only this shard's targets (of every job's accounts x regions, "
                        "sorted, every COUNT-th from INDEX); in an Indexed Job, "
                        "JOB_COMPLETION_INDEX with MOLIBACKUP_SHARDS")
    p.add_argument("--version", action="version", version=f"molibackup {__version__}")
    commands = p.add_subparsers(dest="command", metavar="{" + ",".join(
        name for name in ACTIONS if name != DEFAULT) + "}", parser_class=_Parser)
    for name, command in ACTIONS.items():
        if name == DEFAULT:
            command.add_arguments(p)
            continue
        sub = commands.add_parser(name, help=command.help, description=command.description)
        # The top-level flags may also follow the command.
        sub.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                         help="configuration file (as before the command)")
        sub.add_argument("--job", action="append", dest="command_jobs", default=[],
                         metavar="NAME",
                         help=command.job_help or f"{name} only this job (repeatable)")
        sub.add_argument("--log-format", choices=["text", "json"], default=argparse.SUPPRESS,
                         help="log as text or JSON lines (as before the command)")
        command.add_arguments(sub)
    return p


def requested_log_format(argv: Sequence[str]) -> str:
    """--log-format from a command line that argparse could not parse."""
    for index, arg in enumerate(argv):
        if arg == "--log-format" and index + 1 < len(argv) and argv[index + 1] in ("text", "json"):
            return argv[index + 1]
        if arg in ("--log-format=json", "--log-format=text"):
            return arg.partition("=")[2]
    return "text"


def credential_problems(env: Mapping[str, str]) -> list[str]:
    """Credentials in the environment that carry whitespace (a Secret made from a file)."""
    problems = []
    for name in CREDENTIAL_VARIABLES:
        value = env.get(name)
        if not value or value == value.strip():
            continue
        if value.rstrip(" \t") != value.rstrip():
            flaw = "ends with a newline"
        elif value != value.rstrip():
            flaw = "ends with whitespace"
        elif value != value.lstrip():
            flaw = "starts with whitespace"
        problems.append(f"{name} {flaw}: remove it (a Kubernetes Secret made from a file "
                        "keeps the file's final newline; use `kubectl create secret "
                        "--from-literal` or strip the file)")
    return problems


def main(argv: Sequence[str] | None = None, clock: runner.Clock = runner.utc_now,
         interruption: Interruption | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Secrets are known before the first line is written, whatever happens next.
    log.forget_secrets()
    log.register_secrets(sensitive.in_environment(os.environ))
    try:
        args = parser().parse_args(argv)
    except UsageError as exc:
        log.configure("info", requested_log_format(argv))
        logger.error(f"usage: {exc}; see 'molibackup --help'")
        return EXIT_CONFIG
    log.configure("info", args.log_format or "text")
    try:
        problems = credential_problems(os.environ)
        if problems:
            raise ConfigError(problems)
        path = config.find_config(args.config)
        loaded = config.load(path, Path(args.schema) if args.schema else None)
        log.configure(loaded.settings.loglevel, args.log_format or loaded.settings.logformat)
        logger.info(f"configuration: {path}")
        jobs = runner.prepare(loaded, [*args.job, *getattr(args, "command_jobs", [])])
    except ConfigError as exc:
        report_problems(exc, "configuration invalid" if args.validate
                        else "configuration invalid: nothing was run")
        return EXIT_CONFIG
    for warning in (line for job in jobs for line in job.warnings()):
        logger.warning(warning)
    if args.validate:
        logger.info(f"configuration valid: {len(jobs)} job(s): "
                    f"{', '.join(job.name for job in jobs)}")
        return EXIT_OK
    action = ACTIONS[args.command or DEFAULT]
    interruption = interruption or Interruption(exit_now)
    # A new run: no endpoint is known dead (the tests run many in one process), and after
    # a signal no call that got no answer is tried again.
    WATCHER.reset(interruption.stop)
    try:
        # Every command: the first SIGTERM/SIGINT starts nothing new, and the exit status
        # says the command was interrupted.
        with interruption.installed():
            outcome = action.run(Invocation(loaded, jobs, args, clock, interruption))
    except (Refusal, UsageError) as exc:  # a flag or a name the config does not know
        report_problems(ConfigError(str(exc).splitlines()), "nothing was done")
        return EXIT_CONFIG
    except MolibackupError as exc:  # the action could not start (an organization unlisted)
        logger.error(str(exc))
        return EXIT_JOB_FAILED
    if interruption.requested and outcome.interrupted_by is None:
        outcome = dataclasses.replace(outcome, interrupted_by=interruption.signal_number)
    return exit_status(outcome)


def exit_status(outcome: Outcome) -> int:
    if outcome.interrupted_by is not None:
        return 128 + outcome.interrupted_by
    return EXIT_STATUS[outcome.status]


def report_problems(exc: ConfigError, closing: str) -> None:
    for problem in exc.problems[:MAX_PROBLEM_LINES]:
        logger.error(problem)
    if len(exc.problems) > MAX_PROBLEM_LINES:
        logger.error(f"... and {len(exc.problems) - MAX_PROBLEM_LINES} more problem(s)")
    logger.error(closing)


def entrypoint() -> NoReturn:
    # What start-up made (modules, the schema) lives as long as the process: out of the
    # cyclic collector's way, a full collection in the middle of a run scans much less.
    gc.freeze()
    try:
        status = main()
    except KeyboardInterrupt:  # a signal before the handlers were installed
        status = 130
    leave(status)


def leave(status: int) -> NoReturn:
    """Exit with `status` once standard output and error are flushed."""
    for stream in (sys.stdout, sys.stderr):
        # A reader gone, or a stream closed: nothing more can reach it anyway.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    sys.exit(status)


def exit_now(status: int) -> None:
    """The second signal's exit (or the grace time's end): at once, whatever threads are
    still waiting on AWS, with the status the signal asks for."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)
