"""lab.vm's pure parts: vmlinux out of a bzImage, the newc initramfs, module order, stage 2."""

from __future__ import annotations

import lzma
import stat
import struct
import zlib
from pathlib import Path

import pytest

from lab import vm
from lab.errors import EnvError, UsageError
from lab.vm import boot, engine, initrd, kernel


def test_vmlinux_is_found_behind_the_setup_code():
    elf = b"\x7fELF" + bytes(range(256)) * 64
    for blob in (lzma.compress(elf, format=lzma.FORMAT_XZ),
                 (lambda c: c.compress(elf) + c.flush())(zlib.compressobj(wbits=16 + zlib.MAX_WBITS))):
        image = b"MZ setup code \xfd7zXZ\x00 not really xz" + blob + b"\0" * 100 + b"trailer"
        assert kernel.decompress_vmlinuz(image) == elf


def test_no_elf_inside_is_an_env_error():
    with pytest.raises(EnvError, match="no ELF vmlinux"):
        kernel.decompress_vmlinuz(b"MZ" + lzma.compress(b"not an elf", format=lzma.FORMAT_XZ))


def _read_newc(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    entries, off = {}, 0
    while True:
        assert data[off:off + 6] == b"070701"
        f = [int(data[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, namesize = f[1], f[6], (f[9], f[10]), f[11]
        name = data[off + 110: off + 110 + namesize - 1].decode()
        off += 110 + namesize
        off += -off % 4
        body = data[off:off + size]
        off += size + (-size % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, body, rdev)


def test_initramfs_is_a_newc_archive_with_busybox_init_modules_and_console(tmp_path):
    moddir = tmp_path / "6.1.0-1-amd64"
    for rel in ("kernel/virtio.ko", "kernel/virtio_ring.ko", "kernel/virtio_pci.ko", "kernel/9pnet.ko",
                "kernel/9pnet_virtio.ko", "kernel/netfs.ko", "kernel/9p.ko", "kernel/overlay.ko"):
        (moddir / rel).parent.mkdir(parents=True, exist_ok=True)
        (moddir / rel).write_bytes(rel.encode())
    (moddir / "modules.dep").write_text(
        "kernel/virtio.ko:\nkernel/virtio_ring.ko:\n"
        "kernel/virtio_pci.ko: kernel/virtio.ko kernel/virtio_ring.ko\n"
        "kernel/9pnet.ko:\nkernel/9pnet_virtio.ko: kernel/9pnet.ko kernel/virtio.ko kernel/virtio_ring.ko\n"
        "kernel/netfs.ko:\nkernel/9p.ko: kernel/9pnet.ko kernel/netfs.ko\nkernel/overlay.ko:\n")
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF fake")
    entries = _read_newc(initrd.build_initrd(moddir, busybox))
    order = entries["modules.order"][1].decode().split()
    assert order.index("virtio_ring.ko") < order.index("virtio_pci.ko")
    assert order.index("9pnet.ko") < order.index("9pnet_virtio.ko") < order.index("9p.ko")
    assert order.index("netfs.ko") < order.index("9p.ko") and "overlay.ko" in order
    assert len(order) == len(set(order)) == 8
    mode, body, _ = entries["init"]
    assert stat.S_ISREG(mode) and mode & 0o111 and body.startswith(b"#!/bin/busybox sh")
    assert stat.S_ISCHR(entries["dev/console"][0]) and entries["dev/console"][2] == (5, 1)
    assert stat.S_ISLNK(entries["bin/switch_root"][0]) and entries["bin/switch_root"][1] == b"busybox"
    assert entries["bin/busybox"][1] == b"\x7fELF fake"


def test_a_missing_boot_module_is_named(tmp_path):
    (tmp_path / "modules.dep").write_text("kernel/virtio.ko:\n")
    with pytest.raises(EnvError, match="no module 9p"):
        initrd._module_order(tmp_path, ("virtio", "9p"))


def _elf(tmp_path: Path, *segment_types: int) -> Path:
    head = bytearray(64)
    head[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", head, 32, 64)                        # e_phoff
    struct.pack_into("<HH", head, 54, 56, len(segment_types))  # e_phentsize, e_phnum
    path = tmp_path / f"elf{len(segment_types)}{segment_types}"
    path.write_bytes(bytes(head) + b"".join(struct.pack("<I", t) + bytes(52) for t in segment_types))
    return path


def test_busybox_must_be_static(tmp_path):
    assert initrd._is_static(_elf(tmp_path, 1, 1)) is True          # PT_LOAD only
    assert initrd._is_static(_elf(tmp_path, 6, 3, 1)) is False      # PT_INTERP: dynamically linked
    (tmp_path / "script").write_text("#!/bin/sh\n")
    assert initrd._is_static(tmp_path / "script") is False


def test_run_scripts_quote_paths_and_run_one_command():
    mounts = boot._mounts(Path("/c/m"), Path("/c/config"), Path("/tmp/a b"))
    assert "'/newroot/tmp/a b'" in mounts and mounts.rstrip().endswith("/run/twlab-vm/ctl/stage2.sh")
    assert "rel=$(uname -r)" in mounts
    assert 'mount -o bind /newroot/c/m "/newroot/lib/modules/$rel"' in mounts
    assert 'mount -o bind /newroot/c/config "/newroot/boot/config-$rel"' in mounts
    built_in = boot._mounts(None, None, Path("/tmp/a"))        # a kernel with everything built in
    assert "lib/modules" not in built_in and "config-" not in built_in
    stage2 = boot._stage2(["/r/.venv/bin/python", "/r/.venv/bin/invoke", "run", "it's"])
    assert "'it'\"'\"'s'" in stage2 and "/proc/sysrq-trigger" in stage2
    assert boot.START in stage2 and boot.EXIT in stage2


def test_unknown_kernel():
    with pytest.raises(UsageError, match="choose one of debian-11, debian-12, debian-13, debian:VERSION"):
        vm.kernel_spec("nope")


def test_xz_modules_are_decompressed_for_the_initramfs():
    import lzma

    from lab.vm.initrd import _plain_module

    data = b"\x7fELF" + b"module bytes" * 100
    assert _plain_module("9p.ko.xz", lzma.compress(data)) == ("9p.ko", data)
    assert _plain_module("overlay.ko", data) == ("overlay.ko", data)


def test_another_suite_reads_its_package_lists_into_the_cache(tmp_path, monkeypatch):
    from lab.vm import debian

    assert debian.apt_options(vm.KERNELS["debian-12"].suite, tmp_path) == []     # the machine's own lists
    opts = debian.apt_options(vm.KERNELS["debian-13"].suite, tmp_path)
    root = tmp_path / "apt" / "trixie"
    assert (root / "sources.list").read_text() == "deb http://deb.debian.org/debian trixie main\n"
    assert f"Dir::State::Lists={root / 'lists'}" in opts and "Dir::Etc::SourceParts=/dev/null" in opts
    assert (root / "lists" / "partial").is_dir()


# -- the guest's Docker engine (--backend docker) -------------------------------------------------

def test_the_netns_path_boots_as_before_no_engine_no_disk_512m():
    stage2 = boot._stage2(["/r/.venv/bin/python", "run"])
    assert "dockerd" not in stage2 and "cgroup2" not in stage2 and boot.MARK + "engine" not in stage2
    argv = boot._qemu_argv(Path("/c"), Path("/ctl"), Path("/out"), None)
    assert argv[argv.index("-m") + 1] == "512M" and "-drive" not in argv


def test_a_docker_run_starts_the_guests_own_engine_before_the_command():
    stage2 = boot._stage2(["/r/.venv/bin/python", "run"], engine.Disk(Path("/c/d.img")))
    booted, up, start = (stage2.index(boot.MARK + "booted"), stage2.index("dockerd --config-file"),
                         stage2.index(boot.START))
    assert booted < up < start
    assert stage2.index(boot.MARK + "engine") < start
    # its socket on the guest's tmpfs /run, never the host's; the run's own empty config file
    assert "export DOCKER_HOST=unix:///run/twlab-vm/docker.sock" in stage2
    assert "--host=unix:///run/twlab-vm/docker.sock" in stage2 and '--config-file "$ctl/daemon.json"' in stage2
    assert "--iptables=false" in stage2 and "--bridge=none" in stage2
    assert "mount -t cgroup2" in stage2 and "mount -o noatime /dev/vda /var/lib/docker" in stage2
    assert "umount /var/lib/docker" not in stage2           # a snapshot disk: thrown away with qemu
    argv = boot._qemu_argv(Path("/c"), Path("/ctl"), Path("/out"), engine.Disk(Path("/c/d,1.img")))
    assert argv[argv.index("-m") + 1] == engine.MEMORY == "1024M"
    assert argv[argv.index("-drive") + 1] == "file=/c/d,,1.img,format=raw,if=virtio,cache=unsafe,snapshot=on"


def test_loading_the_image_stops_the_engine_and_unmounts_before_power_off():
    stage2 = boot._stage2(["docker", "load", "-i", "/c/x.tar"], engine.Disk(Path("/c/d.img"), writable=True))
    assert stage2.index("docker load") < stage2.index("kill $dockerd_pid") < stage2.index("umount /var/lib/docker") \
        < stage2.index('echo "$rc" > "$ctl/rc"')
    argv = engine.Disk(Path("/c/d.img"), writable=True).qemu_args()
    assert "snapshot=on" not in argv[1] and "discard=unmap" in argv[1]


def test_the_timing_split_comes_from_the_console_marks():
    marks = {"qemu": 100.0, "booted": 103.0, "engine": 110.5, "start": 110.6, "end": 150.6, "off": 151.0}
    assert boot._split(marks) == {"boot_s": 3.0, "engine_s": 7.5, "command_s": 40.0, "poweroff_s": 0.4,
                                  "total_s": 51.0}
    assert boot._split({"qemu": 0.0, "init": 1.5, "start": 2.5, "end": 20.0, "off": 20.5}) == \
        {"kernel_s": 1.5, "boot_s": 2.5, "command_s": 17.5, "poweroff_s": 0.5, "total_s": 20.5}


def test_vm_backends():
    assert boot.vm_backend("auto") == "netns" and boot.vm_backend("docker") == "docker"
    with pytest.raises(UsageError, match="--backend 'podman': inside a VM choose netns or docker"):
        boot.vm_backend("podman")


def test_the_engine_disk_is_keyed_by_image_and_engine_version():
    assert engine.image_disk_key("sha256:32758b09f934af13bb39", "20.10.24+dfsg1") == "32758b09f934-20.10.24+dfsg1"


def test_no_host_engine_is_one_clear_line(monkeypatch, tmp_path):
    from lab.backends import docker as docker_backend

    def none():
        raise EnvError("no Docker daemon answers")
    monkeypatch.setattr(docker_backend, "client", none)
    with pytest.raises(EnvError, match="loads the lab's host image from this machine's Docker engine.*"
                                       "--backend netns"):
        engine.data_disk("debian-12", tmp_path)


def test_an_interrupted_image_load_leaves_no_half_made_disk(tmp_path, monkeypatch):
    """The tarball and the disk being made are removed when the load stops short (here Ctrl-C
    while saving), and a killed run's leftovers go when the next run makes a disk."""
    class Image:
        def save(self, named):
            yield b"x" * 1000
            raise KeyboardInterrupt

    class Images:
        def get(self, tag):
            return Image()

    class DC:
        images = Images()

    monkeypatch.setattr(engine.shutil, "which", lambda tool: "/sbin/" + tool)
    (tmp_path / "abc-1.999999.img.tmp").write_bytes(b"left by a killed run")
    with pytest.raises(KeyboardInterrupt):
        engine._seed(DC(), "twlab/host:x", tmp_path, "abc-1", "debian-12", tmp_path / "seed", lambda s: None, 60)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_load_in_the_guest_is_an_env_error_and_keeps_no_disk(tmp_path, monkeypatch):
    from lab.vm import boot as bootmod

    class Image:
        def save(self, named):
            yield b"x" * 1000

    class DC:
        class images:  # noqa: N801
            @staticmethod
            def get(tag):
                return Image()

    monkeypatch.setattr(engine.shutil, "which", lambda tool: "/sbin/" + tool)
    monkeypatch.setattr(engine.subprocess, "run", lambda *a, **k: None)          # mkfs.ext4
    monkeypatch.setattr(bootmod, "run_command", lambda *a, **k: (1, "open /x: no such file"))
    with pytest.raises(EnvError, match="docker load inside the debian-12 VM exited 1"):
        engine._seed(DC(), "twlab/host:x", tmp_path, "abc-1", "debian-12", tmp_path / "seed", lambda s: None, 60)
    assert list(tmp_path.iterdir()) == []


def test_a_guest_kernel_crash_is_named_as_such(tmp_path):
    """The guest's console holds an Oops and the command never returned: an environment error
    naming the crash (CI10: Debian 13 under TCG, "Oops: int3" as runc made a cgroup), not the
    bare "VM ended" of a guest that powered off early."""
    class Done:
        returncode = 0

    console = ["@@twlab-vm:mark init@@", "backend: docker",
               "[   39.253333] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
               "[   39.257765] Kernel panic - not syncing: Fatal exception in interrupt"]
    with pytest.raises(EnvError, match=r"guest kernel crashed .*'Oops: int3: 0000 \[#1\] PREEMPT SMP NOPTI'"):
        boot._outcome("debian-13", tmp_path, Done(), console, {"init": 1.0, "start": 2.0}, print)
    with pytest.raises(EnvError, match="VM ended .qemu exit 0. before the command returned"):
        boot._outcome("debian-13", tmp_path, Done(), console[:2], {"init": 1.0, "start": 2.0}, print)
