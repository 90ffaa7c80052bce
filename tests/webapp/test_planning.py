"""Tree planning in the app: the agents' RTTs in, the planned STP settings out to every host.

The seed's world (the RTTs of ``test_treeplan``: rho, epsilon, vorke, bob, pi0 and the blog's 7
links) reported through the real ``POST /api/v1/agent/report`` with agent tokens; what the hosts
get is read back through ``GET /api/v1/agent/config``, as their agents do.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import pytest

from tests.factories import make_agents, make_link, make_node
from tests.webapp.test_live_config import WAKE_SECONDS, Poll, start_polls
from tests.webapp.test_reports import valid_report
from tests.webapp.test_treeplan import SEED_MACS, SEED_NODES, SEED_RTT
from webapp import inventory, planning
from webapp.extensions import db as _db
from webapp.models import Network, Node, utcnow
from webapp.treeplan import TreePlan, link_key, simulate_stp

EPSILON_VORKE = link_key("epsilon", "vorke")


def peers_rtt(name: str, scale: dict[tuple[str, str], float] | None = None) -> dict[str, float]:
    """``name``'s peers and their RTT in the seed's world (times ``scale`` per link, if given)."""
    found = {}
    for (a, b), rtt in SEED_RTT.items():
        if name in (a, b):
            found[b if a == name else a] = rtt * (scale or {}).get(link_key(a, b), 1.0)
    return found


def probe_report(name: str, rtts: dict[str, float | None], *, state: str = "up", loss: float = 0.0) -> dict:
    """A schema-2 report of ``name`` with one probe per peer in ``rtts``."""
    probes = [
        {"peer": peer, "rtt_ms": rtt, "loss": loss, "state": state if rtt is not None else "waiting"}
        for peer, rtt in sorted(rtts.items())
    ]
    return valid_report(name) | {"schema": 2, "probes": probes}


def post_report(client, token: str, payload: dict) -> None:
    response = client.post("/api/v1/agent/report", json=payload, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202, response.text


def host_config(client, token: str) -> dict:
    response = client.get("/api/v1/agent/config", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == f'"{response.json["config"]["version"]}"'
    return response.json["config"]


def host_settings(client, tokens: dict[str, str]) -> tuple[dict[tuple[str, str], int], dict[str, int], dict]:
    """Costs by link and priorities by node as the hosts get them (both ends must agree), and versions."""
    costs: dict[tuple[str, str], int] = {}
    priorities: dict[str, int] = {}
    versions = {}
    for name, token in tokens.items():
        config = host_config(client, token)
        priorities[name] = config["bridge_priority"]
        versions[name] = config["version"]
        for link in config["links"]:
            key = link_key(name, link["name"])
            assert costs.setdefault(key, link["cost"]) == link["cost"], f"the ends of {key} disagree"
    return costs, priorities, versions


def generation() -> int:
    _db.session.expire_all()
    return _db.session.get(Network, 1).generation


def planned_at():
    _db.session.expire_all()
    return _db.session.get(Network, 1).planned_at


def open_throttle() -> None:
    """Pretend the last plan is older than the throttle (report_interval / 2)."""
    network = _db.session.get(Network, 1)
    network.planned_at = utcnow() - timedelta(seconds=network.report_interval)
    _db.session.commit()


@pytest.fixture
def seed(db):
    """The seed's five hosts and seven links, each with an agent token (by name)."""
    return make_agents(db, SEED_NODES, links=tuple(SEED_RTT))


@pytest.fixture
def measured(client, seed):
    """The seed's world after every host reported its probes once."""
    for name in SEED_NODES:
        post_report(client, seed[name], probe_report(name, peers_rtt(name)))
    return seed


