"""The agent's live-config side without a kernel (no root): validation, the diff, the files it
writes, key rotation, and its config loop against a tiny HTTP server on 127.0.0.1.

Desired states are built with the app's own ``HostConfig`` and served as ``to_dict()`` through
JSON, exactly what ``GET /api/v1/agent/config`` answers. ``actual_as_up_leaves_it`` builds the
kernel and WireGuard state the setup script's ``up`` makes for a config (the kernel tests in
``test_agent_apply_kernel.py`` check against the real thing); each diff test changes one thing.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bootstrap import agent
from bootstrap.agent import Actual, Interface, Vxlan, WgDevice, WgPeer
from webapp.hostconfig import HostConfig, LinkConfig, PeerConfig
from webapp.keys import generate_keypair
from webapp.rendering import bridge_mac_address, render_host_files

TOKEN = "agent-token-" + "t0k3n" * 7
NODE = generate_keypair()
PEERS = {name: generate_keypair() for name in ("bob", "carol", "dave")}
NUMBERS = {"alice": 1, "bob": 2, "carol": 3, "dave": 4}


def host_config(*, links: dict[str, tuple[int, int]] | None = None, **settings) -> HostConfig:
    """alice's HostConfig; ``links``: peer -> (vni, cost); bob and carol have endpoints, dave none."""
    links = {"bob": (1, 100), "carol": (2, 100)} if links is None else links
    peers, wires = [], []
    for name, (vni, cost) in sorted(links.items()):
        endpoint = None if name == "dave" else f"192.0.2.{NUMBERS[name]}:56560"
        peers.append(PeerConfig(name=name, public_key=PEERS[name].public_key, allowed_ip=f"10.88.88.{NUMBERS[name]}/32",
                                endpoint=endpoint, keepalive=25 if endpoint is None else None))  # fmt: skip
        wires.append(LinkConfig(name=name, vni=vni, local="10.88.88.1", remote=f"10.88.88.{NUMBERS[name]}", cost=cost))
    values = {
        "node": "alice", "network": "privnet", "app_url": "http://192.0.2.254:8000", "listen_port": 56560,
        "underlay_ip": "10.88.88.1", "underlay_prefix": 24, "overlay_ip": "10.99.99.1", "overlay_prefix": 24,
        "bridge_name": "internet", "bridge_priority": 32768, "vxlan_port": 4789, "mtu": 1500,
        "stp_hello_time": 1, "stp_forward_delay": 2, "stp_max_age": 6, "report_interval": 10,
        "peers": tuple(peers), "links": tuple(wires), "key_rotation": None, "version": "0123456789abcdef",
    }  # fmt: skip
    values.update(settings)
    return HostConfig(**values)


def body(data) -> bytes:
    return json.dumps(data).encode()


def served(config: HostConfig) -> dict:
    """What the app serves: ``to_dict()`` through JSON."""
    return json.loads(json.dumps(config.to_dict()))


def desired(**kwargs) -> dict:
    return agent.validate_config(served(host_config(**kwargs)))


def actual_as_up_leaves_it(config: dict, private_key: str = NODE.private_key) -> Actual:
    """The interfaces and WireGuard state the setup script's ``up`` makes for ``config``."""
    bridge = config["bridge_name"]
    interfaces = {
        "lo": Interface("lo", 1, None, True, 65536, None, "00:00:00:00:00:00", addresses=("127.0.0.1/8",)),
        "eth0": Interface("eth0", 2, "veth", True, 1500, None, "aa:aa:aa:aa:aa:01", addresses=("192.0.2.1/24",)),
        "wg0": Interface("wg0", 3, "tun", True, 1420, "privnet", None,
                         addresses=(f"{config['underlay_ip']}/{config['underlay_prefix']}",)),
        bridge: Interface(bridge, 4, "bridge", True, 1500, "privnet", agent.bridge_mac_address(config),
                          addresses=(f"{config['overlay_ip']}/{config['overlay_prefix']}",),
                          bridge=agent.bridge_settings(config)),
    }  # fmt: skip
    for index, link in enumerate(config["links"], start=5):
        interfaces[link["name"]] = Interface(
            link["name"], index, "vxlan", True, config["mtu"], "privnet", f"aa:bb:cc:dd:ee:{index:02x}", master=bridge,
            vxlan=Vxlan(link["vni"], link["local"], link["remote"], config["vxlan_port"]), cost=link["cost"],
            tx_checksum=False,
        )  # fmt: skip
    peers = {
        peer["public_key"]: WgPeer(peer["public_key"], peer["endpoint"], (peer["allowed_ip"],), peer["keepalive"] or 0)
        for peer in config["peers"]
    }
    return Actual(interfaces, WgDevice(config["listen_port"], private_key, peers))


def endpoints_of(config: dict) -> dict[str, str | None]:
    return {peer["name"]: peer["endpoint"] for peer in config["peers"] if peer["endpoint"]}


def changes(config: dict, actual: Actual, **kwargs) -> list[str]:
    kwargs.setdefault("private_key", NODE.private_key)
    kwargs.setdefault("endpoints", endpoints_of(config))
    return [str(change) for change in agent.diff(config, actual, **kwargs) if not change.quiet]


# --- validation -------------------------------------------------------------------------------


