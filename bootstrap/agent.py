#!/usr/bin/env python3
"""privnet agent: reads this host's STP bridge and WireGuard peers and reports them to the app.

A single file, standard library plus pyroute2, served by the app and run by systemd. Every
``report_interval`` seconds it reads the bridge and its VXLAN ports over rtnetlink, the WireGuard
peers of ``wg0`` (wireguard-go's UAPI socket, or ``wg show`` for kernel WireGuard), and POSTs
them to ``{app_url}/api/v1/agent/report`` with its agent token. When the app is down it retries
with capped exponential backoff and jitter; it never exits on a network, HTTP or JSON error, and
never logs the token. The report's JSON schema is documented in ``webapp/reports.py``.

    agent.py [--config /etc/privnet/config.json] [--token /etc/privnet/agent.token]
    agent.py --dump     # print one report and exit (no token needed)
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from pyroute2 import IPRoute

AGENT_VERSION = "0.1.0"
REPORT_SCHEMA = 1
DEFAULT_CONFIG_PATH = "/etc/privnet/config.json"
DEFAULT_TOKEN_PATH = "/etc/privnet/agent.token"  # noqa: S105 - a path, not a secret
WIREGUARD_INTERFACE = "wg0"
WIREGUARD_SOCKET_DIR = "/run/wireguard"
REPORT_PATH = "/api/v1/agent/report"
HTTP_TIMEOUT_SECONDS = 10
DEFAULT_MAX_BACKOFF_SECONDS = 300.0
PORT_STATES = {0: "disabled", 1: "listening", 2: "learning", 3: "forwarding", 4: "blocking"}

log = logging.getLogger("privnet-agent")


# --- reading the bridge (rtnetlink via pyroute2) ---------------------------------------------


def format_bridge_id(bridge_id: dict | None) -> str | None:
    """``{'prio': 128, 'addr': 'a6:2b:...'}`` from pyroute2 → ``8000.a62b080a8654`` (as brctl).

    pyroute2 decodes the 16-bit priority in host byte order, so 32768 reads as 128 on x86:
    ``ntohs`` puts it back (design §8).
    """
    if not bridge_id or not bridge_id.get("addr"):
        return None
    priority = socket.ntohs(int(bridge_id["prio"]))
    return f"{priority:04x}.{bridge_id['addr'].replace(':', '').lower()}"


def _seconds(centiseconds: int | None) -> float:
    """Netlink STP timers are in centiseconds (USER_HZ)."""
    return round((centiseconds or 0) / 100, 2)


def _info(msg: Any, key: str) -> Any:
    linkinfo = msg.get("IFLA_LINKINFO")
    return linkinfo.get(key) if linkinfo is not None else None


class BridgeReader:
    """The bridge and its VXLAN ports as the kernel reports them, read with pyroute2."""

    def read(self, bridge_name: str) -> tuple[dict | None, list[dict]]:
        """``(bridge, ports)``; ``(None, [])`` when there is no bridge of that name."""
        with IPRoute() as ipr:
            links = list(ipr.link("dump"))
        bridge_msg = next(
            (m for m in links if m.get("IFLA_IFNAME") == bridge_name and _info(m, "IFLA_INFO_KIND") == "bridge"),
            None,
        )
        if bridge_msg is None:
            return None, []
        bridge_index = bridge_msg["index"]
        ports = [
            self._port(m)
            for m in links
            if m.get("IFLA_MASTER") == bridge_index
            and _info(m, "IFLA_INFO_KIND") == "vxlan"
            and _info(m, "IFLA_INFO_SLAVE_KIND") == "bridge"
        ]
        ports.sort(key=lambda port: port["port_no"])
        return self._bridge(bridge_msg), ports

    @staticmethod
    def _bridge(msg: Any) -> dict:
        data = _info(msg, "IFLA_INFO_DATA")
        return {
            "name": msg.get("IFLA_IFNAME"),
            "stp_state": data.get("IFLA_BR_STP_STATE"),
            "bridge_id": format_bridge_id(data.get("IFLA_BR_BRIDGE_ID")),
            "designated_root": format_bridge_id(data.get("IFLA_BR_ROOT_ID")),
            "root_port": data.get("IFLA_BR_ROOT_PORT"),
            "root_path_cost": data.get("IFLA_BR_ROOT_PATH_COST"),
            "hello_time": _seconds(data.get("IFLA_BR_HELLO_TIME")),
            "max_age": _seconds(data.get("IFLA_BR_MAX_AGE")),
            "forward_delay": _seconds(data.get("IFLA_BR_FORWARD_DELAY")),
            "topology_change": bool(data.get("IFLA_BR_TOPOLOGY_CHANGE")),
            "topology_change_detected": bool(data.get("IFLA_BR_TOPOLOGY_CHANGE_DETECTED")),
        }

    @staticmethod
    def _port(msg: Any) -> dict:
        data = _info(msg, "IFLA_INFO_SLAVE_DATA")
        state = data.get("IFLA_BRPORT_STATE")
        return {
            "name": msg.get("IFLA_IFNAME"),
            "port_id": data.get("IFLA_BRPORT_ID"),
            "port_no": data.get("IFLA_BRPORT_NO"),
            "state": PORT_STATES.get(state, "disabled"),
            "path_cost": data.get("IFLA_BRPORT_COST"),
            "priority": data.get("IFLA_BRPORT_PRIORITY"),
            "designated_root": format_bridge_id(data.get("IFLA_BRPORT_ROOT_ID")),
            "designated_bridge": format_bridge_id(data.get("IFLA_BRPORT_BRIDGE_ID")),
            "designated_port": data.get("IFLA_BRPORT_DESIGNATED_PORT"),
            "designated_cost": data.get("IFLA_BRPORT_DESIGNATED_COST"),
        }


# --- reading WireGuard (UAPI socket, or `wg show` for kernel WireGuard) ------------------------


def _hex_key_to_base64(hex_key: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_key)).decode("ascii")


def parse_uapi(text: str) -> list[dict]:
    """Peers from a UAPI ``get=1`` answer; interface lines (the private key among them) are dropped."""
    peers: list[dict] = []
    peer: dict | None = None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "errno" and value != "0":
            raise OSError(f"wireguard UAPI get failed: errno={value}")
        if key == "public_key":
            peer = {
                "public_key": _hex_key_to_base64(value),
                "endpoint": None,
                "latest_handshake": 0,
                "rx_bytes": 0,
                "tx_bytes": 0,
            }
            peers.append(peer)
        elif peer is None:
            continue  # interface section: private_key, listen_port, fwmark
        elif key == "endpoint":
            peer["endpoint"] = value
        elif key == "last_handshake_time_sec":
            peer["latest_handshake"] = int(value)
        elif key in ("rx_bytes", "tx_bytes"):
            peer[key] = int(value)
    return peers


def parse_wg_dump(text: str) -> list[dict]:
    """Peers from ``wg show IFACE dump`` (the first line, holding the private key, is skipped)."""
    peers = []
    for line in text.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) < 8:
            continue
        public_key, _psk, endpoint, _allowed, handshake, rx_bytes, tx_bytes = fields[:7]
        peers.append(
            {
                "public_key": public_key,
                "endpoint": None if endpoint == "(none)" else endpoint,
                "latest_handshake": int(handshake),
                "rx_bytes": int(rx_bytes),
                "tx_bytes": int(tx_bytes),
            }
        )
    return peers


class WireGuardReader:
    """The peers of one WireGuard interface: wireguard-go's UAPI socket, else ``wg show dump``."""

    def __init__(self, interface: str = WIREGUARD_INTERFACE, socket_dir: str = WIREGUARD_SOCKET_DIR) -> None:
        self.interface = interface
        self.socket_path = os.path.join(socket_dir, f"{interface}.sock")
        self._unreadable = False

    def read(self) -> list[dict] | None:
        """Peers sorted by public key, or None when the interface cannot be read."""
        try:
            if os.path.exists(self.socket_path):
                peers = parse_uapi(self._uapi_get())
            else:
                peers = parse_wg_dump(self._wg_show_dump())
        except (OSError, ValueError, subprocess.SubprocessError) as error:
            if not self._unreadable:  # log the change, not every interval
                log.warning("cannot read WireGuard %s: %s", self.interface, describe_error(error))
            self._unreadable = True
            return None
        if self._unreadable:
            log.info("WireGuard %s readable again", self.interface)
        self._unreadable = False
        return sorted(peers, key=lambda peer: peer["public_key"])

    def _uapi_get(self) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(self.socket_path)
            sock.sendall(b"get=1\n\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"".join(chunks[-2:]).endswith(b"\n\n"):
                    break
        return b"".join(chunks).decode("ascii")

    def _wg_show_dump(self) -> str:
        result = subprocess.run(
            ["wg", "show", self.interface, "dump"], capture_output=True, text=True, timeout=10, check=False
        )
        if result.returncode != 0:
            said = result.stderr.strip().splitlines()[-1:] or [""]
            raise OSError(f"wg show exited {result.returncode} {said[0][:120]}".strip())
        return result.stdout


# --- the report --------------------------------------------------------------------------------


class TopologyChangeCounter:
    """Counts topology-change episodes this agent saw (rising edges of the bridge's flag).

    The kernel keeps no such counter; a flag set and cleared between two samples is missed.
    """

    def __init__(self) -> None:
        self.count = 0
        self._last = False

    def observe(self, flag: bool) -> int:
        if flag and not self._last:
            self.count += 1
        self._last = flag
        return self.count


def collect_report(
    config: dict,
    *,
    bridges: BridgeReader | None = None,
    wireguard: WireGuardReader | None = None,
    topology_changes: TopologyChangeCounter | None = None,
) -> dict:
    """One report of this host's bridge, VXLAN ports and WireGuard peers; reads, changes nothing."""
    bridge, ports = (bridges or BridgeReader()).read(config.get("bridge_name", "internet"))
    if bridge is not None:
        counter = topology_changes or TopologyChangeCounter()
        bridge["topology_change_count"] = counter.observe(bridge["topology_change"])
    return {
        "schema": REPORT_SCHEMA,
        "node": config["node"],
        "agent_version": AGENT_VERSION,
        "config_version": config.get("version") or None,
        "timestamp": round(time.time(), 3),
        "bridge": bridge,
        "ports": ports,
        "peers": (wireguard or WireGuardReader()).read(),
    }


# --- posting it --------------------------------------------------------------------------------


class ReportRejected(Exception):
    """The app answered with an HTTP error; ``detail`` is its ``error`` sentence, if any."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.detail = detail


def post_report(app_url: str, token: str, report: dict, *, timeout: float = HTTP_TIMEOUT_SECONDS) -> dict:
    """POST the report; returns the app's JSON answer (``{}`` if none). Raises on any failure."""
    url = app_url.rstrip("/") + REPORT_PATH
    if not url.startswith(("http://", "https://")):
        raise ValueError("app_url must be an http or https URL")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=json.dumps(report).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "User-Agent": f"privnet-agent/{AGENT_VERSION}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(1 << 20)
    except urllib.error.HTTPError as error:
        raise ReportRejected(error.code, _error_detail(error)) from None
    if not body.strip():
        return {}
    answer = json.loads(body)
    return answer if isinstance(answer, dict) else {}


def _error_detail(error: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(error.read(4096)).get("error", "")
    except (OSError, ValueError, AttributeError, http.client.HTTPException):
        return ""
    return " ".join(str(detail).split())[:200]


def backoff_delay(failures: int, interval: float, cap: float) -> float:
    """Delay before retry number ``failures`` (1, 2, ...): ``interval × 2^(n-1)``, capped, jittered to 50–100 %."""
    delay = min(cap, interval * 2 ** min(failures - 1, 30))
    return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret


# --- the loop ----------------------------------------------------------------------------------


def load_config(path: str) -> dict:
    """The host's desired state written by the setup script (``HostConfig.to_dict()``)."""
    with open(path, encoding="utf-8") as file:
        config = json.load(file)
    if not isinstance(config, dict) or not isinstance(config.get("node"), str):
        raise ValueError("config has no node name")
    return config


def load_token(path: str) -> str:
    """The agent token; refused (without echoing it) unless it is printable ASCII without spaces.

    http.client would otherwise put an illegal header value, token and all, in its exception text.
    """
    with open(path, encoding="utf-8", errors="replace") as file:
        token = file.read().strip()
    if not token:
        raise ValueError("agent token file is empty")
    if not all("!" <= char <= "~" for char in token):
        raise ValueError("agent token file holds characters no token has")
    return token


class Agent:
    """Read, report, sleep; forever. Each cycle re-reads config and token (the setup script may rewrite them)."""

    def __init__(self, config_path: str, token_path: str, *, max_backoff: float, wireguard: WireGuardReader) -> None:
        self.config_path = config_path
        self.token_path = token_path
        self.max_backoff = max_backoff
        self.wireguard = wireguard
        self.topology_changes = TopologyChangeCounter()
        self.stop = threading.Event()
        self.config: dict | None = None
        self.failures = 0

    def run(self) -> None:
        log.info("agent %s started (config %s)", AGENT_VERSION, self.config_path)
        while not self.stop.is_set():
            delay = self.cycle()
            self.stop.wait(delay)
        log.info("agent stopped")

    def cycle(self) -> float:
        """One read-and-report; returns the seconds to wait before the next one."""
        try:
            config = self._reload()
            token = load_token(self.token_path)
            report = collect_report(config, wireguard=self.wireguard, topology_changes=self.topology_changes)
            answer = post_report(config["app_url"], token, report)
            self.after_report(config, report, answer)
        except Exception as error:  # the agent must outlive any one failure
            return self._failed(error)
        if self.failures:
            log.info("reporting again after %d failed attempts", self.failures)
        else:
            log.debug("report sent")
        self.failures = 0
        return self._interval() * random.uniform(0.9, 1.1)  # noqa: S311 - spread 1,000 agents apart

    def after_report(self, config: dict, report: dict, answer: dict) -> None:
        """Where issue 6 (apply the desired config) plugs in: today the agent only reports.

        ``answer`` is the app's JSON reply; when it (or ``GET /api/v1/agent/config``) names a
        config version other than ``report["config_version"]``, the host is behind.
        """

    def _reload(self) -> dict:
        try:
            self.config = load_config(self.config_path)
        except (OSError, ValueError) as error:
            if self.config is None:
                raise
            log.warning("keeping the previous config: cannot read %s (%s)", self.config_path, type(error).__name__)
        return self.config

    def _interval(self) -> float:
        interval = (self.config or {}).get("report_interval", 10)
        return float(interval) if isinstance(interval, int | float) and interval > 0 else 10.0

    def _failed(self, error: Exception) -> float:
        self.failures += 1
        delay = backoff_delay(self.failures, self._interval(), max(self.max_backoff, self._interval()))
        log.warning("report failed (%s); retry %d in %.1f s", describe_error(error), self.failures, delay)
        return delay


def describe_error(error: Exception) -> str:
    """One line naming the failure, without secrets (no request headers ever reach it)."""
    if isinstance(error, ReportRejected):
        return f"app answered HTTP {error.status}" + (f": {error.detail}" if error.detail else "")
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        return f"cannot reach the app: {reason.strerror if isinstance(reason, OSError) and reason.strerror else reason}"
    if isinstance(error, json.JSONDecodeError):
        return "app answered with invalid JSON"
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="privnet agent: report bridge and WireGuard state to the app")
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="host config JSON (default %(default)s)")
    parser.add_argument("--token", default=DEFAULT_TOKEN_PATH, help="agent token file (default %(default)s)")
    parser.add_argument("--wireguard-socket-dir", default=WIREGUARD_SOCKET_DIR, help="wireguard-go UAPI sockets")
    parser.add_argument("--max-backoff", type=float, default=DEFAULT_MAX_BACKOFF_SECONDS, help="retry delay cap, s")
    parser.add_argument("--dump", action="store_true", help="print one report as JSON and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="also log each report sent")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)  # libraries stay at WARNING
    wireguard = WireGuardReader(socket_dir=args.wireguard_socket_dir)
    if args.dump:
        json.dump(collect_report(load_config(args.config), wireguard=wireguard), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    agent = Agent(args.config, args.token, max_backoff=args.max_backoff, wireguard=wireguard)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: agent.stop.set())
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
