"""AWS plumbing: sessions, client settings, instance metadata and readable error messages."""

from __future__ import annotations

import os
import random
import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
from botocore.parsers import ResponseParserError
from botocore.utils import IMDSFetcher

from molibackup import __version__
from molibackup.config import GlobalSettings, JobConfig
from molibackup.errors import JobError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

DEFAULT_MAX_ATTEMPTS = 10

PERMISSION_CODES = frozenset(
    {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "Forbidden"}
)
CREDENTIAL_CODES = frozenset(
    {"AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken",
     "RequestExpired", "UnrecognizedClientException"}
)
THROTTLING_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})

#: What an AWS call can raise that is about AWS, not about our code.
AWS_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError,
              ResponseParserError)


def make_session(job: JobConfig) -> boto3.Session:
    """Static keys when the job has them, otherwise boto3's default credential chain; then,
    with role_arn, that role assumed on top of them."""
    key_id = job.options.get("accesskey_id")
    secret = job.options.get("accesskey_secret")
    if key_id and secret:
        session = boto3.Session(aws_access_key_id=key_id, aws_secret_access_key=secret)
    else:
        session = boto3.Session()
    role_arn = job.options.get("role_arn")
    if role_arn:
        name = job.options.get("session_name") or session_name_for(job.name)
        session = assume_role(session, role_arn, job.options.get("external_id"), name)
    return session


def session_name_for(job_name: str) -> str:
    """molibackup-<job>, as STS allows it: at most 64 of [A-Za-z0-9+=,.@_-]."""
    return re.sub(r"[^A-Za-z0-9+=,.@_-]", "-", f"molibackup-{job_name}")[:64]


def assume_role(base: boto3.Session, role_arn: str, external_id: str | None,
                session_name: str) -> boto3.Session:
    """A session acting as `role_arn`, its credentials refreshed before they expire (a long
    job outlives an hour's credentials). The role is assumed now, so that a refusal fails
    the job at once with a line naming the role."""
    extra: dict[str, Any] = {"RoleSessionName": session_name}
    if external_id:
        extra["ExternalId"] = external_id
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=base._session.create_client, source_credentials=base.get_credentials(),
        role_arn=role_arn, extra_args=extra)
    credentials = DeferredRefreshableCredentials(method="assume-role",
                                                 refresh_using=fetcher.fetch_credentials)
    try:
        credentials.get_frozen_credentials()
    except botocore.exceptions.ClientError as exc:
        raise JobError(f"could not assume role {role_arn}: {error_code(exc)}: "
                       f"{error_message(exc)} (check the role's trust policy"
                       f"{' and external_id' if external_id else ''})") from None
    except botocore.exceptions.NoCredentialsError:
        raise JobError(f"could not assume role {role_arn}: no AWS credentials to assume it "
                       "with") from None
    core = botocore.session.Session()
    # What botocore's own assume-role provider does: the session's credentials are these.
    core._credentials = credentials  # type: ignore[attr-defined]
    return boto3.Session(botocore_session=core)


def retry_settings(
    settings: GlobalSettings, env: dict[str, str] | None = None
) -> dict[str, object]:
    """Retry mode and attempts: the config file, then AWS_RETRY_MODE/AWS_MAX_ATTEMPTS, then ours.

    Adaptive mode paces requests with a client-side token bucket that slows down on
    throttling, so a large run converges on the account's real rate instead of failing.
    """
    env = dict(os.environ) if env is None else env
    mode = env.get("AWS_RETRY_MODE") or "adaptive"
    attempts = settings.max_attempts
    if attempts is None:
        try:
            attempts = int(env.get("AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))
        except ValueError:
            attempts = DEFAULT_MAX_ATTEMPTS
    return {"mode": mode, "total_max_attempts": max(1, attempts)}


def client_config(settings: GlobalSettings, max_attempts: int | None = None) -> BotoConfig:
    retries = retry_settings(settings)
    if max_attempts is not None:
        retries["total_max_attempts"] = max_attempts
    return BotoConfig(
        retries=retries,  # type: ignore[arg-type]
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=settings.concurrency + 2,
        user_agent_extra=f"molibackup/{__version__}",
    )


class CallStats:
    """How many EC2 requests a job sent (every attempt) and how many were throttled."""

    def __init__(self) -> None:
        self.calls = 0
        self.throttled = 0
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        # Emitted after every attempt, retried or not, whatever the retry mode.
        client.meta.events.register("needs-retry.ec2", self._attempt)

    def _attempt(self, response: Any = None, **_: Any) -> None:
        code = ""
        if isinstance(response, tuple) and len(response) == 2 and isinstance(response[1], dict):
            code = str(response[1].get("Error", {}).get("Code", ""))
        with self._lock:
            self.calls += 1
            self.throttled += code in THROTTLING_CODES


def ec2_client(
    session: boto3.Session, region: str, settings: GlobalSettings,
    max_attempts: int | None = None, stats: CallStats | None = None,
) -> EC2Client:
    """A client for one job: botocore clients are thread-safe and share a connection pool.

    With adaptive retries each client paces itself from the throttling it sees, so a client
    per EC2 throttling bucket (describe, create, delete) learns each bucket's own rate.
    """
    client = session.client("ec2", region_name=region,
                            config=client_config(settings, max_attempts))
    if stats is not None:
        stats.attach(client)
    return client


# The largest page each Describe call allows: fewer calls, and paginated calls fall into
# EC2's larger throttling bucket.
PAGE_SIZE = {"describe_instances": 1000, "describe_volumes": 500, "describe_snapshots": 1000}


def paginate(client: EC2Client, operation: str, result_key: str, **kwargs: Any) -> Iterator[Any]:
    """Items of every page, at the largest page size unless explicit ids forbid one."""
    paginator = client.get_paginator(operation)  # type: ignore[call-overload]
    explicit_ids = any(key.endswith("Ids") and key != "OwnerIds" for key in kwargs)
    config = {} if explicit_ids else {"PageSize": PAGE_SIZE[operation]}
    for page in paginator.paginate(PaginationConfig=config, **kwargs):
        yield from page.get(result_key, [])



# --- classifying failures of calls that must not be blindly retried ----------------------

NOT_SENT = "not-sent"  # safe to send again
MAYBE_DONE = "maybe-done"  # EC2 may have acted: look before sending again
FINAL = "final"  # retrying will not help

SERVER_ERROR_CODES = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable",
                                "Unavailable", "ServerInternal"})


