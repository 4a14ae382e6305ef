"""An HTTP proxy in front of the EC2 emulator: pages, counts, delays and breaks EC2 calls.

The emulator answers Describe* calls whole and ignores MaxResults/NextToken; real EC2 pages
them. This proxy pages the emulator's answers so that pagination is really exercised, counts
calls per action, and can add latency, EC2-style token-bucket throttling and faults.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import re
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
ET.register_namespace("", NS)
PAGED_SETS = {
    "DescribeSnapshots": "snapshotSet",
    "DescribeVolumes": "volumeSet",
    "DescribeInstances": "reservationSet",
}
# The region a request is signed for: Credential=<key id>/<date>/<region>/<service>/...
SIGNING_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/([a-z0-9-]+)/")
MUTATING = frozenset({"CreateSnapshot", "DeleteSnapshot", "LockSnapshot", "CreateTags"})


def json_params(body: bytes) -> dict[str, str]:
    """The top-level parameters of a JSON-protocol request, as text."""
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        return {}
    return {key: value if isinstance(value, str) else json.dumps(value)
            for key, value in document.items()} if isinstance(document, dict) else {}


def error_body(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors>"
            f"<RequestID>{uuid.uuid4()}</RequestID></Response>").encode()


@dataclass
class Fault:
    """What to do with one call instead of (or after) forwarding it."""

    status: int
    code: str
    message: str = "injected by the test proxy"
    forward_first: bool = False  # the emulator acts, then the answer is lost
    body: bytes | None = None  # answer this instead of an error document
    rewrite: Callable[[bytes], bytes] | None = None  # forward, then answer this of the answer


FaultRule = Callable[[str, dict[str, str]], Fault | None]


class TokenBucket:
    """EC2's request-rate model: a burst capacity refilled at a fixed rate per second."""

    def __init__(self, capacity: float, refill_per_second: float) -> None:
        self.capacity = capacity
        self.refill = refill_per_second
        self.tokens = capacity
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.refill)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


@dataclass
class ProxyState:
    upstream: str
    upstreams: dict[str, str] = field(default_factory=dict)  # region -> its own upstream
    max_page: int | None = None
    latency: float = 0.0
    mutating_bucket: TokenBucket | None = None
    describe_bucket: TokenBucket | None = None
    fault_rules: list[FaultRule] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    first_seen: dict[str, float] = field(default_factory=dict)  # action -> monotonic time
    in_flight: int = 0
    peak_in_flight: int = 0  # the most calls this proxy held at one moment
    lock: threading.Lock = field(default_factory=threading.Lock)
    _pages: dict[str, list[bytes]] = field(default_factory=dict)

    def reset_counts(self) -> None:
        with self.lock:
            self.calls.clear()
            self.answered.clear()
            self.throttled.clear()
            self.requests.clear()
            self.first_seen.clear()
            self.peak_in_flight = self.in_flight


