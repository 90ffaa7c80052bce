"""API v1 nodes: the contract of design.md §4, allocation, refusals that change nothing."""

import pytest

from webapp.models import Node


def node_names(api):
    return [node["name"] for node in api("GET", "/api/v1/nodes").json["nodes"]]


def test_create_node_answers_the_contract(api):
    response = api("POST", "/api/v1/nodes", {"name": "rho", "endpoint": "203.0.113.7:56560", "location": "Paris"})
    assert response.status_code == 201
    body = response.json
    assert body["name"] == "rho"
    assert body["underlay_ip"] == "10.88.88.1"
    assert body["overlay_ip"] == "10.99.99.1"
    assert body["endpoint"] == "203.0.113.7:56560"
    assert body["listen_port"] == 56560
    assert len(body["public_key"]) == 44
    assert body["enroll"]["url"].startswith("http://privnet.test/enroll/")
    assert body["enroll"]["command"] == f"curl -fsSL {body['enroll']['url']} | sudo sh"
    assert body["enroll"]["expires_at"]
    assert "private_key" not in str(body)


def test_addresses_are_the_lowest_free_and_reused_after_delete(api):
    for name in ("a", "b", "c"):
        api("POST", "/api/v1/nodes", {"name": name, "endpoint": f"{name}.example:1"})
    assert api("DELETE", "/api/v1/nodes/b").status_code == 204
    body = api("POST", "/api/v1/nodes", {"name": "d"}).json
    assert (body["underlay_ip"], body["overlay_ip"]) == ("10.88.88.2", "10.99.99.2")


