"""What a volume holds, from the magic bytes at fixed offsets of its first blocks: pure.

One small probe per format, as util-linux's libblkid does: ext2/3/4, XFS, btrfs, NTFS, swap,
an LVM2 physical volume; or an MBR or GPT partition table, and then what its first partition
holds. `Read(offset, length)` gives the volume's bytes (zeros where nothing was written).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

Read = Callable[[int, int], bytes]
SECTOR = 512
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Content:
    kind: str  # ext4, xfs, btrfs, ntfs, swap, lvm2, gpt, mbr, unknown
    label: str = ""
    inner: Content | None = None  # a partition table's first partition

    @property
    def filesystem(self) -> str:
        """The filesystem found, through a partition table."""
        return self.inner.filesystem if self.inner is not None else self.kind

    @property
    def known(self) -> bool:
        return self.filesystem != UNKNOWN and self.filesystem not in ("gpt", "mbr")

    def describe(self) -> str:
        if self.inner is not None:
            return f"{self.kind}:{self.inner.describe()}"
        return self.kind + (f" ({self.label})" if self.label else "")


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def ext(read: Read, base: int) -> Content | None:
    sb = read(base + 1024, 256)
    if sb[0x38:0x3A] != b"\x53\xef":
        return None
    compat, incompat = struct.unpack_from("<I", sb, 0x5C)[0], struct.unpack_from("<I", sb, 0x60)[0]
    if incompat & (0x40 | 0x80 | 0x200):  # extents, 64bit, flex_bg
        kind = "ext4"
    elif compat & 0x4:  # has_journal
        kind = "ext3"
    else:
        kind = "ext2"
    return Content(kind, _text(sb[0x78:0x88]))


def xfs(read: Read, base: int) -> Content | None:
    sb = read(base, 128)
    return Content("xfs", _text(sb[108:120])) if sb[:4] == b"XFSB" else None


def btrfs(read: Read, base: int) -> Content | None:
    sb = read(base + 0x10000, 0x300)
    return Content("btrfs", _text(sb[0x12B:0x22B])) if sb[0x40:0x48] == b"_BHRfS_M" else None


def ntfs(read: Read, base: int) -> Content | None:
    return Content("ntfs") if read(base + 3, 8) == b"NTFS    " else None


def swap(read: Read, base: int) -> Content | None:
    for page in (4096, 8192, 16384, 65536):
        if read(base + page - 10, 10) in (b"SWAPSPACE2", b"SWAP-SPACE"):
            return Content("swap")
    return None


def lvm2(read: Read, base: int) -> Content | None:
    for sector in range(4):
        label = read(base + sector * SECTOR, 32)
        if label[:8] == b"LABELONE" and label[24:32] == b"LVM2 001":
            return Content("lvm2")
    return None


FILESYSTEMS: tuple[Callable[[Read, int], Content | None], ...] = (
    xfs, ext, btrfs, ntfs, lvm2, swap)


def filesystem(read: Read, base: int = 0) -> Content:
    for probe in FILESYSTEMS:
        found = probe(read, base)
        if found is not None:
            return found
    return Content(UNKNOWN)


def gpt_first_partition(read: Read) -> int | None:
    """The byte offset of a GPT's first partition, if LBA 1 holds a GPT header."""
    header = read(SECTOR, 92)
    if header[:8] != b"EFI PART":
        return None
    entries_lba, count, size = struct.unpack_from("<QII", header, 72)
    for index in range(min(count, 128)):
        entry = read(entries_lba * SECTOR + index * size, 48)
        if entry[:16] != b"\0" * 16:
            return int(struct.unpack_from("<Q", entry, 32)[0]) * SECTOR
    return None


def mbr_first_partition(read: Read) -> int | None:
    """The byte offset of an MBR's first partition, if sector 0 holds an MBR."""
    sector = read(0, SECTOR)
    if sector[510:512] != b"\x55\xaa":
        return None
    for index in range(4):
        entry = sector[446 + 16 * index: 462 + 16 * index]
        kind, start = entry[4], struct.unpack_from("<I", entry, 8)[0]
        if kind and start:
            return int(start) * SECTOR
    return None


def identify(read: Read) -> Content:
    """What the volume holds: a filesystem on the whole device, or a partition table and
    its first partition's filesystem."""
    whole = filesystem(read)
    if whole.kind != UNKNOWN:
        return whole
    start = gpt_first_partition(read)
    if start is not None:
        return Content("gpt", inner=filesystem(read, start))
    start = mbr_first_partition(read)
    if start is not None:
        return Content("mbr", inner=filesystem(read, start))
    return whole
