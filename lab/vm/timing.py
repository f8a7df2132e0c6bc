"""Reading a VM's serial console as it runs: the markers' times (the split of a VM's time), the
command's progress streamed through, and the two deadlines (to the initramfs, and in all)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

from ..errors import EnvError
from .scripts import EXIT, MARK, START

__all__ = ["watch", "split"]


def _reader(proc: subprocess.Popen, console: list[str], marks: dict[str, float],
            progress: Callable[[str], None], hooks: dict[str, Callable[[], None]]) -> Callable[[], None]:
    t0 = marks["qemu"]

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            console.append(line)
            if MARK in line:
                name, _, rest = line.split(MARK, 1)[1].rstrip("@").partition(" ")
                marks[name] = time.monotonic()
                if name == "go":                  # a resumed guest's first line: as far as a boot's "init"
                    marks.setdefault("init", marks[name])
                if name in hooks:                 # e.g. "ready": the host saves the guest, then says go
                    threading.Thread(target=hooks[name], daemon=True, name=f"vm-{name}").start()
                if name == "booted":
                    progress(f"vm: booted in {marks[name] - t0:.1f} s")
                elif name == "engine":
                    progress(f"vm: Docker engine up in {marks[name] - marks.get('booted', t0):.1f} s "
                             f"(kernel {rest.strip() or '?'})")
            elif START in line:
                marks["start"] = time.monotonic()
            elif EXIT in line:
                marks["end"] = time.monotonic()
            elif "start" in marks and "end" not in marks:
                progress(line)
    return read


def watch(proc: subprocess.Popen, kernel: str, console: list[str], marks: dict[str, float],
          progress: Callable[[str], None], timeout_s: float, boot_s: float,
          stop: Callable[[subprocess.Popen], None], hooks: dict[str, Callable[[], None]] | None = None) -> None:
    """Read the serial console until qemu ends (marking the times; *hooks*: a mark's name -> what
    to start in a thread of its own when the mark appears); kill qemu when the kernel has not
    reached its initramfs within *boot_s* (BootFailed) or the whole run exceeds *timeout_s*."""
    from .boot import BootFailed, _last

    reader = threading.Thread(target=_reader(proc, console, marks, progress, hooks or {}), daemon=True)
    reader.start()
    t0 = marks["qemu"]
    while proc.poll() is None:
        now = time.monotonic()
        if "init" not in marks and now - t0 > boot_s:
            stop(proc)
            reader.join(timeout=5)
            raise BootFailed(f"the kernel {kernel} did not boot: no initramfs within {boot_s:g} s, qemu was "
                             f"killed; last console lines: {_last(console, 3)}")
        if now - t0 > timeout_s:
            stop(proc)
            reader.join(timeout=5)
            where = "during the command" if "start" in marks else "while booting"
            raise EnvError(f"the {kernel} VM did not finish within {timeout_s:g} s ({where}); qemu was "
                           f"killed; last console line: {_last(console)!r}")
        with _suppress_timeout():
            proc.wait(timeout=0.2)
    reader.join(timeout=10)
    marks["off"] = time.monotonic()


class _suppress_timeout:  # noqa: N801 - a tiny context manager
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        return kind is subprocess.TimeoutExpired


def split(marks: dict[str, float]) -> dict[str, float]:
    """Seconds from qemu's start to the kernel reaching its initramfs (kernel_s), to stage 2
    (boot_s), to the engine answering, of the command, from its end to qemu's exit (poweroff_s),
    in all."""
    t0, booted = marks["qemu"], marks.get("booted", marks.get("start"))
    out = {}
    if "init" in marks:
        out["kernel_s"] = marks["init"] - t0
    if booted:
        out["boot_s"] = booted - t0
    if "engine" in marks:
        out["engine_s"] = marks["engine"] - marks.get("booted", t0)
    if "start" in marks and "end" in marks:
        out["command_s"] = marks["end"] - marks["start"]
        if "off" in marks:
            out["poweroff_s"] = marks["off"] - marks["end"]
    out["total_s"] = marks.get("off", time.monotonic()) - t0
    return {k: round(v, 2) for k, v in out.items()}
