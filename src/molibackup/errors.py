"""Every exception that reaches the user, each carrying its own message; `cli` alone turns
them into exit statuses.

- `ConfigError`: the configuration file (or the environment it is read with) cannot be used:
  exit 1 before any job runs, one line per problem.
- `UsageError`: the command line cannot be parsed: exit 1.
- `Refusal`: what a command was asked cannot be done as asked (a region the job does not
  copy to, a snapshot of no job), found before anything changed: exit 1.
- `JobError`: a job (or one of its targets) could not do what it was asked: it fails, the
  others go on, exit 2 at the end.
- `AwsError`: a failed AWS call, wrapped once where it leaves botocore; a job it stops fails.
"""

from __future__ import annotations

import re
from enum import StrEnum

import botocore.exceptions
from botocore.parsers import ResponseParserError


class MolibackupError(Exception):
    """Base of the errors whose message is meant for the user, not a traceback."""


class ConfigError(MolibackupError):
    """The configuration cannot be used: one line per problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class UsageError(MolibackupError):
    """The command line cannot be parsed (exit status 1, like a configuration problem)."""


class Refusal(MolibackupError):
    """A request the command refuses, before changing anything (exit status 1)."""


class JobError(MolibackupError):
    """A job could not do what it was asked; the message says what and why."""


PERMISSION_CODES = frozenset(
    {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "Forbidden"}
)
CREDENTIAL_CODES = frozenset(
    {"AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken",
     "RequestExpired", "UnrecognizedClientException"}
)
THROTTLING_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
SERVER_ERROR_CODES = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable",
                                "Unavailable", "ServerInternal"})

#: How the endpoint of each service is named in messages.
SERVICE_NAMES = {"ec2": "EC2", "sts": "STS", "ebs": "EBS direct", "ssm": "SSM",
                 "organizations": "Organizations", "service-quotas": "Service Quotas"}


class FailureKind(StrEnum):
    """Whether a failed call that must not be blindly retried can be sent again."""

    NOT_SENT = "not-sent"  # safe to send again
    MAYBE_DONE = "maybe-done"  # AWS may have acted: look before sending again
    FINAL = "final"  # retrying will not help


class AwsError(MolibackupError):
    """A failed AWS call: the service, the action, AWS's code and message, and its kind."""

    def __init__(self, service: str, operation: str | None, cause: BaseException) -> None:
        self.service = service
        self.operation = operation
        self.cause = cause
        super().__init__(self.explain())

    @property
    def code(self) -> str:
        if isinstance(self.cause, botocore.exceptions.ClientError):
            return str(self.cause.response.get("Error", {}).get("Code", ""))
        return ""

    @property
    def aws_message(self) -> str:
        if isinstance(self.cause, botocore.exceptions.ClientError):
            return str(self.cause.response.get("Error", {}).get("Message", ""))
        return str(self.cause)

    @property
    def status(self) -> int:
        if isinstance(self.cause, botocore.exceptions.ClientError):
            return int(self.cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        return 0

    @property
    def kind(self) -> FailureKind:
        cause = self.cause
        if isinstance(cause, botocore.exceptions.ClientError):
            if self.code in THROTTLING_CODES:
                return FailureKind.NOT_SENT
            if self.code in SERVER_ERROR_CODES or self.status >= 500:
                return FailureKind.MAYBE_DONE
            return FailureKind.FINAL
        if isinstance(cause, botocore.exceptions.EndpointConnectionError
                      | botocore.exceptions.ConnectTimeoutError):
            return FailureKind.NOT_SENT
        if isinstance(cause, botocore.exceptions.ReadTimeoutError
                      | botocore.exceptions.ConnectionClosedError | ResponseParserError):
            return FailureKind.MAYBE_DONE
        return FailureKind.FINAL

    @property
    def action(self) -> str:
        """The IAM action of the call, such as ec2:CreateSnapshot."""
        return f"{self.service}:{self.operation or 'call'}"

    def explain(self) -> str:
        """One line an operator can act on."""
        cause, code, action = self.cause, self.code, self.action
        endpoint = SERVICE_NAMES.get(self.service, self.service)
        if isinstance(cause, botocore.exceptions.ClientError):
            if code in PERMISSION_CODES:
                return (f"not allowed to call {action} ({code}): grant {action} to the role or "
                        "user this job runs as (see docs/reference/iam.md)")
            if code in CREDENTIAL_CODES:
                return (f"AWS rejected the credentials calling {action} ({code}): check "
                        "accesskey_id/accesskey_secret, or the role this job runs as")
            if code in THROTTLING_CODES:
                return (f"{action} was still throttled after every retry ({code}): raise "
                        "global.max_attempts or lower global.concurrency")
            if looks_like_a_page(self.aws_message):
                return foreign_page(action, self.status, endpoint, self.aws_message)
            return f"{action} failed: {code}: {self.aws_message}"
        if isinstance(cause, botocore.exceptions.NoCredentialsError):
            return ("no AWS credentials found: set accesskey_id and accesskey_secret, or "
                    "provide them through the environment, IRSA, EKS Pod Identity or an "
                    "instance profile")
        if isinstance(cause, botocore.exceptions.NoRegionError):
            return "no AWS region: set aws_region in the job"
        note = getattr(cause, "molibackup_note", None)
        waited = f" ({note})" if note else ""
        if isinstance(cause, botocore.exceptions.EndpointConnectionError
                      | botocore.exceptions.ConnectTimeoutError):
            return f"cannot reach the {endpoint} endpoint for {action}: {cause}{waited}"
        if isinstance(cause, botocore.exceptions.ReadTimeoutError):
            return (f"the {endpoint} endpoint did not answer {action} in time: "
                    f"{cause}{waited}")
        if isinstance(cause, ResponseParserError):
            body = str(cause).split("Further retries may succeed:", 1)[-1]
            return foreign_page(action, int(getattr(cause, "molibackup_status", 0)), endpoint,
                                body)
        return f"AWS call failed: {cause}"


def looks_like_a_page(text: str) -> bool:
    head = text.lstrip("b'\"\n ").lower()[:200]
    return head.startswith("<") and any(tag in head for tag in ("<html", "<!doctype", "<head",
                                                                 "<body", "<title", "<h1"))


def foreign_page(action: str, status: int, endpoint: str, body: str) -> str:
    """One line for an answer that is not AWS's (a proxy's or load balancer's page): the
    action, the HTTP status, and at most the page's title or first words."""
    text = body.encode().decode("unicode_escape", errors="replace") if "\\n" in body else body
    title = re.search(r"<title[^>]*>(.*?)</title>", text, flags=re.I | re.S)
    words = title.group(1) if title else re.sub(r"<[^>]*>", " ", text)
    words = " ".join(words.replace("b'", " ").split())
    shown = words if len(words) <= 60 else words[:59].rsplit(" ", 1)[0] + "…"
    http = f"HTTP {status}" if status else "an answer"
    return (f"{action} failed: {http} from the {endpoint} endpoint that is not an AWS answer "
            f"(a proxy or load balancer in the way?): \"{shown}\"")


def describe_unexpected(exc: BaseException) -> str:
    """The first line of an unexpected error, for a job's failure line."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
