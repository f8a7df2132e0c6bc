"""lost-ack with a gVisor host (``--stack client=gvisor`` or ``server=gvisor``): the same steps,
followed on the wire instead of through sock_diag (gVisor has none), and the client's TIME-WAIT
measured by the router's prober (lab.twprobe) once the server is done. Not a scenario (the leading
underscore keeps it out of the catalog): lost_ack runs and judges through it.

Each stack's own numbers - the FIN retransmission schedule, how long TIME-WAIT lasts - are reported
beside RFC 1122's (2 MSL = 4 min) and BSD's (2 MSL = 60 s) values; the RFC rules (re-ACK every
retransmitted FIN, restart the 2 MSL timer, back off the RTO) are judged for each stack from the
packets. Checks that need sock_diag or Linux's sysctls say "not applicable" for a gVisor host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab import twprobe, wire
from lab.timerwheel import max_late_s
from lab.verdict import Check

if TYPE_CHECKING:
    from lab.core import Lab

    from .lost_ack import Seen

__all__ = ["run", "TIME_WAIT_S", "probe_interval", "closer_holds_time_wait_wire", "server_fin_schedule",
           "time_wait_length_on_the_wire", "time_wait_restarts_on_the_wire", "not_applicable"]

FINS_UNDER_DROP = 4          # the first FIN and three retransmissions (Linux: a TLP and two RTOs)
TIME_WAIT_S = {              # each stack's TIME-WAIT length, from its source (reference R-TW-PROBE)
    "linux": 60.0,           # include/net/tcp.h TCP_TIMEWAIT_LEN
    "gvisor": 60.0,          # pkg/tcpip/transport/tcp/protocol.go DefaultTCPTimeWaitTimeout
}
RFC1122_2MSL_S, BSD_2MSL_S = 240.0, 60.0
CLOCKS_S = 0.1               # the capture's and the prober's clocks, the probe's flight
CITE_LEN = ("RFC 9293 §3.10.7.4 / RFC 1122 §4.2.2.13: TIME-WAIT lasts 2 MSL, MSL the implementation's "
            "choice (RFC 1122: 2 min, so 4 min; BSD: 30 s, so 60 s); reference R-TW-PROBE")
CITE_ACK_RESTART = ("RFC 9293 §3.10.7.4 (RFC 793 p.73): TIME-WAIT, FIN arrives: acknowledge it, restart the "
                    "2 MSL timeout; gVisor handleTimeWaitSegment() (pkg/tcpip/transport/tcp/rcv.go)")


def probe_interval(stack: str) -> float:
    """gVisor's timers are Go timers (ms); Linux's answer to the SYN probe is rate-limited to one per
    tcp_invalid_ratelimit (500 ms), and its wheel is coarser than that anyway."""
    return 0.2 if stack == "gvisor" else 0.6


def run(lab: Lab, port: int) -> dict:
    """lost_ack's steps, waited for on the wire; then the client's TIME-WAIT probed to its end."""
    server, client = lab.peer("server"), lab.peer("client")
    server.listen("L", port)
    cport = client.connect("c", lab.host("server").address, port)["local"][1]
    server.accept("L", as_="conn")
    lab.sampled()              # a Linux end's socket followed from here (lost_ack's steps say why)
    client.send("c", b"hello")
    server.recv("conn")
    client.close("c")                                          # FIN ->

    lab.wait_for("the server's ACK of the client's FIN (on the wire)",
                 lambda: wire.fin_acked(lab, "server", cport, port), timeout_s=5)
    lab.faults.drop("lost-ack", lab.host("client"), lab.host("server"), flags="ack")
    server.shutdown("conn", "wr")                              # <- FIN, server LAST_ACK
    lab.wait_for(f"{FINS_UNDER_DROP} FINs from the server (on the wire)",
                 lambda: len(wire.fins(wire.at_router(lab, "server"), port, cport)) >= FINS_UNDER_DROP,
                 timeout_s=15)
    lab.faults.lift("lost-ack")
    lifted = lab.faults.faults["lost-ack"].to_json().get("removed_at") or 0

    def delivered():
        segs = wire.at_router(lab, "server")
        f = wire.fins(segs, port, cport)
        return f and [a for a in wire.acks_of_fin(segs, f[-1]) if a.t >= lifted]
    lab.wait_for("a client ACK of the server's FIN forwarded to the server after the lift",
                 delivered, timeout_s=15)
    after = server.info("conn")
    server.close("conn")
    server.close("L")
    stack = wire.stack_of(lab, "client")
    probed = twprobe.measure(lab, "client", "server", cport, port, interval_s=probe_interval(stack),
                             timeout_s=2.5 * TIME_WAIT_S[stack])
    return {"server_so_error": after.result.get("so_error_seen", after["so_error"]),
            "server_state_after": after["state"], "client_port": cport, "client_probe": probed}


# -- the checks a gVisor host changes -----------------------------------------------------------------

def _probe(s: Seen) -> dict:
    return s.ev.facts.get("client_probe") or {}


def closer_holds_time_wait_wire(s: Seen) -> Check:
    """The client (it closed first) holds TIME-WAIT after the close: the prober's first answer."""
    p = _probe(s)
    answers = [a["answer"] for a in p.get("answers", [])]
    srv = wire.stack_of(s.ev, "server")
    srv_tw = s.ev.ever_in("server", "TIME_WAIT") if srv == "linux" else None
    unseen = srv == "linux" and not s.conn.followed("server")
    ok = bool(answers) and answers[0] == "ack" and not srv_tw
    observed = (f"router prober ({p.get('probe')} probe): first answer {answers[0] if answers else 'none'}"
                + ("; server (Linux) " + ("entered" if srv_tw else "never entered") + " TIME_WAIT (sock_diag)"
                   + (", its socket of this connection never sampled" if unseen else "")
                   if srv == "linux" else "; server (gVisor): no sock_diag, only the client is judged"))
    return Check.judged(
        "client-closed-first-holds-time-wait", "RFC 9293 §3.6.1 / RFC 1122 §4.2.2.13: the side that closes "
        "first lingers in TIME-WAIT", "the client answers the first probe as TIME-WAIT does (an ACK); a Linux "
        "server never enters TIME_WAIT", observed,
        None if not answers or (ok and unseen) else ok,
        {"first_answer": answers[0] if answers else None, "server_time_wait": srv_tw},
        missing=f"{observed}: " + ("the prober got no answers" if not answers else "the server's states are not known"))


