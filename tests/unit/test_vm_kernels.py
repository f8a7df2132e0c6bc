"""lab.vm's kernels given by the user (--kernel forms, what a path holds, the config's options) and
the accelerator (--accel: KVM's qemu arguments, the probe cached once, the one-line fallback)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from lab.errors import EnvError, UsageError
from lab.vm import accel, boot, kconfig, kernel, local

RELEASE = "6.1.0-99-amd64"


def fake_bzimage(release: str = RELEASE) -> bytes:
    """Enough of a bzImage for the lab to read: the setup header's magic and its version string."""
    data = bytearray(0x4000)
    data[0x202:0x206] = b"HdrS"
    text = f"{release} (debian-kernel@lists.debian.org) #1 SMP".encode() + b"\0"
    struct.pack_into("<H", data, 0x20E, 0x1000)
    data[0x1200:0x1200 + len(text)] = text
    return bytes(data)


def kernel_dir(base: Path, release: str = RELEASE, modules: bool = True, config: str | None = "") -> Path:
    """An unpacked kernel package's layout: boot/vmlinuz-R, boot/config-R, lib/modules/R."""
    (base / "boot").mkdir(parents=True)
    (base / "boot" / f"vmlinuz-{release}").write_bytes(fake_bzimage(release))
    if config is not None:
        (base / "boot" / f"config-{release}").write_text(config)
    if modules:
        (base / "lib" / "modules" / release / "kernel").mkdir(parents=True)
        (base / "lib" / "modules" / release / "kernel" / "veth.ko").write_bytes(b"\x7fELF")
    return base


# -- --kernel: what each form means ----------------------------------------------------------------

def test_presets_and_their_suites():
    assert kernel.kernel_spec("debian-12").kind == "preset" and kernel.kernel_spec("debian-12").suite is None
    assert kernel.kernel_spec("debian-13").suite == "trixie"
    assert kernel.kernel_spec("debian-11").suite == "bullseye"


def test_a_directory_is_a_local_kernel_keyed_by_its_contents(tmp_path):
    d = kernel_dir(tmp_path / "k")
    spec = kernel.kernel_spec(str(d))
    assert spec.kind == "local" and spec.path == d and spec.key.startswith("local-")
    found = local.find(d)
    assert found.release == RELEASE
    assert found.modules == d / "lib" / "modules" / RELEASE
    assert found.config == d / "boot" / f"config-{RELEASE}"
    # a rebuilt image is another kernel: another cache
    (d / "boot" / f"vmlinuz-{RELEASE}").write_bytes(fake_bzimage(RELEASE) + b"rebuilt")
    assert local.source_key(local.find(d)) != spec.key.removeprefix("local-")


def test_a_build_tree_with_install_mod_path(tmp_path):
    tree = tmp_path / "linux"
    (tree / "arch" / "x86" / "boot").mkdir(parents=True)
    (tree / "arch" / "x86" / "boot" / "bzImage").write_bytes(fake_bzimage())
    (tree / ".config").write_text("CONFIG_VETH=y\n")
    (tree / "mods" / "lib" / "modules" / RELEASE).mkdir(parents=True)
    found = local.find(tree)
    assert (found.image.name, found.release) == ("bzImage", RELEASE)
    assert found.modules == tree / "mods" / "lib" / "modules" / RELEASE and found.config == tree / ".config"


def test_modules_for_another_release_are_refused(tmp_path):
    d = kernel_dir(tmp_path / "k")
    (d / "lib" / "modules" / RELEASE).rename(d / "lib" / "modules" / "6.1.0-1-amd64")
    with pytest.raises(UsageError, match="the image is 6.1.0-99-amd64 but the module trees there are for 6.1.0-1"):
        local.find(d)


