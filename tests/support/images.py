"""Real filesystem images, made by Debian's own tools on sparse files (no root, no mount):
mkfs.ext4 (e2fsprogs), mkfs.xfs (xfsprogs), sgdisk (gdisk). Only the written extents are
returned, as (offset, bytes), for `Emulator.write_volume`."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.pushgateway import require

MIB = 1024 * 1024


def extents(path: Path) -> Iterator[tuple[int, bytes]]:
    """The written (non-hole) extents of a sparse file."""
    with path.open("rb") as stream:
        fd, size, offset = stream.fileno(), os.fstat(stream.fileno()).st_size, 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # no data after offset
                return
            end = os.lseek(fd, start, os.SEEK_HOLE)
            stream.seek(start)
            yield start, stream.read(end - start)
            offset = end


def image(kind: str, label: str = "data", size_mib: int = 320) -> list[tuple[int, bytes]]:
    """A filesystem of `kind` (ext4, xfs, or gpt-ext4: a GPT whose first partition holds
    ext4) on a sparse file of `size_mib`."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "disk.img"
        with path.open("wb") as stream:
            stream.truncate(size_mib * MIB)
        if kind == "ext4":
            run(require("mkfs.ext4", "e2fsprogs"), "-F", "-q", "-L", label, str(path))
        elif kind == "xfs":
            run(require("mkfs.xfs", "xfsprogs"), "-f", "-q", "-L", label, str(path))
        elif kind == "gpt-ext4":
            run(require("sgdisk", "gdisk"), "-n", "1:2048:0", "-t", "1:8300", str(path))
            run(require("mkfs.ext4", "e2fsprogs"), "-F", "-q", "-L", label, "-E",
                f"offset={2048 * 512}", str(path), f"{size_mib - 2}M")
        else:
            raise ValueError(kind)
        return list(extents(path))


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=60)
