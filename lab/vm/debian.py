"""Debian's kernel packages, through apt: the presets' current kernels and ``debian:VERSION``.

A suite other than the machine's own (trixie for Debian 13, bullseye for Debian 11) has its
package lists fetched into ``.cache/vm/apt/<suite>/`` (signatures checked with the machine's
keyrings; the machine's apt configuration is untouched). ``debian:VERSION`` names the package
``linux-image-VERSION`` (e.g. ``debian:6.1.0-47-amd64``) and is looked up in the machine's own
lists first, then in those suites'.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from ..errors import EnvError, UsageError

__all__ = ["MIRROR", "SUITES", "apt_options", "cached_deb", "cmd", "download", "find_package", "resolve_meta"]

MIRROR = "http://deb.debian.org/debian"
SUITES = ("trixie", "bullseye")           # besides the machine's own, where debian:VERSION looks


def cmd(argv: list[str], what: str, timeout_s: float, cwd: Path | None = None) -> str:
    """Run one tool; its stdout, or EnvError with its last line."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, cwd=cwd,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise EnvError(f"{argv[0]} not found: {what} needs it (Debian: scripts/setup installs it)") from None
    except subprocess.TimeoutExpired:
        raise EnvError(f"{what}: {' '.join(argv[:3])} did not finish within {timeout_s:g} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [f"exit {done.returncode}"]
        raise EnvError(f"{what}: {' '.join(argv[:3])} failed: {last[0]}")
    return done.stdout


def apt_options(suite: str | None, cache: Path) -> list[str]:
    """apt options for *suite*: none for the machine's own; else a sources list and package lists
    of that suite kept under *cache*/apt/SUITE (signatures checked with the machine's keyrings)."""
    if suite is None:
        return []
    root = cache / "apt" / suite
    for sub in ("lists/partial", "cache/archives/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "sources.list").write_text(f"deb {MIRROR} {suite} main\n")
    return ["-o", f"Dir::Etc::SourceList={root / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={root / 'lists'}", "-o", f"Dir::Cache={root / 'cache'}",
            "-o", "APT::Sandbox::User=root"]


def _update(suite: str | None, cache: Path) -> None:
    where = f"Debian {suite}'s archive" if suite else "the machine's apt sources"
    try:
        cmd(["apt-get", *apt_options(suite, cache), "update"], f"apt-get update for {where}", 300)
    except EnvError as exc:
        raise EnvError(f"{where} did not answer ({exc}); that kernel cannot be fetched now") from None
    if suite and not any((cache / "apt" / suite / "lists").glob("*_Packages*")):
        raise EnvError(f"{where} answered with no package list for {suite} (is the suite still served?)")


def _lists_fetched(suite: str, cache: Path) -> bool:
    return any((cache / "apt" / suite / "lists").glob("*_Packages*"))


def resolve_meta(meta: str, image_re: str, suite: str | None, cache: Path) -> str:
    """The package that carries a distribution's current kernel, e.g. linux-image-6.1.0-56-amd64."""
    opts = apt_options(suite, cache)
    if opts:       # that suite's package lists, fetched into the cache
        _update(suite, cache)
    out = cmd(["apt-cache", *opts, "depends", meta], f"resolving {meta}", 60)
    found = re.findall(rf"Depends:\s*({image_re})\b", out)
    if not found:
        raise EnvError(f"apt-cache knows no {meta} that depends on a {image_re} package "
                       "(run apt-get update; the stock kernel is fetched from Debian's archive)")
    return found[0]


def _known(suite: str | None, cache: Path) -> list[str]:
    """linux-image-* packages that carry a kernel (not the meta packages) in *suite*'s lists."""
    out = cmd(["apt-cache", *apt_options(suite, cache), "pkgnames", "linux-image-"], "listing kernels", 60)
    return sorted(p for p in out.split() if re.fullmatch(r"linux-image-\d+\.\d+[^ ]*", p) and "-dbg" not in p
                  and "unsigned" not in p)


def _has(package: str, suite: str | None, cache: Path) -> bool:
    try:
        out = cmd(["apt-cache", *apt_options(suite, cache), "show", "--no-all-versions", package],
                  f"looking up {package}", 60)
    except EnvError:
        return False
    return "Filename:" in out


def find_package(version: str, cache: Path) -> tuple[str, str | None]:
    """``debian:VERSION``: (package, suite) for linux-image-VERSION (or VERSION itself when it
    names the package), from the machine's own lists, else the other suites' (fetched into the
    cache the first time). A version no list offers is a usage error naming some that are."""
    names = [version] if version.startswith("linux-image-") else [f"linux-image-{version}"]
    if not re.fullmatch(r"[A-Za-z0-9.+~_-]+", version):
        raise UsageError(f"--kernel debian:{version}: not a package version (e.g. debian:6.1.0-47-amd64)")
    suites: list[str | None] = [None, *SUITES]
    for suite in suites:
        if suite and not _lists_fetched(suite, cache):
            try:
                _update(suite, cache)
            except EnvError:
                continue                    # an archive that does not answer offers nothing
        for name in names:
            if _has(name, suite, cache):
                return name, suite
    offered = sorted({p.removeprefix("linux-image-") for s in suites
                      if s is None or _lists_fetched(s, cache) for p in _known(s, cache)})
    amd64 = [v for v in offered if v.endswith("-amd64")] or offered
    raise UsageError(f"--kernel debian:{version}: no package {names[0]} in the apt sources (this machine's, "
                     f"{', '.join(SUITES)}); they offer e.g. "
                     + ", ".join(f"debian:{v}" for v in amd64[-6:]) + " (apt-cache pkgnames linux-image-)")


def download(package: str, into: Path, suite: str | None, cache: Path) -> Path:
    opts = apt_options(suite, cache)
    argv = ["apt-get", *opts, "download", "-o", "APT::Sandbox::User=root", package]
    try:
        cmd(argv, f"downloading {package}", 600, cwd=into)
    except EnvError:
        if os.geteuid() != 0:
            raise
        # stale package lists name a version the archive has dropped: refresh once, retry
        cmd(["apt-get", *opts, "update"], "apt-get update", 300)
        cmd(argv, f"downloading {package}", 600, cwd=into)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if not debs:
        raise EnvError(f"apt-get download {package} left no .deb in {into}")
    return debs[-1]


def cached_deb(package: str, suite: str | None, cache: Path) -> Path:
    """*package*'s .deb, kept in *cache*/debs/ (downloaded the first time; a partial download is
    never taken for one: it is fetched into a work directory, then moved into place)."""
    debs = cache / "debs"
    have = sorted(debs.glob(f"{package}_*.deb"))
    if have:
        return have[-1]
    work = debs / f".{package}.{os.getpid()}.tmp"
    work.mkdir(parents=True, exist_ok=True)
    try:
        got = download(package, work, suite, cache)
        return got.rename(debs / got.name)
    finally:
        for p in work.glob("*"):
            p.unlink()
        work.rmdir()
