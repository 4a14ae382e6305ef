"""A job's targets in processes of their own, forked from the runner once it has started.

Threads let targets wait on AWS together, not compute together: botocore builds every
client's class and signs and parses every call under one interpreter lock, so four regions
took the CPU time of four targets one after another. Each target runs instead in a child
forked after the module has loaded what every target needs (EC2's service model alone is a
third of a second of CPU): the children start warm, and their CPU spreads over the cores.

What crosses back to the runner: each log record as it is written (the runner's own handler
writes it, so every line still leaves through one place, redacted and in one format), and
the target's result. A signal the runner gets is passed on to its running children, which
then start nothing new, as a thread would; a child that ends without a result fails its
target alone; a child dies with the runner (PR_SET_PDEATHSIG), never outliving it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from loguru import logger

from molibackup import log

if TYPE_CHECKING:
    from loguru import Message

Item = TypeVar("Item")
Result = TypeVar("Result")

#: How often the runner looks at its stop flag while its children work.
POLL_SECONDS = 0.1
_PR_SET_PDEATHSIG = 1
_PLAIN = (str, int, float, bool, type(None))


def available() -> bool:
    """Forking is Linux's (where the image runs); elsewhere targets stay threads."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def run_each(items: Sequence[Item], work: Callable[[Item], Result], *, concurrency: int,
             stop: threading.Event, failed: Callable[[Item, str], Result],
             not_started: Callable[[Item], Result]) -> Iterator[Result]:
    """`work(item)` for each item, each in a forked child, at most `concurrency` at a time.

    Yields the results in the items' order, each as soon as it and those before it are in.
    Once `stop` is set, no child is started (`not_started` stands for those items) and the
    running ones are sent SIGTERM. A child that ends without a result: `failed(item, why)`.
    """
    forking = multiprocessing.get_context("fork")
    waiting = deque(enumerate(items))
    running: dict[Connection, tuple[int, BaseProcess]] = {}
    results: dict[int, Result] = {}
    passed_on, following = False, 0
    # The children's collections then leave the runner's objects (the service models) alone,
    # so their pages stay shared instead of being copied into every child.
    gc.freeze()
    try:
        while waiting or running:
            while waiting and len(running) < concurrency and not stop.is_set():
                index, item = waiting.popleft()
                reader, writer = forking.Pipe(duplex=False)
                process = forking.Process(target=_child, name=f"target-{index}",
                                          args=(writer, work, item, stop, os.getpid()))
                process.start()
                writer.close()
                running[reader] = (index, process)
            if stop.is_set():
                while waiting:
                    index, item = waiting.popleft()
                    results[index] = not_started(item)
                if not passed_on:
                    passed_on = True
                    for _, child in running.values():
                        _signal(child, signal.SIGTERM)
            for ready in wait(list(running), timeout=POLL_SECONDS):
                reader = cast(Connection, ready)
                index, finishing = running[reader]
                answer = _receive(reader)
                if answer is None:
                    continue
                del running[reader]
                reader.close()
                finishing.join()
                kind, payload = answer
                if kind == "result":
                    results[index] = payload
                else:
                    why = payload or f"its process ended without a result (exit status " \
                                     f"{finishing.exitcode})"
                    results[index] = failed(items[index], why)
            while following in results:
                yield results.pop(following)
                following += 1
    finally:
        for reader, (_, left) in running.items():
            _signal(left, signal.SIGKILL)
            left.join()
            reader.close()


def _receive(reader: Connection) -> tuple[str, Any] | None:
    """Write the child's log lines; its result, ("lost", why) or ("lost", None) at its end;
    None while it is still running."""
    try:
        while True:
            kind, payload = reader.recv()
            if kind != "log":
                return kind, payload
            level, message, extra = payload
            logger.bind(**extra).log(level, message)
            if not reader.poll():
                return None
    except (EOFError, OSError):
        return "lost", None


def _signal(process: BaseProcess, signum: int) -> None:
    if process.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


# --- in the child ---------------------------------------------------------------------------


def _child(writer: Connection, work: Callable[[Any], Any], item: Any, stop: threading.Event,
           parent: int) -> None:
    _die_with(parent)
    lock = threading.Lock()

    def stop_on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()  # the runner has said why; a second SIGTERM it sends ends us at once

    # A terminal's Ctrl-C reaches the whole process group: the runner passes it on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop_on_term)
    logger.remove()
    logger.add(_forwarder(writer, lock), level=log.configured_level(), format="{message}",
               backtrace=False, diagnose=False, colorize=False)
    try:
        answer: tuple[str, Any] = ("result", work(item))
    except Exception as exc:  # work reports its own failures; this is a last resort
        answer = ("lost", f"unexpected error in its process: {type(exc).__name__}: "
                          f"{log.redact(str(exc))[:200]}")
    with lock:
        try:
            writer.send(answer)
        except Exception as exc:  # pickling failed before anything was written
            writer.send(("lost", f"its result could not be sent back: {type(exc).__name__}"))
        writer.close()


def _forwarder(writer: Connection, lock: threading.Lock) -> Callable[[Message], None]:
    def forward(message: Message) -> None:
        record = message.record
        text = record["message"]  # already redacted and escaped here
        if record["exception"] is not None:
            text += "\n" + log.redact("".join(message.splitlines(keepends=True)[1:]))
        extra = {key: value if isinstance(value, _PLAIN) else str(value)
                 for key, value in record["extra"].items() if key != "job_label"}
        with lock:
            writer.send(("log", (record["level"].name, text, extra)))

    return forward


def _die_with(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the runner ended before the request took effect
        os._exit(1)
