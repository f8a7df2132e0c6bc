"""tw-reopen's check of the accepted SYN's answer: the new connection's ISN. Not a scenario: the
leading underscore keeps it out of the catalog; scenarios/tw_reopen.py describes the rules, runs the
steps and reads the captures (its Case is what this reads).

RFC 1122 §4.2.2.13 condition (1) asks that a connection reopened from TIME-WAIT start above every
sequence number the old one used. Linux computes isn = tw_snd_nxt + 65535 + 2 for it in
tcp_timewait_state_process(); until the series "tcp: fix ISN selection in TIMEWAIT -> SYN_RECV"
(Eric Dumazet, net-next April 2024, 41eecbd712b7, in v6.10) that value was lost before
tcp_conn_request() used it, and the SYN-ACK took a fresh ISN from the ISN clock instead (seen on
Debian 12's 6.1.192: old snd_nxt + 1 061 566, + 15 977 252). Both lie above old snd_nxt here, the
clock's only because it ran ahead of the old connection's bytes. The check judges the RFC's
condition; which ISN the kernel chose is reported, and is where 6.1 and 6.12 differ (reference
R-TW-SYN).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.kernel import TW_ISN_STEP
from lab.verdict import Check

from ._tw_reopen_incarnation import M32

if TYPE_CHECKING:
    from .tw_reopen import Case

__all__ = ["new_isn_above_old", "CITE_ISN"]

CITE_ISN = ("RFC 1122 §4.2.2.13 condition (1): the new ISN is larger than any sequence number used before; Linux "
            "tcp_timewait_state_process(): isn = tw_snd_nxt + 65535 + 2, used since v6.10 (before it the ISN "
            "clock's; reference R-TW-SYN)")


def new_isn_above_old(c: Case) -> Check:
    """An accepted SYN: the SYN-ACK's ISN lies above the old connection's snd_nxt, and says whether
    it is TIME-WAIT's old snd_nxt + 65537 or the ISN clock's."""
    d, inc = c.decision, c.inc
    step = (d.ans.seq - inc.old_snd_nxt) & M32 if d.accepted else None
    whose = (None if step is None else f"TIME-WAIT's (old snd_nxt + {TW_ISN_STEP})" if step == TW_ISN_STEP
             else "a fresh ISN from gVisor's generator (it keeps no TIME-WAIT ISN)" if d.stack == "gvisor"
             else "not TIME-WAIT's old snd_nxt + 65537: a fresh ISN (Linux before v6.10)")
    return Check.judged(
        f"{c.name}-new-isn-above-old", CITE_ISN,
        "the SYN-ACK's ISN above old snd_nxt" + (" (gVisor: its ISN generator's)" if d.stack == "gvisor" else
                                                  f" (Linux since v6.10: old snd_nxt + {TW_ISN_STEP})"),
        f"server.pcap: old server FIN seq {inc.old_snd_nxt - 1 & M32} (snd_nxt {inc.old_snd_nxt}), "
        f"new ISN {d.ans.seq if d.ans else None}, difference {step}" + (f", {whose}" if whose else "")
        + f"; connect {'ok' if c.facts.get('reconnect_ok') else c.facts.get('reconnect_error')}",
        None if c.unsure else (d.accepted and step is not None and 0 < step < 1 << 31
                               and bool(c.facts.get("reconnect_ok"))),
        {"old_snd_nxt": inc.old_snd_nxt, "new_isn": d.ans.seq if d.ans else None, "difference": step,
         "tw_isn": step == TW_ISN_STEP if step is not None else None},
        missing=f"server.pcap lacks the server's answer to the new SYN ({c.hole})")
