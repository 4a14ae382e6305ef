"""Container fixtures: an engine (podman or Docker) and the image built from the Dockerfile.

Where the engine is missing these tests skip, except when REQUIRE_CONTAINER=1 (set by CI),
where a missing engine is a failure: CI must prove the image, not skip it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*cmd: str, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                            cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"{shlex.join(cmd)} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def engine_works(engine: str) -> bool:
    return run(engine, "info", timeout=60, check=False).returncode == 0


@pytest.fixture(scope="session")
def engine() -> str:
    required = os.environ.get("REQUIRE_CONTAINER") == "1"
    for name in (os.environ.get("CONTAINER_ENGINE"), "podman", "docker"):
        path = shutil.which(name) if name else None
        if path and engine_works(path):
            return path
    message = "no working podman or docker engine"
    if required:
        pytest.fail(f"{message}, but REQUIRE_CONTAINER=1")
    pytest.skip(f"{message}: container tests skipped (set REQUIRE_CONTAINER=1 to fail instead)")


def build_flags() -> list[str]:
    """Extra build flags (local base images, network) from CONTAINER_BUILD_FLAGS."""
    return shlex.split(os.environ.get("CONTAINER_BUILD_FLAGS", ""))


def make(target: str, engine: str, image: str, *extra_flags: str,
         variables: dict[str, str] | None = None) -> str:
    flags = shlex.join([*build_flags(), *extra_flags])
    assignments = [f"{key}={value}" for key, value in (variables or {}).items()]
    result = run("make", "--no-print-directory", target, f"CONTAINER_ENGINE={engine}",
                 f"IMAGE={image}", f"BUILD_FLAGS={flags}", *assignments, timeout=1800)
    return result.stdout


@pytest.fixture(scope="session")
def image(engine: str) -> Iterator[str]:
    name = "localhost/molibackup:test"
    make("docker-build", engine, name)
    yield name
    run(engine, "rmi", "-f", name, check=False)
