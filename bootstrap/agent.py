#!/usr/bin/env python3
"""privnet agent: keeps this host at its desired state and reports its bridge and WireGuard peers.

A single file, standard library plus pyroute2 (0.7, as Debian bookworm ships it, or newer),
installed as ``/etc/privnet/agent.py`` by the setup script the app serves, and run by systemd
(``privnet-agent.service``) or, without systemd, in the background by ``/etc/privnet/up``.

Three loops, each in its own thread:

* **report** (every ``report_interval`` seconds): reads the bridge and its VXLAN ports over
  rtnetlink, the WireGuard peers of ``wg0`` (wireguard-go's UAPI socket, or ``wg show`` for kernel
  WireGuard), and POSTs them to ``{app_url}/api/v1/agent/report`` with the config version it has
  applied. The report's JSON schema is documented in ``webapp/reports.py``.
* **config**: long-polls ``GET {app_url}/api/v1/agent/config`` (``If-None-Match`` of the version it
  holds, ``wait=55``). A new version is validated strictly (a malformed answer is refused with one
  log line and nothing is applied), written to ``/etc/privnet/config.json``, and applied: the agent
  reads the actual state (links, addresses, bridge, ports over rtnetlink; WireGuard over UAPI or
  ``wg``), computes the difference (``diff``) and applies only that, one log line per change. It
  never recreates an interface that need not be, so a change to one link leaves the others alone.
  A pending ``key_rotation`` makes it generate a key pair, send the public half, and switch
  ``wg0`` to the new private key. DNS endpoints are re-resolved at every long-poll turn.
* **probes** (every 0.2 s, ``PeerMonitor``): an ICMP echo to each linked peer over ``wg0``; the
  smoothed RTT and loss go into the report (the app plans the spanning tree from them). A peer
  silent for a second has its VXLAN port taken down (STP reroutes at once instead of waiting for
  max age), and back up after a hold-down once it answers; a new link's port joins the bridge
  only once its peer answers.

When the app is down the report and config loops retry with capped exponential backoff and
jitter, and the host keeps the network it has. The agent never exits on a network, HTTP or JSON error, and never logs
the token or a private key.

    agent.py [--config /etc/privnet/config.json] [--token /etc/privnet/agent.token]
    agent.py --dump     # print one report and exit (no token needed)
    agent.py --diff     # print what applying config.json would change, and exit
    agent.py --apply    # apply config.json once (no app involved), print each change, and exit
    agent.py --no-apply # report only: never change the host
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import http.client
import ipaddress
import json
import logging
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute

AGENT_VERSION = "0.1.0"
REPORT_SCHEMA = 2
DEFAULT_CONFIG_PATH = "/etc/privnet/config.json"
DEFAULT_TOKEN_PATH = "/etc/privnet/agent.token"  # noqa: S105 - a path, not a secret
WIREGUARD_INTERFACE = "wg0"
WIREGUARD_SOCKET_DIR = "/run/wireguard"
REPORT_PATH = "/api/v1/agent/report"
CONFIG_PATH = "/api/v1/agent/config"
PUBLIC_KEY_PATH = "/api/v1/agent/public-key"
HTTP_TIMEOUT_SECONDS = 10
DEFAULT_MAX_BACKOFF_SECONDS = 300.0
LONG_POLL_WAIT_SECONDS = 55  # the app holds a conditional GET up to this long (it allows 60)
CONFIG_RETRY_SECONDS = 1.0  # first retry of a failed config fetch, doubling ...
CONFIG_MAX_BACKOFF_SECONDS = 30.0  # ... up to this: an app back after an outage is seen within 30 s
CONFIG_SETTLE_SECONDS = 10.0  # a config.json the setup script wrote is left to its `up` this long
OWNER_ALIAS = "privnet"  # every interface privnet creates carries this alias (as the setup script's)
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


def _attr(msg: Any, key: str) -> Any:
    """Netlink attribute ``key`` of ``msg`` (None if absent), on every pyroute2 a host may have.

    ``get_attr`` reads attributes on pyroute2 0.7 (Debian bookworm's ``python3-pyroute2``) and 0.9
    alike; ``msg.get("IFLA_…")`` finds them on 0.9 but is None on 0.7 (it reads header fields only).
    """
    return msg.get_attr(key) if msg is not None else None


def _info(msg: Any, key: str) -> Any:
    """``key`` inside the link's ``IFLA_LINKINFO`` (kind, slave kind, (slave) data)."""
    return _attr(_attr(msg, "IFLA_LINKINFO"), key)


class BridgeReader:
    """The bridge and its VXLAN ports as the kernel reports them, read with pyroute2."""

    def read(self, bridge_name: str, links: list | None = None) -> tuple[dict | None, list[dict]]:
        """``(bridge, ports)``; ``(None, [])`` when there is no bridge of that name.

        ``links``: a link dump already made (``ipr.get_links()``); read now when None.
        """
        if links is None:
            with IPRoute() as ipr:
                links = list(ipr.get_links())
        bridge_msg = next(
            (m for m in links if _attr(m, "IFLA_IFNAME") == bridge_name and _info(m, "IFLA_INFO_KIND") == "bridge"),
            None,
        )
        if bridge_msg is None:
            return None, []
        bridge_index = bridge_msg["index"]
        ports = [
            self._port(m)
            for m in links
            if _attr(m, "IFLA_MASTER") == bridge_index
            and _info(m, "IFLA_INFO_KIND") == "vxlan"
            and _info(m, "IFLA_INFO_SLAVE_KIND") == "bridge"
        ]
        ports.sort(key=lambda port: port["port_no"])
        return self._bridge(bridge_msg), ports

    @staticmethod
    def _bridge(msg: Any) -> dict:
        data = _info(msg, "IFLA_INFO_DATA")
        return {
            "name": _attr(msg, "IFLA_IFNAME"),
            "stp_state": _attr(data, "IFLA_BR_STP_STATE"),
            "bridge_id": format_bridge_id(_attr(data, "IFLA_BR_BRIDGE_ID")),
            "designated_root": format_bridge_id(_attr(data, "IFLA_BR_ROOT_ID")),
            "root_port": _attr(data, "IFLA_BR_ROOT_PORT"),
            "root_path_cost": _attr(data, "IFLA_BR_ROOT_PATH_COST"),
            "hello_time": _seconds(_attr(data, "IFLA_BR_HELLO_TIME")),
            "max_age": _seconds(_attr(data, "IFLA_BR_MAX_AGE")),
            "forward_delay": _seconds(_attr(data, "IFLA_BR_FORWARD_DELAY")),
            "topology_change": bool(_attr(data, "IFLA_BR_TOPOLOGY_CHANGE")),
            "topology_change_detected": bool(_attr(data, "IFLA_BR_TOPOLOGY_CHANGE_DETECTED")),
        }

    @staticmethod
    def _port(msg: Any) -> dict:
        data = _info(msg, "IFLA_INFO_SLAVE_DATA")
        state = _attr(data, "IFLA_BRPORT_STATE")
        return {
            "name": _attr(msg, "IFLA_IFNAME"),
            "port_id": _attr(data, "IFLA_BRPORT_ID"),
            "port_no": _attr(data, "IFLA_BRPORT_NO"),
            "state": PORT_STATES.get(state, "disabled"),
            "path_cost": _attr(data, "IFLA_BRPORT_COST"),
            "priority": _attr(data, "IFLA_BRPORT_PRIORITY"),
            "designated_root": format_bridge_id(_attr(data, "IFLA_BRPORT_ROOT_ID")),
            "designated_bridge": format_bridge_id(_attr(data, "IFLA_BRPORT_BRIDGE_ID")),
            "designated_port": _attr(data, "IFLA_BRPORT_DESIGNATED_PORT"),
            "designated_cost": _attr(data, "IFLA_BRPORT_DESIGNATED_COST"),
        }


# --- reading WireGuard (UAPI socket, or `wg show` for kernel WireGuard) ------------------------


def _hex_key_to_base64(hex_key: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_key)).decode("ascii")


def uapi_request(socket_path: str, request: str, *, timeout: float = 5) -> str:
    """One exchange on a WireGuard UAPI socket (``get=1`` or ``set=1``): the answer up to its blank line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(request.encode("ascii"))
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if b"".join(chunks[-2:]).endswith(b"\n\n"):
                break
    return b"".join(chunks).decode("ascii")


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
        return uapi_request(self.socket_path, "get=1\n\n")

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
    probes: list[dict] | None = None,
) -> dict:
    """One report of this host's bridge, VXLAN ports, WireGuard peers and probes; reads, changes nothing.

    ``config["version"]`` is reported as the config version the host runs: pass the one applied.
    ``probes``: ``PeerMonitor.report()`` (none when no monitor runs).
    """
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
        "probes": probes or [],
    }


# --- talking to the app ------------------------------------------------------------------------


class AppRejected(Exception):
    """The app answered with an HTTP error; ``detail`` is its ``error`` sentence, if any."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.detail = detail


ReportRejected = AppRejected  # its name before the agent also fetched configs


def _request(
    app_url: str,
    path: str,
    token: str,
    *,
    body: dict | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_SECONDS,
) -> tuple[int, Any, bytes]:
    """One request to the app: ``(status, response headers, body)``; 304 is returned, other errors raise."""
    url = app_url.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise ValueError("app_url must be an http or https URL")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={
            **({"Content-Type": "application/json"} if body is not None else {}),
            **(headers or {}),
            "Authorization": f"Bearer {token}",
            "User-Agent": f"privnet-agent/{AGENT_VERSION}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.headers, response.read(1 << 20)
    except urllib.error.HTTPError as error:
        if error.code == 304:
            return 304, error.headers, b""
        raise AppRejected(error.code, _error_detail(error)) from None


def _json_object(body: bytes) -> dict:
    if not body.strip():
        return {}
    answer = json.loads(body)
    return answer if isinstance(answer, dict) else {}


def post_report(app_url: str, token: str, report: dict, *, timeout: float = HTTP_TIMEOUT_SECONDS) -> dict:
    """POST the report; returns the app's JSON answer (``{}`` if none). Raises on any failure."""
    _status, _headers, body = _request(app_url, REPORT_PATH, token, body=report, timeout=timeout)
    return _json_object(body)


def fetch_config(app_url: str, token: str, known_version: str | None, *, wait: int) -> tuple[bytes, str | None] | None:
    """``GET /api/v1/agent/config``: ``(body, ETag)``, or None when ``known_version`` is still current.

    With a ``known_version`` the app holds the request up to ``wait`` seconds for a new one.
    """
    headers = {"If-None-Match": f'"{known_version}"'} if known_version else {}
    status, response_headers, body = _request(
        app_url, f"{CONFIG_PATH}?wait={wait}", token, headers=headers, timeout=wait + HTTP_TIMEOUT_SECONDS + 5
    )
    if status == 304:
        return None
    return body, response_headers.get("ETag")


def post_public_key(app_url: str, token: str, public_key: str, nonce: str) -> dict:
    """``POST /api/v1/agent/public-key``: the public half of the key pair made for rotation ``nonce``."""
    _status, _headers, body = _request(app_url, PUBLIC_KEY_PATH, token, body={"public_key": public_key, "nonce": nonce})
    return _json_object(body)


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


# --- the desired state: a HostConfig, validated ------------------------------------------------
# The app's ``HostConfig.to_dict()`` (webapp/hostconfig.py), checked as strictly as the app checks
# what it renders into a setup script (webapp/rendering.py): the agent applies it as root.

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,14}$")  # a node name is an interface name on its peers
RESERVED_NAMES = frozenset({"lo", "wg0", "all", "default", "bonding_masters", "privnet"})
NETWORK_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
APP_URL_PATTERN = re.compile(r"^https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?$")
VERSION_PATTERN = re.compile(r"^[0-9a-f]{1,64}$")
NONCE_PATTERN = re.compile(r"^[0-9a-f]{32}$")
DNS_LABEL_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)
ENTITY_TAG_PATTERN = re.compile(r'^(?:W/)?"([0-9a-f]{1,64})"$')
PRIORITY_STEP = 4096


