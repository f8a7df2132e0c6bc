"""Run one twlab command inside a stock distribution kernel, booted under qemu (TCG).

    prepare("debian-12", print)  -> .cache/vm/debian-12/  (kernel, modules, vmlinux, initrd)
    run("debian-12", ["run", "lost-ack", "--backend", "netns", "--artifacts", str(out)], out)
    run("debian-13", ["run", "lossy-link", "--backend", "docker", ...], out, docker=True)

By job: kernel.py fetches and prepares the kernels (cached under .cache/vm/), initrd.py builds
the initramfs (stage 1 of the boot), boot.py boots qemu and runs the command (stage 2), engine.py
gives the guest a Docker engine of its own for ``--backend docker``.
"""

from .boot import BACKENDS, run, run_command, vm_backend
from .kernel import CACHE, KERNELS, REPO, Kernel, cache_dir, kernel_spec, prepare

__all__ = ["KERNELS", "Kernel", "kernel_spec", "cache_dir", "prepare", "run", "run_command", "vm_backend",
           "BACKENDS", "REPO", "CACHE"]
