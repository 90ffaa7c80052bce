"""Lowest-free allocation of addresses and VNIs."""

import ipaddress

import pytest

from webapp import addressing
from webapp.errors import AllocationExhaustedError, ConflictError, ValidationError

NET = ipaddress.IPv4Network("10.88.88.0/24")


def test_first_address_is_dot_one():
    assert addressing.lowest_free_address(NET, [], field="underlay_ip") == "10.88.88.1"


def test_fills_the_lowest_gap():
    used = ["10.88.88.1", "10.88.88.2", "10.88.88.4"]
    assert addressing.lowest_free_address(NET, used, field="underlay_ip") == "10.88.88.3"


def test_never_hands_out_broadcast_when_full():
    small = ipaddress.IPv4Network("10.0.0.0/30")  # hosts .1 and .2 only
    with pytest.raises(AllocationExhaustedError) as error:
        addressing.lowest_free_address(small, ["10.0.0.1", "10.0.0.2"], field="overlay_ip")
    assert error.value.field == "overlay_ip"


@pytest.mark.parametrize(
    ("requested", "error_type", "text"),
    [
        ("10.88.89.1", ValidationError, "outside"),
        ("10.88.88.0", ValidationError, "network or broadcast"),
        ("10.88.88.255", ValidationError, "network or broadcast"),
        ("10.88.88.7", ConflictError, "already taken"),
        ("not-an-ip", ValidationError, "IPv4 address"),
        (7, ValidationError, "IPv4 address"),
    ],
)
def test_requested_address_rules(requested, error_type, text):
    with pytest.raises(error_type) as error:
        addressing.check_requested_address(NET, requested, ["10.88.88.7"], field="underlay_ip")
    assert text in error.value.message
    assert error.value.field == "underlay_ip"


def test_requested_free_address_is_accepted():
    assert addressing.check_requested_address(NET, "10.88.88.200", ["10.88.88.7"], field="x") == "10.88.88.200"


def test_vni_starts_at_one_and_fills_gaps():
    assert addressing.lowest_free_vni([]) == 1
    assert addressing.lowest_free_vni([1, 2, 4]) == 3
