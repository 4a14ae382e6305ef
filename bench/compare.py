"""Before and after in one run: a job's targets under this tree's code and another commit's.

    python bench/compare.py BASE_COMMIT [--rounds N]

For 1, 4 and 12 targets (regions, then 3 accounts x 4 regions through STS), each tree's
`molibackup` runs as its own process against the same emulator behind the same 50 ms proxy,
the two trees alternated round after round so that the machine's changing load falls on
both alike. Reported per tree: the median wall time, the molibackup process's CPU (its
descendants included) and its peak memory (PSS of the process and its descendants).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchmark
from tests.support.ec2proxy import EC2Proxy
from tests.support.emulator import Emulator, index_tag_lookups

ROOT = benchmark.ROOT
#: Targets as (regions, accounts): 1 region; 4 regions; 3 accounts x 4 regions.
SHAPES = {1: (benchmark.TARGET_REGIONS[:1], None), 4: (benchmark.TARGET_REGIONS, None),
          12: (benchmark.TARGET_REGIONS, ["111111111111", "222222222222", "333333333333"])}


@dataclass(frozen=True)
class Measured:
    seconds: float
    cpu: float
    peak_mb: float


def source_of(commit: str, into: Path) -> Path:
    """The `src/` of a commit (and the schema it links to), unpacked: its code runs from
    there, with this environment's dependencies."""
    archive = into / "src.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), commit, "src", "schema"],
                   cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def descendants_pss_kb(root: int) -> int:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for pid in tree:
        try:
            total += next(int(line.split()[1]) for line in
                          Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                          if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            continue
    return total


def run(source: Path, proxy: EC2Proxy, config: Path) -> Measured:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "molibackup", "-c", str(config)], stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(source), "AWS_ENDPOINT_URL_EC2": proxy.url,
             "AWS_ENDPOINT_URL_STS": proxy.url})
    peak = 0
    while process.poll() is None:
        peak = max(peak, descendants_pss_kb(process.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise SystemExit(f"{source}: {config.name} failed (exit {process.returncode})")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(seconds, cpu, peak / 1024)


def median(runs: list[Measured]) -> Measured:
    return Measured(statistics.median(r.seconds for r in runs),
                    statistics.median(r.cpu for r in runs),
                    statistics.median(r.peak_mb for r in runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the commit to compare against (such as HEAD~3)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instances", type=int, default=5, help="per target")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
                       "AWS_EC2_METADATA_DISABLED": "true",
                       "AWS_DEFAULT_REGION": benchmark.REGION})
    index_tag_lookups()
    emulator = Emulator().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            trees = {"before": source_of(args.base, workdir), "after": ROOT / "src"}
            with EC2Proxy(emulator.url, latency=benchmark.LATENCY) as proxy:
                for count, (regions, accounts) in SHAPES.items():
                    config = benchmark.targets_config(workdir, regions, accounts)
                    text = config.read_text().replace(
                        "jobs:", "global:\n  target_concurrency: 12\njobs:", 1)
                    config.write_text(text)
                    runs: dict[str, list[Measured]] = {name: [] for name in trees}
                    for _ in range(args.rounds):
                        for name, source in trees.items():
                            benchmark.build_targets(emulator, regions, args.instances,
                                                    list(accounts) if accounts else None)
                            runs[name].append(run(source, proxy, config))
                    before, after = median(runs["before"]), median(runs["after"])
                    print(f"{count:>2} target(s), medians of {args.rounds}: wall "
                          f"{before.seconds:.2f} s -> {after.seconds:.2f} s "
                          f"({after.seconds / before.seconds:.2f}x), CPU {before.cpu:.2f} s -> "
                          f"{after.cpu:.2f} s ({after.cpu / before.cpu:.2f}x), peak memory "
                          f"{before.peak_mb:.0f} MB -> {after.peak_mb:.0f} MB "
                          f"({after.peak_mb / before.peak_mb:.2f}x)", flush=True)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