class _Handler(BaseHTTPRequestHandler):
    state: ProxyState
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle's algorithm the body would wait for
    # the client's delayed acknowledgement (40 ms on Linux) on every kept-alive call.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        with self.state.lock:
            self.state.in_flight += 1
            self.state.peak_in_flight = max(self.state.peak_in_flight, self.state.in_flight)
        try:
            self.handle_call()
        finally:
            with self.state.lock:
                self.state.in_flight -= 1

    def handle_call(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        target = self.headers.get("X-Amz-Target", "")
        # EC2 and STS send a form with its Action; JSON services (SSM) name it in a header.
        params = (json_params(body) if target
                  else dict(urllib.parse.parse_qsl(body.decode())))
        action = params.get("Action") or target.rpartition(".")[2] or "?"
        state = self.state
        with state.lock:
            state.calls[action] += 1
            state.requests.append((action, dict(params)))
            state.first_seen.setdefault(action, time.monotonic())
        if state.latency:
            time.sleep(state.latency)
        bucket = state.mutating_bucket if action in MUTATING else state.describe_bucket
        if bucket is not None and not bucket.take():
            with state.lock:
                state.throttled[action] += 1
            self.reply(503, error_body("RequestLimitExceeded", "Request limit exceeded."))
            return
        fault = next((f for rule in state.fault_rules if (f := rule(action, params))), None)
        if fault and fault.rewrite:
            status, answer = self.forward(body)
            self.reply(status, fault.rewrite(answer))
            return
        if fault and not fault.forward_first:
            self.reply(fault.status, fault.body or self.fault_body(fault, target))
            return
        if action in PAGED_SETS:
            status, answer = self.paged(action, params)
        else:
            status, answer = self.forward(body)
        if fault:
            self.reply(fault.status, fault.body or self.fault_body(fault, target))
            return
        if status == 200:
            with state.lock:
                state.answered[action] += 1
        self.reply(status, answer)

    @staticmethod
    def fault_body(fault: Fault, target: str) -> bytes:
        """The error document of the request's protocol: EC2's XML, or a JSON service's."""
        if target:
            return json.dumps({"__type": fault.code, "message": fault.message}).encode()
        return error_body(fault.code, fault.message)

    def forward(self, body: bytes) -> tuple[int, bytes]:
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in {"host", "content-length", "connection"}}
        upstream = self.state.upstream
        if self.state.upstreams:
            scope = SIGNING_SCOPE.search(self.headers.get("Authorization", ""))
            upstream = self.state.upstreams.get(scope.group(1) if scope else "", upstream)
        for attempt in range(2):
            connection, reused = self.upstream_connection(upstream)
            try:
                connection.request("POST", "/", body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the emulator closed while idle: the request did
                # not reach it, so sending it again on a new connection is safe.
                self.drop_upstream(upstream)
                if reused and attempt == 0:
                    continue
                raise
            if response.will_close:
                self.drop_upstream(upstream)
            return response.status, answer
        raise AssertionError("unreachable")

    def upstream_connection(self, upstream: str) -> tuple[http.client.HTTPConnection, bool]:
        """This client connection's own kept-alive connection to `upstream`: a new one per
        call would cost the emulator a thread and a handshake, and the proxy its CPU."""
        connections = self.__dict__.setdefault("_upstreams", {})
        if upstream in connections:
            return connections[upstream], True
        parsed = urllib.parse.urlsplit(upstream)
        connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port,
                                                timeout=60)
        connections[upstream] = connection
        return connection, False

    def drop_upstream(self, upstream: str) -> None:
        connection = self.__dict__.get("_upstreams", {}).pop(upstream, None)
        if connection is not None:
            connection.close()

    def finish(self) -> None:
        super().finish()
        for connection in self.__dict__.get("_upstreams", {}).values():
            connection.close()

    def paged(self, action: str, params: dict[str, str]) -> tuple[int, bytes]:
        """Forward without paging parameters, then answer one page of the whole result."""
        page_size = int(params.pop("MaxResults", 0)) or None
        token = params.pop("NextToken", None)
        if self.state.max_page:
            page_size = min(page_size or self.state.max_page, self.state.max_page)
        if token:
            key, offset = base64.urlsafe_b64decode(token.encode()).decode().split(":")
            items = self.state._pages.get(key)
            if items is None:
                return 400, error_body("InvalidNextToken", "The token is not valid.")
            start = int(offset)
        else:
            status, answer = self.forward(urllib.parse.urlencode(params).encode())
            # No more items at any depth than a page holds: no need to parse it to know.
            if status != 200 or page_size is None or answer.count(b"<item>") <= page_size:
                return status, answer
            root = ET.fromstring(answer)
            wanted = PAGED_SETS[action]
            item_set = next((c for c in root if c.tag.rpartition("}")[2] == wanted), None)
            members = list(item_set) if item_set is not None else []
            if len(members) <= page_size:  # one page holds it all: the answer as it is
                return status, answer
            items = [ET.tostring(item) for item in members]
            key = uuid.uuid4().hex
            with self.state.lock:
                self.state._pages[key] = items
            start = 0
        page = items[start:start + (page_size or len(items))]
        next_token = None
        if start + len(page) < len(items):
            next_token = base64.urlsafe_b64encode(f"{key}:{start + len(page)}".encode()).decode()
        root = ET.Element(f"{{{NS}}}{action}Response")
        ET.SubElement(root, f"{{{NS}}}requestId").text = str(uuid.uuid4())
        item_set = ET.SubElement(root, f"{{{NS}}}{PAGED_SETS[action]}")
        for raw in page:
            item_set.append(ET.fromstring(raw))
        if next_token:
            ET.SubElement(root, f"{{{NS}}}nextToken").text = next_token
        return 200, ET.tostring(root, xml_declaration=True, encoding="UTF-8")

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class EC2Proxy:
    def __init__(self, upstream: str, **options: Any) -> None:
        self.state = ProxyState(upstream=upstream, **options)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> EC2Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def calls(self) -> Counter[str]:
        return self.state.calls


def random_faults(rate: float, seed: int, actions: set[str] | None = None,
                  faults: tuple[Fault, ...] | None = None) -> FaultRule:
    """A rule failing about `rate` of the calls (of `actions`, default all), reproducibly."""
    rng = random.Random(seed)
    lock = threading.Lock()
    choices = faults or (Fault(503, "RequestLimitExceeded", "Request limit exceeded."),
                         Fault(500, "InternalError", "An internal error has occurred."),
                         Fault(503, "Unavailable", "The service is unavailable."))

    def rule(action: str, params: dict[str, str]) -> Fault | None:
        if actions is not None and action not in actions:
            return None
        with lock:
            if rng.random() < rate:
                return rng.choice(choices)
        return None

    return rule


def empty_answer(action: str) -> bytes:
    """A successful Describe* answer listing nothing, as a not-yet-consistent listing does."""
    return (f'<?xml version="1.0" encoding="UTF-8"?><{action}Response xmlns="{NS}">'
            f"<requestId>{uuid.uuid4()}</requestId><{PAGED_SETS[action]}/>"
            f"</{action}Response>").encode()


LOST_ANSWER = Fault(500, "InternalError", "An internal error has occurred.", forward_first=True)


def held(proxy: EC2Proxy, action: str | None = None) -> tuple[threading.Event, threading.Event]:
    """(the call has arrived, let it go on): the proxy holds the first call of `action` (of
    any action when None) until released, so that a test can signal the run mid-call."""
    arrived, release = threading.Event(), threading.Event()

    def hold(seen: str, _params: dict[str, str]) -> Fault | None:
        if (action is None or seen == action) and not arrived.is_set():
            arrived.set()
            release.wait(timeout=60)
        return None

    proxy.state.fault_rules.append(hold)
    return arrived, release
