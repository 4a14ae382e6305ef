"""The job every command is given: a job of the configuration with its EBS options parsed
once, where it runs (accounts x regions), and the sessions that get it there.

`module: ebs-snapshot`, the original tool's one module, is the only kind of job there is, so
there is no registry of modules: the schema's `module` enum admits that name (and existing
configuration files keep it), and every command works with an `EbsJob` directly.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

import boto3

from molibackup.aws import imds
from molibackup.aws.clients import assume_role, open_session, session_name_for
from molibackup.config import GlobalSettings, JobConfig
from molibackup.ebs.options import CopyTarget, Options
from molibackup.ebs.permissions import BACKUP, actions
from molibackup.ebs.targets import AccountRole, expand, organization_accounts
from molibackup.errors import JobError
from molibackup.jobs import Target

if TYPE_CHECKING:
    from loguru import Logger
    from mypy_boto3_ec2 import EC2Client

#: The `module:` every job names.
MODULE = "ebs-snapshot"


class EbsJob:
    """A job, with its options, as it runs in one target (its own account and region until
    `for_target` says otherwise)."""

    #: Every action a job may call (the IAM reference's backup role grants exactly these).
    permissions: ClassVar[frozenset[str]] = actions(BACKUP)

    def __init__(self, config: JobConfig, options: Options) -> None:
        self.config = config
        self.options = options

    @classmethod
    def from_config(cls, config: JobConfig) -> EbsJob:
        """Parse the job's options; ConfigError listing every problem."""
        return cls(config, Options.from_job(config))

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    @property
    def region(self) -> str:
        return self.options.aws_region

    @property
    def min_interval(self) -> timedelta | None:
        """The shortest time between two backups of a volume, if the job sets one."""
        return self.options.min_interval

    def warnings(self) -> list[str]:
        """Doubts about options that are valid but may be mistakes (an unknown region)."""
        return self.options.warnings(self.config)

    def session(self) -> boto3.Session:
        return open_session(self.options.credentials, self.name, self.options.aws_region)

    def targets(self) -> list[Target]:
        """Where the job works: accounts x regions, sorted. JobError when they cannot be
        known (an organization that cannot be listed)."""
        options = self.options
        accounts: list[AccountRole | None] = list(options.accounts) or [None]
        if options.organization is not None:
            accounts = list(organization_accounts(self.session(), options.organization))
            if not accounts:
                raise JobError("the organization has no ACTIVE account the job's accounts and "
                               "exclude globs select")
        return expand(options.regions, accounts)

    def for_target(self, target: Target) -> EbsJob:
        """The job as it runs in one target: its own session and region."""
        if target.role_arn is None and target.region == self.options.aws_region and len(
                self.options.regions) == 1:
            return self
        credentials = self.options.credentials
        if target.role_arn is not None:
            credentials = dataclasses.replace(
                credentials, role_arn=target.role_arn, external_id=target.external_id)
        return type(self)(self.config, dataclasses.replace(
            self.options, aws_region=target.region, regions=(target.region,),
            credentials=credentials))

    def instance_id(self, log: Logger | None = None) -> str | None:
        """The instance the job names; 'local' asks the instance metadata service."""
        if self.options.instance_id != "local":
            return self.options.instance_id
        instance_id = imds.local_instance_id()
        if log is not None:
            log.info(f"instance_id 'local' is {instance_id}")
        return instance_id

    def destination(self, session: boto3.Session, target: CopyTarget) -> boto3.Session:
        """The session that works in a copy destination: its role assumed, when it has one."""
        if not target.role_arn:
            return session
        return assume_role(session, target.role_arn, target.external_id,
                           session_name_for(self.name, "molibackup-copy"))


@dataclass(frozen=True)
class JobContext:
    """What a command hands a job: the job in one target, and the moment, log and stop flag
    of this run. `now` is fixed once per run; read-only commands leave `dry_run` and
    `run_id` unset."""

    job: EbsJob
    settings: GlobalSettings
    now: datetime
    log: Logger
    #: Set by SIGTERM/SIGINT: start nothing new (no snapshot, no deletion), report.
    stop: threading.Event
    dry_run: bool = False
    #: Identifies this run of the job: in snapshot tags, pings and logs.
    run_id: str = ""


@dataclass(frozen=True)
class Clients:
    """The job's EC2 clients: CreateSnapshot(s) and CreateVolume without botocore's retries
    (they are ours, sent once and looked for when an answer is lost), everything else with
    them."""

    main: EC2Client
    create: EC2Client
