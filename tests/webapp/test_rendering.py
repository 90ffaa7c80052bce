"""The setup script and its installed files, as text: shape, quoting, refusals, shellcheck."""

from __future__ import annotations

import json
import re
import secrets
import shlex
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from webapp.errors import ValidationError
from webapp.hostconfig import HostConfig, LinkConfig, PeerConfig
from webapp.keys import generate_keypair
from webapp.rendering import (
    AGENT_SOURCE,
    bridge_mac_address,
    render_agent_unit,
    render_host_files,
    render_setup_script,
    render_systemd_unit,
    shell_quote,
)

PRIVATE_KEY = generate_keypair().private_key
TOKEN = secrets.token_urlsafe(32)


def make_config(node: str = "rho", peers: list[tuple[str, str | None]] | None = None, **overrides) -> HostConfig:
    """A host config with one linked peer per (name, endpoint); peer i is 10.88.(88 + i // 250).(i % 250 + 2)."""
    if peers is None:
        peers = [("epsilon", "192.0.2.4:56560"), ("pi0", None)]
    peer_configs, links = [], []
    for index, (name, endpoint) in enumerate(peers):
        address = f"10.88.{88 + index // 250}.{index % 250 + 2}"
        keepalive = None if endpoint else 25
        peer_configs.append(PeerConfig(name, generate_keypair().public_key, f"{address}/32", endpoint, keepalive))
        links.append(LinkConfig(name, index + 1, "10.88.88.1", address, 100 + index))
    settings = {
        "node": node,
        "network": "privnet",
        "app_url": "https://privnet.example.org/base",
        "listen_port": 56560,
        "underlay_ip": "10.88.88.1",
        "underlay_prefix": 24,
        "overlay_ip": "10.99.99.1",
        "overlay_prefix": 24,
        "bridge_name": "internet",
        "bridge_priority": 32768,
        "vxlan_port": 4789,
        "mtu": 1500,
        "stp_hello_time": 1,
        "stp_forward_delay": 2,
        "stp_max_age": 6,
        "report_interval": 10,
        "peers": tuple(peer_configs),
        "links": tuple(links),
        "version": "0123456789abcdef",
    }
    settings.update(overrides)
    return HostConfig(**settings)


def render(config: HostConfig) -> str:
    return render_setup_script(config, private_key=PRIVATE_KEY, agent_token=TOKEN)


def files_of(config: HostConfig) -> dict[str, str]:
    return {file.path: file.content for file in render_host_files(config, private_key=PRIVATE_KEY, agent_token=TOKEN)}


def heredocs(script: str) -> dict[str, str]:
    """``{path: content}`` of every ``install_file MODE PATH <<'EOF'`` in a rendered script."""
    found = {}
    for match in re.finditer(r"install_file '([0-7]+)' (\S+) <<'(\w+)'\n(.*?)^\3$", script, re.S | re.M):
        path = shlex.split(match.group(2))[0]
        found[path] = match.group(4)
    return found


# --- shell_quote -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["", "plain", "it's", "'", "''", "a b", "$(id)", "`id`", "a\nb", "\\", '"', "*", "-n", "!x", 12]
)
def test_shell_quote_reads_back_as_the_value(value):
    assert shlex.split(shell_quote(value)) == [str(value)]
    printed = subprocess.run(["dash", "-c", f"printf %s {shell_quote(value)}"], capture_output=True, text=True)
    assert printed.stdout == str(value)


def test_shell_quote_always_single_quotes_and_escapes_quotes():
    assert shell_quote("abc") == "'abc'"
    assert shell_quote("it's") == "'it'\\''s'"


@pytest.mark.parametrize("value", [None, True, 1.5, b"x", ["a"]])
def test_shell_quote_refuses_non_text(value):
    with pytest.raises(TypeError):
        shell_quote(value)


# --- shape of what is rendered ---------------------------------------------------------------


def test_script_is_posix_sh_with_set_eu_and_root_check():
    script = render(make_config())
    assert script.startswith("#!/bin/sh\n")
    assert "\nset -eu\n" in script
    assert 'id -u)" -eq 0' in script
    assert script.rstrip().endswith('main "$@"')  # nothing runs before the whole script is read


def test_every_installed_file_is_embedded_verbatim_with_its_mode():
    config = make_config()
    script = render(config)
    embedded = heredocs(script)
    expected = {file.path: file for file in render_host_files(config, private_key=PRIVATE_KEY, agent_token=TOKEN)}
    expected["/etc/systemd/system/privnet.service"] = render_systemd_unit(config)
    expected["/etc/systemd/system/privnet-agent.service"] = render_agent_unit(config)
    assert set(embedded) == set(expected)
    for path, file in expected.items():
        assert embedded[path] == file.content
        assert f"install_file '{file.mode}' '{path}' <<'{file.delimiter}'" in script
    modes = {path: file.mode for path, file in expected.items()}
    assert modes["/etc/privnet/private.key"] == modes["/etc/privnet/agent.token"] == "0600"
    assert modes["/etc/privnet/wg0.conf"] == "0600"
    assert modes["/etc/privnet/agent.py"] == "0755"


