"""AWS plumbing: sessions, clients and their retry settings, pagination, call counts.

Only botocore's public interface is used: a botocore session built here and handed to
`boto3.Session(botocore_session=...)`, assumed-role credentials put in through the credential
provider chain, clients whose failures arrive as `AwsError` (see awserror.py).
"""

from __future__ import annotations

import difflib
import functools
import os
import random
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import boto3
import botocore.exceptions
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    DeferredRefreshableCredentials,
)
from botocore.parsers import DEFAULT_TIMESTAMP_PARSER, ResponseParserError

from molibackup import __version__, log
from molibackup.aws.waiting import WATCHER
from molibackup.config import GlobalSettings, default_settings
from molibackup.errors import THROTTLING_CODES, AwsError, JobError

#: What botocore raises for a call that failed for AWS reasons, not because of our code.
BOTOCORE_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError,
                   ResponseParserError)


if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

DEFAULT_MAX_ATTEMPTS = 10


@dataclass(frozen=True)
class CredentialSettings:
    """How a module's job authenticates: static keys or the default chain, then maybe a
    role assumed on top. The module fills it from its own options."""

    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    session_name: str | None = None


def session_name_for(job_name: str, prefix: str = "molibackup") -> str:
    """<prefix>-<job>, as STS allows it: at most 64 of [A-Za-z0-9+=,.@_-]."""
    return re.sub(r"[^A-Za-z0-9+=,.@_-]", "-", f"{prefix}-{job_name}")[:64]


_LOADER: list[Any] = []  # botocore's data loader, shared: service models parsed once
_LOADER_LOCK = threading.Lock()


def new_core_session() -> botocore.session.Session:
    """A botocore session sharing one data loader with every other: a session per target
    would otherwise parse each service's model again (most of a client's creation cost)."""
    core = botocore.session.Session()
    with _LOADER_LOCK:
        if not _LOADER:
            _LOADER.append(core.get_component("data_loader"))
    core.register_component("data_loader", _LOADER[0])
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp)
    return core


def parse_timestamp(value: Any) -> datetime:
    """An answer's timestamp: ISO 8601 with an offset by the standard library, anything else
    by botocore's own parser. botocore's is dateutil's general parser, which made a third of
    the CPU time of reading a page of instances."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    parsed_by_botocore: datetime = DEFAULT_TIMESTAMP_PARSER(value)
    return parsed_by_botocore


def open_session(credentials: CredentialSettings, job_name: str,
                 region: str | None = None) -> boto3.Session:
    """Static keys when given, otherwise boto3's default credential chain; then, with a
    role_arn, that role assumed on top of them. The secrets obtained are registered for
    redaction before anything can log them."""
    core = new_core_session()
    if credentials.access_key_id and credentials.secret_access_key:
        core.set_credentials(credentials.access_key_id, credentials.secret_access_key)
    # The region reaches STS too (AssumeRole needs one when the environment names none).
    session = boto3.Session(botocore_session=core, region_name=region)
    if credentials.role_arn:
        session = assume_role(session, credentials.role_arn, credentials.external_id,
                              credentials.session_name or session_name_for(job_name))
    register_credentials(session)
    return session


def register_credentials(session: boto3.Session) -> None:
    try:
        found = session.get_credentials()
        frozen = found.get_frozen_credentials() if found is not None else None
    except BOTOCORE_ERRORS as exc:
        raise AwsError("sts", None, exc) from None
    if frozen is not None:
        log.register_secrets([frozen.secret_key, frozen.token])


class _AssumedRoleProvider(CredentialProvider):
    """First in a session's provider chain: the refreshable credentials of a role."""

    METHOD = "assume-role"
    CANONICAL_NAME = "custom-molibackup-assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self.credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self.credentials


