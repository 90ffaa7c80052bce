"""Input rules for everything an admin or an agent can send.

Each checker returns the normalised value or raises ``ValidationError`` naming the field and the
rule. Values that later reach a shell script pass one of these strict patterns first.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .errors import ValidationError

NODE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,14}$")
# Names a node cannot take: they are interfaces privnet creates, or names the kernel reserves
# under /proc/sys/net (all, default) and /sys/class/net (bonding_masters).
RESERVED_NODE_NAMES = frozenset({"lo", "wg0", "internet", "all", "default", "bonding_masters", "privnet"})
INTERFACE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,14}$")
DNS_LABEL_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)
NETWORK_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
PORT_PATTERN = re.compile(r"^[1-9][0-9]{0,4}$")
LOCATION_MAX = 120
PRIORITY_STEP = 4096
PRIORITY_MAX = 61440


@dataclass(frozen=True)
class Endpoint:
    """A parsed ``host:port``; ``host`` is an IP literal or a lower-case DNS name."""

    host: str
    port: int


def validate_node_name(name: object, *, field: str = "name", bridge_name: str = "internet") -> str:
    """A node name becomes an interface name on its peers: ``^[a-z][a-z0-9-]{0,14}$``."""
    if not isinstance(name, str) or not NODE_NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            field,
            f"{field} must be 1-15 characters of a-z, 0-9 and '-', starting with a letter "
            "(it becomes a network interface name on the node's peers)",
        )
    if name in RESERVED_NODE_NAMES or name == bridge_name:
        raise ValidationError(field, f"{field} '{name}' is reserved for an interface privnet or the kernel uses")
    return name


def validate_network_name(name: object, *, field: str = "name") -> str:
    """The network's display name; it is written into hosts' configs, so a strict shape."""
    if not isinstance(name, str) or not NETWORK_NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            field,
            f"{field} must be 1-64 characters of letters, digits, space, '.', '_' and '-', "
            "starting with a letter or digit",
        )
    return name


def validate_interface_name(name: object, *, field: str) -> str:
    """A Linux interface name privnet creates (the bridge): same shape as a node name."""
    if (
        not isinstance(name, str)
        or not INTERFACE_NAME_PATTERN.fullmatch(name)
        or name in {"lo", "wg0", "all", "default"}
    ):
        raise ValidationError(
            field, f"{field} must be 1-15 characters of a-z, 0-9 and '-', starting with a letter, and not lo or wg0"
        )
    return name


def validate_port(value: object, *, field: str) -> int:
    """A UDP port, 1-65535, as an integer (or a string of digits from a form)."""
    if isinstance(value, str) and PORT_PATTERN.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValidationError(field, f"{field} must be a whole number from 1 to 65535")
    return value


def validate_int_range(value: object, *, field: str, low: int, high: int, unit: str = "") -> int:
    """A whole number within ``low..high``."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,9}", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        suffix = f" {unit}" if unit else ""
        raise ValidationError(field, f"{field} must be a whole number from {low} to {high}{suffix}")
    return value


def validate_cost(value: object, *, field: str = "cost") -> int:
    """An STP port path cost, 1-65535."""
    return validate_int_range(value, field=field, low=1, high=65535)


def validate_priority(value: object, *, field: str = "bridge_priority") -> int:
    """A bridge priority, 0-61440 in steps of 4096 (802.1D-2004)."""
    value = validate_int_range(value, field=field, low=0, high=PRIORITY_MAX)
    if value % PRIORITY_STEP:
        raise ValidationError(field, f"{field} must be a multiple of {PRIORITY_STEP} from 0 to {PRIORITY_MAX}")
    return value


TREE_MODE_RULE = (
    'must be "latency" (privnet plans the STP costs and priorities from the measured RTTs) or "seed" '
    "(every link's own cost, default 100, and every node's own priority, default 32768)"
)


def validate_tree_mode(value: object, *, field: str = "tree_mode") -> str:
    """How the spanning tree is chosen: exactly "latency" or "seed"."""
    if value not in ("latency", "seed") or not isinstance(value, str):
        raise ValidationError(field, f"{field} {TREE_MODE_RULE}")
    return value


def validate_flag(value: object, *, field: str) -> bool:
    """A JSON boolean."""
    if not isinstance(value, bool):
        raise ValidationError(field, f"{field} must be true or false")
    return value


def validate_dns_name(host: str, *, field: str) -> str:
    """An RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens."""
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(DNS_LABEL_PATTERN.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValidationError(field, f"{field} host must be an IPv4 address, a bracketed IPv6 address or a DNS name")
    return name.lower()


def parse_endpoint(value: object, *, field: str = "endpoint") -> Endpoint:
    """``host:port`` with an IPv4 address, ``[IPv6]`` or a DNS name, and a port 1-65535."""
    rule = (
        f"{field} must be host:port, with an IPv4 address, a bracketed IPv6 address or a DNS name, "
        "and a port from 1 to 65535"
    )
    if not isinstance(value, str) or not value or len(value) > 270:
        raise ValidationError(field, rule)
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]+)", value) or re.fullmatch(r"([^:\[\]]+):([0-9]+)", value)
    if not match:
        raise ValidationError(field, rule)
    host, port_text = match.groups()
    if not PORT_PATTERN.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValidationError(field, f"{field} port must be a whole number from 1 to 65535")
    if value.startswith("["):
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise ValidationError(field, f"{field} has brackets but '{host}' is not an IPv6 address") from None
        return Endpoint(host=address.compressed, port=int(port_text))
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return Endpoint(host=str(ipaddress.IPv4Address(host)), port=int(port_text))
        except ValueError:
            raise ValidationError(field, f"{field} host '{host}' is not a valid IPv4 address") from None
    return Endpoint(host=validate_dns_name(host, field=field), port=int(port_text))


def validate_cidr(value: object, *, field: str) -> ipaddress.IPv4Network:
    """An IPv4 network in CIDR form with host bits clear and room for two hosts (prefix <= 30)."""
    rule = f"{field} must be an IPv4 network in CIDR form such as 10.88.88.0/24, prefix length 8 to 30"
    if not isinstance(value, str):
        raise ValidationError(field, rule)
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        if "host bits set" in str(error):
            raise ValidationError(field, f"{field} has host bits set: write the network address ({rule})") from None
        raise ValidationError(field, rule) from None
    if "/" not in value or not 8 <= network.prefixlen <= 30:
        raise ValidationError(field, rule)
    return network


def validate_location(value: object, *, field: str = "location") -> str:
    """Free text for people: at most 120 printable characters."""
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > LOCATION_MAX or not value.isprintable():
        raise ValidationError(field, f"{field} must be at most {LOCATION_MAX} printable characters")
    return value.strip()


def validate_stp_timers(hello_time: object, forward_delay: object, max_age: object) -> tuple[int, int, int]:
    """STP timers in whole seconds, within what the kernel accepts with STP on.

    802.1D also asks max age >= 2 x (hello + 1), so a bridge does not age out its root between
    two hellos; that is enforced. The forward-delay bound of 802.1D is not, because privnet's
    networks are small and the WAN tuning wants the kernel's 2 s floor.
    """
    hello = validate_int_range(hello_time, field="stp_hello_time", low=1, high=10, unit="seconds")
    delay = validate_int_range(forward_delay, field="stp_forward_delay", low=2, high=30, unit="seconds")
    age = validate_int_range(max_age, field="stp_max_age", low=6, high=40, unit="seconds")
    if age < 2 * (hello + 1):
        raise ValidationError("stp_max_age", "stp_max_age must be at least 2 x (stp_hello_time + 1) seconds")
    return hello, delay, age