def test_the_apps_config_validates_unchanged() -> None:
    for config in (host_config(), host_config(links={"dave": (7, 3)}, key_rotation="ab" * 16), host_config(links={})):
        data = served(config)
        assert agent.validate_config(data) == data


def test_a_config_from_an_app_without_fast_failover_keeps_it_on() -> None:
    data = served(host_config())
    data.pop("fast_failover", None)
    assert agent.validate_config(data)["fast_failover"] is True


def _set(path: str, value):
    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        target = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is KeyError:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return mutate


MALFORMED = [
    ("links.0.cost", "100", "links[0].cost must be a whole number from 1 to 65535"),
    ("links.0.cost", True, "links[0].cost must be a whole number"),
    ("links.0.cost", 0, "links[0].cost must be a whole number"),
    ("links.0.vni", 16777216, "links[0].vni must be a whole number"),
    ("links.0.name", "../etc", "links[0].name must be 1-15 characters"),
    ("links.0.name", "averyveryverylongname", "links[0].name must be 1-15 characters"),
    ("links.0.name", "wg0", "must not be the reserved name wg0"),
    ("links.0.remote", "10.88.88.9", "links[0] must lead to the peer of the same name"),
    ("links.0.local", "10.88.88.7", "links[0].local must be the node's underlay_ip"),
    ("links.1.vni", 1, "links.vni must be unique"),
    ("peers.0", KeyError, "links[0] must lead to the peer of the same name"),  # bob's link without bob's peer
    ("peers.0.public_key", "not a key", "peers[0].public_key must be a WireGuard key"),
    ("peers.0.public_key", base64.b64encode(bytes(31)).decode() + "AAAA", "peers[0].public_key must be a WireGuard"),
    ("peers.0.allowed_ip", "10.88.88.2/24", "peers[0].allowed_ip must be an IPv4 address with /32"),
    ("peers.0.allowed_ip", "10.88.88.256/32", "peers[0].allowed_ip must be an IPv4 address"),
    ("peers.0.endpoint", "192.0.2.2", "peers[0].endpoint must be host:port"),
    ("peers.0.endpoint", "192.0.2.2:0", "peers[0].endpoint must be host:port"),
    ("peers.0.endpoint", "bad_name!:56560", "peers[0].endpoint must be host:port"),
    ("peers.0.endpoint", "192.0.2.2:56560\nPostUp = x", "peers[0].endpoint must be host:port"),
    ("peers.0.keepalive", 0, "peers[0].keepalive must be a whole number"),
    ("peers.0.name", "alice", "must not be the node's own name"),
    ("peers.1.name", "bob", "peers.name must be unique"),
    ("peers", {}, "peers and links must be lists"),
    ("peers.0", "bob", "peers[0] must be an object"),
    ("listen_port", 70000, "listen_port must be a whole number from 1 to 65535"),
    ("listen_port", 56560.0, "listen_port must be a whole number"),
    ("underlay_ip", "10.88.88.01", "underlay_ip must be an IPv4 address"),
    ("bridge_priority", 1000, "bridge_priority must be a multiple of 4096"),
    ("bridge_name", "eth 0", "bridge_name must be 1-15 characters"),
    ("stp_hello_time", 5, "stp_max_age must be at least 2 x (stp_hello_time + 1)"),
    ("stp_forward_delay", 1, "stp_forward_delay must be a whole number from 2 to 30"),
    ("mtu", 100, "mtu must be a whole number from 1280 to 9000"),
    ("key_rotation", "XYZ", "key_rotation must be null or 32 lower-case hex digits"),
    ("version", "not-hex", "version must be hexadecimal"),
    ("app_url", "file:///etc/passwd", "app_url must be an http(s) URL"),
    ("network", "", "network must be 1-64"),
    ("node", KeyError, "node is missing"),
    ("links", KeyError, "links is missing"),
    ("fast_failover", "yes", "fast_failover must be true or false"),
    ("fast_failover", 1, "fast_failover must be true or false"),
]


@pytest.mark.parametrize(("path", "value", "message"), MALFORMED, ids=[f"{p}={v!r}" for p, v, _ in MALFORMED])
def test_a_malformed_config_is_refused_naming_the_field(path: str, value, message: str) -> None:
    data = served(host_config())
    _set(path, value)(data)
    with pytest.raises(agent.ConfigError) as refused:
        agent.validate_config(data)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_an_answer_must_be_the_config_of_this_node_under_its_etag() -> None:
    data = served(host_config())
    assert agent.validate_answer(body({"config": data}), '"0123456789abcdef"', node="alice")["node"] == "alice"
    assert agent.validate_answer(body({"config": data}), 'W/"0123456789abcdef"', node=None)["node"] == "alice"
    with pytest.raises(agent.ConfigError, match="the answer is not JSON"):
        agent.validate_answer(b"<html>", None, node=None)
    for answer, etag, node, message in [
        (data, None, None, "must be a JSON object"),
        ([data], None, None, "must be a JSON object"),
        ({"config": data}, '"fedcba9876543210"', None, "ETag header does not name the config's version"),
        ({"config": data}, "0123456789abcdef", None, "ETag header"),
        ({"config": data}, None, "bob", "the config is node alice's, and this host is node bob"),
    ]:
        with pytest.raises(agent.ConfigError, match=re.escape(message)):
            agent.validate_answer(body(answer), etag, node=node)


