"""The WAN emulator (lab.wan): per-pair RTTs as the topology file says, cuts, loss, jitter, robustness, teardown."""

from __future__ import annotations

import itertools
import json
import re
import socket
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab.app import REPO_ROOT
from lab.core import Lab, lab_namespaces_present
from lab.testing import lab_fixture, require_lab, running_lab
from lab.topology import load_topology

pytestmark = [pytest.mark.lab, require_lab()]

blog = lab_fixture("blog", app=False)

PING_TIME = re.compile(r"time=([\d.]+) ms")
PING_RECEIVED = re.compile(r"(\d+) packets transmitted, (\d+) received")


def ping_times(lab: Lab, source: str, target: str, count: int = 20, interval: float = 0.05) -> list[float]:
    """RTTs (ms) of `count` pings from host `source` to underlay address `target` (lost ones left out)."""
    argv = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", target]
    return [float(value) for value in PING_TIME.findall(lab.run(source, argv, check=False).stdout)]


def received(lab: Lab, source: str, target: str, count: int = 3, interval: float = 0.2) -> int:
    """How many of `count` pings from `source` to `target` came back."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1", target]
    match = PING_RECEIVED.search(lab.run(source, argv, check=False).stdout)
    assert match, f"no ping summary from {source} to {target}"
    return int(match.group(2))


def pinger_and_target(lab: Lab, a: str, b: str) -> tuple[str, str]:
    """Who pings whom for the pair a–b: a NAT host can only ping out, to the other's public address."""
    hosts = lab.state["hosts"]
    if hosts[b]["nat"]:
        a, b = b, a
    return a, hosts[b]["public_ip"]


def reachability(lab: Lab, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """For each (a, b): whether a ping crosses the underlay between them (pairs probed in parallel)."""

    def probe(pair: tuple[str, str]) -> bool:
        source, target = pinger_and_target(lab, *pair)
        return received(lab, source, target, count=2) > 0

    with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
        return dict(zip(pairs, pool.map(probe, pairs), strict=True))


def host_pairs(lab: Lab) -> list[tuple[str, str]]:
    return list(itertools.combinations(lab.host_names, 2))


def test_every_pair_has_the_files_rtt(blog):
    topology = load_topology("blog")
    pairs = host_pairs(blog)
    assert len(pairs) == len(topology.rtt_ms) == 10  # the file gives every pair

    def median_rtt(pair: tuple[str, str]) -> float:
        times = ping_times(blog, *pinger_and_target(blog, *pair))
        assert len(times) >= 18, f"{pair}: only {len(times)} of 20 pings came back"
        return statistics.median(times)

    with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
        measured = dict(zip(pairs, pool.map(median_rtt, pairs), strict=True))
    rows = []
    for (a, b), rtt in measured.items():
        expected = topology.rtt_ms[frozenset((a, b))]
        ok = abs(rtt - expected) <= max(2.0, 0.1 * expected)
        rows.append(f"{a:>8}–{b:<8} file {expected:6.1f} ms  measured {rtt:7.2f} ms  {'ok' if ok else 'OFF'}")
    print("\n".join(rows))
    assert all(row.endswith(" ok") for row in rows), "\n".join(rows)


def test_control_has_no_delay(blog):
    for host in ("bob", "epsilon"):
        assert statistics.median(ping_times(blog, host, "192.0.2.254", count=5)) < 2.0


def test_cut_and_restore_a_pair(blog):
    blog.cut("epsilon", "vorke")
    try:
        assert reachability(blog, [("epsilon", "vorke"), ("vorke", "epsilon"), ("epsilon", "bob")]) == {
            ("epsilon", "vorke"): False,
            ("vorke", "epsilon"): False,
            ("epsilon", "bob"): True,
        }
    finally:
        blog.restore("epsilon", "vorke")
    assert received(blog, "epsilon", "192.0.2.3") == 3


def test_cut_a_host_isolates_it_from_hosts_not_from_control(blog):
    blog.cut("rho")
    try:
        reach = reachability(blog, host_pairs(blog))
        assert {pair for pair, ok in reach.items() if not ok} == {pair for pair in reach if "rho" in pair}
        assert received(blog, "rho", "192.0.2.254", count=1) == 1
    finally:
        blog.restore("rho")
    assert all(reachability(blog, [pair for pair in host_pairs(blog) if "rho" in pair]).values())


def test_cut_from_control_by_name(blog):
    blog.cut("bob", "control")
    try:
        assert received(blog, "bob", "192.0.2.254", count=2) == 0
        assert received(blog, "bob", "192.0.2.2", count=1) == 1
    finally:
        blog.restore("bob")
    assert received(blog, "bob", "192.0.2.254", count=1) == 1


def test_loss_is_roughly_honoured(blog):
    blog.wan().set("bob", "rho", loss=0.2)  # each way: a ping comes back with probability 0.8² = 0.64
    try:
        came_back = received(blog, "bob", "192.0.2.2", count=300, interval=0.005)
    finally:
        blog.wan().set("bob", "rho", loss=0.0)
    assert 0.27 <= 1 - came_back / 300 <= 0.45  # 0.36 expected; ±3.5 σ
    pair = next(p for p in blog.wan().status()["pairs"] if {p["a"], p["b"]} == {"bob", "rho"})
    assert pair["a_to_b"]["dropped_loss"] + pair["b_to_a"]["dropped_loss"] > 0


def test_jitter_spreads_rtt_around_the_same_median(blog):
    # The baseline, measured just before under the same load: a busy 2-core machine delays the
    # user-space emulator by a millisecond or more, with or without jitter.
    baseline = statistics.median(ping_times(blog, "bob", "192.0.2.2", count=30, interval=0.03))
    assert abs(baseline - 10) <= 2.5
    blog.wan().set("bob", "rho", jitter_ms=4)
    try:
        times = ping_times(blog, "bob", "192.0.2.2", count=30, interval=0.03)
    finally:
        blog.wan().set("bob", "rho", jitter_ms=0)
    assert len(times) == 30
    assert max(times) - min(times) > 3
    assert abs(statistics.median(times) - baseline) <= 2.0


def test_set_rtt_changes_a_pair(blog):
    blog.set_rtt("bob", "rho", 40)
    try:
        assert abs(statistics.median(ping_times(blog, "bob", "192.0.2.2", count=5)) - 40) <= 4
    finally:
        blog.set_rtt("bob", "rho", 10)


def cli(lab: Lab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "lab", "--prefix", lab.prefix, *args]
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=check)


