"""Logging set-up: human text or JSON lines on stderr, every record tagged with its job.

Secrets are registered once and replaced by ``***`` in every record, whatever its level.
``diagnose`` stays off so that tracebacks never print local variables (which may hold keys).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import urllib.parse
from collections.abc import Iterable
from datetime import UTC
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Message, Record

LEVELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR"}
TEXT_FORMAT = (
    "{time:YYYY-MM-DDTHH:mm:ss.SSS!UTC}Z {level: <7} "
    "{extra[job_label]}{message}"
)
REDACTED = "***"

#: Shorter values are no credential AWS issues (secret keys are 40 characters, session tokens
#: hundreds): used as patterns, they would mask ordinary words ("y" in "dry run").
MIN_SECRET_LENGTH = 8
#: A secret is redacted as a whole token: not where letters or digits go on around it.
_BOUNDARY_BEFORE = r"(?<![A-Za-z0-9])"
_BOUNDARY_AFTER = r"(?![A-Za-z0-9])"

_secrets: set[str] = set()
_patterns: list[re.Pattern[str]] = []  # one compiled pattern of every registered secret
_lock = threading.Lock()


def secret_forms(value: str) -> set[str]:
    """Every form in which a secret can be printed: as is, stripped of the whitespace a file
    leaves around it, and escaped as repr(), JSON and URLs escape it."""
    forms = {value, value.strip()}
    for form in list(forms):
        forms.add(repr(form)[1:-1])
        forms.add(json.dumps(form)[1:-1])
        forms.add(urllib.parse.quote(form, safe=""))
        forms.add(urllib.parse.quote_plus(form, safe=""))
    return {form for form in forms if form}


def forget_secrets() -> None:
    """Start a run with no secrets registered (main() may run several times in a process)."""
    with _lock:
        _secrets.clear()
        _patterns.clear()


def register_secrets(values: Iterable[str | None]) -> None:
    """Values that must never be written out, such as access key secrets and session tokens;
    those too short to be a credential are not patterns (see MIN_SECRET_LENGTH)."""
    with _lock:
        for value in values:
            if value and len(value.strip()) >= MIN_SECRET_LENGTH:
                _secrets.update(form for form in secret_forms(value)
                                if len(form) >= MIN_SECRET_LENGTH)
        # Longest first, so that no shorter form leaves part of a longer one in the text.
        ordered = sorted(_secrets, key=len, reverse=True)
        _patterns[:] = [re.compile("|".join(map(_token, ordered)))] if ordered else []


def _token(secret: str) -> str:
    """A pattern matching `secret` where it stands as a whole: an end that is a letter or
    digit must not go on into more letters or digits."""
    return ((_BOUNDARY_BEFORE if secret[0].isalnum() else "") + re.escape(secret)
            + (_BOUNDARY_AFTER if secret[-1].isalnum() else ""))


# Credentials the SDK obtains by itself (IRSA, Pod Identity, instance profile) may show in its
# debug records before anyone could register them: redact them by their shape too.
_CREDENTIAL_FIELDS = re.compile(
    r"(?i)((?:x-amz-security-token|secretaccesskey|sessiontoken|secret_key|token|signature)"
    r"""['"]?\s*[:=]\s*b?['"]?)([A-Za-z0-9/+=%_.-]{16,})""")


def redact(text: str) -> str:
    for pattern in _patterns[:1]:
        text = pattern.sub(REDACTED, text)
    return _CREDENTIAL_FIELDS.sub(rf"\1{REDACTED}", text)


# Line breaks and other control characters in a message (from a user's key, an AWS answer)
# would split one record into several lines or hide text: they are written escaped.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _patch(record: Record) -> None:
    record["message"] = escape_controls(redact(record["message"]))
    for key, value in record["extra"].items():
        if isinstance(value, str):
            record["extra"][key] = redact(value)
    job, target = record["extra"].get("job"), record["extra"].get("target")
    label = " ".join(str(part) for part in (job, target) if part)
    record["extra"]["job_label"] = f"[{label}] " if label else ""


def _json_sink(stream: TextIO) -> Any:
    def write(message: Message) -> None:
        record = message.record
        line: dict[str, Any] = {
            "time": record["time"].astimezone(UTC).isoformat(timespec="milliseconds"),
            "level": record["level"].name.lower(),
            "message": record["message"],
        }
        line.update(
            {k: v for k, v in record["extra"].items() if k != "job_label" and v is not None}
        )
        if record["exception"] is not None:
            line["exception"] = redact("".join(message.splitlines(keepends=True)[1:]))
        stream.write(json.dumps(line, default=str) + "\n")
        stream.flush()

    return write


# The AWS SDK's own records that help at debug level: requests, retries, credentials.
SDK_LOGGERS = ("botocore.credentials", "botocore.endpoint", "botocore.retries",
               "botocore.retryhandler", "urllib3.connectionpool")


class _SdkHandler(logging.Handler):
    """Forwards the SDK's standard-library records to loguru (and so through redaction)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        logger.opt(depth=0).log("DEBUG", f"{record.name}: {message}")


_sdk_handler = _SdkHandler()


def _route_sdk_logs(enabled: bool) -> None:
    for name in SDK_LOGGERS:
        sdk_logger = logging.getLogger(name)
        if enabled:
            sdk_logger.setLevel(logging.DEBUG)
            if _sdk_handler not in sdk_logger.handlers:
                sdk_logger.addHandler(_sdk_handler)
            sdk_logger.propagate = False
        else:
            sdk_logger.removeHandler(_sdk_handler)
            sdk_logger.propagate = True


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """(Re)configure the single stderr handler."""
    stream = sys.stderr if stream is None else stream
    logger.remove()
    logger.configure(patcher=_patch, extra={"job": None})
    _route_sdk_logs(level == "debug")
    if fmt == "json":
        logger.add(_json_sink(stream), level=LEVELS[level], format="{message}",
                   backtrace=False, diagnose=False, colorize=False)
    else:
        logger.add(stream, level=LEVELS[level], format=TEXT_FORMAT, backtrace=False,
                   diagnose=False, colorize=False)
