"""Address and VNI allocation: the lowest free value, or a checked request.

Addresses are also stored as integers (``Node.underlay_int``, ``Node.overlay_int``), so the
lowest free one is found by the database with two indexed queries, however many nodes there
are: loading every used address to search in Python made a create slower as the network grew.
"""

from __future__ import annotations

import ipaddress

from sqlalchemy import Column, exists, func, select
from sqlalchemy.orm import Session

from .errors import AllocationExhaustedError, ConflictError, ValidationError

VNI_MIN = 1
VNI_MAX = 16_777_215


def host_range(network: ipaddress.IPv4Network) -> tuple[int, int]:
    """The first and last host address of ``network`` as integers (never network or broadcast)."""
    return int(network.network_address) + 1, int(network.broadcast_address) - 1


def address_to_int(address: str) -> int:
    return int(ipaddress.IPv4Address(address))


def lowest_free_value(session: Session, column: Column, low: int, high: int) -> int | None:
    """The lowest integer in ``low..high`` that no row holds in ``column`` (indexed), or None."""
    if session.execute(select(column).where(column == low).limit(1)).first() is None:
        return low
    other = column.table.alias()
    candidate = column + 1
    query = select(func.min(candidate)).where(
        column >= low, column < high, ~exists().where(other.c[column.key] == candidate)
    )
    return session.execute(query).scalar()


def lowest_free_address(session: Session, column: Column, network: ipaddress.IPv4Network, *, field: str) -> str:
    """The lowest host address of ``network`` that no node holds in the integer ``column``."""
    value = lowest_free_value(session, column, *host_range(network))
    if value is None:
        raise AllocationExhaustedError(field, f"{field}: no free address is left in {network}")
    return str(ipaddress.IPv4Address(value))


def check_requested_address(network: ipaddress.IPv4Network, requested: object, *, field: str) -> str:
    """An admin-chosen address: a host address inside ``network`` (whether it is free is the caller's query)."""
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
    return str(address)


def address_taken_error(field: str, address: str) -> ConflictError:
    return ConflictError(field, f"{field} {address} is already taken by another node")


def lowest_free_vni(session: Session, column: Column) -> int:
    """The lowest VNI from 1 upward that no link uses."""
    value = lowest_free_value(session, column, VNI_MIN, VNI_MAX)
    if value is None:
        raise AllocationExhaustedError("vni", "vni: every VNI is taken")
    return value
