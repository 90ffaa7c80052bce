"""The agent applies configs to real hosts (namespaces, wireguard-go), changing only what differs.

Three hosts set up by their rendered setup scripts (``netlab``), links a-b and b-c; the agents
that ``up`` started are stopped, and the agent is then run by hand with ``--apply`` after each
new config.json, once with the system's ``/usr/bin/python3`` and its Debian pyroute2 0.7 (what a
host runs) and once with the venv's 0.9. While link a-c is added, re-costed and removed, a ping
flood on link a-b loses nothing, and no other interface is recreated. At the end the setup script
rendered for the same config finds nothing to change: the agent left the host as ``up`` would.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.agent import config_json
from tests.bootstrap.netlab import AGENT_PATH, Host, Underlay, Wire, host_config, setup_script, wait_for
from tests.conftest import require
from webapp.rendering import render_host_files

pytestmark = pytest.mark.lab

TOOLS = ("ip", "bridge", "wg", "wireguard-go", "ethtool", "dash", "ping", "mount")
SYSTEM_PYTHON = "/usr/bin/python3"
INTERPRETERS = {"system-python": SYSTEM_PYTHON, "venv-python": sys.executable}
CONVERGE_SECONDS = 30
AB, BC = Wire("a", "b", 1), Wire("b", "c", 3)
FLOOD_INTERVAL = 0.01  # 100 pings a second


@pytest.fixture(params=sorted(INTERPRETERS))
def python(request: pytest.FixtureRequest) -> str:
    require(os.geteuid() == 0, "needs root (network namespaces, mounts)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    require(not missing, f"needs {', '.join(missing)} on PATH")
    interpreter = INTERPRETERS[request.param]
    probe = subprocess.run([interpreter, "-c", "import pyroute2"], capture_output=True, check=False)
    require(probe.returncode == 0, f"{interpreter} has no pyroute2 (apt-get install python3-pyroute2)")
    return interpreter


@pytest.fixture
def hosts(tmp_path: Path, python: str) -> Iterator[dict[str, Host]]:
    """a, b, c set up with links a-b and b-c, their background agents stopped."""
    underlay = Underlay(f"ak{secrets.token_hex(3)}", tmp_path / "hosts")
    try:
        for number, name in enumerate("abc", start=1):
            underlay.add_host(name, number)
        for host in underlay.hosts.values():
            result = host.run_setup(setup_script(host, [AB, BC]))
            assert result.returncode == 0, f"{host.name}: {result.stdout}\n{result.stderr}"
            for pid in host.agent_pids():  # this test runs the agent itself, one change at a time
                os.kill(pid, signal.SIGTERM)
        for host in underlay.hosts.values():
            assert wait_for(lambda host=host: not host.agent_pids(), timeout=10) is not None
        yield underlay.hosts
    finally:
        underlay.close()


def apply(host: Host, wires: list[Wire], python: str, *, peers: dict[str, dict] | None = None, **network) -> list[str]:
    """Write the config for ``wires`` as the agent would, run ``agent.py --apply``; its change lines.

    ``peers``: settings to change in the config's peers, by name.
    """
    config = host_config(host, wires, **network)
    data = json.loads(json.dumps(config.to_dict()))
    for peer in data["peers"]:
        peer.update((peers or {}).get(peer["name"], {}))
    (host.state_dir / "etc/privnet/config.json").write_text(config_json(data))
    result = host.run([python, AGENT_PATH, "--apply"], check=False)
    assert result.returncode == 0, f"{host.name}: {result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr and host.keys.private_key not in result.stdout + result.stderr
    return result.stdout.splitlines()


def wait_for_operational_hello(host: Host, centiseconds: str) -> None:
    """Until the bridge shows the root's hello time ``centiseconds`` (it arrives in the root's BPDUs)."""
    deadline = time.monotonic() + CONVERGE_SECONDS
    while host.read("/sys/class/net/internet/bridge/hello_time") != centiseconds:
        assert time.monotonic() < deadline, f"{host.name} never heard the root's new hello time"
        time.sleep(0.2)


def indexes(host: Host) -> dict[str, int]:
    return {name: host.ifindex(name) for name in host.interfaces()}


def brport(host: Host, port: str, attribute: str) -> str:
    return host.read(f"/sys/class/net/{port}/brport/{attribute}")


def start_flood(source: Host, target: Host, seconds: int) -> subprocess.Popen:
    argv = ["ping", "-n", "-q", "-i", str(FLOOD_INTERVAL), "-w", str(seconds), target.overlay_ip]
    return subprocess.Popen(
        ["ip", "netns", "exec", source.netns, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def flood_result(flood: subprocess.Popen) -> tuple[int, int]:
    output, _ = flood.communicate(timeout=60)
    match = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert match, output
    return int(match.group(1)), int(match.group(2))


def test_links_come_and_go_and_change_without_disturbing_the_others(hosts: dict[str, Host], python: str,
                                                                   record_property) -> None:  # fmt: skip
    a, b, c = hosts["a"], hosts["b"], hosts["c"]
    assert a.ping(b.overlay_ip, timeout=CONVERGE_SECONDS) is not None
    assert a.ping(c.overlay_ip, timeout=CONVERGE_SECONDS) is not None
    for host in hosts.values():  # the agent finds the host exactly as up left it
        assert host.run([python, AGENT_PATH, "--diff"]).stdout.splitlines() == ["no changes"]
        assert apply(host, [AB, BC], python) == ["no changes"]
    before = {host.name: indexes(host) for host in hosts.values()}

    flood = start_flood(a, b, seconds=12)  # over link a-b, which stays forwarding (a-c costs far more)
    time.sleep(1)
    # A new link a-c: its peer first, then its VXLAN; nothing else.
    ac = Wire("a", "c", 2, cost=60000)
    started = time.monotonic()
    assert apply(a, [AB, ac, BC], python) == [
        "peer c: added (10.88.88.3/32, endpoint 192.0.2.3:56560, keepalive 0)",
        "link c: added (vni 2, remote 10.88.88.3, cost 60000)",
    ]
    record_property("apply_add_link_seconds", round(time.monotonic() - started, 3))
    assert apply(c, [AB, ac, BC], python) == [
        "peer a: added (10.88.88.1/32, endpoint 192.0.2.1:56560, keepalive 0)",
        "link a: added (vni 2, remote 10.88.88.1, cost 60000)",
    ]
    assert c.run(["ping", "-n", "-q", "-c", "1", "-W", "2", "-I", "wg0", a.underlay_ip], check=False).returncode == 0
    for host, port, peer in ((a, "c", c), (c, "a", a)):
        assert brport(host, port, "path_cost") == "60000"
        assert host.read(f"/sys/class/net/{port}/ifalias") == "privnet"
        assert host.read(f"/sys/class/net/{port}/mtu") == "1500"
        assert "tx-checksumming: off" in host.run(["ethtool", "-k", port]).stdout
        assert host.read(f"/sys/class/net/{port}/master/ifindex") == str(host.ifindex("internet"))
        assert "vxlan id 2 remote " + peer.underlay_ip in host.run(["ip", "-d", "link", "show", "dev", port]).stdout
    assert a.wireguard_peers() == {b.keys.public_key, c.keys.public_key}

    # A new cost: set on the port in place.
    ac_cheaper = Wire("a", "c", 2, cost=50000)
    index = a.ifindex("c")
    assert apply(a, [AB, ac_cheaper, BC], python) == ["link c: cost 60000 -> 50000"]
    assert brport(a, "c", "path_cost") == "50000" and a.ifindex("c") == index

    # The link goes: its VXLAN, then its peer.
    assert apply(a, [AB, BC], python) == ["link c: removed (vni 2)", "peer c: removed"]
    assert apply(c, [AB, BC], python) == ["link a: removed (vni 2)", "peer a: removed"]
    assert "c" not in a.interfaces() and a.wireguard_peers() == {b.keys.public_key}
    sent, received = flood_result(flood)
    record_property("flood_on_other_link_sent", sent)
    record_property("flood_on_other_link_lost", sent - received)
    print(f"\nping flood on a-b while a-c came, changed and went: {sent} sent, {sent - received} lost")
    assert sent > 500 and received == sent
    for host in hosts.values():  # no other interface was recreated
        assert indexes(host) == before[host.name], host.name

    # The network's STP settings change on every bridge in place; so does a VNI (that VXLAN only is
    # recreated). c is the root (lowest MAC, same priority): b and a see c's timers, not their own.
    network = {"bridge_priority": 4096, "stp_hello_time": 2, "stp_max_age": 10, "stp_forward_delay": 3}
    bc_new = Wire("b", "c", 4)
    assert apply(b, [AB, bc_new], python, **network) == [
        "bridge internet: hello time 1 s (the root's) -> 2 s",
        "bridge internet: max age 6 s (the root's) -> 10 s",
        "bridge internet: forward delay 2 s (the root's) -> 3 s",
        "bridge internet: priority 32768 -> 4096",
        "link c: recreated (vni 3 -> 4)",
    ]
    assert b.read("/sys/class/net/internet/bridge/priority") == "4096"
    assert b.read("/sys/class/net/internet/bridge/hello_time") == "200"  # b is the root now
    assert b.ifindex("internet") == before["b"]["internet"] and b.ifindex("a") == before["b"]["a"]
    assert b.ifindex("c") != before["b"]["c"]
    # c and a show b's timers once b's hellos (every 2 s now) reach them; then theirs are set
    # quietly (not readable).
    for host in (c, a):
        wait_for_operational_hello(host, "200")
    assert apply(c, [AB, bc_new], python, **network) == [
        "bridge internet: priority 32768 -> 4096",
        "link b: recreated (vni 3 -> 4)",
    ]
    assert apply(a, [AB, BC], python, **network) == ["bridge internet: priority 32768 -> 4096"]
    assert b.ping(c.overlay_ip, timeout=CONVERGE_SECONDS) is not None
    for host in hosts.values():  # whoever is the root now, its timers are the new ones
        assert host.read("/sys/class/net/internet/bridge/hello_time") == "200", host.name
        assert host.read("/sys/class/net/internet/bridge/forward_delay") == "300", host.name

    # What the agent left is what the setup script makes for the same config: run it, no changes.
    # Only /etc/privnet/up is new (the agent cannot render it), and the agent stopped above restarts.
    output = b.run_setup(setup_script(b, [AB, bc_new], **network)).stdout
    changed = [
        line
        for line in output.splitlines()
        if not line.startswith(("privnet: setting up", "privnet: no sys", "privnet: node b", "privnet: remove"))
    ]
    assert changed[0] == "privnet: wrote /etc/privnet/up" and len(changed) == 2, output
    assert changed[1].startswith("privnet: agent: started in the background"), output
    files = render_host_files(host_config(b, [AB, bc_new], **network), private_key=b.keys.private_key,
                              agent_token=b.agent_token)  # fmt: skip
    wg0_conf = next(file.content for file in files if file.path.endswith("/wg0.conf"))
    assert (b.state_dir / "etc/privnet/wg0.conf").read_text() == wg0_conf


def test_peer_endpoint_and_keepalive_follow_the_config(hosts: dict[str, Host], python: str) -> None:
    a, b, c = hosts["a"], hosts["b"], hosts["c"]
    assert a.ping(b.overlay_ip, timeout=CONVERGE_SECONDS) is not None
    # b moves to 192.0.2.12, and its peers are told while b is silent (wg0 down): WireGuard's
    # roaming, which follows a peer's authenticated packets, cannot be what moves them.
    b.run(["ip", "link", "set", "dev", "wg0", "down"])
    moved = {"b": {"endpoint": "192.0.2.12:56560"}}
    assert apply(a, [AB, BC], python, peers=moved) == ["peer b: endpoint 192.0.2.2:56560 -> 192.0.2.12:56560"]
    assert apply(c, [AB, BC], python, peers=moved) == ["peer b: endpoint 192.0.2.2:56560 -> 192.0.2.12:56560"]
    for host in (a, c):
        assert "192.0.2.12:56560" in host.run(["wg", "show", "wg0", "endpoints"]).stdout
    b.run(["ip", "addr", "del", "192.0.2.2/24", "dev", "eth0"])  # first: deleting a primary takes its secondaries
    b.run(["ip", "addr", "add", "192.0.2.12/24", "dev", "eth0"])
    b.run(["ip", "link", "set", "dev", "wg0", "up"])
    for host in (a, c):
        assert host.ping(b.overlay_ip, timeout=CONVERGE_SECONDS) is not None
        assert "192.0.2.12:56560" in host.run(["wg", "show", "wg0", "endpoints"]).stdout
    # The same config again: nothing to do.
    assert apply(a, [AB, BC], python, peers=moved) == ["no changes"]
    # A keepalive toward b.
    assert apply(c, [AB, BC], python, peers={"b": {**moved["b"], "keepalive": 25}}) == ["peer b: keepalive 0 -> 25"]
    keepalives = dict(
        line.split("\t") for line in c.run(["wg", "show", "wg0", "persistent-keepalive"]).stdout.split("\n") if line
    )
    assert keepalives[b.keys.public_key] == "25"
