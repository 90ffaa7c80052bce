"""``POST /api/v1/agent/report`` and ``GET /api/v1/topology``: strict, per-node, nothing lost."""

import copy

import pytest

from tests.factories import make_agents
from tests.webapp.test_reports import valid_report
from webapp.models import NodeReport, TopologyChange


@pytest.fixture
def agent_tokens(db):
    """Agent tokens for epsilon and vorke (two nodes with a link)."""
    return make_agents(db, ("epsilon", "vorke"), links=(("epsilon", "vorke"),))


def post_report(client, token, payload, **kwargs):
    return client.post("/api/v1/agent/report", json=payload, headers={"Authorization": f"Bearer {token}"}, **kwargs)


def test_report_is_stored_and_changes_are_recorded(client, db, agent_tokens):
    first = post_report(client, agent_tokens["epsilon"], valid_report("epsilon"))
    assert first.status_code == 202
    assert first.json["changes"] == []
    changed = valid_report("epsilon")
    changed["ports"][0]["state"] = "blocking"
    second = post_report(client, agent_tokens["epsilon"], changed)
    assert second.json["changes"] == [
        {"kind": "port_state_changed", "port": "vorke", "old": "forwarding", "new": "blocking"}
    ]
    history = db.session.execute(db.select(TopologyChange)).scalars().all()
    assert [(change.kind, change.port, change.new) for change in history] == [
        ("port_state_changed", "vorke", "blocking")
    ]


def test_malformed_report_changes_nothing(client, db, agent_tokens):
    post_report(client, agent_tokens["epsilon"], valid_report("epsilon"))
    before = db.session.execute(db.select(NodeReport.payload)).scalar_one()
    bad = copy.deepcopy(valid_report("epsilon"))
    bad["ports"][1]["state"] = "melting"
    response = post_report(client, agent_tokens["epsilon"], bad)
    assert response.status_code == 400
    assert response.json["field"] == "ports[1].state"
    db.session.expire_all()
    assert db.session.execute(db.select(NodeReport.payload)).scalar_one() == before


def test_a_token_cannot_report_for_another_node(client, db, agent_tokens):
    response = post_report(client, agent_tokens["vorke"], valid_report("epsilon"))
    assert response.status_code == 400
    assert response.json["field"] == "node"
    assert db.session.execute(db.select(NodeReport)).first() is None


@pytest.mark.parametrize("token", [None, "x" * 43, "admin"])
def test_reports_need_a_live_agent_token(client, db, agent_tokens, api_token, token):
    secret = api_token if token == "admin" else token
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    response = client.post("/api/v1/agent/report", json=valid_report("epsilon"), headers=headers)
    assert response.status_code == 401


def test_oversized_and_non_json_reports_are_refused(client, agent_tokens):
    headers = {"Authorization": f"Bearer {agent_tokens['epsilon']}", "Content-Type": "application/json"}
    huge = client.post("/api/v1/agent/report", data="[" + "0," * 600_000 + "0]", headers=headers)
    assert huge.status_code == 413
    junk = client.post("/api/v1/agent/report", data="{nope", headers=headers)
    assert junk.status_code == 400
    assert junk.json["field"] == "body"


def test_topology_endpoint_joins_reports_and_links(api, client, agent_tokens):
    for name in ("epsilon", "vorke"):
        post_report(client, agent_tokens[name], valid_report(name))
    body = api("GET", "/api/v1/topology").json
    assert set(body) >= {"root", "nodes", "links", "stale"}
    assert [(link["a"], link["b"], link["vni"]) for link in body["links"]] == [("epsilon", "vorke", 1)]
    # both ends report; epsilon's port "vorke" forwards, vorke has no port "epsilon": down
    assert body["links"][0]["state"] == "down"
    assert body["stale"] == []