def server_fin_schedule(s: Seen) -> Check:
    """The server's FIN retransmissions from server.pcap, for either stack: one sequence number,
    RTO intervals not shrinking and doubling (RFC 6298 §5.5). Linux's first gap is its tail-loss
    probe when tcp_early_retrans says so; for gVisor (no Linux sysctl reaches it) a first gap shorter
    than half the next is counted as its RACK-TLP probe (pkg/tcpip/transport/tcp/rack.go)."""
    times = s.fin_times
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]
    seqs = sorted({f.seq for f in s.fins_srv})
    stack = wire.stack_of(s.ev, "server")
    if stack == "linux":
        tlp = s.ev.sysctl("server", "net.ipv4.tcp_early_retrans", "3") in ("3", "4")
    else:
        tlp = len(gaps) >= 2 and gaps[0] < 0.5 * gaps[1]
    rto = gaps[1:] if tlp else gaps
    doubled = any(later >= 1.8 * earlier for i, earlier in enumerate(rto) for later in rto[i + 1:])
    growing = all(b >= 0.9 * a for a, b in zip(rto, rto[1:]))
    ok = len(s.fins_srv) >= 3 and len(seqs) == 1 and len(rto) >= 2 and growing and doubled
    hole = s.ev.capture_hole("server")
    return Check.judged(
        "server-retransmits-fin", "RFC 9293 §3.8.1 and RFC 6298 §5.5: retransmit on RTO, doubling it each time",
        ">= 3 FINs from the server with one sequence number; RTO intervals not shrinking, the RTO doubling",
        f"server.pcap ({stack}): {len(s.fins_srv)} FINs, seq {seqs}, intervals {gaps} s"
        + (f" (the first a tail-loss probe; RTO gaps {rto})" if tlp else ""),
        None if not ok and len(seqs) <= 1 and hole else ok,
        {"stack": stack, "fin_count": len(s.fins_srv), "fin_seqs": seqs, "fin_times": times, "intervals_s": gaps,
         "rto_intervals_s": rto, "tail_loss_probe": tlp},
        missing=f"server.pcap: {len(s.fins_srv)} FINs, intervals {gaps} s, but {hole}: a FIN may be missing")