def test_the_seed_world_through_reports_gets_the_latency_tree(api, client, measured):
    costs, priorities, _ = host_settings(client, measured)
    # what kernel STP builds from exactly the settings the hosts got (MACs as in the seed's hosts)
    stp = simulate_stp(SEED_NODES, SEED_RTT, costs, priorities, SEED_MACS)
    assert EPSILON_VORKE in stp.forwarding
    assert costs[EPSILON_VORKE] == 200  # 20 ms × 10 per ms
    body = api("GET", "/api/v1/plan").json
    plan = TreePlan.from_dict(body["plan"])
    assert body["tree_mode"] == "latency" and body["planned_at"] is not None
    assert stp.forwarding == plan.tree
    assert stp.roots == {plan.root}
    assert priorities[plan.root] == 4096
    assert sorted(priority for name, priority in priorities.items() if name != plan.root) == [8192, *[32768] * 3]
    assert costs == plan.costs
    # every end of every link measured once; each measurement as its end reported it
    assert len(body["measurements"]) == 2 * len(SEED_RTT)
    assert {"a": "epsilon", "b": "vorke", "rtt_ms": 20.0, "loss": 0.0} in body["measurements"]
    # the API shows the same effective values, with the plan's reasons
    link = api("GET", "/api/v1/links/vorke/epsilon").json
    assert (link["cost"], link["cost_pinned"], link["in_tree"], link["rtt_ms"]) == (200, False, True, 20.0)
    assert link["cost_reason"].startswith("tree link: RTT 20.0 ms")
    root = api("GET", f"/api/v1/nodes/{plan.root}").json
    assert (root["bridge_priority"], root["priority_pinned"], root["role"]) == (4096, False, "root")
    # the root the reports' order made is kept while the best centre is not clearly better (hysteresis)
    assert root["priority_reason"].startswith(("root: latency centre", "root: kept"))


def test_with_nothing_measured_the_links_are_planned_at_the_default(api, seed):
    link = api("GET", "/api/v1/links/epsilon/vorke").json
    assert link["rtt_ms"] == 100.0
    assert "not measured" in link["cost_reason"]
    assert api("GET", "/api/v1/plan").json["measurements"] == []


def test_seed_mode_gives_the_seed_settings_and_wakes_the_hosts(app, api, client, measured):
    planned_costs, planned_priorities, versions = host_settings(client, measured)
    before = generation()
    polls = {name: Poll(app, measured[name], versions[name], wait=10) for name in ("epsilon", "vorke")}
    start_polls(app, list(polls.values()))
    changed_at = time.monotonic()
    response = api("PATCH", "/api/v1/network", {"tree_mode": "seed"})
    assert response.status_code == 200 and response.json["tree_mode"] == "seed"
    for poll in polls.values():
        poll.join(timeout=10)
        assert poll.response.status_code == 200
        assert poll.done_at - changed_at < WAKE_SECONDS
        assert poll.response.headers["ETag"] != f'"{poll.version}"'
    costs, priorities, seed_versions = host_settings(client, measured)
    assert set(costs.values()) == {100} and set(priorities.values()) == {32768}
    assert all(seed_versions[name] != versions[name] for name in measured)
    assert generation() == before + 1
    link = api("GET", "/api/v1/links/epsilon/vorke").json
    assert (link["cost"], link["in_tree"], link["cost_reason"]) == (100, None, planning.SEED_COST_REASON)
    assert api("GET", "/api/v1/nodes/bob").json["role"] is None
    assert api("GET", "/api/v1/plan").json["plan"] is None
    # reports change nothing in seed mode
    post_report(client, measured["epsilon"], probe_report("epsilon", {peer: 1.0 for peer in peers_rtt("epsilon")}))
    assert generation() == before + 1
    # and back, with the seed's RTTs measured again: the same plan again
    post_report(client, measured["epsilon"], probe_report("epsilon", peers_rtt("epsilon")))
    api("PATCH", "/api/v1/network", {"tree_mode": "latency"})
    assert host_settings(client, measured)[:2] == (planned_costs, planned_priorities)


@pytest.mark.parametrize("value", ["Latency", "", None, 1, ["seed"]])
def test_tree_mode_is_latency_or_seed(api, seed, value):
    response = api("PATCH", "/api/v1/network", {"tree_mode": value})
    assert response.status_code == 400
    assert response.json["field"] == "tree_mode"
    assert '"latency"' in response.json["error"] and '"seed"' in response.json["error"]
    assert api("GET", "/api/v1/network").json["tree_mode"] == "latency"


