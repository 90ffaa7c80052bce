"""A lab: privnet hosts as network namespaces on one machine, with the app in a control namespace.

Namespaces (prefix from `PRIVNET_LAB_PREFIX`, default `privnet`; a-z and digits, no '-', so a
namespace `<prefix>-…` belongs to exactly one lab):

    <prefix>-wan          holds bridge `wan`, the underlay 192.0.2.0/24; one port per host, named after it
    <prefix>-control      the app (gunicorn) at 192.0.2.254:8000, eth0
    <prefix>-<host>       a host; eth0 = 192.0.2.N (N = position in the topology file, from 1)
    <prefix>-nat-<host>   the NAT router of a `nat = true` host: wan0 = 192.0.2.N, lan0 = 198.51.100.1,
                          nftables masquerade out of wan0 and no forwarding in; the host's eth0 is
                          198.51.100.2 with its default route via lan0

Nothing is named or addressed in the initial namespace, and nothing talks from it: every veth is
created inside the lab's namespaces, and HTTP to the app goes from the control namespace (curl).
`Lab.cut(a, b)` breaks the underlay between two hosts (the wan bridge drops every packet between
their public addresses, both ways; nftables table `lab_cuts` in <prefix>-wan) and `Lab.restore(a, b)`
mends it: what an ISP outage between two sites looks like to privnet.

With the WAN emulator (a topology with `[rtt_ms]` or `[wan]`, or `up(wan=True)`; lab.wan) there is
no bridge and no veth on the underlay: the emulator, a process in <prefix>-wan, makes each uplink
(a host's eth0, a NAT router's wan0, control's eth0) a TUN device with the same address and
forwards between them after each pair's delay, with jitter, loss and cuts (`cut`, `restore`,
`set_rtt`). Control↔host traffic has no delay. Its PID is `state["wan"]["pid"]`; `down` ends it
with the namespaces.

State lives in /run/privnet-lab/<prefix>/ (0700): lab.json, the app database, logs/, and
hosts/<name>/ (each host's private /etc/privnet, /run/wireguard, …; see lab.netns).

`status()` (and `python -m lab status`) gives::

    {"prefix", "topology", "app_url", "admin_user", "admin_password", "admin_token",
     "control": {"netns", "wan_ip"},
     "hosts": {NAME: {"netns", "wan_ip", "public_ip", "underlay_ip", "overlay_ip", "nat", "nat_netns"}}}

`wan_ip` is the address on the host's eth0; `public_ip` the one the rest of the underlay sees (the
NAT router's for a NAT host, else `wan_ip`); `underlay_ip` and `overlay_ip` are the node's
WireGuard (10.88.88.x) and bridge (10.99.99.x) addresses as the app allocated them (null before
the node exists in the app).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import app as lab_app
from .netns import add_namespace as create_namespace
from .netns import (
    delete_namespace,
    host_command,
    kill_namespace_processes,
    namespace_exists,
    remove_created_mount_targets,
)
from .topology import Topology, load_topology
from .wan import CONTROL_NODE, WanClient, WanError, WanNode, emulator_config

STATE_ROOT = Path("/run/privnet-lab")
DEFAULT_PREFIX = "privnet"
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,15}$")
WAN_PREFIX = "192.0.2"
CONTROL_WAN_IP = f"{WAN_PREFIX}.254"
NAT_LAN_ROUTER_IP = "198.51.100.1"
NAT_LAN_HOST_IP = "198.51.100.2"
ADMIN_USER = "lab"
APP_START_TIMEOUT = 60.0
ENROLL_TIMEOUT = 300.0
WAN_START_TIMEOUT = 15.0

NAT_RULESET = """
table ip lab_nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan0" oifname "wan0" accept
    }
}
"""


# Underlay cuts: the wan bridge drops what goes between the address pairs in the set (see Lab.cut).
CUT_RULESET = """
table bridge lab_cuts {
    set pairs {
        type ipv4_addr . ipv4_addr
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        ip saddr . ip daddr @pairs drop
    }
}
"""


class LabError(RuntimeError):
    """The lab cannot do what was asked (the message says why and what to do)."""


def default_prefix() -> str:
    """The namespace prefix: $PRIVNET_LAB_PREFIX or `privnet`."""
    return os.environ.get("PRIVNET_LAB_PREFIX") or DEFAULT_PREFIX


def check_prefix(prefix: str) -> str:
    """`prefix` if it is 1-16 characters of a-z and 0-9 starting with a letter; else LabError."""
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise LabError(f"lab prefix {prefix!r} must be 1-16 characters of a-z and 0-9, starting with a letter")
    return prefix


def lab_namespaces_present(prefix: str) -> list[str]:
    """Network namespaces named `<prefix>-…` that exist now."""
    result = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    return [name for name in names if name.startswith(f"{prefix}-")]


def enroll_shell_command(command: str) -> str:
    """The app's `curl … | sudo sh` command as run in a lab host, where we are root already."""
    command = command.strip()
    if not command.startswith("curl "):
        raise LabError(f"the app's enroll command does not start with curl: {command!r}")
    return re.sub(r"\|\s*sudo\s+sh\s*$", "| sh", command)