# --- the files: exactly what the setup script writes -----------------------------------------


@pytest.mark.parametrize("links", [{"bob": (1, 100), "carol": (2, 100)}, {"dave": (3, 7)}, {}], ids=str)
def test_wg_conf_config_json_and_bridge_mac_are_the_setup_scripts(links) -> None:
    config = host_config(links=links)
    files = {file.path: file.content for file in render_host_files(config, private_key=NODE.private_key,
                                                                    agent_token="x" * 43)}  # fmt: skip
    data = agent.validate_config(served(config))
    assert agent.render_wg_conf(data, NODE.private_key) == files["/etc/privnet/wg0.conf"]
    assert agent.config_json(data) == files["/etc/privnet/config.json"]
    assert agent.bridge_mac_address(data) == bridge_mac_address(config)


def test_files_are_written_atomically_with_their_mode_and_only_when_they_differ(tmp_path: Path) -> None:
    path = str(tmp_path / "wg0.conf")
    assert agent.write_file(path, "one\n", 0o600) is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    inode = os.stat(path).st_ino
    assert agent.write_file(path, "one\n", 0o600) is False and os.stat(path).st_ino == inode
    assert agent.write_file(path, "two\n", 0o600) is True and Path(path).read_text() == "two\n"
    assert sorted(os.listdir(tmp_path)) == ["wg0.conf"]


# --- the diff ---------------------------------------------------------------------------------


def test_nothing_to_do_when_the_host_is_as_up_left_it() -> None:
    for config in (desired(), desired(links={"dave": (3, 7)}), desired(links={})):
        assert changes(config, actual_as_up_leaves_it(config)) == []


def test_a_new_link_adds_its_peer_before_its_vxlan_and_touches_nothing_else() -> None:
    before, after = desired(), desired(links={"bob": (1, 100), "carol": (2, 100), "dave": (3, 40)})
    planned = agent.diff(after, actual_as_up_leaves_it(before), private_key=NODE.private_key,
                         endpoints=endpoints_of(after))  # fmt: skip
    assert [str(change) for change in planned] == [
        "peer dave: added (10.88.88.4/32, endpoint (none), keepalive 25)",
        "link dave: added (vni 3, remote 10.88.88.4, cost 40)",
    ]
    (peer_set,) = planned[0].args["peers"]
    assert peer_set == agent.PeerSet(
        PEERS["dave"].public_key, endpoint=None, keepalive=25, allowed_ips=("10.88.88.4/32",)
    )
    assert planned[1].args == {"name": "dave", "vxlan": Vxlan(3, "10.88.88.1", "10.88.88.4", 4789), "mtu": 1500,
                               "bridge": "internet", "cost": 40, "up": True}  # fmt: skip


def test_a_removed_link_removes_its_vxlan_before_its_peer() -> None:
    before, after = desired(), desired(links={"carol": (2, 100)})
    names = {PEERS["bob"].public_key: "bob"}
    assert changes(after, actual_as_up_leaves_it(before), peer_names=names) == [
        "link bob: removed (vni 1)",
        "peer bob: removed",
    ]
    # An unknown name is shown as the start of its key; VXLANs not privnet's stay.
    actual = actual_as_up_leaves_it(before)
    actual.interfaces["vx-other"] = Interface("vx-other", 99, "vxlan", True, vxlan=Vxlan(9, None, "192.0.2.9", 4789))
    assert changes(after, actual) == ["link bob: removed (vni 1)", f"peer {PEERS['bob'].public_key[:8]}…: removed"]


def test_a_cost_change_is_made_in_place() -> None:
    before, after = desired(), desired(links={"bob": (1, 100), "carol": (2, 40)})
    planned = agent.diff(after, actual_as_up_leaves_it(before), private_key=NODE.private_key,
                         endpoints=endpoints_of(after))  # fmt: skip
    assert [str(change) for change in planned] == ["link carol: cost 100 -> 40"]
    assert (planned[0].op, planned[0].args) == ("set_cost", {"name": "carol", "cost": 40})


def test_a_vni_change_recreates_that_vxlan_only() -> None:
    before, after = desired(), desired(links={"bob": (1, 100), "carol": (5, 100)})
    planned = agent.diff(after, actual_as_up_leaves_it(before), private_key=NODE.private_key,
                         endpoints=endpoints_of(after))  # fmt: skip
    assert [str(change) for change in planned] == ["link carol: recreated (vni 2 -> 5)"]
    assert planned[0].op == "recreate_vxlan"
    # A new underlay address moves every VXLAN's local end (and wg0's address, new one first).
    moved = served(host_config())
    moved["underlay_ip"] = "10.88.88.11"
    for link in moved["links"]:
        link["local"] = "10.88.88.11"
    assert changes(agent.validate_config(moved), actual_as_up_leaves_it(before)) == [
        "wg0: address 10.88.88.11/24",
        "wg0: address 10.88.88.1/24 removed",
        "link bob: recreated (local 10.88.88.1 -> 10.88.88.11)",
        "link carol: recreated (local 10.88.88.1 -> 10.88.88.11)",
    ]


