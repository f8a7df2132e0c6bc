"""lab.nft over a real kernel: in a throwaway network namespace (removed afterwards), a table made
through libnftables is there and only there, JSON and echoed handles come back as nft prints
them, and a bad command is one BackendError line with nft's own words."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from lab.errors import BackendError
from lab.faults import _handle_from_echo
from lab.nft import Nft

pytestmark = pytest.mark.integration


@pytest.fixture
def netns():
    name = f"twtest-nft-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def tables(nspath: str | None) -> str:
    argv = ["nft", "list", "tables"]
    if nspath:
        argv = ["nsenter", f"--net={nspath}", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_a_table_is_made_in_the_namespace_and_nowhere_else(netns):
    here = tables(None)
    nft = Nft(netns)
    nft.run("add table inet twtest\nadd chain inet twtest forward { type filter hook forward priority -10; }\n")
    assert "table inet twtest" in tables(netns)
    assert tables(None) == here                          # this machine's own namespace untouched


def test_echo_gives_the_handle_and_json_the_counter(netns):
    nft = Nft(netns)
    nft.run("add table inet twtest\nadd chain inet twtest forward { type filter hook forward priority -10; }\n")
    out = nft.run("add counter inet twtest c_x\nadd rule inet twtest forward tcp flags & (fin) == (fin) "
                  'counter name "c_x" drop\n', echo=True)
    handle = _handle_from_echo(out)                      # what lab.faults reads from nft's echo
    doc = json.loads(nft.run("list counter inet twtest c_x", json=True))
    assert [i["counter"]["packets"] for i in doc["nftables"] if "counter" in i] == [0]
    nft.run(f"delete rule inet twtest forward handle {handle}")
    assert "drop" not in tables(netns) and "drop" not in subprocess.run(
        ["nsenter", f"--net={netns}", "--", "nft", "list", "ruleset"], capture_output=True, text=True).stdout


def test_a_bad_command_is_one_line_with_nfts_words(netns):
    nft = Nft(netns)
    with pytest.raises(BackendError) as err:
        nft.run("delete table inet nosuchtable")
    assert "\n" not in str(err.value)
    assert "nosuchtable" in str(err.value) and "No such file or directory" in str(err.value)
