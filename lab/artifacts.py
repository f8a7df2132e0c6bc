"""Where a run writes: the artifacts directory, checked before anything is made, and removed again
when a run is refused or cannot write its results.

The lab runs as root, so a directory reached through a symlink is written as root wherever the
link points. ``check_dir`` follows a symlink in the path only to an existing directory the
invoking user owns (with sudo, the user who ran sudo: SUDO_UID); anything else is refused with
one line saying where the link points. The filesystem must have room for a run's results.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import EnvError, UsageError

__all__ = ["check_dir", "check_output", "make_dir", "drop_empty", "invoking_uid", "MIN_FREE_BYTES"]

# a lost-ack run writes ~170 KB (report.json ~150 KB, pcaps a few KB); 1 MiB free or less is a
# full disk for a run, refused up front rather than found when report.json is half written
MIN_FREE_BYTES = 1 << 20
NAME_MAX = 255           # bytes in one file name (Linux's NAME_MAX, include/uapi/linux/limits.h)


def invoking_uid() -> int:
    """The user the run is for: under sudo, the one who ran sudo."""
    euid = os.geteuid()
    sudo = os.environ.get("SUDO_UID", "")
    return int(sudo) if euid == 0 and sudo.isdigit() else euid


def check_dir(path: Path | str, flag: str = "--artifacts") -> Path:
    """Refuse *path* (UsageError) when a symlink in it leads anywhere but an existing directory the
    invoking user owns; return it as given."""
    path = Path(path)
    user = invoking_uid()
    prefix = Path(path.anchor) if path.is_absolute() else Path()
    for part in path.parts[1:] if path.is_absolute() else path.parts:
        prefix = prefix / part
        if not prefix.is_symlink():
            if not prefix.exists():
                break                                  # the rest is made by the run
            continue
        target = prefix.resolve()
        try:
            st = target.stat()
        except OSError:
            st = None
        if st is None or not target.is_dir():
            raise UsageError(f"{flag} {path}: {prefix} is a symlink to {target}, which is not a "
                             "directory; give a real directory")
        if st.st_uid != user:
            raise UsageError(f"{flag} {path}: {prefix} is a symlink to {target}, a directory owned by "
                             f"uid {st.st_uid}, not by you (uid {user}); the lab writes as root, so "
                             "give a directory of your own, not a link to one")
    return path


def check_output(path: Path, flag: str) -> None:
    """Refuse (UsageError) an output file (--junit, --json-out) that could not be written, before
    the run and without creating anything: its nearest existing ancestor must be a directory this
    user can write, and the path itself not a directory."""
    if any(len(os.fsencode(part)) > NAME_MAX for part in path.parts):
        raise UsageError(f"{flag} {path}: a name in it is longer than {NAME_MAX} bytes")
    try:
        if path.is_dir():
            raise UsageError(f"{flag} {path}: is a directory; give a file name")
        place = path.parent
        while not place.exists() and place != place.parent:
            place = place.parent
        if not place.is_dir() or not os.access(place, os.W_OK):
            raise UsageError(f"{flag} {path}: not a file this user can write ({place} is not a "
                             "writable directory)")
    except OSError as exc:                                   # e.g. a name too long
        raise UsageError(f"{flag} {path}: {exc.strerror}") from None


def make_dir(path: Path) -> list[Path]:
    """mkdir -p *path* and make sure a run can write there; return the directories it created,
    deepest first (for drop_empty). On failure nothing it made is left (UsageError, EnvError)."""
    path = Path(path)
    made: list[Path] = []
    p = path
    while not p.exists() and not p.is_symlink() and p != p.parent:
        made.append(p)
        p = p.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
        st = os.statvfs(path)
    except OSError as exc:
        drop_empty(made)
        raise UsageError(f"artifacts directory {path} is not writable ({exc.strerror}); "
                         "give --artifacts DIR somewhere you can write") from None
    if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
        drop_empty(made)
        raise EnvError(f"artifacts directory {path}: its filesystem is full "
                       f"({st.f_bavail * st.f_frsize // 1024} KiB free); free some space or give "
                       "--artifacts DIR on another filesystem")
    return made


def drop_empty(dirs: list[Path]) -> None:
    """Remove each of *dirs* (deepest first) that is empty; stop at the first that is not."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            return
