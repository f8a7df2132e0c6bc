"""The stock kernels lab.vm boots: fetched as Debian packages and prepared once, under .cache/vm/.

First-time setup (``prepare``): resolve linux-image-amd64's current ABI with apt-cache,
``apt-get download`` linux-image-6.1.0-<abi>-amd64, ``dpkg -x`` it, ``depmod`` the modules (the
VM's kernel loads sch_netem, nf_tables, veth ... on demand through the host's modprobe),
decompress vmlinuz to a plain ELF vmlinux (boots through PVH, about twice as fast as the
bzImage under TCG, which emulates the decompressor), and write a small initramfs (lab/vm/initrd.py).
Everything is cached under ``.cache/vm/<kernel>/``; later runs reuse it. Kernels: ``debian-12``
(bookworm's 6.1, from the machine's own apt lists) and ``debian-13`` (trixie's 6.12: its package
lists are fetched into ``.cache/vm/apt/trixie``, its modules live under usr/lib/modules and are
xz-compressed - decompressed for the initramfs, while the guest's modprobe reads .ko.xz itself).
6.12's netem takes a PRNG seed; 6.1's does not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import lzma
import os
import re
import shutil
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvError, UsageError
from .initrd import INITRD_MODULES, INITRD_VERSION, build_initrd, find_busybox

__all__ = ["KERNELS", "Kernel", "kernel_spec", "cache_dir", "prepare", "ready", "locked", "REPO", "CACHE",
           "QEMU", "decompress_vmlinuz"]

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "vm"
QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class Kernel:
    name: str                   # what --kernel takes
    meta_package: str           # the distribution's "current kernel" package
    image_re: str               # its dependency that carries the kernel, e.g. linux-image-6.1.0-56-amd64
    description: str
    suite: str | None = None    # a Debian suite other than the machine's own: apt reads its package
                                # lists into the cache (the machine's apt configuration is untouched)


KERNELS: dict[str, Kernel] = {
    "debian-12": Kernel("debian-12", "linux-image-amd64", r"linux-image-6\.1\.0-\d+-amd64",
                        "Debian 12 (bookworm) stock kernel, linux-image-amd64"),
    "debian-13": Kernel("debian-13", "linux-image-amd64", r"linux-image-6\.12\.\d+\+deb13-amd64",
                        "Debian 13 (trixie) stock kernel, linux-image-amd64", suite="trixie"),
}
MIRROR = "http://deb.debian.org/debian"


def kernel_spec(name: str) -> Kernel:
    try:
        return KERNELS[name]
    except KeyError:
        raise UsageError(f"unknown kernel {name!r}: choose one of {', '.join(KERNELS)}") from None


def cache_dir(kernel: str) -> Path:
    return CACHE / kernel_spec(kernel).name


# -- first-time setup -----------------------------------------------------------------------

def _cmd(argv: list[str], what: str, timeout_s: float, cwd: Path | None = None) -> str:
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


def _apt_options(spec: Kernel) -> list[str]:
    """apt options for *spec*'s suite: none for the machine's own; else a sources list and package
    lists of that suite kept under the cache (signatures checked with the machine's keyrings)."""
    if spec.suite is None:
        return []
    root = CACHE / "apt" / spec.suite
    for sub in ("lists/partial", "cache/archives/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "sources.list").write_text(f"deb {MIRROR} {spec.suite} main\n")
    return ["-o", f"Dir::Etc::SourceList={root / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={root / 'lists'}", "-o", f"Dir::Cache={root / 'cache'}",
            "-o", "APT::Sandbox::User=root"]


def _resolve(spec: Kernel) -> str:
    """The package that carries the distribution's current kernel, e.g. linux-image-6.1.0-56-amd64."""
    opts = _apt_options(spec)
    if opts:       # that suite's package lists, fetched into the cache
        _cmd(["apt-get", *opts, "update"], f"apt-get update for Debian {spec.suite}", 300)
    out = _cmd(["apt-cache", *opts, "depends", spec.meta_package], f"resolving {spec.meta_package}", 60)
    found = re.findall(rf"Depends:\s*({spec.image_re})\b", out)
    if not found:
        raise EnvError(f"apt-cache knows no {spec.meta_package} that depends on a {spec.image_re} package "
                       "(run apt-get update; the stock kernel is fetched from Debian's archive)")
    return found[0]


def _download(package: str, into: Path, spec: Kernel | None = None) -> Path:
    opts = _apt_options(spec) if spec else []
    argv = ["apt-get", *opts, "download", "-o", "APT::Sandbox::User=root", package]
    try:
        _cmd(argv, f"downloading {package}", 600, cwd=into)
    except EnvError:
        if os.geteuid() != 0:
            raise
        # stale package lists name a version the archive has dropped: refresh once, retry
        _cmd(["apt-get", *opts, "update"], "apt-get update", 300)
        _cmd(argv, f"downloading {package}", 600, cwd=into)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if not debs:
        raise EnvError(f"apt-get download {package} left no .deb in {into}")
    return debs[-1]


def decompress_vmlinuz(bzimage: bytes) -> bytes:
    """The ELF vmlinux inside a bzImage (what scripts/extract-vmlinux does): find the payload's
    compression magic, decompress, keep the first result that is an ELF file."""
    tried = []
    for magic, how in ((b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b\x08", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd")):
        start = bzimage.find(magic)
        while start != -1:
            try:
                if how == "xz":
                    out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[start:])
                elif how == "gzip":
                    out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(bzimage[start:])
                else:
                    out = subprocess.run(["zstd", "-dc"], input=bzimage[start:], capture_output=True,
                                         timeout=120).stdout
                if out[:4] == b"\x7fELF":
                    return out
            except (lzma.LZMAError, zlib.error, OSError, subprocess.TimeoutExpired):
                pass
            tried.append(how)
            start = bzimage.find(magic, start + 1)
    raise EnvError(f"no ELF vmlinux found inside the kernel image (tried {', '.join(tried) or 'no known magic'})")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ready(d: Path) -> dict | None:
    try:
        info = json.loads((d / "kernel.json").read_text())
    except (OSError, ValueError):
        return None
    if all((d / f).is_file() for f in ("vmlinux", "initrd")) and (d / info.get("modules", "-")).is_dir():
        return info
    return None


def _write_initrd(d: Path, info: dict, **extra) -> None:
    """(Re)build d/initrd and record its version in d/kernel.json, each replaced atomically (a
    VM booting meanwhile reads the old or the new file, whole)."""
    data = build_initrd(d / info["modules"], find_busybox())
    (d / "initrd.tmp").write_bytes(data)
    (d / "initrd.tmp").rename(d / "initrd")
    info = {**info, **extra, "initrd_version": INITRD_VERSION}
    (d / "kernel.json.tmp").write_text(json.dumps(info, indent=2) + "\n")
    (d / "kernel.json.tmp").rename(d / "kernel.json")


def prepare(kernel: str = "debian-12", progress: Callable[[str], None] = print) -> Path:
    """The cache directory of *kernel*, set up the first time (download, extract, build).

    Holds vmlinux, initrd, kernel.json (package, version, release) and the extracted package
    (``root/``, whose lib/modules the VM binds at /lib/modules)."""
    spec = kernel_spec(kernel)
    d = cache_dir(kernel)
    info = ready(d)
    if info and info.get("initrd_version") == INITRD_VERSION:
        return d
    if info and _refresh_initrd(spec, d, progress):
        return d
    _require_tools(kernel)
    with locked(CACHE / f"{spec.name}.lock"):
        info = ready(d)
        if info:                         # another process prepared it while we waited
            if info.get("initrd_version") != INITRD_VERSION:
                _write_initrd(d, info)
            return d
        _first_time_setup(spec, d, progress)
    return d


def _refresh_initrd(spec: Kernel, d: Path, progress: Callable[[str], None]) -> bool:
    """A prepared kernel whose initramfs an older lab/vm made (it boots differently): a new
    initramfs only. False if the cache turned out not to be ready after all."""
    with locked(CACHE / f"{spec.name}.lock"):
        info = ready(d)
        if info and info.get("initrd_version") != INITRD_VERSION:
            progress(f"vm: rebuilding the {spec.name} initramfs (version {INITRD_VERSION})")
            _write_initrd(d, info)
    return bool(info)


def _require_tools(kernel: str) -> None:
    """Everything a first-time setup runs, checked before it downloads anything."""
    find_busybox()                       # fail early, before a 70 MB download
    if shutil.which(QEMU) is None:
        raise EnvError(f"{QEMU} not found: install qemu-system-x86 (scripts/setup does) to run a stock kernel")
    for tool in ("apt-get", "apt-cache", "dpkg", "depmod"):
        if shutil.which(tool) is None:
            raise EnvError(f"{tool} not found: the {kernel} kernel is fetched and unpacked as a Debian "
                           "package" + (" (install kmod)" if tool == "depmod" else ""))


def _first_time_setup(spec: Kernel, d: Path, progress: Callable[[str], None]) -> None:
    """Build the kernel's cache in a sibling work directory, then rename it into place (a failed
    or interrupted setup leaves no half-made cache)."""
    t0 = time.monotonic()
    progress(f"vm: first-time setup of the {spec.name} kernel in {d} (later runs reuse it)")
    shutil.rmtree(d, ignore_errors=True)
    work = d.with_name(d.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        info = _build(spec, work, t0, progress)
        work.rename(d)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(f"vm: {spec.name} ready: {info['package']} {info['version']} ({info['release']}); "
             f"first-time setup took {time.monotonic() - t0:.1f} s")


def _fetch(spec: Kernel, work: Path, t0: float, progress: Callable[[str], None]) -> tuple[str, str]:
    """Steps 1 and 2: download the package that carries the kernel, unpack it into work/root;
    the package's name and version."""
    package = _resolve(spec)
    progress(f"vm: [1/5] {spec.meta_package} is {package}; downloading it with apt-get")
    deb = _download(package, work, spec)
    size = deb.stat().st_size
    version = deb.name.split("_")[1]
    progress(f"vm: [2/5] unpacking {deb.name} ({size / 1e6:.0f} MB, {time.monotonic() - t0:.1f} s so far)")
    _cmd(["dpkg-deb", "-x", str(deb), str(work / "root")], f"unpacking {deb.name}", 300)
    deb.unlink()
    return package, version


def _module_tree(work: Path, package: str) -> tuple[Path, Path]:
    """The root the unpacked package's lib/modules is under, and its one module tree."""
    # Debian 12 ships lib/modules, Debian 13 (merged /usr) usr/lib/modules
    base = next((b for b in (work / "root", work / "root" / "usr")
                 if (b / "lib" / "modules").is_dir()), None)
    moddirs = sorted((base / "lib" / "modules").iterdir()) if base else []
    if len(moddirs) != 1:
        raise EnvError(f"{package} holds {len(moddirs)} module trees, expected one")
    return base, moddirs[0]


def _build(spec: Kernel, work: Path, t0: float, progress: Callable[[str], None]) -> dict:
    """The five steps into *work*: fetch, unpack, depmod, vmlinux, initramfs; kernel.json's info."""
    package, version = _fetch(spec, work, t0, progress)
    base, moddir = _module_tree(work, package)
    release = moddir.name
    progress(f"vm: [3/5] depmod {release}")
    _cmd(["depmod", "-b", str(base), release], "depmod", 300)
    progress("vm: [4/5] decompressing vmlinuz to vmlinux")
    vmlinux = decompress_vmlinuz((work / "root" / "boot" / f"vmlinuz-{release}").read_bytes())
    (work / "vmlinux").write_bytes(vmlinux)
    progress(f"vm: [5/5] building the initramfs (busybox-static + {', '.join(INITRD_MODULES)})")
    info = {"kernel": spec.name, "package": package, "version": version, "release": release,
            "modules": str(moddir.relative_to(work)), "prepared": time.time()}
    _write_initrd(work, info, setup_s=round(time.monotonic() - t0, 1))
    return info
