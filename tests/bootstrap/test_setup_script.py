"""The rendered setup script run for real, under dash, in a few network namespaces.

Every test builds its own small lab (``netlab.Underlay``: hosts ``<prefix>-a`` … and a
``<prefix>-wan`` bridge, underlay 192.0.2.0/24) and tears it down, also on failure. STP timers
are the kernel's floors (hello 1 s, max age 6 s, forward delay 2 s): a new port forwards after
4 s. Host configs are built by hand; no app is involved: the agent the script starts runs (with
/usr/bin/python3, as on a host) and retries against an app that is not there, which is fine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import webapp.rendering
from tests.bootstrap.netlab import AGENT_PATH, Host, Underlay, Wire, fake_bin, setup_script, wait_for
from tests.conftest import require

pytestmark = pytest.mark.lab

TOOLS = ("ip", "bridge", "wg", "wireguard-go", "ethtool", "dash", "ping", "mount")
TRIANGLE = [Wire("a", "b", 1), Wire("a", "c", 2), Wire("b", "c", 3)]
CONVERGE_SECONDS = 30  # generous: 2 x forward delay is 4 s; max age + 2 x forward delay is 10 s
FORWARDING, BLOCKING = 3, 4
AGENT_PYTHON = "/usr/bin/python3"  # what privnet-agent.service runs, and up where it exists


@pytest.fixture(autouse=True)
def _lab_capable() -> None:
    require(os.geteuid() == 0, "needs root (network namespaces, mounts)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    require(not missing, f"needs {', '.join(missing)} on PATH")
    # The script installs python3-pyroute2 where it lacks; these hosts share the real /usr.
    has_pyroute2 = os.access(AGENT_PYTHON, os.X_OK) and (
        subprocess.run([AGENT_PYTHON, "-c", "import pyroute2"], capture_output=True, check=False).returncode == 0
    )
    require(has_pyroute2, f"needs {AGENT_PYTHON} with pyroute2 (apt-get install python3-pyroute2)")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Underlay]:
    """An empty underlay with a unique prefix; everything in it is removed afterwards."""
    prefix = f"ss{secrets.token_hex(3)}"
    underlay = Underlay(prefix, tmp_path / "hosts")
    try:
        yield underlay
    finally:
        underlay.close()


def make_triangle(lab: Underlay) -> dict[str, Host]:
    """a and b have public endpoints, c has none (it initiates, with keepalive)."""
    lab.add_host("a", 1)
    lab.add_host("b", 2)
    lab.add_host("c", 3, public=False)
    return lab.hosts


def setup(host: Host, wires: list[Wire], **network) -> str:
    """Run the host's freshly rendered setup script; its output, after asserting success."""
    result = host.run_setup(setup_script(host, wires, **network))
    assert result.returncode == 0, f"{host.name}: {result.stdout}\n{result.stderr}"
    return result.stdout


def assert_all_ping(hosts: list[Host], timeout: float = CONVERGE_SECONDS) -> None:
    for host in hosts:
        for other in hosts:
            if other is not host:
                assert host.ping(other.overlay_ip, timeout=timeout) is not None, f"{host.name} -> {other.name}"


def assert_agent_runs(host: Host) -> int:
    """Exactly one agent runs in ``host``, in the background with /usr/bin/python3, as its pid file says; its pid."""

    def argv_of_the_one_agent() -> list[str] | None:
        pids = host.agent_pids()
        if len(pids) != 1:
            return None
        try:  # setsid execs the interpreter a moment after up wrote the pid file
            argv = Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            return None
        return [arg.decode() for arg in argv]

    assert wait_for(lambda: argv_of_the_one_agent() == [AGENT_PYTHON, AGENT_PATH], timeout=5) is not None, (
        host.agent_pids(),
        argv_of_the_one_agent(),
    )
    (pid,) = host.agent_pids()
    assert host.read("/run/privnet/agent.pid") == str(pid)
    assert os.getsid(pid) == pid  # its own session: no terminal's hangup reaches it
    return pid


def agent_log(host: Host) -> str:
    return (host.state_dir / "run/privnet/agent.log").read_text()


