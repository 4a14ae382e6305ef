"""A small IMDSv2 client: the id of the EC2 instance this runs on.

IMDSv2 is two HTTP requests: PUT a token request, then GET the document with that token.
The settings are botocore's, read from the environment: AWS_EC2_METADATA_SERVICE_ENDPOINT,
AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE (ipv4 or ipv6), AWS_EC2_METADATA_DISABLED,
AWS_METADATA_SERVICE_TIMEOUT (seconds, default 1) and AWS_METADATA_SERVICE_NUM_ATTEMPTS
(default 1).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from molibackup import __version__
from molibackup.errors import JobError

IPV4_ENDPOINT = "http://169.254.169.254/"
IPV6_ENDPOINT = "http://[fd00:ec2::254]/"
TOKEN_TTL_SECONDS = "21600"
HINT = ("is this running on EC2? In a pod, the instance's metadata hop limit must be 2 "
        "(HttpPutResponseHopLimit), or select instances by tag instead of 'local'")


@dataclass(frozen=True)
class MetadataSettings:
    endpoint: str
    timeout: float
    attempts: int
    disabled: bool

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> MetadataSettings:
        env = os.environ if env is None else env
        mode = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "ipv4").lower()
        endpoint = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or (
            IPV6_ENDPOINT if mode == "ipv6" else IPV4_ENDPOINT)
        return cls(endpoint=endpoint.rstrip("/") + "/",
                   timeout=_number(env.get("AWS_METADATA_SERVICE_TIMEOUT"), 1.0),
                   attempts=max(1, int(_number(env.get("AWS_METADATA_SERVICE_NUM_ATTEMPTS"),
                                               1))),
                   disabled=env.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true")


def _number(text: str | None, default: float) -> float:
    try:
        return float(text) if text else default
    except ValueError:
        return default


def _request(settings: MetadataSettings, method: str, path: str,
             headers: dict[str, str]) -> str:
    request = urllib.request.Request(
        settings.endpoint + path, method=method,
        headers={"User-Agent": f"molibackup/{__version__}", **headers})
    with urllib.request.urlopen(request, timeout=settings.timeout) as response:
        return str(response.read(4096).decode("utf-8", "replace")).strip()


def local_instance_id(settings: MetadataSettings | None = None) -> str:
    """The id of the instance this runs on; JobError with a hint when it cannot be known."""
    settings = settings or MetadataSettings.from_environment()
    if settings.disabled:
        raise JobError("instance_id is 'local' but AWS_EC2_METADATA_DISABLED=true forbids asking "
                       "the instance metadata service; unset it or select instances by tag")
    failure = "no answer"
    for _ in range(settings.attempts):
        try:
            token = _request(settings, "PUT", "latest/api/token",
                             {"X-aws-ec2-metadata-token-ttl-seconds": TOKEN_TTL_SECONDS})
            instance_id = _request(settings, "GET", "latest/meta-data/instance-id",
                                   {"X-aws-ec2-metadata-token": token})
        except urllib.error.HTTPError as exc:
            failure = f"HTTP {exc.code}"
            continue
        except (OSError, ValueError) as exc:
            failure = type(exc).__name__
            continue
        if not instance_id.startswith("i-"):
            raise JobError(f"instance_id is 'local' but the instance metadata service answered "
                           f"{instance_id[:40]!r}, not an instance id: {HINT}")
        return instance_id
    raise JobError(f"instance_id is 'local' but the instance metadata service at "
                   f"{settings.endpoint} did not answer ({failure}): {HINT}")
