"""Command line: parse arguments, run, and turn the outcome into an exit status."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from loguru import logger

from molibackup import __version__, config, log, runner
from molibackup.errors import ConfigError

EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_JOB_FAILED = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="molibackup",
        description="Create and rotate AWS EBS snapshots as described in a YAML configuration.",
        epilog="Exit status: 0 every job succeeded, 1 the configuration is missing or invalid, "
               "2 some job failed.",
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
                   help="validate against this JSON Schema instead of the packaged one")
    p.add_argument("--log-format", choices=["text", "json"],
                   help="log as text or JSON lines (overrides global.logformat)")
    p.add_argument("--version", action="version", version=f"molibackup {__version__}")
    return p


def main(argv: Sequence[str] | None = None, clock: runner.Clock = runner.utc_now) -> int:
    args = parser().parse_args(argv)
    log.configure("info", args.log_format or "text")
    log.register_secrets(os.environ.get(name) for name in
                         ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"))
    try:
        path = config.find_config(args.config)
        loaded = config.load(path, Path(args.schema) if args.schema else None)
        log.register_secrets(config.secrets_of(loaded))
        log.configure(loaded.settings.loglevel, args.log_format or loaded.settings.logformat)
        logger.info(f"configuration: {path}")
        jobs = runner.prepare(loaded, args.job)
    except ConfigError as exc:
        for problem in exc.problems:
            logger.error(problem)
        logger.error("configuration invalid: nothing was run" if not args.validate
                     else "configuration invalid")
        return EXIT_CONFIG
    if args.validate:
        logger.info(f"configuration valid: {len(jobs)} job(s): "
                    f"{', '.join(j.job.name for j in jobs)}")
        return EXIT_OK
    outcomes = runner.run(loaded, jobs, force_dry_run=args.dry_run, clock=clock)
    return EXIT_OK if all(outcome.ok for outcome in outcomes) else EXIT_JOB_FAILED


def entrypoint() -> None:
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
