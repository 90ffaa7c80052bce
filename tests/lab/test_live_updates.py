"""Issue 6 end to end: hosts follow changes made in the API, with no script re-run, in the triangle lab.

One lab for the module (report interval 2 s, set before the hosts enroll; the triangle's STP
timers are the kernel's floors). Every change goes through the admin API; what the hosts do is
read from their kernels (sysfs, ``ip``, ``wg``). Tests run in file order and each puts the
network back as it found it. Measured figures are printed and recorded as properties.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from lab.core import Lab
from lab.testing import require_lab
from tests.lab.conftest import enroll_with
from tests.lab.test_agent_e2e import kernel_blocked, kernel_port_states, kernel_root, wait_for
from webapp import create_app, inventory
from webapp.config import TestingConfig
from webapp.extensions import db

pytestmark = [pytest.mark.lab, require_lab()]

APPLY_TIMEOUT = 15.0  # a change reaches a host within about a second; generous for a loaded machine
STP_TIMEOUT = 40.0  # max age 6 s + 2 x forward delay 2 s, twice, and then some
PING_INTERVAL = 0.1  # 10 pings a second where loss is measured
FLOOD_INTERVAL = 0.01
FORWARDING = 3

# --- reading the hosts ------------------------------------------------------------------------


def read(lab: Lab, host: str, path: str) -> str | None:
    result = lab.run(host, ["cat", path], check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def interfaces(lab: Lab, host: str) -> set[str]:
    return set(lab.run(host, ["ls", "/sys/class/net"]).stdout.split())


def wg(lab: Lab, host: str, what: str) -> dict[str, str]:
    """``wg show wg0 <what>`` as {public key: value} (peers: {key: ""})."""
    lines = lab.run(host, ["wg", "show", "wg0", what]).stdout.splitlines()
    return {line.split("\t")[0]: line.partition("\t")[2] for line in lines if line}


def agent_log(lab: Lab, host: str) -> str:
    return (lab.host_dir(host) / "run/privnet/agent.log").read_text()


def api(lab: Lab, method: str, path: str, payload: Any = None) -> Any:
    return lab.api().call(method, path, payload, expect=(200, 201, 202, 204))


def public_key(lab: Lab, node: str) -> str:
    return api(lab, "GET", f"/api/v1/nodes/{node}")["public_key"]


def link_cost(lab: Lab, a: str, b: str) -> int:
    return api(lab, "GET", f"/api/v1/links/{a}/{b}")["cost"]


def until(probe: Callable[[], Any], what: str, timeout: float = APPLY_TIMEOUT) -> float:
    """Seconds until ``probe()`` is truthy (AssertionError after ``timeout``), polling every 50 ms."""
    _, seconds = wait_for(lambda: True if probe() else None, what, timeout, interval=0.05)
    return seconds


def settled_tree(lab: Lab) -> dict[tuple[str, str], int]:
    """Port states once every port forwards or blocks and exactly one (the triangle's loop) blocks."""

    def probe() -> dict | None:
        states = kernel_port_states(lab)
        probe.last = states
        values = list(states.values())
        return states if len(values) == 6 and values.count(4) == 1 and values.count(3) == 5 else None

    probe.last = None
    states, _ = wait_for(probe, "a settled spanning tree", STP_TIMEOUT)
    return states


class Pinger:
    """``ping -i INTERVAL`` from one host to another's overlay address, in the background."""

    def __init__(self, lab: Lab, source: str, target: str, interval: float = PING_INTERVAL) -> None:
        address = lab.state["hosts"][target]["overlay_ip"]
        argv = ["ping", "-n", "-q", "-i", str(interval), address]
        self.process = lab.popen(source, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.interval = interval
        self.label = f"{source}→{target}"

    def stop(self) -> tuple[int, int]:
        """``(sent, lost)``; ``self.max_rtt``: the slowest answer's round trip, seconds."""
        self.process.send_signal(2)  # SIGINT: ping prints its statistics
        output, _ = self.process.communicate(timeout=10)
        match = re.search(r"(\d+) packets transmitted, (\d+) received", output)
        assert match, output
        rtt = re.search(r"= [\d.]+/[\d.]+/([\d.]+)/", output)  # min/avg/max/mdev, ms
        self.max_rtt = float(rtt.group(1)) / 1000 if rtt else None
        sent, received = int(match.group(1)), int(match.group(2))
        return sent, sent - received


@pytest.fixture
def pingers() -> Iterator[list[Pinger]]:
    started: list[Pinger] = []
    yield started
    for pinger in started:
        if pinger.process.poll() is None:
            pinger.process.kill()
            pinger.process.wait()


def forwarding_link_and_blocked_link(lab: Lab) -> tuple[tuple[str, str], tuple[str, str], str]:
    """``(a forwarding link, the blocked link, the host where it blocks)``, links as sorted pairs."""
    states = settled_tree(lab)
    ((blocked, blocked_at),) = kernel_blocked(states)
    blocked_pair = tuple(sorted(blocked))
    forwarding = next(pair for pair in [("a", "b"), ("a", "c"), ("b", "c")] if pair != blocked_pair)
    return forwarding, blocked_pair, blocked_at


# --- the tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triangle(bare_triangle: Lab) -> Lab:
    """The triangle with the seed's tree settings: these tests change links and costs themselves and
    read what the kernels do; in the latency-aware mode the planner would re-cost links they did not
    touch (tested in ``test_failover`` and ``test_blog``)."""
    return enroll_with(bare_triangle, tree_mode="seed")


def test_every_agent_applied_its_config_and_says_so(triangle: Lab) -> None:
    def in_sync() -> bool:
        nodes = api(triangle, "GET", "/api/v1/nodes")["nodes"]
        in_sync.last = {node["name"]: node["sync"] for node in nodes}
        return all(node["sync"]["state"] == "in_sync" for node in nodes)

    in_sync.last = None
    until(in_sync, "every node in sync", timeout=30)
    for host in triangle.host_names:
        log = agent_log(triangle, host)
        assert re.search(r"config [0-9a-f]{16} applied \(0 changes\)", log), log  # up had done it all
        assert "Traceback" not in log


def test_a_link_removed_and_added_in_the_api_follows_on_both_hosts(triangle: Lab, record_property) -> None:
    root = kernel_root(triangle)
    other = next(host for host in triangle.host_names if host != root)
    pair = sorted((root, other))
    original = api(triangle, "GET", f"/api/v1/links/{pair[0]}/{pair[1]}")
    keys = {host: public_key(triangle, host) for host in pair}

    started = time.monotonic()
    api(triangle, "DELETE", f"/api/v1/links/{pair[0]}/{pair[1]}")
    try:

        def gone() -> bool:
            return all(peer not in interfaces(triangle, host) and keys[peer] not in wg(triangle, host, "peers")
                       for host, peer in (pair, pair[::-1]))  # fmt: skip

        removed = until(gone, f"link {pair[0]}-{pair[1]}'s VXLANs and peers to go")
        record_property("link_removed_seconds", round(removed, 2))
        triangle.wait_for_overlay(timeout=STP_TIMEOUT)  # around, through the third host
        for host, peer in (pair, pair[::-1]):
            assert f"link {peer}: removed (vni {original['vni']})" in agent_log(triangle, host)
            assert f"peer {peer}: removed" in agent_log(triangle, host)
    finally:
        # Back, at the lowest cost: the root's direct link is then certainly part of the tree.
        started = time.monotonic()
        added = api(triangle, "POST", "/api/v1/links", {"a": pair[0], "b": pair[1], "cost": 1})

    def back() -> bool:
        return all(read(triangle, host, f"/sys/class/net/{peer}/brport/path_cost") == "1"
                   and keys[peer] in wg(triangle, host, "peers") for host, peer in (pair, pair[::-1]))  # fmt: skip

    until(back, f"link {pair[0]}-{pair[1]} back on both hosts")
    record_property("link_added_seconds", round(time.monotonic() - started, 2))
    print(f"\nlink {pair[0]}-{pair[1]}: gone from both kernels {removed:.2f} s after DELETE, "
          f"back {time.monotonic() - started:.2f} s after POST")  # fmt: skip
    for host, peer in (pair, pair[::-1]):
        assert f"link {peer}: added (vni {added['vni']}, remote " in agent_log(triangle, host)

    # Traffic flows over the new wire: both its ports forward, and pings cross its VXLAN.
    until(lambda: all(kernel_port_states(triangle).get(port) == FORWARDING for port in ((root, other), (other, root))),
          "both ports of the new link forwarding", timeout=STP_TIMEOUT)  # fmt: skip
    # Until the bridges forget where the other end was (the old way round, aged out after the
    # topology change), the first pings may be lost.
    target = triangle.state["hosts"][root]["overlay_ip"]
    one_ping = ["ping", "-n", "-q", "-c", "1", "-W", "1", target]
    until(lambda: triangle.run(other, one_ping, check=False).returncode == 0, "a ping over the new link", STP_TIMEOUT)
    counter = f"/sys/class/net/{other}/statistics/rx_packets"
    before = int(read(triangle, root, counter))
    output = triangle.run(other, ["ping", "-n", "-q", "-c", "50", "-i", "0.05", "-W", "1", target], check=False).stdout
    received = int(re.search(r"(\d+) received", output).group(1))
    crossed = int(read(triangle, root, counter)) - before
    assert received == 50 and crossed >= 50, (output, crossed)

    api(triangle, "PATCH", f"/api/v1/links/{pair[0]}/{pair[1]}", {"cost": original["cost"]})
    until(lambda: read(triangle, root, f"/sys/class/net/{other}/brport/path_cost") == str(original["cost"]),
          "the original cost back")  # fmt: skip


def test_a_cost_change_reaches_both_kernels_in_place(triangle: Lab, record_property) -> None:
    a, b = "a", "b"
    cost = link_cost(triangle, a, b)
    indexes = {host: read(triangle, host, f"/sys/class/net/{peer}/ifindex") for host, peer in ((a, b), (b, a))}
    seconds = []
    try:
        for new in (cost + 7, cost + 3):
            started = time.monotonic()
            api(triangle, "PATCH", f"/api/v1/links/{a}/{b}", {"cost": new})
            until(lambda new=new: all(read(triangle, host, f"/sys/class/net/{peer}/brport/path_cost") == str(new)
                                      for host, peer in ((a, b), (b, a))), f"cost {new} on both ends")  # fmt: skip
            seconds.append(time.monotonic() - started)
        assert f"link {b}: cost {cost + 7} -> {cost + 3}" in agent_log(triangle, a)
        assert {host: read(triangle, host, f"/sys/class/net/{peer}/ifindex")
                for host, peer in ((a, b), (b, a))} == indexes  # fmt: skip
        record_property("cost_change_seconds_max", round(max(seconds), 3))
        print(f"\ncost change API -> both kernels: {', '.join(f'{s:.2f}' for s in seconds)} s")

        # The setup script run again after the agent applied changes: up finds nothing to change.
        triangle.enroll([a], fresh=True)
        log = (triangle.state_dir / "logs" / f"enroll-{a}.log").read_text()
        run = log[log.rindex("$ curl") :]
        assert "privnet: no changes" in run, run
        assert "wrote /etc/privnet/wg0.conf" not in run and "wrote /etc/privnet/config.json" not in run, run
    finally:
        api(triangle, "PATCH", f"/api/v1/links/{a}/{b}", {"cost": cost})
        until(lambda: read(triangle, a, f"/sys/class/net/{b}/brport/path_cost") == str(cost), "the cost back")


def test_changes_to_one_link_leave_the_traffic_on_another_alone(triangle: Lab, pingers, record_property) -> None:
    (x, y), blocked, _at = forwarding_link_and_blocked_link(triangle)
    cost = link_cost(triangle, *blocked)
    pinger = Pinger(triangle, x, y, interval=FLOOD_INTERVAL)  # x-y forwards: its pings cross that wire only
    pingers.append(pinger)
    time.sleep(1)
    path = f"/sys/class/net/{blocked[1]}/brport/path_cost"
    try:
        api(triangle, "PATCH", f"/api/v1/links/{blocked[0]}/{blocked[1]}", {"cost": 60000})
        until(lambda: read(triangle, blocked[0], path) == "60000", "the blocked link re-costed")
        api(triangle, "DELETE", f"/api/v1/links/{blocked[0]}/{blocked[1]}")
        until(lambda: blocked[1] not in interfaces(triangle, blocked[0]), "the blocked link removed")
        api(triangle, "POST", "/api/v1/links", {"a": blocked[0], "b": blocked[1], "cost": 60000})
        until(lambda: read(triangle, blocked[0], path) == "60000", "the link added again")
        time.sleep(2 * 2 + 1)  # its ports listen and learn (2 x forward delay) before one of them forwards
    finally:
        sent, lost = pinger.stop()
        api(triangle, "PATCH", f"/api/v1/links/{blocked[0]}/{blocked[1]}", {"cost": cost})
    record_property("flood_sent", sent)
    record_property("flood_lost", lost)
    print(f"\nflood {x}→{y} while {blocked[0]}-{blocked[1]} was re-costed, removed and added: {sent} sent, {lost} lost")
    assert sent > 300 and lost == 0
    until(lambda: read(triangle, blocked[0], path) == str(cost), "the cost back")


def test_a_rotated_key_interrupts_only_that_nodes_tunnels_briefly(triangle: Lab, pingers, record_property) -> None:
    # The rotated node is an end of the blocked link: its other link forwards, and so does the
    # link between the two others, which must not notice.
    (_x, _y), blocked, _at = forwarding_link_and_blocked_link(triangle)
    node = blocked[0]
    near = blocked[1]  # over the blocked link: traffic node<->near goes round, through the third
    third = next(host for host in triangle.host_names if host not in blocked)
    old_key = public_key(triangle, node)
    own = Pinger(triangle, third, node)  # across node's forwarding link
    others = Pinger(triangle, third, near)  # across the link that does not involve node
    pingers.extend([own, others])
    time.sleep(1)
    started = time.monotonic()
    api(triangle, "POST", f"/api/v1/nodes/{node}/rotate-key")

    def switched() -> str | None:
        key = public_key(triangle, node)
        if key == old_key:
            return None
        peers_know = all(key in wg(triangle, peer, "peers") and old_key not in wg(triangle, peer, "peers")
                         for peer in (third, near))  # fmt: skip
        own_key = triangle.run(node, ["wg", "show", "wg0", "public-key"]).stdout.strip()
        return key if peers_know and own_key == key else None

    switched.last = None
    new_key, switch_seconds = wait_for(switched, f"{node}'s new key everywhere", APPLY_TIMEOUT, interval=0.05)
    time.sleep(6)  # keep pinging while the tunnels come back
    own_sent, own_lost = own.stop()
    other_sent, other_lost = others.stop()
    # Packets sent while the tunnel re-handshakes wait in WireGuard's queue rather than being lost:
    # the slowest answer shows that wait; lost pings show what the queue could not keep.
    interruption = max(own_lost * PING_INTERVAL, own.max_rtt or 0.0)
    record_property("key_rotation_switch_seconds", round(switch_seconds, 2))
    record_property("key_rotation_interruption_seconds", round(interruption, 3))
    record_property("key_rotation_own_link_lost", own_lost)
    record_property("key_rotation_other_link_lost", other_lost)
    record_property("key_rotation_other_link_max_rtt", others.max_rtt)
    print(f"\nkey rotation of {node}: new key everywhere {switch_seconds:.2f} s after the API call; "
          f"{own.label} lost {own_lost}/{own_sent} pings, slowest answer {own.max_rtt:.3f} s "
          f"(interruption ~{interruption:.2f} s); {others.label} lost {other_lost}/{other_sent}, "
          f"slowest {others.max_rtt:.3f} s")  # fmt: skip
    assert other_lost == 0
    assert interruption <= 5.0
    key_file = triangle.run(
        node, ["sh", "-c", "stat -c %a /etc/privnet/private.key; wg pubkey < /etc/privnet/private.key"]
    )
    assert key_file.stdout.split() == ["600", new_key]
    assert f"wg0: private key rotated (public key {new_key})" in agent_log(triangle, node)
    for peer in (third, near):
        assert f"peer {node}: key {old_key[:8]}… -> {new_key[:8]}…" in agent_log(triangle, peer)
    triangle.wait_for_overlay(timeout=STP_TIMEOUT)
    assert time.monotonic() - started < 60


def test_a_moved_endpoint_is_followed_by_the_nodes_peers(triangle: Lab, record_property) -> None:
    node = "b"
    info = triangle.state["hosts"][node]
    old_ip, new_ip = info["public_ip"], "192.0.2.102"
    old = api(triangle, "GET", f"/api/v1/nodes/{node}")["endpoint"]
    port = old.rsplit(":", 1)[1]
    key = public_key(triangle, node)
    peers = [host for host in triangle.host_names if host != node]

    def move(address: str, former: str, endpoint: str) -> float:
        # The node is silent meanwhile (wg0 down), so WireGuard's roaming cannot be what moves its peers.
        triangle.run(node, ["ip", "link", "set", "dev", "wg0", "down"])
        triangle.run(node, ["ip", "addr", "del", f"{former}/24", "dev", "eth0"])
        triangle.run(node, ["ip", "addr", "add", f"{address}/24", "dev", "eth0"])
        started = time.monotonic()
        api(triangle, "PATCH", f"/api/v1/nodes/{node}", {"endpoint": endpoint})
        until(lambda: all(wg(triangle, peer, "endpoints").get(key) == endpoint for peer in peers),
              f"{node}'s peers to use {endpoint}")  # fmt: skip
        seconds = time.monotonic() - started
        triangle.run(node, ["ip", "link", "set", "dev", "wg0", "up"])
        triangle.wait_for_overlay(timeout=STP_TIMEOUT)
        return seconds

    try:
        seconds = move(new_ip, old_ip, f"{new_ip}:{port}")
        for peer in peers:
            assert f"peer {node}: endpoint {old_ip}:{port} -> {new_ip}:{port}" in agent_log(triangle, peer)
        record_property("endpoint_move_seconds", round(seconds, 2))
        print(f"\n{node} moved to {new_ip}: its peers followed {seconds:.2f} s after the PATCH")
    finally:
        move(old_ip, new_ip, old)


def test_the_network_outlives_the_app_and_the_agents_catch_up(triangle: Lab, pingers, record_property) -> None:
    (x, y), _blocked, _at = forwarding_link_and_blocked_link(triangle)
    cost = link_cost(triangle, x, y)
    pinger = Pinger(triangle, x, y)
    pingers.append(pinger)
    outage = 20.0
    triangle.stop_app()
    try:
        stopped = datetime.now(UTC)
        time.sleep(outage / 2)
        # A change made while the app is down (straight into its database): served once it is back.
        app = create_app(TestingConfig, {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{triangle.state_dir / 'app.sqlite3'}"})
        with app.app_context():
            inventory.update_link(inventory.find_link(x, y), {"cost": cost + 11})
            db.session.remove()
            db.engine.dispose()
        time.sleep(outage / 2)
        assert read(triangle, x, f"/sys/class/net/{y}/brport/path_cost") == str(cost)  # nobody told the hosts yet
    finally:
        triangle.start_app()
    back = time.monotonic()
    sent, lost = pinger.stop()
    for host in triangle.host_names:
        assert "config fetch failed (cannot reach the app" in agent_log(triangle, host)
    caught_up = until(lambda: all(read(triangle, host, f"/sys/class/net/{peer}/brport/path_cost") == str(cost + 11)
                                  for host, peer in ((x, y), (y, x))), "the agents to catch up",
                      timeout=45)  # fmt: skip
    record_property("app_outage_seconds", outage)
    record_property("app_outage_pings_lost", lost)
    record_property("catch_up_seconds_after_app_back", round(caught_up, 1))
    print(f"\napp down {outage:.0f} s: {x}→{y} lost {lost}/{sent} pings; the hosts caught up "
          f"{caught_up:.1f} s after the app came back (since {stopped:%H:%M:%S})")  # fmt: skip
    assert lost == 0
    assert time.monotonic() - back < 45
    api(triangle, "PATCH", f"/api/v1/links/{x}/{y}", {"cost": cost})
    until(lambda: read(triangle, x, f"/sys/class/net/{y}/brport/path_cost") == str(cost), "the cost back")