class ConfigError(ValueError):
    """A config that must not be applied; the message names the field and the rule."""


def _need(data: dict, key: str, where: str) -> Any:
    if key not in data:
        raise ConfigError(f"{where}{key} is missing")
    return data[key]


def _int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{field} must be a whole number from {low} to {high}")
    return value


def _text(value: Any, field: str, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(f"{field} {rule}")
    return value


def _ipv4(value: Any, field: str) -> str:
    try:
        if isinstance(value, str) and str(ipaddress.IPv4Address(value)) == value:
            return value
    except ValueError:
        pass
    raise ConfigError(f"{field} must be an IPv4 address such as 10.88.88.1")


def _name(value: Any, field: str) -> str:
    _text(value, field, NAME_PATTERN, "must be 1-15 characters of a-z, 0-9 and '-', starting with a letter")
    if value in RESERVED_NAMES:
        raise ConfigError(f"{field} must not be the reserved name {value}")
    return value


def _key(value: Any, field: str) -> str:
    """A WireGuard key as ``wg`` prints it: canonical base64 of 32 bytes."""
    try:
        if (
            isinstance(value, str)
            and len(value) == 44
            and base64.b64encode(base64.b64decode(value, validate=True)) == (value.encode())
        ):
            return value
    except (binascii.Error, ValueError):
        pass
    raise ConfigError(f"{field} must be a WireGuard key: base64 of 32 bytes")


def split_endpoint(value: str) -> tuple[str, int]:
    """``host:port`` → ``(host, port)``; an IPv6 host comes without its brackets. ValueError if malformed."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})", value) or re.fullmatch(
        r"([^:\[\]]+):([0-9]{1,5})", value
    )
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise ValueError("not host:port")
    host = match.group(1)
    if value.startswith("["):
        ipaddress.IPv6Address(host)
    elif re.fullmatch(r"[0-9.]+", host):
        ipaddress.IPv4Address(host)
    elif len(host) > 253 or not all(DNS_LABEL_PATTERN.fullmatch(label) for label in host.rstrip(".").split(".")):
        raise ValueError("not a DNS name")
    return host, int(match.group(2))


def _endpoint(value: Any, field: str) -> str | None:
    if value is None:
        return None
    try:
        if isinstance(value, str) and len(value) <= 270:
            split_endpoint(value)
            return value
    except ValueError:
        pass
    raise ConfigError(f"{field} must be host:port with an IPv4 address, a bracketed IPv6 address or a DNS name")


def _unique(values: list, field: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"{field} must be unique ({value!r} repeats)")
        seen.add(value)


def validate_config(data: Any) -> dict:
    """The host's desired state if ``data`` is a well-formed HostConfig dict; ConfigError otherwise.

    Returns a new dict with exactly the HostConfig fields. Unknown extra fields are ignored (an
    app newer than this agent may add some); missing ones, wrong types and values out of range
    are refused.
    """
    if not isinstance(data, dict):
        raise ConfigError("the config must be a JSON object")
    config: dict[str, Any] = {}
    config["node"] = _name(_need(data, "node", ""), "node")
    config["network"] = _text(
        _need(data, "network", ""), "network", NETWORK_NAME_PATTERN, "must be 1-64 letters, digits, ' ', '.', '_', '-'"
    )
    config["app_url"] = _text(_need(data, "app_url", ""), "app_url", APP_URL_PATTERN, "must be an http(s) URL")
    config["version"] = _text(_need(data, "version", ""), "version", VERSION_PATTERN, "must be hexadecimal")
    config["listen_port"] = _int(_need(data, "listen_port", ""), "listen_port", 1, 65535)
    config["vxlan_port"] = _int(_need(data, "vxlan_port", ""), "vxlan_port", 1, 65535)
    for key in ("underlay", "overlay"):
        config[f"{key}_ip"] = _ipv4(_need(data, f"{key}_ip", ""), f"{key}_ip")
        config[f"{key}_prefix"] = _int(_need(data, f"{key}_prefix", ""), f"{key}_prefix", 8, 30)
    config["bridge_name"] = _name(_need(data, "bridge_name", ""), "bridge_name")
    config["bridge_priority"] = _int(_need(data, "bridge_priority", ""), "bridge_priority", 0, 61440)
    if config["bridge_priority"] % PRIORITY_STEP:
        raise ConfigError(f"bridge_priority must be a multiple of {PRIORITY_STEP}")
    config["mtu"] = _int(_need(data, "mtu", ""), "mtu", 1280, 9000)
    config["stp_hello_time"] = _int(_need(data, "stp_hello_time", ""), "stp_hello_time", 1, 10)
    config["stp_forward_delay"] = _int(_need(data, "stp_forward_delay", ""), "stp_forward_delay", 2, 30)
    config["stp_max_age"] = _int(_need(data, "stp_max_age", ""), "stp_max_age", 6, 40)
    config["report_interval"] = _int(_need(data, "report_interval", ""), "report_interval", 1, 86400)
    config["fast_failover"] = data.get("fast_failover", True)  # absent from apps before it existed
    if not isinstance(config["fast_failover"], bool):
        raise ConfigError("fast_failover must be true or false")
    rotation = _need(data, "key_rotation", "")
    config["key_rotation"] = (
        None
        if rotation is None
        else _text(rotation, "key_rotation", NONCE_PATTERN, "must be null or 32 lower-case hex digits")
    )

    peers, links = _need(data, "peers", ""), _need(data, "links", "")
    if not isinstance(peers, list) or not isinstance(links, list):
        raise ConfigError("peers and links must be lists")
    config["peers"] = []
    for index, peer in enumerate(peers):
        where = f"peers[{index}]."
        if not isinstance(peer, dict):
            raise ConfigError(f"peers[{index}] must be an object")
        allowed_ip = _need(peer, "allowed_ip", where)
        address, slash, prefix = allowed_ip.partition("/") if isinstance(allowed_ip, str) else ("", "", "")
        if (slash, prefix) != ("/", "32"):
            raise ConfigError(f"{where}allowed_ip must be an IPv4 address with /32")
        _ipv4(address, f"{where}allowed_ip")
        keepalive = _need(peer, "keepalive", where)
        config["peers"].append(
            {
                "name": _name(_need(peer, "name", where), f"{where}name"),
                "public_key": _key(_need(peer, "public_key", where), f"{where}public_key"),
                "allowed_ip": allowed_ip,
                "endpoint": _endpoint(_need(peer, "endpoint", where), f"{where}endpoint"),
                "keepalive": None if keepalive is None else _int(keepalive, f"{where}keepalive", 1, 65535),
            }
        )
    config["links"] = []
    for index, link in enumerate(links):
        where = f"links[{index}]."
        if not isinstance(link, dict):
            raise ConfigError(f"links[{index}] must be an object")
        config["links"].append(
            {
                "name": _name(_need(link, "name", where), f"{where}name"),
                "vni": _int(_need(link, "vni", where), f"{where}vni", 1, 16777215),
                "local": _ipv4(_need(link, "local", where), f"{where}local"),
                "remote": _ipv4(_need(link, "remote", where), f"{where}remote"),
                "cost": _int(_need(link, "cost", where), f"{where}cost", 1, 65535),
            }
        )

    # How the parts fit together (what build_host_config guarantees).
    if config["stp_max_age"] < 2 * (config["stp_hello_time"] + 1):
        raise ConfigError("stp_max_age must be at least 2 x (stp_hello_time + 1)")
    _unique([peer["name"] for peer in config["peers"]], "peers.name")
    _unique([peer["public_key"] for peer in config["peers"]], "peers.public_key")
    _unique([peer["allowed_ip"] for peer in config["peers"]], "peers.allowed_ip")
    _unique([link["name"] for link in config["links"]], "links.name")
    _unique([link["vni"] for link in config["links"]], "links.vni")
    peer_addresses = {peer["name"]: peer["allowed_ip"].partition("/")[0] for peer in config["peers"]}
    for index, item in [*enumerate(config["peers"]), *enumerate(config["links"])]:
        kind = "peers" if "public_key" in item else "links"
        if item["name"] in (config["node"], config["bridge_name"]):
            raise ConfigError(f"{kind}[{index}].name must not be the node's own name or its bridge's")
    for index, link in enumerate(config["links"]):
        if link["local"] != config["underlay_ip"]:
            raise ConfigError(f"links[{index}].local must be the node's underlay_ip")
        if peer_addresses.get(link["name"]) != link["remote"]:
            raise ConfigError(f"links[{index}] must lead to the peer of the same name, at that peer's underlay address")
    return config


def validate_answer(body: bytes, etag: str | None, *, node: str | None) -> dict:
    """The config in the body of a ``GET /api/v1/agent/config`` answer; ConfigError if anything is off."""
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError("the answer is not JSON") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("config"), dict):
        raise ConfigError('the answer must be a JSON object {"config": {...}}')
    config = validate_config(answer["config"])
    if etag is not None:
        match = ENTITY_TAG_PATTERN.fullmatch(etag.strip())
        if match is None or match.group(1) != config["version"]:
            raise ConfigError("the ETag header does not name the config's version")
    if node is not None and config["node"] != node:
        raise ConfigError(f"the config is node {config['node']}'s, and this host is node {node}")
    return config


def bridge_mac_address(config: dict) -> str:
    """The bridge's fixed, locally administered MAC: as ``webapp.rendering.bridge_mac_address``."""
    digest = hashlib.sha256(f"privnet bridge {config['network']}/{config['node']}".encode()).digest()
    return ":".join(f"{byte:02x}" for byte in (0x02, *digest[:5]))


def bridge_settings(config: dict) -> dict[str, int]:
    """The bridge's STP settings as ip-link and sysfs name them (timers in centiseconds), in up's order."""
    return {
        "stp_state": 1,
        "hello_time": config["stp_hello_time"] * 100,
        "max_age": config["stp_max_age"] * 100,
        "forward_delay": config["stp_forward_delay"] * 100,
        "priority": config["bridge_priority"],
    }


# --- the actual state: the kernel, over rtnetlink (pyroute2) -------------------------------------
# The few calls the agent needs, in the forms that work on pyroute2 0.7 and 0.9 alike (design §8:
# a VXLAN's unicast remote goes in ``vxlan_group``; STP timers are centiseconds; port states are
# the kernel's under STP and never set here).

STP_TIMERS = ("hello_time", "max_age", "forward_delay")
BRIDGE_ATTRIBUTES = {  # our name -> (IFLA_BR_* read, br_* keyword written)
    "stp_state": ("IFLA_BR_STP_STATE", "br_stp_state"),
    "hello_time": ("IFLA_BR_HELLO_TIME", "br_hello_time"),
    "max_age": ("IFLA_BR_MAX_AGE", "br_max_age"),
    "forward_delay": ("IFLA_BR_FORWARD_DELAY", "br_forward_delay"),
    "priority": ("IFLA_BR_PRIORITY", "br_priority"),
}


@dataclass(frozen=True)
class Vxlan:
    """What identifies a VXLAN device: a change to any of it means a new device."""

    vni: int
    local: str | None
    remote: str | None
    port: int | None

    def describe(self) -> str:
        return f"vni {self.vni}, local {self.local}, remote {self.remote}, port {self.port}"


@dataclass
class Interface:
    """One network interface as the kernel has it (what the diff needs to know)."""

    name: str
    index: int
    kind: str | None
    up: bool
    mtu: int | None = None
    alias: str | None = None
    mac: str | None = None
    master: str | None = None  # the name of its master (a bridge), if any
    addresses: tuple[str, ...] = ()  # IPv4, "address/prefix"
    vxlan: Vxlan | None = None
    cost: int | None = None  # path cost, when a bridge port
    bridge: dict[str, int] | None = None  # BRIDGE_ATTRIBUTES and root_port, when a bridge
    tx_checksum: bool | None = None  # VXLANs only; None when ethtool could not tell


def ethtool_tx_checksum(name: str) -> bool | None:
    """Whether tx checksum offload is on (``ethtool -k``); None when ethtool cannot tell."""
    try:
        result = subprocess.run(["ethtool", "-k", name], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in result.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "tx-checksumming":
            return value.split()[0] == "on" if value.split() else None
    return None


def ethtool_tx_off(name: str) -> None:
    """``ethtool -K NAME tx off`` (the seed's checksum workaround on each VXLAN, design §1)."""
    result = subprocess.run(
        ["ethtool", "-K", name, "tx", "off"], capture_output=True, text=True, timeout=10, check=False
    )
    if result.returncode != 0:
        raise OSError(f"ethtool -K {name} tx off exited {result.returncode}: {result.stderr.strip()[:120]}")


class Kernel:
    """Links, addresses, the bridge and its ports, read and changed with one pyroute2 ``IPRoute``."""

    def __init__(self, ipr: Any, *, tx_checksum: Callable[[str], bool | None] = ethtool_tx_checksum) -> None:
        self.ipr = ipr
        self.tx_checksum = tx_checksum

    def interfaces(self) -> dict[str, Interface]:
        messages = list(self.ipr.get_links())
        names = {msg["index"]: _attr(msg, "IFLA_IFNAME") for msg in messages}
        addresses: dict[int, list[str]] = defaultdict(list)
        for msg in self.ipr.get_addr(family=socket.AF_INET):
            address = _attr(msg, "IFA_LOCAL") or _attr(msg, "IFA_ADDRESS")
            addresses[msg["index"]].append(f"{address}/{msg['prefixlen']}")
        found = {}
        for msg in messages:
            kind = _info(msg, "IFLA_INFO_KIND")
            data = _info(msg, "IFLA_INFO_DATA")
            slave = _info(msg, "IFLA_INFO_SLAVE_DATA") if _info(msg, "IFLA_INFO_SLAVE_KIND") == "bridge" else None
            interface = Interface(
                name=names[msg["index"]],
                index=msg["index"],
                kind=kind,
                up=bool(msg["flags"] & 1),  # IFF_UP
                mtu=_attr(msg, "IFLA_MTU"),
                alias=_attr(msg, "IFLA_IFALIAS"),
                mac=_attr(msg, "IFLA_ADDRESS"),
                master=names.get(_attr(msg, "IFLA_MASTER")),
                addresses=tuple(addresses.get(msg["index"], ())),
                cost=_attr(slave, "IFLA_BRPORT_COST") if slave is not None else None,
            )
            if kind == "vxlan":
                interface.vxlan = Vxlan(
                    vni=_attr(data, "IFLA_VXLAN_ID"),
                    local=_attr(data, "IFLA_VXLAN_LOCAL"),
                    remote=_attr(data, "IFLA_VXLAN_GROUP"),
                    port=_attr(data, "IFLA_VXLAN_PORT"),
                )
                interface.tx_checksum = self.tx_checksum(interface.name)
            elif kind == "bridge":
                interface.bridge = {key: _attr(data, attr) for key, (attr, _) in BRIDGE_ATTRIBUTES.items()}
                interface.bridge["root_port"] = _attr(data, "IFLA_BR_ROOT_PORT")  # 0: this bridge is the root
            found[interface.name] = interface
        return found

    def index(self, name: str) -> int:
        found = self.ipr.link_lookup(ifname=name)
        if not found:
            raise LookupError(f"no interface {name}")
        return found[0]

    def add_bridge(self, name: str, mac: str, settings: dict[str, int]) -> None:
        attributes = {BRIDGE_ATTRIBUTES[key][1]: value for key, value in settings.items()}
        self.ipr.link("add", ifname=name, kind="bridge", address=mac, **attributes)

    def set_bridge(self, name: str, settings: dict[str, int]) -> None:
        attributes = {BRIDGE_ATTRIBUTES[key][1]: value for key, value in settings.items()}
        self.ipr.link("set", index=self.index(name), kind="bridge", **attributes)

    def add_vxlan(self, name: str, vxlan: Vxlan) -> None:
        self.ipr.link(
            "add", ifname=name, kind="vxlan", vxlan_id=vxlan.vni, vxlan_local=vxlan.local,
            vxlan_group=vxlan.remote, vxlan_port=vxlan.port,
        )  # fmt: skip

    def set_link(self, name: str, **attributes: Any) -> None:
        """``ip link set``: mtu, ifalias, address, state ("up"), master (a name, or None for none)."""
        if "master" in attributes:
            master = attributes["master"]
            attributes["master"] = self.index(master) if master is not None else 0
        self.ipr.link("set", index=self.index(name), **attributes)

    def set_cost(self, name: str, cost: int) -> None:
        self.ipr.brport("set", index=self.index(name), cost=cost)

    def delete(self, name: str) -> None:
        self.ipr.link("del", index=self.index(name))

    def add_address(self, name: str, cidr: str) -> None:
        address, _, prefix = cidr.partition("/")
        self.ipr.addr("add", index=self.index(name), address=address, prefixlen=int(prefix))

    def delete_address(self, name: str, cidr: str) -> None:
        address, _, prefix = cidr.partition("/")
        self.ipr.addr("del", index=self.index(name), address=address, prefixlen=int(prefix))


@contextlib.contextmanager
def open_kernel() -> Iterator[Kernel]:
    with IPRoute() as ipr:
        yield Kernel(ipr)


# --- the actual state: WireGuard (UAPI socket, or the wg tool for kernel WireGuard) -------------


@dataclass(frozen=True)
class WgPeer:
    public_key: str  # base64
    endpoint: str | None
    allowed_ips: tuple[str, ...]  # sorted
    keepalive: int  # 0 = off


@dataclass
class WgDevice:
    listen_port: int | None
    private_key: str | None = field(repr=False)  # base64; never logged
    peers: dict[str, WgPeer] = field(default_factory=dict)  # by public key


@dataclass(frozen=True)
class PeerSet:
    """One peer section of a WireGuard ``set``: remove the peer, or create/update it."""

    public_key: str
    remove: bool = False
    endpoint: str | None = None  # None: leave as it is
    keepalive: int | None = None  # None: leave as it is; 0: off
    allowed_ips: tuple[str, ...] | None = None  # None: leave as they are; else replace with these


def _hex(key: str) -> str:
    return base64.b64decode(key).hex()


def parse_uapi_device(text: str) -> WgDevice:
    """A whole device from a UAPI ``get=1`` answer (the private key kept, for comparison only)."""
    device = WgDevice(listen_port=None, private_key=None)
    peer: dict | None = None

    def finish() -> None:
        if peer is not None:
            device.peers[peer["public_key"]] = WgPeer(
                peer["public_key"], peer["endpoint"], tuple(sorted(peer["allowed_ips"])), peer["keepalive"]
            )

    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "errno" and value != "0":
            raise OSError(f"wireguard UAPI get failed: errno={value}")
        if key == "public_key":
            finish()
            peer = {"public_key": _hex_key_to_base64(value), "endpoint": None, "allowed_ips": [], "keepalive": 0}
        elif peer is None:
            if key == "private_key":
                device.private_key = _hex_key_to_base64(value)
            elif key == "listen_port":
                device.listen_port = int(value)
        elif key == "endpoint":
            peer["endpoint"] = value
        elif key == "allowed_ip":
            peer["allowed_ips"].append(value)
        elif key == "persistent_keepalive_interval":
            peer["keepalive"] = int(value)
    finish()
    return device


def parse_wg_dump_device(text: str) -> WgDevice:
    """A whole device from ``wg show IFACE dump``."""
    lines = text.splitlines()
    if not lines:
        raise ValueError("wg show dump printed nothing")
    first = lines[0].split("\t")
    device = WgDevice(
        listen_port=int(first[2]) if len(first) > 2 and first[2].isdigit() else None,
        private_key=first[0] if first[0] not in ("(none)", "") else None,
    )
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) < 8:
            continue
        public_key, _psk, endpoint, allowed, _handshake, _rx, _tx, keepalive = fields[:8]
        device.peers[public_key] = WgPeer(
            public_key,
            None if endpoint == "(none)" else endpoint,
            tuple(sorted(ip for ip in allowed.split(",") if ip and ip != "(none)")),
            int(keepalive) if keepalive.isdigit() else 0,
        )
    return device


def uapi_set_request(*, private_key: str | None = None, listen_port: int | None = None, peers=()) -> str:
    """The text of one UAPI ``set=1`` transaction."""
    lines = ["set=1"]
    if private_key is not None:
        lines.append(f"private_key={_hex(private_key)}")
    if listen_port is not None:
        lines.append(f"listen_port={listen_port}")
    for peer in peers:
        lines.append(f"public_key={_hex(peer.public_key)}")
        if peer.remove:
            lines.append("remove=true")
            continue
        if peer.endpoint is not None:
            lines.append(f"endpoint={peer.endpoint}")
        if peer.keepalive is not None:
            lines.append(f"persistent_keepalive_interval={peer.keepalive}")
        if peer.allowed_ips is not None:
            lines.append("replace_allowed_ips=true")
            lines.extend(f"allowed_ip={ip}" for ip in peer.allowed_ips)
    return "\n".join(lines) + "\n\n"


def wg_set_argv(interface: str, *, private_key: str | None = None, listen_port: int | None = None, peers=()):
    """``(argv, stdin)`` of the ``wg set`` command doing the same (the private key goes on stdin)."""
    argv = ["wg", "set", interface]
    if private_key is not None:
        argv += ["private-key", "/dev/stdin"]
    if listen_port is not None:
        argv += ["listen-port", str(listen_port)]
    for peer in peers:
        argv += ["peer", peer.public_key]
        if peer.remove:
            argv.append("remove")
            continue
        if peer.endpoint is not None:
            argv += ["endpoint", peer.endpoint]
        if peer.keepalive is not None:
            argv += ["persistent-keepalive", str(peer.keepalive) if peer.keepalive else "off"]
        if peer.allowed_ips is not None:
            argv += ["allowed-ips", ",".join(peer.allowed_ips)]
    return argv, (private_key + "\n" if private_key is not None else None)


class WireGuard:
    """Read and change ``wg0``: wireguard-go's UAPI socket where there is one, else the ``wg`` tool."""

    def __init__(self, interface: str = WIREGUARD_INTERFACE, socket_dir: str = WIREGUARD_SOCKET_DIR) -> None:
        self.interface = interface
        self.socket_path = os.path.join(socket_dir, f"{interface}.sock")

    def read(self) -> WgDevice:
        if os.path.exists(self.socket_path):
            return parse_uapi_device(uapi_request(self.socket_path, "get=1\n\n"))
        return parse_wg_dump_device(self._wg(["wg", "show", self.interface, "dump"]))

    def set(self, *, private_key: str | None = None, listen_port: int | None = None, peers=()) -> None:
        if os.path.exists(self.socket_path):
            answer = uapi_request(self.socket_path, uapi_set_request(
                private_key=private_key, listen_port=listen_port, peers=peers))  # fmt: skip
            if "errno=0" not in answer.splitlines():
                raise OSError(f"wireguard UAPI set failed: {answer.strip()[:60]}")
            return
        argv, stdin = wg_set_argv(self.interface, private_key=private_key, listen_port=listen_port, peers=peers)
        self._wg(argv, stdin)

    @staticmethod
    def _wg(argv: list[str], stdin: str | None = None) -> str:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=10, check=False)
        if result.returncode != 0:
            said = result.stderr.strip().splitlines()[-1:] or [""]
            raise OSError(f"{' '.join(argv[:3])} exited {result.returncode} {said[0][:120]}".strip())
        return result.stdout


