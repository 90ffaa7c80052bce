"""The lab's WAN emulator: a user-space "internet" with per-pair delay, jitter, loss and cuts.

This machine has no netem, so delay is made here. One asyncio process (`python -m lab.wan CONFIG`,
started by `Lab.up` inside `<prefix>-wan`, its PID in lab.json) holds one TUN device per node of the
underlay, each created inside the node's own namespace after `setns` into it:

    <prefix>-<host>.eth0       192.0.2.N/24   a public host
    <prefix>-nat-<host>.wan0   192.0.2.N/24   the NAT router of a NAT host (the WAN sees its uplink)
    <prefix>-control.eth0      192.0.2.254/24 the app

A TUN is layer 3 (no ARP, no MAC): the connected route 192.0.2.0/24 sends every underlay packet to
the emulator, which reads it from the sender's TUN, looks up the destination address and writes it
to that node's TUN after the pair's one-way delay (RTT/2, ± uniform jitter, never reordered within
a direction), unless the packet is lost (probability `loss`, drawn per packet and direction) or the
pair is cut. Packets to other addresses (broadcast, 198.51.100.x behind a NAT router) and non-IPv4
packets are dropped and counted. Pairs with `control` have no delay, jitter or loss, and `cut A`
leaves them alone (cut them by name: `cut A control`). Queues are bounded (per direction and in
total); a full queue drops the packet.

The control channel is a Unix socket (`wan.sock` in the lab's state directory), one JSON object per
line each way::

    {"op": "cut", "a": "rho", "b": "bob"}        # b null or absent: every host pair of a
    {"op": "restore", "a": "rho", "b": null}     # b null: every pair of a, control included
    {"op": "set", "a": "rho", "b": "bob", "rtt_ms": 30, "jitter_ms": 1, "loss": 0.01}   # any subset
    {"op": "status"}
    -> {"ok": true, ...} or {"ok": false, "error": "..."}

SIGTERM or SIGINT closes the TUNs (their interfaces vanish) and removes the socket.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import fcntl
import itertools
import json
import math
import os
import random
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTROL_NODE = "control"
TUN_DEVICE = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

READ_BATCH = 128  # packets read from one TUN before the loop looks at the others
MAX_PACKET = 65535
LANE_QUEUE_BYTES = 8 << 20  # per direction: ~1 Gbit/s at 60 ms one-way
TOTAL_QUEUE_BYTES = 96 << 20
TIMER_SLACK = 0.0005  # epoll wakes up to 1 ms late (ms resolution): aim half a millisecond early
CONTROL_LINE_LIMIT = 64 << 10


class WanError(RuntimeError):
    """The emulator refused a request or cannot be reached (the message says why)."""


# -- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WanNode:
    """One end of the emulated WAN: a TUN `ifname` with `address`/`prefixlen` inside `netns`."""

    name: str
    netns: str
    ifname: str
    address: str
    prefixlen: int = 24


@dataclass
class PairSettings:
    """What the WAN does to a pair's packets, the same both ways."""

    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    cut: bool = False


PAIR_SETTING_KEYS = ("rtt_ms", "jitter_ms", "loss")


def check_pair_settings(fields: dict[str, Any]) -> dict[str, float]:
    """The pair settings among `fields` (rtt_ms, jitter_ms, loss), checked; ValueError naming a bad one."""
    checked: dict[str, float] = {}
    for key, value in ((key, fields[key]) for key in PAIR_SETTING_KEYS if key in fields):
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ValueError(f"{key} must be a number")
        if key == "loss" and not 0 <= value <= 1:
            raise ValueError("loss is a probability from 0 to 1")
        if key != "loss" and not 0 <= value <= 60_000:
            raise ValueError(f"{key} is from 0 to 60000 milliseconds")
        checked[key] = float(value)
    return checked


def emulator_config(
    nodes: list[WanNode],
    pairs: dict[frozenset[str], dict[str, float]],
    socket_path: Path,
) -> dict[str, Any]:
    """The JSON the emulator is started with: nodes, per-pair settings (pairs not named: all 0), socket."""
    return {
        "socket": str(socket_path),
        "nodes": [node.__dict__ for node in nodes],
        "pairs": [dict(zip(("a", "b"), sorted(pair), strict=True), **settings) for pair, settings in pairs.items()],
    }


# -- namespaces and TUN devices ---------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


