"""lab.vm.warmup: what the guest loads and reads ahead in the background while its Python starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lab.vm import boot, warmup
from lab.vm.kernel import REPO


def test_stage2_starts_the_warm_up_in_the_background_before_the_command():
    stage2 = boot._stage2(["/r/.venv/bin/python", "run"], warm=True)
    loads, reads, start = (stage2.index("modprobe -q -a"), stage2.index('xargs -r cat < "$ctl/warm.list"'),
                           stage2.index(boot.START))
    assert stage2.index("ctl=/run/twlab-vm/ctl") < loads < reads < start
    assert all(m in stage2 for m in warmup.MODULES)
    assert "modprobe" not in boot._stage2(["/r/.venv/bin/python", "run"])      # only when asked


def test_the_warm_up_returns_at_once_loads_the_modules_quietly_and_reads_each_file(tmp_path):
    bin_dir, ctl = tmp_path / "bin", tmp_path / "ctl"
    bin_dir.mkdir()
    ctl.mkdir()
    said, go = tmp_path / "modprobe.args", tmp_path / "go"
    # modprobe finishes only once the command is done: a shell that waited for it would hang
    (bin_dir / "modprobe").write_text(f'#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.02; done\necho "$@" > {said}\n')
    (bin_dir / "modprobe").chmod(0o755)
    present = tmp_path / "present.pyc"
    present.write_bytes(b"x" * 1000)
    (ctl / "warm.list").write_text(f"{present}\n{tmp_path / 'missing.pyc'}\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    try:
        done = subprocess.run(["sh", "-c", warmup.script(str(ctl)) + "echo command\n"], env=env,
                              capture_output=True, text=True, timeout=20)
        assert done.returncode == 0 and done.stdout == "command\n"      # a missing file is no error
        assert not said.exists()
    finally:
        go.touch()                                                      # the fake modprobe ends either way
    for _ in range(200):
        if said.exists():
            break
        time.sleep(0.05)
    assert said.read_text().split() == ["-q", "-a", *warmup.MODULES]


def test_the_read_ahead_lists_the_lab_its_packages_the_tools_and_python():
    lines = warmup.listing().splitlines()
    assert len(lines) == len(set(lines)) and all(os.path.isfile(f) for f in lines)
    tag = f".{sys.implementation.cache_tag}.pyc"
    assert str(REPO / "lab" / "__pycache__" / f"core{tag}") in lines         # the lab's own, compiled
    for package in ("pyroute2", "dpkt"):                                      # imported only in the guest
        assert any(f"/site-packages/{package}/" in f and f.endswith(tag) for f in lines), package
    assert os.path.realpath(sys.executable) in lines
    for tool in ("tcpdump", "nft"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found:
            assert found in lines, tool
    assert any(Path(f).name.startswith("libc.so") for f in lines)            # a tool's libraries (ldd)
