"""A few lab hosts in network namespaces, for running rendered setup scripts (no app involved).

Each host is a namespace with private mounts (``lab.netns``) and an ``eth0`` veth to a bridge in
a ``<prefix>-wan`` namespace: the underlay 192.0.2.0/24 exists only inside namespaces. Configs
are built by hand as ``HostConfig`` objects, keys from ``webapp.keys.generate_keypair``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from lab.netns import add_namespace, delete_namespace, namespace_pids, run_in_host
from webapp.hostconfig import HostConfig, LinkConfig, PeerConfig
from webapp.keys import KeyPair, generate_keypair
from webapp.rendering import render_setup_script

WAN_PREFIX = "192.0.2"
AGENT_PATH = "/etc/privnet/agent.py"
LISTEN_PORT = 56560
# The kernel's floors with STP on: a new port forwards after 2 x forward delay = 4 s.
FAST_STP = {"stp_hello_time": 1, "stp_max_age": 6, "stp_forward_delay": 2}


@dataclass
class Host:
    """One lab host: a network namespace, its state directory and its node's identity."""

    name: str
    number: int  # 192.0.2.N, 10.88.88.N, 10.99.99.N
    netns: str
    state_dir: Path
    public: bool  # has an Endpoint others can reach
    lab_hosts: dict[str, Host] = field(repr=False)  # all hosts of its lab, by name (itself included)
    keys: KeyPair = field(default_factory=generate_keypair)
    agent_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def wan_ip(self) -> str:
        return f"{WAN_PREFIX}.{self.number}"

    @property
    def underlay_ip(self) -> str:
        return f"10.88.88.{self.number}"

    @property
    def overlay_ip(self) -> str:
        return f"10.99.99.{self.number}"

    @property
    def endpoint(self) -> str | None:
        return f"{self.wan_ip}:{LISTEN_PORT}" if self.public else None

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run ``argv`` in this host (private mounts); captured text, check=True by default."""
        return run_in_host(self.netns, self.state_dir, argv, **kwargs)

    def sh(self, script: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(["sh", "-c", script], **kwargs)

    def read(self, path: str) -> str:
        return self.run(["cat", path]).stdout.strip()

    def run_setup(self, script: str, *, argv: tuple[str, ...] = ("dash", "-s"), env: dict | None = None):
        """Feed the script to dash on standard input, as ``curl … | sudo sh`` does."""
        return self.run(list(argv), input=script, check=False, env=env, timeout=120)

    def ping(self, address: str, *, timeout: float = 20) -> float | None:
        """Seconds until ``address`` first answered a ping (one try every ~0.2 s), or None after ``timeout``."""
        # One ping per try: a single ``ping -c 1 -w`` gives up at the first error (an ARP
        # failure while STP still has the ports listening).
        loop = (
            "end=$(($(date +%s) + $2)); "
            'until ping -n -q -c 1 -W 0.2 "$1" >/dev/null 2>&1; do [ "$(date +%s)" -lt "$end" ] || exit 1; done'
        )
        start = time.monotonic()
        result = self.run(["sh", "-c", loop, "sh", address, str(int(timeout))], check=False, timeout=timeout + 10)
        return time.monotonic() - start if result.returncode == 0 else None

    def brport_states(self) -> dict[str, int]:
        """STP state of each bridge port: 0 disabled, 1 listening, 2 learning, 3 forwarding, 4 blocking."""
        script = 'for p in /sys/class/net/*/brport/state; do if [ -e "$p" ]; then echo "$p" "$(cat "$p")"; fi; done'
        lines = [line.split() for line in self.sh(script).stdout.splitlines()]
        return {path.split("/")[4]: int(state) for path, state in lines}

    def ifindex(self, name: str) -> int:
        return int(self.read(f"/sys/class/net/{name}/ifindex"))

    def wireguard_peers(self) -> set[str]:
        return set(self.run(["wg", "show", "wg0", "peers"]).stdout.split())

    def interfaces(self) -> set[str]:
        return set(self.sh("ls /sys/class/net").stdout.split())

    def agent_pids(self) -> list[int]:
        """Processes in this host's network namespace that run the installed agent (not zombies)."""
        pids = []
        for pid in namespace_pids(self.netns):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if AGENT_PATH.encode() in argv:
                pids.append(pid)
        return pids

    def wireguard_go_pids(self) -> list[int]:
        """wireguard-go processes in this host's network namespace."""
        pids = []
        for pid in namespace_pids(self.netns):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "wireguard-go":
                    pids.append(pid)
            except FileNotFoundError:
                continue
        return pids