def generate_key_pair() -> tuple[str, str]:
    """``(private, public)`` base64 keys from ``wg genkey`` and ``wg pubkey`` (hosts have wireguard-tools)."""
    private = WireGuard._wg(["wg", "genkey"]).strip()
    public = WireGuard._wg(["wg", "pubkey"], private + "\n").strip()
    _key(private, "generated private key")
    _key(public, "generated public key")
    return private, public


def public_key_of(private: str) -> str:
    return WireGuard._wg(["wg", "pubkey"], private + "\n").strip()


# --- the difference: desired vs actual, as a list of changes (pure functions) ------------------


@dataclass(frozen=True)
class Change:
    """One change to make, logged as one line: ``"{subject}: {what}"``, e.g. ``link bob: cost 100 -> 40``.

    ``op`` names the Applier method that makes it, ``args`` its arguments (kept out of repr:
    they may hold a private key). A ``quiet`` change sets what cannot be read back (it may change
    nothing): it is made, but neither logged nor counted.
    """

    subject: str
    what: str
    op: str
    args: dict = field(default_factory=dict, repr=False, compare=False)
    quiet: bool = False  # made to be sure of what cannot be read back: not logged as a change

    def __str__(self) -> str:
        return f"{self.subject}: {self.what}"


@dataclass
class Actual:
    """The host as it is: its interfaces, and wg0's WireGuard state (None when wg0 is missing)."""

    interfaces: dict[str, Interface]
    wireguard: WgDevice | None