def test_bridge_priority_timers_and_overlay_address_change_in_place() -> None:
    before = desired()
    after = desired(bridge_priority=4096, stp_hello_time=2, stp_max_age=10, stp_forward_delay=4,
                    overlay_ip="10.99.99.21")  # fmt: skip
    planned = agent.diff(after, actual_as_up_leaves_it(before), private_key=NODE.private_key,
                         endpoints=endpoints_of(after))  # fmt: skip
    assert [str(change) for change in planned] == [
        "bridge internet: hello time 1 s -> 2 s",
        "bridge internet: max age 6 s -> 10 s",
        "bridge internet: forward delay 2 s -> 4 s",
        "bridge internet: priority 32768 -> 4096",
        "bridge internet: address 10.99.99.21/24",
        "bridge internet: address 10.99.99.1/24 removed",
    ]
    assert planned[0].args == {"name": "internet", "settings": {"hello_time": 200}}
    assert planned[3].args == {"name": "internet", "settings": {"priority": 4096}}


def test_stp_timers_of_a_bridge_that_is_not_the_root_are_always_set() -> None:
    config = desired(stp_hello_time=2, stp_max_age=10)
    actual = actual_as_up_leaves_it(config)
    actual.interfaces["internet"].bridge["root_port"] = 2  # the kernel shows the root's timers
    planned = agent.diff(config, actual, private_key=NODE.private_key, endpoints=endpoints_of(config))
    assert [(str(change), change.quiet) for change in planned] == [
        ("bridge internet: STP timers hello_time, max_age, forward_delay set again (not readable while not the root)",
         True),
    ]  # fmt: skip
    assert planned[0].args == {"name": "internet", "settings": {"hello_time": 200, "max_age": 1000,
                                                                "forward_delay": 200}}  # fmt: skip
    actual.interfaces["internet"].bridge["hello_time"] = 100
    assert changes(config, actual) == ["bridge internet: hello time 1 s (the root's) -> 2 s"]


def test_a_missing_bridge_is_created_with_the_setup_scripts_settings() -> None:
    config = desired()
    actual = actual_as_up_leaves_it(config)
    del actual.interfaces["internet"]
    for link in config["links"]:
        actual.interfaces[link["name"]].master = None
    planned = agent.diff(config, actual, private_key=NODE.private_key, endpoints=endpoints_of(config))
    assert [str(change) for change in planned] == [
        "bridge internet: created (STP on, priority 32768, hello 1 s, max age 6 s, forward delay 2 s, "
        "address 10.99.99.1/24)",
        "link bob: port of internet", "link bob: cost (none) -> 100",
        "link carol: port of internet", "link carol: cost (none) -> 100",
    ]  # fmt: skip
    assert planned[0].args["mac"] == agent.bridge_mac_address(config)
    assert planned[0].args["settings"] == {"stp_state": 1, "hello_time": 100, "max_age": 600, "forward_delay": 200,
                                           "priority": 32768}  # fmt: skip


def test_drift_on_a_vxlan_is_repaired_in_place() -> None:
    config = desired()
    actual = actual_as_up_leaves_it(config)
    bob = actual.interfaces["bob"]
    bob.up, bob.mtu, bob.alias, bob.tx_checksum = False, 1450, None, True
    assert changes(config, actual) == [
        "link bob: alias privnet", "link bob: MTU 1450 -> 1500", "link bob: tx checksum offload off", "link bob: up",
    ]  # fmt: skip


def test_peer_endpoint_keepalive_and_listen_port_change_in_place() -> None:
    config = desired(listen_port=51820)
    actual = actual_as_up_leaves_it(desired())
    bob_key = PEERS["bob"].public_key
    actual.wireguard.peers[bob_key] = replace(actual.wireguard.peers[bob_key], endpoint="192.0.2.3:56560", keepalive=25)
    planned = agent.diff(config, actual, private_key=NODE.private_key,
                         endpoints={"bob": "192.0.2.9:56560", "carol": "192.0.2.3:56560"})  # fmt: skip
    assert [str(change) for change in planned] == [
        "wg0: listen port 56560 -> 51820",
        "peer bob: endpoint 192.0.2.3:56560 -> 192.0.2.9:56560",
        "peer bob: keepalive 25 -> 0",
    ]
    assert planned[1].args == {"peers": [agent.PeerSet(bob_key, endpoint="192.0.2.9:56560")]}
    assert planned[2].args == {"peers": [agent.PeerSet(bob_key, keepalive=0)]}


def test_an_endpoint_the_peer_roamed_away_from_is_not_pulled_back() -> None:
    config = desired()
    actual = actual_as_up_leaves_it(config)
    bob_key = PEERS["bob"].public_key
    actual.wireguard.peers[bob_key] = replace(actual.wireguard.peers[bob_key], endpoint="198.51.100.7:40000")
    endpoints = endpoints_of(config)
    # We set 192.0.2.2 last time; WireGuard followed bob's packets elsewhere since: leave it.
    assert changes(config, actual, applied_endpoints={bob_key: "192.0.2.2:56560"}, endpoints=endpoints) == []
    # Not set by us yet (a new agent): set it once.
    assert changes(config, actual, endpoints=endpoints) == ["peer bob: endpoint 198.51.100.7:40000 -> 192.0.2.2:56560"]
    # A name that does not resolve now (None) leaves the endpoint as it is.
    assert changes(config, actual, endpoints={"bob": None, "carol": "192.0.2.3:56560"}) == []


