"""A job's targets in processes forked from the runner once it has started.

Threads let targets wait on AWS together, not compute together: botocore builds every
client's class and signs and parses every call under one interpreter lock, so four regions
took the CPU time of four targets one after another. The targets run instead in worker
processes forked after the module has loaded what every target needs (EC2's service model
alone is a third of a second of CPU): the workers start warm, and their CPU spreads over the
cores. There are no more workers than the CPUs the runner may use (its affinity, within its
cgroup's quota: a pod's CPU limit), each running its share of the targets in threads: a
process more than the cores would add its memory (about 25 MB) and its start (copied pages,
cold caches) without any CPU to run on.

What crosses back to the runner: each log record as it is written (the runner's own handler
writes it, so every line still leaves through one place, redacted and in one format), and
each target's result. A signal the runner gets is passed on to its workers, which then start
nothing new, as a thread would; a worker that ends without answering fails the targets it
was running, and only those; a worker dies with the runner (PR_SET_PDEATHSIG), never
outliving it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
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


def usable_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may run on: its affinity, within its cgroup's CPU quota (a
    container's CPU limit, v2 `cpu.max` or v1 `cpu.cfs_quota_us`), rounded up; at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cpu_quota(cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def _cpu_quota(cgroup: Path) -> float | None:
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        share = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None  # "max", or -1 in v1: no quota
    return share if share > 0 else None


@dataclass
class _Worker:
    process: BaseProcess
    orders: Connection  # the runner's to the worker: ("run", index, item), then ("end", ..)
    answers: Connection  # the worker's: log records, then each item's answer
    running: set[int] = field(default_factory=set)
    told_to_end: bool = False


def run_each(items: Sequence[Item], work: Callable[[Item], Result], *, concurrency: int,
             processes: int, stop: threading.Event, failed: Callable[[Item, str], Result],
             not_started: Callable[[Item], Result]) -> Iterator[Result]:
    """`work(item)` for each item, at most `concurrency` at a time, in at most `processes`
    forked workers, each running its share of them in threads.

    Yields the results in the items' order, each as soon as it and those before it are in.
    Once `stop` is set, no item is started (`not_started` stands for those) and the workers
    are sent SIGTERM. An item whose worker ends without its answer: `failed(item, why)`.
    """
    pool = _Pool(items, work, concurrency, processes, stop)
    following = 0
    # The workers' collections then leave the runner's objects (the service models) alone,
    # so their pages stay shared instead of being copied into every worker.
    gc.freeze()
    try:
        while pool.waiting or pool.workers:
            if stop.is_set():
                pool.stop(not_started)
            else:
                pool.hand_out()
            if not pool.waiting:
                pool.end_when_done()
            pool.collect(failed)
            while following in pool.results:
                yield pool.results.pop(following)
                following += 1
    finally:
        pool.kill()


class _Pool:
    """The runner's side: which worker runs which item, and the answers in so far."""

    def __init__(self, items: Sequence[Any], work: Callable[[Any], Any], concurrency: int,
                 processes: int, stop: threading.Event) -> None:
        self.items, self.work, self.concurrency, self.stop_flag = items, work, concurrency, stop
        self.processes = max(1, min(processes, concurrency, len(items)))
        self.slots = -(-concurrency // self.processes)  # threads per worker
        self.waiting = deque(enumerate(items))
        self.workers: dict[Connection, _Worker] = {}  # by their answers' end
        self.results: dict[int, Any] = {}
        self.passed_on = False

    def start(self) -> _Worker:
        forking = multiprocessing.get_context("fork")
        orders, to_worker = forking.Pipe(duplex=False)
        answers, from_worker = forking.Pipe(duplex=False)
        process = forking.Process(target=_serve, name=f"targets-{len(self.workers)}", args=(
            _Ends(orders, from_worker), self.work, self.slots, self.stop_flag, os.getpid()))
        process.start()
        orders.close()
        from_worker.close()
        worker = _Worker(process, to_worker, answers)
        self.workers[answers] = worker
        return worker

    def free(self) -> _Worker | None:
        """The least busy worker with room for one more item (a new one if all are busy and
        there may be more), or None once `concurrency` items are running."""
        if sum(len(worker.running) for worker in self.workers.values()) >= self.concurrency:
            return None
        room = [worker for worker in self.workers.values()
                if not worker.told_to_end and len(worker.running) < self.slots]
        if room:
            return min(room, key=lambda worker: len(worker.running))
        return self.start() if len(self.workers) < self.processes else None

    def hand_out(self) -> None:
        while self.waiting and (worker := self.free()) is not None:
            index, item = self.waiting.popleft()
            worker.running.add(index)
            try:
                worker.orders.send(("run", index, item))
            except OSError:  # the worker has just ended: its answers' end says how
                worker.told_to_end = True

    def stop(self, not_started: Callable[[Any], Any]) -> None:
        while self.waiting:
            index, item = self.waiting.popleft()
            self.results[index] = not_started(item)
        if not self.passed_on:
            self.passed_on = True
            for worker in self.workers.values():
                _signal(worker.process, signal.SIGTERM)

    def end_when_done(self) -> None:
        """Nothing more to hand out: each worker ends once its running items are done."""
        for worker in self.workers.values():
            if not worker.told_to_end:
                worker.told_to_end = True
                # Said, not only closed: the workers forked after this one hold a copy of
                # this end, so closing it here alone would not end its orders.
                with contextlib.suppress(OSError):
                    worker.orders.send(("end", None, None))
                worker.orders.close()

    def collect(self, failed: Callable[[Any, str], Any]) -> None:
        for ready in wait(list(self.workers), timeout=POLL_SECONDS):
            worker = self.workers[cast(Connection, ready)]
            for index, kind, payload in _receive(worker.answers):
                if index is None:
                    self.ended(worker, failed)
                    break
                worker.running.discard(index)
                self.results[index] = (payload if kind == "result"
                                       else failed(self.items[index], payload))

    def ended(self, worker: _Worker, failed: Callable[[Any, str], Any]) -> None:
        del self.workers[worker.answers]
        worker.answers.close()
        worker.orders.close()
        worker.process.join()
        why = f"its process ended without a result (exit status {worker.process.exitcode})"
        for lost in sorted(worker.running):
            self.results[lost] = failed(self.items[lost], why)

    def kill(self) -> None:
        for worker in self.workers.values():
            _signal(worker.process, signal.SIGKILL)
            worker.process.join()
            worker.answers.close()
            worker.orders.close()


@dataclass
class _Ends:
    """A worker's ends of its two pipes."""

    orders: Connection
    answers: Connection


def _receive(answers: Connection) -> Iterator[tuple[int | None, str, Any]]:
    """Write the worker's log lines; yield its answers so far, (index, "result" or "lost",
    payload), and (None, "", None) once it has ended."""
    try:
        while True:
            message = answers.recv()
            if message[0] == "log":
                level, text, extra = message[1]
                logger.bind(**extra).log(level, text)
            else:
                kind, index, payload = message
                yield index, kind, payload
            if not answers.poll():
                return
    except (EOFError, OSError):
        yield None, "", None


def _signal(process: BaseProcess, signum: int) -> None:
    if process.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


# --- in the child ---------------------------------------------------------------------------


def _serve(ends: _Ends, work: Callable[[Any], Any], slots: int, stop: threading.Event,
           parent: int) -> None:
    """A worker: each item the runner sends run in a thread of its own (the runner sends no
    more than `slots` at a time), until the runner closes its end."""
    _die_with(parent)
    orders, answers = ends.orders, ends.answers
    lock = threading.Lock()

    def stop_on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()  # the runner has said why; a second SIGTERM it sends ends us at once

    # A terminal's Ctrl-C reaches the whole process group: the runner passes it on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop_on_term)
    logger.remove()
    logger.add(_forwarder(answers, lock), level=log.configured_level(), format="{message}",
               backtrace=False, diagnose=False, colorize=False)
    with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="target") as pool:
        while True:
            try:
                order, index, item = orders.recv()
            except (EOFError, OSError):
                break
            if order == "end":
                break
            pool.submit(_answer, answers, lock, work, index, item)
    answers.close()


def _answer(answers: Connection, lock: threading.Lock, work: Callable[[Any], Any], index: int,
            item: Any) -> None:
    try:
        answer: tuple[str, int, Any] = ("result", index, work(item))
    except Exception as exc:  # work reports its own failures; this is a last resort
        answer = ("lost", index, f"unexpected error in its process: {type(exc).__name__}: "
                                 f"{log.redact(str(exc))[:200]}")
    with lock:
        try:
            answers.send(answer)
        except Exception as exc:  # pickling failed before anything was written
            answers.send(("lost", index,
                          f"its result could not be sent back: {type(exc).__name__}"))


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