def test_admin_may_name_free_addresses(api):
    body = api("POST", "/api/v1/nodes", {"name": "a", "underlay_ip": "10.88.88.50", "overlay_ip": "10.99.99.60"}).json
    assert (body["underlay_ip"], body["overlay_ip"]) == ("10.88.88.50", "10.99.99.60")
    taken = api("POST", "/api/v1/nodes", {"name": "b", "underlay_ip": "10.88.88.50"})
    assert taken.status_code == 409
    assert taken.json["field"] == "underlay_ip"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Rho"}, "name"),
        ({"name": "rho;reboot"}, "name"),
        ({"name": "wg0"}, "name"),
        ({"name": "a" * 16}, "name"),
        ({}, "name"),
        ({"name": 5}, "name"),
        ({"name": "rho", "endpoint": "nope"}, "endpoint"),
        ({"name": "rho", "endpoint": "1.2.3.4:0"}, "endpoint"),
        ({"name": "rho", "endpoint": "$(id):1"}, "endpoint"),
        ({"name": "rho", "listen_port": 70000}, "listen_port"),
        ({"name": "rho", "listen_port": "x"}, "listen_port"),
        ({"name": "rho", "bridge_priority": 100}, "bridge_priority"),
        ({"name": "rho", "underlay_ip": "10.99.99.1"}, "underlay_ip"),
        ({"name": "rho", "overlay_ip": "10.99.99.255"}, "overlay_ip"),
        ({"name": "rho", "location": "x" * 500}, "location"),
        ({"name": "rho", "public_key": "x"}, "public_key"),
        ({"name": "rho", "private_key": "x"}, "private_key"),
    ],
)
def test_bad_node_input_is_refused_with_field_and_nothing_changes(api, body, field):
    api("POST", "/api/v1/nodes", {"name": "keep", "endpoint": "203.0.113.1:1"})
    response = api("POST", "/api/v1/nodes", body)
    assert 400 <= response.status_code < 500
    assert response.json["field"] == field
    assert response.json["error"]
    assert node_names(api) == ["keep"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("not json", "application/json"),
        ("[1, 2]", "application/json"),
        ("null", "application/json"),
        ("name=rho", "application/x-www-form-urlencoded"),
        ("\xff\xfe", "application/json"),
    ],
)
def test_non_object_bodies_get_400(api, data, content_type):
    response = api("POST", "/api/v1/nodes", data=data, headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert response.json["field"] == "body"


def test_duplicate_name_is_a_conflict(api):
    api("POST", "/api/v1/nodes", {"name": "rho"})
    response = api("POST", "/api/v1/nodes", {"name": "rho"})
    assert response.status_code == 409
    assert response.json == {"error": "a node called 'rho' already exists", "field": "name"}


def test_get_patch_delete_node(api):
    api("POST", "/api/v1/nodes", {"name": "vorke"})
    assert api("GET", "/api/v1/nodes/vorke").json["endpoint"] is None
    patched = api("PATCH", "/api/v1/nodes/vorke", {"endpoint": "[2001:db8::3]:56560", "bridge_priority": 4096})
    assert patched.status_code == 200
    assert patched.json["endpoint"] == "[2001:db8::3]:56560"
    assert patched.json["bridge_priority"] == 4096
    assert api("DELETE", "/api/v1/nodes/vorke").status_code == 204
    assert api("GET", "/api/v1/nodes/vorke").status_code == 404


def test_patch_is_all_or_nothing(api):
    api("POST", "/api/v1/nodes", {"name": "bob", "endpoint": "203.0.113.4:56560", "location": "UK"})
    response = api("PATCH", "/api/v1/nodes/bob", {"location": "Stafford", "bridge_priority": 3})
    assert response.status_code == 400
    assert response.json["field"] == "bridge_priority"
    assert api("GET", "/api/v1/nodes/bob").json["location"] == "UK"


def test_name_cannot_be_patched(api):
    api("POST", "/api/v1/nodes", {"name": "bob"})
    response = api("PATCH", "/api/v1/nodes/bob", {"name": "bobby"})
    assert response.status_code == 400
    assert response.json["field"] == "name"
    assert "cannot be changed" in response.json["error"]


def test_removing_an_endpoint_that_a_link_needs_is_refused(api):
    api("POST", "/api/v1/nodes", {"name": "rho", "endpoint": "203.0.113.1:56560"})
    api("POST", "/api/v1/nodes", {"name": "pi0"})
    assert api("POST", "/api/v1/links", {"a": "rho", "b": "pi0"}).status_code == 201
    response = api("PATCH", "/api/v1/nodes/rho", {"endpoint": None})
    assert response.status_code == 400
    assert response.json["field"] == "endpoint"
    assert "pi0" in response.json["error"]
    assert api("GET", "/api/v1/nodes/rho").json["endpoint"] == "203.0.113.1:56560"


def test_unknown_node_is_404_json(api):
    response = api("GET", "/api/v1/nodes/ghost")
    assert response.status_code == 404
    assert response.json["field"] == "name"


def test_api_needs_a_token(client, admin):
    response = client.get("/api/v1/nodes")
    assert response.status_code == 401
    assert response.json["field"] == "Authorization"
    bad = client.get("/api/v1/nodes", headers={"Authorization": "Bearer " + "x" * 43})
    assert bad.status_code == 401


def test_session_writes_need_the_csrf_header(app, auth):
    app.config["WTF_CSRF_ENABLED"] = True
    refused = auth.post("/api/v1/nodes", json={"name": "rho"})
    assert refused.status_code == 400
    assert refused.json["field"] == "X-CSRFToken"
    page = auth.get("/nodes/").text
    token = page.split('name="csrf-token" content="')[1].split('"')[0]
    accepted = auth.post("/api/v1/nodes", json={"name": "rho"}, headers={"X-CSRFToken": token})
    assert accepted.status_code == 201
    assert auth.get("/api/v1/nodes").status_code == 200


def test_enrollment_reissue_returns_fresh_link(api, db):
    first = api("POST", "/api/v1/nodes", {"name": "rho"}).json["enroll"]
    second = api("POST", "/api/v1/nodes/rho/enrollment").json
    assert second["url"] != first["url"]
    assert second["command"].endswith("| sudo sh")


def test_private_key_is_stored_encrypted(api, db, app):
    from webapp import keys

    api("POST", "/api/v1/nodes", {"name": "rho"})
    node = db.session.execute(db.select(Node)).scalar_one()
    private = keys.decrypt_private_key(node.private_key_encrypted, app.config["SECRET_KEY"])
    assert keys.public_key_of(private) == node.public_key
    assert private.encode() not in node.private_key_encrypted