def _short(key: str) -> str:
    return key[:8] + "…"


def _seconds_text(centiseconds: int | None) -> str:
    return "?" if centiseconds is None else f"{centiseconds / 100:g} s"


def _converge_address(subject: str, name: str, have: tuple[str, ...], want: str) -> list[Change]:
    """That one IPv4 address on ``name`` and no other (the new one first, so there is no gap)."""
    changes = []
    if want not in have:
        changes.append(Change(subject, f"address {want}", "add_address", {"name": name, "cidr": want}))
    changes += [
        Change(subject, f"address {old} removed", "delete_address", {"name": name, "cidr": old})
        for old in have
        if old != want
    ]
    return changes


def diff_bridge(config: dict, interfaces: dict[str, Interface]) -> list[Change]:
    """The bridge: created if missing, else its STP settings, MAC, address, alias and state in place."""
    name = config["bridge_name"]
    subject = f"bridge {name}"
    settings = bridge_settings(config)
    mac = bridge_mac_address(config)
    address = f"{config['overlay_ip']}/{config['overlay_prefix']}"
    have = interfaces.get(name)
    if have is None:
        what = (
            f"created (STP on, priority {settings['priority']}, hello {_seconds_text(settings['hello_time'])}, "
            f"max age {_seconds_text(settings['max_age'])}, forward delay {_seconds_text(settings['forward_delay'])}, "
            f"address {address})"
        )
        return [Change(subject, what, "add_bridge", {"name": name, "mac": mac, "settings": settings, "cidr": address})]
    if have.kind != "bridge" or have.bridge is None:
        return [Change(subject, "exists and is not a bridge: privnet will not replace it", "refuse")]
    changes = []
    if have.alias != OWNER_ALIAS:
        changes.append(Change(subject, f"alias {OWNER_ALIAS}", "set_link", {"name": name, "ifalias": OWNER_ALIAS}))
    # The kernel shows a bridge's operational STP timers: its own while it is the root, else the
    # root's. A non-root bridge's own timers (used should it become the root) cannot be read, so
    # they are set every time; quietly when they equal what is shown.
    root = have.bridge.get("root_port") in (0, None)
    unseen: dict[str, int] = {}
    for key, value in settings.items():
        old = have.bridge.get(key)
        if key in STP_TIMERS:
            if old == value and not root:
                unseen[key] = value
            if old != value:
                shown = _seconds_text(old) if root else f"{_seconds_text(old)} (the root's)"
                what = f"{key.replace('_', ' ')} {shown} -> {_seconds_text(value)}"
                changes.append(Change(subject, what, "set_bridge", {"name": name, "settings": {key: value}}))
        elif old != value:
            what = f"{key.replace('_', ' ')} {old} -> {value}"
            changes.append(Change(subject, what, "set_bridge", {"name": name, "settings": {key: value}}))
    if unseen:
        what = f"STP timers {', '.join(unseen)} set again (not readable while not the root)"
        changes.append(Change(subject, what, "set_bridge", {"name": name, "settings": unseen}, quiet=True))
    if (have.mac or "").lower() != mac:
        changes.append(Change(subject, f"MAC address {have.mac} -> {mac}", "set_link", {"name": name, "address": mac}))
    changes += _converge_address(subject, name, have.addresses, address)
    if not have.up:
        changes.append(Change(subject, "up", "set_link", {"name": name, "state": "up"}))
    return changes


def stale_bridges(config: dict, interfaces: dict[str, Interface]) -> list[Change]:
    """privnet's bridges under another name (the network's bridge was renamed)."""
    return [
        Change(f"bridge {iface.name}", f"removed (this network's bridge is {config['bridge_name']} now)", "delete",
               {"name": iface.name})
        for iface in interfaces.values()
        if iface.kind == "bridge" and iface.alias == OWNER_ALIAS and iface.name != config["bridge_name"]
    ]  # fmt: skip


def diff_wg0(config: dict, actual: Actual, private_key: str | None) -> list[Change]:
    """wg0 itself: its address, state, listen port and private key (its peers: diff_peers)."""
    have = actual.interfaces.get(WIREGUARD_INTERFACE)
    if have is None or actual.wireguard is None:
        return [Change("wg0", "missing: run /etc/privnet/up to create it", "refuse")]
    changes = []
    if have.alias != OWNER_ALIAS:
        changes.append(Change("wg0", f"alias {OWNER_ALIAS}", "set_link", {"name": "wg0", "ifalias": OWNER_ALIAS}))
    changes += _converge_address("wg0", "wg0", have.addresses, f"{config['underlay_ip']}/{config['underlay_prefix']}")
    if not have.up:
        changes.append(Change("wg0", "up", "set_link", {"name": "wg0", "state": "up"}))
    device = actual.wireguard
    if device.listen_port != config["listen_port"]:
        what = f"listen port {device.listen_port} -> {config['listen_port']}"
        changes.append(Change("wg0", what, "wireguard", {"listen_port": config["listen_port"]}))
    if private_key is not None and device.private_key != private_key:
        what = "private key set from /etc/privnet/private.key"
        changes.append(Change("wg0", what, "wireguard", {"private_key": private_key}))
    return changes


def diff_peers(
    config: dict,
    device: WgDevice,
    *,
    endpoints: dict[str, str | None],
    applied_endpoints: dict[str, str],
    peer_names: dict[str, str],
) -> tuple[list[Change], list[Change]]:
    """``(adds and updates, removals)`` of wg0's peers; removals go after the VXLANs using them.

    ``endpoints``: each configured endpoint, resolved to ``ip:port`` (None: cannot resolve now,
    leave it). ``applied_endpoints``: what this agent last set per public key. An endpoint is set
    when the wanted one differs from both the peer's current one and the one last set, so a peer
    that roamed elsewhere after we set its endpoint is not pulled back (WireGuard follows a peer's
    authenticated packets; our intent has not changed). A peer whose key changed (same allowed
    IPs, new key) is replaced in one transaction, keeping the endpoint WireGuard learned.
    """
    desired = {peer["public_key"]: peer for peer in config["peers"]}
    stale = {key: peer for key, peer in device.peers.items() if key not in desired}
    updates: list[Change] = []
    for key, peer in desired.items():
        subject = f"peer {peer['name']}"
        ips = (peer["allowed_ip"],)
        keepalive = peer["keepalive"] or 0
        endpoint = endpoints.get(peer["name"])
        have = device.peers.get(key)
        if have is None:
            old_key = next((old for old, other in stale.items() if peer["allowed_ip"] in other.allowed_ips), None)
            old = stale.pop(old_key) if old_key is not None else None
            new = PeerSet(key, endpoint=endpoint or (old.endpoint if old else None), keepalive=keepalive,
                          allowed_ips=ips)  # fmt: skip
            if old is None:
                what = f"added ({peer['allowed_ip']}, endpoint {new.endpoint or '(none)'}, keepalive {keepalive})"
                updates.append(Change(subject, what, "wireguard", {"peers": [new]}))
            else:
                what = f"key {_short(old.public_key)} -> {_short(key)}"
                updates.append(
                    Change(subject, what, "wireguard", {"peers": [PeerSet(old.public_key, remove=True), new]})
                )
            continue
        if endpoint is not None and have.endpoint != endpoint and applied_endpoints.get(key) != endpoint:
            what = f"endpoint {have.endpoint or '(none)'} -> {endpoint}"
            updates.append(Change(subject, what, "wireguard", {"peers": [PeerSet(key, endpoint=endpoint)]}))
        if have.keepalive != keepalive:
            what = f"keepalive {have.keepalive} -> {keepalive}"
            updates.append(Change(subject, what, "wireguard", {"peers": [PeerSet(key, keepalive=keepalive)]}))
        if have.allowed_ips != ips:
            what = f"allowed IPs {','.join(have.allowed_ips) or '(none)'} -> {','.join(ips)}"
            updates.append(Change(subject, what, "wireguard", {"peers": [PeerSet(key, allowed_ips=ips)]}))
    removals = [
        Change(
            f"peer {peer_names.get(key, _short(key))}", "removed", "wireguard", {"peers": [PeerSet(key, remove=True)]}
        )
        for key in stale
    ]
    return updates, removals


def _is_privnet_vxlan(iface: Interface, bridge: str) -> bool:
    return iface.kind == "vxlan" and (iface.master == bridge or iface.alias == OWNER_ALIAS)


def diff_links(
    config: dict, interfaces: dict[str, Interface], held: frozenset[str] = frozenset()
) -> tuple[list[Change], list[Change]]:
    """``(removals, adds and updates)`` of the VXLANs: one per link, named after the peer, a bridge port.

    A VXLAN whose VNI, local or remote address or port differs is recreated (that one only); its
    cost, MTU, offload, alias, master and state are changed in place. A link in ``held`` (its peer
    does not answer: see ``PeerMonitor``) is made but not brought up, and left down if it is.
    """
    bridge = config["bridge_name"]
    wanted = {link["name"] for link in config["links"]}
    removals = [
        Change(f"link {iface.name}", f"removed (vni {iface.vxlan.vni if iface.vxlan else '?'})", "delete",
               {"name": iface.name})
        for iface in interfaces.values()
        if iface.name not in wanted and _is_privnet_vxlan(iface, bridge)
    ]  # fmt: skip
    changes = []
    for link in config["links"]:
        name, subject = link["name"], f"link {link['name']}"
        want = Vxlan(link["vni"], link["local"], link["remote"], config["vxlan_port"])
        args = {"name": name, "vxlan": want, "mtu": config["mtu"], "bridge": bridge, "cost": link["cost"],
                "up": name not in held}  # fmt: skip
        have = interfaces.get(name)
        if have is None:
            what = f"added (vni {want.vni}, remote {want.remote}, cost {link['cost']})"
            if name in held:
                what += ", down until the peer answers"
            changes.append(Change(subject, what, "add_vxlan", args))
            continue
        if have.kind != "vxlan" or have.vxlan is None:
            changes.append(Change(subject, "exists and is not a VXLAN: privnet will not replace it", "refuse"))
            continue
        if have.vxlan != want:
            differs = [
                f"{attribute} {getattr(have.vxlan, attribute)} -> {getattr(want, attribute)}"
                for attribute in ("vni", "local", "remote", "port")
                if getattr(have.vxlan, attribute) != getattr(want, attribute)
            ]
            changes.append(Change(subject, f"recreated ({', '.join(differs)})", "recreate_vxlan", args))
            continue
        if have.alias != OWNER_ALIAS:
            changes.append(Change(subject, f"alias {OWNER_ALIAS}", "set_link", {"name": name, "ifalias": OWNER_ALIAS}))
        if have.mtu != config["mtu"]:
            changes.append(Change(subject, f"MTU {have.mtu} -> {config['mtu']}", "set_link",
                                  {"name": name, "mtu": config["mtu"]}))  # fmt: skip
        if have.tx_checksum:
            changes.append(Change(subject, "tx checksum offload off", "tx_off", {"name": name}))
        if have.master != bridge:
            changes.append(Change(subject, f"port of {bridge}", "set_link", {"name": name, "master": bridge}))
        if have.cost != link["cost"] or have.master != bridge:
            what = f"cost {have.cost if have.master == bridge else '(none)'} -> {link['cost']}"
            changes.append(Change(subject, what, "set_cost", {"name": name, "cost": link["cost"]}))
        if not have.up and name not in held:
            changes.append(Change(subject, "up", "set_link", {"name": name, "state": "up"}))
    return removals, changes