def _length(s: Seen) -> tuple[dict, str, float, float, float]:
    p = _probe(s)
    stack = p.get("stack", wire.stack_of(s.ev, "client"))
    want = TIME_WAIT_S.get(stack, 60.0)
    interval = p.get("interval_s", 1.0)
    late = max_late_s(want, s.ev.hz) if stack == "linux" else 0.0
    return p, stack, want, interval, late


def time_wait_length_on_the_wire(s: Seen) -> Check:
    """How long the client held TIME-WAIT after its last ACK, probed from the router: it ended between
    the last probe answered "held" and the first answered "gone". Judged against the stack's own
    constant (Linux: at most one wheel granule late); RFC 1122's and BSD's values beside it."""
    p, stack, want, interval, late = _length(s)
    held, gone = p.get("held_until_s"), p.get("gone_by_s")
    observed = (f"router prober ({p.get('probe')} probe every {interval} s): client ({stack}) held TIME-WAIT "
                f"until +{held} s after its last ACK, gone by +{gone} s (RFC 1122: {RFC1122_2MSL_S:g} s, BSD: "
                f"{BSD_2MSL_S:g} s, {stack}'s constant: {want:g} s)")
    if not p or p.get("error") or held is None or gone is None or gone - held > 2 * interval + CLOCKS_S:
        return Check.inconclusive("time-wait-length-on-the-wire", CITE_LEN, f"TIME-WAIT ends {want:g} s after "
                                  "the last ACK", p.get("error") or f"{observed}: the probes did not bracket its end "
                                  f"within {2 * interval:g} s",
                                  {"held_until_s": held, "gone_by_s": gone})
    ok = gone >= want - CLOCKS_S and held <= want + late + CLOCKS_S
    return Check.judged(
        "time-wait-length-on-the-wire", CITE_LEN,
        f"TIME-WAIT ends {want:g} s after the client's last ACK" + (f" (at most {late:.3f} s late: the timer "
                                                                       "wheel)" if late else ""),
        observed, ok, {"stack": stack, "held_until_s": held, "gone_by_s": gone, "constant_s": want,
                       "rfc1122_s": RFC1122_2MSL_S, "bsd_s": BSD_2MSL_S, "probe": p.get("probe"),
                       "answers": len(p.get("answers", []))})


def time_wait_restarts_on_the_wire(s: Seen) -> Check:
    """The restart, from the wire (a gVisor client): TIME-WAIT lasted its length after the LAST
    re-ACK, not after the first ACK - told apart only when the FINs came further apart than the
    probing's resolution."""
    p, stack, want, interval, _ = _length(s)
    acks = [a for a in s.answers if a is not None]
    held, gone = p.get("held_until_s"), p.get("gone_by_s")
    spread = round(acks[-1].t - acks[0].t, 3) if len(acks) >= 2 else 0.0
    tol = interval + CLOCKS_S
    observed = (f"client ACKed {len(acks)} FINs over {spread} s; TIME-WAIT ended between +{held} and +{gone} s "
                "after the last ACK")
    if held is None or gone is None or spread <= 2 * tol:
        return Check.inconclusive("time-wait-timer-restarts", CITE_ACK_RESTART, "TIME-WAIT lasts its length "
                                  "after the last re-ACK", f"{observed}: too close together to tell a restart "
                                  f"(resolution {tol:.2f} s)", {"spread_s": spread})
    ok = gone >= want - CLOCKS_S and held <= want + tol
    return Check.judged(
        "time-wait-timer-restarts", CITE_ACK_RESTART,
        f"TIME-WAIT ends {want:g} s after the LAST re-ACK (without a restart: {want - spread:.2f} s after it)",
        observed, ok, {"spread_s": spread, "held_until_s": held, "gone_by_s": gone})


def not_applicable(name: str, cite: str, expected: str) -> Check:
    return Check.not_applicable(name, cite, expected, f"the client runs gVisor: {wire.NO_SOCK_DIAG}")