def assume_role(base: boto3.Session, role_arn: str, external_id: str | None,
                session_name: str) -> boto3.Session:
    """A session acting as `role_arn`, its credentials refreshed before they expire (a long
    job outlives an hour's credentials). The role is assumed now, so that a refusal fails
    the job at once with a line naming the role."""
    extra: dict[str, Any] = {"RoleSessionName": session_name}
    if external_id:
        extra["ExternalId"] = external_id
    def sts_client(service: str, **kwargs: Any) -> Any:
        raw = base.client(service, config=client_config(None), **kwargs)  # type: ignore[call-overload]
        watch(raw, None)
        return raw

    fetcher = AssumeRoleCredentialFetcher(
        client_creator=sts_client, source_credentials=base.get_credentials(),
        role_arn=role_arn, extra_args=extra)
    credentials = DeferredRefreshableCredentials(method="assume-role",
                                                 refresh_using=fetcher.fetch_credentials)
    try:
        credentials.get_frozen_credentials()
    except BOTOCORE_ERRORS as exc:
        error = AwsError("sts", "AssumeRole", exc)
        if error.code:
            raise JobError(f"could not assume role {role_arn}: {error.code}: "
                           f"{error.aws_message} (check the role's trust policy"
                           f"{' and external_id' if external_id else ''})") from None
        if type(exc).__name__ == "NoCredentialsError":
            raise JobError(f"could not assume role {role_arn}: no AWS credentials to assume "
                           "it with") from None
        raise JobError(f"could not assume role {role_arn}: {error}") from None
    core = new_core_session()
    core.get_component("credential_provider").insert_before(
        "env", _AssumedRoleProvider(credentials))
    return boto3.Session(botocore_session=core, region_name=base.region_name)


def caller_account(session: boto3.Session, region: str) -> str:
    """The account a session acts in (sts:GetCallerIdentity needs no permission)."""
    identity = client(session, "sts", region, None).get_caller_identity()
    return str(identity["Account"])


# --- clients ------------------------------------------------------------------------------