@contextlib.contextmanager
def inside_netns(netns: str) -> Iterator[None]:
    """Run the block with this thread in network namespace `netns` (by name), then come back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def open_tun(ifname: str) -> int:
    """A new TUN device `ifname` (IPv4 packets without header) in this thread's namespace; its fd (non-blocking)."""
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", ifname.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def attach_node(node: WanNode) -> int:
    """Create the node's TUN in its namespace, address it and bring it up; the TUN's fd."""
    with inside_netns(node.netns):
        fd = open_tun(node.ifname)
        with contextlib.suppress(OSError):  # no IPv6 chatter on the underlay
            Path(f"/proc/sys/net/ipv6/conf/{node.ifname}/disable_ipv6").write_text("1")
    try:
        for args in (
            ["addr", "add", f"{node.address}/{node.prefixlen}", "dev", node.ifname],
            ["link", "set", "dev", node.ifname, "up"],
        ):
            subprocess.run(["ip", "-n", node.netns, *args], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        os.close(fd)
        raise WanError(f"ip -n {node.netns} {' '.join(error.cmd[3:])}: {error.stderr.strip()}") from None
    return fd


# -- forwarding -------------------------------------------------------------------------------------


class Lane:
    """One direction of a pair: settings, a FIFO of (due time, packet) and counters."""

    __slots__ = (
        "delay", "dropped_cut", "dropped_full", "dropped_loss", "emulator", "fd", "forwarded",
        "jitter", "last_due", "loss", "queue", "queued_bytes", "timer", "write_errors",
    )  # fmt: skip

    def __init__(self, emulator: Emulator, fd: int) -> None:
        self.emulator = emulator
        self.fd = fd  # the destination's TUN
        self.delay = 0.0  # one way, seconds
        self.jitter = 0.0
        self.loss = 0.0
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued_bytes = 0
        self.last_due = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.forwarded = self.dropped_loss = self.dropped_cut = self.dropped_full = self.write_errors = 0

    def apply(self, settings: PairSettings) -> None:
        self.delay = settings.rtt_ms / 2000
        self.jitter = settings.jitter_ms / 1000
        self.loss = -1.0 if settings.cut else settings.loss  # -1: cut (checked first in send)
        if settings.cut:
            self.clear()

    def send(self, packet: bytes) -> None:
        """Deliver `packet` now, later, or never, as the lane's settings say."""
        if self.loss:
            if self.loss < 0:
                self.dropped_cut += 1
                return
            if random.random() < self.loss:  # noqa: S311 -- emulated loss, not security
                self.dropped_loss += 1
                return
        if not self.delay and not self.jitter and not self.queue:
            self.write(packet)
            return
        emulator = self.emulator
        size = len(packet)
        if self.queued_bytes + size > LANE_QUEUE_BYTES or emulator.queued_bytes + size > TOTAL_QUEUE_BYTES:
            self.dropped_full += 1
            return
        due = emulator.loop.time() + self.delay
        if self.jitter:
            due += random.uniform(-self.jitter, self.jitter)  # noqa: S311
        due = self.last_due = max(due, self.last_due)  # FIFO: never overtake a packet in flight
        self.queue.append((due, packet))
        self.queued_bytes += size
        emulator.queued_bytes += size
        if self.timer is None:
            self.timer = emulator.loop.call_at(due - TIMER_SLACK, self.flush)

    def flush(self) -> None:
        """Write every queued packet that is due; wake up again for the next one."""
        self.timer = None
        queue = self.queue
        horizon = self.emulator.loop.time() + TIMER_SLACK
        written = 0
        while queue and queue[0][0] <= horizon:
            packet = queue.popleft()[1]
            written += len(packet)
            self.write(packet)
        self.queued_bytes -= written
        self.emulator.queued_bytes -= written
        if queue:
            self.timer = self.emulator.loop.call_at(queue[0][0] - TIMER_SLACK, self.flush)

    def write(self, packet: bytes) -> None:
        try:
            os.write(self.fd, packet)
            self.forwarded += 1
        except OSError:  # the destination is down, gone, or its queue is full: the packet is lost
            self.write_errors += 1

    def clear(self) -> None:
        """Forget the packets in flight."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.emulator.queued_bytes -= self.queued_bytes
        self.queued_bytes = 0
        self.queue.clear()

    def counters(self) -> dict[str, int]:
        return {
            "forwarded": self.forwarded,
            "dropped_loss": self.dropped_loss,
            "dropped_cut": self.dropped_cut,
            "dropped_full": self.dropped_full,
            "write_errors": self.write_errors,
            "queued": len(self.queue),
        }


class Emulator:
    """The WAN: nodes' TUNs, a lane per ordered pair, and the control socket."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.nodes = [WanNode(**node) for node in config["nodes"]]
        self.index = {node.name: position for position, node in enumerate(self.nodes)}
        if len(self.index) != len(self.nodes):
            raise WanError("node names must be unique")
        self.socket_path = Path(config["socket"])
        self.settings: dict[frozenset[str], PairSettings] = {
            frozenset(pair): PairSettings() for pair in itertools.combinations(self.index, 2)
        }
        for entry in config.get("pairs", []):
            pair = self._pair(entry["a"], entry["b"])
            self.settings[pair] = PairSettings(**check_pair_settings(entry))
        self.by_address = {socket.inet_aton(node.address): position for position, node in enumerate(self.nodes)}
        self.fds: list[int] = []
        self.lanes: list[list[Lane | None]] = []
        self.queued_bytes = 0
        self.unroutable = self.not_ipv4 = self.read_errors = 0
        self.loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self.stopped = asyncio.Event()

    def _pair(self, a: Any, b: Any) -> frozenset[str]:
        for name in (a, b):
            if name not in self.index:
                raise WanError(f"no node {name!r} (nodes: {', '.join(self.index)})")
        if a == b:
            raise WanError("a pair is two different nodes")
        return frozenset((a, b))

    # -- running

    def open(self) -> None:
        """Create every node's TUN (before the loop runs: setns is per thread), then the lanes."""
        for node in self.nodes:
            self.fds.append(attach_node(node))
        self.make_lanes()

    def make_lanes(self) -> None:
        """A lane per ordered pair of `fds` (one per node, in node order), with the pairs' settings."""
        nodes = range(len(self.fds))
        self.lanes = [[None if src == dst else Lane(self, self.fds[dst]) for dst in nodes] for src in nodes]
        for pair, settings in self.settings.items():
            self._apply(pair, settings)

    def _apply(self, pair: frozenset[str], settings: PairSettings) -> None:
        a, b = (self.index[name] for name in pair)
        for src, dst in ((a, b), (b, a)):
            lane = self.lanes[src][dst]
            assert lane is not None
            lane.apply(settings)

    def on_readable(self, src: int) -> None:
        """Forward what node `src` sent: each packet to the lane of its destination address."""
        fd, lanes, by_address = self.fds[src], self.lanes[src], self.by_address
        for _ in range(READ_BATCH):
            try:
                packet = os.read(fd, MAX_PACKET)
            except BlockingIOError:
                return
            except OSError as error:
                self._stop_reading(src, error.strerror or str(error))
                return
            if not packet:
                self._stop_reading(src, "end of file")
                return
            if len(packet) < 20 or packet[0] >> 4 != 4:
                self.not_ipv4 += 1
                continue
            dst = by_address.get(packet[16:20])
            lane = None if dst is None else lanes[dst]
            if lane is None:
                self.unroutable += 1
                continue
            lane.send(packet)

    def _stop_reading(self, src: int, why: str) -> None:
        """Stop polling a node whose TUN fails (its interface was deleted): it would wake the loop forever."""
        self.read_errors += 1
        self.loop.remove_reader(self.fds[src])
        print(f"wan: no longer reading {self.nodes[src].name}: {why}", file=sys.stderr, flush=True)

    async def serve(self) -> None:
        """Forward and answer the control socket until SIGTERM/SIGINT."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopped.set)
        for src, fd in enumerate(self.fds):
            self.loop.add_reader(fd, self.on_readable, src)
        self.socket_path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._client, path=str(self.socket_path), limit=CONTROL_LINE_LIMIT)
        os.chmod(self.socket_path, 0o600)
        print(f"wan: {len(self.nodes)} nodes up, control socket {self.socket_path}", file=sys.stderr, flush=True)
        try:
            await self.stopped.wait()
        finally:
            server.close()
            for fd in self.fds:
                self.loop.remove_reader(fd)
            print("wan: stopping", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Close the TUNs (their interfaces vanish) and remove the control socket."""
        for row in self.lanes:
            for lane in row:
                if lane is not None:
                    lane.clear()
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
        self.socket_path.unlink(missing_ok=True)

    # -- control

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise WanError("a request is a JSON object")
                    answer = {"ok": True, **self.handle(request)}
                except (WanError, ValueError, KeyError, TypeError) as error:
                    answer = {"ok": False, "error": str(error)}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Carry out one control request; the answer's fields (WanError/ValueError if refused)."""
        op = request.get("op")
        if op == "status":
            return self.status()
        if op not in ("cut", "restore", "set"):
            raise WanError(f"unknown op {op!r} (cut, restore, set, status)")
        a, b = request.get("a"), request.get("b")
        if op == "set":
            values = check_pair_settings(request)
            if not values:
                raise WanError("set needs rtt_ms, jitter_ms and/or loss")
            pairs = [self._pair(a, b)]
            for pair in pairs:
                for key, value in values.items():
                    setattr(self.settings[pair], key, value)
        else:
            if b is not None:
                pairs = [self._pair(a, b)]
            else:
                others = [name for name in self.index if name != a and (op == "restore" or name != CONTROL_NODE)]
                pairs = [self._pair(a, other) for other in others]
            for pair in pairs:
                self.settings[pair].cut = op == "cut"
        for pair in pairs:
            self._apply(pair, self.settings[pair])
        print(f"wan: {json.dumps(request)}", file=sys.stderr, flush=True)
        return {"pairs": [sorted(pair) for pair in pairs]}

    def status(self) -> dict[str, Any]:
        pairs = []
        for pair, settings in self.settings.items():
            a, b = sorted(pair)
            lane_ab, lane_ba = self.lanes[self.index[a]][self.index[b]], self.lanes[self.index[b]][self.index[a]]
            assert lane_ab is not None and lane_ba is not None
            counters = {"a_to_b": lane_ab.counters(), "b_to_a": lane_ba.counters()}
            pairs.append({"a": a, "b": b, **settings.__dict__, **counters})
        return {
            "pid": os.getpid(),
            "nodes": [node.__dict__ for node in self.nodes],
            "pairs": pairs,
            "dropped": {"unroutable": self.unroutable, "not_ipv4": self.not_ipv4, "read_errors": self.read_errors},
            "queued_bytes": self.queued_bytes,
        }


def run(config: dict[str, Any]) -> None:
    """Open the TUNs, forward until SIGTERM/SIGINT, then close everything."""
    emulator = Emulator(config)
    asyncio.set_event_loop(emulator.loop)
    try:
        emulator.open()
        emulator.loop.run_until_complete(emulator.serve())
    finally:
        emulator.close()
        emulator.loop.close()


# -- client -----------------------------------------------------------------------------------------


class WanClient:
    """Talks to a running emulator over its control socket."""

    def __init__(self, socket_path: Path, timeout: float = 5.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; the answer (WanError if refused or unreachable)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(self.timeout)
                connection.connect(str(self.socket_path))
                connection.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
                with connection.makefile("rb") as answers:
                    line = answers.readline(CONTROL_LINE_LIMIT)
        except OSError as error:
            raise WanError(f"WAN emulator at {self.socket_path}: {error}") from None
        if not line:
            raise WanError(f"WAN emulator at {self.socket_path} closed the connection")
        answer = json.loads(line)
        if not answer.pop("ok", False):
            raise WanError(answer.get("error", "refused"))
        return answer

    def cut(self, a: str, b: str | None = None) -> dict[str, Any]:
        """Drop every packet between a and b (b None: between a and every other host)."""
        return self.request("cut", a=a, b=b)

    def restore(self, a: str, b: str | None = None) -> dict[str, Any]:
        """Undo cuts between a and b (b None: every pair of a, control included)."""
        return self.request("restore", a=a, b=b)

    def set(self, a: str, b: str, **settings: float) -> dict[str, Any]:
        """Change a pair's rtt_ms, jitter_ms and/or loss."""
        return self.request("set", a=a, b=b, **settings)

    def status(self) -> dict[str, Any]:
        """Nodes, every pair's settings and counters, global drops."""
        return self.request("status")


def main(argv: list[str] | None = None) -> int:
    """`python -m lab.wan CONFIG.json`: run the emulator (Lab.up starts it inside <prefix>-wan)."""
    parser = argparse.ArgumentParser(prog="python -m lab.wan", description="The lab's WAN emulator.")
    parser.add_argument("config", type=Path, help="JSON: socket, nodes, pairs (see lab.wan.emulator_config)")
    args = parser.parse_args(argv)
    try:
        run(json.loads(args.config.read_text()))
    except (WanError, OSError, ValueError) as error:
        print(f"wan: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