class Lab:
    """One lab, named by its prefix; works from its state file, so any process can drive or end it."""

    def __init__(self, prefix: str | None = None, state_root: Path = STATE_ROOT) -> None:
        self.prefix = check_prefix(prefix or default_prefix())
        self.state_dir = Path(state_root) / self.prefix
        self.state_file = self.state_dir / "lab.json"
        self.state: dict[str, Any] = {}
        if self.state_file.exists():
            self.state = json.loads(self.state_file.read_text())

    # -- naming and running ------------------------------------------------------------------

    @property
    def exists(self) -> bool:
        """Whether this lab has state or namespaces (is up, or half up, or half down)."""
        return self.state_dir.exists() or bool(lab_namespaces_present(self.prefix))

    @property
    def host_names(self) -> list[str]:
        """The lab's hosts, in topology order (without control)."""
        return list(self.state.get("hosts", {}))

    def netns(self, name: str) -> str:
        """Namespace of a host, `control`, `wan` or `nat-<host>`."""
        return f"{self.prefix}-{name}"

    def host_dir(self, name: str) -> Path:
        """The private state directory of a host (or control)."""
        return self.state_dir / "hosts" / name

    def _has_private_mounts(self, name: str) -> bool:
        return name == "control" or name in self.state.get("hosts", {})

    def command(self, name: str, argv: list[str]) -> list[str]:
        """argv that runs `argv` in host/control `name` with its private mounts (wan, nat-X: plain)."""
        if not self.state:
            raise LabError(f"lab {self.prefix} is not up")
        if self._has_private_mounts(name):
            return host_command(self.netns(name), self.host_dir(name), argv)
        if name == "wan" or (name.startswith("nat-") and name[4:] in self.state.get("hosts", {})):
            return ["ip", "netns", "exec", self.netns(name), *argv]
        known = ", ".join(["control", *self.host_names])
        raise LabError(f"lab {self.prefix} has no host {name!r} (hosts: {known})")

    def run(self, name: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """Run `argv` in a host like subprocess.run; check=True and captured text by default."""
        kwargs.setdefault("check", True)
        if "stdout" not in kwargs and "stderr" not in kwargs:
            kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(name, argv), **kwargs)

    def popen(self, name: str, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        """Start `argv` in a host without waiting (subprocess.Popen keywords)."""
        return subprocess.Popen(self.command(name, argv), **kwargs)

    def _ip(self, name: str, *args: str) -> None:
        """`ip -n <netns of name> ARGS`; always name devices with `dev`/`name` (host "a" is not "address")."""
        argv = ["ip", "-n", self.netns(name), *args]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LabError(f"{' '.join(argv)}: {result.stderr.strip()}")

    # -- state --------------------------------------------------------------------------------

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.state, out, indent=2)
        tmp.replace(self.state_file)

    def _add_namespace(self, name: str) -> str:
        netns = self.netns(name)
        self.state.setdefault("namespaces", []).append(netns)
        self._save()  # recorded before it exists, so a failure from here on is still torn down
        create_namespace(netns)
        return netns

    # -- up -----------------------------------------------------------------------------------

    def up(
        self,
        topology: Topology | str | Path,
        *,
        app: bool = True,
        enroll: bool = True,
        app_dir: Path | None = None,
        wan: bool | None = None,
    ) -> None:
        """Build the lab: underlay, then (if `app`) the app, nodes and links, then (if `enroll`) the hosts.

        `app_dir` holds the wsgi.py to serve (default: $PRIVNET_LAB_APP_DIR or this repository).
        `wan`: the underlay through the WAN emulator (default: if the topology has RTTs or `[wan]`).
        On failure the half-built lab stays for inspection; `down()` removes it.
        """
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, mounts)")
        if not isinstance(topology, Topology):
            topology = load_topology(topology)
        if self.exists:
            raise LabError(f"lab {self.prefix} exists already: run `python -m lab down --prefix {self.prefix}` first")
        self.state_dir.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.state_dir.mkdir(mode=0o700)
        (self.state_dir / "logs").mkdir()
        self.state = {
            "prefix": self.prefix,
            "topology": topology.name,
            "phase": "underlay",
            "app_dir": str(Path(app_dir).resolve() if app_dir else lab_app.default_app_dir()),
            "namespaces": [],
            "control": {"netns": self.netns("control"), "wan_ip": CONTROL_WAN_IP},
            "hosts": {},
        }
        if topology.emulated_wan if wan is None else wan:
            self.state["wan"] = {
                "pid": None,
                "socket": str(self.state_dir / "wan.sock"),
                "config": str(self.state_dir / "wan.json"),
            }
        for index, host in enumerate(topology.hosts, start=1):
            public_ip = f"{WAN_PREFIX}.{index}"
            self.state["hosts"][host.name] = {
                "netns": self.netns(host.name),
                "wan_ip": NAT_LAN_HOST_IP if host.nat else public_ip,
                "public_ip": public_ip,
                "nat": host.nat,
                "nat_netns": self.netns(f"nat-{host.name}") if host.nat else None,
                "underlay_ip": None,
                "overlay_ip": None,
            }
        self._save()
        self._build_underlay(topology)
        if app:
            self.state["phase"] = "app"
            self._save()
            self._start_app()
            self._create_network(topology)
            if enroll:
                self.state["phase"] = "enroll"
                self._save()
                self.enroll()
        self.state["phase"] = "up"
        self._save()

    def _build_underlay(self, topology: Topology) -> None:
        self._add_namespace("wan")
        if not self.state.get("wan"):
            self._ip("wan", "link", "add", "name", "wan", "type", "bridge")
            self._ip("wan", "link", "set", "dev", "wan", "up")
        self._add_namespace("control")
        self._attach_to_wan("control", "eth0", "control", CONTROL_WAN_IP)
        for host in topology.hosts:
            info = self.state["hosts"][host.name]
            self._add_namespace(host.name)
            if host.nat:
                self._build_nat(host.name, info["public_ip"])
            else:
                self._attach_to_wan(host.name, "eth0", host.name, info["wan_ip"])
        if self.state.get("wan"):
            self._start_wan(topology)

    def _attach_to_wan(self, name: str, ifname: str, port: str, address: str) -> None:
        """A veth from namespace `name` (as `ifname`) to a port of the wan bridge, created in place.

        With the WAN emulator nothing: the emulator creates `ifname` as a TUN (see _start_wan).
        """
        if self.state.get("wan"):
            return
        self._ip(name, "link", "add", "name", ifname, "type", "veth", "peer", "name", port, "netns", self.netns("wan"))
        self._ip("wan", "link", "set", "dev", port, "master", "wan", "up")
        self._ip(name, "addr", "add", f"{address}/24", "dev", ifname)
        self._ip(name, "link", "set", "dev", ifname, "up")

    def _build_nat(self, host: str, public_ip: str) -> None:
        router = f"nat-{host}"
        router_ns = self._add_namespace(router)
        self._attach_to_wan(router, "wan0", host, public_ip)
        self._ip(host, "link", "add", "name", "eth0", "type", "veth", "peer", "name", "lan0", "netns", router_ns)
        self._ip(router, "addr", "add", f"{NAT_LAN_ROUTER_IP}/24", "dev", "lan0")
        self._ip(router, "link", "set", "dev", "lan0", "up")
        self._ip(host, "addr", "add", f"{NAT_LAN_HOST_IP}/24", "dev", "eth0")
        self._ip(host, "link", "set", "dev", "eth0", "up")
        self._ip(host, "route", "add", "default", "via", NAT_LAN_ROUTER_IP)
        in_router = ["ip", "netns", "exec", router_ns]
        subprocess.run([*in_router, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True, capture_output=True)
        subprocess.run([*in_router, "nft", "-f", "-"], input=NAT_RULESET, text=True, check=True, capture_output=True)

    def _start_wan(self, topology: Topology) -> None:
        """Start the WAN emulator in <prefix>-wan; return once its control socket answers."""
        nodes = [WanNode(CONTROL_NODE, self.netns("control"), "eth0", CONTROL_WAN_IP)]
        for host in topology.hosts:
            info = self.state["hosts"][host.name]
            uplink = ("wan0", info["nat_netns"]) if host.nat else ("eth0", info["netns"])
            nodes.append(WanNode(host.name, uplink[1], uplink[0], info["public_ip"]))
        names = [host.name for host in topology.hosts]
        pairs = {frozenset((a, b)): topology.pair_settings(a, b) for i, a in enumerate(names) for b in names[i + 1 :]}
        wan = self.state["wan"]
        config = emulator_config(nodes, pairs, Path(wan["socket"]))
        fd = os.open(wan["config"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(config, out, indent=2)
        package_root = Path(__file__).resolve().parent.parent
        python_path = [str(package_root), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(python_path))
        log_path = self.state_dir / "logs" / "wan.log"
        with open(log_path, "ab") as log:
            self._wan_process = subprocess.Popen(
                ["ip", "netns", "exec", self.netns("wan"), sys.executable, "-m", "lab.wan", wan["config"]],
                cwd=package_root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wan["pid"] = self._wan_process.pid  # `ip netns exec` execs the emulator: same process
        self._save()
        client = WanClient(Path(wan["socket"]), timeout=1.0)
        deadline = time.monotonic() + WAN_START_TIMEOUT
        while True:
            if self._wan_process.poll() is not None:
                raise LabError(f"the WAN emulator exited ({self._wan_process.returncode}):\n{tail(log_path)}")
            try:
                client.status()
                return
            except WanError:
                if time.monotonic() > deadline:
                    timeout = f"the WAN emulator did not answer in {WAN_START_TIMEOUT:.0f} s"
                    raise LabError(f"{timeout}:\n{tail(log_path)}") from None
                time.sleep(0.05)

    def wan(self) -> WanClient:
        """Client of the running WAN emulator; LabError if this lab has none."""
        info = self.state.get("wan")
        if not info:
            raise LabError(f"lab {self.prefix} runs no WAN emulator (up with --wan, or a topology with [rtt_ms])")
        return WanClient(Path(info["socket"]))

    def set_rtt(self, a: str, b: str, ms: float) -> None:
        """Set the underlay RTT between a and b (hosts or `control`) on the WAN emulator."""
        try:
            self.wan().set(a, b, rtt_ms=ms)
        except WanError as error:
            raise LabError(f"set_rtt {a} {b}: {error}") from None

    # -- the app ------------------------------------------------------------------------------

    @property
    def app_url(self) -> str:
        """Base URL of the app, as hosts reach it."""
        return f"http://{CONTROL_WAN_IP}:{lab_app.APP_PORT}"

    def _app_env(self) -> dict[str, str]:
        return lab_app.app_environment(
            dict(os.environ),
            secret_key=self.state["secret_key"],
            database_url=f"sqlite:///{self.state_dir / 'app.sqlite3'}",
            app_url=self.app_url,
        )

    def _run_flask(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        env = self._app_env() | (extra_env or {})
        result = self.run("control", lab_app.flask_argv(*args), cwd=self.state["app_dir"], env=env, check=False)
        if result.returncode != 0:
            raise LabError(f"flask {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result.stdout

    def _start_app(self) -> None:
        self.state.update(
            secret_key=secrets.token_urlsafe(32),
            admin_user=ADMIN_USER,
            admin_password=secrets.token_urlsafe(18),
            app_url=self.app_url,
        )
        self._save()
        self._run_flask("db", "upgrade")
        self._run_flask(
            "admin", "create", ADMIN_USER, extra_env={"PRIVNET_ADMIN_PASSWORD": self.state["admin_password"]}
        )
        token = self._run_flask("admin", "token", ADMIN_USER).strip().splitlines()[-1].strip()
        self.state["admin_token"] = token
        self._save()
        header_fd = os.open(self.state_dir / "auth-header", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(header_fd, "w") as out:
            out.write(f"Authorization: Bearer {token}\n")
        self.start_app()

    def start_app(self) -> None:
        """Start the app server (gunicorn) in the control namespace; return once it answers HTTP.

        Its process group id is `state["app_pid"]`. The database and admin token stay as they are:
        after `stop_app` this is the app coming back from an outage.
        """
        if self.app_running():
            raise LabError(f"the app of lab {self.prefix} runs already (pid {self.state['app_pid']})")
        log_path = self.state_dir / "logs" / "app.log"
        with open(log_path, "ab") as log:
            server = self.popen(
                "control",
                lab_app.gunicorn_argv(CONTROL_WAN_IP),
                cwd=self.state["app_dir"],
                env=self._app_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._app_process = server
        self.state["app_pid"] = server.pid  # `ip netns exec` and sh exec gunicorn: the same process
        self._save()
        try:
            self.api().wait_ready(APP_START_TIMEOUT, alive=lambda: server.poll() is None)
        except (RuntimeError, TimeoutError) as error:
            raise LabError(f"{error}; its log ({log_path}) ends with:\n{tail(log_path)}") from None

    def app_running(self) -> bool:
        """Whether the app server `start_app` started is alive."""
        pid = self.state.get("app_pid")
        if not pid:
            return False
        process = getattr(self, "_app_process", None)
        if process is not None and process.pid == pid:
            process.poll()  # reap the master if it exited (a zombie would still count below)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop_app(self, timeout: float = 30.0) -> None:
        """Stop the app server (its whole process group: master and workers), as an outage would.

        Hosts keep running; `start_app` brings the app back with the same database. Idempotent.
        """
        pid = self.state.get("app_pid")
        if pid and self.app_running():
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.app_running() and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.app_running():
                os.killpg(pid, signal.SIGKILL)
                while self.app_running():
                    time.sleep(0.1)
        self.state["app_pid"] = None
        self._save()

    def api(self) -> lab_app.ApiClient:
        """Admin API client (requests go from the control namespace)."""
        if "admin_token" not in self.state:
            raise LabError(f"lab {self.prefix} runs no app (it was brought up without one)")
        return lab_app.ApiClient(
            lambda argv, **kwargs: self.run("control", argv, **kwargs),
            self.app_url,
            self.state_dir / "auth-header",
        )

    def _create_network(self, topology: Topology) -> None:
        api = self.api()
        if topology.network:
            status, answer = api.request("PATCH", "/api/v1/network", topology.network)
            if status in (404, 405):
                print(f"lab: the app has no PATCH /api/v1/network ({status}); network settings left as they are")
            elif status != 200:
                raise lab_app.ApiError("PATCH", "/api/v1/network", status, json.dumps(answer))
        for host in topology.hosts:
            info = self.state["hosts"][host.name]
            payload: dict[str, Any] = {"name": host.name}
            if host.endpoint:
                payload["endpoint"] = f"{info['public_ip']}:{host.listen_port}"
                payload["listen_port"] = host.listen_port
            if host.location:
                payload["location"] = host.location
            node = api.call("POST", "/api/v1/nodes", payload, expect=(201,))
            info.update(underlay_ip=node.get("underlay_ip"), overlay_ip=node.get("overlay_ip"))
            info["enroll_command"] = node["enroll"]["command"]
            self._save()
        for link in topology.links:
            payload = {"a": link.a, "b": link.b}
            if link.cost is not None:
                payload["cost"] = link.cost
            api.call("POST", "/api/v1/links", payload, expect=(201,))

    # -- enrollment ---------------------------------------------------------------------------

    def fresh_enroll_command(self, host: str) -> str:
        """Ask the app for a new enrollment of `host` (older ones stop working); its command."""
        answer = self.api().call("POST", f"/api/v1/nodes/{host}/enrollment", expect=(200, 201))
        self.state["hosts"][host]["enroll_command"] = answer["command"]
        self._save()
        return answer["command"]

    def enroll(
        self, hosts: Iterable[str] | None = None, *, fresh: bool = False, timeout: float = ENROLL_TIMEOUT
    ) -> None:
        """Run each host's `curl -fsSL <url>/enroll/<token> | sh`, hosts in parallel; LabError if any fails.

        `fresh` asks the app for a new enrollment first (to re-run the script on an enrolled host).
        Output goes to logs/enroll-<host>.log.
        """
        names = list(hosts) if hosts is not None else self.host_names
        commands = {
            name: enroll_shell_command(
                self.fresh_enroll_command(name) if fresh else self.state["hosts"][name]["enroll_command"]
            )
            for name in names
        }

        def run_one(name: str) -> tuple[str, int | None]:
            log_path = self.state_dir / "logs" / f"enroll-{name}.log"
            with open(log_path, "ab") as log:
                log.write(f"$ {commands[name]}\n".encode())
                log.flush()
                # bash for pipefail only: a failed curl must fail the run; the script still runs under sh.
                process = self.popen(
                    name, ["bash", "-o", "pipefail", "-c", commands[name]],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
                try:
                    return name, process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    return name, None

        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            results = list(pool.map(run_one, names))
        failed = [(name, code) for name, code in results if code != 0]
        if failed:
            report = "\n".join(
                f"--- {name}: {'timed out' if code is None else f'exit {code}'}; "
                f"logs/enroll-{name}.log ends with:\n{tail(self.state_dir / 'logs' / f'enroll-{name}.log')}"
                for name, code in failed
            )
            raise LabError(f"setup script failed on {', '.join(name for name, _ in failed)}\n{report}")

    def wait_for_overlay(self, timeout: float = 60.0) -> None:
        """Wait until every host pings every other host's overlay address; TimeoutError naming the pairs that fail."""
        pairs = [(a, b) for a in self.host_names for b in self.host_names if a != b]
        deadline = time.monotonic() + timeout

        def reachable(pair: tuple[str, str]) -> bool:
            target = self.state["hosts"][pair[1]]["overlay_ip"]
            argv = ["ping", "-n", "-q", "-c", "1", "-W", "1", target]
            return self.run(pair[0], argv, check=False).returncode == 0

        while pairs:
            with ThreadPoolExecutor(max_workers=min(32, len(pairs))) as pool:
                pairs = [pair for pair, ok in zip(pairs, pool.map(reachable, pairs), strict=True) if not ok]
            if pairs and time.monotonic() > deadline:
                raise TimeoutError(f"no overlay ping after {timeout:.0f} s: {', '.join(f'{a}→{b}' for a, b in pairs)}")
            if pairs:
                time.sleep(0.2)  # a ping can fail at once (no route yet): do not spin

    def reboot(self, name: str) -> None:
        """What a reboot does to a host: its processes die, its interfaces but eth0 vanish, /run empties.

        Files under /etc stay. Afterwards run what the host's boot would (e.g. /etc/privnet/up).
        """
        netns = self.netns(name)
        if name not in self.state.get("hosts", {}):
            raise LabError(f"lab {self.prefix} has no host {name!r}")
        kill_namespace_processes(netns)
        links = json.loads(
            subprocess.run(["ip", "-n", netns, "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
        )
        for link in links:
            if link["ifname"] not in ("lo", "eth0"):
                subprocess.run(
                    ["ip", "-n", netns, "link", "del", "dev", link["ifname"]], capture_output=True, check=False
                )
        for run_dir in (self.host_dir(name) / "run").iterdir():
            for entry in run_dir.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    def _cut_elements(self, a: str, b: str) -> str:
        hosts = self.state.get("hosts", {})
        for name in (a, b):
            if name not in hosts:
                raise LabError(f"lab {self.prefix} has no host {name!r}")
        if a == b:
            raise LabError(f"cannot cut host {a} from itself")
        x, y = hosts[a]["public_ip"], hosts[b]["public_ip"]
        return f"{{ {x} . {y}, {y} . {x} }}"

    def _nft_wan(self, *args: str, script: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["nft", "-f", "-"] if script is not None else ["nft", *args]
        result = self.run("wan", argv, input=script, check=False)
        if check and result.returncode != 0:
            raise LabError(f"nft {' '.join(args) or '-f -'} in {self.netns('wan')}: {result.stderr.strip()}")
        return result

    def cut(self, a: str, b: str | None = None) -> None:
        """Cut the underlay between hosts `a` and `b`: the wan bridge drops all traffic between them.

        Both directions; every other pair still talks. Their WireGuard tunnel dies silently, as
        when a path between two sites fails: nothing on either host goes down. `restore` mends it.
        `b` None: cut `a` from every other host (not from control). With the WAN emulator running
        the emulator drops the packets (and `b` may be `control`).
        """
        if self.state.get("wan") or b is None:
            self._cut_or_restore("cut", a, b)
            return
        elements = self._cut_elements(a, b)
        if self._nft_wan("list", "table", "bridge", "lab_cuts", check=False).returncode != 0:
            self._nft_wan(script=CUT_RULESET)
        self._nft_wan("add", "element", "bridge", "lab_cuts", "pairs", elements)

    def restore(self, a: str, b: str | None = None) -> None:
        """Undo `cut(a, b)` (nothing to do if they are not cut); `b` None: every cut of `a`."""
        if self.state.get("wan") or b is None:
            self._cut_or_restore("restore", a, b)
            return
        elements = self._cut_elements(a, b)
        if self._nft_wan("get", "element", "bridge", "lab_cuts", "pairs", elements, check=False).returncode == 0:
            self._nft_wan("delete", "element", "bridge", "lab_cuts", "pairs", elements)

    def _cut_or_restore(self, op: str, a: str, b: str | None) -> None:
        if self.state.get("wan"):
            try:
                self.wan().request(op, a=a, b=b)
            except WanError as error:
                raise LabError(f"{op} {' '.join(filter(None, (a, b)))}: {error}") from None
            return
        if a not in self.state.get("hosts", {}):
            raise LabError(f"lab {self.prefix} has no host {a!r}")
        for other in self.host_names:
            if other != a:
                getattr(self, op)(a, other)

    # -- status and down ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The lab as JSON-ready data (see the module docstring); LabError if it is not up."""
        if not self.state:
            raise LabError(f"lab {self.prefix} is not up")
        keys = ("netns", "wan_ip", "public_ip", "underlay_ip", "overlay_ip", "nat", "nat_netns")
        return {
            "prefix": self.prefix,
            "topology": self.state.get("topology"),
            "phase": self.state.get("phase"),
            "app_url": self.state.get("app_url"),
            "admin_user": self.state.get("admin_user"),
            "admin_password": self.state.get("admin_password"),
            "admin_token": self.state.get("admin_token"),
            "state_dir": str(self.state_dir),
            "control": self.state.get("control"),
            "wan": self.state.get("wan"),
            "hosts": {name: {key: info.get(key) for key in keys} for name, info in self.state.get("hosts", {}).items()},
        }

    def down(self) -> None:
        """Remove everything of this lab: processes in its namespaces, the namespaces, its state dir.

        Works from the state file and from `ip netns list`, so also after a half-done `up` or `down`.
        Idempotent.
        """
        namespaces = list(dict.fromkeys([*self.state.get("namespaces", []), *lab_namespaces_present(self.prefix)]))
        for netns in namespaces:  # every process first, so none reacts to its peers vanishing
            if namespace_exists(netns):
                kill_namespace_processes(netns)
        self._stop_wan()
        for netns in namespaces:
            delete_namespace(netns)
        left = lab_namespaces_present(self.prefix)
        if left:
            raise LabError(f"namespaces survived down: {', '.join(left)}")
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.state = {}
        if not all_lab_prefixes(self.state_dir.parent):  # the last lab: take away what labs made outside
            remove_created_mount_targets()
            with contextlib.suppress(OSError):
                self.state_dir.parent.rmdir()

    def _stop_wan(self) -> None:
        """End the WAN emulator if it survived its namespace's processes (say, its namespace is gone)."""
        pid = (self.state.get("wan") or {}).get("pid")
        process = getattr(self, "_wan_process", None)
        if pid and process is None:
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"lab.wan" in cmdline and self.state["wan"]["config"].encode() in cmdline:
                    os.kill(pid, signal.SIGTERM)
        elif process is not None:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self._wan_process = None

    def save_logs(self, destination: Path) -> Path | None:
        """Copy the lab's logs to destination/<prefix>/ (for CI artefacts); that directory, or None."""
        logs = self.state_dir / "logs"
        if not logs.is_dir():
            return None
        target = Path(destination) / self.prefix
        shutil.copytree(logs, target, dirs_exist_ok=True)
        return target


def all_lab_prefixes(state_root: Path = STATE_ROOT) -> list[str]:
    """Prefixes of every lab with a state directory."""
    if not state_root.is_dir():
        return []
    return sorted(path.name for path in state_root.iterdir() if path.is_dir() and PREFIX_PATTERN.fullmatch(path.name))


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a text file ('' if it does not exist)."""
    with contextlib.suppress(FileNotFoundError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""
