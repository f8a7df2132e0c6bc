"""What the guest does in the background while its Python starts: load the kernel modules a lab run
would otherwise load on demand, and read ahead the files the run will read over the 9p root share.

Under TCG both are slow where they are first needed. Measured in Debian 12's kernel (lost-ack,
netns, this 2-core machine, two boots each):

- **modules**: on demand, the first ``nft`` of a run (the fault table) took 2.9 s and the lab's
  start 5.9-6.0 s, each missing module a ``request_module()`` that execs modprobe. Loaded up
  front in one ``modprobe -a`` (0.4-0.7 s, beside Python's start), the lab's start took 5.0-5.2 s
  and the run 8.6-8.9 s instead of 10.6-10.9 s;
- **read-ahead**: the first read of each file crosses 9p (a round trip through the emulated
  virtio device per request). Reading the run's files ahead in a second background job (about
  2 s for ~40 MB, on the other vCPU) took the command from 15.5-15.7 s to 13.6-14.6 s.

A module that is built in, or missing, is not an error (``modprobe -q``); a file that is not there
is skipped. Neither changes what a run observes: the same modules load either way, only earlier.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from functools import cache
from pathlib import Path

from .kernel import REPO

__all__ = ["MODULES", "PACKAGES", "TOOLS", "listing", "script", "sources", "write"]

# what a netns run loaded on demand in Debian 12's kernel (/proc/modules before and after); the
# whole catalog, both families (tests/integration/test_vm.py keeps the list true)
MODULES = ("veth", "sch_netem", "nf_tables", "nfnetlink_log", "nft_log", "nft_objref", "inet_diag", "tcp_diag")
# the guest's imports beyond what the host process has loaded when it boots the VM: whole packages
PACKAGES = ("invoke", "pyroute2", "dpkt", "rich", "yaml")
# the tools a run execs (lab.tools), with their shared libraries
TOOLS = ("tcpdump", "nft", "ip", "nsenter", "setpriv", "modprobe")


def script(ctl: str) -> str:
    """Stage 2's lines (POSIX sh) that start the jobs in the background: the modules, the
    read-ahead (warm.list) and a look at each compiled module's source (warm.stat: an import
    checks the source's mtime, each first look a 9p round trip)."""
    modules = " ".join(MODULES)
    return (f"(command -v modprobe >/dev/null && modprobe -q -a {modules}) >/dev/null 2>&1 &\n"
            f'(xargs -r cat < "{ctl}/warm.list") >/dev/null 2>&1 &\n'
            f'(xargs -r ls -d < "{ctl}/warm.stat") >/dev/null 2>&1 &\n')


def write(ctl: Path) -> None:
    """warm.list and warm.stat in the run's control directory *ctl*."""
    files = listing()
    (ctl / "warm.list").write_text(files)
    (ctl / "warm.stat").write_text("".join(f"{s}\n" for s in sources(files.splitlines())))


def sources(files: list[str]) -> list[str]:
    """The source beside each compiled module of *files* (X/__pycache__/m.TAG.pyc -> X/m.py)."""
    tag = f".{sys.implementation.cache_tag}.pyc"
    out = []
    for f in files:
        path = Path(f)
        if path.parent.name == "__pycache__" and path.name.endswith(tag):
            src = path.parent.parent / (path.name[: -len(tag)] + ".py")
            if src.is_file():
                out.append(str(src))
    return out


def listing() -> str:
    """The files to read ahead, one per line: the modules this process has loaded (the guest
    runs the same code), every compiled module of PACKAGES and of the lab, the tools and their
    libraries, and Python itself."""
    # Python and its libraries first: the guest's first process needs them before any module
    files = dict.fromkeys([*_binaries(), *_loaded(), *_compiled()])
    return "".join(f"{f}\n" for f in files if "\n" not in f)


def _loaded() -> list[str]:
    out = []
    for entry in list(sys.modules.values()):
        path = getattr(entry, "__cached__", None) or getattr(entry, "__file__", None)
        if isinstance(path, str) and os.path.isfile(path):
            out.append(path)
    return out


def _compiled() -> list[str]:
    roots = [REPO / "lab", REPO / "scenarios"]
    site = Path(sysconfig.get_paths()["purelib"])
    roots += [site / p for p in PACKAGES]
    tag = f".{sys.implementation.cache_tag}.pyc"
    return [str(p) for root in roots if root.is_dir() for p in root.rglob(f"*{tag}")]


def _binaries() -> list[str]:
    exe = [os.path.realpath(sys.executable)]
    libdir, lib = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and lib and os.path.isfile(os.path.join(libdir, lib)):
        exe.append(os.path.join(libdir, lib))            # a shared libpython (pyenv builds one)
    tools = [t for t in (shutil.which(name) for name in TOOLS) if t]
    return exe + tools + list(_libraries(tuple(exe + tools)))


@cache
def _libraries(binaries: tuple[str, ...]) -> tuple[str, ...]:
    """The shared libraries *binaries* load, as ldd resolves them (none where ldd is missing)."""
    if not shutil.which("ldd"):
        return ()
    try:
        out = subprocess.run(["ldd", *binaries], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(dict.fromkeys(m.group(1) for m in re.finditer(r"=> (/\S+) \(", out)))