def test_a_peer_key_change_replaces_the_peer_in_one_transaction_keeping_its_learned_endpoint() -> None:
    before = desired(links={"bob": (1, 100), "dave": (3, 100)})
    old_key = PEERS["dave"].public_key
    actual = actual_as_up_leaves_it(before)
    actual.wireguard.peers[old_key] = replace(actual.wireguard.peers[old_key], endpoint="198.51.100.2:41000")
    new = generate_keypair()
    data = served(host_config(links={"bob": (1, 100), "dave": (3, 100)}))
    data["peers"][1]["public_key"] = new.public_key
    after = agent.validate_config(data)
    planned = agent.diff(after, actual, private_key=NODE.private_key, endpoints=endpoints_of(after))
    assert [str(change) for change in planned] == [f"peer dave: key {old_key[:8]}… -> {new.public_key[:8]}…"]
    assert planned[0].args == {"peers": [
        agent.PeerSet(old_key, remove=True),
        agent.PeerSet(new.public_key, endpoint="198.51.100.2:41000", keepalive=25, allowed_ips=("10.88.88.4/32",)),
    ]}  # fmt: skip


def test_the_private_key_follows_the_key_file_and_is_never_shown() -> None:
    config = desired()
    other = generate_keypair()
    planned = agent.diff(config, actual_as_up_leaves_it(config, other.private_key), private_key=NODE.private_key,
                         endpoints=endpoints_of(config))  # fmt: skip
    assert [str(change) for change in planned] == ["wg0: private key set from /etc/privnet/private.key"]
    assert planned[0].args == {"private_key": NODE.private_key}
    assert NODE.private_key not in repr(planned) and other.private_key not in repr(actual_as_up_leaves_it(config))
    # Without a readable key file the key is left alone.
    assert changes(config, actual_as_up_leaves_it(config, other.private_key), private_key=None) == []


def test_what_privnet_will_not_replace_is_refused() -> None:
    config = desired()
    actual = actual_as_up_leaves_it(config)
    actual.interfaces["bob"] = Interface("bob", 5, "dummy", True)
    actual.interfaces["internet"].kind = "bond"
    actual.interfaces["internet"].bridge = None
    planned = agent.diff(config, actual, private_key=NODE.private_key, endpoints=endpoints_of(config))
    assert [(str(change), change.op) for change in planned] == [
        ("bridge internet: exists and is not a bridge: privnet will not replace it", "refuse"),
        ("link bob: exists and is not a VXLAN: privnet will not replace it", "refuse"),
    ]
    del actual.interfaces["wg0"]
    actual.wireguard = None
    assert "wg0: missing: run /etc/privnet/up to create it" in changes(config, actual)


def test_an_old_privnet_bridge_goes_last() -> None:
    config = desired()
    actual = actual_as_up_leaves_it(config)
    actual.interfaces["oldbr"] = Interface("oldbr", 50, "bridge", True, alias="privnet", bridge={})
    actual.interfaces["otherbr"] = Interface("otherbr", 51, "bridge", True, bridge={})
    assert changes(config, actual) == ["bridge oldbr: removed (this network's bridge is internet now)"]


# --- WireGuard: UAPI and wg ---------------------------------------------------------------------


def test_uapi_and_wg_set_say_the_same() -> None:
    key_a, key_b = PEERS["bob"].public_key, PEERS["carol"].public_key
    peers = [
        agent.PeerSet(key_a, remove=True),
        agent.PeerSet(key_b, endpoint="[2001:db8::1]:56560", keepalive=0, allowed_ips=("10.88.88.3/32",)),
    ]
    request = agent.uapi_set_request(private_key=NODE.private_key, listen_port=51820, peers=peers)
    assert request == (
        f"set=1\nprivate_key={base64.b64decode(NODE.private_key).hex()}\nlisten_port=51820\n"
        f"public_key={base64.b64decode(key_a).hex()}\nremove=true\n"
        f"public_key={base64.b64decode(key_b).hex()}\nendpoint=[2001:db8::1]:56560\npersistent_keepalive_interval=0\n"
        "replace_allowed_ips=true\nallowed_ip=10.88.88.3/32\n\n"
    )
    argv, stdin = agent.wg_set_argv("wg0", private_key=NODE.private_key, listen_port=51820, peers=peers)
    assert argv == ["wg", "set", "wg0", "private-key", "/dev/stdin", "listen-port", "51820", "peer", key_a, "remove",
                    "peer", key_b, "endpoint", "[2001:db8::1]:56560", "persistent-keepalive", "off",
                    "allowed-ips", "10.88.88.3/32"]  # fmt: skip
    assert stdin == NODE.private_key + "\n"  # on standard input, never in argv