def retry_settings(
    settings: GlobalSettings, env: Mapping[str, str] | None = None
) -> dict[str, object]:
    """Retry mode and attempts: the config file, then AWS_RETRY_MODE/AWS_MAX_ATTEMPTS, then ours.

    Adaptive mode paces requests with a client-side token bucket that slows down on
    throttling, so a large run converges on the account's real rate instead of failing.
    """
    env = os.environ if env is None else env
    mode = env.get("AWS_RETRY_MODE") or "adaptive"
    attempts = settings.max_attempts
    if attempts is None:
        try:
            attempts = int(env.get("AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))
        except ValueError:
            attempts = DEFAULT_MAX_ATTEMPTS
    return {"mode": mode, "total_max_attempts": max(1, attempts)}


def max_attempts(settings: GlobalSettings) -> int:
    return int(str(retry_settings(settings)["total_max_attempts"]))


def client_config(settings: GlobalSettings | None, attempts: int | None = None) -> BotoConfig:
    """Retries, timeouts and pool size; without settings (STS, Organizations before a job's
    own are known), the schema's defaults: no client waits on botocore's own."""
    settings = settings or default_settings()
    retries = retry_settings(settings)
    if attempts is not None:
        retries["total_max_attempts"] = attempts
    return BotoConfig(
        retries=retries,  # type: ignore[arg-type]
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=settings.concurrency + 2,
        user_agent_extra=f"molibackup/{__version__}",
    )


class CallStats:
    """How many requests a job sent (every attempt) and how many were throttled."""

    def __init__(self) -> None:
        self.calls = 0
        self.throttled = 0
        self._lock = threading.Lock()

    def absorb(self, other: CallStats) -> None:
        with self._lock:
            self.calls += other.calls
            self.throttled += other.throttled

    def attach(self, raw_client: Any) -> None:
        # Emitted after every attempt, retried or not, whatever the retry mode.
        service = raw_client.meta.service_model.service_name
        raw_client.meta.events.register(f"needs-retry.{service}", self._attempt)

    def _attempt(self, response: Any = None, **_: Any) -> None:
        code = ""
        if isinstance(response, tuple) and len(response) == 2 and isinstance(response[1], dict):
            code = str(response[1].get("Error", {}).get("Code", ""))
        with self._lock:
            self.calls += 1
            self.throttled += code in THROTTLING_CODES


class GuardedClient:
    """A botocore client whose failures arrive as AwsError, naming service and action.

    Everything else (meta, paginators, waiters) is the client's own, so botocore's Stubber
    works on it as on any client.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._service = str(raw.meta.service_model.service_name)
        self._operations: Mapping[str, str] = raw.meta.method_to_api_mapping

    @property
    def raw(self) -> Any:
        return self._raw

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._raw, name)
        operation = self._operations.get(name)
        if operation is None:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except BOTOCORE_ERRORS as exc:
                raise AwsError(self._service, operation, exc) from exc

        return call


def client(session: boto3.Session, service: str, region: str, settings: GlobalSettings | None,
           *, attempts: int | None = None, stats: CallStats | None = None) -> Any:
    """A guarded client; botocore clients are thread-safe and share a connection pool.

    With adaptive retries each client paces itself from the throttling it sees, so a client
    per throttling bucket (describe, create, delete) learns each bucket's own rate.
    """
    try:
        raw = _new_client(session, service, region, client_config(settings, attempts))
    except BOTOCORE_ERRORS as exc:
        raise AwsError(service, None, exc) from None
    watch(raw, settings)
    if stats is not None:
        stats.attach(raw)
    return GuardedClient(raw)


def watch(raw_client: Any, settings: GlobalSettings | None) -> None:
    """Every wait of the client announced and bounded (see waiting.py)."""
    settings = settings or default_settings()
    WATCHER.attach(raw_client, settings.timeout_attempts, settings.read_timeout)


_PRIMED: set[str] = set()
_PRIME_LOCK = threading.Lock()


def _new_client(session: boto3.Session, service: str, region: str, config: BotoConfig) -> Any:
    """A botocore client. The first of each service is made alone, its paginators loaded:
    the shared loader's caches are filled once, not by every target at the same moment
    (each would scan botocore's whole data directory for the same files)."""
    if service in _PRIMED:
        return session.client(service, region_name=region,  # type: ignore[call-overload]
                              config=config)
    with _PRIME_LOCK:
        raw = session.client(service, region_name=region,  # type: ignore[call-overload]
                             config=config)
        raw.can_paginate(next(iter(raw.meta.method_to_api_mapping), ""))
        _PRIMED.add(service)
    return raw


def ec2_client(session: boto3.Session, region: str, settings: GlobalSettings,
               attempts: int | None = None, stats: CallStats | None = None) -> EC2Client:
    return cast("EC2Client", client(session, "ec2", region, settings, attempts=attempts,
                                    stats=stats))


# The largest page each listing allows: fewer calls, and paginated EC2 calls fall into
# EC2's larger throttling bucket.
PAGE_SIZE = {"describe_instances": 1000, "describe_volumes": 500, "describe_snapshots": 1000,
             "list_accounts": 20}


def paginate(client: Any, operation: str, result_key: str, **kwargs: Any) -> Iterator[Any]:
    """Items of every page, at the largest page size unless explicit ids forbid one."""
    paginator = client.get_paginator(operation)
    explicit_ids = any(key.endswith("Ids") and key != "OwnerIds" for key in kwargs)
    config = {} if explicit_ids or operation not in PAGE_SIZE else {
        "PageSize": PAGE_SIZE[operation]}
    service = str(client.meta.service_model.service_name)
    pages = paginator.paginate(PaginationConfig=config, **kwargs)
    try:
        for page in pages:
            yield from page.get(result_key, [])
    except BOTOCORE_ERRORS as exc:
        raise AwsError(service, _api_name(operation), exc) from exc


def _api_name(method: str) -> str:
    return "".join(part.capitalize() for part in method.split("_"))


def backoff_delay(attempt: int, cap: float = 20.0) -> float:
    """Full-jitter exponential backoff, as botocore's standard mode does it."""
    return random.uniform(0, min(cap, 0.5 * 2**attempt))


@functools.cache
def known_regions(service: str = "ec2") -> frozenset[str]:
    """The regions of `service` in the installed botocore's endpoint data, every partition
    (read once: the endpoint data is large)."""
    core = new_core_session()
    return frozenset(region for partition in core.get_available_partitions()
                     for region in core.get_available_regions(service, partition))


def region_doubt(region: str, service: str = "ec2") -> str | None:
    """Why `region` may be a typo, or None when botocore knows it. New regions appear before
    botocore knows them: a doubt, never a refusal."""
    known = known_regions(service)
    if not known or region in known:
        return None
    close = difflib.get_close_matches(region, sorted(known), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (f"{region} is not a region this installation knows{hint}; if it is a new region, "
            "ignore this warning")
