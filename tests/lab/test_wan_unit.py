"""The WAN emulator's forwarding and control without root: SEQPACKET socket pairs stand in for the TUNs."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from lab import wan
from lab.topology import TopologyError, load_topology, parse_topology
from lab.wan import Emulator, WanError, check_pair_settings

NODES = {"control": "192.0.2.254", "a": "192.0.2.1", "b": "192.0.2.2", "c": "192.0.2.3"}


def packet(src: str, dst: str, payload: bytes = b"x" * 20) -> bytes:
    """A minimal IPv4 packet (only what the emulator reads: version, addresses)."""
    return b"\x45" + bytes(11) + socket.inet_aton(NODES[src]) + socket.inet_aton(NODES[dst]) + payload


@pytest.fixture
def emulated(tmp_path):
    """(emulator, node name -> the host's end of its 'TUN'); pair a–b has 40 ms RTT, the rest none."""
    config = {
        "socket": str(tmp_path / "wan.sock"),
        "nodes": [{"name": name, "netns": f"x-{name}", "ifname": "eth0", "address": ip} for name, ip in NODES.items()],
        "pairs": [{"a": "a", "b": "b", "rtt_ms": 40}],
    }
    emulator = Emulator(config)
    ends = {}
    for name in NODES:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        theirs.setblocking(False)
        emulator.fds.append(ours.detach())
        ends[name] = theirs
    emulator.make_lanes()
    yield emulator, ends
    emulator.close()
    emulator.loop.close()
    for end in ends.values():
        end.close()


def send(emulator: Emulator, ends: dict[str, socket.socket], src: str, *packets: bytes) -> None:
    for data in packets:
        ends[src].send(data)
    emulator.on_readable(list(NODES).index(src))


def arrived(ends: dict[str, socket.socket], name: str) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(ends[name].recv(65535))
        except BlockingIOError:
            return got


def run_for(emulator: Emulator, seconds: float) -> None:
    emulator.loop.run_until_complete(asyncio.sleep(seconds))


def test_zero_delay_pairs_forward_at_once(emulated):
    emulator, ends = emulated
    send(emulator, ends, "a", packet("a", "c"), packet("a", "control"))
    assert arrived(ends, "c") == [packet("a", "c")]
    assert arrived(ends, "control") == [packet("a", "control")]


def test_delay_is_half_the_rtt_each_way(emulated):
    emulator, ends = emulated
    started = time.monotonic()
    send(emulator, ends, "a", packet("a", "b"))
    run_for(emulator, 0.012)
    assert arrived(ends, "b") == []
    while not (got := arrived(ends, "b")):
        run_for(emulator, 0.001)
    assert got == [packet("a", "b")]
    assert 0.019 <= time.monotonic() - started <= 0.05


def test_jitter_never_reorders(emulated):
    emulator, ends = emulated
    emulator.handle({"op": "set", "a": "a", "b": "b", "rtt_ms": 10, "jitter_ms": 4})
    packets = [packet("a", "b", index.to_bytes(4, "big")) for index in range(300)]
    got = []
    for data in packets:  # one every ~0.1 ms, so many are in flight at once
        send(emulator, ends, "a", data)
        run_for(emulator, 0)
        got += arrived(ends, "b")
    deadline = time.monotonic() + 1
    while len(got) < len(packets) and time.monotonic() < deadline:
        run_for(emulator, 0.001)
        got += arrived(ends, "b")
    assert got == packets


def test_cut_and_restore(emulated):
    emulator, ends = emulated
    assert emulator.handle({"op": "cut", "a": "a"})["pairs"] == [["a", "b"], ["a", "c"]]  # not control
    send(emulator, ends, "a", packet("a", "c"), packet("a", "control"))
    send(emulator, ends, "c", packet("c", "a"))
    assert arrived(ends, "c") == [] and arrived(ends, "a") == []
    assert arrived(ends, "control") == [packet("a", "control")]
    emulator.handle({"op": "cut", "a": "a", "b": "control"})
    emulator.handle({"op": "restore", "a": "a"})  # every pair of a, control included
    send(emulator, ends, "a", packet("a", "c"), packet("a", "control"))
    assert arrived(ends, "c") == [packet("a", "c")] and arrived(ends, "control") == [packet("a", "control")]


def test_a_cut_drops_packets_in_flight(emulated):
    emulator, ends = emulated
    send(emulator, ends, "a", packet("a", "b"))
    emulator.handle({"op": "cut", "a": "a", "b": "b"})
    run_for(emulator, 0.03)
    assert arrived(ends, "b") == [] and emulator.queued_bytes == 0


def test_loss(emulated):
    emulator, ends = emulated
    emulator.handle({"op": "set", "a": "a", "b": "c", "loss": 0.5})
    got = 0
    for _ in range(200):
        send(emulator, ends, "a", *[packet("a", "c")] * 10)
        got += len(arrived(ends, "c"))
    assert 850 <= got <= 1150  # 1000 expected, σ ≈ 16
    emulator.handle({"op": "set", "a": "a", "b": "c", "loss": 1})
    send(emulator, ends, "a", packet("a", "c"))
    assert arrived(ends, "c") == []


def test_queues_are_bounded(emulated, monkeypatch):
    emulator, ends = emulated
    monkeypatch.setattr(wan, "LANE_QUEUE_BYTES", 10 * len(packet("a", "b")))
    for _ in range(5):
        send(emulator, ends, "a", *[packet("a", "b")] * 10)
    status = {(p["a"], p["b"]): p for p in emulator.status()["pairs"]}
    assert status["a", "b"]["a_to_b"]["queued"] == 10
    assert status["a", "b"]["a_to_b"]["dropped_full"] == 40


def test_malformed_and_unroutable_packets_are_counted_not_fatal(emulated):
    emulator, ends = emulated
    junk = [b"\x45", b"\x60" + bytes(40), bytes(19), packet("a", "a"), b"\x45" + bytes(15) + bytes([10, 0, 0, 1])]
    send(emulator, ends, "a", *junk)
    ends["a"].close()  # a vanished TUN: reads fail; the emulator stops reading it
    emulator.on_readable(list(NODES).index("a"))
    dropped = emulator.status()["dropped"]
    assert dropped == {"not_ipv4": 3, "unroutable": 2, "read_errors": 1}
    send(emulator, ends, "b", packet("b", "c"))
    assert arrived(ends, "c") == [packet("b", "c")]


def test_writing_to_a_gone_node_is_counted(emulated):
    emulator, ends = emulated
    ends["c"].close()
    send(emulator, ends, "b", packet("b", "c"))
    pair = next(p for p in emulator.status()["pairs"] if {p["a"], p["b"]} == {"b", "c"})
    assert pair["a_to_b"]["write_errors"] == 1


@pytest.mark.parametrize(
    "request_",
    [
        {"op": "explode"},
        {"op": "cut", "a": "a", "b": "a"},
        {"op": "cut", "a": "zz"},
        {"op": "cut", "a": ["a"], "b": "b"},
        {"op": "set", "a": "a", "b": "b"},
        {"op": "set", "a": "a", "b": "b", "loss": 2},
        {"op": "set", "a": "a", "b": "b", "rtt_ms": -1},
        {"op": "set", "a": "a", "b": "b", "rtt_ms": "10"},
    ],
)
def test_bad_requests_are_refused(emulated, request_):
    emulator, _ = emulated
    with pytest.raises((WanError, ValueError, TypeError)):
        emulator.handle(request_)


def test_control_socket_round_trip(emulated):
    emulator, _ = emulated

    async def exchange() -> list[dict]:
        serving = asyncio.ensure_future(emulator.serve())
        await asyncio.sleep(0.05)
        client = wan.WanClient(emulator.socket_path)
        answers = await asyncio.to_thread(
            lambda: [client.cut("a", "b"), client.status(), client.set("a", "b", rtt_ms=7), client.restore("a")]
        )
        with pytest.raises(WanError, match="no node"):
            await asyncio.to_thread(client.cut, "nobody")
        emulator.stopped.set()
        await serving
        return answers

    cut, status, _, restore = emulator.loop.run_until_complete(exchange())
    assert cut["pairs"] == [["a", "b"]]
    assert [p["cut"] for p in status["pairs"] if {p["a"], p["b"]} == {"a", "b"}] == [True]
    assert restore["pairs"] == [["a", "control"], ["a", "b"], ["a", "c"]]
    assert emulator.settings[frozenset("ab")].rtt_ms == 7


def test_check_pair_settings():
    assert check_pair_settings({"rtt_ms": 10, "loss": 0, "other": 1}) == {"rtt_ms": 10.0, "loss": 0.0}
    for bad in ({"loss": 1.5}, {"jitter_ms": -1}, {"rtt_ms": True}, {"rtt_ms": float("nan")}):
        with pytest.raises(ValueError):
            check_pair_settings(bad)


def test_blog_gives_every_pair_an_rtt_and_runs_the_emulator():
    blog = load_topology("blog")
    names = [host.name for host in blog.hosts]
    assert blog.emulated_wan
    assert {frozenset((a, b)) for i, a in enumerate(names) for b in names[i + 1 :]} == set(blog.rtt_ms)
    assert blog.pair_settings("vorke", "epsilon") == {"rtt_ms": 20.0, "jitter_ms": 0.0, "loss": 0.0}
    assert not load_topology("triangle").emulated_wan


def test_wan_table():
    topology = parse_topology(
        {
            "hosts": {"a": {}, "b": {}, "c": {}},
            "rtt_ms": {"a": {"b": 30}},
            "wan": {"jitter_ms": 0.5, "loss": 0.01, "pairs": {"b": {"a": {"loss": 0.2}}}},
        }
    )
    assert topology.pair_settings("a", "b") == {"rtt_ms": 30.0, "jitter_ms": 0.5, "loss": 0.2}
    assert topology.pair_settings("c", "b") == {"rtt_ms": 0.0, "jitter_ms": 0.5, "loss": 0.01}
    assert parse_topology({"hosts": {"a": {}}, "wan": {}}).emulated_wan


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ({"loss": 2}, "probability"),
        ({"jitter_ms": -1}, "≥ 0"),
        ({"delay": 1}, "unknown key"),
        ({"pairs": {"a": {"z": {"loss": 0.1}}}}, "both must be hosts"),
        ({"pairs": {"a": {"b": {"rtt_ms": 3}}}}, "unknown key"),
        ({"pairs": {"a": {"b": {"loss": 0.1}}, "b": {"a": {"loss": 0.1}}}}, "twice"),
    ],
)
def test_bad_wan_tables_are_refused(table, complaint):
    with pytest.raises(TopologyError, match=complaint):
        parse_topology({"hosts": {"a": {}, "b": {}}, "wan": table})
