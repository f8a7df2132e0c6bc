"""lab.shaping without a kernel: --shape parsing, and the netem message pyroute2 builds with the
lab's seed attribute (the bytes the kernel would receive, and what a kernel's reply decodes to)."""

from __future__ import annotations

import struct

import pytest

from lab.errors import UsageError
from lab.netem import SeededNetem
from lab.shaping import LinkProfile, Shaping, parse_shape, parse_shapes


def test_parse_shape_both_and_one_direction():
    both = parse_shape("both:delay_ms=10,loss_pct=20")
    assert [(s.src, s.dst) for s in both] == [("client", "server"), ("server", "client")]
    assert both[0].profile == LinkProfile(delay_ms=10, loss_pct=20)
    one = parse_shape("client->server:loss_pct=5,seed=42")
    assert one == [Shaping("client", "server", LinkProfile(loss_pct=5, seed=42))]
    assert str(one[0]) == "client->server:loss_pct=5.0,seed=42"
    assert parse_shape("both:seed=0x10")[0].profile.seed == 16
    assert str(parse_shape("both:seed=0")[0]).endswith("seed=0")


@pytest.mark.parametrize("text, words", [
    ("client->server:seed=-1", "out of range"),
    ("client->server:seed=1.5", "seed takes a whole number"),
    (f"both:seed={2**64}", "out of range"),
    ("both:loss_pct=101", "out of range"),
    ("both:nonsense=1", "unknown setting 'nonsense'"),
    ("client-server:loss_pct=1", "write SRC->DST"),
    ("both:delay_ms=nan", "delay_ms='nan' is out of range"),        # float() takes them: refused
    ("both:delay_ms=inf", "delay_ms='inf' is out of range"),
    ("both:loss_pct=-inf", "out of range"),
    ("both:rate_kbit=infinity", "out of range"),
    ("both:delay_ms=10,delay_ms=20", "delay_ms is given twice"),
    ("client->client:delay_ms=10", "client->client is no path"),
    ("server -> server:loss_pct=1", "server->server is no path"),
])
def test_parse_shape_refuses_bad_input(text, words):
    with pytest.raises(UsageError, match=words) as info:
        parse_shape(text)
    assert str(info.value).startswith(f"--shape {text!r}: ")


def test_a_direction_shaped_twice_is_refused():
    assert len(parse_shapes(["client->server:delay_ms=5", "server->client:delay_ms=5"])) == 2
    with pytest.raises(UsageError, match="client->server is already shaped"):
        parse_shapes(["both:delay_ms=5", "client->server:loss_pct=1"])


def test_a_long_shape_is_cut_in_messages():
    text = "both:delay_ms=" + "1" * 100_000 + "x"
    with pytest.raises(UsageError) as info:
        parse_shape(text)
    assert len(str(info.value)) < 300, str(info.value)[:400]


def _attrs(buf: bytes, start: int) -> dict[int, bytes]:
    out, i = {}, start
    while i + 4 <= len(buf):
        length, kind = struct.unpack_from("<HH", buf, i)
        if length < 4:
            break
        out[kind & 0x3FFF] = buf[i + 4:i + length]
        i += (length + 3) & ~3
    return out


def test_the_seed_travels_as_tca_netem_prng_seed():
    from pyroute2.netlink.rtnl.tcmsg import plugins, tcmsg

    assert plugins["netem"] is SeededNetem          # installed for every tc("...", "netem") call
    args = LinkProfile(delay_ms=10, loss_pct=20, seed=0x1122334455667788)._netem_args()
    msg = tcmsg()
    msg["attrs"] = [["TCA_KIND", "netem"], ["TCA_OPTIONS", SeededNetem.get_parameters(dict(args))]]
    msg.encode()
    raw = bytes(msg.data)
    top = _attrs(raw, 16 + 20)                       # struct nlmsghdr, struct tcmsg, then attributes
    options = top[2]                                 # TCA_OPTIONS: struct tc_netem_qopt, then attributes
    qopt = struct.unpack_from("<6I", options, 0)
    assert qopt[2] == int(0.20 * 0xFFFFFFFF)         # loss as a fraction of 2^32
    nested = _attrs(options, 24)
    assert struct.unpack("<Q", nested[14]) == (0x1122334455667788,)
    # and decoded back, as read_back() reads a kernel's reply
    back = tcmsg(msg.data)
    back.decode()
    assert back.get_attr("TCA_OPTIONS").get_attr("TCA_NETEM_PRNG_SEED") == 0x1122334455667788


def test_no_seed_sends_no_seed_attribute():
    opts = SeededNetem.get_parameters(dict(LinkProfile(loss_pct=20)._netem_args()))
    assert "TCA_NETEM_PRNG_SEED" not in [a[0] for a in opts["attrs"]]
