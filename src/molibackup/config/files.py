"""Reading the files a user names (configuration, schema) without hanging or eating memory.

A FIFO would block the run forever and a device such as /dev/zero never ends: only regular
files are read, up to `MAX_FILE_BYTES`, and every failure is one line naming the file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from molibackup.errors import ConfigError

MAX_FILE_BYTES = 1024 * 1024


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_text(path: Path, what: str = "configuration file") -> str:
    """The UTF-8 text of a regular file of at most MAX_FILE_BYTES; ConfigError otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: permission denied; the user running molibackup must be "
                           f"able to read the {what}"]) from None
    except OSError as exc:
        reason = "too many symbolic links" if exc.errno == errno.ELOOP else exc.strerror
        raise ConfigError([f"{path}: cannot be opened: {reason}"]) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([f"{path}: is {_kind(info.st_mode)}; the {what} must be a "
                               "regular file"])
        if info.st_size > MAX_FILE_BYTES:
            raise ConfigError([f"{path}: is {info.st_size} bytes; a {what} may be at most "
                               f"{MAX_FILE_BYTES} bytes (1 MiB)"])
        chunks = []
        total = 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_FILE_BYTES:  # the file grew while it was read
                raise ConfigError([f"{path}: is larger than {MAX_FILE_BYTES} bytes, the limit "
                                   f"of a {what}"])
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read: {exc.strerror}"]) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigError([f"{path}: not UTF-8 text (invalid byte at line {line}, column "
                           f"{column}); save the {what} as UTF-8"]) from None


def probe(path: Path) -> bool:
    """Whether a search-path candidate exists; one line when that cannot even be known."""
    try:
        return path.is_file()
    except PermissionError:
        raise ConfigError([f"{path}: permission denied while looking for the configuration "
                           "there; give the file to use with -c FILE (or MOLIBACKUP_CONFIG)"]
                          ) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be checked while looking for the configuration: "
                           f"{exc.strerror}; give the file to use with -c FILE"]) from None
