"""The saved boot for real (lab/vm/resume.py), in Debian 12's kernel under TCG: a later boot
resumes the guest the first one wrote out, with the host's clock and an RNG of its own (the kernel
says it reseeded on the VM fork, and two boots resumed from the same file read different bytes);
a file that does not resume is replaced in one line and the command still runs; saved=False boots
cold. A few seconds a boot."""

from __future__ import annotations

import json
import time

import pytest

from lab import vm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

KERNEL = "debian-12"
AGE_S = 8.0
PROBE = ("date +%s; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' '; "
         "dmesg | grep -c 'crng reseeded due to virtual machine fork' || true")


def _boot(out, saved: bool = True, lines: list[str] | None = None) -> tuple[dict, list[str]]:
    said = lines if lines is not None else []
    code, stdout = vm.run_command(KERNEL, ["/bin/sh", "-c", PROBE], out, progress=said.append, timeout_s=300,
                                  accel="tcg", saved=saved)
    assert code == 0, stdout
    return json.loads((out / "vm.json").read_text()), stdout.split()


def test_a_later_boot_resumes_with_the_hosts_clock_and_a_random_state_of_its_own(tmp_path):
    first, _ = _boot(tmp_path / "first")
    assert first["saved_boot"] in ("saved", "resumed"), first          # there is a saved boot now
    saved = next((vm.cache_dir(KERNEL) / "saved-boot").glob("*.bin"))
    time.sleep(max(0.0, AGE_S - (time.time() - saved.stat().st_mtime)))  # its clock AGE_S behind, at least
    seen = []
    for i in range(2):
        doc, (clock, rand, reseeded) = _boot(tmp_path / f"resumed-{i}")
        assert doc["saved_boot"] == "resumed", doc
        assert doc["accel"] == "tcg" and "kernel_s" in doc and "boot_s" in doc
        assert 0 <= time.time() - int(clock) < 4, "the resumed guest's clock is not the host's"
        assert reseeded == "1", "the kernel did not reseed its RNG on the VM fork (vmgenid)"
        seen.append(rand)
    assert len(set(seen)) == 2, f"two boots resumed from one file read the same random bytes: {seen}"


def test_a_saved_boot_that_does_not_resume_is_replaced_in_one_line(tmp_path):
    _boot(tmp_path / "make")
    saved = sorted((vm.cache_dir(KERNEL) / "saved-boot").glob("*.bin"))
    assert len(saved) == 1
    saved[0].write_bytes(b"not a migration stream" * 1000)
    lines: list[str] = []
    doc, (clock, _, _) = _boot(tmp_path / "broken", lines=lines)
    said = [ln for ln in lines if "did not resume" in ln]
    assert len(said) == 1 and said[0].endswith("booting it instead"), lines
    assert doc["saved_boot"] == "saved" and doc["save_s"] > 0, doc
    assert saved[0].stat().st_size > 1_000_000                       # written out again, whole
    assert _boot(tmp_path / "after")[0]["saved_boot"] == "resumed"


def test_a_cold_boot_when_asked(tmp_path):
    doc, (clock, _, reseeded) = _boot(tmp_path / "cold", saved=False)
    assert doc["saved_boot"] == "cold" and doc["kernel_s"] > 0
    assert reseeded == "0"
