"""The HTML pages: login, CSRF, node and link forms with errors beside the field."""

import re

import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.factories import make_link, make_node


def csrf_token_of(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def test_pages_need_a_session(client):
    for path in ("/", "/nodes/", "/nodes/new", "/links/", "/network/"):
        response = client.get(path)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_wrong_password_is_refused(client, admin):
    response = client.post("/login", data={"name": "admin", "password": "wrong password"})
    assert response.status_code == 200
    assert "name or password is wrong" in response.text
    assert client.get("/nodes/").status_code == 302


def test_login_does_not_redirect_off_site(client, admin):
    response = client.post("/login?next=https://evil.example/", data={"name": "admin", "password": ADMIN_PASSWORD})
    assert response.headers["Location"] == "/"


def test_login_is_rate_limited(app, client, admin):
    app.config["RATELIMIT_ENABLED"] = True
    from webapp.extensions import limiter

    limiter.init_app(app)
    limiter.reset()
    statuses = [client.post("/login", data={"name": "admin", "password": "guess"}).status_code for _ in range(12)]
    assert statuses[:10] == [200] * 10
    assert statuses[10:] == [429, 429]


def test_forms_need_csrf(app, auth, db):
    from webapp import inventory

    app.config["WTF_CSRF_ENABLED"] = True
    response = auth.post("/nodes/new", data={"name": "rho"})
    assert response.status_code == 400
    assert "CSRF token is missing" in response.text
    assert inventory.list_nodes() == []
    token = csrf_token_of(auth.get("/nodes/new").text)
    created = auth.post("/nodes/new", data={"name": "rho", "csrf_token": token})
    assert created.status_code == 200
    assert "curl -fsSL http://privnet.test/enroll/" in created.text
    assert [node.name for node in inventory.list_nodes()] == ["rho"]


def test_create_node_through_the_form(auth, db):
    response = auth.post("/nodes/new", data={"name": "rho", "endpoint": "203.0.113.1:56560", "location": "Paris"})
    assert "Set up rho" in response.text
    assert "| sudo sh" in response.text
    assert "qr.svg" in response.text
    listing = auth.get("/nodes/").text
    assert "10.88.88.1" in listing and "10.99.99.1" in listing and "Paris" in listing


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "Rho"}, "name must be 1-15 characters"),
        ({"name": "rho", "endpoint": "bad"}, "endpoint must be host:port"),
        ({"name": "rho", "bridge_priority": "5"}, "multiple of 4096"),
        ({"name": "rho", "underlay_ip": "10.1.1.1"}, "outside 10.88.88.0/24"),
    ],
)
def test_node_form_errors_appear_beside_the_field(auth, data, message):
    response = auth.post("/nodes/new", data=data)
    assert response.status_code == 200
    field = next(key for key in ("endpoint", "bridge_priority", "underlay_ip", "name") if key in data)
    block = response.text.split(f'id="{field}"')[1].split('class="field')[0]
    assert message in block


def test_edit_and_delete_node(auth, db):
    make_node(db, name="rho")
    make_node(db, name="bob", endpoint="203.0.113.4:56560")
    make_link(db, "rho", "bob")
    edited = auth.post(
        "/nodes/rho/edit",
        data={
            "location": "Paris",
            "endpoint": "203.0.113.1:56560",
            "listen_port": "56560",
            "bridge_priority": "4096",
            "underlay_ip": "10.88.88.1",
            "overlay_ip": "10.99.99.9",
        },
    )
    assert edited.status_code == 302
    detail = auth.get("/nodes/rho").text
    assert "10.99.99.9" in detail and "4096" in detail and "bob" in detail
    confirm = auth.get("/nodes/rho/delete").text
    assert "bob" in confirm
    assert auth.post("/nodes/rho/delete").status_code == 302
    assert auth.get("/nodes/rho").status_code == 404
    assert "No links yet" in auth.get("/links/").text


def test_links_page_creates_and_refuses(auth, db):
    make_node(db, name="rho", endpoint="203.0.113.1:56560")
    make_node(db, name="pi0", endpoint=None)
    make_node(db, name="pi1", endpoint=None)
    refused = auth.post("/links/", data={"a": "pi0", "b": "pi1", "cost": ""})
    assert "neither pi0 nor pi1 has an endpoint" in refused.text
    created = auth.post("/links/", data={"a": "rho", "b": "pi0", "cost": "50"}, follow_redirects=True)
    assert "VNI 1" in created.text
    bad_cost = auth.post("/links/rho/pi0/edit", data={"cost": "0"})
    assert "1 to 65535" in bad_cost.text
    assert auth.post("/links/pi0/rho/delete").status_code == 302
    assert "No links yet" in auth.get("/links/").text


