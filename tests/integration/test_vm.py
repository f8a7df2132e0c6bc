"""netem for real, inside Debian's stock kernels booted under qemu (TCG) by lab.vm through
`invoke vm`, on both backends: network namespaces, and containers on a Docker engine the guest
starts itself (--backend docker, the lab's host image loaded from this machine's). lost-ack over a
shaped link (50 ms each way, no jitter) on Debian 12, and lossy-link on its own random-loss link
(20 % and 10 ms each way, 100 closes): namespaces on Debian 12, containers on Debian 13 (whose
netem reports its seed). One VM boot per scenario and backend (20-70 s each under TCG; the first
run on a machine also downloads and prepares the kernel, and the first docker run loads the host
image into a cached disk for the guest's engine, about 75 s more).

The verdict comes from the report; the path is re-read straight from the pcaps: every segment
that crossed the router took at least the 50 ms netem adds (never less: netem cannot deliver
early), the least-disturbed one-way delay is 50 ms +- 10 % and round trip 100 ms +- 10 %, and the
server's FIN retransmissions are spaced as RFC 6298 / Linux's RTO asks for a 100 ms path:
at least rto_min (200 ms) + RTT, where an unshaped lab shows ~205 ms.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab import gvisor, vm
from lab.errors import EnvError, UsageError
from lab.packets import read_pcap
from lab.shaping import observed_path
from scenarios.lost_ack import PORT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
KERNEL = "debian-12"
DELAY_MS = 50.0
RTO_MIN_MS = 200.0           # Linux TCP_RTO_MIN


@pytest.fixture(scope="module", params=["netns", "docker"])
def shaped(request, tmp_path_factory):
    """`invoke vm lost-ack --backend B --kernel debian-12 --shape both:delay_ms=50 --json`, once
    per backend."""
    out = tmp_path_factory.mktemp(f"vm-lost-ack-{request.param}")
    argv = [str(REPO / ".venv" / "bin" / "invoke"), "vm", "lost-ack", "--backend", request.param,
            "--kernel", KERNEL, "--shape", f"both:delay_ms={DELAY_MS:g}", "--artifacts", str(out), "--json"]
    started = time.time()
    return _vm(argv, out), out, request.param, started


def _vm(argv: list[str], out: Path) -> subprocess.CompletedProcess:
    """`invoke vm ...`, booted once more when the guest kernel crashed (lab.vm.boot names it: an
    emulator's fault under TCG, exit 2, never a verdict - seen once in CI, "Oops: int3" in Debian
    13's kernel as runc made a cgroup); the crashed boot's console is kept beside the artifacts."""
    for attempt in (1, 2):
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=2300,
                              stdin=subprocess.DEVNULL)
        print(done.stderr[-4000:])                    # boot/run timings, shown with -s or on failure
        if attempt == 2 or done.returncode != 2 or "guest kernel crashed" not in done.stderr:
            return done
        if (out / "vm-console.log").exists():
            (out / "vm-console.log").rename(out / "vm-console-crashed.log")
    return done


def _report(shaped) -> dict:
    done, out = shaped[:2]
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    report = json.loads(done.stdout)
    assert report == json.loads((out / "report.json").read_text())
    return report


def test_lost_ack_passes_on_the_stock_kernel_with_netem(shaped):
    report = _report(shaped)
    info = json.loads((vm.cache_dir(KERNEL) / "kernel.json").read_text())
    assert report["verdict"] == "pass", [c["observed"] for c in report["checks"] if not c["passed"]]
    assert report["kernel"] == info["release"] and report["kernel"].startswith("6.1.0-")
    assert report["kernel_hz"] == 250                        # Debian's CONFIG_HZ, read in the VM
    assert report["backend"] == shaped[2]
    assert report["netem"] == {"available": True, "reason": "netem available"}   # the probe, in the router
    assert sorted(report["shaping"]) == ["client->server:delay_ms=50.0", "server->client:delay_ms=50.0"]
    console = (shaped[1] / "vm-console.log").read_text()
    assert "@@twlab-vm:start@@" in console and "@@twlab-vm:exit=0@@" in console
    assert "vm: booted in" in shaped[0].stderr
    timing = json.loads((shaped[1] / "vm.json").read_text())
    assert timing["boot_s"] > 0 and timing["command_s"] > 0 and timing["total_s"] > timing["command_s"]
    if shaped[2] == "docker":
        # the engine that ran the containers is the guest's: it reports the guest's kernel (this
        # machine's engine would report this machine's, and its kernel has no netem)
        assert f"@@twlab-vm:mark engine {info['release']}@@" in console
        assert timing["memory"] == "1024M" and timing["engine_s"] > 0
        assert timing["image"]["image"].startswith("twlab/host:")
    else:
        assert timing["memory"] == "512M" and "engine_s" not in timing and "dockerd" not in console


def test_pcaps_show_the_shaped_path(shaped):
    _report(shaped)
    out = shaped[1]
    client, server = read_pcap(out / "client.pcap"), read_pcap(out / "server.pcap")
    path = observed_path(client, server)
    one_way = path["one_way_ms"]["client->server"] + path["one_way_ms"]["server->client"]
    rounds = [r for end in path["rtt"].values() for r in end]
    summary = json.dumps(path, default=str)
    assert len(one_way) >= 8 and len(rounds) >= 3, summary
    # netem holds every packet for the delay: none arrives sooner (0.5 ms for the clock stamps)
    assert min(one_way) >= DELAY_MS - 0.5, summary
    # Under TCG every hop of the emulated stack (router forwarding, the qdisc watchdog, veth, the
    # captures) adds 1-10 ms on top, more when the host is busy: the noise only ever adds. So
    # the path's delay is read as the least-disturbed sample, as TCP's own min_rtt filter does:
    # within 10 % of 50 ms each way and 2 x 50 ms for a round trip (each sample minus the time
    # the other end took to answer). Medians seen: 102-107 ms on a quiet machine, 110 ms at a
    # load of 4 on 2 cores.
    for direction, delays in path["one_way_ms"].items():
        assert delays and min(delays) <= 1.1 * DELAY_MS, (direction, summary)
    paths = [r["path_ms"] for r in rounds]
    assert min(paths) >= 2 * DELAY_MS - 1, summary
    assert min(paths) <= 1.1 * 2 * DELAY_MS, summary
    # as each sender saw it (the peer's turnaround included): never under the two netem delays
    assert all(r["rtt_ms"] >= 2 * DELAY_MS - 1 for r in rounds), summary
    # pinned neighbours: the first SYN crossed in one netem delay. Had the router had to ask for
    # the server's address first, netem would have held the request a delay of its own, so the
    # SYN could not have arrived sooner than 2 x 50 ms. (Only that floor separates the cases: the
    # first packet through a cold TCG guest has taken 84 ms without any neighbour resolution.)
    syn = next(s for s in client if s.has("SYN") and not s.has("ACK"))
    syn_at_server = next(s for s in server if s.same_wire(syn))
    assert (syn_at_server.t - syn.t) * 1000 < 2 * DELAY_MS - 1, summary


def test_fin_retransmissions_grow_with_the_rtt(shaped):
    _report(shaped)
    out = shaped[1]
    server = read_pcap(out / "server.pcap")
    fins = [s.t for s in server if s.sport == PORT and s.has("FIN")]
    gaps_ms = [(b - a) * 1000 for a, b in zip(fins, fins[1:])]
    rtt = min(r["path_ms"] for end in observed_path(read_pcap(out / "client.pcap"), server)["rtt"].values()
              for r in end)
    assert len(fins) >= 4, gaps_ms
    # RTO = srtt + max(4 rttvar, rto_min) >= rto_min + RTT; the tail-loss probe comes no sooner
    # than min(2 srtt + rto_min, RTO) (a FIN alone in flight), which is >= rto_min + RTT too
    assert all(g >= RTO_MIN_MS + rtt - 10 for g in gaps_ms), (gaps_ms, rtt)
    # then the RTO doubles
    assert any(later >= 1.8 * earlier for i, earlier in enumerate(gaps_ms[1:], 1)
               for later in gaps_ms[i + 1:]), gaps_ms


# -- lossy-link: random loss, on its own link (20 % and 10 ms each way) --------------------------

GVISOR_BOTH = ("client=gvisor", "server=gvisor")


@pytest.fixture(scope="module", params=[("debian-12", "netns", ()), ("debian-13", "docker", ()),
                                        ("debian-12", "netns", GVISOR_BOTH)],
                ids=lambda p: "-".join(p[:2]) + ("-gvisor" if p[2] else ""))
def lossy(request, tmp_path_factory):
    """`invoke vm lossy-link --kernel K --backend B --json` (no --shape: the scenario's own link):
    namespaces on Debian 12 (netem unseeded), containers on Debian 13 (netem reports its seed),
    and namespaces on Debian 12 with both ends in gVisor's netstack (runsc in the guest)."""
    kernel, backend, stacks = request.param
    out = tmp_path_factory.mktemp(f"vm-lossy-link-{backend}")
    argv = [str(REPO / ".venv" / "bin" / "invoke"), "vm", "lossy-link", "--kernel", kernel,
            "--backend", backend, "--artifacts", str(out), "--json", *[a for s in stacks for a in ("--stack", s)]]
    if stacks and gvisor.runsc_missing():
        pytest.skip(gvisor.runsc_missing())
    return _vm(argv, out), out, backend, kernel, stacks


def _lossy_report(lossy) -> dict:
    """The run's report. With a gVisor client one failure is gVisor's own, and the lab must say
    it: a RST the client sent in FIN-WAIT-2 when the server's FIN was lost and a pure ACK with SEQ
    past its RCV.NXT came first (about once in 100 closes, so in most runs; three are kept in
    tests/unit/test_lossy_gvisor.py). It is tolerated only when the lab puts it down to that rule;
    nothing else may fail."""
    done, out = lossy[:2]
    report = json.loads((out / "report.json").read_text())
    bad = [c for c in report["checks"] if c["outcome"] != "pass"]
    if lossy[4] and [c["name"] for c in bad] == ["every-close-completes"] and done.returncode == 1:
        v = bad[0]["values"]
        assert v["reset_early"] and set(v["rst_ports"]) == set(v["reset_early"]) and not v["incomplete"], v
        assert "handleRcvdSegmentClosing" in bad[0]["observed"], bad[0]["observed"]
        return report
    return _report(lossy)


def test_lossy_link_passes_and_counts_its_closes(lossy):
    report = _lossy_report(lossy)
    checks = {c["name"]: c for c in report["checks"]}
    failed = [c["name"] for c in report["checks"] if c["outcome"] != "pass"]
    assert failed in ([], ["every-close-completes"] if lossy[4] else []), failed
    assert set(checks) == {"loss-matches-the-link", "every-close-completes", "closer-holds-time-wait",
                           "lost-final-ack-saved-by-time-wait", "lost-final-ack-costs-an-rto"}
    assert sorted(report["shaping"]) == ["client->server:delay_ms=10.0,loss_pct=20.0",
                                         "server->client:delay_ms=10.0,loss_pct=20.0"]
    assert report["backend"] == lossy[2]
    assert report["kernel"].startswith("6.1.0-" if lossy[3] == "debian-12" else "6.12.")
    # what the kernel's qdiscs said, one per direction, each on its own router interface
    links = report["facts"]["links"]
    assert set(links) == {"client->server", "server->client"}
    assert links["client->server"]["interface"] != links["server->client"]["interface"]
    for link in links.values():
        assert link["loss_pct"] == pytest.approx(20, abs=0.01) and link["delay_ms"] == pytest.approx(10, abs=0.1)
    if lossy[3] == "debian-12":       # what the lab says of seeding on 6.1
        assert report["facts"]["netem_seeded"] is False and "predates" in report["facts"]["netem_seed"]
        assert all(link["seed"] is None for link in links.values())
    else:                             # 6.12 reports the seed each direction drew its losses from
        seeds = [link["seed"] for link in links.values()]
        assert all(isinstance(x, int) for x in seeds), links
        assert report["facts"]["netem_seeded"] is True
        assert all(f"seed={x}" in report["facts"]["netem_seed"] for x in seeds)
        assert checks["loss-matches-the-link"]["values"]["seeded"] is True
    # reshaped mid-run: the connections opened over the link without its loss, then it was lost
    notes = [e["text"] for e in report["timeline"] if e["host"] == "router" and e["text"].startswith("link ")]
    for d in ("client->server", "server->client"):
        assert notes.index(f"link {d}:delay_ms=10.0") < notes.index(f"link {d}:delay_ms=10.0,loss_pct=20.0"), notes
    heart = checks["lost-final-ack-saved-by-time-wait"]["values"]
    assert heart["closes"] == 100 and heart["final_ack_lost"] >= 1
    assert heart["saved_by_reack"] == heart["final_ack_lost"]
    assert all(stats.get("dropped", 0) == 0 for h, stats in report["captures"].items() if h != "router")
    assert report["options"].get("stacks", {}) == dict(s.split("=") for s in lossy[4])
    if lossy[4]:                      # gVisor's TIME-WAIT, asked of each 4-tuple from the router
        reset = checks["every-close-completes"]["values"]["reset_early"]        # not asked: no TIME-WAIT
        assert checks["closer-holds-time-wait"]["values"]["client_time_wait"] == 100 - len(reset)
        assert "MinRTO" in checks["lost-final-ack-costs-an-rto"]["expected"]


def test_lossy_link_pcaps_show_the_losses_and_no_reset(lossy):
    """Straight from the pcaps: segments went missing both ways while the loss was on, the server
    sent FINs again, the client reset nothing, and every RST the server sent is one the report
    counts (a late segment reaching the closed server is reset; reordered across the router, that
    can even end a TIME-WAIT: reference R-UNPROVOKED-TWA)."""
    report = _lossy_report(lossy)
    out = lossy[1]
    client, server = read_pcap(out / "client.pcap"), read_pcap(out / "server.pcap")
    reset = {c["name"]: c for c in report["checks"]}["every-close-completes"]["values"].get("reset_early", [])
    assert not [s for s in client if s.has("RST") and s.dport == 5010 and s.sport not in reset]
    closer = {c["name"]: c for c in report["checks"]}["closer-holds-time-wait"]["values"]
    assert len([s for s in server if s.has("RST") and s.sport == 5010]) == closer["server_rsts"]
    since = report["facts"]["loss_from"]
    # a gVisor client's probes (and its answers, which the router drops) come after the closes
    until = (report["facts"].get("client_probes") or {}).get("started", float("inf"))
    judged = {c["name"]: c for c in report["checks"]}["loss-matches-the-link"]["values"]
    wire = lambda s: (s.sport, s.dport, s.flags, s.seq, s.ack, s.tsval)    # noqa: E731
    for direction, mine, theirs, outbound in (("client->server", client, server, lambda s: s.dport == 5010),
                                              ("server->client", server, client, lambda s: s.sport == 5010)):
        arrived = {wire(s) for s in theirs}
        sent = [s for s in mine if outbound(s) and since <= s.t < until]
        missing = [s for s in sent if wire(s) not in arrived]
        assert 0.05 < len(missing) / len(sent) < 0.40, (direction, len(missing), len(sent))
        # the report's count of the same (it stops where the receiver's capture stopped)
        assert abs(judged[direction]["lost"] - len(missing)) <= 2, (direction, judged[direction], len(missing))
        assert abs(judged[direction]["sent"] - len(sent)) <= 2, (direction, judged[direction], len(sent))
    fins = [s for s in server if s.sport == 5010 and s.has("FIN")]
    ports = {s.dport for s in fins}
    assert len(ports) == 100 and len(fins) > len(ports)          # some FINs were sent again


# -- netem's seed, on a kernel that has one (Debian 13's 6.12) ----------------------------------

@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """tests/vm_seed_probe.py inside Debian 13's kernel: 400 datagrams over a 50 % netem link,
    seeded S, S again, S+1, and not seeded."""
    out = tmp_path_factory.mktemp("vm-seed")
    code, stdout = vm.run_command("debian-13", [str(REPO / ".venv" / "bin" / "python"),
                                                str(REPO / "tests" / "vm_seed_probe.py")],
                                  out, progress=print, timeout_s=900)
    assert code == 0, (out / "vm-console.log").read_text()[-3000:]
    return json.loads(stdout)


def test_a_netem_seed_replays_the_same_losses(seeded):
    first, again, other, unseeded = seeded["trials"]
    assert seeded["kernel"].startswith("6.12.")
    # the kernel reports the seed it was given, and one of its own when given none
    assert (first["reported_seed"], again["reported_seed"]) == (first["seed"], again["seed"])
    assert other["reported_seed"] == other["seed"] and unseeded["reported_seed"] is not None
    # 50 % loss: roughly half arrived, and exactly the same half for the same seed
    for t in seeded["trials"]:
        assert 0.35 * seeded["sent"] < len(t["arrived"]) < 0.65 * seeded["sent"], t
    assert first["arrived"] == again["arrived"]
    assert first["arrived"] != other["arrived"]
    assert first["arrived"] != unseeded["arrived"]


# -- invoke check inside the stock kernel: the CI path with a netem scenario that really runs ------

def test_check_in_the_vm_writes_junit_with_lossy_link_run(tmp_path):
    out = tmp_path / "out.xml"
    argv = [str(REPO / ".venv" / "bin" / "invoke"), "check", "--kernel", KERNEL, "--junit", str(out),
            "--artifacts", str(tmp_path / "a"), "lossy-link"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=2300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    summary = json.loads((tmp_path / "a" / "check.json").read_text())
    assert summary["kernel"].startswith("6.1.0-")                # the guest's kernel ran it
    (run,) = summary["scenarios"]
    assert run["scenario"] == "lossy-link" and run["verdict"] == "pass"
    from xml.etree import ElementTree as ET
    suite = next(s for s in ET.parse(out).getroot().iter("testsuite") if s.get("name") == "lossy-link")
    cases = {tc.get("name") for tc in suite.iter("testcase")}
    assert "lost-final-ack-saved-by-time-wait" in cases and suite.get("failures") == "0"
    assert suite.find(".//skipped") is None


def _left_behind(out: Path) -> list[str]:
    """qemu processes sharing *out*, control directories of dead runs, half-made engine disks."""
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    left = [ln for ln in ps.splitlines() if "qemu-system" in ln and f"path={out}," in ln]
    for ctl in Path("/tmp").glob("twlab-vm-*-*"):
        if not Path(f"/proc/{ctl.name.split('-')[2]}").exists():
            left.append(str(ctl))
    return left + [str(p) for p in (vm.CACHE / "docker").glob("*.tmp")]


def test_qemu_is_gone_after_the_run(shaped):
    out = shaped[1]
    assert not _left_behind(out)
    if shaped[2] == "docker":     # the engine's disk was only read: the run's writes went to qemu's
        image = json.loads((out / "vm.json").read_text())["image"]
        disk = vm.CACHE / "docker" / f"{image['key']}.img"
        # made before this run, or by this run's first boot (a clean checkout): never written after
        assert disk.stat().st_mtime < image.get("seeded_at", shaped[3]), "the cached engine disk was written by a run"


def test_check_in_the_vm_runs_containers_with_netem(tmp_path):
    """`invoke check --kernel debian-12 --backend docker`: the CI path, on containers."""
    argv = [str(REPO / ".venv" / "bin" / "invoke"), "check", "--kernel", KERNEL, "--backend", "docker",
            "--shape", f"both:delay_ms={DELAY_MS:g}", "--junit", str(tmp_path / "out.xml"),
            "--artifacts", str(tmp_path / "a"), "lost-ack"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=2300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    summary = json.loads((tmp_path / "a" / "check.json").read_text())
    (run,) = summary["scenarios"]
    assert run["scenario"] == "lost-ack" and run["verdict"] == "pass"
    report = json.loads(next((tmp_path / "a" / "runs").rglob("report.json")).read_text())
    assert report["backend"] == "docker" and report["kernel"].startswith("6.1.0-")
    assert sorted(report["shaping"]) == ["client->server:delay_ms=50.0", "server->client:delay_ms=50.0"]
    assert "Docker engine up" in done.stdout and not _left_behind(tmp_path / "a")


def test_an_interrupted_docker_vm_run_leaves_nothing(tmp_path):
    """Ctrl-C while the scenario runs on the guest's containers: exit 130, qemu gone, nothing left."""
    argv = [str(REPO / ".venv" / "bin" / "invoke"), "vm", "lost-ack", "--backend", "docker", "--kernel", KERNEL,
            "--shape", f"both:delay_ms={DELAY_MS:g}", "--artifacts", str(tmp_path)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    try:
        for line in proc.stdout:                  # bounded: the VM's own timeout is 900 s
            seen.append(line)
            if line.startswith("shaping "):       # streamed from inside: the containers are up
                break
        assert any("Docker engine up" in ln for ln in seen), seen[-5:]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "twlab: interrupted" in err
    assert not _left_behind(tmp_path)
    assert not (tmp_path / "report.json").exists()


# -- errors, without booting ---------------------------------------------------------------------

def test_unknown_kernel_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="unknown kernel 'debian-99'"):
        vm.run("debian-99", ["list"], tmp_path)


def test_missing_qemu_is_one_clear_line(tmp_path, monkeypatch):
    from lab.vm import boot, initrd, kernel

    monkeypatch.setattr(kernel, "QEMU", "qemu-system-nonexistent")
    ready = lambda d: {"release": "x", "modules": "m", "initrd_version": initrd.INITRD_VERSION}  # noqa: E731
    monkeypatch.setattr(kernel, "ready", ready)
    monkeypatch.setattr(boot, "ready", ready)
    with pytest.raises(EnvError, match="qemu-system-nonexistent not found: install qemu-system-x86"):
        vm.run(KERNEL, ["list"], tmp_path)


def test_a_hung_vm_is_killed_within_the_timeout(tmp_path):
    vm.prepare(KERNEL, progress=lambda s: None)
    with pytest.raises(EnvError, match="did not finish within 5 s"):
        vm.run_command(KERNEL, ["sleep", "600"], tmp_path, progress=lambda s: None, timeout_s=5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not [ln for ln in ps.splitlines() if "qemu-system" in ln and f"path={tmp_path}," in ln]