def test_an_image_file_a_deb_and_paths_that_are_not_there(tmp_path):
    image = tmp_path / "bzImage"
    image.write_bytes(fake_bzimage())
    assert kernel.kernel_spec(str(image)).kind == "local"
    deb = tmp_path / "linux-image-x.deb"
    deb.write_bytes(b"!<arch>\n")
    assert kernel.kernel_spec(str(deb)).kind == "deb"
    with pytest.raises(UsageError, match="no such file or directory"):
        kernel.kernel_spec(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no kernel image there"):
        kernel.kernel_spec(str(tmp_path / "empty"))


def test_debian_version_must_look_like_one():
    with pytest.raises(UsageError, match="not a package version"):
        kernel.kernel_spec("debian:6.1;rm -rf /")


def test_label_is_fit_for_a_file_name(tmp_path):
    d = kernel_dir(tmp_path / "k")
    assert kernel.label("debian-12") == "debian-12"
    assert "/" not in kernel.label(str(d)) and kernel.label(str(d)).startswith("local-")


# -- the config --------------------------------------------------------------------------------------

def test_the_config_names_what_the_lab_cannot_do_without():
    opts = kconfig.parse("".join(f"CONFIG_{o}=y\n" for o in kconfig.NEEDED if o != "VETH")
                         + "CONFIG_NET_SCH_NETEM=m\n# CONFIG_IPV6 is not set\n")
    lacks, optional = kconfig.summary(opts, module_tree=Path("/m"))
    assert lacks == ["VETH"] and optional == ["IPV6"]
    assert kconfig.summary(opts, module_tree=None)[1] == ["NET_SCH_NETEM", "IPV6"]    # =m without modules
    line = kconfig.line("k", lacks, kconfig.NEEDED)
    assert line == "the kernel k lacks CONFIG_VETH (veth pairs (the lab's links))" and "\n" not in line


def test_a_config_built_into_the_image_is_read():
    blob = b"junk" + b"IKCFG_ST" + gzip.compress(b"CONFIG_VETH=y\n") + b"IKCFG_ED"
    assert kconfig.parse(kconfig.embedded_config(blob)) == {"VETH": "y"}
    assert kconfig.embedded_config(b"no config here") is None


def test_a_kernel_lacking_a_needed_option_is_refused_in_one_line(tmp_path):
    d = kernel_dir(tmp_path / "k", config="CONFIG_VETH=y\n")
    found = local.find(d)
    with pytest.raises(EnvError) as err:
        kernel._config(kernel.kernel_spec(str(d)), found, b"", tmp_path, lambda s: None)
    assert "lacks CONFIG_BLK_DEV_INITRD" in str(err.value) and "\n" not in str(err.value)
    assert "README" in str(err.value)


# -- --accel -----------------------------------------------------------------------------------------

def test_kvm_passes_the_host_cpu_and_tcg_emulates_one():
    assert accel.qemu_args("kvm") == ["-accel", "kvm", "-cpu", "host"]
    assert accel.qemu_args("tcg") == ["-accel", "tcg,thread=multi", "-cpu", "max"]


def test_qemu_command_line_under_kvm_and_tcg(tmp_path):
    info = {"image": "vmlinux"}
    kvm = boot.qemu_argv(tmp_path, info, tmp_path / "ctl", tmp_path / "out", None, "kvm")
    tcg = boot.qemu_argv(tmp_path, info, tmp_path / "ctl", tmp_path / "out", None, "tcg")
    i = kvm.index("-accel")
    assert kvm[i:i + 4] == ["-accel", "kvm", "-cpu", "host"] and "tcg,thread=multi" not in kvm
    assert tcg[tcg.index("-accel") + 1] == "tcg,thread=multi" and "host" not in tcg
    assert kvm[kvm.index("-kernel") + 1] == str(tmp_path / "vmlinux")
    assert [a for a in kvm if a != "kvm" and a != "host"] == [a for a in tcg if a not in ("tcg,thread=multi", "max")]


@pytest.fixture
def probe_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel, "CACHE", tmp_path)
    monkeypatch.setattr(accel, "_cache_key", lambda key, qemu: f"{key}|host|boot|qemu")
    calls = []
    return calls


