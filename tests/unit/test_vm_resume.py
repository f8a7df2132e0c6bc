"""The saved boot (lab/vm/resume.py): when a boot resumes, saves or stays cold, what its key
depends on, the initramfs's wait, the go line, and what the host does around qemu."""

from __future__ import annotations

import io
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lab.vm import boot, initrd, resume, timing


def _argv(tmp_path: Path, ctl: str = "/tmp/twlab-vm-1-a", out: str = "/srv/out", memory: str = "512M") -> list[str]:
    for name in ("vmlinux", "initrd"):
        if not (tmp_path / name).exists():
            (tmp_path / name).write_bytes(name.encode())
    return ["qemu-system-x86_64", "-m", memory, "-kernel", str(tmp_path / "vmlinux"), "-initrd",
            str(tmp_path / "initrd"), "-fsdev", "local,id=fs0,path=/,readonly=on",
            "-fsdev", f"local,id=fs1,path={ctl}", "-fsdev", f"local,id=fs2,path={out}"]


def test_a_tcg_boot_saves_first_then_resumes(tmp_path, monkeypatch):
    monkeypatch.delenv(resume.ENV, raising=False)
    argv = _argv(tmp_path)
    first = resume.plan(tmp_path, argv, ["/tmp/twlab-vm-1-a", "/srv/out"], "tcg", None)
    assert first.mode == "save" and first.path.parent == tmp_path / resume.DIR
    first.path.parent.mkdir()
    first.path.write_bytes(b"saved")
    again = resume.plan(tmp_path, argv, ["/tmp/twlab-vm-1-a", "/srv/out"], "tcg", None)
    assert again.mode == "resume" and again.path == first.path


@pytest.mark.parametrize("accel, disk, env, wanted, why", [
    ("kvm", None, None, True, "KVM boots fast"),
    ("tcg", object(), None, True, "an engine disk"),
    ("tcg", None, "off", True, "saved boots off"),
    ("tcg", None, None, False, "a cold boot asked for"),
])
def test_kvm_an_engine_disk_the_switch_and_the_caller_boot_cold(tmp_path, monkeypatch, accel, disk, env, wanted, why):
    if env:
        monkeypatch.setenv(resume.ENV, env)
    else:
        monkeypatch.delenv(resume.ENV, raising=False)
    how = resume.plan(tmp_path, _argv(tmp_path), [], accel, disk, wanted)
    assert (how.mode, how.path, how.why) == ("cold", None, why)


def test_the_key_leaves_out_the_runs_own_paths_and_follows_the_kernel_and_the_command_line(tmp_path):
    one = resume.key(_argv(tmp_path, "/tmp/twlab-vm-1-a", "/srv/a"), ["/tmp/twlab-vm-1-a", "/srv/a"])
    two = resume.key(_argv(tmp_path, "/tmp/twlab-vm-2-b", "/srv/b"), ["/tmp/twlab-vm-2-b", "/srv/b"])
    assert one == two
    assert resume.key(_argv(tmp_path, memory="1G"), ["/tmp/twlab-vm-1-a", "/srv/out"]) != \
        resume.key(_argv(tmp_path), ["/tmp/twlab-vm-1-a", "/srv/out"])
    before = resume.key(_argv(tmp_path), [])
    argv = _argv(tmp_path)
    (tmp_path / "initrd").write_bytes(b"a rebuilt initramfs")
    assert resume.key(argv, []) != before


def test_the_initramfs_waits_for_go_before_it_mounts_anything():
    init = initrd.INIT
    assert init.index("mark ready") < init.index("while read") < init.index("mark go") < init.index("mount -t 9p")
    assert init.index("insmod") < init.index("mark ready")            # the modules are in the saved boot
    assert 'date -u -s "@$secs"' in init and "> /dev/urandom" in init
    assert {"date", "stty"} <= set(initrd.APPLETS)


def test_the_go_line_gives_the_clock_and_fresh_entropy():
    a, b = resume.go_line().decode(), resume.go_line().decode()
    m = re.fullmatch(r"\ngo (\d+) ([0-9a-f]{64})\n", a)
    assert m and abs(int(m.group(1)) - time.time()) < 5
    assert a.split()[2] != b.split()[2]


