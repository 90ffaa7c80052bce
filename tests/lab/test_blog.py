"""The seed's five hosts: pi0 sits behind NAT, linked to rho only, and still reaches everyone; with
the seed's settings US-to-Canada crosses the Atlantic, with privnet's it takes the direct wire."""

from __future__ import annotations

import json
import time

import pytest

from lab.core import Lab
from lab.stp import ping_ms, tree_links, wait_settled
from lab.testing import lab_fixture, require_lab
from tests.lab.conftest import enroll_with

pytestmark = [pytest.mark.lab, require_lab()]

bare_blog = lab_fixture("blog", enroll=False, name="bare_blog")
PLAN_TIMEOUT = 60.0  # reports every 2 s, each end's RTTs, then a plan and the hosts' STP


@pytest.fixture(scope="module")
def blog(bare_blog: Lab) -> Lab:
    return enroll_with(bare_blog)


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


def test_seed_settings_cross_the_atlantic_and_privnet_takes_the_direct_wire(blog, record_property):
    hosts = blog.state["hosts"]
    direct = ping_ms(blog, "epsilon", hosts["vorke"]["public_ip"], reachable_within=20)
    blog.api().call("PATCH", "/api/v1/network", {"tree_mode": "seed"})
    seed_tree = tree_links(wait_settled(blog, quiet_seconds=4, timeout=120))
    seed = ping_ms(blog, "epsilon", hosts["vorke"]["overlay_ip"], reachable_within=20)

    blog.api().call("PATCH", "/api/v1/network", {"tree_mode": "latency"})
    deadline = time.monotonic() + PLAN_TIMEOUT
    plan = blog.api().call("GET", "/api/v1/plan")
    while time.monotonic() < deadline and len(plan["measurements"]) < 2 * 7:  # both ends of the 7 links
        time.sleep(1)
        plan = blog.api().call("GET", "/api/v1/plan")
    privnet_tree = tree_links(wait_settled(blog, quiet_seconds=4, timeout=120))
    privnet = ping_ms(blog, "epsilon", hosts["vorke"]["overlay_ip"], reachable_within=20)
    plan = blog.api().call("GET", "/api/v1/plan")["plan"]
    assert None not in (direct, seed, privnet), (direct, seed, privnet)
    for name, value in (("direct", direct), ("seed", seed), ("privnet", privnet)):
        record_property(f"epsilon_vorke_{name}_ms", value)
    print(f"\nepsilon→vorke: direct {direct:.1f} ms, seed settings {seed:.1f} ms over {seed_tree}, "
          f"privnet {privnet:.1f} ms over {privnet_tree} (root {plan['root']})")  # fmt: skip

    assert ("epsilon", "vorke") not in seed_tree and seed > 2 * direct  # the seed's problem
    assert ["epsilon", "vorke"] in plan["tree"] and ("epsilon", "vorke") in privnet_tree
    assert privnet <= 1.3 * direct
    assert sorted(tuple(link) for link in plan["tree"]) == privnet_tree  # STP built exactly the planned tree
    link = blog.api().call("GET", "/api/v1/links/epsilon/vorke")
    assert link["in_tree"] is True and "tree link" in link["cost_reason"]
