"""Pre and post hooks on instances through SSM Run Command, around their snapshots.

The order per instance: pre (sent in batches of up to 50 instances, the most SendCommand
takes), its invocation waited for; then the snapshots (the point in time is set when the
create call returns); then post, at once and for that instance alone, so that the freeze
window (pre's end to post's start) is as short as EC2 allows. Post is sent whenever pre was
sent: after a failed snapshot, a failed pre, and on SIGTERM. `freeze` generates both, with a
guard on the instance that thaws by itself after `max_freeze` whatever happens to us.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from molibackup.aws.clients import backoff_delay
from molibackup.ebs.hook_options import Hook
from molibackup.errors import AwsError, FailureKind

if TYPE_CHECKING:
    from loguru import Logger

INSTANCES_PER_CALL = 50  # SendCommand's limit on InstanceIds
DONE = frozenset({"Success", "Failed", "TimedOut", "Cancelled", "Cancelling", "Undeliverable",
                  "Terminated", "DeliveryTimedOut", "ExecutionTimedOut", "InvalidPlatform",
                  "AccessDenied"})
POLL_SECONDS = 0.25
SEND_ATTEMPTS = 5
APPLICATION, CRASH = "application", "crash"
#: The command id of a SendCommand whose answer was lost: it may have run on the instances.
LOST = ""


@dataclass(frozen=True)
class Invocation:
    instance_id: str
    status: str  # Success, Failed, TimedOut ...; "NotSent" when it never left
    last_line: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == "Success"


def last_line(raw: Mapping[str, Any]) -> str:
    for key in ("StandardErrorContent", "StandardOutputContent", "StatusDetails"):
        lines = [line for line in str(raw.get(key) or "").splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()[:300]
    return ""


class HookRunner:
    def __init__(self, ssm: Any, log: Logger, timeout: int, comment: str) -> None:
        self.ssm = ssm
        self.log = log
        self.timeout = timeout
        self.comment = comment[:100]
        self.lock = threading.Lock()
        self.sent_at: dict[tuple[str, str], float] = {}  # (kind, instance) -> monotonic

    def send(self, hook: Hook, instance_ids: Sequence[str], kind: str
             ) -> dict[str, str | None]:
        """Instance -> the command id of the hook sent to it, in batches of 50; None where
        it could not be sent. Only throttling and unsent requests are retried: a duplicate
        command is not harmless (a second freeze)."""
        sent: dict[str, str | None] = {}
        for start in range(0, len(instance_ids), INSTANCES_PER_CALL):
            batch = list(instance_ids[start:start + INSTANCES_PER_CALL])
            command_id = self.send_batch(hook, batch, kind)
            now = time.monotonic()
            with self.lock:
                for instance in batch:
                    sent[instance] = command_id
                    if command_id is not None:
                        self.sent_at[(kind, instance)] = now
        return sent

    def send_batch(self, hook: Hook, batch: list[str], kind: str) -> str | None:
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                answer = self.ssm.send_command(
                    InstanceIds=batch, DocumentName=hook.document,
                    Parameters={k: list(v) for k, v in hook.parameters.items()},
                    TimeoutSeconds=max(30, self.timeout), Comment=f"{self.comment} {kind}")
                return str(answer["Command"]["CommandId"])
            except AwsError as exc:
                if exc.kind == FailureKind.MAYBE_DONE:
                    self.log.error(f"{kind} hook to {', '.join(batch)}: the answer was lost "
                                   f"({exc}); it may have run")
                    return LOST
                if exc.kind != FailureKind.NOT_SENT or attempt == SEND_ATTEMPTS:
                    self.log.error(f"{kind} hook not sent to {', '.join(batch)}: {exc}")
                    return None
                time.sleep(backoff_delay(attempt))
        return None

    def wait(self, command_id: str | None, instance_id: str, kind: str,
             stop: threading.Event | None = None) -> Invocation:
        """The invocation's end, within the hook's timeout (and a little for the agent)."""
        if command_id is None:
            return Invocation(instance_id, "NotSent", "the command could not be sent")
        if command_id == LOST:
            return Invocation(instance_id, "Unknown", "the answer to SendCommand was lost")
        deadline = time.monotonic() + self.timeout + 10
        while True:
            try:
                raw = self.ssm.get_command_invocation(CommandId=command_id,
                                                      InstanceId=instance_id)
                if raw.get("Status") in DONE:
                    return Invocation(instance_id, str(raw["Status"]), last_line(raw))
            except AwsError as exc:
                if exc.code != "InvocationDoesNotExist" and exc.kind == FailureKind.FINAL:
                    return Invocation(instance_id, "Unknown", str(exc))
            if stop is not None and stop.is_set():
                return Invocation(instance_id, "Interrupted", "the run was interrupted")
            if time.monotonic() >= deadline:
                return Invocation(instance_id, "TimedOut",
                                  f"no result within {self.timeout} s")
            time.sleep(POLL_SECONDS)
