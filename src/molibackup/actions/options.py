"""Argument types the commands share."""

from __future__ import annotations

import argparse
from datetime import timedelta

from molibackup import durations


def duration(text: str) -> timedelta:
    try:
        return durations.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