def test_auto_falls_back_to_tcg_in_one_line_and_probes_once(probe_cache, monkeypatch, tmp_path):
    monkeypatch.setattr(accel, "_device", lambda: None)               # /dev/kvm opens ...
    why = "/dev/kvm opens but k did not reach its initramfs under KVM within 20 s"

    def probe(*a, **k):
        probe_cache.append(a)
        return why                                                    # ... but cannot run the guest
    monkeypatch.setattr(accel, "probe", probe)
    lines = []
    for _ in range(2):
        chosen = accel.choose("auto", "k", tmp_path, {"key": "k"}, lines.append)
        assert (chosen.name, chosen.why) == ("tcg", why)
    assert len(probe_cache) == 1                                      # cached: probed once
    assert lines == [f"vm: not using KVM: {why}; running under TCG"] * 2
    with pytest.raises(EnvError, match="--accel kvm: /dev/kvm opens but"):
        accel.choose("kvm", "k", tmp_path, {"key": "k"}, lines.append)


def test_auto_takes_kvm_when_the_probe_boots(probe_cache, monkeypatch, tmp_path):
    monkeypatch.setattr(accel, "_device", lambda: None)
    monkeypatch.setattr(accel, "probe", lambda *a, **k: None)
    lines = []
    assert accel.choose("auto", "k", tmp_path, {"key": "k"}, lines.append).name == "kvm" and lines == []
    assert accel.choose("kvm", "k", tmp_path, {"key": "k"}, lines.append).name == "kvm"


def test_no_usable_dev_kvm_is_said_without_probing(probe_cache, monkeypatch, tmp_path):
    monkeypatch.setattr(accel, "_device", lambda: "no /dev/kvm on this machine")
    monkeypatch.setattr(accel, "probe", lambda *a, **k: pytest.fail("probed without /dev/kvm"))
    lines = []
    assert accel.choose("auto", "k", tmp_path, {}, lines.append).name == "tcg"
    assert lines == ["vm: not using KVM: no /dev/kvm on this machine; running under TCG"]
    assert accel.choose("tcg", "k", tmp_path, {}, lines.append).why == "--accel tcg" and len(lines) == 1


def test_a_bad_accel_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="--accel 'fast': choose auto, kvm or tcg"):
        accel.choose("fast", "k", tmp_path, {}, print)
    with pytest.raises(UsageError, match="--accel 'fast'"):
        accel.check("fast")


# -- invoke bench --vm ----------------------------------------------------------------------------

def test_a_vm_columns_split_adds_up_from_the_process_vm_json_and_report():
    from lab.bench.vmcell import cell_split, column_argv

    argv = column_argv("debian-12", "tcg", Path("/tmp/out"))
    assert argv[2:] == ["matrix", "--kernel", "debian-12", "--accel", "tcg", "--scenario", "lost-ack",
                        "--out", "/tmp/out", "--json"]                 # a real column, as a user types it
    vm = {"kernel_s": 3.0, "boot_s": 4.0, "command_s": 14.0, "poweroff_s": 0.2, "total_s": 19.0}
    report = {"duration_s": 8.0, "timings_s": {"bring_up_s": 1.0, "start_s": 4.5, "scenario_s": 3.0,
                                               "tear_down_s": 0.5}}
    split = cell_split(20.5, vm, report)
    assert split["modules_and_mounts_s"] == 1.0 and split["lab_observe_s"] == 3.5
    assert split["guest_beside_the_run_s"] == 6.0                   # the guest's command (14 s) less the run
    assert split["here_beside_the_vm_s"] == 1.5                     # the process (20.5 s) less the VM (19 s)
    assert split["overhead_s"] == 12.5                              # all but the in-guest run
    empty = cell_split(None, {}, {})
    assert empty["run_s"] is None and empty["overhead_s"] is None and empty["guest_beside_the_run_s"] is None


def test_the_overhead_beyond_the_floor_pairs_each_round_with_its_own_floor():
    from lab.bench.vmcell import beyond_floor

    cells = [{"overhead_s": 12.5}, {"overhead_s": 18.0}, {"overhead_s": None}, {"overhead_s": 14.0}]
    assert beyond_floor(cells, [4.5, 6.0, 5.0, None]) == [8.0, 12.0]    # a round missing either is left out
