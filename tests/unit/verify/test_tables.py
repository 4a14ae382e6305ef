"""What verify's table says: what was read of what was written, and words never cut."""

from __future__ import annotations

import pytest

from molibackup.actions.verify import clip, show
from molibackup.ebs.verify.verification import JobVerification, Verification


def table(verification: Verification, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    show([JobVerification("db", "us-west-2", verifications=[verification])], "text")
    header, row = capsys.readouterr().out.splitlines()
    starts = [header.index(name) for name in header.split()]
    cells = [row[start:end].strip() for start, end in zip(starts, [*starts[1:], None],
                                                            strict=True)]
    return dict(zip(header.split(), cells, strict=True))


def test_blocks_reads_what_was_read_out_of_what_was_written(
    capsys: pytest.CaptureFixture[str]
) -> None:
    verification = Verification("vol-1", "data", "snap-1", "blocks", ok=True,
                                content="ext4 (data)", checked=16, asked=16, written=120,
                                read=18)
    assert table(verification, capsys)["BLOCKS"] == "18/120"


def test_a_long_detail_is_cut_between_words(capsys: pytest.CaptureFixture[str]) -> None:
    detail = ("its first blocks hold no filesystem molibackup recognises (unknown) and "
              "verify.require_filesystem is set")
    found = table(Verification("vol-1", "data", "snap-1", "blocks", detail=detail),
                  capsys)["FOUND"]
    assert found.endswith("…")
    assert detail.startswith(found[:-1])
    assert detail[len(found) - 1] == " "  # the cut falls where a word ends


@pytest.mark.parametrize(("text", "width", "expected"), [
    ("ext4 (data)", 60, "ext4 (data)"),
    ("one two three four", 10, "one two…"),
    ("abcdefghijklmnop", 8, "abcdefg…"),
])
def test_clip(text: str, width: int, expected: str) -> None:
    assert clip(text, width) == expected
    assert len(clip(text, width)) <= width