def test_uapi_and_wg_dump_read_the_same_device() -> None:
    key_a, key_b = PEERS["bob"].public_key, PEERS["carol"].public_key
    hexed = {key: base64.b64decode(key).hex() for key in (key_a, key_b, NODE.private_key)}
    uapi = (
        f"private_key={hexed[NODE.private_key]}\nlisten_port=56560\n"
        f"public_key={hexed[key_a]}\npreshared_key={'0' * 64}\nprotocol_version=1\nendpoint=192.0.2.2:56560\n"
        "last_handshake_time_sec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=25\n"
        "allowed_ip=10.88.88.2/32\n"
        f"public_key={hexed[key_b]}\npersistent_keepalive_interval=0\nerrno=0\n\n"
    )
    dump = (
        f"{NODE.private_key}\t{NODE.public_key}\t56560\toff\n"
        f"{key_a}\t(none)\t192.0.2.2:56560\t10.88.88.2/32\t0\t0\t0\t25\n"
        f"{key_b}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
    )
    expected = WgDevice(56560, NODE.private_key, {
        key_a: WgPeer(key_a, "192.0.2.2:56560", ("10.88.88.2/32",), 25), key_b: WgPeer(key_b, None, (), 0),
    })  # fmt: skip
    assert agent.parse_uapi_device(uapi) == expected
    assert agent.parse_wg_dump_device(dump) == expected
    assert NODE.private_key not in repr(expected)
    with pytest.raises(OSError, match="errno=-22"):
        agent.parse_uapi_device("errno=-22\n\n")


def test_endpoints_resolve_and_a_dns_name_that_moved_is_noticed(tmp_path: Path) -> None:
    assert agent.resolve_endpoint("192.0.2.7:56560") == "192.0.2.7:56560"
    assert agent.resolve_endpoint("[2001:DB8::0:1]:56560") == "[2001:db8::1]:56560"
    data = served(host_config())
    data["peers"][0]["endpoint"] = "bob.example.net:56560"
    config = agent.validate_config(data)
    assert agent.has_dns_endpoints(config) and not agent.has_dns_endpoints(desired())
    addresses = {"bob.example.net:56560": "192.0.2.2:56560"}

    def resolver(endpoint: str) -> str:
        if endpoint in addresses:
            return addresses[endpoint]
        return agent.resolve_endpoint(endpoint)

    reconciler = agent.Reconciler(str(tmp_path), agent.WireGuard(socket_dir=str(tmp_path)), resolver=resolver)
    reconciler.resolved = reconciler.resolve(config)
    assert reconciler.resolved == {"bob": "192.0.2.2:56560", "carol": "192.0.2.3:56560"}
    assert not reconciler.endpoints_moved(config)
    addresses["bob.example.net:56560"] = "192.0.2.9:56560"
    assert reconciler.endpoints_moved(config)


# --- applying: the same steps as the setup script ---------------------------------------------


class RecordingKernel:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self.calls.append((name, *args, *sorted(kwargs.items())))


def test_a_vxlan_is_made_as_up_makes_it() -> None:
    kernel, offloads = RecordingKernel(), []
    applier = agent.Applier(kernel, agent.WireGuard(), ethtool_off=offloads.append)  # type: ignore[arg-type]
    (change,) = agent.diff(desired(links={"dave": (3, 40)}), actual_as_up_leaves_it(desired(links={})),
                           private_key=NODE.private_key, endpoints={})[1:]  # fmt: skip
    applier.apply(change)
    vxlan = Vxlan(3, "10.88.88.1", "10.88.88.4", 4789)
    assert kernel.calls == [
        ("add_vxlan", "dave", vxlan),
        ("set_link", "dave", ("ifalias", "privnet"), ("mtu", 1500)),
        ("set_link", "dave", ("master", "internet")),
        ("set_cost", "dave", 40),
        ("set_link", "dave", ("state", "up")),
    ]
    assert offloads == ["dave"]  # between the alias and joining the bridge, as up does
    with pytest.raises(agent.ApplyError):
        applier.apply(agent.Change("link x", "exists and is not a VXLAN", "refuse"))


# --- key rotation ------------------------------------------------------------------------------


class FakeWireGuard(agent.WireGuard):
    def __init__(self) -> None:
        super().__init__(socket_dir="/nonexistent")
        self.keys: list[str] = []

    def set(self, *, private_key=None, listen_port=None, peers=()) -> None:
        self.keys.append(private_key)


@pytest.fixture
def rotation(tmp_path: Path):
    (tmp_path / "private.key").write_text(NODE.private_key + "\n")
    posts: list[tuple[str, str]] = []
    answers: list = []
    pair = generate_keypair()

    def post(app_url: str, token: str, public_key: str, nonce: str) -> dict:
        posts.append((public_key, nonce))
        answer = answers.pop(0) if answers else {"public_key": public_key}
        if isinstance(answer, Exception):
            raise answer
        return answer

    wireguard = FakeWireGuard()
    publics = {pair.private_key: pair.public_key}
    keys = agent.KeyRotation(str(tmp_path), wireguard, post=post, keygen=lambda: (pair.private_key, pair.public_key),
                             public_of=publics.__getitem__)  # fmt: skip
    return keys, posts, answers, wireguard, pair


