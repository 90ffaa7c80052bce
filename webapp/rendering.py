"""The per-node setup script (``curl … | sudo sh``) and the files it installs, rendered from Jinja.

Every value that reaches a rendered file is checked again here against a strict pattern, even
though the app validated it on input: the script runs as root on the node, so nothing
unexpected may ever reach it. In shell templates each value also passes the ``shell_quote``
filter; in the WireGuard config only the strict patterns stand between a value and the file,
and the ``conf_value`` filter refuses anything that could start a new line or a comment.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .errors import ValidationError
from .hostconfig import HostConfig, LinkConfig, PeerConfig
from .keys import validate_public_key
from .tokens import TOKEN_PATTERN
from .validation import (
    NETWORK_NAME_PATTERN,
    parse_endpoint,
    validate_int_range,
    validate_interface_name,
    validate_node_name,
    validate_priority,
    validate_stp_timers,
)

TEMPLATE_DIR = Path(__file__).parent / "templates" / "host"
# The agent, installed on every host as it is in this repository (a single file, design §2).
AGENT_SOURCE = Path(__file__).resolve().parent.parent / "bootstrap" / "agent.py"
CONFIG_DIR = "/etc/privnet"
AGENT_PATH = f"{CONFIG_DIR}/agent.py"
UNIT_PATH = "/etc/systemd/system/privnet.service"
AGENT_UNIT = "privnet-agent.service"
AGENT_UNIT_PATH = f"/etc/systemd/system/{AGENT_UNIT}"
# The interpreter privnet-agent.service runs; hosts without systemd fall back to python3 on PATH.
AGENT_PYTHON = "/usr/bin/python3"

APP_URL_PATTERN = re.compile(r"^https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?$")
VERSION_PATTERN = re.compile(r"^[0-9a-f]{0,64}$")
KEY_ROTATION_PATTERN = re.compile(r"^[0-9a-f]{32}$")
# What may stand as a value in wg0.conf or the unit: no whitespace, no '#', no newline.
STP_TIMER_FIELDS = ("stp_hello_time", "stp_forward_delay", "stp_max_age")
CONF_VALUE_PATTERN = re.compile(r"^[A-Za-z0-9+/=.:\[\]_-]+$")


@dataclass(frozen=True)
class InstalledFile:
    """One file the setup script writes on the node."""

    path: str
    mode: str  # octal, as chmod takes it
    content: str
    delimiter: str  # the quoted here-document's end marker; never a line of ``content``


def shell_quote(value: object) -> str:
    """One shell word that the shell reads back as exactly ``str(value)`` (``shlex.quote`` semantics).

    Always single-quoted, a single quote written as ``'\\''``. Only strings and integers are
    accepted: ``None`` or anything else in a template is a bug, not a value to print.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"shell_quote takes a string or an integer, not {type(value).__name__}")
    return "'" + str(value).replace("'", "'\\''") + "'"


def conf_value(value: object) -> str:
    """A value for a ``key = value`` line (wg0.conf, the unit): refused if it could break the line."""
    if isinstance(value, bool) or not isinstance(value, str | int) or not CONF_VALUE_PATTERN.fullmatch(str(value)):
        raise ValueError(f"refusing to write {value!r} into a configuration file")
    return str(value)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=False,  # noqa: S701 -- shell and config text, not HTML; values go through shell_quote
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shell_quote"] = shell_quote
    env.filters["conf_value"] = conf_value
    return env


_ENV = _environment()


# --- validation ------------------------------------------------------------------------------


def _ipv4(value: object, *, field: str) -> str:
    """A canonical dotted-quad IPv4 address (no leading zeros, no prefix)."""
    try:
        if isinstance(value, str) and str(ipaddress.IPv4Address(value)) == value:
            return value
    except ValueError:
        pass
    raise ValidationError(field, f"{field} must be an IPv4 address such as 10.88.88.1")


