"""The agent's peer probes without sockets: ICMP packets, the per-peer state machine, stale STP
claims and which ports the reconciler must leave down."""

from __future__ import annotations

import socket

import pytest

from bootstrap import agent
from bootstrap.agent import PeerHealth, PortView, StpClaim

INTERVAL = agent.PROBE_INTERVAL_SECONDS


def ipv4_packet(icmp: bytes, source: str = "10.88.88.2") -> bytes:
    """A minimal IPv4 header (20 bytes) in front of ``icmp``, as a raw socket hands it over."""
    header = bytes([0x45, 0, 0, 20 + len(icmp), 0, 0, 0, 0, 64, 1, 0, 0]) + socket.inet_aton(source) * 2
    return header + icmp


def answer_every_probe(peer: PeerHealth, start: float, end: float, rtt: float = 0.02) -> float:
    """Probe every INTERVAL from ``start`` to ``end``, each answered after ``rtt``; returns the time reached."""
    now, seq = start, 0
    while now < end:
        peer.sent(seq, now)
        assert peer.answered(seq, now + rtt)
        peer.expire(now + rtt)
        peer.step(now + rtt)
        seq, now = seq + 1, now + INTERVAL
    return now


def probe_unanswered(peer: PeerHealth, start: float, end: float) -> list[tuple[float, str, str]]:
    """Probes from ``start`` to ``end`` that nobody answers; the transitions seen, with their times."""
    now, seq, seen = start, 1000, []
    while now < end:
        peer.sent(seq, now)
        peer.expire(now)
        why = peer.step(now)
        if why:
            seen.append((round(now, 3), peer.state, why))
        seq, now = seq + 1, now + INTERVAL
    return seen


def test_an_echo_request_is_checksummed_and_parses_back() -> None:
    claim = StpClaim("8000.02aabbccddee", "1000.02aabbccdd00", 120, settled=False)
    packet = agent.echo_request(0x1234, 7, claim.encode())
    assert agent.icmp_checksum(packet) == 0  # a correct checksum sums to zero over the whole message
    kind, ident, seq, payload = agent.parse_icmp(ipv4_packet(packet))
    assert (kind, ident, seq) == (agent.ICMP_ECHO_REQUEST, 0x1234, 7)
    assert StpClaim.decode(payload) == claim


@pytest.mark.parametrize(
    "payload",
    [b"", b"hello", agent.PROBE_TAG + b"8000.02aabbccddee 1000.02aabbccdd00 1", agent.PROBE_TAG + b"x y 1 1",
     agent.PROBE_TAG + b"8000.02aabbccddee 1000.02aabbccdd00 -1 1", agent.PROBE_TAG,
     agent.PROBE_TAG + b"8000.02aabbccddee 1000.02aabbccdd00 1 2"],
)  # fmt: skip
def test_a_malformed_claim_is_ignored(payload: bytes) -> None:
    assert StpClaim.decode(payload) is None


def test_packets_that_are_not_echoes_are_ignored() -> None:
    unreachable = bytes([3, 1, 0, 0, 0, 0, 0, 0])
    assert agent.parse_icmp(ipv4_packet(unreachable)) is None
    assert agent.parse_icmp(b"\x60" + bytes(40)) is None  # IPv6
    assert agent.parse_icmp(b"\x45\x00") is None


def test_a_new_peer_waits_until_it_answers_then_is_up_with_its_rtt() -> None:
    peer = PeerHealth("bob", "10.88.88.2", 0.0)
    assert probe_unanswered(peer, 0.0, 5.0) == []  # waiting: silence is no news
    assert peer.state == "waiting" and peer.loss > 0.5
    peer.sent(1, 5.0)
    assert peer.answered(1, 5.075)
    assert peer.step(5.08).startswith("first answer (RTT 75.0 ms)") and peer.state == "up"
    assert not peer.answered(1, 5.1)  # a duplicate or late answer counts once