def test_fast_failover_reaches_every_host_and_is_a_boolean(api, client, measured):
    assert {host_config(client, token)["fast_failover"] for token in measured.values()} == {True}
    before = generation()
    response = api("PATCH", "/api/v1/network", {"fast_failover": False})
    assert response.status_code == 200 and response.json["fast_failover"] is False
    assert {host_config(client, token)["fast_failover"] for token in measured.values()} == {False}
    assert generation() == before + 1
    for value in ("false", 0, None):
        refused = api("PATCH", "/api/v1/network", {"fast_failover": value, "report_interval": 30})
        assert refused.status_code == 400
        assert refused.json == {"error": "fast_failover must be true or false", "field": "fast_failover"}
    network = api("GET", "/api/v1/network").json
    assert (network["fast_failover"], network["report_interval"]) == (False, 10)  # nothing stored


def test_the_network_page_switches_fast_failover(auth, seed):
    page = auth.get("/network/").text
    assert "Fast failover" in page and '<option selected value="true">' in page
    form = {field: str(value) for field, value in auth.get("/api/v1/network").json.items()}
    response = auth.post("/network/", data=form | {"fast_failover": "false"})
    assert response.status_code == 302
    assert auth.get("/api/v1/network").json["fast_failover"] is False
    refused = auth.post("/network/", data=form | {"fast_failover": "maybe"})
    assert "fast_failover must be true or false" in refused.text


def test_a_pinned_cost_survives_replans_and_unpins(api, client, measured):
    response = api("PATCH", "/api/v1/links/epsilon/bob", {"cost": 777})
    assert response.status_code == 200
    assert (response.json["cost"], response.json["cost_pinned"]) == (777, True)
    assert "pinned by admin" in response.json["cost_reason"]
    for _ in range(2):
        assert api("POST", "/api/v1/plan").status_code == 200
        costs, _, _ = host_settings(client, measured)
        assert costs[link_key("epsilon", "bob")] == 777
    plan = TreePlan.from_dict(api("GET", "/api/v1/plan").json["plan"])
    assert plan.link("epsilon", "bob").pinned and plan.link("epsilon", "bob").cost == 777
    # the other links were replanned around it: STP still builds what the plan says
    costs, priorities, _ = host_settings(client, measured)
    assert simulate_stp(SEED_NODES, SEED_RTT, costs, priorities, SEED_MACS).forwarding == plan.tree
    unpinned = api("PATCH", "/api/v1/links/bob/epsilon", {"cost_pinned": False}).json
    assert (unpinned["cost"], unpinned["cost_pinned"]) == (750, False)
    assert "pinned" not in unpinned["cost_reason"]
    # pinning without a cost pins the cost in effect
    pinned = api("PATCH", "/api/v1/links/bob/epsilon", {"cost_pinned": True}).json
    assert (pinned["cost"], pinned["cost_pinned"]) == (750, True)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cost": 5, "cost_pinned": False}, "cost_pinned"),
        ({"cost_pinned": "no"}, "cost_pinned"),
        ({"cost_pinned": None}, "cost_pinned"),
        ({"cost": 0}, "cost"),
    ],
)
def test_bad_pins_are_refused_and_change_nothing(api, seed, body, field):
    before = api("GET", "/api/v1/links/epsilon/bob").json
    response = api("PATCH", "/api/v1/links/epsilon/bob", body)
    assert response.status_code == 400
    assert response.json["field"] == field
    assert api("GET", "/api/v1/links/epsilon/bob").json == before


def test_a_pinned_priority_is_used_and_unpins(api, client, measured):
    response = api("PATCH", "/api/v1/nodes/pi0", {"bridge_priority": 0})
    assert (response.json["bridge_priority"], response.json["priority_pinned"]) == (0, True)
    _, priorities, _ = host_settings(client, measured)
    assert priorities["pi0"] == 0
    assert api("GET", "/api/v1/plan").json["plan"]["root"] == "pi0"  # the lowest priority is the root
    refused = api("PATCH", "/api/v1/nodes/pi0", {"bridge_priority": 4096, "priority_pinned": False})
    assert refused.status_code == 400 and refused.json["field"] == "priority_pinned"
    back = api("PATCH", "/api/v1/nodes/pi0", {"priority_pinned": False}).json
    assert (back["bridge_priority"], back["priority_pinned"]) == (32768, False)
    _, priorities, _ = host_settings(client, measured)
    assert priorities["bob"] == 4096 and priorities["pi0"] == 32768


