"""A saved boot: the guest paused in its initramfs, kept once per kernel and qemu, resumed instead
of booting.

Under TCG a boot spends its first seconds where every run is the same: qemu starting, the kernel
booting, the initramfs loading its modules (measured here, Debian 12: 2.9-3.2 s to the initramfs,
0.3-0.4 s more for its modules). The initramfs then stops before it mounts anything
(lab/vm/initrd.py prints ``@@twlab-vm:mark ready@@`` and waits for a ``go`` line on the console),
so the guest holds no state of any run yet: nothing mounted over 9p (qemu refuses to migrate a guest
with a mounted 9p share), no socket, no network namespace. The first cold boot of a kernel writes
the guest out there (qemu's migration to a file, QMP ``migrate``; 0.5-0.6 s, ~75 MB, mostly zero
pages left out) and goes on; every later boot of the same kernel, qemu and command line starts qemu
with ``-incoming`` on that file and is at the same point 0.2-0.4 s later.

What a resumed guest would otherwise share with every other one from the same file, the host gives
it in the go line: the wall clock (to the second, as a cold boot reads it from the emulated RTC)
and 32 random bytes written into the kernel's entropy pool; qemu's vmgenid device (on every boot)
tells the kernel it was resumed, and the kernel reseeds its random number generator then (Linux
5.18+, drivers/virt/vmgenid.c; CONFIG_VMGENID). The TCP secrets a run depends on (ISNs, port
offsets, timestamps) are drawn on first use, after that.

Only TCG boots without an engine disk are saved (KVM boots in a fraction of this; an engine disk
is written between runs, and a resumed kernel would trust what it cached of it). A file that does
not resume (another qemu build, a truncated write) is removed and the kernel booted cold, in one
line. ``TWLAB_VM_SAVED_BOOT=off`` boots cold every time (and saves nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENV", "DIR", "Plan", "plan", "key", "go_line", "save", "wait_running", "forget", "qmp_args",
           "incoming_args"]

ENV = "TWLAB_VM_SAVED_BOOT"
DIR = "saved-boot"                  # in the kernel's cache directory
SAVE_S = 60.0                       # qemu writing the guest out (0.5-0.6 s here)
RESUME_S = 30.0                     # qemu reading it back and the guest saying "go" (0.2-0.4 s here)

# qemu.qmp logs a refused connection at ERROR, which Python's last-resort handler would print
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())


@dataclass
class Plan:
    """What this boot does with the saved boot: ``resume`` it, ``save`` one on the way, or
    neither (``cold``); *path* is the file for the first two; *save_s* is set once a ``save`` boot
    has written it out."""

    mode: str
    path: Path | None
    why: str
    save_s: float | None = None


def key(argv: list[str], per_run: list[str]) -> str:
    """The saved boot's key: qemu (its binary's size and mtime), its command line with this run's
    own paths (*per_run*: the control and artifacts directories) left out, and the size and mtime of
    every file it names that exists (the kernel, the initramfs)."""
    stable = [a for a in argv if not any(p and p in a for p in per_run)]
    stats = {}
    for a in [shutil.which(stable[0]) or stable[0], *[x for arg in stable[1:] for x in arg.split(",")]]:
        path = a.split("=", 1)[-1]
        if path.startswith("/") and os.path.isfile(path):
            st = os.stat(path)
            stats[path] = [st.st_size, st.st_mtime_ns]
    text = json.dumps({"argv": stable, "files": stats}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def plan(cache: Path, argv: list[str], per_run: list[str], accel: str, disk: object | None,
         wanted: bool = True) -> Plan:
    """What a boot of *argv* (qemu's command line, without QMP or -incoming) does: resume the
    saved boot in *cache* (the kernel's directory) when there is one for its key, else save one."""
    if not wanted or os.environ.get(ENV, "on").lower() in ("off", "0", "no"):
        return Plan("cold", None, "saved boots off" if wanted else "a cold boot asked for")
    if accel != "tcg":
        return Plan("cold", None, f"{accel.upper()} boots fast")
    if disk is not None:
        return Plan("cold", None, "an engine disk")
    path = cache / DIR / f"{key(argv, per_run)}.bin"
    _remove_stale(path.parent)
    return Plan("resume", path, "saved") if path.is_file() else Plan("save", path, "first boot")


def _remove_stale(d: Path) -> None:
    """Half-written saves of processes that are gone (``.KEY.bin.PID.tmp``)."""
    for tmp in d.glob(".*.tmp") if d.is_dir() else ():
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            tmp.unlink(missing_ok=True)


def qmp_args(sock: Path) -> list[str]:
    return ["-qmp", f"unix:{sock},server=on,wait=off"]


def incoming_args(path: Path) -> list[str]:
    return ["-incoming", f"exec:cat {shlex.quote(str(path))}"]


def go_line() -> bytes:
    """What the initramfs waits for: ``go SECONDS HEX`` (the wall clock, bytes for the entropy
    pool), after an empty line (a resumed UART can drop the first byte it is given)."""
    return f"\ngo {round(time.time())} {secrets.token_hex(32)}\n".encode()


async def _connect(sock: str, deadline: float):
    from qemu.qmp import QMPClient

    while True:                      # qemu makes the socket as it starts
        if os.path.exists(sock):
            qmp = QMPClient("twlab")
            try:
                await qmp.connect(sock)
                return qmp
            except Exception:        # noqa: BLE001 - not listening yet (qemu.qmp wraps the OSError)
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no QMP socket at {sock}") from None
        await asyncio.sleep(0.02)


async def _running(sock: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    qmp = await _connect(str(sock), deadline)
    try:
        while not (await qmp.execute("query-status")).get("running"):
            status = (await qmp.execute("query-migrate")).get("status")
            if status == "failed" or time.monotonic() > deadline:
                raise TimeoutError(f"qemu did not read the saved boot back (migration: {status})")
            await asyncio.sleep(0.02)
    finally:
        await qmp.disconnect()


def wait_running(sock: Path, timeout_s: float = RESUME_S) -> None:
    """Until the resumed guest runs (qemu, its QMP socket at *sock*, has read the whole file back).
    Its own event loop: this runs in a thread of its own beside the console's reader."""
    asyncio.run(_running(sock, timeout_s))


async def _write_out(sock: Path, tmp: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    qmp = await _connect(str(sock), deadline)
    try:
        await qmp.execute("migrate", {"uri": f"exec:cat > {shlex.quote(str(tmp))}"})
        while time.monotonic() < deadline:
            status = (await qmp.execute("query-migrate")).get("status")
            if status in ("completed", "failed", "cancelled"):
                return status == "completed"
            await asyncio.sleep(0.02)
        await qmp.execute("migrate_cancel")
        return False
    finally:
        with contextlib.suppress(Exception):          # the guest goes on, saved or not
            if not (await qmp.execute("query-status")).get("running"):
                await qmp.execute("cont")
        await qmp.disconnect()


def save(sock: Path, path: Path, timeout_s: float = SAVE_S) -> float:
    """Write the guest (waiting at ``ready``; qemu's QMP socket at *sock*) out to *path* and let it
    go on; the seconds it took.
    The file appears whole or not at all (written beside, then renamed); older saved boots of the
    kernel (other keys) are removed."""
    start = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ok = False
    try:
        ok = asyncio.run(_write_out(sock, tmp, timeout_s))
    finally:
        if ok:
            os.replace(tmp, path)
            for old in path.parent.glob("*.bin"):
                if old != path:
                    old.unlink(missing_ok=True)
        else:
            tmp.unlink(missing_ok=True)
    if not ok:
        raise RuntimeError("qemu did not write the guest out")
    return time.monotonic() - start


def forget(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
