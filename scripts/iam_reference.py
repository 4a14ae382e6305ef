"""Render the IAM reference's policies (docs/reference/iam.md) from the code's own.

`python scripts/iam_reference.py --write docs/reference/iam.md` replaces each policy between
its markers; a test fails when the page is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import readme_sections  # noqa: E402

from molibackup.ebs import permissions  # noqa: E402

POLICIES: dict[str, dict[str, Any]] = {
    "backup": permissions.BACKUP, "copy-destination": permissions.COPY_DESTINATION,
    "restore": permissions.RESTORE, "verify": permissions.VERIFY,
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- iam-{name}:start -->", f"<!-- iam-{name}:end -->"


def render(name: str) -> str:
    start, end = markers(name)
    return "\n".join([start, "```json", json.dumps(POLICIES[name], indent=2), "```", end])


def main(argv: list[str]) -> int:
    for name in POLICIES:
        start, end = markers(name)
        status = readme_sections.main(lambda name=name: render(name), start, end, argv)
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