def test_noise_within_five_percent_changes_no_setting(api, client, measured):
    costs, priorities, versions = host_settings(client, measured)
    before, first_plan = generation(), planned_at()
    rng = random.Random(7)
    for _ in range(3):
        open_throttle()
        noise = {key: rng.uniform(0.95, 1.05) for key in SEED_RTT}
        for name in SEED_NODES:
            post_report(client, measured[name], probe_report(name, peers_rtt(name, noise)))
        assert api("POST", "/api/v1/plan").status_code == 200  # plan from the noisy RTTs, whatever the gate says
    assert planned_at() > first_plan  # it did plan again
    assert generation() == before
    assert host_settings(client, measured) == (costs, priorities, versions)


def test_a_report_that_changes_nothing_plans_nothing(client, measured):
    before, when = generation(), planned_at()
    for name in SEED_NODES:
        post_report(client, measured[name], probe_report(name, peers_rtt(name)))
    assert (generation(), planned_at()) == (before, when)
    # past the throttle, unchanged measurements still plan nothing
    open_throttle()
    when = planned_at()
    post_report(client, measured["bob"], probe_report("bob", peers_rtt("bob")))
    assert (generation(), planned_at()) == (before, when)


def test_moved_measurements_replan_only_past_the_throttle(client, measured):
    slower = {EPSILON_VORKE: 3.0}  # epsilon–vorke at 60 ms: no longer worth the tree
    when = planned_at()
    post_report(client, measured["epsilon"], probe_report("epsilon", peers_rtt("epsilon", slower)))
    assert planned_at() == when  # within report_interval / 2 of the last plan
    open_throttle()
    before = generation()
    post_report(client, measured["vorke"], probe_report("vorke", peers_rtt("vorke", slower)))
    assert planned_at() > when
    assert generation() == before + 1  # 60 ms: the tree changes, and the hosts are told


def test_a_dead_peer_does_not_replan_in_the_middle_of_its_failover(api, client, measured):
    """The agents route around a dead tunnel themselves: its last RTT and its loss still count."""
    when, before = planned_at(), generation()
    report = probe_report("epsilon", peers_rtt("epsilon"))
    report["probes"] = [probe | {"state": "down", "loss": 0.02} if probe["peer"] == "vorke" else probe
                        for probe in report["probes"]]  # fmt: skip
    post_report(client, measured["epsilon"], report)
    assert planned_at() == when  # the same peers measured, within the throttle: no replan
    assert generation() == before
    assert {"a": "epsilon", "b": "vorke", "rtt_ms": 20.0, "loss": 0.0} not in planning_inputs(api)  # not yet seen
    api("POST", "/api/v1/plan")
    assert {"a": "epsilon", "b": "vorke", "rtt_ms": 20.0, "loss": 0.02} in planning_inputs(api)
    assert generation() == before  # 2 % loss: +20 % on one end, +10 % averaged: within the cost tolerance


def planning_inputs(api) -> list[dict]:
    return api("GET", "/api/v1/plan").json["measurements"]


def test_measurements_skip_stale_reports_unanswered_probes_and_unlinked_peers(db, client):
    tokens = make_agents(db, ("rho", "bob", "pi0"), links=(("rho", "bob"), ("rho", "pi0")))
    post_report(client, tokens["rho"], probe_report("rho", {"bob": 10.0, "pi0": None}))
    post_report(client, tokens["bob"], probe_report("bob", {"rho": 12.0, "pi0": 30.0}))  # bob–pi0: no link
    down = probe_report("pi0", {"rho": 15.0})
    down["probes"][0]["state"] = "down"
    post_report(client, tokens["pi0"], down)
    found = [(m.a, m.b, m.rtt_ms) for m in planning.measurements_from_reports()]
    assert found == [("bob", "rho", 12.0), ("pi0", "rho", 15.0), ("rho", "bob", 10.0)]  # a dead peer's last RTT too
    # 3 report intervals later rho's and bob's reports are stale
    later = utcnow() + timedelta(seconds=3 * 10 + 1)
    assert planning.measurements_from_reports(now=later) == []