def simulate_reboot(host: Host) -> None:
    """What a reboot does to the network side: processes and interfaces gone, /run emptied; /etc stays."""
    for pid in host.wireguard_go_pids() + host.agent_pids():
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not host.wireguard_go_pids() and "wg0" not in host.interfaces(), timeout=10) is not None
    assert wait_for(lambda: not host.agent_pids(), timeout=10) is not None
    for name in sorted(host.interfaces() - {"lo", "eth0"}):
        host.run(["ip", "link", "del", "dev", name])
    for path in (host.state_dir / "run/privnet").iterdir():
        path.unlink()
    assert host.interfaces() == {"lo", "eth0"}


def one_port_blocking(hosts: list[Host]) -> Callable[[], bool]:
    """True when exactly one bridge port network-wide is blocking and all others forward."""

    def settled() -> bool:
        states = [state for host in hosts for state in host.brport_states().values()]
        return states.count(BLOCKING) == 1 and states.count(FORWARDING) == len(states) - 1

    return settled


# --- the triangle ----------------------------------------------------------------------------


def test_triangle_comes_up_pings_everywhere_and_stp_blocks_exactly_one_port(lab, record_property):
    hosts = list(make_triangle(lab).values())
    scripts = {host.name: setup_script(host, TRIANGLE) for host in hosts}
    timings: dict[str, dict[str, float]] = {}
    outputs: dict[str, str] = {}
    failures: list[str] = []

    def bring_up(host: Host) -> None:
        # What a user does on each host at about the same time: curl … | sudo sh, then ping.
        start = time.monotonic()
        result = host.run_setup(scripts[host.name])
        done = time.monotonic() - start
        if result.returncode != 0:
            failures.append(f"{host.name}: {result.stdout}\n{result.stderr}")
            return
        outputs[host.name] = result.stdout
        neighbour = next(other for other in hosts if other is not host)
        replied = host.ping(neighbour.overlay_ip, timeout=CONVERGE_SECONDS)
        timings[host.name] = {"script": done, "first_ping": (time.monotonic() - start) if replied else -1}

    threads = [threading.Thread(target=bring_up, args=(host,)) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert all(timing["first_ping"] > 0 for timing in timings.values()), timings
    for name, timing in sorted(timings.items()):
        record_property(f"{name}_script_seconds", round(timing["script"], 2))
        record_property(f"{name}_first_overlay_ping_seconds", round(timing["first_ping"], 2))
    print(f"\nsetup script and first overlay ping, seconds from script start (STP 1/6/2 s): {timings}")

    assert_all_ping(hosts)
    # Hosts that start together may open their tunnels after the ports forward (a handshake to a
    # peer not yet listening is retried after 5 s): STP then breaks the loop once BPDUs pass.
    settled_after = wait_for(one_port_blocking(hosts), timeout=CONVERGE_SECONDS)
    assert settled_after is not None, {host.name: host.brport_states() for host in hosts}
    record_property("stp_one_port_blocking_seconds_after_pings", round(settled_after, 2))
    time.sleep(2)  # and it stays so
    states = {(host.name, port): state for host in hosts for port, state in host.brport_states().items()}
    assert len(states) == 6, states
    assert list(states.values()).count(BLOCKING) == 1, states
    assert list(states.values()).count(FORWARDING) == 5, states

    for host in hosts:  # what up made, as the kernel sees it
        others = {other.name for other in hosts if other is not host}
        assert set(host.brport_states()) == others
        assert host.wireguard_peers() == {other.keys.public_key for other in hosts if other is not host}
        for port in others:
            assert host.read(f"/sys/class/net/{port}/mtu") == "1500"
            assert "tx-checksumming: off" in host.run(["ethtool", "-k", port]).stdout
        assert host.read("/sys/class/net/internet/bridge/forward_delay") == "200"
        assert host.read("/sys/class/net/internet/bridge/stp_state") == "1"
        modes = host.run(["stat", "-c", "%a", "/etc/privnet", "/etc/privnet/private.key", "/etc/privnet/agent.token"])
        assert modes.stdout.split() == ["700", "600", "600"]
    # The agent runs on every host, started by up (no systemd here), and keeps running.
    agents = {}
    for host in hosts:
        assert "privnet: agent: started in the background (pid " in outputs[host.name], outputs[host.name]
        assert "privnet: wrote /etc/privnet/agent.py" in outputs[host.name]
        assert host.run(["stat", "-c", "%a", AGENT_PATH]).stdout.strip() == "755"
        agents[host.name] = assert_agent_runs(host)
        assert "agent 0.1.0 started" in agent_log(host)

    # c has no endpoint: a and b know it only from its handshakes, and it keeps the tunnels open.
    c_conf = lab.hosts["a"].read("/etc/privnet/wg0.conf")
    assert "Endpoint = 192.0.2.2:56560" in c_conf and "192.0.2.3" not in c_conf

    # Run again: nothing changes, and it says so; the links keep working, the same agents run.
    indexes = {host.name: {name: host.ifindex(name) for name in host.interfaces()} for host in hosts}
    for host in hosts:
        output = setup(host, TRIANGLE)
        assert "privnet: no changes" in output, output
        assert f"node {host.name} was already set up: nothing changed" in output, output
        assert "wrote" not in output and "created" not in output and "agent:" not in output
        assert {port: host.ifindex(port) for port in indexes[host.name]} == indexes[host.name]
        assert host.agent_pids() == [agents[host.name]]
    assert_all_ping(hosts, timeout=5)


def test_removing_a_link_removes_its_vxlan_and_peer_and_traffic_goes_around(lab):
    hosts = make_triangle(lab)
    for host in hosts.values():
        setup(host, TRIANGLE)
    assert_all_ping(list(hosts.values()))
    a, b, c = hosts["a"], hosts["b"], hosts["c"]
    c_index = c.ifindex("a")

    without_ab = [wire for wire in TRIANGLE if {wire.a, wire.b} != {"a", "b"}]
    output_a, output_b = setup(a, without_ab), setup(b, without_ab)
    assert "privnet: b: removed VXLAN (its link is gone)" in output_a
    assert "privnet: a: removed VXLAN (its link is gone)" in output_b
    assert "privnet: wg0: applied /etc/privnet/wg0.conf (1 peers)" in output_a
    assert "b" not in a.interfaces() and "a" not in b.interfaces()
    assert a.wireguard_peers() == {c.keys.public_key}
    assert b.wireguard_peers() == {c.keys.public_key}
    assert set(a.brport_states()) == {"c"} and set(b.brport_states()) == {"c"}
    assert c.ifindex("a") == c_index  # c was not touched
    assert a.ping(b.overlay_ip, timeout=CONVERGE_SECONDS) is not None  # a - c - b
    assert b.ping(a.overlay_ip, timeout=5) is not None

    # And back: re-adding the link converges again.
    output_a = setup(a, TRIANGLE)
    assert "privnet: b: created VXLAN" in output_a
    setup(b, TRIANGLE)
    assert wait_for(one_port_blocking(list(hosts.values())), timeout=CONVERGE_SECONDS) is not None


def test_changes_in_place_only_where_needed(lab):
    a, b = lab.add_host("a", 1), lab.add_host("b", 2)
    wire = [Wire("a", "b", 5)]
    setup(a, wire)
    setup(b, wire)
    assert a.ping(b.overlay_ip, timeout=CONVERGE_SECONDS) is not None
    vxlan, bridge = a.ifindex("b"), a.ifindex("internet")

    # A new cost is set on the port; the VXLAN stays.
    output = setup(a, [Wire("a", "b", 5, cost=250)])
    assert "privnet: b: cost 100 -> 250" in output
    assert "created" not in output and "removed" not in output
    assert a.read("/sys/class/net/b/brport/path_cost") == "250"
    assert a.ifindex("b") == vxlan

    # New STP timers and priority are set on the bridge in place.
    network = {"stp_hello_time": 2, "stp_forward_delay": 3, "stp_max_age": 10, "bridge_priority": 4096}
    output = setup(a, [Wire("a", "b", 5, cost=250)], **network)
    for line in ("hello_time 100 -> 200", "forward_delay 200 -> 300", "max_age 600 -> 1000", "priority 32768 -> 4096"):
        assert f"privnet: internet: {line}" in output
    assert a.ifindex("internet") == bridge and a.ifindex("b") == vxlan
    assert a.read("/sys/class/net/internet/bridge/priority") == "4096"
    assert a.read("/sys/class/net/internet/bridge/hello_time") == "200"

    # A new VNI recreates the VXLAN on both ends, and the wire works again.
    output = setup(a, [Wire("a", "b", 9)])
    assert "privnet: b: recreated VXLAN (id 5 remote 10.88.88.2 local 10.88.88.1 dstport 4789 -> id 9" in output
    setup(b, [Wire("a", "b", 9)])
    assert a.ping(b.overlay_ip, timeout=CONVERGE_SECONDS) is not None

    # A renamed bridge replaces the old one; the VXLAN moves over to it.
    output = setup(a, [Wire("a", "b", 9)], bridge_name="lan")
    assert "privnet: internet: removed bridge (this network's bridge is lan now)" in output
    assert "privnet: lan: created bridge" in output and "privnet: b: port of lan" in output
    assert "internet" not in a.interfaces() and a.read("/sys/class/net/b/master/ifindex") == str(a.ifindex("lan"))
    assert a.ping(b.overlay_ip, timeout=CONVERGE_SECONDS) is not None


def test_reboot_brings_the_host_back(lab):
    hosts = make_triangle(lab)
    for host in hosts.values():
        setup(host, TRIANGLE)
    assert_all_ping(list(hosts.values()))
    c = hosts["c"]
    before = assert_agent_runs(c)

    # A reboot, as far as the network goes: processes and interfaces gone, /run empty, files stay.
    simulate_reboot(c)

    output = c.run(["/etc/privnet/up"]).stdout  # ExecStart of privnet.service; rc.local without systemd
    assert "privnet: wg0: created (wireguard-go)" in output
    assert "privnet: internet: created bridge" in output
    assert "privnet: a: created VXLAN" in output and "privnet: b: created VXLAN" in output
    assert "privnet: agent: started in the background (pid " in output  # up brings the agent back
    assert assert_agent_runs(c) != before
    for other in (hosts["a"], hosts["b"]):
        assert c.ping(other.overlay_ip, timeout=CONVERGE_SECONDS) is not None
        assert other.ping(c.overlay_ip, timeout=5) is not None
    assert "privnet: no changes" in c.run(["/etc/privnet/up"]).stdout


def test_down_and_uninstall_leave_no_trace(lab):
    a, b = lab.add_host("a", 1), lab.add_host("b", 2)
    for host in (a, b):
        setup(host, [Wire("a", "b", 1)])
    assert a.ping(b.overlay_ip, timeout=CONVERGE_SECONDS) is not None

    agent = assert_agent_runs(a)

    output = a.run(["/etc/privnet/down"]).stdout
    assert f"privnet: agent: stopped (pid {agent})" in output
    assert "privnet: b: removed VXLAN" in output and "privnet: internet: removed bridge" in output
    assert a.interfaces() == {"lo", "eth0"} and not a.wireguard_go_pids() and not a.agent_pids()
    assert not (a.state_dir / "run/privnet/agent.pid").exists()
    output = a.run(["/etc/privnet/up"]).stdout  # up undoes down
    assert "privnet: wg0: created" in output and "privnet: agent: started in the background" in output
    assert_agent_runs(a)

    for host in (a, b):
        output = host.run(["/etc/privnet/uninstall"]).stdout
        assert "privnet: agent: stopped (pid " in output
        assert "privnet: removed /etc/privnet" in output
        assert host.interfaces() == {"lo", "eth0"}
        assert not host.agent_pids()
        assert wait_for(lambda host=host: not host.wireguard_go_pids(), timeout=5) is not None
        for private in ("etc/privnet", "run/privnet", "run/wireguard", "etc/systemd/system"):
            assert list((host.state_dir / private).iterdir()) == [], private
        assert host.run(["ip", "-o", "addr", "show", "dev", "eth0"]).stdout.count("inet ") == 1


# --- single hosts: installing, systemd, refusals, other shells -------------------------------

APT_GET = """#!/bin/sh
echo "apt-get $*" >>"$FAKE_LOG"
case "$*" in
    *install*ethtool*) ln -s "$REAL_ETHTOOL" "$(dirname "$0")/ethtool" ;;
esac
"""

SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >>"$FAKE_LOG"
for unit; do :; done  # the last argument
state="$(dirname "$0")/state.$unit"
case "$1" in
    is-enabled) [ -e "$state.enabled" ] ;;
    is-active) [ -e "$state.active" ] ;;
    enable) touch "$state.enabled" ;;
    start | restart) touch "$state.active" ;;
    stop) rm -f "$state.active" ;;
    disable) rm -f "$state.enabled" "$state.active"; [ "$unit" != privnet.service ] || /etc/privnet/down ;;