def diff(
    config: dict,
    actual: Actual,
    *,
    private_key: str | None,
    endpoints: dict[str, str | None],
    applied_endpoints: dict[str, str] | None = None,
    peer_names: dict[str, str] | None = None,
    held: frozenset[str] = frozenset(),
) -> list[Change]:
    """Every change that takes the host from ``actual`` to ``config``, in the order to apply them.

    ``held``: links whose ports stay down (their peers do not answer; see ``diff_links``).

    Bridge and wg0 first; then new and changed peers (a tunnel before the wire that uses it); then
    VXLANs, removals before additions (a removed link's VNI may be reused); then removed peers
    (after the wire that used them); and last, privnet bridges under an old name.
    """
    interfaces = actual.interfaces
    changes = diff_bridge(config, interfaces) + diff_wg0(config, actual, private_key)
    peer_updates: list[Change] = []
    peer_removals: list[Change] = []
    if actual.wireguard is not None:
        peer_updates, peer_removals = diff_peers(
            config, actual.wireguard, endpoints=endpoints,
            applied_endpoints=applied_endpoints or {}, peer_names=peer_names or {},
        )  # fmt: skip
    link_removals, link_changes = diff_links(config, interfaces, held)
    return changes + peer_updates + link_removals + link_changes + peer_removals + stale_bridges(config, interfaces)


def format_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_endpoint(endpoint: str) -> str:
    """``host:port`` with an IP address (as WireGuard shows it); a DNS name is looked up (OSError if it fails)."""
    host, port = split_endpoint(endpoint)
    try:
        return format_endpoint(str(ipaddress.ip_address(host)), port)
    except ValueError:
        pass
    for family, _type, _proto, _name, address in socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM):
        if family in (socket.AF_INET, socket.AF_INET6):
            return format_endpoint(str(ipaddress.ip_address(address[0].split("%")[0])), port)
    raise OSError(f"{host} has no IPv4 or IPv6 address")


def has_dns_endpoints(config: dict) -> bool:
    return any(peer["endpoint"] and not peer["endpoint"].startswith("[") and
               not re.fullmatch(r"[0-9.]+:[0-9]+", peer["endpoint"]) for peer in config["peers"])  # fmt: skip


# --- applying the changes ----------------------------------------------------------------------


class ApplyError(Exception):
    """A change that cannot be made (the message says why)."""


class Applier:
    """Makes each Change (its ``op`` is a method name here); the VXLAN steps mirror the setup script's."""

    def __init__(self, kernel: Kernel, wg: WireGuard, *, ethtool_off: Callable[[str], None] = ethtool_tx_off):
        self._kernel = kernel
        self._wg = wg
        self._ethtool_off = ethtool_off

    def apply(self, change: Change) -> None:
        getattr(self, change.op)(**change.args)

    def refuse(self) -> None:
        raise ApplyError("left as it is")

    def add_bridge(self, name: str, mac: str, settings: dict[str, int], cidr: str) -> None:
        self._kernel.add_bridge(name, mac, settings)
        self._kernel.set_link(name, ifalias=OWNER_ALIAS)
        self._kernel.add_address(name, cidr)
        self._kernel.set_link(name, state="up")

    def set_bridge(self, name: str, settings: dict[str, int]) -> None:
        self._kernel.set_bridge(name, settings)

    def set_link(self, name: str, **attributes: Any) -> None:
        self._kernel.set_link(name, **attributes)

    def add_address(self, name: str, cidr: str) -> None:
        self._kernel.add_address(name, cidr)

    def delete_address(self, name: str, cidr: str) -> None:
        self._kernel.delete_address(name, cidr)

    def delete(self, name: str) -> None:
        self._kernel.delete(name)

    def add_vxlan(self, name: str, vxlan: Vxlan, mtu: int, bridge: str, cost: int, up: bool = True) -> None:
        self._kernel.add_vxlan(name, vxlan)
        self._kernel.set_link(name, mtu=mtu, ifalias=OWNER_ALIAS)
        self._ethtool_off(name)
        self._kernel.set_link(name, master=bridge)
        self._kernel.set_cost(name, cost)  # before it is up: a port never runs STP at a wrong cost
        if up:
            self._kernel.set_link(name, state="up")

    def recreate_vxlan(self, name: str, **args: Any) -> None:
        self._kernel.delete(name)
        self.add_vxlan(name, **args)

    def tx_off(self, name: str) -> None:
        self._ethtool_off(name)

    def set_cost(self, name: str, cost: int) -> None:
        self._kernel.set_cost(name, cost)

    def wireguard(self, **settings: Any) -> None:
        self._wg.set(**settings)


# --- files in /etc/privnet ---------------------------------------------------------------------


def write_file(path: str, content: str, mode: int) -> bool:
    """Write ``content`` to ``path`` atomically (a temporary file renamed over it) with ``mode``.

    A file that holds it already is left alone. Returns whether the file was written.
    """
    try:
        with open(path, encoding="utf-8") as file:
            if file.read() == content:
                os.chmod(path, mode)
                return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    temporary = f"{path}.agent-new"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return True


