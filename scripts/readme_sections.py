"""The generated parts of a documentation page: each between a start and an end marker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def replace(path: Path, start: str, end: str, text: str) -> None:
    """Put `text` (which carries its markers) where the markers are in the file."""
    content = path.read_text(encoding="utf-8")
    before, _, rest = content.partition(start)
    _, _, after = rest.partition(end)
    path.write_text(before + text + after, encoding="utf-8")


def main(render: Callable[[], str], start: str, end: str, argv: list[str]) -> int:
    """`--write FILE` replaces the section in FILE; without arguments, print it."""
    text = render()
    if len(argv) == 2 and argv[0] == "--write":
        replace(Path(argv[1]), start, end, text)
    else:
        print(text)
    return 0