esac
"""


def run_single(host: Host, wires: list[Wire], env: dict[str, str] | None = None, argv=("dash", "-s")):
    return host.run_setup(setup_script(host, wires), argv=argv, env=env)


def test_installs_what_is_missing_with_apt_get_then_skips_it(lab, tmp_path):
    host = lab.add_host("a", 1)
    log = tmp_path / "fake.log"
    bin_dir = fake_bin(tmp_path / "bin", hide=("ethtool", "dnf", "apk", "xbps-install"), fakes={"apt-get": APT_GET})
    env = {"PATH": str(bin_dir), "FAKE_LOG": str(log), "REAL_ETHTOOL": shutil.which("ethtool")}
    result = run_single(host, [], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert log.read_text().splitlines() == [
        "apt-get -q update",
        "apt-get -q install -y --no-install-recommends ethtool",
    ]
    assert "privnet: installed ethtool" in result.stdout
    result = run_single(host, [], env=env)
    assert result.returncode == 0 and "nothing changed" in result.stdout
    assert len(log.read_text().splitlines()) == 2  # present now: not installed again


def test_with_systemd_the_units_are_installed_enabled_and_started(lab, tmp_path, monkeypatch):
    host = lab.add_host("a", 1)
    (host.state_dir / "run/systemd/system").mkdir(parents=True)  # what systemd-booted hosts have
    log = tmp_path / "fake.log"
    bin_dir = fake_bin(tmp_path / "bin", fakes={"systemctl": SYSTEMCTL})
    env = {"PATH": str(bin_dir), "FAKE_LOG": str(log)}

    def new_calls() -> list[str]:
        lines = log.read_text().splitlines() if log.exists() else []
        fresh = lines[new_calls.seen :]
        new_calls.seen = len(lines)
        return fresh

    new_calls.seen = 0
    result = run_single(host, [], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "privnet: wrote /etc/systemd/system/privnet.service" in result.stdout
    assert "privnet: wrote /etc/systemd/system/privnet-agent.service" in result.stdout
    assert "no systemd" not in result.stdout
    unit = (host.state_dir / "etc/systemd/system/privnet.service").read_text()
    assert "ExecStart=/etc/privnet/up\n" in unit and "ExecStop=/etc/privnet/down\n" in unit
    agent_unit = (host.state_dir / "etc/systemd/system/privnet-agent.service").read_text()
    assert f"ExecStart={AGENT_PYTHON} {AGENT_PATH}\n" in agent_unit and "Restart=always\n" in agent_unit
    assert new_calls() == [
        "systemctl daemon-reload",
        "systemctl is-enabled --quiet privnet.service",
        "systemctl enable --quiet privnet.service",
        "systemctl is-enabled --quiet privnet-agent.service",
        "systemctl enable --quiet privnet-agent.service",
        "systemctl is-active --quiet privnet.service",
        "systemctl start privnet.service",
        "systemctl is-active --quiet privnet-agent.service",
        "systemctl start privnet-agent.service",
    ]
    assert not host.agent_pids()  # systemd runs the agent here, not up

    result = run_single(host, [], env=env)
    assert "nothing changed" in result.stdout, result.stdout
    calls = new_calls()
    assert not [call for call in calls if not call.startswith(("systemctl is-enabled", "systemctl is-active"))], calls

    # A new agent: written, and the running one restarted.
    changed_agent = tmp_path / "agent.py"
    changed_agent.write_text(webapp.rendering.AGENT_SOURCE.read_text() + "# a new version\n")
    monkeypatch.setattr(webapp.rendering, "AGENT_SOURCE", changed_agent)
    result = run_single(host, [], env=env)
    assert "privnet: wrote /etc/privnet/agent.py" in result.stdout
    assert "privnet: restarted privnet-agent.service (new agent or unit)" in result.stdout
    assert "systemctl restart privnet-agent.service" in new_calls()

    # down (ExecStop of privnet.service, or by hand) stops the agent; up starts it again.
    output = host.run(["/etc/privnet/down"], env=env).stdout
    assert "privnet: agent: stopping privnet-agent.service" in output
    assert "systemctl stop --no-block privnet-agent.service" in new_calls()
    output = host.run(["/etc/privnet/up"], env=env).stdout
    assert "privnet: agent: starting privnet-agent.service" in output
    assert "systemctl start --no-block privnet-agent.service" in new_calls()

    result = host.run(["/etc/privnet/uninstall"], env=env)
    calls = new_calls()
    assert "systemctl disable --now privnet-agent.service" in calls
    assert "systemctl disable --now privnet.service" in calls
    assert "privnet: removed /etc/systemd/system/privnet-agent.service" in result.stdout
    assert list((host.state_dir / "etc/systemd/system").iterdir()) == []
    assert host.interfaces() == {"lo", "eth0"}


def test_without_systemd_it_says_so_and_no_peers_is_fine(lab):
    host = lab.add_host("solo", 1)
    result = run_single(host, [])
    assert result.returncode == 0, result.stderr
    assert "privnet: no systemd: run /etc/privnet/up at boot yourself (e.g. from rc.local)" in result.stdout
    assert "privnet: no systemd: the agent runs in the background" in result.stdout
    assert not (host.state_dir / "etc/systemd/system/privnet.service").exists()
    assert host.interfaces() == {"lo", "eth0", "wg0", "internet"}
    assert_agent_runs(host)
    assert "nothing changed" in run_single(host, []).stdout


def test_without_systemd_a_new_agent_is_restarted_and_a_dead_one_started_by_up(lab, tmp_path, monkeypatch):
    host = lab.add_host("solo", 1)
    assert run_single(host, []).returncode == 0
    first = assert_agent_runs(host)
    # The agent is alive and talking: it fails to reach the (absent) app, logs it and retries.
    assert wait_for(lambda: "report failed (cannot reach the app" in agent_log(host), timeout=30) is not None
    assert host.agent_pids() == [first]

    changed_agent = tmp_path / "agent.py"
    changed_agent.write_text(webapp.rendering.AGENT_SOURCE.read_text() + "# a new version\n")
    monkeypatch.setattr(webapp.rendering, "AGENT_SOURCE", changed_agent)
    output = run_single(host, []).stdout
    assert "privnet: wrote /etc/privnet/agent.py" in output
    second = assert_agent_runs(host)
    assert f"privnet: agent: restarted with the new /etc/privnet/agent.py (pid {second})" in output
    assert second != first and first not in host.agent_pids()
    assert host.read(AGENT_PATH) == changed_agent.read_text().strip()

    os.kill(second, signal.SIGKILL)  # it died (it never exits by itself): up starts a new one
    assert wait_for(lambda: not host.agent_pids(), timeout=5) is not None
    output = host.run(["/etc/privnet/up"]).stdout
    assert "privnet: agent: started in the background (pid " in output
    assert assert_agent_runs(host) != second
    assert "privnet: no changes" in host.run(["/etc/privnet/up"]).stdout


def test_runs_under_busybox_sh(lab):
    if shutil.which("busybox") is None:
        pytest.skip("busybox is not installed")
    a, b = lab.add_host("a", 1), lab.add_host("b", 2)
    for host in (a, b):
        result = host.run_setup(setup_script(host, [Wire("a", "b", 1)]), argv=("busybox", "sh", "-s"))
        assert result.returncode == 0, result.stdout + result.stderr
    assert a.ping(b.overlay_ip, timeout=CONVERGE_SECONDS) is not None


def test_refuses_to_replace_an_interface_it_did_not_make(lab):
    a = lab.add_host("a", 1)
    lab.add_host("b", 2)
    # Explicit "name" (a bare "b" reads as "broadcast"); a veth, as this kernel has no dummy module.
    a.run(["ip", "link", "add", "name", "b", "type", "veth", "peer", "name", "b-peer"])
    result = a.run_setup(setup_script(a, [Wire("a", "b", 1)]))
    assert result.returncode != 0
    assert "b exists and is not a VXLAN: privnet will not replace it" in result.stderr
    assert "b" in a.interfaces() and "veth" in a.run(["ip", "-d", "link", "show", "dev", "b"]).stdout
