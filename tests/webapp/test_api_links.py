"""API v1 links: VNIs, the endpoint rule, deletes, refusals."""

import pytest


@pytest.fixture
def three_nodes(api):
    api("POST", "/api/v1/nodes", {"name": "rho", "endpoint": "203.0.113.1:56560"})
    api("POST", "/api/v1/nodes", {"name": "epsilon", "endpoint": "203.0.113.2:56560"})
    api("POST", "/api/v1/nodes", {"name": "pi0"})


def links(api):
    return api("GET", "/api/v1/links").json["links"]


def test_create_link_gets_lowest_vni(api, three_nodes):
    first = api("POST", "/api/v1/links", {"a": "rho", "b": "epsilon"})
    assert first.status_code == 201
    # no cost given: privnet derives it (latency mode); nothing is measured yet, so 100 ms x 10 per ms
    assert first.json == {
        "a": "rho",
        "b": "epsilon",
        "vni": 1,
        "cost": 1000,
        "enabled": True,
        "cost_pinned": False,
        "in_tree": True,
        "cost_reason": "tree link: not measured: planned as 100.0 ms (default) → cost 1000",
        "rtt_ms": 100.0,
    }
    second = api("POST", "/api/v1/links", {"a": "pi0", "b": "rho", "cost": 250}).json
    assert (second["vni"], second["cost"], second["cost_pinned"]) == (2, 250, True)


def test_deleting_a_link_frees_its_vni(api, three_nodes):
    api("POST", "/api/v1/links", {"a": "rho", "b": "epsilon"})
    api("POST", "/api/v1/links", {"a": "rho", "b": "pi0"})
    assert api("DELETE", "/api/v1/links/epsilon/rho").status_code == 204
    assert api("POST", "/api/v1/links", {"a": "epsilon", "b": "pi0"}).json["vni"] == 1


def test_deleting_a_node_deletes_its_links(api, three_nodes):
    api("POST", "/api/v1/links", {"a": "rho", "b": "epsilon"})
    api("POST", "/api/v1/links", {"a": "rho", "b": "pi0"})
    api("DELETE", "/api/v1/nodes/rho")
    assert links(api) == []
    assert api("POST", "/api/v1/links", {"a": "epsilon", "b": "pi0"}).json["vni"] == 1


def test_link_between_two_nodes_without_endpoint_is_refused(api, three_nodes):
    api("POST", "/api/v1/nodes", {"name": "pi1"})
    response = api("POST", "/api/v1/links", {"a": "pi0", "b": "pi1"})
    assert response.status_code == 400
    assert response.json["field"] == "b"
    assert "neither pi0 nor pi1 has an endpoint" in response.json["error"]
    assert links(api) == []


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"a": "rho", "b": "rho"}, 400, "b"),
        ({"a": "rho", "b": "ghost"}, 404, "b"),
        ({"a": "ghost", "b": "rho"}, 404, "a"),
        ({"a": "rho"}, 400, "b"),
        ({"b": "rho"}, 400, "a"),
        ({"a": "rho", "b": "epsilon", "cost": 0}, 400, "cost"),
        ({"a": "rho", "b": "epsilon", "cost": 65536}, 400, "cost"),
        ({"a": "rho", "b": "epsilon", "cost": "cheap"}, 400, "cost"),
        ({"a": "rho", "b": "epsilon", "vni": 9}, 400, "vni"),
        ({"a": "RHO", "b": "epsilon"}, 400, "a"),
        ({"a": ["rho"], "b": "epsilon"}, 400, "a"),
    ],
)
def test_bad_links_are_refused(api, three_nodes, body, status, field):
    api("POST", "/api/v1/links", {"a": "epsilon", "b": "pi0"})
    response = api("POST", "/api/v1/links", body)
    assert response.status_code == status
    assert response.json["field"] == field
    assert [(link["a"], link["b"]) for link in links(api)] == [("epsilon", "pi0")]


def test_duplicate_link_in_either_order_is_a_conflict(api, three_nodes):
    api("POST", "/api/v1/links", {"a": "rho", "b": "epsilon"})
    response = api("POST", "/api/v1/links", {"a": "epsilon", "b": "rho"})
    assert response.status_code == 409
    assert "already linked" in response.json["error"]


def test_patch_link_cost(api, three_nodes):
    api("POST", "/api/v1/links", {"a": "rho", "b": "epsilon"})
    assert api("PATCH", "/api/v1/links/epsilon/rho", {"cost": 42}).json["cost"] == 42
    refused = api("PATCH", "/api/v1/links/rho/epsilon", {"cost": 42, "enabled": "yes"})
    assert refused.json["field"] == "enabled"
    assert api("GET", "/api/v1/links/rho/epsilon").json["enabled"] is True


def test_missing_link_is_404(api, three_nodes):
    response = api("DELETE", "/api/v1/links/rho/pi0")
    assert response.status_code == 404


def test_network_settings_api(api, three_nodes):
    assert api("GET", "/api/v1/network").json["bridge_name"] == "internet"
    response = api("PATCH", "/api/v1/network", {"stp_hello_time": 2, "stp_forward_delay": 4, "stp_max_age": 10})
    assert response.status_code == 200
    assert response.json["stp_forward_delay"] == 4
    shrink = api("PATCH", "/api/v1/network", {"underlay_cidr": "10.88.88.0/30", "stp_hello_time": 1})
    assert shrink.status_code == 400
    assert shrink.json["field"] == "underlay_cidr"
    assert api("GET", "/api/v1/network").json["stp_hello_time"] == 2
    clash = api("PATCH", "/api/v1/network", {"bridge_name": "rho"})
    assert clash.json["field"] == "bridge_name"
