"""Every wait on AWS ends, and says what it is waiting for.

botocore bounds each attempt of a call (connect and read timeouts) and retries it, but says
nothing while a call hangs, and an endpoint that accepts connections and never answers costs
every attempt's timeout, call after call, service after service. One watcher, shared by every
client of the process, changes that:

- a call with no answer after NOTICE_SECONDS is announced once per attempt: the service and
  action, the endpoint, the attempt and the read timeout;
- a call whose endpoint did not answer (a connect or read timeout, a refused connection) is
  attempted at most `timeout_attempts` times, whatever `max_attempts` allows throttling;
- an endpoint that ran out of those attempts is dead for the rest of the run: a later call to
  it fails at once, and every other endpoint is given a single attempt, so that a dead
  network costs one call's timeouts, not one per service and per target.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError
from loguru import logger

#: How long a call waits for its answer before a line says so (half its read timeout when
#: that is shorter).
NOTICE_SECONDS = 15.0
#: How often the watcher looks at the calls in flight.
POLL_SECONDS = 0.25
UNANSWERED = (ConnectTimeoutError, ReadTimeoutError, EndpointConnectionError)


@dataclass
class _Call:
    what: str  # ec2:DescribeInstances
    endpoint: str
    limit: int  # attempts allowed when the endpoint does not answer
    read_timeout: float
    attempt: int = 0
    started: float = 0.0
    in_flight: bool = False
    announced: bool = False
    status: int = 0  # the HTTP status of the last answer, for an error that cannot be parsed


def endpoint_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Watcher:
    """The calls in flight of every client of this process (one per thread at a time: a
    botocore call runs on its caller's thread), and the endpoints found dead."""

    def __init__(self) -> None:
        self._calls: dict[int, _Call] = {}
        self._dead: dict[str, str] = {}  # endpoint -> why
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None

    def reset(self, stop: threading.Event | None = None) -> None:
        """A new run: no endpoint is known dead any more. Once `stop` is set (a signal), a
        call that got no answer is not attempted again."""
        with self._lock:
            self._dead.clear()
            self._calls.clear()
            self._stop = stop

    def attach(self, raw_client: Any, timeout_attempts: int, read_timeout: float) -> None:
        events = raw_client.meta.events
        service = raw_client.meta.service_model.service_id.hyphenize()

        def before_call(model: Any = None, **_: Any) -> None:
            endpoint = endpoint_of(raw_client.meta.endpoint_url)
            name = getattr(model, "name", "call")
            with self._lock:
                self._calls[threading.get_ident()] = _Call(
                    f"{service}:{name}", endpoint, timeout_attempts, read_timeout)

        events.register_first(f"before-call.{service}", before_call)
        events.register_first(f"before-send.{service}", self._before_send)
        events.register_first(f"needs-retry.{service}", self._needs_retry)
        events.register_first(f"before-parse.{service}", self._answered)
        events.register(f"after-call.{service}", self._done)
        events.register(f"after-call-error.{service}", self._done)

    def _before_send(self, request: Any = None, **_: Any) -> None:
        with self._lock:
            call = self._calls.get(threading.get_ident())
            if call is None:
                return
            why = self._dead.get(call.endpoint)
            if why is not None:
                error = ConnectTimeoutError(endpoint_url=request.url if request else call.endpoint)
                error.molibackup_note = f"not tried: {why}"  # type: ignore[attr-defined]
                raise error
            call.attempt += 1
            call.started = time.monotonic()
            call.in_flight, call.announced = True, False
            self._start()

    def _answered(self, response_dict: Any = None, **_: Any) -> None:
        with self._lock:
            call = self._calls.get(threading.get_ident())
            if call is not None and isinstance(response_dict, dict):
                call.status = int(response_dict.get("status_code") or 0)

    def _needs_retry(self, caught_exception: BaseException | None = None, **_: Any) -> None:
        with self._lock:
            call = self._calls.get(threading.get_ident())
            if call is None:
                return
            call.in_flight = False
            if not isinstance(caught_exception, UNANSWERED):
                return
            dead = call.endpoint in self._dead  # refused before sending: no retry either
            if self._stop is not None and self._stop.is_set():
                dead = True  # stopping: what did not answer is abandoned, as said
            limit = 1 if self._dead else call.limit
            waited = time.monotonic() - call.started
            if not dead and call.attempt < limit:
                logger.warning(f"{call.what} at {call.endpoint}: no answer ({waited:.0f} s, "
                               f"attempt {call.attempt} of {limit}); trying again")
                return
            if dead:
                raise caught_exception
            self._dead[call.endpoint] = (f"it did not answer {call.what} "
                                         f"{call.attempt} time(s)")
            note = (f"no answer within {call.read_timeout:.0f} s, {call.attempt} attempt(s)"
                    if isinstance(caught_exception, ReadTimeoutError)
                    else f"{call.attempt} attempt(s)")
        # The error's line says how long it waited (AwsError reads this note).
        caught_exception.molibackup_note = note  # type: ignore[union-attr]
        # botocore would retry up to max_attempts: the call ends here instead, with its error.
        raise caught_exception

    def _done(self, exception: BaseException | None = None, **_: Any) -> None:
        with self._lock:
            call = self._calls.pop(threading.get_ident(), None)
        if isinstance(exception, ResponseParserError) and call is not None and call.status:
            # What the page was: AwsError says so in one line, with the status.
            exception.molibackup_status = call.status  # type: ignore[attr-defined]

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._watch, name="aws-waits", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while True:
            time.sleep(POLL_SECONDS)
            now = time.monotonic()
            with self._lock:
                due = [call for call in self._calls.values() if call.in_flight
                       and not call.announced
                       and now - call.started >= min(NOTICE_SECONDS, call.read_timeout / 2)]
                for call in due:
                    call.announced = True
                lines = [(f"waiting for {call.what} at {call.endpoint}: no answer for "
                          f"{now - call.started:.0f} s (attempt {call.attempt} of "
                          f"{1 if self._dead else call.limit}; read timeout "
                          f"{call.read_timeout:.0f} s)") for call in due]
            for line in lines:
                logger.warning(line)


#: The one watcher of the process.
WATCHER = Watcher()