def test_a_save_appears_whole_and_replaces_the_kernels_older_ones(tmp_path, monkeypatch):
    path = tmp_path / resume.DIR / "new.bin"
    path.parent.mkdir()
    (path.parent / "old.bin").write_bytes(b"another key")

    async def wrote(sock, tmp, timeout_s):
        tmp.write_bytes(b"guest")
        return True

    monkeypatch.setattr(resume, "_write_out", wrote)
    assert resume.save(tmp_path / "qmp.sock", path) >= 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["new.bin"] and path.read_bytes() == b"guest"


def test_a_failed_save_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / resume.DIR / "new.bin"

    async def half(sock, tmp, timeout_s):
        tmp.write_bytes(b"half a guest")
        return False

    monkeypatch.setattr(resume, "_write_out", half)
    with pytest.raises(RuntimeError, match="did not write the guest out"):
        resume.save(tmp_path / "qmp.sock", path)
    assert list(path.parent.iterdir()) == []


def test_half_written_saves_of_gone_processes_are_removed(tmp_path):
    d = tmp_path / resume.DIR
    d.mkdir()
    gone, alive = d / ".k.bin.999999999.tmp", d / f".k.bin.{__import__('os').getpid()}.tmp"
    gone.write_bytes(b"x")
    alive.write_bytes(b"x")
    resume.plan(tmp_path, _argv(tmp_path), [], "tcg", None)
    assert not gone.exists() and alive.exists()


def test_resuming_uses_the_saved_file_and_a_qmp_socket(tmp_path):
    args = resume.incoming_args(Path("/c/saved boot/k.bin")) + resume.qmp_args(tmp_path / "qmp-1.sock")
    assert args[:2] == ["-incoming", "exec:cat '/c/saved boot/k.bin'"]
    assert args[2:] == ["-qmp", f"unix:{tmp_path / 'qmp-1.sock'},server=on,wait=off"]


class _Proc:
    def __init__(self, lines: list[bytes] = ()) -> None:
        self.stdin, self.stdout, self.code = io.BytesIO(), iter(lines), None

    def poll(self):
        return self.code


def test_a_resumed_guest_is_told_to_go_again_until_it_answers(monkeypatch):
    monkeypatch.setattr(resume, "wait_running", lambda sock: None)
    stopped = []
    monkeypatch.setattr(boot, "_stop", stopped.append)
    proc, marks = _Proc(), {}
    writes = []

    def go(p):
        writes.append(1)
        if len(writes) == 2:                      # the first line was dropped, the second one answered
            marks["go"] = time.monotonic()

    monkeypatch.setattr(boot, "_go", go)
    boot._resumed_then_go(proc, Path("/nowhere"), marks, [])
    assert len(writes) == 2 and stopped == []


def test_a_guest_that_does_not_resume_is_stopped_and_says_why(monkeypatch):
    def never(sock):
        raise TimeoutError("qemu did not read the saved boot back (migration: failed)")

    monkeypatch.setattr(resume, "wait_running", never)
    stopped, console = [], []
    monkeypatch.setattr(boot, "_stop", stopped.append)
    proc = _Proc()
    boot._resumed_then_go(proc, Path("/nowhere"), {}, console)
    assert stopped == [proc]
    assert boot._not_resumed(console, RuntimeError("x")) == "qemu did not read the saved boot back (migration: failed)"
    qemu = ["qemu-system-x86_64: Not a migration stream",
            "qemu-system-x86_64: load of migration failed: Invalid argument"]
    assert boot._not_resumed(qemu + console, RuntimeError("x")) == "load of migration failed: Invalid argument"


def test_the_console_reader_starts_a_marks_hook_and_counts_go_as_the_initramfs(monkeypatch):
    proc = _Proc([b"@@twlab-vm:mark go@@\n", b"@@twlab-vm:mark ready@@\n"])
    called = threading.Event()
    marks = {"qemu": time.monotonic()}
    timing._reader(proc, [], marks, lambda s: None, {"ready": called.set})()
    assert called.wait(5) and marks["init"] == marks["go"]


def test_the_go_line_goes_to_qemus_stdin_and_a_closed_one_is_no_error():
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    boot._go(proc)
    proc.stdin.close()
    assert proc.stdout.read().startswith(b"\ngo ")
    proc.wait()
    boot._go(proc)                                # closed: nothing raised
