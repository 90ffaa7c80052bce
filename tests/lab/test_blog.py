"""The seed's five hosts: pi0 sits behind NAT, linked to rho only, and still reaches everyone."""

from __future__ import annotations

import json

import pytest

from lab.testing import lab_fixture, require_lab

pytestmark = [pytest.mark.lab, require_lab()]

blog = lab_fixture("blog")


def test_the_nat_host_reaches_every_host_and_back(blog):
    blog.wait_for_overlay(timeout=90)  # every ordered pair, pi0 included, both directions


def test_nobody_can_reach_the_nat_host_first(blog):
    status = blog.status()["hosts"]
    assert status["pi0"]["nat"] is True
    # on the underlay the NAT router lets nothing in: pi0's own address is unreachable from rho
    result = blog.run("rho", ["ping", "-n", "-c", "1", "-W", "1", status["pi0"]["wan_ip"]], check=False)
    assert result.returncode != 0
    # rho learned pi0's endpoint from pi0's own packets: the NAT router's public address
    endpoints = blog.run("rho", ["wg", "show", "wg0", "endpoints"]).stdout
    assert f"{status['pi0']['public_ip']}:" in endpoints


def test_pi0_has_only_its_link_to_rho(blog):
    links = json.loads(blog.run("pi0", ["ip", "-j", "link", "show", "type", "vxlan"]).stdout)
    assert [link["ifname"] for link in links] == ["rho"]
    assert blog.run("pi0", ["wg", "show", "wg0", "peers"]).stdout.split() == [
        blog.api().call("GET", "/api/v1/nodes/rho")["public_key"]
    ]
