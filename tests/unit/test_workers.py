"""Targets' processes: items in forked workers (no more than asked, each running several
at once), results back in order, log lines through the parent's handler, a worker that ends
badly failing the items it was running and only those, signals passed on."""

from __future__ import annotations

import io
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from molibackup import log, workers
from molibackup.aws import CallStats


def run(work: Callable[[int], Any], items: list[int], concurrency: int = 4,
        stop: threading.Event | None = None, processes: int | None = None) -> list[Any]:
    return list(workers.run_each(
        items, work, concurrency=concurrency, processes=processes or concurrency,
        stop=stop or threading.Event(),
        failed=lambda item, why: ("failed", item, why),
        not_started=lambda item: ("not started", item)))


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    log.configure("info", "text", stream)
    yield stream
    log.configure("info", "text")


def test_with_a_process_per_slot_each_item_runs_in_its_own_and_results_come_back_in_order(
) -> None:
    def work(item: int) -> tuple[int, int, int]:
        time.sleep(0.05 * (4 - item))  # the last ones finish first
        return item, os.getpid(), os.getppid()

    results = run(work, [0, 1, 2, 3])
    assert [item for item, _, _ in results] == [0, 1, 2, 3]
    pids = {pid for _, pid, _ in results}
    assert len(pids) == 4
    assert os.getpid() not in pids
    assert {parent for _, _, parent in results} == {os.getpid()}


def test_no_more_children_at_a_time_than_the_concurrency() -> None:
    def work(_: int) -> tuple[float, float]:
        started = time.monotonic()  # one clock for every process
        time.sleep(0.3)
        return started, time.monotonic()

    spans = run(work, list(range(6)), concurrency=2)
    most = max(sum(1 for start, end in spans if start <= moment < end)
               for moment, _ in spans)
    assert most == 2


def test_items_share_no_more_workers_than_asked_and_run_together_in_each() -> None:
    def work(_: int) -> tuple[int, float, float]:
        started = time.monotonic()
        time.sleep(0.3)
        return os.getpid(), started, time.monotonic()

    spans = run(work, list(range(4)), concurrency=4, processes=2)
    assert len({pid for pid, _, _ in spans}) == 2
    assert os.getpid() not in {pid for pid, _, _ in spans}
    most = max(sum(1 for _, start, end in spans if start <= moment < end)
               for _, moment, _ in spans)
    assert most == 4


def test_a_worker_that_dies_fails_the_items_it_ran_and_the_rest_run_in_another() -> None:
    def work(item: int) -> tuple[int, int]:
        if item == 0:
            time.sleep(1)  # still running when its neighbour ends their process
        if item == 1:
            time.sleep(0.2)
            os._exit(3)
        return item, os.getpid()

    results = run(work, [0, 1, 2, 3], concurrency=2, processes=1)
    why = "its process ended without a result (exit status 3)"
    assert results[:2] == [("failed", 0, why), ("failed", 1, why)]
    assert [item for item, _ in results[2:]] == [2, 3]


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2: a limit of 1.5 CPUs
    ({"cpu.max": "50000 100000\n"}, 1),
    ({"cpu.max": "max 100000\n"}, None),  # no limit: the affinity's
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_usable_cpus_are_the_affinity_within_the_cgroup_s_quota(
        tmp_path: Path, files: dict[str, str], expected: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert workers.usable_cpus(tmp_path) == min(affinity, expected or affinity)


@pytest.mark.parametrize(("work", "why"), [
    (lambda item: os._exit(3) if item == 1 else item,
     "its process ended without a result (exit status 3)"),
    (lambda item: threading.Lock() if item == 1 else item,
     "its result could not be sent back: TypeError"),
    (lambda item: int("x") if item == 1 else item,
     "unexpected error in its process: ValueError: invalid literal for int() with base 10: "
     "'x'"),
])
def test_an_item_that_ends_without_a_result_in_a_worker_of_its_own_fails_alone(
        work: Callable[[int], Any], why: str) -> None:
    assert run(work, [0, 1, 2], processes=3) == [0, ("failed", 1, why), 2]


def test_a_child_s_log_lines_are_written_by_the_parent_s_handler(log_text: io.StringIO) -> None:
    def work(item: int) -> int:
        logger.bind(job="fleet", target=f"own account/region-{item}").warning(f"line {item}")
        logger.debug("not at the configured level")
        return item

    run(work, [0, 1])
    lines = log_text.getvalue().splitlines()
    assert any(line.endswith("WARNING [fleet own account/region-0] line 0") for line in lines)
    assert any(line.endswith("WARNING [fleet own account/region-1] line 1") for line in lines)
    assert "not at the configured level" not in log_text.getvalue()


def test_a_child_s_secrets_are_redacted_before_its_lines_leave_it(
        log_text: io.StringIO) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"

    def work(item: int) -> int:
        log.register_secrets([secret])  # as an assumed role's credentials are, in the child
        logger.info(f"credentials {secret}")
        return item

    run(work, [0])
    assert secret not in log_text.getvalue()
    assert f"credentials {log.REDACTED}" in log_text.getvalue()


def test_once_stopped_running_children_are_told_and_no_other_starts() -> None:
    stop = threading.Event()

    def work(item: int) -> tuple[str, int]:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)  # this child's copy of `stop`, set by the SIGTERM passed on
        return ("stopped" if stop.is_set() else "not told"), item

    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    results = run(work, [0, 1, 2], concurrency=2, stop=stop)
    assert results == [("stopped", 0), ("stopped", 1), ("not started", 2)]
    assert time.monotonic() - started < 10


def test_call_counts_cross_the_process_boundary() -> None:
    stats = CallStats()
    stats.calls, stats.throttled = 33, 2
    copy = pickle.loads(pickle.dumps(stats))
    copy.absorb(stats)
    assert (copy.calls, copy.throttled) == (66, 4)
