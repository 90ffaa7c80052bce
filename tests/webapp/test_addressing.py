"""Lowest-free allocation of addresses and VNIs (in the database), and requested addresses."""

import ipaddress

import pytest

from tests.factories import make_link, make_node
from webapp import addressing, inventory
from webapp.errors import AllocationExhaustedError, ConflictError, ValidationError
from webapp.models import Link, Node

NET = ipaddress.IPv4Network("10.88.88.0/24")


def lowest_underlay(db, network=NET) -> str:
    return addressing.lowest_free_address(db.session, Node.__table__.c.underlay_int, network, field="underlay_ip")


def test_first_address_is_dot_one(db):
    assert lowest_underlay(db) == "10.88.88.1"


def test_fills_the_lowest_gap(db):
    for name, address in (("a", "10.88.88.1"), ("b", "10.88.88.2"), ("c", "10.88.88.4")):
        make_node(db, name=name, underlay_ip=address)
    assert lowest_underlay(db) == "10.88.88.3"
    inventory.delete_node(inventory.get_node("a"))
    assert lowest_underlay(db) == "10.88.88.1"


def test_never_hands_out_broadcast_when_full(db):
    small = ipaddress.IPv4Network("10.88.88.0/30")  # hosts .1 and .2 only
    make_node(db, name="a", underlay_ip="10.88.88.1")
    make_node(db, name="b", underlay_ip="10.88.88.2")
    with pytest.raises(AllocationExhaustedError) as error:
        lowest_underlay(db, small)
    assert error.value.field == "underlay_ip"


def test_addresses_outside_the_network_do_not_count(db):
    make_node(db, name="a", underlay_ip="10.88.88.200")
    assert lowest_underlay(db, ipaddress.IPv4Network("10.88.88.192/26")) == "10.88.88.193"
    assert lowest_underlay(db) == "10.88.88.1"


@pytest.mark.parametrize(
    ("requested", "text"),
    [
        ("10.88.89.1", "outside"),
        ("10.88.88.0", "network or broadcast"),
        ("10.88.88.255", "network or broadcast"),
        ("not-an-ip", "IPv4 address"),
        (7, "IPv4 address"),
    ],
)
def test_requested_address_rules(requested, text):
    with pytest.raises(ValidationError) as error:
        addressing.check_requested_address(NET, requested, field="underlay_ip")
    assert text in error.value.message
    assert error.value.field == "underlay_ip"


def test_a_taken_requested_address_is_a_conflict(db):
    make_node(db, name="a", underlay_ip="10.88.88.7")
    with pytest.raises(ConflictError, match="already taken"):
        make_node(db, name="b", underlay_ip="10.88.88.7")


def test_requested_free_address_is_accepted():
    assert addressing.check_requested_address(NET, "10.88.88.200", field="x") == "10.88.88.200"


def test_integer_columns_follow_the_addresses(db):
    node = make_node(db, name="a", underlay_ip="10.88.88.9")
    assert node.underlay_int == int(ipaddress.IPv4Address("10.88.88.9"))
    inventory.update_node(node, {"underlay_ip": "10.88.88.10", "overlay_ip": "10.99.99.77"})
    assert (node.underlay_int, node.overlay_int) == (0x0A58580A, int(ipaddress.IPv4Address("10.99.99.77")))


def test_vni_starts_at_one_and_fills_gaps(db):
    column = Link.__table__.c.vni
    assert addressing.lowest_free_vni(db.session, column) == 1
    for name in ("a", "b", "c", "d"):
        make_node(db, name=name, endpoint=f"{name}.example:1")
    for a, b in (("a", "b"), ("a", "c"), ("a", "d")):
        make_link(db, a, b)
    inventory.delete_link(inventory.find_link("a", "c"))
    assert addressing.lowest_free_vni(db.session, column) == 2
