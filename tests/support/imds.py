"""A minimal IMDSv2 server: a token first (PUT), then instance-id with that token."""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class MetadataServer:
    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.token = uuid.uuid4().hex
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:
                server.requests.append(("PUT", self.path))
                if self.path == "/latest/api/token" and self.headers.get(
                        "X-aws-ec2-metadata-token-ttl-seconds"):
                    self.answer(200, server.token)
                else:
                    self.answer(400, "")

            def do_GET(self) -> None:
                server.requests.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") != server.token:
                    self.answer(401, "")
                elif self.path == "/latest/meta-data/instance-id":
                    self.answer(200, server.instance_id)
                else:
                    self.answer(404, "")

            def answer(self, status: int, text: str) -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> MetadataServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
