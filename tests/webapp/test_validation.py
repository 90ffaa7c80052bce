"""Every input rule refuses with the field and the rule, and accepts what it should."""

import pytest

from webapp import validation
from webapp.errors import ValidationError


@pytest.mark.parametrize("name", ["a", "rho", "pi0", "us-east-1", "a" * 15, "x-"])
def test_good_node_names(name):
    assert validation.validate_node_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "1abc",
        "-a",
        "a" * 16,
        "rho;reboot",
        "rho$(id)",
        "a b",
        "ä",
        "rho\n",
        "wg0",
        "lo",
        "internet",
        "all",
        "default",
        None,
        5,
    ],
)
def test_bad_node_names(name):
    with pytest.raises(ValidationError) as error:
        validation.validate_node_name(name)
    assert error.value.field == "name"


def test_bridge_name_is_reserved_too():
    with pytest.raises(ValidationError, match="reserved"):
        validation.validate_node_name("lan", bridge_name="lan")


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("203.0.113.7:56560", "203.0.113.7", 56560),
        ("[2001:db8::1]:51820", "2001:db8::1", 51820),
        ("[2001:DB8:0::1]:1", "2001:db8::1", 1),
        ("Vorke.Example.NET:65535", "vorke.example.net", 65535),
        ("localhost:80", "localhost", 80),
        ("xn--bcher-kva.example:443", "xn--bcher-kva.example", 443),
    ],
)
def test_good_endpoints(text, host, port):
    assert validation.parse_endpoint(text) == validation.Endpoint(host, port)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "203.0.113.7",
        "203.0.113.7:0",
        "203.0.113.7:65536",
        "203.0.113.7:080",
        "203.0.113.7:-1",
        "999.1.1.1:80",
        "1.2.3:80",
        "2001:db8::1:80",
        "[203.0.113.7]:80",
        "[2001:db8::zz]:80",
        "host_name:80",
        "-bad.example:80",
        "a..b:80",
        "exa mple:80",
        "$(reboot):80",
        "`id`.example:80",
        "a.example:80;rm -rf /",
        "'a':80",
        "a" * 64 + ".example:80",
        "example.com.:80:",
        None,
        80,
    ],
)
def test_bad_endpoints(text):
    with pytest.raises(ValidationError) as error:
        validation.parse_endpoint(text)
    assert error.value.field == "endpoint"
    assert "endpoint" in error.value.message


@pytest.mark.parametrize("value", [1, 100, 65535, "42"])
def test_good_costs(value):
    assert validation.validate_cost(value) == int(value)


@pytest.mark.parametrize("value", [0, 65536, -1, 1.5, "1e3", True, None, "ten"])
def test_bad_costs(value):
    with pytest.raises(ValidationError, match="1 to 65535"):
        validation.validate_cost(value)


@pytest.mark.parametrize("value", [0, 4096, 32768, 61440])
def test_good_priorities(value):
    assert validation.validate_priority(value) == value


@pytest.mark.parametrize("value", [1, 4095, 61441, 65536, -4096, 32768.0, "x"])
def test_bad_priorities(value):
    with pytest.raises(ValidationError) as error:
        validation.validate_priority(value)
    assert error.value.field == "bridge_priority"


@pytest.mark.parametrize("value", ["10.88.88.0/24", "10.0.0.0/8", "192.0.2.0/30"])
def test_good_cidrs(value):
    assert str(validation.validate_cidr(value, field="underlay_cidr")) == value


@pytest.mark.parametrize(
    "value", ["10.88.88.1/24", "10.88.88.0/31", "10.0.0.0/7", "10.88.88.0", "fd00::/64", "x", None]
)
def test_bad_cidrs(value):
    with pytest.raises(ValidationError) as error:
        validation.validate_cidr(value, field="underlay_cidr")
    assert error.value.field == "underlay_cidr"


def test_stp_timer_rules():
    assert validation.validate_stp_timers(1, 2, 6) == (1, 2, 6)
    assert validation.validate_stp_timers(2, 15, 20) == (2, 15, 20)
    with pytest.raises(ValidationError, match="stp_forward_delay"):
        validation.validate_stp_timers(1, 1, 6)
    with pytest.raises(ValidationError) as error:
        validation.validate_stp_timers(4, 15, 6)
    assert error.value.field == "stp_max_age"


@pytest.mark.parametrize("value", ["Paris\n", "x" * 121, "\x00", 5])
def test_bad_locations(value):
    with pytest.raises(ValidationError, match="printable"):
        validation.validate_location(value)
