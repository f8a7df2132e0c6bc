"""Boot a kernel under qemu (KVM or TCG) and run ONE command inside it.

This machine's kernel has no sch_netem; a stock Debian kernel has. ``run`` boots it with the
host's ``/`` shared read-only over 9p (a tmpfs overlay on top makes it writable, and throwaway),
runs ONE command there - normally ``invoke run SCENARIO --backend netns ...`` (or a whole check,
or a matrix column) with the repo's own .venv - and powers the VM off. The command's exit code
and output come back, and its artifacts land in a host directory shared writable over a second
9p share, mounted inside at the same absolute path it has on the host (so report.json names the
host's path).

    run("debian-12", ["run", "lost-ack", "--backend", "netns", "--artifacts", str(out)], out)
    run("debian-12", ["run", "lost-ack", "--backend", "docker", ...], out, docker=True)

Boot, inside the VM: the initramfs (stage 1, lab/vm/initrd.py) mounts the root share, the overlay
and a third, private 9p share (the control directory, a host temp dir) and sources this run's
mounts.sh from it (lab/vm/scripts.py), which mounts /proc, /sys, /dev, binds the kernel's modules
at /lib/modules, mounts the artifacts share and switch_roots into the overlay; stage 2 (run by the
host's own /bin/sh) runs the command and powers off through sysrq. With ``docker=True`` stage 2
first starts a Docker engine of the guest's own (lab/vm/engine.py). Markers on the serial console
tell the host when the kernel reached its initramfs, when stage 2 started, when the engine
answered, when the command started and how it ended; the split lands in ARTIFACTS/vm.json, with
the accelerator (lab/vm/accel.py) and why.

Every step is bounded: a kernel that does not reach its initramfs within BOOT_S is killed and
reported in one line with its last console lines (BootFailed); qemu is killed (SIGTERM, then
SIGKILL) when ``timeout_s`` passes or the caller is interrupted, and the control directory is
removed.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..artifacts import drop_empty, listing, make_dir, open_file, seal, write_text
from ..errors import EnvError
from . import accel as accelmod
from . import engine, guest, resume, warmup
from . import kernel as kernelmod
from .kernel import REPO, kernel_spec, prepare, ready
from .scripts import BACKENDS, EXIT, FAIL, MARK, START, mounts, stage2, vm_backend
from .timing import split as _split
from .timing import watch as _watch

__all__ = ["run", "run_command", "vm_backend", "BACKENDS", "QEMU_ARGS", "APPEND", "START", "EXIT", "FAIL",
           "MARK", "BootFailed", "qemu_argv"]

QEMU_ARGS = ["-machine", "q35", "-m", "512M", "-smp", "2", "-nodefaults", "-display", "none", "-no-reboot",
             "-monitor", "none"]
APPEND = "console=ttyS0 panic=-1 quiet mitigations=off"
BOOT_S = {"tcg": 180.0, "kvm": 60.0}   # to the initramfs's first line (TCG here: 1-3 s idle, 2.6-4.4 s slow days)

# the old names (tests, callers)
_mounts, _stage2 = mounts, stage2


class BootFailed(EnvError):
    """The kernel did not reach its initramfs (or qemu could not start it)."""


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
        docker: bool = False, accel: str = "auto", env: dict[str, str] | None = None) -> tuple[int, str]:
    """Boot *kernel*, run ``invoke TWLAB_ARGS`` in the repo with its .venv, power off.
    *docker*: with a Docker engine of the guest's own (for ``--backend docker``), the lab's host
    image loaded into it; the first such run makes the engine's disk (lab/vm/engine.py). *env*:
    more environment for the command (e.g. lab.gvisor.for_vm's). See ``run_command``."""
    from ..runner import interrupts_as_exceptions

    invoke = REPO / ".venv" / "bin" / "invoke"
    if not invoke.exists():
        raise EnvError(f"{invoke} not found: run scripts/setup first")
    disk, image = None, None
    if docker:
        main = threading.current_thread() is threading.main_thread()
        with interrupts_as_exceptions() if main else contextlib.nullcontext():
            disk, image = engine.data_disk(kernel, Path(artifacts).resolve(), progress, timeout_s)
    python = str(REPO / ".venv" / "bin" / "python")
    argv = guest.command(python, twlab_args) or [python, str(invoke), *twlab_args]   # a column: no Invoke
    return run_command(kernel, argv, artifacts, progress, timeout_s, disk=disk, image=image, accel=accel, env=env)


def run_command(kernel: str, argv: list[str], artifacts: Path,
                progress: Callable[[str], None] = print, timeout_s: float = 900.0,
                disk: engine.Disk | None = None, image: dict | None = None,
                accel: str = "auto", env: dict[str, str] | None = None, saved: bool = True) -> tuple[int, str]:
    """Boot *kernel*, run *argv* in the repo's directory, power off. Under TCG the boot is resumed
    from the kernel's saved boot, or saves one on its way (lab/vm/resume.py); *saved* False: a cold
    boot, nothing saved.

    *artifacts* (created if needed) is shared writable and mounted inside at the same absolute
    path, so pass it to the command as ``--artifacts``. Returns (exit code, the command's stdout);
    its stderr streams through *progress*, line by line, as it runs. The whole serial console
    (boot included) is saved as ARTIFACTS/vm-console.log, the timing split and the accelerator as
    ARTIFACTS/vm.json (and with *disk* the engine's log as ARTIFACTS/vm-dockerd.log). Raises
    BootFailed when the kernel does not boot (what this run made of the artifacts directory is
    removed), EnvError when the VM cannot be prepared or does not finish within *timeout_s* (qemu
    is killed). SIGTERM and SIGHUP stop it like Ctrl-C (qemu killed, control directory removed);
    qemu dies with this process even on SIGKILL (parent-death signal)."""
    from ..runner import interrupts_as_exceptions

    main = threading.current_thread() is threading.main_thread()
    with interrupts_as_exceptions() if main else contextlib.nullcontext():
        return _run_command(kernel, argv, Path(artifacts).resolve(), progress, timeout_s, disk, image, accel,
                            env or {}, saved)


def qemu_argv(d: Path, info: dict, ctl: Path, artifacts: Path, disk: engine.Disk | None,
              accel: str = "tcg") -> list[str]:
    """qemu's whole command line for one boot of the kernel prepared in *d*."""
    args = list(QEMU_ARGS)
    if disk:
        args[args.index("-m") + 1] = engine.MEMORY
    qemu = [kernelmod.QEMU, *args, *accelmod.qemu_args(accel), "-kernel", str(d / info.get("image", "vmlinux")),
            "-initrd", str(d / "initrd"), "-append", APPEND, "-chardev", "stdio,id=con,signal=off",
            "-serial", "chardev:con", "-device", "vmgenid,guid=auto"]   # vmgenid: lab/vm/resume.py
    shares = [("twlabroot", "/", True), ("twlabctl", str(ctl), False), ("twlabout", str(artifacts), False)]
    for i, (tag, path, ro) in enumerate(shares):
        qemu += ["-fsdev", f"local,id=fs{i},path={path.replace(',', ',,')},security_model=none,multidevs=remap"
                 + (",readonly=on" if ro else ""),
                 "-device", f"virtio-9p-pci,fsdev=fs{i},mount_tag={tag}"]
    return qemu + (disk.qemu_args() if disk else [])


def _qemu_argv(d: Path, ctl: Path, artifacts: Path, disk: engine.Disk | None) -> list[str]:
    return qemu_argv(d, {"image": "vmlinux"}, ctl, artifacts, disk)


def compile_lab() -> None:
    """Byte-compile the lab's own modules on this side: the guest imports them from the read-only
    root share, where nothing it compiled would be kept (under TCG that is seconds per process).
    Likewise compose.yaml's parse is kept here, so the guest need not import PyYAML."""
    for sub in ("lab", "scenarios"):
        with contextlib.suppress(OSError):
            compileall.compile_dir(str(REPO / sub), quiet=2, workers=1)
    with contextlib.suppress(OSError):
        compileall.compile_file(str(REPO / "tasks.py"), quiet=2)
    from ..errors import TopologyError
    from ..topology import load

    with contextlib.suppress(TopologyError):     # keeps compose.yaml's parse for the guest (lab.topology)
        load()


def _shown(word: str) -> str:
    """A word of the guest's command as the progress line shows it."""
    if "lab.vm.guest" in word:
        return "(lab.vm.guest)"
    return Path(word).name if word.startswith(str(REPO)) else word


def _notes(spec, info: dict, progress: Callable[[str], None]) -> None:
    """One line on what the kernel's config lacks that some scenarios need."""
    from . import kconfig

    if info.get("lacks_optional"):
        progress("vm: note: " + kconfig.line(spec.name, info["lacks_optional"], kconfig.OPTIONAL))


def _run_command(kernel: str, argv: list[str], artifacts: Path, progress: Callable[[str], None],
                 timeout_s: float, disk: engine.Disk | None, image: dict | None, accel: str,
                 env: dict[str, str], saved: bool = True) -> tuple[int, str]:
    spec = kernel_spec(kernel)
    d = prepare(spec, progress)
    info = ready(d) or {}
    if shutil.which(kernelmod.QEMU) is None:
        raise EnvError(f"{kernelmod.QEMU} not found: install qemu-system-x86 (scripts/setup does) to run "
                       "a stock kernel")
    chosen = accelmod.choose(accel, spec.name, d, info, progress, kernelmod.QEMU)
    _notes(spec, info, progress)
    compile_lab()
    made = make_dir(artifacts)
    before = listing(artifacts)
    _remove_stale_control_dirs()
    ctl = Path(tempfile.mkdtemp(prefix=f"twlab-vm-{os.getpid()}-"))
    boot = _Boot(spec.name, ctl, progress, timeout_s, BOOT_S[chosen.name])
    failed = False
    try:
        (ctl / "mounts.sh").write_text(mounts(d / info["modules"] if info.get("modules") else None,
                                              d / info["config"] if info.get("config") else None, artifacts))
        warmup.write(ctl)
        (ctl / "stage2.sh").write_text(stage2(argv, disk, {**env, "TWLAB_VM_ACCEL": chosen.name}, warm=True))
        qemu = qemu_argv(d, info, ctl, artifacts, disk, chosen.name)
        how = resume.plan(d, qemu, [str(ctl), str(artifacts)], chosen.name, disk, saved)
        progress(f"vm: {'resuming the saved boot of' if how.mode == 'resume' else 'booting'} "
                 f"{info.get('package', kernel)} {info.get('version', '')} under qemu "
                 f"({chosen.name.upper()})" + (" with a Docker engine" if disk else "") + ": "
                 + " ".join(shlex.quote(_shown(a)) for a in argv))
        try:
            return boot.attempt(qemu, how)
        except BootFailed as exc:
            if how.mode != "resume":
                raise
            resume.forget(how.path)
            progress(f"vm: the saved boot of {spec.name} did not resume ({_not_resumed(boot.console, exc)}); "
                     "booting it instead")
            return boot.attempt(qemu, resume.Plan("save", how.path, "the saved boot did not resume"))
    except BootFailed:
        failed = True
        raise
    finally:
        boot.stop()
        shutil.rmtree(ctl, ignore_errors=True)
        if failed:                            # nothing of a kernel that did not boot is kept
            drop_empty(made)
            if spec.kind in ("local", "deb"):  # nor its cache (a rebuilt kernel is another key)
                shutil.rmtree(d, ignore_errors=True)
                (kernelmod.CACHE / f"{spec.key}.lock").unlink(missing_ok=True)
        else:
            _keep(artifacts, boot.console, ctl, disk, kernel, info, boot.marks, image, chosen, boot.how)
            seal(artifacts, before)           # what the guest wrote, private and the invoking user's


class _Boot:
    """One kernel's boot for one command: qemu started (cold, saving the boot on the way, or from
    the saved boot: lab/vm/resume.py), its console watched, the initramfs told to go on. A second
    attempt (a saved boot that did not resume) gets a qemu, a console and marks of its own."""

    def __init__(self, kernel: str, ctl: Path, progress: Callable[[str], None], timeout_s: float,
                 boot_s: float) -> None:
        self.kernel, self.ctl, self.progress, self.timeout_s, self.boot_s = kernel, ctl, progress, timeout_s, boot_s
        self.proc: subprocess.Popen | None = None
        self.console: list[str] = []
        self.marks: dict[str, float] = {}
        self.how = resume.Plan("cold", None, "")
        self.attempts = 0

    def attempt(self, qemu: list[str], how: resume.Plan) -> tuple[int, str]:
        from ..nsops import tied

        self.stop()
        self.attempts += 1
        self.how, self.console, self.marks = how, [], {"qemu": time.monotonic()}
        sock = self.ctl / f"qmp-{self.attempts}.sock"
        extra = [] if how.mode == "cold" else resume.qmp_args(sock)
        if how.mode == "resume":
            extra += resume.incoming_args(how.path)
        proc = self.proc = subprocess.Popen(tied(qemu + extra), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        hooks = {"ready": (lambda: self._save_then_go(proc, sock, how)) if how.mode == "save" else
                 (lambda: _go(proc))}
        if how.mode == "resume":
            threading.Thread(target=_resumed_then_go, args=(proc, sock, self.marks, self.console), daemon=True,
                             name="vm-resume").start()
        _watch(proc, self.kernel, self.console, self.marks, self.progress, self.timeout_s,
               resume.RESUME_S if how.mode == "resume" else self.boot_s, _stop, hooks)
        return _outcome(self.kernel, self.ctl, proc, self.console, self.marks, self.progress)

    def _save_then_go(self, proc: subprocess.Popen, sock: Path, how: resume.Plan) -> None:
        try:
            how.save_s = round(resume.save(sock, how.path), 2)
        except Exception as exc:                   # noqa: BLE001 - a boot not saved is still a boot
            how.why = f"not saved: {exc}"
            self.progress(f"vm: the boot of {self.kernel} was not saved ({exc}); it goes on")
        _go(proc)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


def _go(proc: subprocess.Popen) -> None:
    """The initramfs's go line (the host's clock, entropy) on qemu's stdin: the guest's serial port."""
    with contextlib.suppress(OSError, ValueError):
        proc.stdin.write(resume.go_line())
        proc.stdin.flush()


def _resumed_then_go(proc: subprocess.Popen, sock: Path, marks: dict[str, float], console: list[str]) -> None:
    """Once qemu has read the saved boot back, the go line, again each second until the guest
    answers (a resumed serial port may drop what it is given first); qemu stopped when it does not
    resume at all (the boot is then tried cold)."""
    try:
        resume.wait_running(sock)
        for _ in range(int(resume.RESUME_S)):
            _go(proc)
            deadline = time.monotonic() + 1.0
            while "go" not in marks and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            if "go" in marks or proc.poll() is not None:
                return
        reason = "the guest did not answer"
    except Exception as exc:                       # noqa: BLE001 - said in the retry's line
        reason = str(exc) or type(exc).__name__
    console.append(f"twlab: the saved boot did not resume: {reason}")
    _stop(proc)


def _not_resumed(console: list[str], exc: Exception) -> str:
    """Why a saved boot did not resume, in a few words: qemu's own last line, else ours."""
    qemu = [ln.split(": ", 1)[-1].strip() for ln in console if ln.startswith(f"{kernelmod.QEMU}: ")]
    ours = [ln.split("did not resume: ", 1)[-1] for ln in console if ln.startswith("twlab: the saved boot")]
    return (qemu or ours or [str(exc)])[-1]


def _keep(artifacts: Path, console: list[str], ctl: Path, disk, kernel: str, info: dict, marks: dict,
          image: dict | None, chosen: accelmod.Accel, how: resume.Plan | None = None) -> None:
    with contextlib.suppress(OSError):
        write_text(artifacts / "vm-console.log", "\n".join(console) + "\n")
        if disk:
            with open(ctl / "dockerd.log", "rb") as src, open_file(artifacts / "vm-dockerd.log") as dst:
                shutil.copyfileobj(src, dst)
    with contextlib.suppress(OSError):
        memory = engine.MEMORY if disk else QEMU_ARGS[QEMU_ARGS.index("-m") + 1]
        doc = {"kernel": kernel, "release": info.get("release"), "source": info.get("source"),
               "package": info.get("package"), "version": info.get("version"), "memory": memory,
               "engine": bool(disk), "accel": chosen.name, "accel_why": chosen.why, **_split(marks)}
        if how is not None:          # how it booted: resumed from its saved boot, saved one, or cold
            saved_s = how.save_s
            doc["saved_boot"] = "resumed" if how.mode == "resume" else "saved" if saved_s is not None else "cold"
            doc["saved_boot_why"] = how.why
            if saved_s is not None:
                doc["save_s"] = saved_s
        if image:
            doc["image"] = image
        write_text(artifacts / "vm.json", json.dumps(doc, indent=2) + "\n")


def _outcome(kernel: str, ctl: Path, proc: subprocess.Popen, console: list[str], marks: dict[str, float],
             progress: Callable[[str], None]) -> tuple[int, str]:
    failed = next((ln for ln in console if FAIL in ln), None)
    if failed:
        raise EnvError(f"the {kernel} VM failed to set up: {failed.split(FAIL, 1)[1].rstrip('@')}")
    if "init" not in marks:
        raise BootFailed(f"the kernel {kernel} did not boot (qemu exit {proc.returncode}); last console "
                         f"lines: {_last(console, 3)}")
    try:
        rc = int((ctl / "rc").read_text().strip())
    except (OSError, ValueError):
        crash = _crash(console)
        if crash:
            raise EnvError(f"the {kernel} guest kernel crashed before the command returned ({crash!r}; "
                           "vm-console.log has the trace): the emulator's or that kernel's fault, not "
                           "a verdict; run it again") from None
        raise EnvError(f"the {kernel} VM ended (qemu exit {proc.returncode}) before the command "
                       f"returned; last console line: {_last(console)!r}") from None
    stdout = (ctl / "stdout").read_text(errors="replace") if (ctl / "stdout").exists() else ""
    if "start" in marks and "end" in marks:
        t = _split(marks)
        progress(f"vm: command exited {rc} after {t['command_s']:.1f} s; VM total {t['total_s']:.1f} s "
                 f"(boot {t['boot_s']:.1f} s" + (f", engine {t['engine_s']:.1f} s" if "engine_s" in t else "")
                 + ")")
    return rc, stdout


def _remove_stale_control_dirs() -> None:
    """Control directories of runs that were SIGKILLed (their qemu died with them)."""
    for path in Path(tempfile.gettempdir()).glob("twlab-vm-*-*"):
        pid = path.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def _crash(console: list[str]) -> str | None:
    """The guest kernel's own report of a crash (an Oops, a BUG, a panic), if its console has one:
    under TCG an emulated CPU can trip over the kernel's live code patching (seen: "Oops: int3" in
    __kmalloc_cache_noprof on Debian 13's 6.12, as runc made a cgroup)."""
    found = [ln for ln in console if re.search(r"\b(Oops|BUG):|Kernel panic", ln)]
    return re.sub(r"^\[\s*[\d.]+\]\s*", "", found[0]).strip()[:160] if found else None


def _last(console: list[str], n: int = 1) -> str:
    lines = [re.sub(r"\s+", " ", ln).strip()[:160] for ln in console if ln.strip()]
    if n == 1:
        return lines[-1] if lines else "(nothing on the console)"
    return " | ".join(repr(ln) for ln in lines[-n:]) if lines else "(nothing on the console)"