def test_command_line(blog):
    cli(blog, "cut", "bob", "vorke")
    assert received(blog, "bob", "192.0.2.3", count=1) == 0
    pairs = json.loads(cli(blog, "wan").stdout)["pairs"]
    assert [p["cut"] for p in pairs if {p["a"], p["b"]} == {"bob", "vorke"}] == [True]
    cli(blog, "restore", "bob", "vorke")
    assert received(blog, "bob", "192.0.2.3", count=1) == 1
    cli(blog, "cut", "vorke")
    assert received(blog, "bob", "192.0.2.3", count=1) == 0
    cli(blog, "restore", "vorke")
    cli(blog, "delay", "bob", "vorke", "30")
    try:
        assert abs(statistics.median(ping_times(blog, "bob", "192.0.2.3", count=3)) - 30) <= 3
    finally:
        cli(blog, "delay", "bob", "vorke", "85")
    wrong = cli(blog, "cut", "bob", "nosuchhost", check=False)
    assert wrong.returncode == 1 and "no node 'nosuchhost'" in wrong.stderr


SEND_JUNK = """
import socket
junk = [b"", b"\\x45", b"\\x60" + bytes(47), b"\\x45" + bytes(18), bytes(range(256)) * 5,
        b"\\x45" + bytes(15) + bytes([192, 0, 2, 255]) + bytes(8),        # to the broadcast address
        b"\\x45" + bytes(15) + bytes([192, 0, 2, 2])]                      # to rho, truncated
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for packet in junk * 20:
    try:
        s.send(packet)
    except OSError:
        pass
"""


def test_malformed_packets_and_requests_do_not_hurt(blog):
    before = blog.wan().status()["dropped"]
    blog.run("bob", [sys.executable, "-c", SEND_JUNK])
    after = blog.wan().status()["dropped"]
    assert after["not_ipv4"] > before["not_ipv4"] and after["unroutable"] > before["unroutable"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(5)
        connection.connect(blog.state["wan"]["socket"])
        connection.sendall(b'not json\n[]\n{"op": "cut", "a": "bob", "b": "bob"}\n{"op": "set", "a": "bob"}\n')
        with connection.makefile("rb") as answers:
            replies = [json.loads(answers.readline()) for _ in range(4)]
    assert [reply["ok"] for reply in replies] == [False] * 4
    assert received(blog, "bob", "192.0.2.2", count=1) == 1


def test_down_leaves_nothing():
    with running_lab("blog", app=False) as lab:
        pid, socket_path = lab.state["wan"]["pid"], Path(lab.state["wan"]["socket"])
        assert socket_path.is_socket()
        tuns = [Path(f"/proc/{pid}/fd") / fd for fd in Path(f"/proc/{pid}/fd").iterdir()]
        assert sum(1 for fd in tuns if fd.resolve() == Path("/dev/net/tun")) == 6  # 5 hosts and control
        assert lab.run("epsilon", ["ip", "-d", "link", "show", "dev", "eth0"]).stdout.count("tun type tun") == 1
        prefix, state_dir = lab.prefix, lab.state_dir
    assert not Path(f"/proc/{pid}").exists()  # ended and reaped
    assert not socket_path.exists() and not state_dir.exists()
    assert not lab_namespaces_present(prefix)
