"""Address and VNI allocation: the lowest free value, or a checked request."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from .errors import AllocationExhaustedError, ConflictError, ValidationError

VNI_MIN = 1
VNI_MAX = 16_777_215


def lowest_free_address(network: ipaddress.IPv4Network, used: Iterable[str], *, field: str) -> str:
    """The lowest host address of ``network`` (from .1, never network or broadcast) not in ``used``.

    ``used`` holds addresses in their canonical text form (as stored), so candidates are
    compared as text: parsing every stored address would dominate the cost in large networks.
    """
    taken = set(used)
    first = int(network.network_address) + 1
    last = int(network.broadcast_address) - 1
    for candidate in range(first, last + 1):
        text = socket.inet_ntoa(candidate.to_bytes(4, "big"))
        if text not in taken:
            return text
    raise AllocationExhaustedError(field, f"{field}: no free address is left in {network}")


def check_requested_address(
    network: ipaddress.IPv4Network, requested: object, used: Iterable[str], *, field: str
) -> str:
    """An admin-chosen address: a host address inside ``network`` that nobody has."""
    try:
        address = ipaddress.IPv4Address(requested) if isinstance(requested, str) else None
    except ValueError:
        address = None
    if address is None:
        raise ValidationError(field, f"{field} must be an IPv4 address inside {network}")
    if address not in network:
        raise ValidationError(field, f"{field} {address} is outside {network}")
    if address in (network.network_address, network.broadcast_address):
        raise ValidationError(field, f"{field} {address} is the network or broadcast address of {network}")
    if str(address) in set(used):
        raise ConflictError(field, f"{field} {address} is already taken by another node")
    return str(address)


def lowest_free_vni(used: Iterable[int]) -> int:
    """The lowest VNI from 1 upward that no link uses."""
    taken = set(used)
    candidate = VNI_MIN
    while candidate in taken:
        candidate += 1
    if candidate > VNI_MAX:
        raise AllocationExhaustedError("vni", "vni: every VNI is taken")
    return candidate
