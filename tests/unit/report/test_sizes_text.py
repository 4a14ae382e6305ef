"""Sizes as the report prints them: a small volume's megabytes are not 0.00 GiB."""

from __future__ import annotations

import pytest

from molibackup.actions.report import gib


@pytest.mark.parametrize(("stored", "expected"), [
    (None, "-"),
    (0, "0 B"),
    (512, "512 B"),
    (3 * 1024 + 512, "3.50 KiB"),
    (5 * 1024**2, "5.00 MiB"),
    (20 * 1024**3, "20.00 GiB"),
])
def test_stored_sizes_keep_their_figures(stored: int | None, expected: str) -> None:
    assert gib(stored) == expected
