"""Small shared helpers: atomic writes of files and folders (nothing half-written), human numbers."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from lamina.errors import LaminaError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH) & ~umask)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def human(n: int | float) -> str:
    """1234567 -> '1.23M' for tables."""
    n = float(n)
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{int(n)}"


# --- atomic folder writes ----------------------------------------------------------------------------
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_dir_next_to(target: Path) -> Path:
    """A fresh hidden folder beside `target` (same filesystem, so a rename publishes it atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the published folder gets normal permissions
    return tmp


def publish(tmp: Path, target: Path) -> None:
    """Rename a finished temp folder into place (an existing empty folder is replaced)."""
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    os.rename(tmp, target)
    _fsync(target.parent)


def write_folder(directory: str | Path, writers: dict) -> Path:
    """Write files atomically: each `writers[name](path)` writes into a temp folder beside the target
    (in order, so a later file may read an earlier one), then a new folder appears complete by one
    rename, or, in an existing non-empty folder, only these files are replaced, in the same order."""
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise LaminaError(f"{target} exists and is not a folder")
    tmp = temp_dir_next_to(target)
    try:
        for name, write in writers.items():
            write(tmp / name)
            _fsync(tmp / name)
        if target.is_dir() and any(target.iterdir()):
            for name in writers:
                os.replace(tmp / name, target / name)
            tmp.rmdir()
        else:
            publish(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def not_a_file(path: str | Path) -> str:
    """Why `path` (not a regular file) cannot be read as one: a missing path and a device, pipe or folder
    need different fixes."""
    path = Path(path)
    if path.is_dir():
        return "is a folder, not a file"
    return "is not a regular file (a device, pipe or socket)" if path.exists() else "not found"
