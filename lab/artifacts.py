"""Where a run writes, and how: the artifacts directory, checked before anything is made and
removed again when a run is refused or cannot write its results; and every file a run writes
(report.json, the pcaps, summaries, matrix and check outputs, JUnit XML) readable by the user it
is for and nobody else.

The lab runs as root, so a directory reached through a symlink is written as root wherever the
link points. ``check_dir`` follows a symlink in the path only to an existing directory the
invoking user owns (with sudo, the user who ran sudo: SUDO_UID); anything else is refused with
one line saying where the link points. The filesystem must have room for a run's results.

Every file is created 0600 and every directory the lab creates 0700, whatever the umask: packet
captures of a lab are nobody else's business on a shared machine. A directory that already
exists (``--artifacts /some/dir``) keeps its mode; the files in it are still 0600. When the lab
runs through sudo (SUDO_UID and SUDO_GID set, and running as root), what it creates is handed to
that user, so the person who typed ``sudo invoke run ...`` reads the results without root.
TWLAB_OWNER=UID:GID names that user where sudo does not (and wins over sudo's variables): the
controller image sets it to the owner of the directory mounted at /artifacts
(images/controller/entrypoint), so a run in a container writes the user's files, not root's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from .errors import EnvError, UsageError

__all__ = ["check_dir", "check_output", "make_dir", "ensure_dir", "drop_empty", "invoking_uid",
           "invoking_user", "open_file", "write_text", "listing", "seal", "MIN_FREE_BYTES",
           "FILE_MODE", "DIR_MODE"]

# a lost-ack run writes ~170 KB (report.json ~150 KB, pcaps a few KB); 1 MiB free or less is a
# full disk for a run, refused up front rather than found when report.json is half written
MIN_FREE_BYTES = 1 << 20
NAME_MAX = 255           # bytes in one file name (Linux's NAME_MAX, include/uapi/linux/limits.h)
FILE_MODE = 0o600
DIR_MODE = 0o700


def _owner_env() -> tuple[str, str]:
    """(uid, gid) as the environment names the user: TWLAB_OWNER=UID:GID, else sudo's."""
    uid, _, gid = os.environ.get("TWLAB_OWNER", "").partition(":")
    if uid.isdigit() and gid.isdigit():
        return uid, gid
    return os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")


def invoking_uid() -> int:
    """The user the run is for: TWLAB_OWNER's, else under sudo the one who ran sudo."""
    euid = os.geteuid()
    uid = _owner_env()[0]
    return int(uid) if euid == 0 and uid.isdigit() else euid


def invoking_user() -> tuple[int, int] | None:
    """(uid, gid) of the user the lab runs for as root: TWLAB_OWNER=UID:GID, else the one who ran
    it through sudo (SUDO_UID, SUDO_GID). What the lab creates is handed to them."""
    uid, gid = _owner_env()
    if os.geteuid() != 0 or not uid.isdigit() or not gid.isdigit():
        return None
    return int(uid), int(gid)


def _hand_over(target: int | Path) -> None:
    user = invoking_user()
    if user is None:
        return
    if isinstance(target, int):
        os.fchown(target, *user)
    else:
        os.chown(target, *user, follow_symlinks=False)


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


def _mkdirs(path: Path) -> list[Path]:
    """``mkdir -p``: every directory it creates is 0700 (and the invoking user's); the ones it
    created, deepest first. On failure (OSError) what it made is removed again."""
    made: list[Path] = []
    p = path
    while not p.exists() and not p.is_symlink() and p != p.parent:
        made.append(p)
        p = p.parent
    done: list[Path] = []
    try:
        for d in reversed(made):
            try:
                d.mkdir(mode=DIR_MODE)
            except FileExistsError:   # another run made it a moment ago: theirs to set
                continue
            done.insert(0, d)
            os.chmod(d, DIR_MODE)     # mkdir's mode passes through the umask
            _hand_over(d)
        if not path.is_dir():
            raise NotADirectoryError(20, os.strerror(20), str(path))    # ENOTDIR
    except OSError:
        drop_empty(done)
        raise
    return done


def make_dir(path: Path) -> list[Path]:
    """mkdir -p *path* (0700, lab.artifacts) and make sure a run can write there; return the
    directories it created, deepest first (for drop_empty). On failure nothing it made is left
    (UsageError, EnvError)."""
    path = Path(path)
    made: list[Path] = []
    try:
        made = _mkdirs(path)
        probe = path / ".write-test"
        write_text(probe, "")
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


def ensure_dir(path: Path | str) -> Path:
    """``mkdir -p`` for an output's directory (summaries, check.json, matrix): what it creates is
    0700 and the invoking user's; *path*."""
    path = Path(path)
    _mkdirs(path)
    return path


def drop_empty(dirs: list[Path]) -> None:
    """Remove each of *dirs* (deepest first) that is empty; stop at the first that is not."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            return


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
