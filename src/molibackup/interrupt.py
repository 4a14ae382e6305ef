"""SIGTERM and SIGINT: stop starting work, let calls in flight end, report, exit 128+signal.

Kubernetes sends SIGTERM when a Job reaches `activeDeadlineSeconds` or its node is drained,
then SIGKILL after the pod's grace period. On the first signal the run starts nothing new
(no new snapshot, no rotation, no further job), lets the AWS calls in flight finish for at
most `grace_seconds`, prints what was done, and exits with the shell's conventional status
(143 for SIGTERM, 130 for SIGINT). A second signal, or calls still running after the grace
time, end the process at once, after a last summary: through `exit_now`, which the CLI
gives (the one exit that is not decided by the CLI's return value).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from loguru import logger

GRACE_SECONDS = 20.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interruption:
    """The stop flag a run checks before each piece of work, set by a signal."""

    def __init__(self, exit_now: Callable[[int], None],
                 grace_seconds: float = GRACE_SECONDS) -> None:
        self.stop = threading.Event()
        #: Ends the process at once with a status: the CLI's.
        self.exit_now = exit_now
        self.signal_name: str | None = None
        self.signal_number: int | None = None
        self.grace_seconds = grace_seconds
        self.last_words: Callable[[], None] = lambda: None

    @property
    def requested(self) -> bool:
        return self.stop.is_set()

    def handle(self, signum: int, _frame: FrameType | None = None) -> None:
        name = signal.Signals(signum).name
        if self.stop.is_set():
            logger.error(f"received {name} again: exiting now, calls in flight abandoned")
            self._exit_now(128 + signum)
        self.signal_name = name
        self.signal_number = signum
        self.stop.set()
        logger.warning(f"received {name}: starting nothing new; waiting at most "
                       f"{self.grace_seconds:.0f} s for the AWS calls in flight")
        timer = threading.Timer(self.grace_seconds, self._grace_over)
        timer.daemon = True
        timer.start()

    def _grace_over(self) -> None:
        logger.error(f"AWS calls still in flight {self.grace_seconds:.0f} s after "
                     f"{self.signal_name}: exiting now")
        self._exit_now(128 + (self.signal_number or 0))

    def _exit_now(self, status: int) -> None:
        try:
            self.last_words()
        finally:
            logger.complete()
            self.exit_now(status)

    @contextmanager
    def installed(self) -> Iterator[Interruption]:
        """Handle the signals while the run lasts (main thread only), then restore."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
        for signum in SIGNALS:
            signal.signal(signum, self.handle)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
