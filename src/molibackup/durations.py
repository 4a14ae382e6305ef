"""Durations as people write them in a config file or on a command line: 90m, 20h, 2d, 1d12h."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?")
MAX = timedelta(days=366)


def parse(text: str) -> timedelta:
    """The duration `text` stands for; ValueError with a user's words when it is not one."""
    match = _DURATION.fullmatch(text.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration such as 20h, 90m, 2d or 1d12h")
    days, hours, minutes = (int(part or 0) for part in match.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes)
    if duration <= timedelta(0):
        raise ValueError(f"{text!r} is no time at all: give a duration longer than 0")
    if duration > MAX:
        raise ValueError(f"{text!r} is longer than 366 days, the longest duration allowed")
    return duration


def format_duration(duration: timedelta) -> str:
    """The shortest way of writing a duration back: 1d12h, 20h, 90m -> 1h30m."""
    minutes = int(duration.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    text = (f"{days}d" if days else "") + (f"{hours}h" if hours else "") + (
        f"{minutes}m" if minutes else "")
    return text or "0m"