def test_the_agent_is_installed_as_it_is_in_the_repository():
    """bootstrap/agent.py, byte for byte, before up (which starts it), in a quoted here-document."""
    config = make_config()
    source = AGENT_SOURCE.read_text()
    files = render_host_files(config, private_key=PRIVATE_KEY, agent_token=TOKEN)
    paths = [file.path for file in files]
    assert paths.index("/etc/privnet/agent.py") < paths.index("/etc/privnet/up")
    assert heredocs(render(config))["/etc/privnet/agent.py"] == source
    assert source.startswith("#!/usr/bin/env python3\n")


def test_secrets_appear_only_in_their_files():
    config = make_config()
    script = render(config)
    files = files_of(config)
    assert files["/etc/privnet/private.key"] == PRIVATE_KEY + "\n"
    assert files["/etc/privnet/agent.token"] == TOKEN + "\n"
    assert script.count(PRIVATE_KEY) == 2  # private.key and wg0.conf
    assert script.count(TOKEN) == 1


def test_wg0_conf_lists_linked_peers_with_endpoint_and_keepalive_only_where_configured():
    config = make_config(peers=[("epsilon", "192.0.2.4:56560"), ("pi0", None), ("v6", "[2001:db8::1]:51820")])
    conf = files_of(config)["/etc/privnet/wg0.conf"]
    assert f"PrivateKey = {PRIVATE_KEY}" in conf
    assert "ListenPort = 56560" in conf
    sections = conf.split("[Peer]")[1:]
    assert len(sections) == 3
    by_key = {peer.public_key: peer for peer in config.peers}
    for section in sections:
        peer = by_key[re.search(r"PublicKey = (\S+)", section).group(1)]
        assert f"AllowedIPs = {peer.allowed_ip}" in section
        assert ("Endpoint = " in section) == (peer.endpoint is not None)
        if peer.endpoint:
            assert f"Endpoint = {peer.endpoint}\n" in section
        assert ("PersistentKeepalive = 25" in section) == (peer.keepalive == 25)


def test_up_script_has_one_vxlan_per_link_and_the_network_settings():
    config = make_config(bridge_priority=4096, stp_hello_time=2, stp_forward_delay=4, stp_max_age=12)
    up = files_of(config)["/etc/privnet/up"]
    assert "converge_vxlan 'epsilon' '1' '10.88.88.1' '10.88.88.2' '100'" in up
    assert "converge_vxlan 'pi0' '2' '10.88.88.1' '10.88.88.3' '101'" in up
    assert "STP_HELLO_TIME='200'" in up and "STP_FORWARD_DELAY='400'" in up and "STP_MAX_AGE='1200'" in up
    assert "BRIDGE_PRIORITY='4096'" in up
    assert "VXLAN_PORT='4789'" in up and "VXLAN_MTU='1500'" in up
    assert "WANTED_VXLANS='epsilon pi0'" in up
    assert f"BRIDGE_MAC='{bridge_mac_address(config)}'" in up


def test_bridge_mac_is_stable_local_unicast_and_per_node():
    mac = bridge_mac_address(make_config())
    assert re.fullmatch(r"02(:[0-9a-f]{2}){5}", mac)
    assert mac == bridge_mac_address(make_config())
    assert mac != bridge_mac_address(make_config(node="bob"))


def test_config_json_is_the_host_config():
    config = make_config()
    assert json.loads(files_of(config)["/etc/privnet/config.json"]) == json.loads(json.dumps(config.to_dict()))


def test_systemd_unit_runs_up_and_down():
    unit = render_systemd_unit(make_config()).content
    for line in ("Type=oneshot", "RemainAfterExit=yes", "ExecStart=/etc/privnet/up", "ExecStop=/etc/privnet/down"):
        assert f"\n{line}\n" in unit
    assert "WantedBy=multi-user.target" in unit


def test_agent_unit_keeps_the_agent_running_after_the_network():
    unit = render_agent_unit(make_config())
    assert unit.path == "/etc/systemd/system/privnet-agent.service" and unit.mode == "0644"
    for line in (
        "ExecStart=/usr/bin/python3 /etc/privnet/agent.py",
        "Restart=always",
        "RestartSec=5",
        "Wants=privnet.service",
        "WantedBy=multi-user.target",
    ):
        assert f"\n{line}\n" in unit.content
    assert re.search(r"^After=.*\bprivnet\.service\b", unit.content, re.M)


