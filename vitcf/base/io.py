"""Atomic files: write a file whole or not at all, and JSON written and read that way.

A file is written to a temporary file beside it and renamed into place, so a crash leaves either the
whole new file or the old one; a JSON write that fails (disk full, read-only folder) leaves the previous
file as it was and raises `RecordWriteError` naming the file and the cause. Files get the permissions of
the user's umask, like any file the user writes. JSON holds no NaN or infinity: a browser rejects such a
file, so `write_json` refuses them, naming where they are.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RecordWriteError(OSError):
    """A record could not be written (disk full, read-only folder, ...): the message names the file
    and the cause; the previous file, if any, is as it was, and no partial file is left."""


class InvalidJSONError(ValueError):
    """A file that does not parse as JSON; `path` and `reason` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{self.path}: {reason}")


def umask() -> int:
    """The process's umask (read from /proc where it can be, so that it is never changed, even briefly)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on any error
    removed. A crash therefore leaves the old file or the new one, never half of one.

    The file gets the permissions of the user's umask (0644 under the usual 022, 0664 under 002),
    like any file the user writes, not the 0600 of the temporary file it was written as.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write `data` as JSON atomically: temp file in the same folder, fsync, rename.

    Raises `RecordWriteError` (an OSError with the same errno) naming `path` when the write fails.
    """
    try:
        text = json.dumps(data, indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"
    except ValueError as err:  # NaN or an infinity: JSON has no such number, and a browser rejects the file
        raise ValueError(f"cannot write {path}: {err} ({_non_finite(data)}); nothing was written") from None
    try:
        with atomic_path(path) as tmp, open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except RecordWriteError:
        raise
    except OSError as err:
        cause = err.strerror or str(err)
        raise RecordWriteError(err.errno or errno.EIO, f"cannot write {path}: {cause} (errno {err.errno}); "
                               f"the previous file, if any, is unchanged") from err
    return Path(path)


def _non_finite(data, where: str = "") -> str:
    """The dotted path of the first NaN or infinite number in `data` (and its value), or ""."""
    if isinstance(data, float) and not math.isfinite(data):
        return f"{where or 'the value'} is {data}"
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return ""


def check_writable(folder: str | os.PathLike) -> None:
    """Fail now, naming `folder`, when records cannot be written there: before any compute is spent."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vitcf-write-check-"):
            pass
    except OSError as err:
        raise RecordWriteError(err.errno or errno.EACCES, f"cannot write records in {folder}: "
                               f"{err.strerror or err} (errno {err.errno}); nothing was computed") from err


def read_json(path: str | os.PathLike):
    """A JSON file's content; a file that does not parse raises `InvalidJSONError` naming it."""
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidJSONError(path, f"not valid JSON ({err}; {len(text.encode())} bytes, truncated?)") from None
