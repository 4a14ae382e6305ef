"""Command line: parse arguments, run, and turn the outcome into an exit status."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

from loguru import logger

from molibackup import __version__, check, config, durations, log, runner
from molibackup.errors import ConfigError, UsageError
from molibackup.interrupt import Interruption

EXIT_OK = 0
EXIT_CONFIG = 1  # the configuration, or the command line, cannot be used
EXIT_JOB_FAILED = 2
# Interrupted runs exit with 128 + the signal's number: 143 (SIGTERM), 130 (SIGINT).

#: Credentials read from the environment; whitespace around them breaks every request.
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                        "AWS_SECURITY_TOKEN")
SECRET_VARIABLES = CREDENTIAL_VARIABLES[1:]
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
    p.add_argument("--version", action="version", version=f"molibackup {__version__}")
    commands = p.add_subparsers(dest="command", metavar="{check}",
                                parser_class=_Parser)
    check = commands.add_parser(
        "check", help="report, for every volume each job selects, the age of its newest "
                      "completed snapshot; exit 2 when one is older than the limit",
        description="Read-only coverage check: lists every volume each job selects with "
                    "the age of its newest completed snapshot of that job. Exit status 0 "
                    "when all are recent enough, 2 when one is not, 1 on a config problem.")
    check.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                       help="configuration file (as before the command)")
    check.add_argument("--job", action="append", dest="check_jobs", default=[],
                       metavar="NAME", help="check only this job (repeatable)")
    check.add_argument("--max-age", metavar="DURATION", type=_duration,
                       help="the oldest a newest completed snapshot may be, such as 36h or "
                            "2d (default: twice the job's min_interval, else 2d)")
    check.add_argument("--output", choices=["text", "json"], default="text",
                       help="a table (default) or a JSON document, on standard output")
    check.add_argument("--log-format", choices=["text", "json"], default=argparse.SUPPRESS,
                       help="log as text or JSON lines (as before the command)")
    return p


def _duration(text: str) -> timedelta:
    try:
        return durations.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    log.register_secrets(os.environ.get(name) for name in SECRET_VARIABLES)
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
        log.register_secrets(config.secrets_of(loaded))
        log.configure(loaded.settings.loglevel, args.log_format or loaded.settings.logformat)
        logger.info(f"configuration: {path}")
        jobs = runner.prepare(loaded, [*args.job, *getattr(args, "check_jobs", [])])
    except ConfigError as exc:
        for problem in exc.problems[:MAX_PROBLEM_LINES]:
            logger.error(problem)
        if len(exc.problems) > MAX_PROBLEM_LINES:
            logger.error(f"... and {len(exc.problems) - MAX_PROBLEM_LINES} more problem(s)")
        logger.error("configuration invalid: nothing was run" if not args.validate
                     else "configuration invalid")
        return EXIT_CONFIG
    if args.validate:
        logger.info(f"configuration valid: {len(jobs)} job(s): "
                    f"{', '.join(j.job.name for j in jobs)}")
        return EXIT_OK
    if args.command == "check":
        now = clock()
        coverages = check.check_jobs(loaded, jobs, now, args.max_age)
        return EXIT_OK if check.report(coverages, now, args.output) else EXIT_JOB_FAILED
    interruption = interruption or Interruption()
    with interruption.installed():
        outcomes = runner.run(loaded, jobs, force_dry_run=args.dry_run, clock=clock,
                              interruption=interruption)
    if interruption.requested:
        return interruption.exit_status or EXIT_JOB_FAILED
    return EXIT_OK if all(outcome.ok for outcome in outcomes) else EXIT_JOB_FAILED


def entrypoint() -> None:
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # a signal before the handlers were installed
        sys.exit(130)