def test_setup_installs_python_and_pyroute2_for_the_agent_and_starts_it():
    script = render(make_config())
    assert "import pyroute2" in script
    assert 'missing="$missing python3-pyroute2"' in script
    assert 'python3-pyroute2) packages="$packages py3-pyroute2" ;;' in script  # apk's name
    assert 'systemctl enable --quiet "$AGENT_UNIT"' in script
    assert 'systemctl restart "$AGENT_UNIT"' in script


def test_up_starts_the_agent_and_down_stops_it():
    files = files_of(make_config())
    up, down = files["/etc/privnet/up"], files["/etc/privnet/down"]
    assert "AGENT='/etc/privnet/agent.py'" in up and 'AGENT_PID_FILE="$RUN_DIR/agent.pid"' in up
    assert 'setsid "$python" "$AGENT" </dev/null >>"$AGENT_LOG" 2>&1 &' in up
    assert up.index("    converge_agent\n") > up.index("    converge_bridge\n")
    assert down.index("    stop_the_agent\n") < down.index('for name in $(stale_vxlans "")')
    uninstall = files["/etc/privnet/uninstall"]
    assert 'systemctl disable --now "$AGENT_UNIT"' in uninstall
    assert "AGENT_UNIT_PATH='/etc/systemd/system/privnet-agent.service'" in uninstall


def test_no_systemd_is_said_plainly():
    script = render(make_config())
    assert "no systemd: run $CONFIG_DIR/up at boot yourself (e.g. from rc.local)" in script
    assert "no systemd: the agent runs in the background" in script


# --- shellcheck and dash, normal and odd-but-valid values -----------------------------------

ODD_CONFIGS = {
    "normal": {},
    "one-character-names": {"node": "a", "peers": [("b", "192.0.2.2:1"), ("c", None)], "bridge_name": "x"},
    "hyphens-and-15-characters": {
        "node": "a-b-c-d-e-f-g-h",
        "peers": [("z-------------9", "peer-1.example.com:65535"), ("n-0", None)],
        "bridge_name": "br-over-lay-015",
    },
    "ipv6-and-dns-endpoints": {
        "peers": [("v6", "[2001:db8::1]:51820"), ("dns", "vpn.example.org:56560"), ("roam", None)]
    },
    "no-peers": {"peers": []},
    "many-peers": {"peers": [(f"n{index}", f"192.0.2.{index % 250 + 1}:{40000 + index}") for index in range(300)]},
    "odd-network-and-url": {"network": "it works. ok_1-2", "app_url": "http://[2001:db8::254]:8080", "version": ""},
}


