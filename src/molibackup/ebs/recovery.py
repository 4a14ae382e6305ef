"""Sending a call that creates something exactly once, whatever the network does.

CreateSnapshot has no idempotency token, and the emulator ignores CreateVolume's: the
retries of such calls are ours. Throttled or unsent requests are sent again after a backoff;
when AWS may have acted but the answer was lost (a 5xx, a timeout, a dropped connection),
what the call made is looked for first (by the tags it was made with), and only created
again if it is not there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from molibackup.aws.clients import backoff_delay
from molibackup.errors import AwsError, FailureKind

if TYPE_CHECKING:
    from loguru import Logger

T = TypeVar("T")


@dataclass(frozen=True)
class Wait:
    """An error AWS asks us to wait out before sending again (a per-resource rate)."""

    seconds: float
    why: str


@dataclass(frozen=True)
class GiveUp:
    """An error that ends the attempts, with a hint for the log."""

    hint: str


Special = Callable[[AwsError], Wait | GiveUp | None]


def no_special(_error: AwsError) -> None:
    return None


@dataclass(frozen=True)
class SendOnce:
    attempts: int
    stop: threading.Event
    log: Logger

    def __call__(self, send: Callable[[], T], recover: Callable[[str], T | None], what: str,
                 special: Special = no_special) -> tuple[T | None, str | None]:
        """(what was made, None) or (None, why it failed)."""
        last_error = "no attempt made"
        answer_lost = False
        for attempt in range(1, self.attempts + 1):
            if attempt > 1 and self.stop.is_set():
                return None, f"{last_error} (not retried: the run was interrupted)"
            # Listings are eventually consistent: what a lost call made may show only after
            # the backoff, so look again before sending another create.
            if answer_lost and (found := recover(last_error)):
                return found, None
            try:
                return send(), None
            except AwsError as exc:
                last_error = str(exc)
                verdict = special(exc)
                if isinstance(verdict, GiveUp):
                    return None, f"{last_error} ({verdict.hint})"
                if isinstance(verdict, Wait):
                    self.log.warning(f"{what}: {verdict.why}; waiting")
                    time.sleep(verdict.seconds)
                    continue
                if exc.kind == FailureKind.FINAL:
                    return None, last_error
                answer_lost = exc.kind == FailureKind.MAYBE_DONE
                if answer_lost and (found := recover(last_error)):
                    return found, None
                if attempt < self.attempts:
                    time.sleep(backoff_delay(attempt))
        return None, f"{last_error} (after {self.attempts} attempts)"
