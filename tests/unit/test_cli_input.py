"""What users type: --sysctl, scenario names, backend names, fault flags; and what a verdict is."""

from __future__ import annotations

import pytest

import scenarios
from lab.backends import BACKENDS, choose
from lab.core import SysctlSetting, parse_sysctl
from lab.errors import UsageError
from lab.faults import _flag_expr
from lab.verdict import Check, verdict

# -- --sysctl HOST:KEY=VALUE ---------------------------------------------------------------------


@pytest.mark.parametrize("text, host, key, value", [
    ("client:net.ipv4.tcp_max_tw_buckets=0", "client", "net.ipv4.tcp_max_tw_buckets", "0"),
    ("server:net.ipv4.tcp_rfc1337=1", "server", "net.ipv4.tcp_rfc1337", "1"),
    ("router:net/ipv4/ip_forward=0", "router", "net.ipv4.ip_forward", "0"),       # sysctl -w style
    (" client : net.ipv4.tcp_fin_timeout = 30 ", "client", "net.ipv4.tcp_fin_timeout", "30"),
    ("client:net.ipv4.ip_local_port_range=40000 40100", "client", "net.ipv4.ip_local_port_range",
     "40000 40100"),
    ("client:net.ipv4.conf.all.rp_filter=2", "client", "net.ipv4.conf.all.rp_filter", "2"),
    ("client:net.core.somaxconn=64", "client", "net.core.somaxconn", "64"),
])
def test_parse_sysctl_good(text, host, key, value):
    s = parse_sysctl(text)
    assert s == SysctlSetting(host, key, value)


def test_sysctl_setting_prints_as_typed():
    assert str(parse_sysctl("client:net.ipv4.tcp_max_tw_buckets=0")) == \
        "client:net.ipv4.tcp_max_tw_buckets=0"


@pytest.mark.parametrize("text", [
    "net.ipv4.tcp_rfc1337=1",             # no host
    ":net.ipv4.tcp_rfc1337=1",            # empty host
    "client:net.ipv4.tcp_rfc1337",        # no value
    "client:net.ipv4.tcp_rfc1337=",       # empty value
    "client:=1",                          # no key
    "client",
    "",
])
def test_parse_sysctl_malformed(text):
    with pytest.raises(UsageError, match=r"HOST:KEY=VALUE") as info:
        parse_sysctl(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text", [
    "client:kernel.pid_max=4194304",
    "client:vm.swappiness=10",
    "client:fs.file-max=1000",
    "client:tcp_max_tw_buckets=0",        # a bare name: not a full key
])
def test_parse_sysctl_refuses_non_network_keys(text):
    with pytest.raises(UsageError, match=r"net\.\*"):
        parse_sysctl(text)


@pytest.mark.parametrize("text", ["client:net.ipv4.tcp_rfc1337= ", "  :net.ipv4.tcp_rfc1337=1",
                                  "client: =1"])
def test_parse_sysctl_blank_value_host_or_key(text):
    with pytest.raises(UsageError, match=r"HOST:KEY=VALUE"):
        parse_sysctl(text)


@pytest.mark.parametrize("text", [
    "client:net.ipv4.tcp_rfc1337=1", "client:net.ipv4.tcp_rfc1337=0", "client:net.ipv4.tcp_tw_reuse=2",
    "client:net.ipv4.tcp_max_tw_buckets=0", "client:net.ipv4.tcp_orphan_retries=255",
    "client:net.ipv4.tcp_tw_reuse_delay=1",
    "client:net.ipv4.tcp_ecn=9",        # no range known here: the kernel decides when it is written
])
def test_parse_sysctl_in_range(text):
    assert str(parse_sysctl(text)) == text


