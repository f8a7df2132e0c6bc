"""scripts/setup on systems other than Debian, played by their /etc/os-release (TWLAB_OS_RELEASE):
Fedora, Arch and Alpine get the one command that installs what the lab runs and exit 2, and apt
is never run there; Debian and Ubuntu keep installing with apt."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

OS_RELEASES = {
    "fedora": 'NAME="Fedora Linux"\nID=fedora\nPRETTY_NAME="Fedora Linux 41 (Workstation Edition)"\n',
    "rocky": 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nPRETTY_NAME="Rocky Linux 9.4"\n',
    "arch": 'NAME="Arch Linux"\nID=arch\nPRETTY_NAME="Arch Linux"\n',
    "manjaro": 'NAME="Manjaro Linux"\nID=manjaro\nID_LIKE=arch\nPRETTY_NAME="Manjaro Linux"\n',
    "alpine": 'NAME="Alpine Linux"\nID=alpine\nPRETTY_NAME="Alpine Linux v3.20"\n',
    "ubuntu": 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n',
}
INSTALL_LINES = {
    "fedora": "dnf install -y iproute nftables tcpdump util-linux python3",
    "rocky": "dnf install -y iproute nftables tcpdump util-linux python3",
    "arch": "pacman -S --needed iproute2 nftables tcpdump util-linux python",
    "manjaro": "pacman -S --needed iproute2 nftables tcpdump util-linux python",
    "alpine": "apk add bash iproute2 nftables tcpdump util-linux-misc setpriv python3",
}
# stand-ins for each system's package tools: they log their calls; rpm, pacman and apk answer
# "installed" only when told to
FAKES = ("apt-get", "apt", "dpkg", "dpkg-query", "rpm", "pacman", "apk")


@pytest.fixture
def checkout(tmp_path):
    """A copy of scripts/setup in a checkout whose .venv is made and whose stamp is fresh, so
    that a setup that goes on past the system's packages returns without installing anything."""
    top = tmp_path / "co"
    (top / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup", top / "scripts" / "setup")
    shutil.copy(REPO / "pyproject.toml", top / "pyproject.toml")
    (top / ".venv" / "bin").mkdir(parents=True)
    (top / ".venv" / "bin" / "python").write_text("#!/bin/sh\nexit 0\n")
    (top / ".venv" / "bin" / "python").chmod(0o755)
    stamp = hashlib.sha256((top / "pyproject.toml").read_bytes() + (top / "scripts" / "setup").read_bytes())
    (top / ".venv" / ".setup-stamp").write_text(stamp.hexdigest() + "\n")
    return top


def _fakes(tmp_path: Path, installed: bool) -> tuple[Path, Path]:
    bin_dir, log = tmp_path / "fakebin", tmp_path / "calls.log"
    bin_dir.mkdir(exist_ok=True)
    for name in FAKES:
        code = 0 if installed or name.startswith(("apt", "dpkg")) else 1
        if name == "dpkg-query" and not installed:
            body = 'echo "not-installed iproute2"'      # every Debian package missing
        elif name == "dpkg-query":
            body = 'for p in "$@"; do case $p in -*) ;; *) echo "installed $p";; esac; done'
        else:
            body = ":"
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >>{log}\n{body}\nexit {code}\n')
        (bin_dir / name).chmod(0o755)
    return bin_dir, log


def _setup(checkout: Path, tmp_path: Path, system: str, installed: bool = False) -> subprocess.CompletedProcess:
    (tmp_path / "os-release").write_text(OS_RELEASES[system])
    bin_dir, _ = _fakes(tmp_path, installed)
    env = {**os.environ, "TWLAB_OS_RELEASE": str(tmp_path / "os-release"),
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("TWLAB_SETUP_FAMILY", None)
    return subprocess.run([str(checkout / "scripts" / "setup")], env=env, capture_output=True, text=True,
                          timeout=60)


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("system", sorted(INSTALL_LINES))
def test_another_system_is_told_its_install_command_and_apt_is_never_run(checkout, tmp_path, system):
    done = _setup(checkout, tmp_path, system)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"\n    {INSTALL_LINES[system]}\n" in done.stderr, done.stderr
    assert OS_RELEASES[system].split('PRETTY_NAME="')[1].split('"')[0] in done.stderr
    assert not [c for c in _calls(tmp_path) if c.startswith(("apt", "dpkg"))], _calls(tmp_path)


@pytest.mark.parametrize("system", ["fedora", "arch", "alpine"])
def test_with_its_packages_in_another_system_goes_on_without_apt(checkout, tmp_path, system):
    done = _setup(checkout, tmp_path, system, installed=True)
    assert done.returncode == 0, (done.stdout, done.stderr)
    calls = _calls(tmp_path)
    assert calls and not [c for c in calls if c.startswith(("apt", "dpkg"))], calls   # it asked its own tool


def test_ubuntu_still_installs_with_apt(checkout, tmp_path):
    """The same stand-ins see apt called where it belongs: the checks above can see it."""
    done = _setup(checkout, tmp_path, "ubuntu")
    calls = _calls(tmp_path)
    if os.geteuid() != 0:
        assert done.returncode == 1 and "needs root to install" in done.stderr
    else:
        assert any(c.startswith("apt-get install") for c in calls), (calls, done.stderr)


def test_an_unknown_system_with_the_programs_goes_on(checkout, tmp_path):
    (tmp_path / "os-release").write_text('ID=opensuse-tumbleweed\nID_LIKE="opensuse suse"\n')
    bin_dir, _ = _fakes(tmp_path, installed=False)
    env = {**os.environ, "TWLAB_OS_RELEASE": str(tmp_path / "os-release"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    missing = [t for t in ("ip", "nft", "tcpdump", "nsenter", "setpriv", "unshare") if not shutil.which(t)]
    done = subprocess.run([str(checkout / "scripts" / "setup")], env=env, capture_output=True, text=True, timeout=60)
    if missing:
        assert done.returncode == 2 and "programs are missing" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
    assert not [c for c in _calls(tmp_path) if c.startswith(("apt", "dpkg"))]
