"""Boot a stock kernel under qemu (TCG) and run ONE command inside it.

This machine's kernel has no sch_netem; a stock Debian kernel has. ``run`` boots it with the
host's ``/`` shared read-only over 9p (a tmpfs overlay on top makes it writable, and throwaway),
runs ONE command there - normally ``invoke run SCENARIO --backend netns ...`` with the repo's own
.venv - and powers the VM off. The command's exit code and output come back, and its artifacts
land in a host directory shared writable over a second 9p share, mounted inside at the same
absolute path it has on the host (so report.json names the host's path).

    run("debian-12", ["run", "lost-ack", "--backend", "netns", "--artifacts", str(out)], out)
    run("debian-12", ["run", "lost-ack", "--backend", "docker", ...], out, docker=True)

Boot, inside the VM: the initramfs (stage 1, lab/vm/initrd.py) mounts the root share, the overlay
and a third, private 9p share (the control directory, a host temp dir) and sources this run's
mounts.sh from it, which mounts /proc, /sys, /dev, binds the kernel's modules at /lib/modules,
mounts the artifacts share and switch_roots into the overlay; stage 2 (a script the host wrote
into the control directory, run by the host's own /bin/sh) runs the command and powers off
through sysrq. With ``docker=True`` stage 2 first starts a Docker engine of the guest's own on a
disk that holds the lab's host image (lab/vm/engine.py), with more memory for the VM. Markers on
the serial console tell the host when stage 2 started, when the engine answered, when the
command started and how it ended; the split lands in ARTIFACTS/vm.json.

Every step is bounded: qemu is killed (SIGTERM, then SIGKILL) when ``timeout_s`` passes or the
caller is interrupted, and the control directory is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..artifacts import ensure_dir, listing, open_file, seal, write_text
from ..errors import EnvError, UsageError
from . import engine
from . import kernel as kernelmod
from .initrd import MSIZE
from .kernel import REPO, prepare, ready

__all__ = ["run", "run_command", "vm_backend", "BACKENDS", "QEMU_ARGS", "APPEND", "START", "EXIT", "FAIL", "MARK"]

QEMU_ARGS = ["-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "max", "-m", "512M",
             "-smp", "2", "-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none"]
APPEND = "console=ttyS0 panic=-1 quiet mitigations=off"
START, EXIT, FAIL, MARK = "@@twlab-vm:start@@", "@@twlab-vm:exit=", "@@twlab-vm:fail ", "@@twlab-vm:mark "

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
: > /newroot/boot/config-{release} && mount -o bind {r(config)} /newroot/boot/config-{release} \\
    || fail "the kernel's config (CONFIG_HZ) at /boot"
mount -t 9p -o trans=virtio,version=9p2000.L,msize={MSIZE} twlabout {r(artifacts)} \\
    || fail "mounting the artifacts share"
echo 1 > /proc/sys/kernel/printk
umount /proc /sys /dev
exec switch_root /newroot /bin/sh /run/twlab-vm/ctl/stage2.sh
"""


BACKENDS = ("netns", "docker")


def vm_backend(name: str) -> str:
    """The backend a run inside the VM uses for *name*: netns (which "auto" means there: no
    engine to start) or docker (the guest's own engine, lab/vm/engine.py)."""
    if name == "auto":
        return "netns"
    if name not in BACKENDS:
        raise UsageError(f"--backend {name!r}: inside a VM choose netns or docker")
    return name