def test_key_rotation_sends_the_public_key_then_switches_wg0_and_the_key_file(rotation, tmp_path, caplog) -> None:
    keys, posts, _answers, wireguard, pair = rotation
    nonce = "ab" * 16
    with caplog.at_level(logging.INFO, logger="privnet-agent"):
        assert keys.handle(desired(key_rotation=nonce), TOKEN) is True
    assert posts == [(pair.public_key, nonce)]
    assert wireguard.keys == [pair.private_key]
    assert (tmp_path / "private.key").read_text() == pair.private_key + "\n"
    assert stat.S_IMODE(os.stat(tmp_path / "private.key").st_mode) == 0o600
    assert not (tmp_path / "rotation.json").exists()
    assert f"wg0: private key rotated (public key {pair.public_key})" in caplog.text
    assert pair.private_key not in caplog.text and NODE.private_key not in caplog.text
    # The same nonce again (the app's next config may still show it for a moment): nothing more.
    assert keys.handle(desired(key_rotation=nonce), TOKEN) is True and len(posts) == 1


def test_key_rotation_retries_with_the_same_key_until_the_app_hears_it(rotation, tmp_path) -> None:
    keys, posts, answers, wireguard, pair = rotation
    nonce = "cd" * 16
    answers.append(OSError("connection refused"))
    assert keys.handle(desired(key_rotation=nonce), TOKEN) is False
    assert wireguard.keys == [] and (tmp_path / "private.key").read_text() == NODE.private_key + "\n"
    assert stat.S_IMODE(os.stat(tmp_path / "rotation.json").st_mode) == 0o600
    # A restarted agent, and the app already has the key (its answer was lost): the config shows
    # no rotation any more; the pending key is sent again, accepted, and used.
    restarted = agent.KeyRotation(str(tmp_path), wireguard, post=keys.post, keygen=keys.keygen,
                                  public_of=keys.public_of)  # fmt: skip
    assert restarted.handle(desired(key_rotation=None), TOKEN) is True
    assert posts == [(pair.public_key, nonce), (pair.public_key, nonce)]
    assert wireguard.keys == [pair.private_key]
    assert (tmp_path / "private.key").read_text() == pair.private_key + "\n"


def test_a_refused_rotation_keeps_the_current_key(rotation, tmp_path, caplog) -> None:
    keys, _posts, answers, wireguard, _pair = rotation
    answers.append(agent.AppRejected(409, "nonce does not match the pending key rotation; fetch the config again"))
    with caplog.at_level(logging.WARNING, logger="privnet-agent"):
        assert keys.handle(desired(key_rotation="ef" * 16), TOKEN) is True
    assert "key rotation refused by the app (app answered HTTP 409: nonce does not match" in caplog.text
    assert wireguard.keys == [] and not (tmp_path / "rotation.json").exists()
    assert (tmp_path / "private.key").read_text() == NODE.private_key + "\n"
    answers.append(agent.AppRejected(503, ""))
    assert keys.handle(desired(key_rotation="12" * 16), TOKEN) is False  # the app failed: retry later
    assert (tmp_path / "rotation.json").exists()


# --- the config loop against a tiny app -------------------------------------------------------