def test_a_silent_peer_is_dead_after_a_second_and_returns_after_its_hold_down() -> None:
    peer = PeerHealth("bob", "10.88.88.2", 0.0)
    now = answer_every_probe(peer, 0.0, 3.0)
    assert peer.state == "up" and peer.loss == 0 and peer.srtt_ms == pytest.approx(20, abs=0.5)
    seen = probe_unanswered(peer, now, now + 3.0)
    died_at, state, why = seen[0]
    assert state == "down" and why.startswith("no answer for")
    assert peer.loss == 0  # the silence that killed it, and every probe while it is dead, is no loss
    last_answer = now - INTERVAL + 0.02
    assert agent.DEAD_AFTER_SECONDS < died_at - last_answer <= agent.DEAD_AFTER_SECONDS + 2 * INTERVAL
    # Back: held down for HOLDDOWN_SECONDS of unbroken answers, then up.
    back = now + 3.0
    peer.sent(1, back)
    peer.answered(1, back + 0.02)
    assert peer.step(back + 0.02).startswith("answers again") and peer.state == "holddown"
    answer_every_probe(peer, back + INTERVAL, back + agent.HOLDDOWN_SECONDS - INTERVAL)
    assert peer.state == "holddown"
    answer_every_probe(peer, back + agent.HOLDDOWN_SECONDS, back + agent.HOLDDOWN_SECONDS + 2 * INTERVAL)
    assert peer.state == "up"


def test_each_death_within_the_flap_memory_doubles_the_hold_down() -> None:
    peer = PeerHealth("bob", "10.88.88.2", 0.0)
    now = answer_every_probe(peer, 0.0, 1.0)
    holddowns = []
    for _ in range(4):
        probe_unanswered(peer, now, now + 2.0)
        assert peer.state == "down"
        holddowns.append(peer.holddown)
        now = answer_every_probe(peer, now + 2.0, now + 2.0 + peer.holddown + 1.0)
        assert peer.state == "up"
    assert holddowns == [agent.HOLDDOWN_SECONDS * 2**n for n in range(4)]
    # Long after the last death, the hold-down is short again.
    now = answer_every_probe(peer, now, now + agent.FLAP_MEMORY_SECONDS + 1)
    probe_unanswered(peer, now, now + 2.0)
    assert peer.holddown == agent.HOLDDOWN_SECONDS


def test_a_peer_that_drops_answers_during_its_hold_down_starts_over() -> None:
    peer = PeerHealth("bob", "10.88.88.2", 0.0)
    now = answer_every_probe(peer, 0.0, 1.0)
    probe_unanswered(peer, now, now + 2.0)
    now = answer_every_probe(peer, now + 2.0, now + 3.0)  # 1 s of answers: still held
    assert peer.state == "holddown"
    probe_unanswered(peer, now, now + 0.5)  # two probes lost: the run of answers is broken
    start = now + 0.5
    now = answer_every_probe(peer, start, start + agent.HOLDDOWN_SECONDS - INTERVAL)
    assert peer.state == "holddown"  # counted from the new run, not the first
    answer_every_probe(peer, now, start + agent.HOLDDOWN_SECONDS + 2 * INTERVAL)
    assert peer.state == "up"


def test_a_long_rtt_peer_is_given_four_rtts_before_it_is_dead() -> None:
    peer = PeerHealth("far", "10.88.88.9", 0.0)
    now = answer_every_probe(peer, 0.0, 3.0, rtt=0.4)
    assert peer.dead_after == pytest.approx(1.6, abs=0.05)
    seen = probe_unanswered(peer, now, now + 3.0)
    assert seen[0][0] - now > 1.5


def test_a_port_found_up_gets_a_grace_period_before_its_first_answer() -> None:
    peer = PeerHealth("bob", "10.88.88.2", 0.0, state="up", grace=agent.START_GRACE_SECONDS)
    seen = probe_unanswered(peer, 0.0, 6.0)
    assert seen[0][0] > agent.START_GRACE_SECONDS + agent.DEAD_AFTER_SECONDS - INTERVAL


def test_the_report_item_rounds_and_names_the_state() -> None:
    peer = PeerHealth("bob", "10.88.88.2", 0.0)
    answer_every_probe(peer, 0.0, 1.0, rtt=0.0123456)
    assert peer.to_report() == {"peer": "bob", "rtt_ms": pytest.approx(12.346, abs=0.002), "loss": 0.0, "state": "up"}
    assert PeerHealth("pi0", "10.88.88.5", 0.0).to_report() == {"peer": "pi0", "rtt_ms": None, "loss": 0.0,
                                                                "state": "waiting"}  # fmt: skip


ROOT = "1000.020000000001"
A = "8000.02000000000a"
B = "8000.02000000000b"


