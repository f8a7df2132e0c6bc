"""The kernels lab.vm boots, and their first-time setup under .cache/vm/<key>/.

``--kernel`` takes:

* a preset: ``debian-12`` (bookworm's 6.1, from the machine's own apt lists), ``debian-13``
  (trixie's 6.12) or ``debian-11`` (bullseye's 5.10): the kernel ``linux-image-amd64`` depends on
  in that suite (another suite's package lists are fetched into ``.cache/vm/apt/<suite>/``);
* ``debian:VERSION``: the package ``linux-image-VERSION`` from any of those lists, e.g.
  ``debian:6.1.0-47-amd64`` (lab/vm/debian.py);
* a path: a kernel ``.deb``; a directory holding a kernel image and its modules (a build tree's
  bzImage beside an INSTALL_MOD_PATH tree, or an unpacked package); or a kernel image alone, with
  everything the lab needs built in (lab/vm/local.py).

First-time setup (``prepare``): fetch or copy the kernel into ``root/`` (``dpkg -x`` for a
package; a package apt fetched is kept in ``.cache/vm/debs/``), ``depmod`` its modules (the guest
loads sch_netem, nf_tables, veth ... on demand through the host's modprobe), turn the image into a
plain ELF vmlinux where it has a PVH entry
(about twice as fast to boot under TCG as the bzImage, whose decompressor is emulated; else the
bzImage boots), read its config (lab/vm/kconfig.py: a kernel that lacks what the lab cannot do
without is refused in one line), and write a small initramfs (lab/vm/initrd.py). A kernel given by
path is cached under the digest of its image and module tree, so a rebuilt kernel is set up anew.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvError, UsageError
from . import debian, kconfig, local
from .initrd import INITRD_VERSION, build_initrd, find_busybox
from .local import decompress_vmlinuz

__all__ = ["KERNELS", "Kernel", "kernel_spec", "cache_dir", "prepare", "ready", "locked", "REPO", "CACHE",
           "QEMU", "decompress_vmlinuz", "FORMS"]

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "vm"
QEMU = "qemu-system-x86_64"
FORMS = "debian-11, debian-12, debian-13, debian:VERSION (e.g. debian:6.1.0-47-amd64), or a path to a kernel " \
        ".deb, to a directory with a kernel image and its modules, or to a kernel image"


@dataclass(frozen=True)
class Kernel:
    name: str                   # what --kernel took
    key: str                    # its cache directory under .cache/vm/ (and its name in file names)
    kind: str                   # preset, debian (debian:VERSION), deb, local
    description: str
    meta_package: str | None = None   # a preset: the distribution's "current kernel" package ...
    image_re: str | None = None       # ... and its dependency that carries the kernel
    suite: str | None = None    # a Debian suite other than the machine's own (its lists are cached)
    package: str | None = None  # debian:VERSION: the package
    path: Path | None = None    # deb, local: where it is


KERNELS: dict[str, Kernel] = {
    "debian-11": Kernel("debian-11", "debian-11", "preset", "Debian 11 (bullseye) stock kernel, linux-image-amd64",
                        "linux-image-amd64", r"linux-image-5\.10\.0-\d+-amd64", suite="bullseye"),
    "debian-12": Kernel("debian-12", "debian-12", "preset", "Debian 12 (bookworm) stock kernel, linux-image-amd64",
                        "linux-image-amd64", r"linux-image-6\.1\.0-\d+-amd64"),
    "debian-13": Kernel("debian-13", "debian-13", "preset", "Debian 13 (trixie) stock kernel, linux-image-amd64",
                        "linux-image-amd64", r"linux-image-6\.12\.\d+\+deb13-amd64", suite="trixie"),
}


@functools.lru_cache(maxsize=64)
def kernel_spec(name: str) -> Kernel:
    """What --kernel NAME means; a usage error (one line) when it means nothing."""
    if name in KERNELS:
        return KERNELS[name]
    if name.startswith("debian:"):
        package, suite = debian.find_package(name.split(":", 1)[1], CACHE)
        version = package.removeprefix("linux-image-")
        return Kernel(name, f"debian-{version}", "debian", f"Debian's {package}", suite=suite, package=package)
    path = Path(name).expanduser()
    if "/" in name or path.exists():
        if not path.exists():
            raise UsageError(f"--kernel {name}: no such file or directory")
        path = path.resolve()
        if path.is_file() and path.suffix == ".deb":
            return Kernel(name, f"deb-{local.deb_key(path)}", "deb", f"the kernel package {path.name}", path=path)
        found = local.find(path)
        return Kernel(name, f"local-{local.source_key(found)}", "local", f"the kernel at {path}", path=path)
    raise UsageError(f"unknown kernel {name!r}: choose one of {FORMS}")


def cache_dir(kernel: str | Kernel) -> Path:
    return CACHE / (kernel if isinstance(kernel, Kernel) else kernel_spec(kernel)).key


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ready(d: Path) -> dict | None:
    try:
        info = json.loads((d / "kernel.json").read_text())
    except (OSError, ValueError):
        return None
    if "config" not in info:            # prepared by an older lab/vm: the package's own config
        conf = f"root/boot/config-{info.get('release')}"
        info["config"] = conf if (d / conf).is_file() else None
    info.setdefault("key", d.name)
    image = info.get("image", "vmlinux")
    modules_ok = info.get("modules") is None or (d / info["modules"]).is_dir()
    if all((d / f).is_file() for f in (image, "initrd")) and modules_ok:
        return info
    return None


def _write_initrd(d: Path, info: dict, **extra) -> None:
    """(Re)build d/initrd and record its version in d/kernel.json, each replaced atomically (a
    VM booting meanwhile reads the old or the new file, whole)."""
    data = build_initrd(d / info["modules"] if info.get("modules") else None, find_busybox())
    (d / "initrd.tmp").write_bytes(data)
    (d / "initrd.tmp").rename(d / "initrd")
    info = {**info, **extra, "initrd_version": INITRD_VERSION}
    (d / "kernel.json.tmp").write_text(json.dumps(info, indent=2) + "\n")
    (d / "kernel.json.tmp").rename(d / "kernel.json")


def prepare(kernel: str | Kernel = "debian-12", progress: Callable[[str], None] = print) -> Path:
    """The cache directory of *kernel*, set up the first time (download or copy, extract, build).

    Holds vmlinux (or bzImage), initrd, config (when one was found), kernel.json (package, version,
    release, what the config lacks) and the kernel's files (``root/``, whose module tree the VM
    binds at /lib/modules)."""
    spec = kernel if isinstance(kernel, Kernel) else kernel_spec(kernel)
    d = cache_dir(spec)
    info = ready(d)
    if info and info.get("initrd_version") == INITRD_VERSION:
        return d
    if info and _refresh_initrd(spec, d, progress):
        return d
    _require_tools(spec)
    with locked(CACHE / f"{spec.key}.lock"):
        info = ready(d)
        if info:                         # another process prepared it while we waited
            if info.get("initrd_version") != INITRD_VERSION:
                _write_initrd(d, info)
            return d
        _first_time_setup(spec, d, progress)
    return d


def _refresh_initrd(spec: Kernel, d: Path, progress: Callable[[str], None]) -> bool:
    """A prepared kernel whose initramfs an older lab/vm made (it boots differently): a new
    initramfs only. False if the cache turned out not to be ready after all."""
    with locked(CACHE / f"{spec.key}.lock"):
        info = ready(d)
        if info and info.get("initrd_version") != INITRD_VERSION:
            progress(f"vm: rebuilding the {spec.name} initramfs (version {INITRD_VERSION})")
            _write_initrd(d, info)
    return bool(info)


def _require_tools(spec: Kernel) -> None:
    """Everything a first-time setup runs, checked before it downloads anything."""
    find_busybox()                       # fail early, before a 70 MB download
    if shutil.which(QEMU) is None:
        raise EnvError(f"{QEMU} not found: install qemu-system-x86 (scripts/setup does) to run a stock kernel")
    tools = ("depmod",) if spec.kind == "local" else ("dpkg-deb", "depmod")
    tools += ("apt-get", "apt-cache") if spec.kind in ("preset", "debian") else ()
    for tool in tools:
        if shutil.which(tool) is None:
            raise EnvError(f"{tool} not found: the {spec.name} kernel is set up with it"
                           + (" (install kmod)" if tool == "depmod" else ""))


def _first_time_setup(spec: Kernel, d: Path, progress: Callable[[str], None]) -> None:
    """Build the kernel's cache in a sibling work directory, then rename it into place (a failed
    or interrupted setup leaves no half-made cache)."""
    t0 = time.monotonic()
    progress(f"vm: first-time setup of the {spec.name} kernel in {d} (later runs reuse it)")
    shutil.rmtree(d, ignore_errors=True)
    work = d.with_name(d.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        info = _build(spec, work, t0, progress)
        work.rename(d)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(f"vm: {spec.name} ready: {info['package']} {info['version']} ({info['release']}); "
             f"first-time setup took {time.monotonic() - t0:.1f} s")


def _fetch(spec: Kernel, work: Path, t0: float, progress: Callable[[str], None]) -> tuple[str, str]:
    """Step 1: the kernel's files into work/root (a package downloaded or given, unpacked; or a
    local kernel's image, modules and config copied); its package name and version."""
    if spec.kind == "local":
        return _copy_local(spec, work / "root", progress)
    if spec.kind == "deb":
        deb, progress_name = spec.path, spec.path.name
    else:
        package = spec.package or debian.resolve_meta(spec.meta_package, spec.image_re, spec.suite, CACHE)
        progress(f"vm: [1/5] {spec.meta_package or spec.name} is {package}; fetching it with apt-get")
        deb = debian.cached_deb(package, spec.suite, CACHE)
        progress_name = deb.name
    assert deb is not None
    size = deb.stat().st_size
    progress(f"vm: [2/5] unpacking {progress_name} ({size / 1e6:.0f} MB, {time.monotonic() - t0:.1f} s so far)")
    debian.cmd(["dpkg-deb", "-x", str(deb), str(work / "root")], f"unpacking {deb.name}", 300)
    fields = debian.cmd(["dpkg-deb", "-f", str(deb), "Package", "Version"], f"reading {deb.name}", 60)
    meta = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
    return meta.get("Package", deb.name), meta.get("Version", "?")


