"""A real Prometheus Pushgateway (Debian's prometheus-pushgateway) on a loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.emulator import free_port

BINARY = "prometheus-pushgateway"


def require(binary: str, package: str) -> str:
    """The path of a tool the suite needs; in CI a missing one fails instead of skipping."""
    found = shutil.which(binary)
    if found:
        return found
    message = f"{binary} is not installed (apt-get install {package})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Pushgateway:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return str(response.read().decode())

    def wipe(self) -> None:
        request = urllib.request.Request(self.url + "/api/v1/admin/wipe", method="PUT")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every pushed sample of one metric: sorted labels -> value."""
        found = {}
        for family in text_string_to_metric_families(self.get("/metrics")):
            for sample in family.samples:
                if sample.name == name:
                    found[tuple(sorted(sample.labels.items()))] = sample.value
        return found

    def value(self, name: str, **labels: str) -> float | None:
        for key, value in self.samples(name).items():
            if all((k, v) in key for k, v in labels.items()):
                return value
        return None


def wait_ready(url: str, process: subprocess.Popen[bytes], what: str, seconds: float) -> None:
    """Until `url` answers (a server's /-/ready), at most `seconds`; RuntimeError naming
    `what` when it does not, or when its process has ended."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.1)


@contextmanager
def running_pushgateway() -> Iterator[Pushgateway]:
    binary = require(BINARY, "prometheus-pushgateway")
    port = free_port()
    with tempfile.TemporaryDirectory() as state:
        process = subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{port}", "--web.enable-admin-api",
             f"--persistence.file={state}/pushgateway.data"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        gateway = Pushgateway(port)
        try:
            wait_ready(f"{gateway.url}/-/ready", process, "the Pushgateway", 20)
            yield gateway
        finally:
            process.terminate()
            process.wait(timeout=10)
