"""The files a run writes (report.json, the pcaps, summaries, matrix and check outputs, JUnit XML):
readable by the user who ran it and nobody else.

Every file is created 0600 and every directory the lab creates 0700, whatever the umask: packet
captures of a lab are nobody else's business on a shared machine. A directory that already
exists (``--artifacts /some/dir``) keeps its mode; the files in it are still 0600. When the lab
runs through sudo (SUDO_UID and SUDO_GID set, and running as root), what it creates is handed to
that user, so the person who typed ``sudo invoke run ...`` can read the results without root.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import IO

__all__ = ["FILE_MODE", "DIR_MODE", "invoking_user", "make_dir", "open_file", "write_text", "listing",
           "seal"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def invoking_user() -> tuple[int, int] | None:
    """(uid, gid) of the user who ran the lab through sudo, when we are root on their behalf."""
    try:
        uid, gid = int(os.environ["SUDO_UID"]), int(os.environ["SUDO_GID"])
    except (KeyError, ValueError):
        return None
    return (uid, gid) if os.geteuid() == 0 else None


def _hand_over(target: int | Path) -> None:
    user = invoking_user()
    if user is None:
        return
    if isinstance(target, int):
        os.fchown(target, *user)
    else:
        os.chown(target, *user, follow_symlinks=False)


def make_dir(path: Path | str) -> Path:
    """``mkdir -p``: every directory it creates is 0700 (and the invoking user's)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:       # another run made it a moment ago: theirs to set
            continue
        os.chmod(d, DIR_MODE)         # mkdir's mode passes through the umask
        _hand_over(d)
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    return path


def open_file(path: Path | str, text: bool = False) -> IO:
    """A new (or emptied) file for writing, 0600 and the invoking user's."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)      # a file that was there keeps its mode otherwise
        _hand_over(fd)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "w" if text else "wb")


def write_text(path: Path | str, text: str) -> None:
    with open_file(path, text=True) as f:
        f.write(text)


def listing(root: Path | str) -> set[Path]:
    """Every path under *root* (to tell afterwards what another process added)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        out.update(Path(dirpath) / n for n in dirnames + filenames)
    return out


def seal(root: Path | str, before: set[Path]) -> None:
    """Make what another process added under *root* since *before* (its listing()) private too:
    the VM's guest writes into the artifacts directory through 9p, as root and without sudo's
    variables. Files 0600, directories 0700, the invoking user's; nothing else is touched."""
    for path in sorted(listing(root) - before):
        if path.is_symlink():
            continue
        os.chmod(path, DIR_MODE if path.is_dir() else FILE_MODE)
        _hand_over(path)
