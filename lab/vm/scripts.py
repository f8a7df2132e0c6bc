"""What the guest runs after the initramfs: this run's mounts (the rest of stage 1) and stage 2,
written by the host into the run's control directory. Markers on the serial console tell the host
where the boot is: ``init`` (the initramfs started: the kernel booted), ``booted`` (stage 2
started), ``engine`` (the guest's Docker engine answered), then the command's start and exit."""

from __future__ import annotations

import shlex
from pathlib import Path

from . import engine, warmup
from .initrd import MSIZE
from .kernel import REPO

__all__ = ["ENV", "START", "EXIT", "FAIL", "MARK", "mounts", "stage2", "BACKENDS", "vm_backend"]

START, EXIT, FAIL, MARK = "@@twlab-vm:start@@", "@@twlab-vm:exit=", "@@twlab-vm:fail ", "@@twlab-vm:mark "

ENV = {"HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "LANG": "C.UTF-8", "TERM": "dumb", "PYTHONUNBUFFERED": "1", "TWLAB_IN_VM": "1",
       "PYTHONDONTWRITEBYTECODE": "1"}      # the host compiled the lab's modules (boot.compile_lab)


def mounts(modules: Path | None, config: Path | None, artifacts: Path) -> str:
    """The rest of stage 1 for this run (busybox sh, sourced by the initramfs's init): the kernel's
    modules at /lib/modules/$(uname -r), its config at /boot/config-$(uname -r) (CONFIG_HZ), the
    artifacts share, then switch_root into stage 2."""
    r = lambda p: shlex.quote(f"/newroot{p}")       # noqa: E731 - a path inside the new root
    mods = (f'mkdir -p "/newroot/lib/modules/$rel"\n'
            f'mount -o bind {r(modules)} "/newroot/lib/modules/$rel" || fail "binding the kernel\'s modules"\n'
            if modules else "")
    conf = (f': > "/newroot/boot/config-$rel" && mount -o bind {r(config)} "/newroot/boot/config-$rel" \\\n'
            f'    || fail "the kernel\'s config (CONFIG_HZ) at /boot"\n' if config else "")
    return f"""# twlab VM: this run's mounts, then stage 2 on the overlay root
rel=$(uname -r)
mount -t proc proc /newroot/proc || fail "mounting /proc"
mount -t sysfs sysfs /newroot/sys || fail "mounting /sys"
mount -t devtmpfs devtmpfs /newroot/dev || fail "mounting /dev"
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts && mount -t tmpfs tmpfs /newroot/dev/shm || fail "/dev/pts, /dev/shm"
mkdir -p {r(artifacts)} /newroot/boot
{mods}{conf}mount -t 9p -o trans=virtio,version=9p2000.L,msize={MSIZE} twlabout {r(artifacts)} \\
    || fail "mounting the artifacts share"
echo 1 > /proc/sys/kernel/printk
umount /proc /sys /dev
exec switch_root /newroot /bin/sh /run/twlab-vm/ctl/stage2.sh
"""


BACKENDS = ("netns", "docker")


def vm_backend(name: str) -> str:
    """The backend a run inside the VM uses for *name*: netns (which "auto" means there: no
    engine to start) or docker (the guest's own engine, lab/vm/engine.py)."""
    from ..errors import UsageError

    if name == "auto":
        return "netns"
    if name not in BACKENDS:
        raise UsageError(f"--backend {name!r}: inside a VM choose netns or docker")
    return name


def stage2(argv: list[str], disk: engine.Disk | None = None, env: dict[str, str] | None = None,
           warm: bool = False) -> str:
    """Stage 2: the host's own /bin/sh on the overlay root runs the command, then powers off.
    With *disk*, the guest's Docker engine is started first (and stopped cleanly after the
    command when the disk is writable: the image was being loaded onto it). *warm*: the lab's
    kernel modules loaded, and the files the control directory's warm.list and warm.stat name
    read or looked at, in the background meanwhile (lab/vm/warmup.py)."""
    q = shlex.quote
    exports = "\n".join(f"export {k}={q(v)}" for k, v in {**ENV, **(env or {})}.items())
    up = engine.guest_start() if disk else ""
    down = engine.guest_stop() if disk and disk.writable else ""
    return f"""#!/bin/sh
# twlab VM, stage 2: one command, then power off
echo "{MARK}booted@@"
ctl=/run/twlab-vm/ctl
{exports}
fail() {{ echo "{FAIL}$*@@"; echo o > /proc/sysrq-trigger; sleep 10; exit 1; }}
cd {q(str(REPO))} || fail "no {REPO} in the VM"
{warmup.script("$ctl") if warm else ""}{up}echo "{START}"
{" ".join(q(a) for a in argv)} </dev/null >"$ctl/stdout"
rc=$?
{down}echo "$rc" > "$ctl/rc"
echo "{EXIT}$rc@@"
sync
echo o > /proc/sysrq-trigger
sleep 10
"""
