"""The numbers the checks compare against: Linux's TCP constants (each where the kernel defines it,
Linux v6.18; the same in v6.1 and v6.12 unless said), and the RFCs' and BSD's beside them. Defined
once here, in the units their names say; docs/reference.md explains each (its R- section).
"""

from __future__ import annotations

__all__ = [
    "TCP_TIMEWAIT_LEN_S", "TCP_TIMEWAIT_LEN_MS", "TCP_RTO_MIN_MS", "TCP_RTO_MAX_MS", "TW_KILL_S",
    "ORPHAN_DEFAULT_RETRIES", "TW_ISN_STEP", "ISN_PER_S", "RFC_MSL_S", "BSD_MSL_S",
]

# include/net/tcp.h: TCP_TIMEWAIT_LEN (60*HZ): how long TIME-WAIT lasts; no sysctl (R-TW-LEN)
TCP_TIMEWAIT_LEN_S = 60.0
TCP_TIMEWAIT_LEN_MS = 60_000

# include/net/tcp.h: TCP_RTO_MIN (HZ/5) and TCP_RTO_MAX (120*HZ) (R-RTO); RFC 6298 §2.4 asks 1 s
TCP_RTO_MIN_MS = 200
TCP_RTO_MAX_MS = 120_000

# net/ipv4/inet_timewait_sock.c __inet_twsk_schedule(): a mini-socket armed for at most 4 s is
# counted TWKilled, a longer one TW (R-CNT-TW)
TW_KILL_S = 4.0

# net/ipv4/tcp_timer.c tcp_orphan_retries(): tcp_orphan_retries = 0 means 8 (R-ORPHAN-RETRIES)
ORPHAN_DEFAULT_RETRIES = 8

# net/ipv4/tcp_ipv4.c tcp_twsk_unique() and tcp_minisocks.c tcp_timewait_state_process(): a
# connection that takes a TIME-WAIT 4-tuple over starts at tw_snd_nxt + 65535 + 2 (R-TW-REUSE, R-TW-SYN)
TW_ISN_STEP = 65535 + 2

# net/core/secure_seq.c secure_tcp_seq(): ISN = hash + (ktime_get_real_ns() >> 6): a 64 ns tick
# (R-ISN-CLOCK)
ISN_PER_S = 1e9 / 64

# RFC 793 / RFC 9293 §3.4.2: MSL "arbitrarily defined to be 2 minutes"; RFC 1122 §4.2.2.13: TIME-WAIT
# lasts 2 x MSL (R-MSL)
RFC_MSL_S = 120.0

# 4.4BSD / FreeBSD: TCPTV_MSL = 30 s (sysctl net.inet.tcp.msl = 30000 ms) (R-MSL)
BSD_MSL_S = 30.0