def _whole(value: object, *, field: str) -> int:
    """An actual ``int`` (not a bool, not digits in a string): what a template prints is what was checked."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"{field} must be a whole number")
    return value


def _int_in(value: object, *, field: str, low: int, high: int) -> int:
    return validate_int_range(_whole(value, field=field), field=field, low=low, high=high)


def _string(value: object, pattern: re.Pattern[str], *, field: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValidationError(field, f"{field} {rule}")
    return value


def _endpoint(value: object, *, field: str) -> str:
    """``host:port`` exactly as ``parse_endpoint`` normalises it (IPv6 bracketed)."""
    parsed = parse_endpoint(value, field=field)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    if value != f"{host}:{parsed.port}":
        raise ValidationError(field, f"{field} must be in canonical form ({host}:{parsed.port})")
    return value


def _check_peer(peer: PeerConfig, *, index: int, config: HostConfig) -> None:
    field = f"peers[{index}]"
    if not isinstance(peer, PeerConfig):
        raise ValidationError(field, f"{field} must be a PeerConfig")
    validate_node_name(peer.name, field=f"{field}.name", bridge_name=config.bridge_name)
    if peer.name == config.node:
        raise ValidationError(f"{field}.name", f"{field}.name must not be the node itself")
    validate_public_key(peer.public_key, field=f"{field}.public_key")
    address, _, prefix = peer.allowed_ip.partition("/") if isinstance(peer.allowed_ip, str) else ("", "", "")
    if prefix != "32":
        raise ValidationError(f"{field}.allowed_ip", f"{field}.allowed_ip must be the peer's underlay address as a /32")
    _ipv4(address, field=f"{field}.allowed_ip")
    if peer.endpoint is not None:
        _endpoint(peer.endpoint, field=f"{field}.endpoint")
    if peer.keepalive is not None:
        _int_in(peer.keepalive, field=f"{field}.keepalive", low=1, high=65535)


def _check_link(link: LinkConfig, *, index: int, config: HostConfig, peer_addresses: dict[str, str]) -> None:
    field = f"links[{index}]"
    if not isinstance(link, LinkConfig):
        raise ValidationError(field, f"{field} must be a LinkConfig")
    validate_node_name(link.name, field=f"{field}.name", bridge_name=config.bridge_name)
    _int_in(link.vni, field=f"{field}.vni", low=1, high=16777215)
    _int_in(link.cost, field=f"{field}.cost", low=1, high=65535)
    if _ipv4(link.local, field=f"{field}.local") != config.underlay_ip:
        raise ValidationError(f"{field}.local", f"{field}.local must be the node's own underlay address")
    _ipv4(link.remote, field=f"{field}.remote")
    if peer_addresses.get(link.name) != link.remote:
        raise ValidationError(
            f"{field}.remote", f"{field} must lead to a WireGuard peer of the same name with that underlay address"
        )


def _unique(values: Iterable[object], *, field: str) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise ValidationError(field, f"{field} must be unique within the host ({value!r} repeats)")
        seen.add(value)


def validate_for_rendering(config: HostConfig, *, private_key: str, agent_token: str) -> None:
    """Raise ``ValidationError`` unless every value that reaches the node is of a safe, exact shape."""
    if not isinstance(config, HostConfig):
        raise ValidationError("config", "config must be a HostConfig")
    validate_node_name(config.node, field="node", bridge_name=config.bridge_name)
    _string(
        config.network, NETWORK_NAME_PATTERN, field="network", rule="must be 1-64 letters, digits, ' ', '.', '_' or '-'"
    )
    _string(
        config.app_url, APP_URL_PATTERN, field="app_url", rule="must be an http(s) URL of host[:port] and a plain path"
    )
    _string(config.version, VERSION_PATTERN, field="version", rule="must be a hexadecimal digest")
    if config.key_rotation is not None:
        _string(
            config.key_rotation, KEY_ROTATION_PATTERN, field="key_rotation", rule="must be 32 lower-case hex digits"
        )
    validate_interface_name(config.bridge_name, field="bridge_name")
    _int_in(config.listen_port, field="listen_port", low=1, high=65535)
    _int_in(config.vxlan_port, field="vxlan_port", low=1, high=65535)
    _ipv4(config.underlay_ip, field="underlay_ip")
    _ipv4(config.overlay_ip, field="overlay_ip")
    _int_in(config.underlay_prefix, field="underlay_prefix", low=8, high=30)
    _int_in(config.overlay_prefix, field="overlay_prefix", low=8, high=30)
    validate_priority(_whole(config.bridge_priority, field="bridge_priority"))
    _int_in(config.mtu, field="mtu", low=1280, high=9000)
    validate_stp_timers(*(_whole(getattr(config, name), field=name) for name in STP_TIMER_FIELDS))
    _int_in(config.report_interval, field="report_interval", low=1, high=86400)
    validate_public_key(private_key, field="private_key")  # same shape: base64 of 32 bytes
    _string(agent_token, TOKEN_PATTERN, field="agent_token", rule="must be 43 characters of A-Z, a-z, 0-9, '_' and '-'")

    if not isinstance(config.peers, tuple) or not isinstance(config.links, tuple):
        raise ValidationError("peers", "peers and links must be tuples")
    for index, peer in enumerate(config.peers):
        _check_peer(peer, index=index, config=config)
    _unique((peer.name for peer in config.peers), field="peers.name")
    _unique((peer.public_key for peer in config.peers), field="peers.public_key")
    _unique((peer.allowed_ip for peer in config.peers), field="peers.allowed_ip")
    peer_addresses = {peer.name: peer.allowed_ip.partition("/")[0] for peer in config.peers}
    for index, link in enumerate(config.links):
        _check_link(link, index=index, config=config, peer_addresses=peer_addresses)
    _unique((link.name for link in config.links), field="links.name")
    _unique((link.vni for link in config.links), field="links.vni")


# --- rendering -------------------------------------------------------------------------------


def bridge_mac_address(config: HostConfig) -> str:
    """A stable, locally administered MAC for the bridge, derived from network and node.

    A bridge otherwise takes the lowest MAC of its ports, so adding a link (or a reboot, which
    makes new random VXLAN MACs) would change its STP bridge id and its overlay MAC.
    """
    digest = hashlib.sha256(f"privnet bridge {config.network}/{config.node}".encode()).digest()
    return ":".join(f"{byte:02x}" for byte in (0x02, *digest[:5]))


def _delimiter(name: str, content: str) -> str:
    delimiter = "PRIVNET_" + re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_EOF"
    if delimiter in content.splitlines():
        raise ValueError(f"{name}: content contains its here-document delimiter {delimiter}")
    return delimiter


def _installed(path: str, mode: str, content: str) -> InstalledFile:
    if not content.endswith("\n"):
        content += "\n"
    return InstalledFile(path=path, mode=mode, content=content, delimiter=_delimiter(path.rsplit("/", 1)[-1], content))


def agent_source() -> str:
    """The agent's source (``bootstrap/agent.py``), exactly as hosts install it as ``AGENT_PATH``."""
    return AGENT_SOURCE.read_text(encoding="utf-8")


