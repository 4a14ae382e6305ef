"""Render the table of metrics (docs/reference/metrics.md) from the code that defines them.

`python scripts/metrics_reference.py --write docs/reference/metrics.md` replaces the part of
the page between the metrics markers; a test fails when it is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import readme_sections  # noqa: E402

from molibackup.observe.metrics import METRICS, REPORT_METRICS, VERIFY_METRICS  # noqa: E402

START, END = "<!-- metrics:start -->", "<!-- metrics:end -->"


def render() -> str:
    lines = [START, "| metric | labels besides `molibackup_job` | meaning |", "|---|---|---|"]
    for name, text, labels in (*METRICS, *VERIFY_METRICS, *REPORT_METRICS):
        shown = ", ".join(f"`{label}`" for label in labels) or "—"
        lines.append(f"| `{name}` | {shown} | {text} |")
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    return readme_sections.main(render, START, END, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
