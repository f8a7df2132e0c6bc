"""lab.sysctls: --sysctl keys checked against a kernel's listing before any host is made, and the
words for each way a write can fail (no root: the listing and /proc/sys are stand-ins)."""

from __future__ import annotations

import errno
import os

import pytest

from lab.errors import UsageError, quoted
from lab.nsops import _refusal
from lab.sysctls import KernelKeys, check_keys, parse_sysctl

# `unshare --net find /proc/sys/net -printf '%y %m %P\n'`, abridged (Linux 6.18)
LISTING = """\
d 555 core
f 444 core/rmem_max
f 644 core/somaxconn
d 555 ipv4
d 555 ipv4/conf
d 555 ipv4/conf/all
f 644 ipv4/conf/all/rp_filter
d 555 ipv4/conf/default
f 644 ipv4/conf/default/rp_filter
d 555 ipv4/conf/lo
f 644 ipv4/conf/lo/rp_filter
d 555 ipv4/route
f 200 ipv4/route/flush
f 644 ipv4/tcp_congestion_control
f 644 ipv4/tcp_max_tw_buckets
f 644 ipv4/tcp_rfc1337
f 644 ipv4/tcp_timestamps
"""
KEYS = KernelKeys.from_listing(LISTING)


@pytest.fixture
def host_root(tmp_path):
    """A stand-in for the host's own /proc/sys: a key only init_net has."""
    (tmp_path / "net" / "core").mkdir(parents=True)
    (tmp_path / "net" / "core" / "netdev_max_backlog").write_text("1000\n")
    return str(tmp_path)


def refused(text: str, host_root: str) -> str:
    with pytest.raises(UsageError) as info:
        check_keys([parse_sysctl(text)], KEYS, host_root)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("--sysctl '"), msg
    return msg


def test_listing_parsed():
    assert KEYS.modes["net.ipv4.route.flush"] == 0o200
    assert "net.ipv4.conf.lo" in KEYS.groups and "net.ipv4.conf.lo.rp_filter" in KEYS.modes


@pytest.mark.parametrize("text", [
    "client:net.ipv4.tcp_rfc1337=1", "server:net.core.somaxconn=64",
    "client:net.ipv4.conf.all.rp_filter=2",
    "client:net.ipv4.conf.eth0.rp_filter=2",     # a lab host's interface: checked as conf.default's
])
def test_keys_a_lab_host_has(text, host_root):
    check_keys([parse_sysctl(text)], KEYS, host_root)


@pytest.mark.parametrize("text, says", [
    ("client:net.ipv4=1", ["net.ipv4 is a group of sysctls, not one", "e.g. net.ipv4.tcp_congestion_control"]),
    ("client:net.ipv4.tcp_rfc1337.x=1", ["unknown sysctl 'net.ipv4.tcp_rfc1337.x'",
                                         "did you mean net.ipv4.tcp_rfc1337?"]),
    ("client:net.ipv4.tcp_rfc133=1", ["unknown sysctl 'net.ipv4.tcp_rfc133'", "did you mean net.ipv4.tcp_rfc1337?"]),
    ("client:net.ipv4.route.flush=1", ["net.ipv4.route.flush is write-only"]),
    ("client:net.core.rmem_max=4096", ["net.core.rmem_max is read-only in a lab host"]),
    ("client:net.core.netdev_max_backlog=5", ["global to the kernel", "only the host's own network namespace"]),
    ("client:net.ipv4.conf.eth0.rp_filtr=2", ["unknown sysctl 'net.ipv4.conf.eth0.rp_filtr'",
                                              "did you mean net.ipv4.conf.eth0.rp_filter?"]),
    ("client:net.ipv4.no_such_thing_at_all=1", ["unknown sysctl", "`sysctl net` lists them"]),
])
def test_keys_refused_before_bring_up(text, says, host_root):
    msg = refused(text, host_root)
    for part in says:
        assert part in msg, (part, msg)


def test_no_listing_checks_nothing(monkeypatch):
    """Where no throwaway namespace can be made, the keys are judged when written."""
    monkeypatch.setattr("lab.sysctls.kernel_keys", lambda: None)
    check_keys([parse_sysctl("client:net.ipv4.whatever=1")])


def test_a_long_value_is_cut_in_messages():
    value = "9" * 100_000
    with pytest.raises(UsageError) as info:
        parse_sysctl(f"client:net.ipv4.tcp_rfc1337={value}")
    msg = str(info.value)
    assert len(msg) < 300 and "(100028 characters)" in msg, msg[:400]
    assert quoted("x" * 61).endswith("... (61 characters)") and quoted("abc") == "'abc'"


@pytest.mark.parametrize("text", ["client:net..ipv4=1", "client:net.ipv4.=1", "client:net.ip v4.x=1"])
def test_malformed_key(text):
    with pytest.raises(UsageError, match="is not a sysctl name"):
        parse_sysctl(text)


# -- a write the kernel refuses: bad value, not unknown key ---------------------------------------

def test_refusal_words(tmp_path):
    key = tmp_path / "tcp_congestion_control"
    key.write_text("cubic\n")
    path = str(key)
    # ENOENT from a key that exists: tcp_congestion_control does not know that algorithm
    msg = _refusal("net.ipv4.tcp_congestion_control", path, OSError(errno.ENOENT, "x"), "cubic;id")
    assert msg == ("bad value for net.ipv4.tcp_congestion_control: the kernel refused 'cubic;id' "
                   "(the kernel has no such choice)")
    msg = _refusal("net.ipv4.tcp_ecn", path, OSError(errno.EINVAL, os.strerror(errno.EINVAL)), "9" * 1000)
    assert msg.startswith("bad value for net.ipv4.tcp_ecn: the kernel refused '999") and "(1000 characters)" in msg
    assert "(invalid argument)" in msg
    assert "write-only" in _refusal("net.ipv4.route.flush", path, PermissionError(errno.EACCES, "x"))
    assert "read-only" in _refusal("net.core.rmem_max", path, PermissionError(errno.EACCES, "x"), "1")
    assert "group of sysctls" in _refusal("net.ipv4", str(tmp_path), IsADirectoryError(errno.EISDIR, "x"), "1")
    assert _refusal("net.ipv4.tcp_rfc1337.x", path + "/x", NotADirectoryError(errno.ENOTDIR, "x"), "1") \
        .startswith("unknown sysctl 'net.ipv4.tcp_rfc1337.x'")


def test_shortened_cuts_only_huge_words():
    from lab.errors import shortened

    line = "twlab: unknown scenario '" + "x" * 100_000 + "': `invoke list` shows them all"
    assert shortened(line) == ("twlab: unknown scenario '" + "x" * 59 + "... (100003 characters) "
                               "`invoke list` shows them all")
    path = "/tmp/" + "p" * 150
    assert shortened(f"cannot write {path} (No space)") == f"cannot write {path} (No space)"