_AGENT_NAMES = {
    "agent_path": AGENT_PATH,
    "agent_unit": AGENT_UNIT,
    "agent_unit_path": AGENT_UNIT_PATH,
    "agent_python": AGENT_PYTHON,
}


def render_host_files(config: HostConfig, *, private_key: str, agent_token: str) -> list[InstalledFile]:
    """Every file the setup script installs, in the order it writes them (validates first)."""
    validate_for_rendering(config, private_key=private_key, agent_token=agent_token)
    context = {
        "config": config,
        "private_key": private_key,
        "bridge_mac": bridge_mac_address(config),
        "config_dir": CONFIG_DIR,
        "unit_path": UNIT_PATH,
        **_AGENT_NAMES,
        "endpoint_public_keys": " ".join(peer.public_key for peer in config.peers if peer.endpoint),
        "wanted_vxlans": " ".join(link.name for link in config.links),
    }

    def render(template: str) -> str:
        return _ENV.get_template(template).render(context)

    config_json = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    return [
        _installed(f"{CONFIG_DIR}/private.key", "0600", private_key),
        _installed(f"{CONFIG_DIR}/agent.token", "0600", agent_token),
        _installed(f"{CONFIG_DIR}/wg0.conf", "0600", render("wg0.conf.j2")),
        _installed(f"{CONFIG_DIR}/config.json", "0644", config_json),
        _installed(AGENT_PATH, "0755", agent_source()),
        _installed(f"{CONFIG_DIR}/up", "0755", render("up.sh.j2")),
        _installed(f"{CONFIG_DIR}/down", "0755", render("down.sh.j2")),
        _installed(f"{CONFIG_DIR}/uninstall", "0755", render("uninstall.sh.j2")),
    ]


def render_systemd_unit(config: HostConfig) -> InstalledFile:
    """The unit that runs ``/etc/privnet/up`` at boot (installed only where systemd runs)."""
    content = _ENV.get_template("privnet.service.j2").render(config=config, config_dir=CONFIG_DIR)
    return _installed(UNIT_PATH, "0644", content)


def render_agent_unit(config: HostConfig) -> InstalledFile:
    """The unit that keeps the agent running (``privnet-agent.service``; only where systemd runs)."""
    content = _ENV.get_template("privnet-agent.service.j2").render(config=config, config_dir=CONFIG_DIR, **_AGENT_NAMES)
    return _installed(AGENT_UNIT_PATH, "0644", content)


def render_setup_script(config: HostConfig, *, private_key: str, agent_token: str) -> str:
    """The POSIX sh script that brings ``config.node`` into the network (``curl … | sudo sh``).

    It holds the node's private key and agent token: serve it only to the holder of a valid
    enrollment token. Raises ``ValidationError`` if any value is not of a strict, safe shape.
    """
    files = render_host_files(config, private_key=private_key, agent_token=agent_token)
    return _ENV.get_template("setup.sh.j2").render(
        config=config,
        config_dir=CONFIG_DIR,
        files=files,
        unit=render_systemd_unit(config),
        agent_unit_file=render_agent_unit(config),
        **_AGENT_NAMES,
    )
