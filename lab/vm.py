"""Run one twlab command inside a stock distribution kernel, booted under qemu (TCG).

This machine's kernel has no sch_netem; a stock Debian kernel has. ``run`` boots it with the
host's ``/`` shared read-only over 9p (a tmpfs overlay on top makes it writable, and throwaway),
runs ONE command there - normally ``invoke run SCENARIO --backend netns ...`` with the repo's own
.venv - and powers the VM off. The command's exit code and output come back, and its artifacts
land in a host directory shared writable over a second 9p share, mounted inside at the same
absolute path it has on the host (so report.json names the host's path).

    prepare("debian-12", print)  -> .cache/vm/debian-12/  (kernel, modules, vmlinux, initrd)
    run("debian-12", ["run", "lost-ack", "--backend", "netns", "--artifacts", str(out)], out)

First-time setup (``prepare``): resolve linux-image-amd64's current ABI with apt-cache,
``apt-get download`` linux-image-6.1.0-<abi>-amd64, ``dpkg -x`` it, ``depmod`` the modules (the
VM's kernel loads sch_netem, nf_tables, veth ... on demand through the host's modprobe),
decompress vmlinuz to a plain ELF vmlinux (boots through PVH, about twice as fast as the
bzImage under TCG, which emulates the decompressor), and write a small initramfs: busybox-static
and the virtio/9p/overlay modules. Everything is cached under ``.cache/vm/<kernel>/``; later
runs reuse it. Kernels: ``debian-12`` (bookworm's 6.1, from the machine's own apt lists) and
``debian-13`` (trixie's 6.12: its package lists are fetched into ``.cache/vm/apt/trixie``, its
modules live under usr/lib/modules and are xz-compressed - decompressed for the initramfs, while
the guest's modprobe reads .ko.xz itself). 6.12's netem takes a PRNG seed; 6.1's does not.

Boot, inside the VM: the initramfs (stage 1, busybox) mounts the root share, the overlay and a
third, private 9p share (the control directory, a host temp dir) and switch_roots into the
overlay; stage 2 (a script the host wrote into the control directory, run by the host's own
/bin/sh) mounts /proc, /sys, /dev, /run, /tmp, binds the kernel's modules at /lib/modules,
mounts the artifacts share, runs the command and powers off through sysrq. Markers on the
serial console tell the host when the command started and how it ended.

Every step is bounded: qemu is killed (SIGTERM, then SIGKILL) when ``timeout_s`` passes or the
caller is interrupted, and the control directory is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .artifacts import ensure_dir, listing, seal, write_text
from .errors import EnvError, UsageError

__all__ = ["KERNELS", "Kernel", "prepare", "run", "cache_dir", "REPO"]

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "vm"

# modules the initramfs loads, with their dependencies (resolved from modules.dep)
INITRD_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
MSIZE = 512 * 1024              # 9p message size: larger reads, fewer round trips
START, EXIT, FAIL = "@@twlab-vm:start@@", "@@twlab-vm:exit=", "@@twlab-vm:fail "


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

QEMU = "qemu-system-x86_64"
QEMU_ARGS = ["-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "max", "-m", "512M",
             "-smp", "2", "-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none"]
APPEND = "console=ttyS0 panic=-1 quiet mitigations=off"


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
fail() { echo "@@twlab-vm:fail $*@@"; echo o > /proc/sysrq-trigger; sleep 10; }
mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs dev /dev || fail "mounting /proc, /sys, /dev"
for m in $(cat /modules.order); do insmod "/modules/$m" || fail "insmod $m"; done
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
INITRD_VERSION = 2          # bump when INIT or APPLETS change: a cached initrd is rebuilt

APPLETS = ("sh", "mount", "umount", "mkdir", "insmod", "cat", "echo", "sleep", "switch_root")


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


def _build_initrd(moddir: Path, busybox: Path) -> bytes:
    order = _module_order(moddir, INITRD_MODULES)
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
        name, data = _plain_module(Path(rel).name, (moddir / rel).read_bytes())
        cpio.file(f"modules/{name}", data)
        names.append(name)
    cpio.file("modules.order", ("\n".join(names) + "\n").encode())
    cpio.file("init", INIT.replace("@MSIZE@", str(MSIZE)).encode(), 0o755)
    return cpio.bytes()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _ready(d: Path) -> dict | None:
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
    data = _build_initrd(d / info["modules"], find_busybox())
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
    info = _ready(d)
    if info and info.get("initrd_version") == INITRD_VERSION:
        return d
    if info:                             # this lab/vm.py boots differently: a new initramfs only
        with _locked(CACHE / f"{spec.name}.lock"):
            info = _ready(d)
            if info and info.get("initrd_version") != INITRD_VERSION:
                progress(f"vm: rebuilding the {kernel} initramfs (version {INITRD_VERSION})")
                _write_initrd(d, info)
        if info:
            return d
    find_busybox()                       # fail early, before a 70 MB download
    if shutil.which(QEMU) is None:
        raise EnvError(f"{QEMU} not found: install qemu-system-x86 (scripts/setup does) to run a stock kernel")
    for tool in ("apt-get", "apt-cache", "dpkg", "depmod"):
        if shutil.which(tool) is None:
            raise EnvError(f"{tool} not found: the {kernel} kernel is fetched and unpacked as a Debian "
                           "package" + (" (install kmod)" if tool == "depmod" else ""))
    with _locked(CACHE / f"{spec.name}.lock"):
        info = _ready(d)
        if info:                         # another process prepared it while we waited
            if info.get("initrd_version") != INITRD_VERSION:
                _write_initrd(d, info)
            return d
        t0 = time.monotonic()
        progress(f"vm: first-time setup of the {kernel} kernel in {d} (later runs reuse it)")
        shutil.rmtree(d, ignore_errors=True)
        work = d.with_name(d.name + ".tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            package = _resolve(spec)
            progress(f"vm: [1/5] {spec.meta_package} is {package}; downloading it with apt-get")
            deb = _download(package, work, spec)
            size = deb.stat().st_size
            version = deb.name.split("_")[1]
            progress(f"vm: [2/5] unpacking {deb.name} ({size / 1e6:.0f} MB, {time.monotonic() - t0:.1f} s so far)")
            _cmd(["dpkg-deb", "-x", str(deb), str(work / "root")], f"unpacking {deb.name}", 300)
            deb.unlink()
            # Debian 12 ships lib/modules, Debian 13 (merged /usr) usr/lib/modules
            base = next((b for b in (work / "root", work / "root" / "usr")
                         if (b / "lib" / "modules").is_dir()), None)
            moddirs = sorted((base / "lib" / "modules").iterdir()) if base else []
            if len(moddirs) != 1:
                raise EnvError(f"{package} holds {len(moddirs)} module trees, expected one")
            release = moddirs[0].name
            progress(f"vm: [3/5] depmod {release}")
            _cmd(["depmod", "-b", str(base), release], "depmod", 300)
            progress("vm: [4/5] decompressing vmlinuz to vmlinux")
            vmlinux = decompress_vmlinuz((work / "root" / "boot" / f"vmlinuz-{release}").read_bytes())
            (work / "vmlinux").write_bytes(vmlinux)
            progress(f"vm: [5/5] building the initramfs (busybox-static + {', '.join(INITRD_MODULES)})")
            info = {"kernel": kernel, "package": package, "version": version, "release": release,
                    "modules": str(moddirs[0].relative_to(work)), "prepared": time.time()}
            _write_initrd(work, info, setup_s=round(time.monotonic() - t0, 1))
            work.rename(d)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        progress(f"vm: {kernel} ready: {package} {version} ({release}); first-time setup took "
                 f"{time.monotonic() - t0:.1f} s")
    return d


# -- running a command ----------------------------------------------------------------------

ENV = {"HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "LANG": "C.UTF-8", "TERM": "dumb", "PYTHONUNBUFFERED": "1", "TWLAB_IN_VM": "1"}


def _mounts(release: str, modules: Path, config: Path, artifacts: Path) -> str:
    """The rest of stage 1 for this run (busybox sh, sourced by the initramfs's init)."""
    r = lambda p: shlex.quote(f"/newroot{p}")       # noqa: E731 - a path inside the new root
    return f"""# twlab VM: this run's mounts, then stage 2 on the overlay root
mount -t proc proc /newroot/proc || fail "mounting /proc"
mount -t sysfs sysfs /newroot/sys || fail "mounting /sys"
mount -t devtmpfs devtmpfs /newroot/dev || fail "mounting /dev"
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts && mount -t tmpfs tmpfs /newroot/dev/shm || fail "/dev/pts, /dev/shm"
mkdir -p /newroot/lib/modules/{release} {r(artifacts)} /newroot/boot
mount -o bind {r(modules)} /newroot/lib/modules/{release} || fail "binding the kernel's modules"
: > /newroot/boot/config-{release} && mount -o bind {r(config)} /newroot/boot/config-{release} || fail "the kernel's config (CONFIG_HZ) at /boot"
mount -t 9p -o trans=virtio,version=9p2000.L,msize={MSIZE} twlabout {r(artifacts)} || fail "mounting the artifacts share"
echo 1 > /proc/sys/kernel/printk
umount /proc /sys /dev
exec switch_root /newroot /bin/sh /run/twlab-vm/ctl/stage2.sh
"""


def _stage2(argv: list[str]) -> str:
    """Stage 2: the host's own /bin/sh on the overlay root runs the command, then powers off."""
    q = shlex.quote
    exports = "\n".join(f"export {k}={q(v)}" for k, v in ENV.items())
    return f"""#!/bin/sh
# twlab VM, stage 2: one command, then power off
ctl=/run/twlab-vm/ctl
{exports}
cd {q(str(REPO))} || {{ echo "@@twlab-vm:fail no {REPO} in the VM@@"; echo o > /proc/sysrq-trigger; }}
echo "{START}"
{" ".join(q(a) for a in argv)} </dev/null >"$ctl/stdout"
rc=$?
echo "$rc" > "$ctl/rc"
echo "{EXIT}$rc@@"
sync
echo o > /proc/sysrq-trigger
sleep 10
"""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def run(kernel: str, twlab_args: list[str], artifacts: Path,
        progress: Callable[[str], None] = print, timeout_s: float = 900.0) -> tuple[int, str]:
    """Boot *kernel*, run ``invoke TWLAB_ARGS`` in the repo with its .venv, power off.
    See ``run_command``."""
    invoke = REPO / ".venv" / "bin" / "invoke"
    if not invoke.exists():
        raise EnvError(f"{invoke} not found: run scripts/setup first")
    return run_command(kernel, [str(REPO / ".venv" / "bin" / "python"), str(invoke), *twlab_args],
                       artifacts, progress, timeout_s)


def run_command(kernel: str, argv: list[str], artifacts: Path,
                progress: Callable[[str], None] = print, timeout_s: float = 900.0) -> tuple[int, str]:
    """Boot *kernel*, run *argv* in the repo's directory, power off.

    *artifacts* (created if needed) is shared writable and mounted inside at the same absolute
    path, so pass it to the command as ``--artifacts``. Returns (exit code, the command's stdout);
    its stderr streams through *progress*, line by line, as it runs. The whole serial console
    (boot included) is saved as ARTIFACTS/vm-console.log. Raises EnvError when the VM cannot be
    prepared or booted, or does not finish within *timeout_s* (qemu is killed). SIGTERM and
    SIGHUP stop it like Ctrl-C (qemu killed, control directory removed); qemu dies with this
    process even on SIGKILL (parent-death signal)."""
    from .runner import interrupts_as_exceptions

    main = threading.current_thread() is threading.main_thread()
    with interrupts_as_exceptions() if main else contextlib.nullcontext():
        return _run_command(kernel, argv, artifacts, progress, timeout_s)


def _run_command(kernel: str, argv: list[str], artifacts: Path, progress: Callable[[str], None],
                 timeout_s: float) -> tuple[int, str]:
    from .netns import tied

    d = prepare(kernel, progress)
    info = _ready(d) or {}
    if shutil.which(QEMU) is None:
        raise EnvError(f"{QEMU} not found: install qemu-system-x86 (scripts/setup does) to run a stock kernel")
    artifacts = ensure_dir(Path(artifacts).resolve())
    before = listing(artifacts)
    _remove_stale_control_dirs()
    ctl = Path(tempfile.mkdtemp(prefix=f"twlab-vm-{os.getpid()}-"))
    console: list[str] = []
    proc: subprocess.Popen | None = None
    t0 = time.monotonic()
    marks: dict[str, float] = {}
    try:
        release = info["release"]
        (ctl / "mounts.sh").write_text(_mounts(release, d / info["modules"],
                                               d / "root" / "boot" / f"config-{release}", artifacts))
        (ctl / "stage2.sh").write_text(_stage2(argv))
        shares = [("twlabroot", "/", True), ("twlabctl", str(ctl), False), ("twlabout", str(artifacts), False)]
        qemu = [QEMU, *QEMU_ARGS, "-kernel", str(d / "vmlinux"), "-initrd", str(d / "initrd"),
                "-append", APPEND, "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con"]
        for i, (tag, path, ro) in enumerate(shares):
            qemu += ["-fsdev", f"local,id=fs{i},path={path.replace(',', ',,')},security_model=none,multidevs=remap"
                     + (",readonly=on" if ro else ""),
                     "-device", f"virtio-9p-pci,fsdev=fs{i},mount_tag={tag}"]
        progress(f"vm: booting {info.get('package', kernel)} {info.get('version', '')} under qemu (TCG): "
                 f"{' '.join(shlex.quote(Path(a).name if a.startswith(str(REPO)) else a) for a in argv)}")
        proc = subprocess.Popen(tied(qemu), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)

        def read() -> None:
            assert proc is not None and proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                console.append(line)
                if START in line:
                    marks["start"] = time.monotonic()
                    progress(f"vm: booted in {marks['start'] - t0:.1f} s")
                elif EXIT in line:
                    marks["end"] = time.monotonic()
                elif "start" in marks and "end" not in marks:
                    progress(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(proc)
            reader.join(timeout=5)
            where = "during the command" if "start" in marks else "while booting"
            raise EnvError(f"the {kernel} VM did not finish within {timeout_s:g} s ({where}); qemu was "
                           f"killed; last console line: {_last(console)!r}") from None
        reader.join(timeout=10)
        total = time.monotonic() - t0
        failed = next((ln for ln in console if FAIL in ln), None)
        if failed:
            raise EnvError(f"the {kernel} VM failed to set up: {failed.split(FAIL, 1)[1].rstrip('@')}")
        try:
            rc = int((ctl / "rc").read_text().strip())
        except (OSError, ValueError):
            raise EnvError(f"the {kernel} VM ended (qemu exit {proc.returncode}) before the command "
                           f"returned; last console line: {_last(console)!r}") from None
        stdout = (ctl / "stdout").read_text(errors="replace") if (ctl / "stdout").exists() else ""
        if "start" in marks and "end" in marks:
            progress(f"vm: command exited {rc} after {marks['end'] - marks['start']:.1f} s; "
                     f"VM total {total:.1f} s (boot {marks['start'] - t0:.1f} s)")
        return rc, stdout
    finally:
        if proc is not None:
            _stop(proc)
            if proc.stdout is not None:
                proc.stdout.close()
        shutil.rmtree(ctl, ignore_errors=True)
        with contextlib.suppress(OSError):
            write_text(artifacts / "vm-console.log", "\n".join(console) + "\n")
        seal(artifacts, before)            # what the guest wrote, private and the invoking user's


def _remove_stale_control_dirs() -> None:
    """Control directories of runs that were SIGKILLed (their qemu died with them)."""
    for path in Path(tempfile.gettempdir()).glob("twlab-vm-*-*"):
        pid = path.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def _last(console: list[str]) -> str:
    lines = [ln for ln in console if ln.strip()]
    return lines[-1][:200] if lines else "(nothing on the console)"