def _copy_local(spec: Kernel, root: Path, progress: Callable[[str], None]) -> tuple[str, str]:
    """A kernel given by path, laid out as a package would be: boot/vmlinuz-R, boot/config-R and
    lib/modules/R (hard links where the file system allows, else copies)."""
    assert spec.path is not None
    found = local.find(spec.path)
    release = found.release or "unknown"
    progress(f"vm: [1/5] {found.image} ({release}); modules "
             + (str(found.modules) if found.modules else "none (everything built in)"))
    (root / "boot").mkdir(parents=True)
    shutil.copy2(found.image, root / "boot" / f"vmlinuz-{release}")
    if found.config:
        shutil.copy2(found.config, root / "boot" / f"config-{release}")
    if found.modules:
        (root / "lib" / "modules").mkdir(parents=True)
        try:
            shutil.copytree(found.modules, root / "lib" / "modules" / release, symlinks=True,
                            copy_function=_link_or_copy)
        except shutil.Error as exc:
            raise EnvError(f"copying the modules of {spec.name}: {exc}") from None
    return "local", release


def _link_or_copy(src: str, dst: str) -> None:
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


def _image(found: local.Found, work: Path) -> tuple[str, bytes]:
    """The file qemu boots: "vmlinux" (an ELF with a PVH entry) or "bzImage"; the ELF, if any."""
    data = found.image.read_bytes()
    elf = data if data[:4] == b"\x7fELF" else None
    if elf is None and data[0x202:0x206] == b"HdrS":
        with contextlib.suppress(EnvError):
            elf = decompress_vmlinuz(data)
    if elf is not None and local.has_pvh_note(elf):
        (work / "vmlinux").write_bytes(elf)
        return "vmlinux", elf
    (work / "bzImage").write_bytes(data)
    return "bzImage", elf or b""


