"""A snapshot's blocks through the EBS direct APIs: which are written, and their data,
each checked against the SHA-256 checksum the API returns with it.

The block size is the API's answer (EC2 answers 524288 bytes), never assumed.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

from molibackup.errors import AwsError

MAX_RESULTS = 10000  # ListSnapshotBlocks' and ListChangedBlocks' largest page


class BlockError(Exception):
    """A block that could not be read, or whose data does not match its checksum."""


@dataclass(frozen=True)
class BlockMap:
    block_size: int
    volume_size_gib: int
    tokens: dict[int, str]  # written block index -> its token


def list_blocks(client: Any, snapshot_id: str) -> BlockMap:
    """Every written block of a snapshot, all pages."""
    tokens: dict[int, str] = {}
    block_size, volume_size = 0, 0
    kwargs: dict[str, Any] = {"SnapshotId": snapshot_id, "MaxResults": MAX_RESULTS}
    while True:
        answer = client.list_snapshot_blocks(**kwargs)
        block_size = int(answer.get("BlockSize") or block_size)
        volume_size = int(answer.get("VolumeSize") or volume_size)
        tokens.update({int(b["BlockIndex"]): str(b.get("BlockToken", ""))
                       for b in answer.get("Blocks", [])})
        token = answer.get("NextToken")
        if not token:
            return BlockMap(block_size, volume_size, tokens)
        kwargs["NextToken"] = token


def changed_block_count(client: Any, first: str, second: str) -> tuple[int, int]:
    """(blocks changed from `first` to `second`, the block size), all pages."""
    count, block_size = 0, 0
    kwargs: dict[str, Any] = {"FirstSnapshotId": first, "SecondSnapshotId": second,
                              "MaxResults": MAX_RESULTS}
    while True:
        answer = client.list_changed_blocks(**kwargs)
        block_size = int(answer.get("BlockSize") or block_size)
        count += len(answer.get("ChangedBlocks", []))
        token = answer.get("NextToken")
        if not token:
            return count, block_size
        kwargs["NextToken"] = token


@dataclass
class BlockReader:
    """Reads blocks of one snapshot, checking each; remembers what it read."""

    client: Any
    snapshot_id: str
    blocks: BlockMap
    read_blocks: dict[int, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def block(self, index: int) -> bytes:
        with self._lock:
            if index in self.read_blocks:
                return bytes(self.read_blocks[index])
        if index not in self.blocks.tokens:
            return b"\0" * self.blocks.block_size  # never written: zeros
        try:
            answer = self.client.get_snapshot_block(
                SnapshotId=self.snapshot_id, BlockIndex=index,
                BlockToken=self.blocks.tokens[index])
            data = bytes(answer["BlockData"].read())
        except AwsError as exc:
            raise BlockError(f"block {index} could not be read: {exc}") from None
        expected = str(answer.get("Checksum") or "")
        algorithm = str(answer.get("ChecksumAlgorithm") or "SHA256")
        if algorithm != "SHA256" or not expected:
            raise BlockError(f"block {index} came without a SHA-256 checksum")
        actual = base64.b64encode(hashlib.sha256(data).digest()).decode()
        if actual != expected:
            raise BlockError(f"block {index}: its data does not match its checksum (the "
                             "snapshot's data is not what EBS stored)")
        with self._lock:
            self.read_blocks[index] = data
        return data

    def read(self, offset: int, length: int) -> bytes:
        """Bytes of the volume, from the blocks that hold them."""
        size = self.blocks.block_size
        out = bytearray()
        position = offset
        while position < offset + length:
            index, within = divmod(position, size)
            chunk = self.block(index)[within:within + (offset + length - position)]
            out += chunk.ljust(min(size - within, offset + length - position), b"\0")
            position += size - within
        return bytes(out[:length])