def test_effective_values_follow_pins_mode_and_plan(db):
    make_node(db, name="rho", endpoint="192.0.2.1:1")
    make_node(db, name="bob", endpoint="192.0.2.2:1", bridge_priority=4096)
    link = make_link(db, "rho", "bob")
    network = inventory.get_network()
    plan = planning.stored_plan(network)
    rho, bob = inventory.get_node("rho"), inventory.get_node("bob")
    assert plan is not None and bob.priority_pinned and not rho.priority_pinned
    assert planning.effective_cost(link, network, plan) == plan.link("rho", "bob").cost == 1000
    assert planning.effective_priority(bob, network, plan) == 4096  # pinned: the admin's
    assert planning.effective_priority(rho, network, plan) == plan.node("rho").priority
    assert planning.effective_cost(link, network, None) == 100  # no plan yet: its own
    network.tree_mode = "seed"
    assert planning.effective_cost(link, network, plan) == 100
    assert planning.effective_priority(rho, network, plan) == 32768


def test_plan_round_trips_through_the_database(db, seed):
    network = inventory.get_network()
    plan = planning.stored_plan(network)
    assert plan is not None
    assert TreePlan.from_dict(plan.to_dict()) == plan
    assert planning.stored_plan(network) is plan  # parsed once per text


def test_inventory_writes_replan_and_reach_the_hosts_concerned(api, client, measured):
    """Deleting the tree link epsilon–vorke moves costs on other links: their ends are stamped too."""
    costs, priorities, _ = host_settings(client, measured)
    before = generation()
    assert api("DELETE", "/api/v1/links/epsilon/vorke").status_code == 204
    assert generation() == before + 1  # one write, one generation, replan included
    after, after_priorities, _ = host_settings(client, measured)
    moved = {key for key in after if after[key] != costs.get(key)}
    assert moved  # vorke now hangs off another link, so the tree bound and costs move
    _db.session.expire_all()
    stamped = {node.name for node in _db.session.execute(_db.select(Node)).scalars() if node.config_generation > before}
    concerned = {name for key in moved for name in key} | {"epsilon", "vorke"}
    concerned |= {name for name in after_priorities if after_priorities[name] != priorities[name]}
    assert stamped == concerned