def port(state: str, *, bridge: str = A, root: str = ROOT, cost: int = 100, root_port: bool = False) -> PortView:
    return PortView("a", True, state, root, bridge, cost, root_port)


def test_a_blocked_port_holding_a_peer_that_lost_the_root_is_bounced() -> None:
    own = StpClaim(B, ROOT, 100)
    # a lost its root port and now claims itself as root: b's blocked port still stores "root via a".
    assert "claims root" in agent.bounce_reason(port("blocking"), StpClaim(A, A, 0), own)
    # a found a longer way to the same root: worse too.
    assert agent.bounce_reason(port("blocking"), StpClaim(A, ROOT, 300), own)


def test_ports_that_hold_fresh_or_own_information_are_not_bounced() -> None:
    own = StpClaim(B, ROOT, 100)
    assert agent.bounce_reason(port("blocking"), StpClaim(A, ROOT, 100), own) is None  # as stored
    assert agent.bounce_reason(port("blocking"), StpClaim(A, ROOT, 50), own) is None  # better: the kernel takes it
    assert agent.bounce_reason(port("forwarding", bridge=B), StpClaim(A, A, 0), own) is None  # b is designated
    assert agent.bounce_reason(port("forwarding", root_port=True), StpClaim(A, ROOT, 300), own) is None
    assert agent.bounce_reason(port("blocking"), None, own) is None


def test_a_root_port_whose_peer_lost_the_root_altogether_is_bounced() -> None:
    own = StpClaim(B, ROOT, 200)
    assert "now claims root" in agent.bounce_reason(port("forwarding", root_port=True), StpClaim(A, A, 0), own)


def test_a_root_port_whose_peer_is_re_converging_is_bounced_but_not_one_whose_peer_is_just_costlier() -> None:
    own = StpClaim(B, ROOT, 200)
    reconverging = StpClaim(A, ROOT, 300, settled=False)
    assert "lost its root port" in agent.bounce_reason(port("forwarding", root_port=True), reconverging, own)
    costlier = StpClaim(A, ROOT, 300, settled=True)
    assert agent.bounce_reason(port("forwarding", root_port=True), costlier, own) is None


class Gate:
    """A monitor stand-in that holds given links down (what the reconciler asks)."""

    def __init__(self, held: set[str]) -> None:
        self._held = frozenset(held)

    def held(self, _config: dict) -> frozenset[str]:
        return self._held


def test_a_monitor_holds_links_whose_peers_have_not_answered() -> None:
    monitor = agent.PeerMonitor(gate=True, stop=None)
    config = {"links": [{"name": "bob", "remote": "10.88.88.2"}, {"name": "rho", "remote": "10.88.88.3"}]}
    assert monitor.held(config) == frozenset()  # no socket yet: nothing gated
    monitor.enabled = True
    monitor.watch(config)
    assert monitor.held(config) == {"bob", "rho"}  # not probed yet
    monitor.peers["bob"] = PeerHealth("bob", "10.88.88.2", 0.0, state="up")
    monitor.peers["rho"] = PeerHealth("rho", "10.88.88.3", 0.0, state="holddown")
    assert monitor.held(config) == {"rho"}
    assert agent.PeerMonitor(gate=False, stop=None).held(config) == frozenset()  # --no-apply: measure only


def test_watch_skips_links_it_cannot_probe() -> None:
    monitor = agent.PeerMonitor(gate=True, stop=None)
    links = [{"name": "bob", "remote": "10.88.88.2"}, {"name": "Bad!", "remote": "10.88.88.3"},
             {"name": "rho", "remote": "not an address"}, "junk"]  # fmt: skip
    monitor.watch({"links": links, "bridge_name": "internet"})
    assert monitor.wanted == {"bob": "10.88.88.2"}
    monitor.watch({})
    assert monitor.wanted == {}


def test_with_fast_failover_off_the_monitor_only_measures() -> None:
    monitor = agent.PeerMonitor(gate=True, stop=None)
    monitor.enabled = True
    config = {"links": [{"name": "bob", "remote": "10.88.88.2"}], "fast_failover": False}
    monitor.watch(config)
    assert monitor.held(config) == frozenset()
    monitor.watch(config | {"fast_failover": True})
    assert monitor.held(config) == {"bob"}
