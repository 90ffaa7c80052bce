"""HostConfig: the one definition of a host's desired state."""

from dataclasses import asdict

from tests.factories import make_link, make_node
from webapp import inventory, planning
from webapp.hostconfig import build_host_config


def host_config(name: str):
    node, network = inventory.get_node(name), inventory.get_network()
    return build_host_config(
        node, network, inventory.links_of(node), "http://privnet.test", plan=planning.stored_plan(network)
    )


def test_to_dict_is_asdict_and_the_version_covers_everything(db):
    make_node(db, name="rho", endpoint="203.0.113.1:56560")
    make_node(db, name="pi0", endpoint=None)
    make_link(db, "rho", "pi0", cost=40)
    config = host_config("rho")
    assert config.to_dict() == asdict(config)
    assert [peer["name"] for peer in config.to_dict()["peers"]] == ["pi0"]
    assert config.peers[0].keepalive == 25  # pi0 has no endpoint
    inventory.update_link(inventory.find_link("rho", "pi0"), {"cost": 41})
    changed = host_config("rho")
    assert changed.version != config.version
