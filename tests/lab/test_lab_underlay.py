"""The lab without the app: namespaces, private mounts, wireguard-go, NAT, and a clean `down`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.app import REPO_ROOT
from lab.core import Lab, lab_namespaces_present
from lab.netns import namespace_pids
from lab.testing import lab_fixture, require_lab, running_lab, unique_prefix

pytestmark = [pytest.mark.lab, require_lab()]

triangle = lab_fixture("triangle", app=False)
blog = lab_fixture("blog", app=False)

WG_PORT = 51820


def live_pids(pids: list[int]) -> list[int]:
    """The pids that still name a process that is not a zombie."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            alive.append(pid)
    return alive


def mounts_mentioning(text: str) -> list[str]:
    """Lines of every process's mountinfo that mention `text` (our own first)."""
    found = []
    for mountinfo in [Path("/proc/self/mountinfo"), *Path("/proc").glob("[0-9]*/mountinfo")]:
        try:
            found += [line for line in mountinfo.read_text().splitlines() if text in line]
        except OSError:  # gone meanwhile, or a zombie (EINVAL)
            continue
    return found


def pids_named(name: str) -> list[int]:
    result = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False)
    return live_pids([int(pid) for pid in result.stdout.split()])


def make_key(lab: Lab, host: str) -> str:
    """A new WireGuard private key in the host's /etc/wireguard/private; its public key."""
    lab.run(host, ["sh", "-c", "umask 077; wg genkey > /etc/wireguard/private"])
    return lab.run(host, ["sh", "-c", "wg pubkey < /etc/wireguard/private"]).stdout.strip()


def start_wireguard(lab: Lab, host: str, address: str, peers: dict[str, tuple[str, str]]) -> None:
    """wireguard-go wg0 in `host` from a hand-written config; peers: name -> (public key, underlay ip)."""
    private_key = (lab.host_dir(host) / "etc/wireguard/private").read_text().strip()
    config = f"[Interface]\nPrivateKey = {private_key}\nListenPort = {WG_PORT}\n"
    for peer, (key, underlay_ip) in peers.items():
        endpoint = f"{lab.state['hosts'][peer]['public_ip']}:{WG_PORT}"
        config += f"\n[Peer]\nPublicKey = {key}\nAllowedIPs = {underlay_ip}/32\nEndpoint = {endpoint}\n"
    (lab.host_dir(host) / "etc/wireguard/wg0.conf").write_text(config)
    lab.run(host, ["wireguard-go", "wg0"])
    lab.run(host, ["wg", "setconf", "wg0", "/etc/wireguard/wg0.conf"])
    lab.run(host, ["ip", "addr", "add", f"{address}/24", "dev", "wg0"])
    lab.run(host, ["ip", "link", "set", "wg0", "up"])


def test_hosts_have_their_own_private_dirs(triangle):
    triangle.run("a", ["sh", "-c", "echo a > /run/wireguard/marker; echo a > /etc/privnet/marker"])
    assert triangle.run("a", ["cat", "/run/wireguard/marker"]).stdout == "a\n"
    for other in ("b", "control"):
        assert triangle.run(other, ["ls", "-A", "/run/wireguard", "/etc/privnet"]).stdout.split() == [
            "/etc/privnet:",
            "/run/wireguard:",
        ]
    assert not Path("/run/wireguard/marker").exists()
    assert not Path("/etc/privnet/marker").exists()
    assert (triangle.host_dir("a") / "run/wireguard/marker").read_text() == "a\n"


def test_hosts_see_no_systemd(triangle):
    listing = triangle.run("a", ["ls", "-A", "/run/systemd", "/etc/systemd/system"]).stdout.split()
    assert listing == ["/etc/systemd/system:", "/run/systemd:"]


def test_nothing_of_a_host_is_mounted_in_the_initial_namespace(triangle):
    own_mounts = Path("/proc/self/mountinfo").read_text()
    assert str(triangle.state_dir) not in own_mounts


