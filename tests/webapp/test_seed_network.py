"""The seed's network, built through the API as a new user would: unique addresses and VNIs."""

SEED_NODES = [
    ("bob", "86.188.161.69:56560", "Stafford, UK"),
    ("rho", "203.0.113.2:56560", "Paris, FR"),
    ("vorke", "vorke.example.net:56560", "Ottawa, CA"),
    ("epsilon", "104.196.99.86:56560", "Eastern US"),
    ("pi0", None, "Roaming"),
]
SEED_LINKS = [
    ("epsilon", "vorke"),
    ("epsilon", "bob"),
    ("vorke", "bob"),
    ("epsilon", "rho"),
    ("vorke", "rho"),
    ("bob", "rho"),
    ("rho", "pi0"),
]


def test_seed_network_through_the_api(api):
    for name, endpoint, location in SEED_NODES:
        body = {"name": name, "location": location} | ({"endpoint": endpoint} if endpoint else {})
        assert api("POST", "/api/v1/nodes", body).status_code == 201
    vnis = [api("POST", "/api/v1/links", {"a": a, "b": b}).json["vni"] for a, b in SEED_LINKS]
    nodes = {node["name"]: node for node in api("GET", "/api/v1/nodes").json["nodes"]}
    # the seed's own numbering: bob .1, rho .2, vorke .3, epsilon .4, pi0 .5; VNIs 1-5 as in its post
    assert [nodes[name]["underlay_ip"] for name, _, _ in SEED_NODES] == [f"10.88.88.{n}" for n in range(1, 6)]
    assert [nodes[name]["overlay_ip"] for name, _, _ in SEED_NODES] == [f"10.99.99.{n}" for n in range(1, 6)]
    assert vnis == [1, 2, 3, 4, 5, 6, 7]
    assert len({node["public_key"] for node in nodes.values()}) == 5
    assert nodes["pi0"]["endpoint"] is None
