"""Retry settings and the classification of AWS failures, on plain data."""

from __future__ import annotations

import dataclasses
from typing import Any

import botocore.exceptions
import pytest
from botocore.parsers import ResponseParserError

from molibackup.aws.clients import backoff_delay, retry_settings
from molibackup.config import GlobalSettings, default_settings
from molibackup.errors import AwsError, FailureKind

FINAL, MAYBE_DONE, NOT_SENT = FailureKind.FINAL, FailureKind.MAYBE_DONE, FailureKind.NOT_SENT


def failure_kind(exc: BaseException) -> FailureKind:
    return AwsError("ec2", "CreateSnapshot", exc).kind


def explain(exc: BaseException, service: str = "ec2") -> str:
    operation = getattr(exc, "operation_name", None)
    return str(AwsError(service, operation, exc))


def client_error(code: str, status: int = 400, operation: str = "CreateSnapshot") -> Any:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": f"{code} happened"},
         "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


@pytest.mark.parametrize(
    ("settings", "env", "expected"),
    [
        pytest.param(default_settings(), {}, {"mode": "adaptive", "total_max_attempts": 10},
                     id="defaults-adaptive-10"),
        pytest.param(default_settings(), {"AWS_RETRY_MODE": "standard",
                                          "AWS_MAX_ATTEMPTS": "4"},
                     {"mode": "standard", "total_max_attempts": 4}, id="environment-honoured"),
        pytest.param(dataclasses.replace(default_settings(), max_attempts=20),
                     {"AWS_MAX_ATTEMPTS": "4"},
                     {"mode": "adaptive", "total_max_attempts": 20}, id="config-file-wins"),
        pytest.param(default_settings(), {"AWS_MAX_ATTEMPTS": "many"},
                     {"mode": "adaptive", "total_max_attempts": 10}, id="garbage-ignored"),
    ],
)
def test_retry_settings(settings: GlobalSettings, env: dict[str, str],
                        expected: dict[str, Any]) -> None:
    assert retry_settings(settings, env) == expected


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        pytest.param(client_error("RequestLimitExceeded", 503), NOT_SENT, id="throttled"),
        pytest.param(botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"),
                     NOT_SENT, id="connection-refused"),
        pytest.param(client_error("InternalError", 500), MAYBE_DONE, id="server-error"),
        pytest.param(client_error("Unavailable", 503), MAYBE_DONE, id="unavailable"),
        pytest.param(botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), MAYBE_DONE,
                     id="read-timeout"),
        pytest.param(ResponseParserError("garbage"), MAYBE_DONE, id="garbage-answer"),
        pytest.param(client_error("IncorrectState"), FINAL, id="volume-state"),
        pytest.param(client_error("UnauthorizedOperation", 403), FINAL, id="denied"),
    ],
)
def test_failure_kinds_decide_how_a_create_is_retried(exc: BaseException, kind: str) -> None:
    assert failure_kind(exc) == kind


def test_a_denied_call_names_the_permission() -> None:
    message = explain(client_error("UnauthorizedOperation", 403, "DeleteSnapshot"))
    assert message.startswith("not allowed to call ec2:DeleteSnapshot (UnauthorizedOperation)")


def test_backoff_is_full_jitter_that_grows_with_each_attempt_and_is_capped() -> None:
    first = [backoff_delay(1) for _ in range(400)]
    fourth = [backoff_delay(4) for _ in range(400)]
    late = [backoff_delay(30) for _ in range(400)]
    assert all(0 <= delay <= 1 for delay in first)
    assert all(0 <= delay <= 8 for delay in fourth)
    assert max(fourth) > 4, "the fourth attempt may wait longer than the first can"
    assert all(0 <= delay <= 20 for delay in late)
    assert max(late) > 15, "late attempts reach the cap"
    assert len({round(delay, 6) for delay in late}) > 300, "jittered, not a fixed delay"


def test_an_sts_failure_names_sts_not_ec2() -> None:
    message = explain(client_error("AccessDenied", 403, "AssumeRole"), service="sts")
    assert message.startswith("not allowed to call sts:AssumeRole (AccessDenied)")
