"""time-wait-duration's key: the two lifetimes as the checks bound them from sock_diag, the timer
wheel's granule at the run's HZ (lab.timerwheel), the late FIN's answer, the TW counters."""

from __future__ import annotations

from lab.kernel import TCP_TIMEWAIT_LEN_S
from lab.sheetkey import Cell, Key, KeyRun, Unseen
from lab.timerwheel import granule_s, level

KEY = Key()
SAMPLES = "sock_diag samples: the last that saw it and the first that did not (timer_samples.client)"


@KEY.cells("a_port", "a_first_ms", "a_bounds_s", "a_late_s", "hz", "a_granule_s")
def _a(run: KeyRun) -> dict:
    v = run.values("time-wait-lasts-60s")
    hz = v.get("hz") or run.report.get("kernel_hz")
    if not hz:
        raise Unseen("the kernel's HZ is unknown")
    lo, hi = v["bounds_s"]
    ticks = round(TCP_TIMEWAIT_LEN_S * hz)
    return {
        "a_port": Cell(run.facts["key_a"][1], "facts.key_a"),
        "a_first_ms": Cell(v["first_expires_ms"], "sock_diag: A's first TIME_WAIT sample"),
        "a_bounds_s": Cell(f"{lo:.3f}, {hi:.3f}", f"{SAMPLES}; from the server's FIN in client.pcap"),
        "a_late_s": Cell(round(hi - TCP_TIMEWAIT_LEN_S, 3), "the upper bound less 60 s"),
        "hz": Cell(hz, "CONFIG_HZ of the run's kernel (report.json kernel_hz)"),
        "a_granule_s": Cell(granule_s(TCP_TIMEWAIT_LEN_S, hz),
                            f"lab.timerwheel: {ticks} ticks land in level {level(ticks)}, granule 8^{level(ticks)} "
                            f"ticks; plus one tick for the jiffy it was armed in"),
    }


@KEY.cells("b_port", "fin_timeout", "b_state_timer", "b_bounds_s", "b_answer")
def _b(run: KeyRun) -> dict:
    v = run.values("orphan-fin-wait2-follows-tcp_fin_timeout")
    rst = run.values("late-fin-after-fin-wait2-gets-rst")
    lo, hi = v["bounds_s"]
    answer = (f"RST, seq {rst['rst_seq']} (FIN's ack {rst['fin_ack']})" if rst.get("rsts")
              else "no RST")
    return {
        "b_port": Cell(run.facts["key_b"][1], "facts.key_b"),
        "fin_timeout": Cell(v["tcp_fin_timeout_s"], "net.ipv4.tcp_fin_timeout read back from the client"),
        "b_state_timer": Cell(f"FIN_WAIT2, {v['timer']} timer ({v['first_expires_ms']} ms at the first sample)",
                              "sock_diag: B's samples"),
        "b_bounds_s": Cell(f"{lo:.3f}, {hi:.3f}", f"{SAMPLES}; from the ACK of B's FIN in client.pcap"),
        "b_answer": Cell(answer, f"client.pcap: the FIN came {rst['fin_after_last_seen_s']} s after B was last seen"),
    }


@KEY.cells("tw", "tw_killed", "armed_s")
def _counters(run: KeyRun) -> dict:
    v = run.values("tw-counters-at-arming")
    return {"tw": Cell(v["TW"], "nstat delta, client"), "tw_killed": Cell(v["TWKilled"], "nstat delta, client"),
            "armed_s": Cell(v["armed_s"], "the two mini-sockets' timers when armed (B's, and A's before "
                            "its TIME-WAIT replaced it)")}
