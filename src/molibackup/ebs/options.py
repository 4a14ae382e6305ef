"""The module's own options, parsed from a validated job into a frozen dataclass."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from molibackup import durations, retention
from molibackup.aws.clients import CredentialSettings, region_doubt
from molibackup.config import JobConfig, option_default
from molibackup.ebs.hook_options import HookOptions, parse_hooks
from molibackup.ebs.targets import AccountRole, OrganizationSelector
from molibackup.errors import ConfigError


def parse_tag(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key, value


def merge_tags(
    job: JobConfig, single_option: str, map_option: str, problems: list[str]
) -> dict[str, str]:
    """Combine the `"K=V"` form and the map form of a tag selector; all tags must match."""
    tags = dict(job.options.get(map_option) or {})
    if single_option in job.options:
        key, value = parse_tag(job.options[single_option])
        if key in tags and tags[key] != value:
            problems.append(job.problem(
                single_option, f"tag {key!r} is {value!r} here but {tags[key]!r} in "
                f"{map_option}: no resource can match both"))
        tags[key] = value
    return tags


@dataclass(frozen=True)
class ClaimSelector:
    """Kubernetes PersistentVolumeClaims, by namespace and name globs and cluster id."""

    namespaces: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    cluster: str | None = None

    def describe(self) -> str:
        parts = [f"namespaces {', '.join(self.namespaces)}"] if self.namespaces else []
        parts += [f"names {', '.join(self.names)}"] if self.names else []
        parts += [f"cluster {self.cluster}"] if self.cluster else []
        return "; ".join(parts)


@dataclass(frozen=True)
class CopyTarget:
    """One destination of the job's snapshots: a region, maybe another account."""

    region: str
    role_arn: str | None
    external_id: str | None
    policy: retention.Policy
    encrypted: bool
    kms_key_id: str | None
    copy_tags: bool

    @property
    def account(self) -> str | None:
        return self.role_arn.split(":")[4] if self.role_arn else None

    def describe(self) -> str:
        return self.region + (f" (account {self.account})" if self.account else "")


@dataclass(frozen=True)
class VerifyOptions:
    """How `molibackup verify` checks the job's backups (the `verify` option)."""

    method: str
    sample: int | None
    every: timedelta | None
    blocks: int
    availability_zone: str | None
    timeout: timedelta
    require_filesystem: bool


def parse_verify(job: JobConfig, problems: list[str]) -> VerifyOptions:
    raw = job.options["verify"]
    durations_of: dict[str, timedelta | None] = {}
    for key in ("every", "timeout"):
        try:
            durations_of[key] = durations.parse(str(raw[key])) if key in raw else None
        except ValueError as exc:
            problems.append(job.problem(f"verify.{key}", str(exc)))
            durations_of[key] = None
    return VerifyOptions(method=str(raw["method"]), sample=raw.get("sample"),
                         every=durations_of["every"], blocks=int(raw["blocks"]),
                         availability_zone=raw.get("availability_zone"),
                         # (a timeout that does not parse is a problem raised above)
                         timeout=durations_of["timeout"] or timedelta(0),
                         require_filesystem=bool(raw["require_filesystem"]))


@dataclass(frozen=True)
class LockPolicy:
    mode: str
    duration_days: int