@dataclass(frozen=True)
class Wire:
    """A link between two hosts, by name."""

    a: str
    b: str
    vni: int
    cost: int = 100


def host_config(host: Host, wires: list[Wire], **network) -> HostConfig:
    """``host``'s desired state, as ``build_host_config`` would make it for these links."""
    peers, links = [], []
    for wire in sorted((w for w in wires if host.name in (w.a, w.b)), key=lambda w: w.b if w.a == host.name else w.a):
        peer = host.lab_hosts[wire.b if wire.a == host.name else wire.a]
        peers.append(
            PeerConfig(
                name=peer.name,
                public_key=peer.keys.public_key,
                allowed_ip=f"{peer.underlay_ip}/32",
                endpoint=peer.endpoint,
                keepalive=None if host.public and peer.public else 25,
            )
        )
        links.append(
            LinkConfig(name=peer.name, vni=wire.vni, local=host.underlay_ip, remote=peer.underlay_ip, cost=wire.cost)
        )
    settings = {
        "network": "privnet",
        "app_url": "http://192.0.2.254:8000",
        "listen_port": LISTEN_PORT,
        "underlay_prefix": 24,
        "overlay_prefix": 24,
        "bridge_name": "internet",
        "bridge_priority": 32768,
        "vxlan_port": 4789,
        "mtu": 1500,
        "report_interval": 10,
        **FAST_STP,
        **network,
    }
    config = HostConfig(
        node=host.name,
        underlay_ip=host.underlay_ip,
        overlay_ip=host.overlay_ip,
        peers=tuple(peers),
        links=tuple(links),
        **settings,
    )
    data = {key: value for key, value in config.to_dict().items() if key != "version"}
    return replace(config, version=hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16])


def setup_script(host: Host, wires: list[Wire], **network) -> str:
    """The host's setup script for a network of these links (``network`` overrides settings)."""
    config = host_config(host, wires, **network)
    return render_setup_script(config, private_key=host.keys.private_key, agent_token=host.agent_token)


class Underlay:
    """``<prefix>-wan`` (a bridge) and one namespace per host wired to it; ``close`` removes all."""

    def __init__(self, prefix: str, root: Path) -> None:
        self.prefix = prefix
        self.root = root
        self.wan = f"{prefix}-wan"
        self.hosts: dict[str, Host] = {}
        add_namespace(self.wan)
        try:
            self._ip(self.wan, "link", "add", "wan", "type", "bridge")
            self._ip(self.wan, "link", "set", "wan", "up")
        except BaseException:
            delete_namespace(self.wan)
            raise

    @staticmethod
    def _ip(netns: str, *argv: str) -> None:
        subprocess.run(["ip", "-n", netns, *argv], check=True, capture_output=True, text=True)

    def add_host(self, name: str, number: int, *, public: bool = True) -> Host:
        netns = f"{self.prefix}-{name}"
        host = Host(
            name=name, number=number, netns=netns, state_dir=self.root / name, public=public, lab_hosts=self.hosts
        )
        add_namespace(netns)
        self.hosts[name] = host
        port = f"p{number}"
        self._ip(self.wan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns)
        self._ip(self.wan, "link", "set", port, "master", "wan", "up")
        self._ip(netns, "addr", "add", f"{host.wan_ip}/24", "dev", "eth0")
        self._ip(netns, "link", "set", "eth0", "up")
        return host

    def close(self) -> None:
        errors = []
        for netns in [host.netns for host in self.hosts.values()] + [self.wan]:
            try:
                delete_namespace(netns)
            except Exception as error:  # keep tearing down the rest
                errors.append(error)
        if errors:
            raise errors[0]


def wait_for(predicate, *, timeout: float, interval: float = 0.1) -> float | None:
    """Seconds until ``predicate()`` held, or None if it did not within ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    return None


def fake_bin(directory: Path, *, hide: tuple[str, ...] = (), fakes: dict[str, str] | None = None) -> Path:
    """A PATH directory: every command of the system's PATH but ``hide``, plus ``fakes`` (name: sh script)."""
    directory.mkdir(parents=True, exist_ok=True)
    for source_dir in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if not os.path.isdir(source_dir):
            continue
        for name in os.listdir(source_dir):
            target = directory / name
            if name in hide or (fakes and name in fakes) or target.exists() or target.is_symlink():
                continue
            target.symlink_to(os.path.realpath(os.path.join(source_dir, name)))
    for name, script in (fakes or {}).items():
        (directory / name).write_text(script)
        (directory / name).chmod(0o755)
    return directory