class TinyApp(ThreadingHTTPServer):
    """Answers ``GET /api/v1/agent/config`` from ``answers`` in turn: (status, headers, body)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        self.requests: list[dict] = []
        super().__init__(("127.0.0.1", 0), TinyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class TinyHandler(BaseHTTPRequestHandler):
    server: TinyApp

    def do_GET(self) -> None:
        self.server.requests.append({"path": self.path, "headers": dict(self.headers)})
        status, headers, body = self.server.answers.pop(0) if self.server.answers else (304, {}, b"")
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tiny_app() -> Iterator[TinyApp]:
    server = TinyApp()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class FakeReconciler:
    def __init__(self) -> None:
        self.applied: list[dict] = []

    def reconcile(self, config: dict) -> agent.Outcome:
        self.applied.append(copy.deepcopy(config))
        return agent.Outcome(applied=["link carol: cost 100 -> 40"])

    def endpoints_moved(self, config: dict) -> bool:
        return False


class NoRotation:
    def handle(self, config: dict, token: str | None) -> bool:
        return True


@pytest.fixture
def loop(tmp_path: Path, tiny_app: TinyApp) -> tuple[agent.ConfigLoop, FakeReconciler, Path]:
    config_path = tmp_path / "config.json"
    config_path.write_text(agent.config_json(served(host_config(app_url=tiny_app.url))))
    (tmp_path / "agent.token").write_text(TOKEN + "\n")
    reconciler = FakeReconciler()
    live = agent.ConfigLoop(str(config_path), str(tmp_path / "agent.token"), reconciler=reconciler,  # type: ignore[arg-type]
                            rotation=NoRotation(), stop=threading.Event(), wait=1)  # type: ignore[arg-type]  # fmt: skip
    live.step_local(at_start=True)
    assert len(reconciler.applied) == 1 and live.applied_version == "0123456789abcdef"
    return live, reconciler, config_path


def answer(config: HostConfig, *, etag: str | None = None) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"config": config.to_dict()}).encode()
    return 200, {"Content-Type": "application/json", "ETag": etag or f'"{config.version}"'}, body


def test_a_malformed_config_answer_is_refused_with_one_log_line_and_nothing_applied(loop, tiny_app, caplog) -> None:
    live, reconciler, config_path = loop
    on_disk = config_path.read_text()
    bad = served(host_config(app_url=tiny_app.url, version="fedcba9876543210"))
    bad["links"][1]["cost"] = "40; rm -rf /"
    tiny_app.answers.append((200, {"ETag": '"fedcba9876543210"'}, json.dumps({"config": bad}).encode()))
    with caplog.at_level(logging.INFO, logger="privnet-agent"):
        delay = live.step()
    assert caplog.messages == ["config refused, nothing applied: links[1].cost must be a whole number from 1 to 65535"]
    assert 0.5 <= delay <= 1.0  # backs off, and ...
    assert len(reconciler.applied) == 1 and live.applied_version == "0123456789abcdef"
    assert config_path.read_text() == on_disk
    assert tiny_app.requests[-1]["path"] == "/api/v1/agent/config?wait=1"
    assert tiny_app.requests[-1]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert tiny_app.requests[-1]["headers"]["If-None-Match"] == '"0123456789abcdef"'
    # ... asks again with the refused version, so the app holds the request until the next one.
    live.step()
    assert tiny_app.requests[-1]["headers"]["If-None-Match"] == '"fedcba9876543210"'
    assert len(reconciler.applied) == 1  # and config.json, not new to it, is not applied again

    # Not JSON, the wrong node, an ETag that is not the config's: each refused in one line.
    caplog.clear()
    tiny_app.answers += [
        (200, {}, b"<html>oops</html>"),
        answer(host_config(app_url=tiny_app.url, node="mallory", version="1111111111111111")),
        answer(host_config(app_url=tiny_app.url, version="2222222222222222"), etag='"3333333333333333"'),
    ]
    with caplog.at_level(logging.INFO, logger="privnet-agent"):
        for _ in range(3):
            live.step()
    assert [message.split(":")[0] for message in caplog.messages] == ["config refused, nothing applied"] * 3
    assert caplog.messages[0].endswith("the answer is not JSON")
    assert "node mallory's, and this host is node alice" in caplog.messages[1]
    assert caplog.messages[2].endswith("the ETag header does not name the config's version")
    assert len(reconciler.applied) == 1 and config_path.read_text() == on_disk
    assert TOKEN not in caplog.text


def test_a_new_config_is_written_as_the_setup_script_writes_it_then_applied(loop, tiny_app, caplog) -> None:
    live, reconciler, config_path = loop
    new = host_config(app_url=tiny_app.url, links={"bob": (1, 100), "carol": (2, 40)}, version="00000000000000aa")
    tiny_app.answers.append(answer(new))
    with caplog.at_level(logging.INFO, logger="privnet-agent"):
        assert live.step() == 0
    assert json.loads(config_path.read_text()) == served(new)
    assert config_path.read_text() == agent.config_json(served(new))
    assert stat.S_IMODE(os.stat(config_path).st_mode) == 0o644
    assert reconciler.applied[-1]["links"][1]["cost"] == 40
    assert live.applied_version == "00000000000000aa" and live.known_version == "00000000000000aa"
    assert "config 00000000000000aa applied (1 change)" in caplog.messages
    # Unchanged (304 after the wait): nothing applied, and the next request names the new version.
    live.step()
    assert len(reconciler.applied) == 2
    assert tiny_app.requests[-1]["headers"]["If-None-Match"] == '"00000000000000aa"'


def test_the_app_down_leaves_the_host_alone_and_backs_off(loop, tiny_app, caplog) -> None:
    live, reconciler, _config_path = loop
    tiny_app.shutdown()
    tiny_app.server_close()
    delays = []
    with caplog.at_level(logging.INFO, logger="privnet-agent"):
        for _ in range(4):
            delays.append(live.step())
    assert len(reconciler.applied) == 1
    assert [message.split(" (")[0] for message in caplog.messages] == ["config fetch failed"] * 4
    assert "cannot reach the app" in caplog.text
    assert 0.5 <= delays[0] <= 1.0 and 4.0 <= delays[3] <= 8.0
    assert live.applied_version == "0123456789abcdef"


def test_a_config_json_the_setup_script_writes_is_left_to_its_up_first(loop, tiny_app) -> None:
    live, reconciler, config_path = loop
    rerun = host_config(app_url=tiny_app.url, links={"bob": (1, 100)}, version="00000000000000bb")
    config_path.write_text(agent.config_json(served(rerun)))
    live.step()  # just written: up is applying it
    assert len(reconciler.applied) == 1 and live.settling
    assert tiny_app.requests[-1]["path"] == "/api/v1/agent/config?wait=1"
    old = os.stat(config_path).st_mtime - agent.CONFIG_SETTLE_SECONDS - 1
    os.utime(config_path, (old, old))
    live.step()  # settled: confirmed, and its version reported from now on
    assert [config["version"] for config in reconciler.applied] == ["0123456789abcdef", "00000000000000bb"]
    assert live.applied_version == "00000000000000bb"


def test_between_polls_a_dns_endpoint_that_moved_is_applied(loop, tiny_app) -> None:
    live, reconciler, _config_path = loop
    live.step()  # 304: nothing moved
    assert len(reconciler.applied) == 1
    reconciler.endpoints_moved = lambda config: True  # type: ignore[method-assign]
    live.step()  # 304, but a name resolves elsewhere now: applied again (the diff sets that endpoint)
    assert len(reconciler.applied) == 2
