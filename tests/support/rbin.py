"""A stand-in for the Recycle Bin API (rbin), which the emulator does not have: it answers
ListRules and GetRule from the rules a test gives, over real HTTP, so the real botocore client
(and its request checks) talks to it. Say so in the tests that use it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RecycleBin:
    def __init__(self) -> None:
        self.rules: list[dict[str, Any]] = []
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(f"GET {self.path}")
                identifier = self.path.rsplit("/", 1)[-1]
                rule = next((r for r in server.rules if r["Identifier"] == identifier), None)
                if rule is None:
                    self.answer(404, {"Message": "no such rule", "Reason": "RULE_NOT_FOUND"})
                else:
                    self.answer(200, rule)

            def do_POST(self) -> None:
                server.requests.append(f"POST {self.path}")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                rules = [{"Identifier": r["Identifier"], "Description": r.get("Description", ""),
                          "RetentionPeriod": r["RetentionPeriod"], "LockState": "unlocked"}
                         for r in server.rules if r["ResourceType"] == body.get("ResourceType")]
                self.answer(200, {"Rules": rules})

            def answer(self, status: int, document: dict[str, Any]) -> None:
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def rule(self, identifier: str, days: int, tags: dict[str, str] | None = None) -> None:
        self.rules.append({
            "Identifier": identifier, "ResourceType": "EBS_SNAPSHOT",
            "Description": f"keep deleted snapshots {days} days",
            "RetentionPeriod": {"RetentionPeriodValue": days, "RetentionPeriodUnit": "DAYS"},
            "ResourceTags": [{"ResourceTagKey": k, "ResourceTagValue": v}
                             for k, v in (tags or {}).items()],
            "Status": "available", "LockState": "unlocked"})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
