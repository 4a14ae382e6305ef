"""The installed `molibackup` console script, run as a subprocess the way users run it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def executable() -> str:
    found = shutil.which("molibackup", path=str(Path(sys.executable).parent))
    assert found, "the molibackup console script is not installed"
    return found


def molibackup(*args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([executable(), *args], capture_output=True, text=True,
                          timeout=timeout, check=False,
                          env=env if env is not None else dict(os.environ))
