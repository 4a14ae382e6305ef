"""The EC2 emulator (moto in server mode) and direct access to its state for test set-up."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.backends import get_backend
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.tags import EC2_PREFIX_TO_RESOURCE, get_prefix
from moto.server import ThreadedMotoServer

ACCOUNT = "123456789012"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Emulator:
    """A moto server on loopback, reached over real HTTP by real boto3 clients."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> Emulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    # Set-up the EC2 API cannot express: the emulator always makes snapshots "now".

    @staticmethod
    def backend(region: str) -> Any:
        return get_backend("ec2")[ACCOUNT][region]

    def set_snapshot_age(self, region: str, snapshot_id: str, days: float,
                         now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        snapshot = self.backend(region).snapshots[snapshot_id]
        snapshot.start_time = (now - timedelta(days=days)).replace(tzinfo=None)

    def set_snapshot_state(self, region: str, snapshot_id: str, state: str) -> None:
        self.backend(region).snapshots[snapshot_id].status = state


def index_tag_lookups() -> None:
    """Make the emulator look up a resource's tags by its id instead of scanning every tag.

    moto answers `get_tags` by scanning all tags of the account with regular expressions, so a
    listing of n snapshots costs O(n^2): hours at 100,000 snapshots. The data and the answers
    stay the emulator's own; only the lookup is indexed. Used by the benchmark.
    """
    def get_tags(self: Any) -> list[dict[str, str]]:
        resource_id = getattr(self, "id", None)
        if not resource_id:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        tags = self.ec2_backend.tags.get(resource_id, {})
        return [{"resource_id": resource_id, "key": key, "value": value, "resource_type": kind}
                for key, value in tags.items()]

    TaggedEC2Resource.get_tags = get_tags  # type: ignore[method-assign]