@dataclass(frozen=True)
class Options:
    aws_region: str  # the region it works in (for several, the first; see regions)
    credentials: CredentialSettings
    policy: retention.Policy
    instance_id: str | None
    instance_tags: Mapping[str, str]
    volume_tags: Mapping[str, str]
    allow_empty: bool
    copy_volume_tags: bool
    lock: LockPolicy | None
    min_interval: timedelta | None
    adopt_untagged: bool
    claims: ClaimSelector | None
    exclude_boot_volume: bool
    consistency: str
    archive_after_days: int | None
    copy_to: tuple[CopyTarget, ...]
    verify: VerifyOptions
    hooks: HookOptions | None
    orphan_retention_days: int | None
    regions: tuple[str, ...]
    accounts: tuple[AccountRole, ...]
    organization: OrganizationSelector | None

    @classmethod
    def from_job(cls, job: JobConfig) -> Options:
        """The job's options, already validated by the schema; raises ConfigError for the
        contradictions a schema cannot express."""
        problems: list[str] = []
        raw = job.options
        regions = parse_regions(job, problems)
        accounts, organization = parse_accounts(job, problems)
        instance_tags = merge_tags(job, "instance_tag", "instance_tags", problems)
        volume_tags = merge_tags(job, "volume_tag", "volume_tags", problems)
        policy = parse_policy(job, problems)
        min_interval = None
        if "min_interval" in raw:
            try:
                min_interval = durations.parse(str(raw["min_interval"]))
            except ValueError as exc:
                problems.append(job.problem("min_interval", str(exc)))
        claims = parse_claims(job, problems)
        copy_to = parse_copy_targets(job, policy, problems)
        verify = parse_verify(job, problems)
        hooks = parse_hooks(job, problems, claims is not None)
        consistency = str(raw["consistency"])
        if consistency == "instance" and claims is not None:
            problems.append(job.problem(
                "consistency", "'instance' needs an instance selection: the claims one node "
                "holds belong to different pods, so snapshotting them together makes nothing "
                "consistent; leave consistency out with persistent_volume_claims"))
        if problems:
            raise ConfigError(problems)
        lock = None
        if "lock_mode" in raw:
            lock = LockPolicy(mode=raw["lock_mode"], duration_days=int(raw["lock_duration"]))
        return cls(
            aws_region=regions[0],
            credentials=CredentialSettings(
                access_key_id=raw.get("accesskey_id"), secret_access_key=raw.get(
                    "accesskey_secret"), role_arn=raw.get("role_arn"),
                external_id=raw.get("external_id"), session_name=raw.get("session_name")),
            policy=policy,
            instance_id=raw.get("instance_id"),
            instance_tags=instance_tags,
            volume_tags=volume_tags,
            allow_empty=bool(raw["allow_empty"]),
            copy_volume_tags=bool(raw["copy_volume_tags"]),
            lock=lock,
            min_interval=min_interval,
            adopt_untagged=bool(raw["adopt_untagged"]),
            claims=claims,
            exclude_boot_volume=bool(raw["exclude_boot_volume"]),
            consistency=consistency,
            archive_after_days=(int(raw["archive_after"]) if "archive_after" in raw else None),
            copy_to=copy_to,
            verify=verify,
            hooks=hooks,
            orphan_retention_days=raw.get("orphan_retention"),
            regions=regions,
            accounts=accounts,
            organization=organization,
        )


    def warnings(self, job: JobConfig) -> list[str]:
        """Regions this installation does not know (a typo, or a region newer than it)."""
        where = "aws_region" if "aws_region" in job.options else "aws_regions"
        regions = [(where, region) for region in self.regions] + [
            (f"copy_to.{index}.region", target.region) for index, target in
            enumerate(self.copy_to)]
        return [job.problem(where, doubt) for where, region in regions
                if (doubt := region_doubt(region))]


INSTANCE_SELECTORS = ("instance_id", "instance_tag", "instance_tags")


def parse_regions(job: JobConfig, problems: list[str]) -> tuple[str, ...]:
    raw = job.options
    if "aws_region" in raw and "aws_regions" in raw:
        problems.append(job.problem("aws_regions", "give aws_region (one region) or "
                                                   "aws_regions (several), not both"))
    if "aws_region" not in raw and "aws_regions" not in raw:
        problems.append(job.problem("aws_region", "missing: give the job's region, or "
                                                  "aws_regions for several"))
        return ("",)
    return tuple(raw["aws_regions"]) if "aws_regions" in raw else (str(raw["aws_region"]),)


def parse_accounts(job: JobConfig, problems: list[str]
                   ) -> tuple[tuple[AccountRole, ...], OrganizationSelector | None]:
    raw = job.options
    if "accounts" in raw and "organization" in raw:
        problems.append(job.problem("organization", "give accounts (a list of roles) or "
                                                    "organization, not both"))
    for option in ("accounts", "organization"):
        if option in raw and "role_arn" in raw:
            problems.append(job.problem("role_arn", f"role_arn runs the job in one other "
                                                    f"account; with {option} each account has "
                                                    "its own role: leave role_arn out"))
    accounts = tuple(AccountRole(a["role_arn"], a.get("external_id"), a.get("name"))
                     for a in raw.get("accounts") or [])
    seen: set[str] = set()
    for index, account in enumerate(accounts):
        if account.account in seen:
            problems.append(job.problem(f"accounts.{index}", f"account {account.account} is "
                                                             "listed twice"))
        seen.add(account.account)
    organization = None
    if "organization" in raw:
        org = raw["organization"]
        organization = OrganizationSelector(
            role_name=org["role_name"], accounts=tuple(org.get("accounts") or ()),
            exclude=tuple(org.get("exclude") or ()), external_id=org.get("external_id"))
    return accounts, organization


