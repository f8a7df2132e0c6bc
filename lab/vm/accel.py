"""KVM or TCG: ``--accel auto|kvm|tcg``.

``auto`` uses KVM when /dev/kvm can run the guest, and TCG (qemu's emulation) otherwise. Whether it
can is probed once per kernel, host boot and qemu version and kept in ``.cache/vm/accel.json``: a
/dev/kvm that is missing or cannot be opened says so at once; one that opens is tried for real,
booting the kernel under KVM with its own initramfs until the initramfs's first line
(``@@twlab-vm:mark init@@``), within PROBE_S seconds. A nested /dev/kvm can open and still never
bring a stock kernel that far (as on the machine this was written on, where the kernel stalls in
its first clock calibration): then ``auto`` says why in one line and runs under TCG, and ``kvm``
is refused with that line.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvError, UsageError

__all__ = ["ACCELS", "Accel", "check", "choose", "probe", "qemu_args", "PROBE_S"]

ACCELS = ("auto", "kvm", "tcg")
PROBE_S = 20.0                 # KVM reaches the initramfs in well under a second when it works
KVM_GET_API_VERSION = 0xAE00
INIT_MARK = "@@twlab-vm:mark init@@"


@dataclass(frozen=True)
class Accel:
    name: str                  # kvm or tcg
    why: str                   # one line: why this one

    def qemu_args(self) -> list[str]:
        return qemu_args(self.name)


def qemu_args(name: str) -> list[str]:
    """qemu's accelerator and CPU for *name*: KVM passes the host's CPU through; TCG emulates
    every feature it can (``max``) on all host threads."""
    if name == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def check(requested: str) -> str:
    """--accel as given, refused (a usage error) unless auto, kvm or tcg: before anything boots."""
    if requested not in ACCELS:
        raise UsageError(f"--accel {requested!r}: choose auto, kvm or tcg")
    return requested


def _device() -> str | None:
    """Why /dev/kvm cannot be used at all, or None when it opens and speaks KVM's API 12."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return "no /dev/kvm on this machine (no KVM, or its module is not loaded)"
        return f"/dev/kvm cannot be opened ({os.strerror(exc.errno)}; root or the kvm group can)"
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as exc:
        return f"/dev/kvm does not answer KVM_GET_API_VERSION ({os.strerror(exc.errno)})"
    finally:
        os.close(fd)
    return None if version == 12 else f"/dev/kvm speaks KVM API {version}, not 12"


def _cache_key(kernel_key: str, qemu: str) -> str:
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "?"
    try:
        version = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        version = "?"
    return f"{kernel_key}|{platform.release()}|{boot_id}|{version}"


def probe(qemu: str, image: Path, initrd: Path, kernel: str, timeout_s: float = PROBE_S) -> str | None:
    """Boot *image* under KVM until its initramfs prints its first line: None when it did, else
    why not (one line, with the last console line)."""
    from ..nsops import tied

    argv = [qemu, "-machine", "q35", *qemu_args("kvm"), "-m", "256M", "-smp", "1", "-nodefaults",
            "-display", "none", "-no-reboot", "-monitor", "none", "-kernel", str(image), "-initrd", str(initrd),
            "-append", "console=ttyS0 panic=-1 loglevel=4", "-serial", "stdio"]
    proc = subprocess.Popen(tied(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line:
                lines.append(line)
            if INIT_MARK in line:
                seen.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    t0 = time.monotonic()
    while not seen.is_set() and proc.poll() is None and time.monotonic() - t0 < timeout_s:
        seen.wait(0.1)
    proc.kill()
    proc.wait(timeout=10)
    reader.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    if seen.is_set():
        return None
    last = lines[-1][:160] if lines else "nothing on the console"
    if proc.returncode not in (None, -9) and time.monotonic() - t0 < timeout_s:
        return f"qemu could not start {kernel} under KVM: {last!r}"
    return f"/dev/kvm opens but {kernel} did not reach its initramfs under KVM within {timeout_s:g} s " \
           f"(last console line: {last!r})"


def _cached(path: Path, key: str, compute: Callable[[], str | None]) -> str | None:
    from .kernel import locked

    with locked(path.with_suffix(".lock")):
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        if key in known:
            return known[key]["why"]
        why = compute()
        known[key] = {"why": why, "at": time.time()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=2) + "\n")
        tmp.rename(path)
        return why


def choose(requested: str, kernel: str, d: Path, info: dict, progress: Callable[[str], None],
           qemu: str = "qemu-system-x86_64") -> Accel:
    """The accelerator for booting the prepared kernel in *d*: KVM when asked for (or, with auto,
    when /dev/kvm can run it), else TCG, saying in one line why KVM was not used."""
    from .kernel import CACHE

    if check(requested) == "tcg":
        return Accel("tcg", "--accel tcg")
    why = _device()
    if why is None:
        image = d / info.get("image", "vmlinux")
        why = _cached(CACHE / "accel.json", _cache_key(info.get("key", kernel), qemu),
                      lambda: probe(qemu, image, d / "initrd", kernel))
    if why is None:
        return Accel("kvm", "/dev/kvm runs this kernel")
    if requested == "kvm":
        raise EnvError(f"--accel kvm: {why}; use --accel tcg (or auto)")
    progress(f"vm: not using KVM: {why}; running under TCG")
    return Accel("tcg", why)
