"""What a volume holds, told from its first bytes: real images made by Debian's tools, and
hand-built headers for the formats those tools do not make here."""

from __future__ import annotations

import struct

import pytest

from molibackup.ebs.verify.content import identify
from tests.support.images import image


def reader(extents: list[tuple[int, bytes]]) -> object:
    def read(offset: int, length: int) -> bytes:
        out = bytearray(length)
        for start, data in extents:
            lo, hi = max(offset, start), min(offset + length, start + len(data))
            if lo < hi:
                out[lo - offset:hi - offset] = data[lo - start:hi - start]
        return bytes(out)

    return read


@pytest.mark.parametrize(("kind", "expected"), [
    pytest.param("ext4", "ext4 (data)", id="ext4"),
    pytest.param("xfs", "xfs (data)", id="xfs"),
    pytest.param("gpt-ext4", "gpt:ext4 (data)", id="gpt-partitioned-ext4"),
])
def test_real_filesystems_are_recognised(kind: str, expected: str) -> None:
    content = identify(reader(image(kind)))  # type: ignore[arg-type]
    assert content.describe() == expected
    assert content.known


def blank(size: int = 1 << 20) -> bytearray:
    return bytearray(size)


def test_btrfs_ntfs_swap_and_lvm2_by_their_magic() -> None:
    btrfs = blank(); btrfs[0x10040:0x10048] = b"_BHRfS_M"  # noqa: E702
    ntfs = blank(); ntfs[3:11] = b"NTFS    "  # noqa: E702
    swap = blank(); swap[4086:4096] = b"SWAPSPACE2"  # noqa: E702
    lvm = blank(); lvm[512:520] = b"LABELONE"; lvm[536:544] = b"LVM2 001"  # noqa: E702
    found = [identify(reader([(0, bytes(d))])).kind  # type: ignore[arg-type]
             for d in (btrfs, ntfs, swap, lvm)]
    assert found == ["btrfs", "ntfs", "swap", "lvm2"]


def test_an_mbr_partition_is_looked_into() -> None:
    disk = blank(4 << 20)
    disk[510:512] = b"\x55\xaa"
    disk[446 + 4] = 0x83
    disk[446 + 8:446 + 12] = struct.pack("<I", 2048)
    disk[2048 * 512: 2048 * 512 + 4] = b"XFSB"
    content = identify(reader([(0, bytes(disk))]))  # type: ignore[arg-type]
    assert content.describe() == "mbr:xfs"


def test_zeros_are_unknown() -> None:
    content = identify(reader([(0, bytes(blank()))]))  # type: ignore[arg-type]
    assert content.describe() == "unknown"
    assert not content.known
