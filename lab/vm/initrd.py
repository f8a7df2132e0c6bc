"""The VM's initramfs: busybox-static, the modules to boot from 9p, and stage 1 of the boot.

Stage 1 (``INIT``, busybox sh) mounts the host's ``/`` read-only over 9p with a tmpfs overlay on
top, and the run's private control share, then sources the run's own ``mounts.sh`` from there
(lab/vm/boot.py writes it), which ends in switch_root to stage 2. The archive is written in
Python (newc cpio), so device nodes need no root.
"""

from __future__ import annotations

import lzma
import shutil
import stat
import struct
import subprocess
from pathlib import Path

from ..errors import EnvError

__all__ = ["INITRD_MODULES", "INITRD_VERSION", "MSIZE", "build_initrd", "find_busybox"]

# modules the initramfs loads, with their dependencies (resolved from modules.dep)
INITRD_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
MSIZE = 512 * 1024              # 9p message size: larger reads, fewer round trips


def _is_static(path: Path) -> bool:
    """An ELF executable without a program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def find_busybox() -> Path:
    for cand in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox") or ""):
        if cand and Path(cand).is_file() and _is_static(Path(cand)):
            return Path(cand)
    raise EnvError("no statically linked busybox found: install busybox-static (scripts/setup does) "
                   "to build the VM's initramfs")


def _module_order(moddir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Relative paths of *wanted* modules and their dependencies, dependencies first."""
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {Path(m).name.split(".ko")[0].replace("-", "_"): m for m in deps}
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for d in reversed(deps.get(mod, [])):   # modules.dep lists the deepest dependency last
            visit(d)
        order.append(mod)

    for name in wanted:
        mod = by_name.get(name.replace("-", "_"))
        if mod is None:
            builtin = (moddir / "modules.builtin").read_text() if (moddir / "modules.builtin").exists() else ""
            if f"/{name}.ko" in builtin:
                continue
            raise EnvError(f"the kernel package has no module {name} (needed to boot from 9p)")
        visit(mod)
    return order


class _Cpio:
    """A newc cpio archive, written without the cpio tool (and so with device nodes, as non-root too)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        hdr = b"070701" + b"".join(b"%08X" % v for v in fields)
        blob = hdr + name.encode() + b"\0"
        blob += b"\0" * (-len(blob) % 4) + data
        blob += b"\0" * (-len(blob) % 4)
        self.parts.append(blob)
        self.ino += 1

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def bytes(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return b"".join(self.parts)


# stage 1: busybox, in the initramfs. Mounts the host's / read-only with a tmpfs overlay on top
# and the control share at /run/twlab-vm/ctl of the new root, then sources the run's own
# mounts.sh from there (busybox again: the host's mount, loaded over 9p under TCG, costs ~0.4 s a
# call), which ends in switch_root to stage2.sh.
INIT = r"""#!/bin/busybox sh
export PATH=/bin
echo "@@twlab-vm:mark init@@"
fail() { echo "@@twlab-vm:fail $*@@"; echo o > /proc/sysrq-trigger; sleep 10; }
mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs dev /dev || fail "mounting /proc, /sys, /dev"
for m in $(cat /modules.order); do insmod "/modules/$m" || fail "insmod $m"; done
# nothing of a run is here yet: the host may save the guest now and resume it later (lab/vm/resume.py).
# It goes on at "go SECONDS HEX": the host's clock (a resumed guest's is the saved one's), and bytes
# for the entropy pool
stty -echo 2>/dev/null              # the go line stays off the console's log
echo "@@twlab-vm:mark ready@@"
while read -r word secs seed; do [ "$word" = go ] && break; done
date -u -s "@$secs" >/dev/null || fail "setting the clock from the host's ($secs)"
echo "$seed" > /dev/urandom
echo "@@twlab-vm:mark go@@"
o="trans=virtio,version=9p2000.L,msize=@MSIZE@"
mount -t 9p -o "$o,ro,cache=loose" twlabroot /lower || fail "mounting the host's / over 9p"
mount -t tmpfs -o mode=0755 tmpfs /rw && mkdir /rw/upper /rw/work || fail "tmpfs for the overlay"
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "overlay root"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run || fail "tmpfs /run"
mkdir -p /newroot/run/twlab-vm/ctl /newroot/run/netns
mount -t 9p -o "$o" twlabctl /newroot/run/twlab-vm/ctl || fail "mounting the control share"
[ -f /newroot/run/twlab-vm/ctl/mounts.sh ] || fail "no mounts.sh in the control share"
. /newroot/run/twlab-vm/ctl/mounts.sh
fail "mounts.sh returned"
"""
INITRD_VERSION = 5          # bump when INIT or APPLETS change: a cached initrd is rebuilt

APPLETS = ("sh", "mount", "umount", "mkdir", "insmod", "cat", "echo", "sleep", "switch_root", "uname", "date", "stty")


def _plain_module(name: str, data: bytes) -> tuple[str, bytes]:
    """A module as busybox's insmod can load it: Debian 13 ships them xz-compressed (.ko.xz)."""
    if name.endswith(".ko.xz"):
        return name[:-3], lzma.decompress(data)
    if name.endswith(".ko.zst"):
        out = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, timeout=60)
        if out.returncode != 0:
            raise EnvError(f"cannot decompress {name} (zstd: {out.stderr.decode(errors='replace').strip()})")
        return name[:-4], out.stdout
    return name, data


def build_initrd(moddir: Path | None, busybox: Path) -> bytes:
    """The initramfs for a kernel whose modules are in *moddir* (None: everything built in)."""
    order = _module_order(moddir, INITRD_MODULES) if moddir is not None else []
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "lower", "rw", "newroot", "modules"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in APPLETS:
        cpio.symlink(f"bin/{applet}", "busybox")
    names = []
    for rel in order:
        assert moddir is not None
        name, data = _plain_module(Path(rel).name, (moddir / rel).read_bytes())
        cpio.file(f"modules/{name}", data)
        names.append(name)
    cpio.file("modules.order", ("\n".join(names) + "\n").encode())
    cpio.file("init", INIT.replace("@MSIZE@", str(MSIZE)).encode(), 0o755)
    return cpio.bytes()