def _needs(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


@pytest.mark.parametrize("case", list(ODD_CONFIGS))
def test_rendered_script_and_installed_scripts_pass_shellcheck_and_dash(case, tmp_path: Path):
    _needs("shellcheck")
    _needs("dash")
    config = make_config(**ODD_CONFIGS[case])
    scripts = {"setup.sh": render(config)}
    files = files_of(config)
    for name in ("up", "down", "uninstall"):
        scripts[name] = files[f"/etc/privnet/{name}"]
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
        subprocess.run(["dash", "-n", str(tmp_path / name)], check=True)
    result = subprocess.run(
        ["shellcheck", "-s", "sh", *(str(tmp_path / name) for name in scripts)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_odd_values_reach_the_files_exactly():
    config = make_config(**ODD_CONFIGS["hyphens-and-15-characters"])
    files = files_of(config)
    assert "converge_vxlan 'z-------------9' " in files["/etc/privnet/up"]
    assert "Endpoint = peer-1.example.com:65535\n" in files["/etc/privnet/wg0.conf"]
    assert "BRIDGE='br-over-lay-015'" in files["/etc/privnet/up"]


# --- refusals -------------------------------------------------------------------------------

INJECTIONS = ["a; reboot", "$(reboot)", "`reboot`", "a'b", 'a"b', "a\nb", "a b", "A", "-a", "a*", "a" * 16, ""]


def _peer(config: HostConfig, **changes) -> HostConfig:
    return replace(config, peers=(replace(config.peers[0], **changes), *config.peers[1:]))


def _link(config: HostConfig, **changes) -> HostConfig:
    return replace(config, links=(replace(config.links[0], **changes), *config.links[1:]))


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("field", ["node", "bridge_name", "peer", "link"])
def test_names_that_could_inject_are_refused(field, value):
    config = make_config()
    if field == "peer":
        config = _peer(config, name=value)
    elif field == "link":
        config = _link(config, name=value)
    else:
        config = replace(config, **{field: value})
    with pytest.raises(ValidationError):
        render(config)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"node": "wg0"}, "node"),
        ({"node": "internet"}, "node"),
        ({"node": "epsilon"}, "peers[0].name"),
        ({"network": "x'; reboot; '"}, "network"),
        ({"network": "a\nb"}, "network"),
        ({"app_url": "http://x/'$(reboot)'"}, "app_url"),
        ({"app_url": "http://x/\nreboot"}, "app_url"),
        ({"app_url": "ftp://x"}, "app_url"),
        ({"app_url": "http://x y"}, "app_url"),
        ({"version": "abc; reboot"}, "version"),
        ({"key_rotation": "0123'; reboot"}, "key_rotation"),
        ({"key_rotation": "ABCDEF0123456789ABCDEF0123456789"}, "key_rotation"),
        ({"underlay_ip": "10.88.88.1; reboot"}, "underlay_ip"),
        ({"underlay_ip": "10.88.88.01"}, "underlay_ip"),
        ({"underlay_ip": "10.88.88.1/24"}, "underlay_ip"),
        ({"overlay_ip": "::1"}, "overlay_ip"),
        ({"listen_port": 0}, "listen_port"),
        ({"listen_port": "56560"}, "listen_port"),
        ({"listen_port": True}, "listen_port"),
        ({"vxlan_port": 70000}, "vxlan_port"),
        ({"underlay_prefix": 31}, "underlay_prefix"),
        ({"bridge_priority": 100}, "bridge_priority"),
        ({"mtu": "1500; reboot"}, "mtu"),
        ({"stp_hello_time": 0}, "stp_hello_time"),
        ({"stp_forward_delay": 1}, "stp_forward_delay"),
        ({"stp_max_age": 5}, "stp_max_age"),
        ({"report_interval": 0}, "report_interval"),
        ({"peers": [("epsilon", None)] * 2}, "peers.name"),
    ],
)
def test_bad_host_values_are_refused_naming_the_field(changes, field):
    config = make_config(**changes) if "peers" in changes else replace(make_config(), **changes)
    with pytest.raises(ValidationError) as caught:
        render(config)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "endpoint",
    [
        "192.0.2.1:51820\nPostUp = reboot",
        "192.0.2.1:51820 # x",
        "192.0.2.1",
        "192.0.2.1:0",
        "192.0.2.1:99999",
        "$(reboot):1",
        "2001:db8::1:51820",
        "[2001:DB8::1]:51820",  # not canonical
        "Example.com:51820",  # not canonical
        "a_b.example.com:1",
        "[::1]x:1",
    ],
)
def test_endpoints_that_could_inject_or_are_not_canonical_are_refused(endpoint):
    with pytest.raises(ValidationError) as caught:
        render(_peer(make_config(), endpoint=endpoint))
    assert caught.value.field == "peers[0].endpoint"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"public_key": "x" * 44}, "peers[0].public_key"),
        ({"public_key": generate_keypair().public_key + "\n[Peer]"}, "peers[0].public_key"),
        ({"allowed_ip": "10.88.88.2/24"}, "peers[0].allowed_ip"),
        ({"allowed_ip": "0.0.0.0/0"}, "peers[0].allowed_ip"),
        ({"allowed_ip": "10.88.88.2/32, 0.0.0.0/0"}, "peers[0].allowed_ip"),
        ({"keepalive": "25\nEndpoint = x:1"}, "peers[0].keepalive"),
        ({"keepalive": 0}, "peers[0].keepalive"),
    ],
)
def test_bad_peer_values_are_refused(changes, field):
    with pytest.raises(ValidationError) as caught:
        render(_peer(make_config(), **changes))
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"vni": 0}, "links[0].vni"),
        ({"vni": 1 << 24}, "links[0].vni"),
        ({"vni": "1; reboot"}, "links[0].vni"),
        ({"cost": 0}, "links[0].cost"),
        ({"cost": 65536}, "links[0].cost"),
        ({"local": "10.88.88.9"}, "links[0].local"),
        ({"remote": "10.88.88.9"}, "links[0].remote"),
        ({"remote": "$(reboot)"}, "links[0].remote"),
        ({"vni": 2}, "links.vni"),
    ],
)
def test_bad_link_values_are_refused(changes, field):
    with pytest.raises(ValidationError) as caught:
        render(_link(make_config(), **changes))
    assert caught.value.field == field


@pytest.mark.parametrize("key", ["", "x" * 44, PRIVATE_KEY + "\n", PRIVATE_KEY[:-1] + "'", "$(reboot)"])
def test_bad_private_key_is_refused(key):
    with pytest.raises(ValidationError) as caught:
        render_setup_script(make_config(), private_key=key, agent_token=TOKEN)
    assert caught.value.field == "private_key"


@pytest.mark.parametrize("token", ["", "x" * 42, "x" * 44, "a" * 42 + "'", "a" * 42 + "\n", "a" * 42 + "="])
def test_bad_agent_token_is_refused(token):
    with pytest.raises(ValidationError) as caught:
        render_setup_script(make_config(), private_key=PRIVATE_KEY, agent_token=token)
    assert caught.value.field == "agent_token"
