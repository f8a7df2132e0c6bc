"""What `invoke matrix` shows of each scenario: the observed numbers (KEY_VALUES, with the
tolerance within which two kernels count as the same) and the TIME-WAIT counters (COUNTERS)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeyValue", "KEY_VALUES", "RANDOM_COUNTS", "COUNTERS"]


@dataclass(frozen=True)
class KeyValue:
    """One observed number of a scenario: *path* in the values of the check(s) matching *check*
    (fnmatch). Kernels differ when the numbers are further apart than abs_tol or rel_tol (a
    fraction); by default any difference counts."""

    label: str
    check: str
    path: str
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    relative_to_first: bool = False      # a list of absolute times: show them from the first
    none_means: str | None = None        # what an observed null says (e.g. the socket was gone)
    tally: bool = False                  # a dict keyed by something run-specific (ports): count its values


KEY_VALUES: dict[str, list[KeyValue]] = {
    "lost-ack": [
        KeyValue("TIME-WAIT armed (ms)", "time-wait-armed-for-60s", "first_expires_ms", abs_tol=50),
        KeyValue("server FINs (1 + retransmissions)", "server-retransmits-fin", "fin_count"),
        KeyValue("FIN times (s from the first)", "server-retransmits-fin", "fin_times",
                 rel_tol=0.1, abs_tol=0.02, relative_to_first=True),
        KeyValue("FIN intervals (s)", "server-retransmits-fin", "intervals_s", rel_tol=0.1, abs_tol=0.02),
        KeyValue("TIME-WAIT timer after each FIN (ms)", "time-wait-timer-restarts", "due_after_fin_ms",
                 abs_tol=50),
        KeyValue("TCPTimeWaitOverflow (no TIME-WAIT)", "no-time-wait-state", "TCPTimeWaitOverflow"),
    ],
    "time-wait-duration": [
        KeyValue("TIME-WAIT length (s)", "time-wait-lasts-60s", "sampled_s", abs_tol=0.5),
        KeyValue("TIME-WAIT armed (ms)", "time-wait-lasts-60s", "first_expires_ms", abs_tol=50),
        KeyValue("timer-wheel slack (s)", "time-wait-lasts-60s", "tolerance_late_s"),
        KeyValue("orphan FIN-WAIT-2 (s)", "orphan-fin-wait2-follows-tcp_fin_timeout", "sampled_s", abs_tol=0.5),
        KeyValue("TW at arming", "tw-counters-at-arming", "TW"),
        KeyValue("TWKilled at arming", "tw-counters-at-arming", "TWKilled"),
    ],
    "retransmitted-fin": [
        KeyValue("FIN times (ms)", "tlp-then-rto-doubling", "fin_times_ms", rel_tol=0.1, abs_tol=20),
        KeyValue("retransmission kinds", "tlp-then-rto-doubling", "kinds"),
        KeyValue("first RTO (ms)", "tlp-then-rto-doubling", "rto0_ms", rel_tol=0.1),
        KeyValue("RTO retransmissions", "orphan-retries-count", "observed_rto_retransmissions"),
        KeyValue("gave up after (ms)", "give-up-when-budget-spent", "gone_after_first_fin_ms", rel_tol=0.1),
    ],
    "five-tuple": [
        KeyValue("tcp_tw_reuse", "connect-same-4-tuple-a-later", "tcp_tw_reuse"),
        KeyValue("tw reuse delay (ms)", "connect-same-4-tuple-a-later", "tcp_tw_reuse_delay_ms"),
        KeyValue("connect after the delay", "connect-same-4-tuple-a-later", "error"),
        KeyValue("connect after the delay: tried at (ms)", "connect-same-4-tuple-a-later",
                 "since_time_wait_ms", rel_tol=0.2),
        KeyValue("connect at once", "connect-same-4-tuple-a-now", "error"),
        KeyValue("new ISN - old snd_nxt", "recycled-isn-above-old-snd-nxt", "recycled.0.difference"),
        KeyValue("TWRecycled", "tw-recycled-counter", "TWRecycled"),
    ],
    "tw-assassination": [
        KeyValue("tcp_rfc1337", "time-wait-*", "tcp_rfc1337"),
        KeyValue("TIME-WAIT after the RST", "time-wait-*", "state_after", none_means="gone (killed)"),
        KeyValue("killed after the RST (ms)", "time-wait-*", "gone_after_rst_ms", abs_tol=50),
        KeyValue("PAWSTimewait", "paws-does-not-prevent-it", "PAWSTimewait"),
    ],
    "tw-buckets": [
        KeyValue("tcp_max_tw_buckets", "buckets-fill-in-close-order", "limit"),
        KeyValue("TIME-WAIT sockets at the end", "exactly-n-time-wait", "time_wait_at_end"),
        KeyValue("late FIN answers", "late-fin-ack-or-rst", "answers", tally=True),
        KeyValue("TCPTimeWaitOverflow", "overflow-counters", "TCPTimeWaitOverflow"),
    ],
    "tw-reopen": [
        KeyValue("SYN ahead accepted", "seq-ahead-syn-judged-by-time-wait", "accepted"),
        KeyValue("SYN behind accepted", "seq-behind-syn-judged-by-time-wait", "accepted"),
        KeyValue("new ISN - old snd_nxt", "seq-ahead-new-isn-above-old", "difference"),
        KeyValue("RFC 1122 cond. (2): TIME-WAIT restored", "rfc1122-condition-2-*", "time_wait_restored"),
    ],
    "wandering-duplicates": [
        KeyValue("TIME-WAIT timer after the replay (ms)", "time-wait-timer-restarted", "due_after_replay_ms",
                 abs_tol=50),
        KeyValue("PAWSTimewait", "paws-in-time-wait", "PAWSTimewait"),
        KeyValue("ISN clock (per s)", "isn-clock", "isns.0.per_second", rel_tol=0.01),
        KeyValue("old bytes delivered", "application-reads-*", "old_markers"),
    ],
    "who-closes-first": [
        KeyValue("client first: client TIME-WAIT", "client-first-*", "client_time_wait"),
        KeyValue("server first: server TIME-WAIT", "server-first-*", "server_time_wait"),
        KeyValue("simultaneous: both TIME-WAIT", "simultaneous-both-hold-time-wait", "time_wait"),
    ],
    "lossy-link": [
        # counts of a random process: each run draws its own losses (no seed on 6.1), so only a
        # large difference says something about the kernel
        KeyValue("final ACKs lost (of 100 closes)", "lost-final-ack-*", "final_ack_lost", abs_tol=20),
        KeyValue("saved by TIME-WAIT's re-ACK", "lost-final-ack-saved-by-time-wait", "saved_by_reack", abs_tol=20),
        KeyValue("closes ended by a RST", "lost-final-ack-*", "ended_by_rst", abs_tol=20),
        KeyValue("server's wait after a lost final ACK, min (ms)", "lost-final-ack-costs-an-rto",
                 "distribution.final ACK lost.server_wait_ms.min", abs_tol=50),
        KeyValue("close time, median (ms)", "lost-final-ack-costs-an-rto", "distribution.all.close_ms.p50",
                 rel_tol=0.5),
        KeyValue("netem seed reported", "loss-matches-the-link", "seeded"),
    ],
    "restart-reuseaddr": [
        KeyValue("neither SO_REUSEADDR: bind", "neither-bind", "error"),
        KeyValue("both: bind", "both-bind", "error"),
        KeyValue("old without, new with: bind", "old-without-new-with-bind", "error"),
        KeyValue("live listener: bind", "live-listener-bind", "error"),
    ],
}

# scenarios whose counters count a random process (netem loss): kernels differ only when
# different counters move, not when the counts do
RANDOM_COUNTS = {"lossy-link"}

# the TIME-WAIT story in nstat (reference R-COUNTERS); a cell lists those that moved, per host
COUNTERS = ("TcpExtTW", "TcpExtTWKilled", "TcpExtTWRecycled", "TcpExtTCPTimeWaitOverflow",
            "TcpExtPAWSTimewait", "TcpExtPAWSEstab", "TcpExtTCPACKSkippedTimeWait",
            "TcpExtTCPLossProbes", "TcpExtTCPAbortOnTimeout", "TcpRetransSegs", "TcpOutRsts")