@pytest.mark.parametrize("text, why", [
    ("client:net.ipv4.tcp_rfc1337=7", "out of range"),      # the kernel stores 7 without a word
    ("client:net.ipv4.tcp_tw_reuse=3", "out of range"),
    ("client:net.ipv4.tcp_max_tw_buckets=-1", "out of range"),
    ("client:net.ipv4.tcp_orphan_retries=256", "out of range"),
    ("client:net.ipv4.tcp_tw_reuse_delay=0", "out of range"),
    ("client:net.ipv4.tcp_timestamps=1.5", "whole number"),
    ("client:net/ipv4/tcp_rfc1337=on", "whole number"),
])
def test_parse_sysctl_out_of_range(text, why):
    with pytest.raises(UsageError, match=why) as info:
        parse_sysctl(text)
    assert repr(text) in str(info.value)


# -- scenario names ------------------------------------------------------------------------------

def test_catalog_has_lost_ack():
    cat = scenarios.catalog()
    assert "lost-ack" in cat
    sc = cat["lost-ack"]
    assert sc.name == "lost-ack" and sc.intent and callable(sc.run) and callable(sc.judge)
    assert scenarios.get("lost-ack").name == sc.name


@pytest.mark.parametrize("typo", ["lost-ak", "lostack", "lost_ack", "Lost-Ack", "lst-ack"])
def test_unknown_scenario_suggests_the_close_one(typo):
    with pytest.raises(UsageError) as info:
        scenarios.get(typo)
    msg = str(info.value)
    assert f"unknown scenario {typo!r}" in msg
    assert "did you mean lost-ack?" in msg
    assert "invoke list" in msg


def test_unknown_scenario_far_from_any_suggests_nothing():
    with pytest.raises(UsageError) as info:
        scenarios.get("zzzzzzzzzz")
    assert "did you mean" not in str(info.value) and "invoke list" in str(info.value)


# -- fault flags -----------------------------------------------------------------------------

MASK = "(fin|syn|rst|psh|ack|urg)"


@pytest.mark.parametrize("flags, has, expr", [
    ("ack", None, f"tcp flags & {MASK} == (ack)"),                  # pure ACKs only
    ("fin,ack", None, f"tcp flags & {MASK} == (fin|ack)"),
    ("FIN|ACK", None, f"tcp flags & {MASK} == (fin|ack)"),
    (" syn , ack ", None, f"tcp flags & {MASK} == (syn|ack)"),
    (None, "fin", "tcp flags & (fin) == (fin)"),                     # anything carrying FIN
    (None, "rst|ack", "tcp flags & (rst|ack) == (rst|ack)"),
    (None, None, "meta l4proto tcp"),
    ("ack", "fin", f"tcp flags & {MASK} == (ack)"),                 # exact flags win
])
def test_flag_expr(flags, has, expr):
    assert _flag_expr(flags, has) == expr


@pytest.mark.parametrize("flags, has", [("ack,ecn", None), (None, "push"), ("a", None)])
def test_flag_expr_unknown_flag(flags, has):
    with pytest.raises(UsageError, match="unknown TCP flag"):
        _flag_expr(flags, has)


# -- backends --------------------------------------------------------------------------------

def test_unknown_backend_is_a_usage_error():
    with pytest.raises(UsageError, match=r"unknown backend 'foo': choose auto, docker or netns"):
        choose("foo")


def test_backend_names():
    assert set(BACKENDS) == {"docker", "netns"}
    assert {cls.name for cls in BACKENDS.values()} == {"docker", "netns"}


# -- verdicts --------------------------------------------------------------------------------

def _check(passed: bool, name: str = "c") -> Check:
    return Check(name, "RFC 9293 §3.10.7.4", "expected", "observed", passed)


def test_no_checks_is_not_a_pass():
    assert verdict([]) == "fail"


def test_verdict():
    assert verdict([_check(True)]) == "pass"
    assert verdict([_check(True, "a"), _check(True, "b")]) == "pass"
    assert verdict([_check(True, "a"), _check(False, "b")]) == "fail"
    assert verdict([_check(False)]) == "fail"


def test_check_json():
    d = Check("n", "cite", "exp", "obs", True, {"x": 1}).to_json()
    assert d == {"name": "n", "citation": "cite", "expected": "exp", "observed": "obs",
                 "passed": True, "values": {"x": 1}, "outcome": "pass"}