def failure_kind(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in THROTTLING_CODES:
            return NOT_SENT
        if code in SERVER_ERROR_CODES or status >= 500:
            return MAYBE_DONE
        return FINAL
    if isinstance(exc, botocore.exceptions.EndpointConnectionError
                  | botocore.exceptions.ConnectTimeoutError):
        return NOT_SENT
    if isinstance(exc, botocore.exceptions.ReadTimeoutError
                  | botocore.exceptions.ConnectionClosedError | ResponseParserError):
        return MAYBE_DONE
    return FINAL


def backoff_delay(attempt: int, cap: float = 20.0) -> float:
    """Full-jitter exponential backoff, as botocore's standard mode does it."""
    return random.uniform(0, min(cap, 0.5 * 2**attempt))


def error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Message", ""))
    return str(exc)


def explain(exc: BaseException) -> str:
    """One line an operator can act on, for an error raised by an AWS call."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code, operation = error_code(exc), exc.operation_name
        if code in PERMISSION_CODES:
            return (f"not allowed to call ec2:{operation} ({code}): grant ec2:{operation} to the "
                    "role or user this job runs as (see the IAM policy in the README)")
        if code in CREDENTIAL_CODES:
            return (f"AWS rejected the credentials calling ec2:{operation} ({code}): check "
                    "accesskey_id/accesskey_secret, or the role this job runs as")
        if code in THROTTLING_CODES:
            return (f"ec2:{operation} was still throttled after every retry ({code}): raise "
                    "global.max_attempts or lower global.concurrency")
        return f"ec2:{operation} failed: {code}: {error_message(exc)}"
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ("no AWS credentials found: set accesskey_id and accesskey_secret, or provide "
                "them through the environment, IRSA, EKS Pod Identity or an instance profile")
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return "no AWS region: set aws_region in the job"
    unreachable = (botocore.exceptions.EndpointConnectionError,
                   botocore.exceptions.ConnectTimeoutError)
    if isinstance(exc, unreachable):
        return f"cannot reach the EC2 endpoint: {exc}"
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        return f"the EC2 endpoint did not answer in time: {exc}"
    if isinstance(exc, ResponseParserError):
        return "the EC2 endpoint answered with something that is not an EC2 response " \
               "(a proxy or emulator error page?)"
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return f"AWS call failed: {exc}"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}"


class _InstanceIdFetcher(IMDSFetcher):
    """botocore's own IMDS client (token first), pointed at the instance-id document."""

    def instance_id(self) -> str:
        token = self._fetch_metadata_token()  # type: ignore[attr-defined]
        response = self._get_request(  # type: ignore[attr-defined]
            url_path="latest/meta-data/instance-id",
            retry_func=self._default_retry,  # type: ignore[attr-defined]
            token=token,
        )
        return str(response.text).strip()


def local_instance_id(session: boto3.Session) -> str:
    """The id of the EC2 instance this runs on, honouring botocore's metadata settings."""
    core = session._session  # botocore resolves the metadata settings there
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        raise JobError("instance_id is 'local' but AWS_EC2_METADATA_DISABLED=true forbids asking "
                       "the instance metadata service; unset it or select instances by tag")
    fetcher = _InstanceIdFetcher(
        timeout=int(core.get_config_variable("metadata_service_timeout")),
        num_attempts=int(core.get_config_variable("metadata_service_num_attempts")),
        config={
            "ec2_metadata_service_endpoint": core.get_config_variable(
                "ec2_metadata_service_endpoint"),
            "ec2_metadata_service_endpoint_mode": core.get_config_variable(
                "ec2_metadata_service_endpoint_mode"),
            "ec2_metadata_v1_disabled": core.get_config_variable("ec2_metadata_v1_disabled"),
        },
        user_agent=f"molibackup/{__version__}",
    )
    hint = ("is this running on EC2? In a pod, the instance's metadata hop limit must be 2 "
            "(HttpPutResponseHopLimit), or select instances by tag instead of 'local'")
    try:
        instance_id = fetcher.instance_id()
    except (botocore.exceptions.BotoCoreError, botocore.utils._RetriesExceededError) as exc:
        raise JobError(f"instance_id is 'local' but the instance metadata service at "
                       f"{fetcher.get_base_url()} did not answer ({type(exc).__name__}): "
                       f"{hint}") from None
    if not instance_id.startswith("i-"):
        raise JobError(f"instance_id is 'local' but the instance metadata service answered "
                       f"{instance_id[:40]!r}, not an instance id: {hint}")
    return instance_id


def caller_account(session: boto3.Session, region: str) -> str:
    """The account a session acts in (sts:GetCallerIdentity needs no permission)."""
    identity = session.client("sts", region_name=region).get_caller_identity()
    return str(identity["Account"])