def network_form(**overrides: str) -> dict:
    return {
        "name": "privnet",
        "underlay_cidr": "10.88.88.0/24",
        "overlay_cidr": "10.99.99.0/24",
        "bridge_name": "internet",
        "vxlan_port": "4789",
        "listen_port": "56560",
        "stp_hello_time": "1",
        "stp_forward_delay": "2",
        "stp_max_age": "6",
        "report_interval": "10",
    } | overrides


def test_network_page_refuses_bad_timers(auth):
    page = auth.get("/network/").text
    assert 'value="10.88.88.0/24"' in page and 'value="internet"' in page
    data = network_form(stp_forward_delay="1")
    response = auth.post("/network/", data=data)
    assert "stp_forward_delay must be a whole number from 2 to 30" in response.text
    assert auth.post("/network/", data=data | {"stp_forward_delay": "3"}).status_code == 302


def test_unknown_page_is_a_404_page(auth):
    response = auth.get("/nodes/ghost")
    assert response.status_code == 404
    assert "No node is called" in response.text


def node_form(**overrides: str) -> dict:
    return {
        "location": "",
        "endpoint": "203.0.113.1:56560",
        "listen_port": "56560",
        "bridge_priority": "",
        "underlay_ip": "10.88.88.1",
        "overlay_ip": "10.99.99.1",
    } | overrides


def test_links_page_shows_the_plan_and_pins_and_unpins_costs(auth, db):
    from webapp import inventory

    make_node(db, name="rho", endpoint="203.0.113.1:56560")
    make_node(db, name="bob", endpoint="203.0.113.2:56560")
    make_link(db, "rho", "bob")
    row = re.search(r"<tr>\s*<td><a[^>]*>rho</a>.*?</tr>", auth.get("/links/").text, re.S).group(0)
    assert ">1000 <a" in row and "in tree" in row and "100.0 ms" in row and "not measured" in row
    assert 'class="tag">pinned' not in row
    assert auth.post("/links/rho/bob/edit", data={"cost": "42"}).status_code == 302
    page = auth.get("/links/").text
    assert '42 <span class="tag">pinned</span>' in page and "pinned by admin" in page
    edit = auth.get("/links/rho/bob/edit").text
    assert 'value="42"' in edit and "Unpin" in edit
    assert auth.post("/links/rho/bob/edit", data={"cost": ""}).status_code == 302  # empty: derived again
    link = inventory.find_link("rho", "bob")
    assert (link.cost_pinned, link.cost) == (False, 100)
    assert 'class="tag">pinned' not in auth.get("/links/").text
    assert 'value=""' in auth.get("/links/rho/bob/edit").text


def test_node_pages_show_role_and_pin_and_unpin_priorities(auth, db):
    from webapp import inventory

    make_node(db, name="rho", endpoint="203.0.113.1:56560")
    make_node(db, name="bob", endpoint="203.0.113.2:56560")
    make_link(db, "rho", "bob")
    detail = auth.get("/nodes/bob").text
    assert "Spanning tree role" in detail and re.search(r"<dd>(root|backup root) <span", detail)
    assert 'name="bridge_priority" type="text" value=""' in auth.get("/nodes/rho/edit").text
    assert auth.post("/nodes/rho/edit", data=node_form(bridge_priority="8192")).status_code == 302
    assert '8192 <span class="tag">pinned</span>' in auth.get("/nodes/rho").text
    assert 'value="8192"' in auth.get("/nodes/rho/edit").text
    assert auth.post("/nodes/rho/edit", data=node_form()).status_code == 302  # empty: derived again
    rho = inventory.get_node("rho")
    assert (rho.priority_pinned, rho.bridge_priority) == (False, 32768)
    assert 'class="tag">pinned' not in auth.get("/nodes/rho").text


def test_network_page_switches_the_tree_mode(auth, db):
    make_node(db, name="rho", endpoint="203.0.113.1:56560")
    make_node(db, name="bob", endpoint="203.0.113.2:56560")
    make_link(db, "rho", "bob")
    page = auth.get("/network/").text
    assert '<option selected value="latency">' in page and "Spanning tree" in page
    data = network_form()
    refused = auth.post("/network/", data=data | {"tree_mode": "fastest"})
    assert "tree_mode must be" in refused.text
    assert auth.post("/network/", data=data | {"tree_mode": "seed"}).status_code == 302
    assert '<option selected value="seed">' in auth.get("/network/").text
    links = auth.get("/links/").text
    assert "seed settings" in links and ">100 <a" in links
