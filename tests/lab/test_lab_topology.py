"""Topology files, naming rules and skip rules: no root needed."""

from __future__ import annotations

import pytest

from lab import testing
from lab.core import LabError, check_prefix, enroll_shell_command
from lab.netns import host_command
from lab.topology import TopologyError, load_topology, parse_topology


@pytest.mark.parametrize("name", ["triangle", "square", "blog"])
def test_shipped_topologies_load(name):
    topology = load_topology(name)
    assert topology.hosts and topology.links
    assert topology.network == {"stp_hello_time": 1, "stp_max_age": 6, "stp_forward_delay": 2}


def test_blog_is_the_seed():
    blog = load_topology("blog")
    assert [host.name for host in blog.hosts] == ["bob", "rho", "vorke", "epsilon", "pi0"]
    assert {frozenset((link.a, link.b)) for link in blog.links} == {
        frozenset(pair)
        for pair in [
            ("epsilon", "vorke"),
            ("epsilon", "bob"),
            ("epsilon", "rho"),
            ("vorke", "bob"),
            ("vorke", "rho"),
            ("bob", "rho"),
            ("rho", "pi0"),
        ]
    }
    pi0 = blog.host("pi0")
    assert pi0.nat and not pi0.endpoint
    assert all(host.endpoint for host in blog.hosts if host.name != "pi0")
    assert blog.rtt_ms[frozenset(("vorke", "epsilon"))] == 20


def test_topology_by_path(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text('[hosts.x]\n[hosts.y]\n[[links]]\na = "x"\nb = "y"\ncost = 7\n')
    topology = load_topology(path)
    assert topology.name == "two"
    assert topology.links[0].cost == 7


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ({}, "at least one"),
        ({"hosts": {"a": {}}, "links": [{"a": "a", "b": "z"}]}, "'z' is not a host"),
        ({"hosts": {"a": {"nat": True}, "b": {"endpoint": False}}, "links": [{"a": "a", "b": "b"}]}, "neither"),
        ({"hosts": {"control": {}}}, "lab's own"),
        ({"hosts": {"nat-x": {}}}, "lab's own"),
        ({"hosts": {"Bad": {}}}, "host name"),
        ({"hosts": {"a": {"colour": "red"}}}, "unknown key"),
        ({"hosts": {"a": {"nat": True, "endpoint": True}}}, "cannot have an endpoint"),
        ({"hosts": {"a": {}, "b": {}}, "links": [{"a": "a", "b": "b"}, {"a": "b", "b": "a"}]}, "one link per pair"),
        ({"hosts": {"a": {}, "b": {}}, "links": [{"a": "a", "b": "b", "cost": 0}]}, "cost"),
        ({"hosts": {"a": {}, "b": {}}, "rtt_ms": {"a": {"b": 1}, "b": {"a": 2}}}, "twice"),
        ({"hosts": {"a": {}}, "bogus": 1}, "unknown key"),
    ],
)
def test_bad_topologies_are_refused(data, complaint):
    with pytest.raises(TopologyError, match=complaint):
        parse_topology(data)


def test_unknown_topology_name_lists_the_known_ones():
    with pytest.raises(TopologyError, match="triangle"):
        load_topology("no-such-topology")


@pytest.mark.parametrize("prefix", ["privnet", "pt1a2b3c"])
def test_good_prefixes(prefix):
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "a-b", "1abc", "UPPER", "x" * 17, "a b"])
def test_bad_prefixes(prefix):
    with pytest.raises(LabError):
        check_prefix(prefix)


def test_enroll_command_runs_without_sudo():
    command = "curl -fsSL http://192.0.2.254:8000/enroll/abc | sudo sh"
    assert enroll_shell_command(command) == "curl -fsSL http://192.0.2.254:8000/enroll/abc | sh"
    with pytest.raises(LabError):
        enroll_shell_command("rm -rf / | sudo sh")


def test_host_command_binds_private_dirs(tmp_path):
    argv = host_command("ns1", tmp_path, ["wg", "show"])
    assert argv[:4] == ["ip", "netns", "exec", "ns1"]
    assert argv[-2:] == ["wg", "show"]
    script = argv[argv.index("-c") + 1]
    for target in ("/etc/privnet", "/run/wireguard", "/run/privnet", "/etc/systemd/system", "/run/systemd"):
        assert f"mount --bind {tmp_path}{target} {target}" in script


def test_unavailable_lab_skips_outside_ci(monkeypatch):
    monkeypatch.setattr(testing, "lab_unavailable_reason", lambda: "no wireguard-go")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no wireguard-go"):
        testing.check_lab_available()


def test_unavailable_lab_fails_under_ci(monkeypatch):
    monkeypatch.setattr(testing, "lab_unavailable_reason", lambda: "no wireguard-go")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        testing.check_lab_available()


def test_unique_prefixes_are_valid_and_differ():
    prefixes = {testing.unique_prefix() for _ in range(20)}
    assert len(prefixes) == 20
    assert all(check_prefix(prefix) for prefix in prefixes)


def test_created_mount_targets_are_recorded_and_removed(tmp_path, monkeypatch):
    from lab import netns

    monkeypatch.setattr(netns, "MOUNT_TARGETS", (str(tmp_path / "etc/privnet"), str(tmp_path / "run/wireguard")))
    monkeypatch.setattr(netns, "MOUNT_TARGET_RECORD", tmp_path / "record")
    (tmp_path / "run").mkdir()
    netns.ensure_mount_targets()
    netns.ensure_mount_targets()  # nothing new the second time
    assert sorted((tmp_path / "record").read_text().split()) == sorted(
        str(tmp_path / path) for path in ("etc", "etc/privnet", "run/wireguard")
    )
    monkeypatch.setattr(netns, "mount_points_in_use", lambda: {str(tmp_path / "run/wireguard")})
    assert netns.remove_created_mount_targets() == [str(tmp_path / "run/wireguard")]
    assert not (tmp_path / "etc").exists() and (tmp_path / "run/wireguard").is_dir()
    monkeypatch.setattr(netns, "mount_points_in_use", set)
    assert netns.remove_created_mount_targets() == []
    assert not (tmp_path / "run/wireguard").exists() and (tmp_path / "run").is_dir()
    assert not (tmp_path / "record").exists()
