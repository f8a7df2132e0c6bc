"""A kernel given by path: a Debian ``.deb``, a directory (a build tree's bzImage beside an
INSTALL_MOD_PATH tree, or an unpacked kernel package), or a kernel image alone (everything it
needs built in). What is found where, its release and whether qemu can boot it as ELF (PVH).

Inside a directory the image is, in this order: boot/vmlinuz-*, arch/x86/boot/bzImage, bzImage,
vmlinuz*, vmlinux; the modules: the tree under lib/modules/ or usr/lib/modules/ (also one level
down, e.g. mods/lib/modules/ after ``make modules_install INSTALL_MOD_PATH=mods``) named for the
image's release; the config: boot/config-RELEASE, .config, config-RELEASE or config (else the
one built in with CONFIG_IKCONFIG, lab.vm.kconfig).
"""

from __future__ import annotations

import hashlib
import lzma
import re
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvError, UsageError

__all__ = ["Found", "decompress_vmlinuz", "find", "has_pvh_note", "release_of", "source_key"]

IMAGE_NAMES = ("boot/vmlinuz-*", "arch/x86/boot/bzImage", "bzImage", "vmlinuz*", "vmlinux")
MODULE_BASES = ("lib/modules", "usr/lib/modules", "*/lib/modules", "*/usr/lib/modules")
CONFIG_NAMES = ("boot/config-{r}", ".config", "config-{r}", "config")


@dataclass(frozen=True)
class Found:
    """What a path holds: the image, its release (None if unreadable), its module tree and config."""

    image: Path
    release: str | None
    modules: Path | None
    config: Path | None


def decompress_vmlinuz(bzimage: bytes) -> bytes:
    """The ELF vmlinux inside a bzImage (what scripts/extract-vmlinux does): find the payload's
    compression magic, decompress, keep the first result that is an ELF file."""
    tried = []
    for magic, how in ((b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b\x08", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd")):
        start = bzimage.find(magic)
        while start != -1:
            try:
                if how == "xz":
                    out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[start:])
                elif how == "gzip":
                    out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(bzimage[start:])
                else:
                    out = subprocess.run(["zstd", "-dc"], input=bzimage[start:], capture_output=True,
                                         timeout=120).stdout
                if out[:4] == b"\x7fELF":
                    return out
            except (lzma.LZMAError, zlib.error, OSError, subprocess.TimeoutExpired):
                pass
            tried.append(how)
            start = bzimage.find(magic, start + 1)
    raise EnvError(f"no ELF vmlinux found inside the kernel image (tried {', '.join(tried) or 'no known magic'})")


def has_pvh_note(elf: bytes) -> bool:
    """An ELF vmlinux qemu can boot directly: a Xen PHYS32_ENTRY note (type 18, CONFIG_PVH)."""
    if elf[:5] != b"\x7fELF\x02":
        return False
    phoff, = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:                                          # PT_NOTE
            continue
        off, end = p_offset, p_offset + p_filesz
        while off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, off)
            name = elf[off + 12: off + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == 18:
                return True
            off += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def release_of(image: bytes, vmlinux: bytes | None = None) -> str | None:
    """The kernel's release (uname -r): from the bzImage header's version string, else from the
    "Linux version ..." banner in the (decompressed) image."""
    if image[0x202:0x206] == b"HdrS" and len(image) > 0x210:
        ptr, = struct.unpack_from("<H", image, 0x20E)
        if ptr and 0x200 + ptr < len(image):
            text = image[0x200 + ptr: 0x200 + ptr + 256].split(b"\0")[0].decode(errors="replace")
            if text.split():
                return text.split()[0]
    for blob in (vmlinux, image):
        m = re.search(rb"Linux version (\S+) \(", blob or b"")
        if m:
            return m.group(1).decode(errors="replace")
    return None


def _first(base: Path, patterns: tuple[str, ...]) -> Path | None:
    for pattern in patterns:
        hits = sorted(p for p in base.glob(pattern) if p.is_file())
        if hits:
            return hits[0]
    return None


def _module_tree(base: Path, release: str | None) -> Path | None:
    """The module tree for *release* under *base* (one tree, when the release is unknown)."""
    trees = sorted(t for pattern in MODULE_BASES for root in base.glob(pattern) if root.is_dir()
                   for t in root.iterdir() if t.is_dir())
    if release:
        match = [t for t in trees if t.name == release]
        if match:
            return match[0]
        if trees:
            raise UsageError(f"--kernel {base}: the image is {release} but the module trees there are for "
                             f"{', '.join(t.name for t in trees)}")
        return None
    if len(trees) > 1:
        raise UsageError(f"--kernel {base}: several module trees ({', '.join(t.name for t in trees)}) and "
                         "the image's release cannot be read")
    return trees[0] if trees else None


def find(path: Path) -> Found:
    """The image, release, modules and config a directory or image file holds."""
    base = path if path.is_dir() else path.parent
    image = _first(path, IMAGE_NAMES) if path.is_dir() else path
    if image is None:
        raise UsageError(f"--kernel {path}: no kernel image there (looked for {', '.join(IMAGE_NAMES)})")
    data = image.read_bytes()
    vmlinux = data if data[:4] == b"\x7fELF" else None
    if vmlinux is None and data[0x202:0x206] != b"HdrS":
        return Found(image, None, None, None)               # not a kernel qemu knows: let it say so
    release = release_of(data, vmlinux)
    modules = _module_tree(base, release) if path.is_dir() or release else None
    if release is None and modules is not None:
        release = modules.name
    config = None
    for name in CONFIG_NAMES:
        if "{r}" in name and not release:
            continue
        if (base / name.format(r=release)).is_file():
            config = base / name.format(r=release)
            break
    return Found(image, release, modules, config)


def source_key(found: Found) -> str:
    """A cache key for a kernel given by path: its image's digest, and its module tree's listing."""
    h = hashlib.sha256(found.image.read_bytes())
    if found.modules is not None:
        for p in sorted(found.modules.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(found.modules)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def deb_key(deb: Path) -> str:
    h = hashlib.sha256()
    with open(deb, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