def test_two_wireguard_go_wg0_coexist_and_handshake(triangle):
    underlay = {"a": "10.88.88.1", "b": "10.88.88.2"}
    keys = {host: make_key(triangle, host) for host in underlay}
    start_wireguard(triangle, "a", underlay["a"], {"b": (keys["b"], underlay["b"])})
    start_wireguard(triangle, "b", underlay["b"], {"a": (keys["a"], underlay["a"])})
    for host in underlay:
        assert (triangle.host_dir(host) / "run/wireguard/wg0.sock").is_socket()
        assert triangle.run(host, ["wg", "show", "wg0", "public-key"]).stdout.strip() == keys[host]
    triangle.run("a", ["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", underlay["b"]])
    peer, handshake = triangle.run("a", ["wg", "show", "wg0", "latest-handshakes"]).stdout.split()
    assert peer == keys["b"] and int(handshake) > 0


def test_reboot_forgets_processes_interfaces_and_run_but_keeps_etc(blog):
    make_key(blog, "vorke")
    start_wireguard(blog, "vorke", "10.88.88.3", {})
    assert (blog.host_dir("vorke") / "run/wireguard/wg0.sock").exists()
    blog.reboot("vorke")
    assert not namespace_pids(blog.netns("vorke"))
    links = blog.run("vorke", ["ip", "-br", "link"]).stdout.split("\n")
    assert sorted(line.split()[0].split("@")[0] for line in links if line) == ["eth0", "lo"]
    assert not list((blog.host_dir("vorke") / "run/wireguard").iterdir())
    assert (blog.host_dir("vorke") / "etc/wireguard/wg0.conf").exists()
    blog.run("vorke", ["ping", "-n", "-q", "-c", "1", "-W", "2", blog.state["control"]["wan_ip"]])


