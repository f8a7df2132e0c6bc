"""Run twlab commands inside another kernel, booted under qemu (KVM where it can, else TCG).

    prepare("debian-12", print)  -> .cache/vm/debian-12/  (kernel, modules, vmlinux, initrd)
    run("debian-12", ["run", "lost-ack", "--backend", "netns", "--artifacts", str(out)], out)
    run("debian:6.1.0-47-amd64", [...], out)   run("/src/linux/out", [...], out)   (any --kernel)
    run("debian-13", ["run", "lossy-link", "--backend", "docker", ...], out, docker=True)

By job: kernel.py says what a --kernel means and prepares it (debian.py fetches Debian's packages,
local.py reads a kernel given by path, kconfig.py its config), initrd.py builds the initramfs
(stage 1 of the boot), scripts.py writes the rest of the boot, accel.py picks KVM or TCG,
boot.py boots qemu and runs the command (timing.py reads its console; resume.py keeps a saved
boot under TCG and resumes it), engine.py gives the guest
a Docker engine of its own for ``--backend docker``, commands.py runs `run`, `check` and a matrix
column there.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["KERNELS", "Kernel", "kernel_spec", "cache_dir", "prepare", "run", "run_command", "vm_backend",
           "BACKENDS", "REPO", "CACHE", "BootFailed", "label"]

# each name from its module on first use (PEP 562): the guest's column (lab.vm.guest) imports this
# package, and under TCG importing boot.py and what it needs took 2.0 s of its start
_FROM = {**dict.fromkeys(("BACKENDS", "BootFailed", "run", "run_command", "vm_backend"), "boot"),
         **dict.fromkeys(("CACHE", "KERNELS", "REPO", "Kernel", "cache_dir", "kernel_spec", "label", "prepare"),
                         "kernel")}


def __getattr__(name: str) -> Any:
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
    globals()[name] = value
    return value
