"""The EC2 emulator (moto in server mode) and direct access to its state for test set-up."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.backends import get_backend
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
