"""No bad input gives a 500: random and hostile bodies against every write endpoint."""

import random

import pytest

HOSTILE_VALUES = [
    None,
    True,
    0,
    -1,
    2**63,
    1.5,
    "",
    " ",
    "a" * 5000,
    "\x00",
    "\n",
    "ü",
    "$(id)",
    "'",
    '"',
    "{}",
    [],
    {},
    ["rho"],
    {"x": 1},
    "10.88.88.1",
    "rho",
    "[::1]:1",
    "1.2.3.4:99999",
    "NaN",
    "seed",
    "latency",
]
FIELDS = [
    "name",
    "endpoint",
    "listen_port",
    "location",
    "bridge_priority",
    "underlay_ip",
    "overlay_ip",
    "a",
    "b",
    "cost",
    "enabled",
    "stp_hello_time",
    "underlay_cidr",
    "bridge_name",
    "report_interval",
    "vxlan_port",
    "tree_mode",
    "cost_pinned",
    "priority_pinned",
]
ENDPOINTS = [
    ("POST", "/api/v1/nodes"),
    ("PATCH", "/api/v1/nodes/rho"),
    ("POST", "/api/v1/links"),
    ("PATCH", "/api/v1/links/rho/bob"),
    ("PATCH", "/api/v1/network"),
    ("POST", "/api/v1/nodes/rho/enrollment"),
    ("POST", "/api/v1/plan"),
]


@pytest.mark.parametrize("seed", range(4))
def test_random_bodies_never_give_500(api, seed):
    api("POST", "/api/v1/nodes", {"name": "rho", "endpoint": "203.0.113.1:56560"})
    api("POST", "/api/v1/nodes", {"name": "bob"})
    api("POST", "/api/v1/links", {"a": "rho", "b": "bob"})
    generator = random.Random(seed)
    for _ in range(150):
        method, path = generator.choice(ENDPOINTS)
        body = {generator.choice(FIELDS): generator.choice(HOSTILE_VALUES) for _ in range(generator.randint(0, 4))}
        response = api(method, path, body)
        assert response.status_code < 500, (method, path, body, response.text)
    # what was stored stays consistent: both nodes, with unique addresses
    nodes = api("GET", "/api/v1/nodes").json["nodes"]
    assert len({node["underlay_ip"] for node in nodes}) == len(nodes)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/nodes/%00", "/api/v1/nodes/" + "a" * 300, "/api/v1/links/a/%2F", "/nodes/%C3%BC", "/enroll/%00/qr.svg"],
)
def test_odd_paths_never_give_500(api, auth, path):
    assert api("GET", path).status_code < 500
    assert auth.get(path).status_code < 500
