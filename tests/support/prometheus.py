"""A real Prometheus server (Debian's prometheus package) scraping a Pushgateway, on a
loopback port, and its HTTP query API."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.emulator import free_port
from tests.support.pushgateway import Pushgateway, require, wait_ready


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> dict[str, Any]:
        query = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=10) as answer:
            document: dict[str, Any] = json.loads(answer.read())
        return document

    def wait_for(self, expr: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not self.query(expr)["data"]["result"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus never had {expr}")
            time.sleep(0.5)


@contextmanager
def running_prometheus(gateway: Pushgateway) -> Iterator[Prometheus]:
    binary = require("prometheus", "prometheus")
    port = free_port()
    with tempfile.TemporaryDirectory() as state:
        config = Path(state) / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "pushgateway", "honor_labels": True,
                                "static_configs": [{"targets": [
                                    gateway.url.removeprefix("http://")]}]}]}))
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={state}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = Prometheus(port)
        try:
            wait_ready(f"{server.url}/-/ready", process, "Prometheus", 30)
            yield server
        finally:
            process.terminate()
            process.wait(timeout=20)
