"""The user's own kernel, for real: `invoke vm lost-ack` on a Debian kernel package unpacked into a
directory (passed by path, not as a preset), on `debian:VERSION` of an older 6.1 than the preset's,
and on an image of random bytes (exit 2, one line, nothing left); `--accel auto` says in one line
why it is not using KVM where it is not; `invoke check --bisect` on a kernel that does not boot is
git bisect run's 125. One boot per kernel (each a different kernel: nothing to share); the random
image never gets past qemu's loader.

The directory comes from the older version's package (.cache/vm/debs/, which `debian:VERSION`
keeps; downloaded by apt the first time), so the two runs are the same kernel reached two ways.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lab import vm
from lab.vm import debian

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
INVOKE = str(REPO / ".venv" / "bin" / "invoke")
OLDER = "6.1.0-47-amd64"                  # Debian 12's preset is a later 6.1.0-N


def invoke(*args: str, timeout: float = 2300) -> subprocess.CompletedProcess:
    done = subprocess.run([INVOKE, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    print(done.stderr[-3000:])
    return done


def accel_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in (done.stdout + done.stderr).splitlines() if ln.startswith("vm: not using KVM")]


def passed(done: subprocess.CompletedProcess, out: Path) -> dict:
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    report = json.loads(done.stdout)
    assert report["verdict"] == "pass", [c["observed"] for c in report["checks"] if not c["passed"]]
    assert report == json.loads((out / "report.json").read_text())
    # which accelerator ran it, in report.json (and vm.json); a TCG run here says why, once
    assert report["vm"]["accel"] in ("kvm", "tcg") and report["vm"]["accel_why"]
    assert len(accel_lines(done)) == (1 if report["vm"]["accel"] == "tcg" else 0)
    return report


def left_behind(out: Path) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    left = [ln for ln in ps.splitlines() if "qemu-system" in ln and str(out) in ln]
    for ctl in Path("/tmp").glob("twlab-vm-*-*"):
        if not Path(f"/proc/{ctl.name.split('-')[2]}").exists():
            left.append(str(ctl))
    return left


def test_debian_version_older_than_the_preset_passes(tmp_path):
    done = invoke("vm", "lost-ack", "--kernel", f"debian:{OLDER}", "--artifacts", str(tmp_path), "--json")
    report = passed(done, tmp_path)
    assert report["kernel"] == OLDER
    assert report["vm"]["kernel_arg"] == f"debian:{OLDER}" and report["vm"]["package"] == f"linux-image-{OLDER}"
    assert OLDER not in vm.kernel_spec("debian-12").description          # not the preset under another name
    assert vm.cache_dir("debian-12") != vm.cache_dir(f"debian:{OLDER}")


def test_a_directory_with_a_kernel_image_and_its_modules_passes(tmp_path):
    deb = debian.cached_deb(f"linux-image-{OLDER}", None, vm.CACHE)
    unpacked = tmp_path / "kernel"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True, timeout=300)
    assert (unpacked / "boot" / f"vmlinuz-{OLDER}").is_file() and (unpacked / "lib" / "modules" / OLDER).is_dir()
    out = tmp_path / "out"
    done = invoke("vm", "lost-ack", "--kernel", str(unpacked), "--artifacts", str(out), "--json")
    report = passed(done, out)
    assert report["kernel"] == OLDER and report["vm"]["source"] == "local"
    assert report["vm"]["kernel_arg"] == str(unpacked)
    assert report["kernel_hz"] == 250                      # its config, found beside it, read in the VM


@pytest.fixture
def random_image(tmp_path):
    image = tmp_path / "bzImage"
    image.write_bytes(Path("/dev/urandom").open("rb").read(2_000_000))
    return image


def test_an_unbootable_image_exits_2_in_one_line_and_leaves_nothing(tmp_path, random_image):
    out = tmp_path / "out"
    before = set(vm.CACHE.iterdir())
    done = invoke("vm", "lost-ack", "--kernel", str(random_image), "--artifacts", str(out))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"twlab: the kernel {random_image} did not boot"), lines
    assert "last console lines:" in lines[0]
    assert not out.exists() and not left_behind(out)
    assert set(vm.CACHE.iterdir()) <= before | {vm.CACHE / "accel.json", vm.CACHE / "accel.lock"}, \
        "the cache of a kernel that did not boot was kept"
    assert "did not boot" in done.stdout + done.stderr and len(accel_lines(done)) <= 1


def test_bisect_skips_a_kernel_that_does_not_boot(tmp_path, random_image):
    done = invoke("check", "--kernel", str(random_image), "--bisect", "--scenario", "lost-ack",
                  "--artifacts", str(tmp_path / "a"))
    assert done.returncode == 125, (done.stdout[-2000:], done.stderr[-2000:])
    assert done.stderr.strip().splitlines()[-1].endswith("(--bisect: cannot test this kernel, exit 125)")
    assert not left_behind(tmp_path)