def _config(spec: Kernel, found: local.Found, elf: bytes, work: Path, progress) -> dict:
    """The kernel's config (beside it, or built in), kept as work/config; what it lacks."""
    text = found.config.read_text(errors="replace") if found.config else kconfig.embedded_config(elf)
    if text is None:
        progress(f"vm: no config found for {spec.name} (boot/config-R, .config or CONFIG_IKCONFIG): its "
                 "options cannot be checked before it boots")
        return {"config": None, "lacks": [], "lacks_optional": []}
    (work / "config").write_text(text)
    opts = kconfig.parse(text)
    lacks, optional = kconfig.summary(opts, found.modules)
    if lacks:
        raise EnvError(kconfig.line(spec.name, lacks, kconfig.NEEDED) + ": the lab cannot run on it "
                       "(README: Kernel options the lab needs)")
    return {"config": "config", "lacks": [], "lacks_optional": optional, "hz": opts.get("HZ")}


def _build(spec: Kernel, work: Path, t0: float, progress: Callable[[str], None]) -> dict:
    """The five steps into *work*: fetch, unpack, depmod, image and config, initramfs; kernel.json's info."""
    package, version = _fetch(spec, work, t0, progress)
    found = local.find(work / "root")
    release = found.release or (found.modules.name if found.modules else "unknown")
    if found.modules is not None:
        progress(f"vm: [3/5] depmod {found.modules.name}")
        base = found.modules.parents[2]
        debian.cmd(["depmod", "-b", str(base), found.modules.name], "depmod", 300)
    progress("vm: [4/5] the image qemu boots, and the kernel's config")
    image, elf = _image(found, work)
    conf = _config(spec, found, elf, work, progress)
    progress("vm: [5/5] building the initramfs")
    info = {"kernel": spec.name, "key": spec.key, "source": spec.kind, "package": package,
            "version": version if spec.kind != "local" else release, "release": release, "image": image,
            "modules": str(found.modules.relative_to(work)) if found.modules else None,
            **conf, "prepared": time.time()}
    _write_initrd(work, info, setup_s=round(time.monotonic() - t0, 1))
    return info


def label(kernel: str) -> str:
    """A name for *kernel* fit for a file name (a preset's own; else its cache key)."""
    if kernel in KERNELS or re.fullmatch(r"[\w.+-]+", kernel):
        return kernel
    return kernel_spec(kernel).key