def test_nat_host_reaches_out_but_nobody_reaches_in(blog):
    bob, pi0 = blog.state["hosts"]["bob"], blog.state["hosts"]["pi0"]
    blog.run("pi0", ["ping", "-n", "-q", "-c", "1", "-W", "2", bob["wan_ip"]])
    # bob sees pi0's packets coming from the NAT router's public address.
    listener = blog.popen(
        "bob",
        [sys.executable, "-c", RECEIVE_ONE_DATAGRAM, bob["wan_ip"], "9999"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        blog.run("pi0", [sys.executable, "-c", SEND_DATAGRAMS, bob["wan_ip"], "9999"])
        sender = listener.communicate(timeout=10)[0].strip()
    finally:
        listener.kill()
        listener.wait()
    assert sender == pi0["public_ip"]
    # Nothing reaches pi0 first: no route, and with one through its NAT router the router drops it.
    assert blog.run("bob", ["ping", "-n", "-q", "-c", "1", "-W", "1", pi0["wan_ip"]], check=False).returncode != 0
    blog.run("bob", ["ip", "route", "add", "198.51.100.0/24", "via", pi0["public_ip"]])
    try:
        assert blog.run("bob", ["ping", "-n", "-q", "-c", "1", "-W", "1", pi0["wan_ip"]], check=False).returncode != 0
    finally:
        blog.run("bob", ["ip", "route", "del", "198.51.100.0/24"])


RECEIVE_ONE_DATAGRAM = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(8)
print(s.recvfrom(100)[1][0], flush=True)
"""
SEND_DATAGRAMS = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(40):
    s.sendto(b"hello", (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.025)
"""


def test_control_reaches_every_public_host(blog):
    for host in blog.state["hosts"].values():
        if not host["nat"]:
            blog.run("control", ["ping", "-n", "-q", "-c", "1", "-W", "2", host["wan_ip"]])


def assert_nothing_left(prefix: str, state_dir: Path, pids: list[int]) -> None:
    assert not lab_namespaces_present(prefix)
    assert not list(Path("/run/netns").glob(f"{prefix}-*"))
    assert not live_pids(pids)
    assert not mounts_mentioning(str(state_dir))
    assert not state_dir.exists()


def test_down_leaves_nothing():
    with running_lab("blog", app=False) as lab:
        for host, address in (("rho", "10.88.88.2"), ("pi0", "10.88.88.5")):
            make_key(lab, host)
            start_wireguard(lab, host, address, {})
        lab.popen("control", ["sleep", "600"], start_new_session=True)
        lab.popen("nat-pi0", ["sleep", "600"], start_new_session=True)
        pids = [pid for netns in lab.state["namespaces"] for pid in namespace_pids(netns)]
        wireguard = set(pids_named("wireguard-go")) & set(pids)
        assert len(wireguard) == 2
        assert mounts_mentioning(str(lab.state_dir))  # the binds exist while wireguard-go runs
        prefix, state_dir = lab.prefix, lab.state_dir
    assert_nothing_left(prefix, state_dir, pids)
    assert not set(pids_named("wireguard-go")) & wireguard


def test_down_after_a_failed_up(monkeypatch):
    def broken_nat(self, host, public_ip):
        self._add_namespace(f"nat-{host}")
        raise RuntimeError("boom")

    monkeypatch.setattr(Lab, "_build_nat", broken_nat)
    lab = Lab(unique_prefix())
    with pytest.raises(RuntimeError, match="boom"), running_lab("blog", prefix=lab.prefix, app=False):
        pass
    assert_nothing_left(lab.prefix, lab.state_dir, [])


def test_down_when_interrupted():
    with pytest.raises(KeyboardInterrupt), running_lab("triangle", app=False) as lab:
        lab.popen("a", ["sleep", "600"], start_new_session=True)
        raise KeyboardInterrupt
    assert_nothing_left(lab.prefix, lab.state_dir, [])


def test_down_is_idempotent():
    lab = Lab(unique_prefix())
    lab.down()
    lab.down()
    assert not lab.exists


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=check
    )


def test_command_line_up_status_exec_down():
    prefix = unique_prefix()
    try:
        up = cli("--prefix", prefix, "up", "triangle", "--no-app")
        assert json.loads(up.stdout)["hosts"]["a"]["wan_ip"] == "192.0.2.1"
        status = json.loads(cli("status", "--prefix", prefix).stdout)
        assert status["hosts"]["c"] == {
            "netns": f"{prefix}-c",
            "wan_ip": "192.0.2.3",
            "public_ip": "192.0.2.3",
            "underlay_ip": None,
            "overlay_ip": None,
            "nat": False,
            "nat_netns": None,
        }
        addresses = cli("--prefix", prefix, "exec", "b", "--", "ip", "-4", "-br", "addr", "show", "eth0").stdout
        assert "192.0.2.2/24" in addresses
        cli("--prefix", prefix, "exec", "a", "--", "ping", "-n", "-q", "-c", "1", "-W", "2", "192.0.2.254")
        missing = cli("--prefix", prefix, "exec", "nosuchhost", "--", "true", check=False)
        assert missing.returncode == 1 and "no host 'nosuchhost'" in missing.stderr
        again = cli("--prefix", prefix, "up", "triangle", "--no-app", check=False)
        assert again.returncode == 1 and "exists already" in again.stderr
    finally:
        cli("--prefix", prefix, "down")
    assert_nothing_left(prefix, Path(f"/run/privnet-lab/{prefix}"), [])


FAIL_HALF_WAY = """
import sys
from lab import core
from lab.__main__ import main

def broken_nat(self, host, public_ip):
    self._add_namespace(f"nat-{host}")
    raise core.LabError("broken on purpose")

core.Lab._build_nat = broken_nat
sys.exit(main(sys.argv[1:]))
"""


def test_command_line_up_cleans_up_when_it_fails_half_way():
    prefix = unique_prefix()
    result = subprocess.run(
        [sys.executable, "-c", FAIL_HALF_WAY, "--prefix", prefix, "up", "blog", "--no-app"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "broken on purpose" in result.stderr
    assert_nothing_left(prefix, Path(f"/run/privnet-lab/{prefix}"), [])


def test_command_line_refuses_unknown_topology():
    prefix = unique_prefix()
    result = cli("--prefix", prefix, "up", "/nonexistent/topology.toml", check=False)
    assert result.returncode == 1 and "no topology file" in result.stderr
    assert_nothing_left(prefix, Path(f"/run/privnet-lab/{prefix}"), [])