def config_json(config: dict) -> str:
    """config.json as the setup script writes it (``json.dumps(…, indent=2, sort_keys=True)``)."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def render_wg_conf(config: dict, private_key: str) -> str:
    """wg0.conf exactly as the setup script renders it (webapp/templates/host/wg0.conf.j2)."""
    lines = [
        f"# privnet: WireGuard configuration of node {config['node']} (wg setconf format).",
        "# Generated by privnet and rewritten by its setup script: do not edit.",
        "[Interface]",
        f"PrivateKey = {private_key}",
        f"ListenPort = {config['listen_port']}",
    ]
    for peer in config["peers"]:
        lines += ["", f"# {peer['name']}", "[Peer]", f"PublicKey = {peer['public_key']}",
                  f"AllowedIPs = {peer['allowed_ip']}"]  # fmt: skip
        if peer["endpoint"]:
            lines.append(f"Endpoint = {peer['endpoint']}")
        if peer["keepalive"]:
            lines.append(f"PersistentKeepalive = {peer['keepalive']}")
    return "\n".join(lines) + "\n"


def peer_names_in_wg_conf(text: str) -> dict[str, str]:
    """``{public key: name}`` from a wg0.conf privnet wrote (each ``[Peer]`` follows a ``# name`` line)."""
    names, name = {}, None
    for line in text.splitlines():
        if line.startswith("# ") and NAME_PATTERN.fullmatch(line[2:]):
            name = line[2:]
        elif line.startswith("PublicKey = ") and name is not None:
            names[line.removeprefix("PublicKey = ")] = name
            name = None
    return names


def read_private_key(path: str) -> str | None:
    """The host's WireGuard private key (base64), or None if the file is missing or malformed."""
    try:
        with open(path, encoding="ascii") as file:
            return _key(file.read().strip(), "private.key")
    except (OSError, UnicodeDecodeError, ConfigError):
        return None


# --- keeping the host at its desired state -----------------------------------------------------


@dataclass
class Outcome:
    """What one reconcile did: the changes made, and those that failed (each as its log line)."""

    applied: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed


class Reconciler:
    """Takes the host to a config: read the actual state, diff, apply each change, log each in one line.

    Remembers, across runs, the endpoint it last set per peer (see ``diff_peers``) and the names of
    peers it has seen (to name a removed peer in the log). Keeps ``wg0.conf`` in step with the
    config, so that the setup script or ``up`` run afterwards find nothing to change in WireGuard.
    """

    def __init__(
        self,
        config_dir: str,
        wireguard: WireGuard,
        *,
        kernel_factory: Callable[[], Any] = open_kernel,
        resolver: Callable[[str], str] = resolve_endpoint,
        ethtool_off: Callable[[str], None] = ethtool_tx_off,
    ) -> None:
        self.config_dir = config_dir
        self.wireguard = wireguard
        self.kernel_factory = kernel_factory
        self.resolver = resolver
        self.ethtool_off = ethtool_off
        self.applied_endpoints: dict[str, str] = {}
        self.peer_names: dict[str, str] = {}
        self.resolved: dict[str, str | None] = {}
        self._unresolvable: set[str] = set()
        self.monitor: PeerMonitor | None = None  # when set, the ports of silent peers stay down

    @property
    def private_key_path(self) -> str:
        return os.path.join(self.config_dir, "private.key")

    def resolve(self, config: dict) -> dict[str, str | None]:
        """Each configured endpoint as ``ip:port`` (DNS names looked up now); None if a name does not resolve."""
        endpoints: dict[str, str | None] = {}
        for peer in config["peers"]:
            if not peer["endpoint"]:
                continue
            try:
                endpoints[peer["name"]] = self.resolver(peer["endpoint"])
                self._unresolvable.discard(peer["name"])
            except (OSError, ValueError, UnicodeError) as error:
                endpoints[peer["name"]] = None
                if peer["name"] not in self._unresolvable:
                    log.warning("peer %s: cannot resolve endpoint %s (%s); left as it is",
                                peer["name"], peer["endpoint"], describe_error(error))  # fmt: skip
                self._unresolvable.add(peer["name"])
        return endpoints

    def endpoints_moved(self, config: dict) -> bool:
        """Whether a DNS endpoint resolves elsewhere than when last applied (wg's reresolve-dns)."""
        return has_dns_endpoints(config) and self.resolve(config) != self.resolved

    def _plan(self, config: dict, kernel: Kernel, endpoints: dict[str, str | None]) -> list[Change]:
        interfaces = kernel.interfaces()
        device = self.wireguard.read() if WIREGUARD_INTERFACE in interfaces else None
        held = self.monitor.held(config) if self.monitor is not None else frozenset()
        return diff(
            config, Actual(interfaces, device), private_key=read_private_key(self.private_key_path),
            endpoints=endpoints, applied_endpoints=self.applied_endpoints, peer_names=self.peer_names, held=held,
        )  # fmt: skip

    def plan(self, config: dict) -> list[Change]:
        """The changes ``reconcile`` would make now (reads, changes nothing)."""
        with self.kernel_factory() as kernel:
            return self._plan(config, kernel, self.resolve(config))

    def reconcile(self, config: dict) -> Outcome:
        outcome = Outcome()
        if not self.peer_names:  # the names of the peers of the config before this one, to log removals
            wg_conf = os.path.join(self.config_dir, "wg0.conf")
            with contextlib.suppress(OSError, UnicodeDecodeError), open(wg_conf, encoding="utf-8") as file:
                self.peer_names.update(peer_names_in_wg_conf(file.read()))
        self.peer_names.update({peer["public_key"]: peer["name"] for peer in config["peers"]})
        endpoints = self.resolve(config)
        try:
            with self.kernel_factory() as kernel:
                changes = self._plan(config, kernel, endpoints)
                applier = Applier(kernel, self.wireguard, ethtool_off=self.ethtool_off)
                for change in changes:
                    try:
                        applier.apply(change)
                    except Exception as error:  # the others may still apply
                        line = str(change) if change.op == "refuse" else f"{change}: failed ({describe_error(error)})"
                        log.error("%s", line)
                        outcome.failed.append(line)
                    else:
                        if change.quiet:
                            log.debug("%s", change)
                        else:
                            log.info("%s", change)
                            outcome.applied.append(str(change))
        except Exception as error:  # reading the state failed: nothing was changed
            line = f"cannot read this host's state ({describe_error(error)})"
            log.error("%s", line)
            outcome.failed.append(line)
        self._write_wg_conf(config)
        if outcome.complete:
            self.resolved = endpoints
            self.applied_endpoints = {
                peer["public_key"]: endpoints[peer["name"]] for peer in config["peers"] if endpoints.get(peer["name"])
            }
        return outcome

    def _write_wg_conf(self, config: dict) -> None:
        private_key = read_private_key(self.private_key_path)
        if private_key is None:
            log.warning("cannot write wg0.conf: %s is missing or malformed", self.private_key_path)
            return
        try:
            write_file(os.path.join(self.config_dir, "wg0.conf"), render_wg_conf(config, private_key), 0o600)
        except OSError as error:
            log.error("cannot write wg0.conf (%s)", describe_error(error))


class KeyRotation:
    """A pending key rotation: make a key pair here, send its public half, then switch wg0 to it.

    The private key waits in ``rotation.json`` (0600) until the app took the public key, so a
    restart in between resends the same key (the app accepts a repeat) instead of losing it.
    """

    def __init__(
        self,
        config_dir: str,
        wireguard: WireGuard,
        *,
        post: Callable[[str, str, str, str], dict] = post_public_key,
        keygen: Callable[[], tuple[str, str]] = generate_key_pair,
        public_of: Callable[[str], str] = public_key_of,
    ) -> None:
        self.pending_path = os.path.join(config_dir, "rotation.json")
        self.private_key_path = os.path.join(config_dir, "private.key")
        self.wireguard = wireguard
        self.post = post
        self.keygen = keygen
        self.public_of = public_of
        self.handled: set[str] = set()

    def _pending(self) -> dict | None:
        try:
            with open(self.pending_path, encoding="utf-8") as file:
                pending = json.load(file)
            _text(pending["nonce"], "nonce", NONCE_PATTERN, "is malformed")
            _key(pending["private_key"], "private key")
            return pending
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("wg0: discarding a malformed %s", self.pending_path)
            self._drop()
            return None

    def _drop(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pending_path)

    def handle(self, config: dict, token: str | None) -> bool:
        """Carry out the config's rotation, if any; False when the app could not be told yet (retry later)."""
        nonce = config["key_rotation"]
        pending = self._pending()
        if pending is not None and nonce is not None and pending["nonce"] != nonce:
            self._drop()  # an older rotation the app no longer waits for
            pending = None
        if pending is None:
            if nonce is None or nonce in self.handled:
                return True
            private, _public = self.keygen()
            pending = {"nonce": nonce, "private_key": private}
            write_file(self.pending_path, json.dumps(pending) + "\n", 0o600)
        if token is None:
            return False
        public = self.public_of(pending["private_key"])
        try:
            answer = self.post(config["app_url"], token, public, pending["nonce"])
        except AppRejected as error:
            if error.status >= 500:
                log.warning("wg0: key rotation: the app failed (%s); retrying", describe_error(error))
                return False
            log.warning("wg0: key rotation refused by the app (%s); keeping the current key", describe_error(error))
            self._drop()
            self.handled.add(pending["nonce"])
            return True
        except Exception as error:
            log.warning("wg0: key rotation: cannot send the new public key (%s); retrying", describe_error(error))
            return False
        self.handled.add(pending["nonce"])
        if answer.get("public_key") != public:
            log.warning("wg0: key rotation: the app kept another key; keeping the current one")
            self._drop()
            return True
        write_file(self.private_key_path, pending["private_key"] + "\n", 0o600)
        self._drop()
        try:
            self.wireguard.set(private_key=pending["private_key"])
        except Exception as error:  # the next diff sets it from private.key
            log.error("wg0: cannot set the new private key now (%s)", describe_error(error))
        log.info("wg0: private key rotated (public key %s)", public)
        return True


def _load_json(path: str) -> Any:
    with open(path, encoding="utf-8") as file:
        return json.load(file)


class ConfigLoop:
    """Long-polls the app for this host's desired state and keeps the host at it (its own thread).

    ``applied_version``: the version of the config the host runs, as far as this agent knows (None
    until one was applied completely); the report carries it.
    """

    def __init__(
        self,
        config_path: str,
        token_path: str,
        *,
        reconciler: Reconciler,
        rotation: KeyRotation,
        stop: threading.Event,
        max_backoff: float = CONFIG_MAX_BACKOFF_SECONDS,
        wait: int = LONG_POLL_WAIT_SECONDS,
        monitor: PeerMonitor | None = None,
    ) -> None:
        self.config_path = config_path
        self.token_path = token_path
        self.reconciler = reconciler
        self.rotation = rotation
        self.stop = stop
        self.max_backoff = max_backoff
        self.wait = wait
        self.monitor = monitor  # told the links of each config applied
        self.applied_version: str | None = None
        self.known_version: str | None = None  # sent as If-None-Match
        self.local_version: str | None = None  # of the config.json this loop last took (read or wrote)
        self.failures = 0  # failed fetches in a row
        self.refusals = 0  # refused answers in a row
        self.incomplete = 0  # incomplete applies in a row
        self.lock = threading.Lock()  # held while changing the host
        self._local_problem: str | None = None
        self.ready = threading.Event()  # set once config.json was applied at start (or could not be)
        self.settling = False  # config.json was just written by someone else (see step_local)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="privnet-config", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        try:
            self.step_local(at_start=True)
        except Exception as error:
            log.error("applying %s failed: %s", self.config_path, describe_error(error))
        finally:
            self.ready.set()
        while not self.stop.is_set():
            try:
                delay = self.step()
            except Exception as error:  # the loop must outlive any one failure
                self.failures += 1
                delay = backoff_delay(self.failures, CONFIG_RETRY_SECONDS, self.max_backoff)
                log.error("config loop: %s; retry in %.1f s", describe_error(error), delay)
            if delay:
                self.stop.wait(delay)

    def load_local(self) -> tuple[dict | None, str | None]:
        """``(config.json validated or None, the app's URL or None)``; a problem is logged when it appears."""
        problem, app_url, config = None, None, None
        try:
            raw = _load_json(self.config_path)
            url = raw.get("app_url") if isinstance(raw, dict) else None
            app_url = url if isinstance(url, str) and APP_URL_PATTERN.fullmatch(url) else None
            config = validate_config(raw)
        except ConfigError as error:
            problem = f"{self.config_path} cannot be applied: {error}"
        except (OSError, ValueError) as error:
            problem = f"cannot read {self.config_path} ({describe_error(error)})"
        if problem != self._local_problem and problem is not None:
            log.warning("%s", problem)
        self._local_problem = problem
        return config, app_url

    def step_local(self, *, at_start: bool = False) -> tuple[dict | None, str | None]:
        """Apply config.json if it is new to this loop; returns ``load_local()``.

        At start that is the setup script's config (its ``up`` ran before it started the agent) or
        the last one this agent wrote. Later, a config.json this agent did not write comes from a
        setup script run again, whose ``up`` applies it: it is applied (to confirm it, and to report
        its version) only once it is CONFIG_SETTLE_SECONDS old, so the two never change the host at once.
        """
        local, app_url = self.load_local()
        self.settling = False
        if local is not None and local["version"] != self.local_version:
            try:
                age = time.time() - os.stat(self.config_path).st_mtime
            except OSError:
                age = 0.0
            if at_start or age >= CONFIG_SETTLE_SECONDS:
                self.known_version = self.local_version = local["version"]
                self.apply(local)
            else:
                self.settling = True
        return local, app_url

    def step(self) -> float:
        """One turn: apply a config.json new to this loop, one (long-)poll, apply what it brought; the delay to wait."""
        local, app_url = self.step_local()
        try:
            if app_url is None:
                raise ValueError(f"{self.config_path} names no app to ask")
            token = load_token(self.token_path)
            wait = self.wait
            if self.incomplete:
                wait = min(wait, 2**self.incomplete)
            if self.settling:
                wait = min(wait, CONFIG_SETTLE_SECONDS)
            answer = fetch_config(app_url, token, self.known_version, wait=wait)
        except Exception as error:
            self.failures += 1
            delay = backoff_delay(self.failures, CONFIG_RETRY_SECONDS, self.max_backoff)
            log.warning("config fetch failed (%s); retry %d in %.1f s", describe_error(error), self.failures, delay)
            self.between_polls(local)
            return delay
        if self.failures:
            log.info("config: the app answers again after %d failed attempts", self.failures)
            self.failures = 0
        if answer is None:  # unchanged
            self.between_polls(local)
            return 0
        body, etag = answer
        try:
            config = validate_answer(body, etag, node=local["node"] if local else None)
        except ConfigError as error:
            self.refusals += 1
            match = ENTITY_TAG_PATTERN.fullmatch((etag or "").strip())
            if match:  # ask again only once the version changes: the app holds the request meanwhile
                self.known_version = match.group(1)
            log.error("config refused, nothing applied: %s", error)
            return backoff_delay(self.refusals, CONFIG_RETRY_SECONDS, self.max_backoff)
        self.refusals = 0
        write_file(self.config_path, config_json(config), 0o644)
        self.known_version = self.local_version = config["version"]
        self.apply(config)
        return 0

    def between_polls(self, local: dict | None) -> None:
        """Retry an incomplete apply; follow DNS endpoints that resolve elsewhere now."""
        if local is None or self.settling:
            return
        if self.incomplete or self.reconciler.endpoints_moved(local):
            self.apply(local)

    def apply(self, config: dict) -> Outcome:
        with self.lock:
            try:
                token = load_token(self.token_path)
            except (OSError, ValueError):
                token = None
            rotated = self.rotation.handle(config, token)
            if self.monitor is not None:  # first: what it holds down decides which new ports come up
                self.monitor.watch(config)
            outcome = self.reconciler.reconcile(config)
        if outcome.complete and rotated:
            if self.applied_version != config["version"]:
                changes = len(outcome.applied)
                log.info("config %s applied (%d change%s)", config["version"], changes, "" if changes == 1 else "s")
            self.applied_version = config["version"]
            self.incomplete = 0
        else:
            self.incomplete += 1
            log.warning("config %s not completely applied; trying again", config["version"])
        return outcome


# --- watching the peers: probes, dead peers, port gating ---------------------------------------

PROBE_INTERVAL_SECONDS = 0.2  # an ICMP echo to every linked peer, over wg0, this often
DEAD_AFTER_SECONDS = 1.0  # no answer this long (or 4 RTTs, if longer): the peer is dead
START_GRACE_SECONDS = 3.0  # a port found up when watching starts gets this long for a first answer
HOLDDOWN_SECONDS = 2.0  # a peer back must answer every probe this long before its port returns ...
MAX_HOLDDOWN_SECONDS = 60.0  # ... doubled for each time it died within FLAP_MEMORY_SECONDS, up to this
FLAP_MEMORY_SECONDS = 300.0
LOSS_WINDOW = 50  # probes the reported loss is counted over (10 s)
RTT_GAIN = 0.125  # smoothing of the reported RTT, as TCP's SRTT (RFC 6298)
CLAIM_FRESH_SECONDS = 1.0  # a peer's STP claim older than this is not acted on
STALE_FLAP_SECONDS = 6.0  # a port is bounced for stale STP information at most this often
PROBE_TAG = b"privnet-probe1 "
PEER_STATES = ("waiting", "up", "down", "holddown")
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8


def icmp_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP echo request, checksummed."""
    header = bytes([ICMP_ECHO_REQUEST, 0, 0, 0]) + ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
    checksum = icmp_checksum(header + payload)
    return header[:2] + checksum.to_bytes(2, "big") + header[4:] + payload


def parse_icmp(packet: bytes) -> tuple[int, int, int, bytes] | None:
    """``(type, ident, seq, payload)`` of an IPv4 packet carrying an ICMP echo, as a raw socket reads it."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    icmp = packet[(packet[0] & 0x0F) * 4 :]
    if len(icmp) < 8 or icmp[0] not in (ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST):
        return None
    return icmp[0], int.from_bytes(icmp[4:6], "big"), int.from_bytes(icmp[6:8], "big"), icmp[8:]


@dataclass(frozen=True)
class StpClaim:
    """What a bridge says of itself in its probes: its id, the root it sees and its cost to that root.

    Its peers compare it with the STP information their ports store from it: the kernel ignores a
    worse BPDU from the bridge it stores (802.1D keeps the old one until max age, 6 s at least), so a
    bridge that lost its way to the root would otherwise be believed that long.
    """

    bridge_id: str
    root: str
    cost: int
    settled: bool = True  # its root port forwards (or it is the root): its way to the root works now

    def encode(self) -> bytes:
        return PROBE_TAG + f"{self.bridge_id} {self.root} {self.cost} {int(self.settled)}".encode()

    @staticmethod
    def decode(payload: bytes) -> StpClaim | None:
        if not payload.startswith(PROBE_TAG):
            return None
        fields = payload[len(PROBE_TAG) :].decode("ascii", "replace").split()
        if len(fields) != 4 or not all(BRIDGE_ID_PATTERN.fullmatch(value) for value in fields[:2]):
            return None
        if not fields[2].isdigit() or fields[3] not in ("0", "1"):
            return None
        return StpClaim(fields[0], fields[1], int(fields[2]), fields[3] == "1")

    def worse_than(self, root: str | None, cost: int | None) -> bool:
        """Whether this claim is worse than ``root`` at ``cost`` (bridge ids order as their text)."""
        if root is None or cost is None:
            return False
        return self.root > root or (self.root == root and self.cost > cost)


BRIDGE_ID_PATTERN = re.compile(r"^[0-9a-f]{4}\.[0-9a-f]{12}$")


class PeerHealth:
    """One linked peer: its probes, smoothed RTT, loss and the verdict on its port.

    A state machine with time passed in (so it is tested without sockets or clocks):
    ``waiting`` (never answered since watched; port down) → ``up`` at the first answer;
    ``up`` → ``down`` when silent for ``dead_after``; ``down`` → ``holddown`` at an answer;
    ``holddown`` → ``up`` once it answered every probe for the hold-down, or → ``down`` when silent
    again. Each death within FLAP_MEMORY_SECONDS doubles the next hold-down (a flapping link does not
    churn the tree).
    """

    def __init__(self, name: str, address: str, now: float, *, state: str = "waiting", grace: float = 0.0) -> None:
        self.name = name
        self.address = address
        self.state = state
        self.since = now  # when the state began
        self.grace = grace  # extra silence allowed until the first answer
        self.srtt_ms: float | None = None
        self.pending: dict[int, float] = {}  # seq -> sent at
        self.outcomes: deque[bool] = deque(maxlen=LOSS_WINDOW)  # True: answered
        self.last_reply: float | None = None
        self.answering_since: float | None = None  # start of the current run of answers without a gap
        self.deaths: deque[float] = deque()
        self.holddown = HOLDDOWN_SECONDS

    @property
    def dead_after(self) -> float:
        rtt = (self.srtt_ms or 0) / 1000
        return max(DEAD_AFTER_SECONDS, 4 * rtt) + (self.grace if self.last_reply is None else 0.0)

    @property
    def loss(self) -> float:
        return self.outcomes.count(False) / len(self.outcomes) if self.outcomes else 0.0

    def sent(self, seq: int, now: float) -> None:
        self.pending[seq] = now

    def answered(self, seq: int, now: float) -> bool:
        """Record an echo reply; False if it answers no probe in flight (late, or not ours)."""
        sent_at = self.pending.pop(seq, None)
        if sent_at is None:
            return False
        rtt_ms = (now - sent_at) * 1000
        self.srtt_ms = rtt_ms if self.srtt_ms is None else (1 - RTT_GAIN) * self.srtt_ms + RTT_GAIN * rtt_ms
        self.outcomes.append(True)
        if self.last_reply is None or now - self.last_reply > 2.5 * PROBE_INTERVAL_SECONDS:
            self.answering_since = now  # a gap of two probes or more starts a new run
        self.last_reply = now
        return True

    def expire(self, now: float) -> None:
        """Probes unanswered for ``dead_after`` count as lost, except while the peer is down.

        A dead peer's loss stays what it was when it died: its port is out of the bridge already,
        and a loss climbing to 100 % would make the app replan the whole tree during the failover.
        """
        limit = self.dead_after
        for seq, sent_at in list(self.pending.items()):
            if now - sent_at > limit:
                del self.pending[seq]
                if self.state != "down":
                    self.outcomes.append(False)

    def step(self, now: float) -> str | None:
        """Move to the state the probes call for; a sentence saying why, or None if it stays."""
        last = self.last_reply if self.last_reply is not None and self.last_reply > self.since else None
        silent = now - (last if last is not None else self.since)
        if self.state == "waiting" and last is not None:
            return self._become("up", now, f"first answer (RTT {self.srtt_ms:.1f} ms)")
        if self.state == "up" and silent > self.dead_after:
            return self._die(now, f"no answer for {silent:.1f} s")
        if self.state == "down" and last is not None:
            self.answering_since = last
            return self._become("holddown", now, f"answers again; its port waits {self.holddown:g} s")
        if self.state == "holddown":
            if now - (self.last_reply or self.since) > 2.5 * PROBE_INTERVAL_SECONDS + self.dead_after / 2:
                return self._die(now, "silent again during its hold-down")
            if self.answering_since is not None and now - self.answering_since >= self.holddown:
                return self._become("up", now, f"answered every probe for {self.holddown:g} s")
        return None

    def _die(self, now: float, why: str) -> str:
        while self.deaths and now - self.deaths[0] > FLAP_MEMORY_SECONDS:
            self.deaths.popleft()
        self.deaths.append(now)
        self.holddown = min(HOLDDOWN_SECONDS * 2 ** (len(self.deaths) - 1), MAX_HOLDDOWN_SECONDS)
        self.pending.clear()
        while self.outcomes and not self.outcomes[-1]:  # the silence that killed it is an outage, not loss
            self.outcomes.pop()
        return self._become("down", now, why)

    def _become(self, state: str, now: float, why: str) -> str:
        self.state, self.since, self.grace = state, now, 0.0
        return why

    def to_report(self) -> dict:
        """The report's ``probes`` item (schema 2)."""
        return {
            "peer": self.name,
            # at least 1 µs: the app refuses 0 (no round trip takes no time)
            "rtt_ms": max(round(self.srtt_ms, 3), 0.001) if self.srtt_ms is not None else None,
            "loss": round(self.loss, 3),
            "state": self.state,
        }


@dataclass
class PortView:
    """A bridge port as the monitor needs it, read over rtnetlink every probe interval."""

    name: str
    up: bool
    state: str
    designated_root: str | None
    designated_bridge: str | None
    designated_cost: int | None
    root_port: bool


def read_bridge_view(ipr: Any, bridge_name: str) -> tuple[StpClaim | None, dict[str, PortView]]:
    """This bridge's own claim and its VXLAN ports, from one link dump (read as the report reads them)."""
    links = list(ipr.get_links())
    bridge, ports = BridgeReader().read(bridge_name, links)
    if bridge is None:
        return None, {}
    up = {_attr(msg, "IFLA_IFNAME"): bool(msg["flags"] & 1) for msg in links}  # IFF_UP
    root_port = bridge["root_port"] or 0
    views = {
        port["name"]: PortView(
            name=port["name"],
            up=up[port["name"]],
            state=port["state"],
            designated_root=port["designated_root"],
            designated_bridge=port["designated_bridge"],
            designated_cost=port["designated_cost"],
            root_port=root_port != 0 and port["port_no"] == root_port,
        )
        for port in ports
    }
    if not bridge["bridge_id"] or not bridge["designated_root"]:
        return None, views
    settled = root_port == 0 or any(port.root_port and port.state == "forwarding" for port in views.values())
    return StpClaim(bridge["bridge_id"], bridge["designated_root"], bridge["root_path_cost"] or 0, settled), views


def bounce_reason(port: PortView, claim: StpClaim | None, own: StpClaim | None) -> str | None:
    """Why ``port`` holds stale STP information from its peer (whose claim is ``claim``), or None.

    The port stores the peer's BPDUs (it is not the designated port of its wire), and the peer now
    claims a worse root or cost than stored: it lost its way to the root. The kernel would keep the
    stale information until max age; bouncing the port drops it at once (what Cisco's BackboneFast
    does with its root link queries). A blocked port is bounced; a root port only when its peer lost
    the root altogether or is itself re-converging (its new root port not yet forwarding): then our
    way to the root is broken for seconds anyway, and choosing again now beats choosing again at
    max age, which would break it a second time. A root port whose peer merely got costlier, its
    own way still forwarding, is left alone.
    """
    if claim is None or own is None or not port.up or port.designated_bridge != claim.bridge_id:
        return None
    if not claim.worse_than(port.designated_root, port.designated_cost):
        return None
    if port.state == "blocking":
        return f"its peer now claims root {claim.root} at cost {claim.cost} (stored: {port.designated_root} at {port.designated_cost})"  # noqa: E501
    if port.root_port and claim.root != port.designated_root:
        return f"its peer, on the way to the root, now claims root {claim.root}"
    if port.root_port and not claim.settled:
        return f"its peer, on the way to the root, lost its root port (now at cost {claim.cost}, re-converging)"
    return None


class PeerMonitor:
    """Probes every linked peer over wg0 and keeps only the ports of answering peers in the bridge.

    Runs in its own thread. Every PROBE_INTERVAL_SECONDS it sends an ICMP echo (raw socket) to each
    peer's underlay address, carrying this bridge's ``StpClaim``; it reads the answers, and the
    peers' own probes for their claims. A peer silent for about a second is dead: its VXLAN port
    goes down (STP reacts at once: a port without carrier is disabled), and comes back up after a
    hold-down once the peer answers again. A link the peer has not answered yet stays down, so a
    new wire joins the bridge only once its tunnel carries packets (both ends' BPDUs), never as a
    half-working wire on which both ends think themselves designated (a loop). With ``gate`` False
    (``--no-apply``), or the network's ``fast_failover`` off, it only measures.
    """

    def __init__(self, *, gate: bool, stop: threading.Event, interval: float = PROBE_INTERVAL_SECONDS) -> None:
        self.gate = gate
        self.stop = stop
        self.interval = interval
        self.lock = threading.Lock()
        self.peers: dict[str, PeerHealth] = {}
        self.wanted: dict[str, str] = {}  # link name (the peer) -> the peer's underlay address
        self.bridge_name = "internet"
        self.fast_failover = True  # the network's setting: with it off, probes only measure
        self.enabled = False  # True once the probe socket is open
        self.claims: dict[str, tuple[StpClaim, float]] = {}
        self.bounced: dict[str, float] = {}
        self.ident = random.getrandbits(16)  # tells our echo replies from others'
        self.seq = 0
        self.thread: threading.Thread | None = None

    def watch(self, config: dict) -> None:
        """Probe the peers of ``config``'s links from now on (and only those).

        Tolerant: in report-only mode ``config`` is config.json as found, not validated; a link
        without a valid name and IPv4 remote is not probed.
        """
        links = config.get("links") if isinstance(config.get("links"), list) else []
        wanted = {}
        for link in links:
            try:
                wanted[_name(link["name"], "name")] = _ipv4(link["remote"], "remote")
            except (ConfigError, KeyError, TypeError):
                continue
        with self.lock:
            self.wanted = wanted
            self.fast_failover = config.get("fast_failover", True) is not False
            bridge_name = config.get("bridge_name")
            self.bridge_name = bridge_name if isinstance(bridge_name, str) else self.bridge_name

    def held(self, config: dict) -> frozenset[str]:
        """The links of ``config`` whose ports must stay down: their peers do not answer (yet)."""
        if not (self.gate and self.enabled and self.fast_failover):
            return frozenset()
        with self.lock:
            return frozenset(
                link["name"] for link in config["links"]
                if (peer := self.peers.get(link["name"])) is None or peer.state != "up"
                or peer.address != link["remote"]
            )  # fmt: skip

    def report(self) -> list[dict]:
        """The report's ``probes``: one item per watched peer."""
        with self.lock:
            return [self.peers[name].to_report() for name in sorted(self.peers)]

    def start(self) -> threading.Thread:
        self.thread = threading.Thread(target=self.run, name="privnet-probes", daemon=True)
        self.thread.start()
        return self.thread

    def run(self) -> None:
        try:
            probe_socket = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        except OSError as error:
            log.error("peer probes off: cannot open an ICMP socket (%s); dead peers are left to STP",
                      describe_error(error))  # fmt: skip
            return
        probe_socket.setblocking(False)
        self.enabled = True
        try:
            with probe_socket, IPRoute() as ipr:
                next_tick = time.monotonic()
                while not self.stop.is_set():
                    now = time.monotonic()
                    if now >= next_tick:
                        try:
                            self.tick(ipr, probe_socket, now)
                        except Exception as error:  # the monitor must outlive any one failure
                            log.error("peer probes: %s", describe_error(error))
                        next_tick = max(next_tick + self.interval, now)
                    readable, _, _ = select.select([probe_socket], [], [], max(0.0, next_tick - time.monotonic()))
                    if readable:
                        self.receive(probe_socket, time.monotonic())
        finally:
            self.enabled = False

    def receive(self, probe_socket: socket.socket, now: float) -> None:
        """Read every packet waiting: answers to our probes, and the peers' probes (their claims)."""
        while True:
            try:
                packet, (source, _) = probe_socket.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            parsed = parse_icmp(packet)
            if parsed is None:
                continue
            kind, ident, seq, payload = parsed
            with self.lock:
                peer = next((peer for peer in self.peers.values() if peer.address == source), None)
                if peer is None:
                    continue
                if kind == ICMP_ECHO_REPLY and ident == self.ident:
                    peer.answered(seq, now)
                elif kind == ICMP_ECHO_REQUEST and (claim := StpClaim.decode(payload)) is not None:
                    self.claims[peer.name] = (claim, now)

    def tick(self, ipr: Any, probe_socket: socket.socket, now: float) -> None:
        """Judge each peer, set its port accordingly, bounce stale ports, send the next probes."""
        own, ports = read_bridge_view(ipr, self.bridge_name)
        lines: list[str] = []
        with self.lock:
            for name in set(self.peers) - set(self.wanted):
                del self.peers[name]
                self.claims.pop(name, None)
            for name, address in self.wanted.items():
                peer = self.peers.get(name)
                if peer is None or peer.address != address:
                    port = ports.get(name)
                    found_up = port is not None and port.up
                    self.peers[name] = PeerHealth(name, address, now, state="up" if found_up else "waiting",
                                                  grace=START_GRACE_SECONDS if found_up else 0.0)  # fmt: skip
            verdicts = {}
            for peer in self.peers.values():
                peer.expire(now)
                why = peer.step(now)
                if why is not None:
                    lines.append(f"peer {peer.name}: {peer.state}: {why}")
                verdicts[peer.name] = peer.state == "up"
            claims = {name: claim for name, (claim, at) in self.claims.items() if now - at <= CLAIM_FRESH_SECONDS}
        for line in lines:
            log.info("%s", line)
        if self.gate and self.fast_failover:
            self._gate_ports(ipr, ports, verdicts, claims, own, now)
        self._send(probe_socket, own, now)

    def _gate_ports(
        self, ipr: Any, ports: dict[str, PortView], verdicts: dict[str, bool], claims: dict[str, StpClaim],
        own: StpClaim | None, now: float,
    ) -> None:  # fmt: skip
        kernel = Kernel(ipr)
        for name, port in ports.items():
            if name not in verdicts:
                continue  # not a link of ours (yet): the reconciler's business
            answering = verdicts[name]
            if port.up != answering:
                kernel.set_link(name, state="up" if answering else "down")
                log.info("port %s: %s", name, "into the bridge" if answering else "out of the bridge (peer silent)")
                continue
            why = bounce_reason(port, claims.get(name), own)
            if why and now - self.bounced.get(name, -STALE_FLAP_SECONDS) >= STALE_FLAP_SECONDS:
                self.bounced[name] = now
                kernel.set_link(name, state="down")
                kernel.set_link(name, state="up")
                log.info("port %s: bounced to drop stale STP information: %s", name, why)

    def _send(self, probe_socket: socket.socket, own: StpClaim | None, now: float) -> None:
        payload = own.encode() if own is not None else PROBE_TAG.rstrip()
        with self.lock:
            targets = [(peer, self.seq) for peer in self.peers.values()]
            self.seq = (self.seq + 1) & 0xFFFF
            for peer, seq in targets:
                peer.sent(seq, now)
        for peer, seq in targets:
            try:
                probe_socket.sendto(echo_request(self.ident, seq, payload), (peer.address, 0))
            except OSError as error:  # no route, no key yet: the probe is lost, which is what it measures
                log.debug("probe to %s: %s", peer.name, describe_error(error))


# --- the agent ---------------------------------------------------------------------------------


def load_config(path: str) -> dict:
    """The host's desired state written by the setup script or the agent (``HostConfig.to_dict()``)."""
    config = _load_json(path)
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
    """Read, report, sleep; forever. Each cycle re-reads config and token (the setup script may rewrite them).

    With ``live`` (a ConfigLoop) the host is also kept at its desired state, in a thread of its own,
    and the report names the config version applied; without it (``--no-apply``) the agent only
    reports, naming the version in config.json (which the setup script's ``up`` applied).
    """

    def __init__(
        self,
        config_path: str,
        token_path: str,
        *,
        max_backoff: float,
        wireguard: WireGuardReader,
        live: ConfigLoop | None = None,
        monitor: PeerMonitor | None = None,
    ) -> None:
        self.config_path = config_path
        self.token_path = token_path
        self.max_backoff = max_backoff
        self.wireguard = wireguard
        self.live = live
        self.monitor = monitor
        self.topology_changes = TopologyChangeCounter()
        self.stop = threading.Event()
        self.config: dict | None = None
        self.failures = 0

    def run(self) -> None:
        log.info("agent %s started (config %s%s)", AGENT_VERSION, self.config_path,
                 "" if self.live else ", report only")  # fmt: skip
        try:
            if self.monitor is not None:
                with contextlib.suppress(OSError, ValueError):
                    self.monitor.watch(self._reload())
                self.monitor.start()
            if self.live is not None:
                self.live.start()
                # The config on disk is applied first: the first report then names what the host runs.
                self.live.ready.wait(timeout=30)
            while not self.stop.is_set():
                delay = self.cycle()
                self.stop.wait(delay)
        finally:
            log.info("agent stopped")

    def cycle(self) -> float:
        """One read-and-report; returns the seconds to wait before the next one."""
        try:
            config = self._reload()
            token = load_token(self.token_path)
            version = self.live.applied_version if self.live is not None else config.get("version")
            if self.monitor is not None and self.live is None:
                self.monitor.watch(config)  # report only: nothing else tells it the links
            report = collect_report(
                {**config, "version": version}, wireguard=self.wireguard, topology_changes=self.topology_changes,
                probes=self.monitor.report() if self.monitor is not None else None,
            )  # fmt: skip
            post_report(config["app_url"], token, report)
        except Exception as error:  # the agent must outlive any one failure
            return self._failed(error)
        if self.failures:
            log.info("reporting again after %d failed attempts", self.failures)
        else:
            log.debug("report sent")
        self.failures = 0
        return self._interval() * random.uniform(0.9, 1.1)  # noqa: S311 - spread 1,000 agents apart

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


def describe_error(error: BaseException) -> str:
    """One line naming the failure, without secrets (no request headers ever reach it)."""
    if isinstance(error, AppRejected):
        return f"app answered HTTP {error.status}" + (f": {error.detail}" if error.detail else "")
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        return f"cannot reach the app: {reason.strerror if isinstance(reason, OSError) and reason.strerror else reason}"
    if isinstance(error, TimeoutError | socket.timeout):
        return "cannot reach the app: timed out" if not str(error) else f"timed out: {' '.join(str(error).split())}"
    if isinstance(error, json.JSONDecodeError):
        return "app answered with invalid JSON"
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _one_shot(args: argparse.Namespace, reconciler: Reconciler) -> int:
    """``--diff`` and ``--apply``: config.json against this host, once, without the app."""
    config = validate_config(load_config(args.config))
    if args.diff:
        changes = [change for change in reconciler.plan(config) if not change.quiet]
        for change in changes:
            print(change)
        if not changes:
            print("no changes")
        return 0
    outcome = reconciler.reconcile(config)
    for line in outcome.applied:
        print(line)
    for line in outcome.failed:
        print(f"failed: {line}")
    if not outcome.applied and outcome.complete:
        print("no changes")
    return 0 if outcome.complete else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="privnet agent: keep this host at its desired state, report it")
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="host config JSON (default %(default)s)")
    parser.add_argument("--token", default=DEFAULT_TOKEN_PATH, help="agent token file (default %(default)s)")
    parser.add_argument("--wireguard-socket-dir", default=WIREGUARD_SOCKET_DIR, help="wireguard-go UAPI sockets")
    parser.add_argument("--max-backoff", type=float, default=DEFAULT_MAX_BACKOFF_SECONDS, help="retry delay cap, s")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--dump", action="store_true", help="print one report as JSON and exit")
    modes.add_argument("--diff", action="store_true", help="print what applying the config would change, and exit")
    modes.add_argument("--apply", action="store_true", help="apply the config once (no app), print changes, exit")
    modes.add_argument("--no-apply", action="store_true", help="only report: never change this host")
    parser.add_argument("-v", "--verbose", action="store_true", help="also log each report sent")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)  # libraries stay at WARNING
    reader = WireGuardReader(socket_dir=args.wireguard_socket_dir)
    if args.dump:
        json.dump(collect_report(load_config(args.config), wireguard=reader), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    config_dir = os.path.dirname(os.path.abspath(args.config))
    control = WireGuard(socket_dir=args.wireguard_socket_dir)
    reconciler = Reconciler(config_dir, control)
    if args.diff or args.apply:
        return _one_shot(args, reconciler)
    agent = Agent(args.config, args.token, max_backoff=args.max_backoff, wireguard=reader)
    agent.monitor = PeerMonitor(gate=not args.no_apply, stop=agent.stop)
    if not args.no_apply:
        reconciler.monitor = agent.monitor
        agent.live = ConfigLoop(
            args.config, args.token, reconciler=reconciler, rotation=KeyRotation(config_dir, control), stop=agent.stop,
            max_backoff=min(args.max_backoff, CONFIG_MAX_BACKOFF_SECONDS), monitor=agent.monitor,
        )  # fmt: skip

    def stop(*_: object) -> None:
        # Leave at once, also from a report or long-poll in flight (its connect or read would
        # otherwise run to its timeout), but not in the middle of changing the host.
        agent.stop.set()
        if agent.live is not None and agent.live.lock.acquire(timeout=10):
            agent.live.lock.release()
        raise SystemExit(0)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