def parse_claims(job: JobConfig, problems: list[str]) -> ClaimSelector | None:
    raw = job.options.get("persistent_volume_claims")
    if raw is None:
        return None
    for option in INSTANCE_SELECTORS:
        if option in job.options:
            problems.append(job.problem(
                option, "cannot be combined with persistent_volume_claims: a claim's volume "
                "moves from node to node (and is detached while its pod is rescheduled), so "
                "selecting by instance would miss it; select claims, optionally narrowed by "
                "volume_tags"))
    return ClaimSelector(namespaces=tuple(raw.get("namespaces", ())),
                         names=tuple(raw.get("names", ())), cluster=raw.get("cluster"))


KEEP_RULES = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly",
              "keep_yearly")


def time_zone(job: JobConfig, problems: list[str], raw: Mapping[str, Any] | None = None,
              where: str = "") -> tzinfo:
    raw = job.options if raw is None else raw
    name = str(raw.get("timezone", job.options["timezone"]))
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        pass
    problems.append(job.problem(f"{where}.timezone" if where else "timezone",
                                f"unknown time zone {name!r}: give an IANA name such as UTC, "
                                "Europe/Paris or America/New_York"))
    return UTC


def parse_policy(job: JobConfig, problems: list[str], raw: Mapping[str, Any] | None = None,
                 where: str = "") -> retention.Policy:
    """The retention policy: `retention` defaults to 30 days only when no keep rule is set."""
    raw = job.options if raw is None else raw
    rules = {name: int(raw[name]) for name in KEEP_RULES if name in raw}
    days = raw.get("retention")
    if days is None and not rules:
        days = retention.DEFAULT_RETENTION_DAYS
    zone = time_zone(job, problems, raw, where)
    # A copy destination with rules of its own but no min_keep gets the schema's default.
    min_keep = raw.get("min_keep", option_default(job.module, "min_keep"))
    return retention.Policy(retention_days=None if days is None else int(days),
                            min_keep=int(min_keep), timezone=zone, **rules)


RULE_OPTIONS = ("retention", "min_keep", *KEEP_RULES)


def parse_copy_targets(job: JobConfig, policy: retention.Policy, problems: list[str]
                       ) -> tuple[CopyTarget, ...]:
    """The destinations of copy_to; each keeps by its own rules, or by the job's when it
    gives none."""
    targets = []
    seen: set[tuple[str, str | None]] = set()
    for index, raw in enumerate(job.options.get("copy_to") or []):
        where = f"copy_to.{index}"
        own_rules = any(key in raw for key in RULE_OPTIONS)
        target_policy = parse_policy(job, problems, raw, where) if own_rules else policy
        if not own_rules and "timezone" in raw:
            target_policy = dataclasses.replace(policy, timezone=time_zone(job, problems, raw,
                                                                           where))
        target = CopyTarget(region=raw["region"], role_arn=raw.get("role_arn"),
                            external_id=raw.get("external_id"), policy=target_policy,
                            encrypted=bool(raw["encrypted"] or raw.get("kms_key_id")),
                            kms_key_id=raw.get("kms_key_id"),
                            copy_tags=bool(raw["copy_tags"]))
        source_account = job.options["role_arn"].split(":")[4] if job.options.get(
            "role_arn") else None
        regions = job.options.get("aws_regions") or [job.options.get("aws_region")]
        if target.region in regions and target.account in (None, source_account):
            problems.append(job.problem(where, "copies in the job's own region and account "
                                               "share the source's blast radius: give another "
                                               "region, or a role_arn of another account"))
        key = (target.region, target.account)
        if key in seen:
            problems.append(job.problem(where, f"a second destination {target.describe()}: "
                                               "give each region and account once"))
        seen.add(key)
        targets.append(target)
    return tuple(targets)