def test_post_plan_takes_no_fields(api, seed):
    assert api("POST", "/api/v1/plan", {"force": True}).status_code == 400
    assert api("GET", "/api/v1/plan", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_two_concurrent_replans_store_one_consistent_plan(app, client, measured):
    """Two workers replanning at once: both finish, the plan is stored, no setting flaps."""
    costs, priorities, _ = host_settings(client, measured)
    before = generation()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work() -> None:
        with app.app_context():
            barrier.wait()
            try:
                planning.replan()
            except BaseException as error:
                errors.append(error)
            finally:
                _db.session.remove()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert generation() == before
    assert host_settings(client, measured)[:2] == (costs, priorities)


def test_a_large_network_plans_in_the_background(app, api, client, seed, monkeypatch):
    monkeypatch.setattr(planning, "INLINE_PLAN_NODES", 2)
    before = planned_at()
    post_report(client, seed["epsilon"], probe_report("epsilon", peers_rtt("epsilon")))  # returns at once
    assert planning.background_planner().wait_idle(30)
    assert planned_at() > before
    measured_now = {(m["a"], m["b"]) for m in api("GET", "/api/v1/plan").json["measurements"]}
    assert ("epsilon", "vorke") in measured_now
    # an inventory write commits, then the background planner plans it
    make_node(db=None, name="zeta", endpoint="192.0.2.99:1")
    make_link(None, "zeta", "rho")
    assert planning.background_planner().wait_idle(30)
    link = api("GET", "/api/v1/links/zeta/rho").json
    assert link["in_tree"] is True and "not planned" not in link["cost_reason"]


def big_network(db, size: int) -> dict[str, str]:
    """``size`` nodes in a ring with a chord per two nodes, inserted in bulk; an agent token for n0."""
    from sqlalchemy import insert

    from webapp import tokens
    from webapp.models import Link

    inventory.update_network({"underlay_cidr": "10.88.0.0/16", "overlay_cidr": "10.99.0.0/16"})
    rng = random.Random(1)
    db.session.execute(
        insert(Node),
        [
            {"name": f"n{index}", "endpoint_host": f"n{index}.example", "endpoint_port": 1, "listen_port": 1,
             "underlay_ip": f"10.88.{host}", "overlay_ip": f"10.99.{host}", "public_key": f"{index:043d}=",
             "underlay_int": 0x0A580000 + (index // 250 << 8) + index % 250 + 1,
             "overlay_int": 0x0A630000 + (index // 250 << 8) + index % 250 + 1}
            for index in range(size)
            for host in [f"{index // 250}.{index % 250 + 1}"]
        ],
    )  # fmt: skip
    ids = dict(db.session.execute(db.select(Node.name, Node.id)).all())
    pairs = {tuple(sorted((index, (index + 1) % size))) for index in range(size)}
    pairs |= {tuple(sorted(rng.sample(range(size), 2))) for _ in range(size // 2)}
    db.session.execute(
        insert(Link),
        [
            {"node_a_id": min(ids[f"n{a}"], ids[f"n{b}"]), "node_b_id": max(ids[f"n{a}"], ids[f"n{b}"]), "vni": vni}
            for vni, (a, b) in enumerate(sorted(pairs), start=1)
        ],
    )
    secret, _ = tokens.issue_token("agent", node=db.session.get(Node, ids["n0"]))
    db.session.commit()
    return {"n0": secret}


def test_a_report_post_stays_fast_on_a_1000_node_network(app, db, client):
    """plan_tree takes seconds at 1,000 nodes: a report never waits for it (background planner, gate)."""
    tokens = big_network(db, 1000)
    peers = {name for (name,) in db.session.execute(db.select(Node.name).where(Node.name.in_(["n1", "n999"])))}
    report = probe_report("n0", dict.fromkeys(peers, 12.5))
    report["ports"], report["bridge"], report["peers"] = [], None, None
    started = time.perf_counter()
    post_report(client, tokens["n0"], report)  # n0's measured peers changed: a replan, in the background
    first = time.perf_counter() - started
    assert planning.background_planner().wait_idle(120)
    assert planned_at() is not None
    started = time.perf_counter()
    post_report(client, tokens["n0"], report)  # nothing moved: the gate says so without planning
    again = time.perf_counter() - started
    assert first < 1.0, f"report POST took {first:.2f} s while a 1,000-node plan was requested"
    assert again < 0.5, f"report POST took {again:.2f} s with nothing to plan"


def test_replans_racing_inventory_writes_end_with_a_plan_of_the_whole_graph(app, client, measured):
    """A replan that read the graph before a write committed must not store a plan without that write."""
    from tests.webapp.test_concurrency import run_in_threads

    for name in ("nu", "xi", "omicron"):
        make_node(None, name=name, endpoint=f"{name}.example:1")

    def work(index: int) -> None:
        if index == 0:
            for name in ("nu", "xi", "omicron"):
                inventory.create_link(a=name, b="rho")
        else:
            for _ in range(3):
                planning.replan()

    assert run_in_threads(app, work, count=3) == []
    _db.session.expire_all()
    network = inventory.get_network()
    plan = planning.stored_plan(network)
    assert {link.key for link in plan.links} == {link_key(*key) for key in SEED_RTT} | {
        link_key(name, "rho") for name in ("nu", "xi", "omicron")
    }
    # what the hosts get is what the plan says
    for name in ("nu", "rho"):
        node = inventory.get_node(name)
        for link in inventory.links_of(node):
            assert planning.effective_cost(link, network, plan) == plan.link(link.node_a.name, link.node_b.name).cost


def test_a_malformed_probe_is_refused_and_changes_nothing(client, measured):
    from webapp.models import NodeReport

    stored = _db.session.execute(_db.select(NodeReport.payload).join(NodeReport.node).where(Node.name == "epsilon"))
    before = (stored.scalar_one(), planned_at(), generation())
    bad = probe_report("epsilon", {peer: 1.0 for peer in peers_rtt("epsilon")})
    bad["probes"][1]["loss"] = 1.5
    headers = {"Authorization": f"Bearer {measured['epsilon']}"}
    response = client.post("/api/v1/agent/report", json=bad, headers=headers)
    assert (response.status_code, response.json["field"]) == (400, "probes[1].loss")
    old_agent = probe_report("epsilon", peers_rtt("epsilon")) | {"schema": 1}  # schema 1 has no probes
    response = client.post("/api/v1/agent/report", json=old_agent, headers=headers)
    assert (response.status_code, response.json["field"]) == (400, "probes")
    _db.session.expire_all()
    stored = _db.session.execute(_db.select(NodeReport.payload).join(NodeReport.node).where(Node.name == "epsilon"))
    assert (stored.scalar_one(), planned_at(), generation()) == before