def _stage2(argv: list[str], disk: engine.Disk | None = None) -> str:
    """Stage 2: the host's own /bin/sh on the overlay root runs the command, then powers off.
    With *disk*, the guest's Docker engine is started first (and stopped cleanly after the
    command when the disk is writable: the image was being loaded onto it)."""
    q = shlex.quote
    exports = "\n".join(f"export {k}={q(v)}" for k, v in ENV.items())
    up = f'echo "{MARK}booted@@"\n{engine.guest_start()}' if disk else ""
    down = engine.guest_stop() if disk and disk.writable else ""
    return f"""#!/bin/sh
# twlab VM, stage 2: one command, then power off
ctl=/run/twlab-vm/ctl
{exports}
fail() {{ echo "{FAIL}$*@@"; echo o > /proc/sysrq-trigger; sleep 10; exit 1; }}
cd {q(str(REPO))} || fail "no {REPO} in the VM"
{up}echo "{START}"
{" ".join(q(a) for a in argv)} </dev/null >"$ctl/stdout"
rc=$?
{down}echo "$rc" > "$ctl/rc"
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
        progress: Callable[[str], None] = print, timeout_s: float = 900.0,
        docker: bool = False) -> tuple[int, str]:
    """Boot *kernel*, run ``invoke TWLAB_ARGS`` in the repo with its .venv, power off.
    *docker*: with a Docker engine of the guest's own (for ``--backend docker``), the lab's host
    image loaded into it; the first such run makes the engine's disk (lab/vm/engine.py).
    See ``run_command``."""
    from ..runner import interrupts_as_exceptions

    invoke = REPO / ".venv" / "bin" / "invoke"
    if not invoke.exists():
        raise EnvError(f"{invoke} not found: run scripts/setup first")
    disk, image = None, None
    if docker:
        main = threading.current_thread() is threading.main_thread()
        with interrupts_as_exceptions() if main else contextlib.nullcontext():
            disk, image = engine.data_disk(kernel, Path(artifacts).resolve(), progress, timeout_s)
    return run_command(kernel, [str(REPO / ".venv" / "bin" / "python"), str(invoke), *twlab_args],
                       artifacts, progress, timeout_s, disk=disk, image=image)


def run_command(kernel: str, argv: list[str], artifacts: Path,
                progress: Callable[[str], None] = print, timeout_s: float = 900.0,
                disk: engine.Disk | None = None, image: dict | None = None) -> tuple[int, str]:
    """Boot *kernel*, run *argv* in the repo's directory, power off.

    *artifacts* (created if needed) is shared writable and mounted inside at the same absolute
    path, so pass it to the command as ``--artifacts``. Returns (exit code, the command's stdout);
    its stderr streams through *progress*, line by line, as it runs. The whole serial console
    (boot included) is saved as ARTIFACTS/vm-console.log, the timing split as ARTIFACTS/vm.json
    (and with *disk* the engine's log as ARTIFACTS/vm-dockerd.log). Raises EnvError when the VM
    cannot be prepared or booted, or does not finish within *timeout_s* (qemu is killed).
    SIGTERM and SIGHUP stop it like Ctrl-C (qemu killed, control directory removed); qemu dies
    with this process even on SIGKILL (parent-death signal)."""
    from ..runner import interrupts_as_exceptions

    main = threading.current_thread() is threading.main_thread()
    with interrupts_as_exceptions() if main else contextlib.nullcontext():
        return _run_command(kernel, argv, Path(artifacts).resolve(), progress, timeout_s, disk, image)


def _qemu_argv(d: Path, ctl: Path, artifacts: Path, disk: engine.Disk | None) -> list[str]:
    args = list(QEMU_ARGS)
    if disk:
        args[args.index("-m") + 1] = engine.MEMORY
    qemu = [kernelmod.QEMU, *args, "-kernel", str(d / "vmlinux"), "-initrd", str(d / "initrd"),
            "-append", APPEND, "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con"]
    shares = [("twlabroot", "/", True), ("twlabctl", str(ctl), False), ("twlabout", str(artifacts), False)]
    for i, (tag, path, ro) in enumerate(shares):
        qemu += ["-fsdev", f"local,id=fs{i},path={path.replace(',', ',,')},security_model=none,multidevs=remap"
                 + (",readonly=on" if ro else ""),
                 "-device", f"virtio-9p-pci,fsdev=fs{i},mount_tag={tag}"]
    return qemu + (disk.qemu_args() if disk else [])


def _run_command(kernel: str, argv: list[str], artifacts: Path, progress: Callable[[str], None],
                 timeout_s: float, disk: engine.Disk | None, image: dict | None) -> tuple[int, str]:
    from ..nsops import tied

    d = prepare(kernel, progress)
    info = ready(d) or {}
    if shutil.which(kernelmod.QEMU) is None:
        raise EnvError(f"{kernelmod.QEMU} not found: install qemu-system-x86 (scripts/setup does) to run "
                       "a stock kernel")
    ensure_dir(artifacts)
    before = listing(artifacts)
    _remove_stale_control_dirs()
    ctl = Path(tempfile.mkdtemp(prefix=f"twlab-vm-{os.getpid()}-"))
    console: list[str] = []
    proc: subprocess.Popen | None = None
    marks: dict[str, float] = {"qemu": time.monotonic()}
    try:
        release = info["release"]
        (ctl / "mounts.sh").write_text(_mounts(release, d / info["modules"],
                                               d / "root" / "boot" / f"config-{release}", artifacts))
        (ctl / "stage2.sh").write_text(_stage2(argv, disk))
        progress(f"vm: booting {info.get('package', kernel)} {info.get('version', '')} under qemu (TCG)"
                 + (" with a Docker engine" if disk else "") + ": "
                 + " ".join(shlex.quote(Path(a).name if a.startswith(str(REPO)) else a) for a in argv))
        proc = subprocess.Popen(tied(_qemu_argv(d, ctl, artifacts, disk)), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        _watch(proc, kernel, console, marks, progress, timeout_s)
        return _outcome(kernel, ctl, proc, console, marks, progress)
    finally:
        if proc is not None:
            _stop(proc)
            if proc.stdout is not None:
                proc.stdout.close()
        with contextlib.suppress(OSError):
            write_text(artifacts / "vm-console.log", "\n".join(console) + "\n")
            if disk:
                with open(ctl / "dockerd.log", "rb") as src, open_file(artifacts / "vm-dockerd.log") as dst:
                    shutil.copyfileobj(src, dst)
        with contextlib.suppress(OSError):
            _write_timing(artifacts / "vm.json", kernel, info, marks, disk, image)
        shutil.rmtree(ctl, ignore_errors=True)
        seal(artifacts, before)            # what the guest wrote, private and the invoking user's


def _watch(proc: subprocess.Popen, kernel: str, console: list[str], marks: dict[str, float],
           progress: Callable[[str], None], timeout_s: float) -> None:
    """Read the serial console until qemu ends (marking the times), or kill qemu at the timeout."""
    t0 = marks["qemu"]

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            console.append(line)
            if MARK in line:
                name, _, rest = line.split(MARK, 1)[1].rstrip("@").partition(" ")
                marks[name] = time.monotonic()
                if name == "booted":
                    progress(f"vm: booted in {marks[name] - t0:.1f} s")
                elif name == "engine":
                    progress(f"vm: Docker engine up in {marks[name] - marks.get('booted', t0):.1f} s "
                             f"(kernel {rest.strip() or '?'})")
            elif START in line:
                marks["start"] = time.monotonic()
                if "booted" not in marks:
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
    marks["off"] = time.monotonic()


def _outcome(kernel: str, ctl: Path, proc: subprocess.Popen, console: list[str], marks: dict[str, float],
             progress: Callable[[str], None]) -> tuple[int, str]:
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
        t = _split(marks)
        progress(f"vm: command exited {rc} after {t['command_s']:.1f} s; VM total {t['total_s']:.1f} s "
                 f"(boot {t['boot_s']:.1f} s" + (f", engine {t['engine_s']:.1f} s" if "engine_s" in t else "")
                 + ")")
    return rc, stdout


def _split(marks: dict[str, float]) -> dict[str, float]:
    """Seconds from qemu's start to stage 2 (boot), to the engine answering, of the command, in all."""
    t0, booted = marks["qemu"], marks.get("booted", marks.get("start"))
    out = {}
    if booted:
        out["boot_s"] = booted - t0
    if "engine" in marks:
        out["engine_s"] = marks["engine"] - marks.get("booted", t0)
    if "start" in marks and "end" in marks:
        out["command_s"] = marks["end"] - marks["start"]
    out["total_s"] = marks.get("off", time.monotonic()) - t0
    return {k: round(v, 2) for k, v in out.items()}


def _write_timing(path: Path, kernel: str, info: dict, marks: dict[str, float], disk: engine.Disk | None,
                  image: dict | None) -> None:
    memory = engine.MEMORY if disk else QEMU_ARGS[QEMU_ARGS.index("-m") + 1]
    doc = {"kernel": kernel, "release": info.get("release"), "memory": memory,
           "engine": bool(disk), **_split(marks)}
    if image:
        doc["image"] = image
    write_text(path, json.dumps(doc, indent=2) + "\n")


def _remove_stale_control_dirs() -> None:
    """Control directories of runs that were SIGKILLed (their qemu died with them)."""
    for path in Path(tempfile.gettempdir()).glob("twlab-vm-*-*"):
        pid = path.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def _last(console: list[str]) -> str:
    lines = [ln for ln in console if ln.strip()]
    return lines[-1][:200] if lines else "(nothing on the console)"
