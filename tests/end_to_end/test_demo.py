"""`make demo` is a newcomer's first contact: it must work as the README says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_a_real_job_and_shows_the_result() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env["PATH"] = "/usr/bin:/bin"  # the demo must not rely on an activated virtualenv
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "job web-daily: ok: created 4, deleted 2, kept 6" in result.stderr
    before, after = result.stdout.split("== snapshots after the run")
    assert "old-45d" in before
    assert "old-45d" not in after
    assert "hand-made-before-upgrade" in after
    listed, restored = after.split("== give its newest backup back")
    assert "web-1-data" in listed
    assert "NEXT ROTATION" in listed
    assert ": restored" in restored
    assert "restored volume vol-" in restored
