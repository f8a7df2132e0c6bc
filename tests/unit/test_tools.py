"""lab.tools: the programs the lab runs are checked before it makes anything, and every missing
one is named in one line."""

from __future__ import annotations

import pytest

from lab.errors import EnvError
from lab.tools import missing_tools, require_tools


def test_every_missing_program_is_named_in_one_line_with_its_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))          # an empty directory: nothing is found
    with pytest.raises(EnvError) as err:
        require_tools("docker")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("this machine lacks ip, nft, tcpdump, nsenter, setpriv, unshare, docker, ")
    assert "install iproute2, nftables, tcpdump, util-linux, docker.io " in msg
    assert err.value.exit_code == 2


def test_only_the_missing_ones_are_named(monkeypatch, tmp_path):
    for present in ("ip", "nsenter", "setpriv", "unshare"):
        (tmp_path / present).write_text("#!/bin/sh\n")
        (tmp_path / present).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert missing_tools("netns") == ["nft", "tcpdump"]      # the netns backend runs no docker
    with pytest.raises(EnvError, match=r"lacks nft, tcpdump, which the lab runs: install nftables, tcpdump "):
        require_tools("netns")


def test_nothing_is_said_when_all_are_there(monkeypatch, tmp_path):
    for present in ("ip", "nft", "tcpdump", "nsenter", "setpriv", "unshare"):
        (tmp_path / present).write_text("#!/bin/sh\n")
        (tmp_path / present).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    require_tools("netns")
    assert missing_tools("docker") == ["docker"]
