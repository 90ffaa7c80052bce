"""``GET /api/v1/agent/config``: ETag, 304, the long-poll, and the agent's answer to a key rotation.

These run in-process on both backends: on SQLite the change notifier polls the generation, on
PostgreSQL (the suite's second pass) it LISTENs; a waiter must return within about a second.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from datetime import UTC, datetime

import pytest

from tests.factories import make_agents, make_link, make_node
from tests.webapp.test_reports import valid_report
from webapp import changes, keys, liveconfig, planning, tokens
from webapp.config import TestingConfig
from webapp.extensions import db as _db
from webapp.hostconfig import build_host_config
from webapp.inventory import get_network, get_node, links_of
from webapp.models import Network

WAKE_SECONDS = 1.0  # the promise: a change reaches a waiting host within about a second


@pytest.fixture
def agents(db):
    """epsilon—vorke linked, bob alone (all with endpoints); their agent tokens by name."""
    return make_agents(db, ("epsilon", "vorke", "bob"), links=(("epsilon", "vorke"),))


def config_get(client, token: str, *, version: str | None = None, wait: object = None, headers: dict | None = None):
    headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    if version is not None:
        headers["If-None-Match"] = f'"{version}"'
    query = "" if wait is None else f"?wait={wait}"
    return client.get(f"/api/v1/agent/config{query}", headers=headers)


def expected_config(name: str):
    _db.session.expire_all()
    node, network = get_node(name), get_network()
    return build_host_config(
        node, network, links_of(node), TestingConfig.PRIVNET_URL, plan=planning.stored_plan(network)
    )


class Poll(threading.Thread):
    """One long-poll in its own thread and test client; ``response`` and ``seconds`` when done."""

    def __init__(self, app, token: str, version: str | None, wait: int) -> None:
        super().__init__(daemon=True)
        self.app, self.token, self.version, self.wait = app, token, version, wait
        self.response = None
        self.seconds = None
        self.done_at: float | None = None

    def run(self) -> None:
        started = time.monotonic()
        self.response = config_get(self.app.test_client(), self.token, version=self.version, wait=self.wait)
        self.done_at = time.monotonic()
        self.seconds = self.done_at - started


def start_polls(app, polls: list[Poll]) -> None:
    for poll in polls:
        poll.start()
    time.sleep(0.3)  # let them reach the wait
    assert all(poll.is_alive() for poll in polls), "a long-poll returned before anything changed"


def test_config_answers_with_etag_and_the_host_config(client, agents):
    response = config_get(client, agents["epsilon"])
    assert response.status_code == 200
    expected = expected_config("epsilon")
    assert response.json == {"config": json.loads(json.dumps(expected.to_dict()))}
    assert response.headers["ETag"] == f'"{expected.version}"'
    assert response.headers["Cache-Control"] == "no-store"
    config = response.json["config"]
    assert config["key_rotation"] is None
    assert [peer["name"] for peer in config["peers"]] == ["vorke"]
    assert "private_key" not in response.text


def test_a_stale_version_gets_the_current_config_at_once(client, agents):
    started = time.monotonic()
    response = config_get(client, agents["epsilon"], version="0123456789abcdef", wait=30)
    assert response.status_code == 200
    assert time.monotonic() - started < 1
    assert response.headers["ETag"] == f'"{expected_config("epsilon").version}"'


def test_current_version_times_out_with_304(client, agents):
    version = config_get(client, agents["epsilon"]).json["config"]["version"]
    immediate = config_get(client, agents["epsilon"], version=version, wait=0)
    assert immediate.status_code == 304
    assert immediate.headers["ETag"] == f'"{version}"'
    assert immediate.data == b""
    started = time.monotonic()
    timed_out = config_get(client, agents["epsilon"], version=version, wait=1)
    elapsed = time.monotonic() - started
    assert timed_out.status_code == 304
    assert 1 <= elapsed < 2.5
    # a weak tag (as some proxies rewrite it) is the same version
    weak = config_get(client, agents["epsilon"], wait=0, headers={"If-None-Match": f'W/"{version}"'})
    assert weak.status_code == 304


def test_a_link_change_wakes_both_ends_within_a_second(app, api, agents):
    versions = {name: config_get(app.test_client(), agents[name]).json["config"]["version"] for name in agents}
    polls = {name: Poll(app, agents[name], versions[name], wait=10) for name in ("epsilon", "vorke")}
    start_polls(app, list(polls.values()))
    changed_at = time.monotonic()
    assert api("PATCH", "/api/v1/links/epsilon/vorke", json={"cost": 250}).status_code == 200
    for poll in polls.values():
        poll.join(timeout=10)
    for name, poll in polls.items():
        assert poll.response.status_code == 200, name
        assert poll.done_at - changed_at < WAKE_SECONDS, f"{name} waited {poll.done_at - changed_at:.2f} s"
        config = poll.response.json["config"]
        assert config["version"] != versions[name]
        assert poll.response.headers["ETag"] == f'"{config["version"]}"'
        assert config["links"][0]["cost"] == 250
        assert config == json.loads(json.dumps(expected_config(name).to_dict()))


def test_other_nodes_changes_do_not_answer_a_waiter(app, api, agents):
    """bob has no link: a change to epsilon—vorke wakes bob's waiter, which re-reads and keeps waiting."""
    version = config_get(app.test_client(), agents["bob"]).json["config"]["version"]
    poll = Poll(app, agents["bob"], version, wait=2)
    start_polls(app, [poll])
    api("PATCH", "/api/v1/links/epsilon/vorke", json={"cost": 300})
    api("PATCH", "/api/v1/nodes/vorke", json={"endpoint": "vorke.example:4000"})
    poll.join(timeout=10)
    assert poll.response.status_code == 304
    assert poll.seconds >= 2


def test_each_kind_of_change_reaches_the_hosts_it_concerns(app, api, agents):
    """Node, link and network writes: the hosts whose config changes are answered, the others wait."""
    cases = [
        (("POST", "/api/v1/links", {"a": "bob", "b": "epsilon"}), {"bob", "epsilon"}),
        # pinned at 4096, vorke would tie with the planned root epsilon: the planner gives epsilon 0
        # to keep it root, and bob (vorke, pinned, no longer can be) the backup root's 8192
        (("PATCH", "/api/v1/nodes/vorke", {"bridge_priority": 4096}), {"vorke", "epsilon", "bob"}),
        # vorke's own config names no endpoint of its own (both ends have one): only its peer changes
        (("PATCH", "/api/v1/nodes/vorke", {"endpoint": "vorke.example:4000"}), {"epsilon"}),
        (("PATCH", "/api/v1/nodes/vorke", {"endpoint": ""}), {"vorke", "epsilon"}),  # keepalive both ends
        (("DELETE", "/api/v1/links/bob/epsilon", None), {"bob", "epsilon"}),
        (("DELETE", "/api/v1/nodes/vorke", None), {"epsilon"}),
        (("PATCH", "/api/v1/network", {"stp_hello_time": 2}), {"epsilon", "bob"}),
    ]
    for (method, path, body), reached in cases:
        names = [name for name in ("epsilon", "vorke", "bob") if tokens.find_valid_token(agents[name], "agent")]
        versions = {name: config_get(app.test_client(), agents[name]).json["config"]["version"] for name in names}
        polls = {name: Poll(app, agents[name], versions[name], wait=1) for name in names}
        start_polls(app, list(polls.values()))
        response = api(method, path, json=body)
        assert response.status_code < 300, response.text
        for poll in polls.values():
            poll.join(timeout=10)
        answered = {name for name, poll in polls.items() if poll.response.status_code == 200}
        assert answered == reached, (method, path)
        # a deleted node's agent is told its token is gone
        assert all(poll.response.status_code in (200, 304, 401) for poll in polls.values())


def test_a_location_edit_changes_no_config_and_no_generation(api, agents, db):
    api("PATCH", "/api/v1/links/epsilon/vorke", json={"cost": 100})  # pins the cost (was derived)
    db.session.expire_all()
    before = db.session.get(Network, 1).generation
    api("PATCH", "/api/v1/nodes/epsilon", json={"location": "Basement"})
    api("PATCH", "/api/v1/links/epsilon/vorke", json={"cost": 100})  # the cost it has: no change
    db.session.expire_all()
    assert db.session.get(Network, 1).generation == before
    api("PATCH", "/api/v1/links/epsilon/vorke", json={"cost": 101})
    db.session.expire_all()
    assert db.session.get(Network, 1).generation == before + 1


def test_a_revoked_token_ends_the_wait_with_401(app, api, agents, db):
    version = config_get(app.test_client(), agents["epsilon"]).json["config"]["version"]
    poll = Poll(app, agents["epsilon"], version, wait=10)
    start_polls(app, [poll])
    tokens.revoke_tokens("agent", node=get_node("epsilon"))
    db.session.commit()
    api("PATCH", "/api/v1/links/epsilon/vorke", json={"cost": 7})  # wakes it; it re-checks the token
    poll.join(timeout=10)
    assert poll.response.status_code == 401
    assert poll.response.json["field"] == "Authorization"


@pytest.mark.parametrize(
    ("wait", "header", "field"),
    [
        ("abc", None, "wait"),
        ("61", None, "wait"),
        ("-1", None, "wait"),
        ("1.5", None, "wait"),
        ("", None, "wait"),
        (None, "0123456789abcdef", "If-None-Match"),  # not quoted
        (None, '"XYZ"', "If-None-Match"),
        (None, '"a", "b"', "If-None-Match"),
        (None, "*", "If-None-Match"),
    ],
)
def test_malformed_config_requests_are_refused_with_the_field(client, agents, wait, header, field):
    headers = {"If-None-Match": header} if header is not None else None
    response = config_get(client, agents["epsilon"], wait=wait, headers=headers)
    assert response.status_code == 400
    assert response.json["field"] == field
    assert set(response.json) == {"error", "field"}


@pytest.mark.parametrize("token", [None, "x" * 43, "admin"])
def test_config_needs_a_live_agent_token(client, agents, api_token, token):
    secret = api_token if token == "admin" else token
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    response = client.get("/api/v1/agent/config", headers=headers)
    assert response.status_code == 401
    assert response.json["field"] == "Authorization"


# --- key rotation ------------------------------------------------------------------------------


def new_public_key() -> str:
    return keys.generate_keypair().public_key


def post_key(client, token: str, body):
    return client.post("/api/v1/agent/public-key", json=body, headers={"Authorization": f"Bearer {token}"})


def test_key_rotation_end_to_end(app, api, client, agents, db):
    epsilon = get_node("epsilon")
    old_public = epsilon.public_key
    old_private = keys.decrypt_private_key(epsilon.private_key_encrypted, TestingConfig.SECRET_KEY)
    before = config_get(client, agents["epsilon"]).json["config"]
    assert before["key_rotation"] is None

    # the agent is long-polling when the admin asks for a rotation: it hears of it at once
    poll = Poll(app, agents["epsilon"], before["version"], wait=10)
    start_polls(app, [poll])
    asked = api("POST", "/api/v1/nodes/epsilon/rotate-key")
    assert asked.status_code == 202
    assert asked.json["key_rotation"]["requested_at"]
    assert asked.json["public_key"] == old_public
    poll.join(timeout=10)
    assert poll.response.status_code == 200
    nonce = poll.response.json["config"]["key_rotation"]
    assert re.fullmatch(r"[0-9a-f]{32}", nonce)
    # asking again while it is pending keeps the same nonce
    assert api("POST", "/api/v1/nodes/epsilon/rotate-key").status_code == 202
    assert config_get(client, agents["epsilon"]).json["config"]["key_rotation"] == nonce

    new_key = new_public_key()
    wrong = post_key(client, agents["epsilon"], {"public_key": new_key, "nonce": "0" * 32})
    assert wrong.status_code == 409
    assert wrong.json["field"] == "nonce"
    foreign = post_key(client, agents["epsilon"], {"public_key": get_node("vorke").public_key, "nonce": nonce})
    assert foreign.status_code == 409
    assert foreign.json["field"] == "public_key"
    same = post_key(client, agents["epsilon"], {"public_key": old_public, "nonce": nonce})
    assert same.status_code == 409
    assert same.json["field"] == "public_key"
    # vorke's agent token cannot answer epsilon's rotation (and vorke has none pending)
    assert post_key(client, agents["vorke"], {"public_key": new_key, "nonce": nonce}).status_code == 409
    db.session.expire_all()
    assert get_node("epsilon").public_key == old_public

    vorke_before = config_get(client, agents["vorke"]).json["config"]["version"]
    vorke_poll = Poll(app, agents["vorke"], vorke_before, wait=10)
    start_polls(app, [vorke_poll])
    accepted = post_key(client, agents["epsilon"], {"public_key": new_key, "nonce": nonce})
    assert accepted.status_code == 200
    assert accepted.json == {"name": "epsilon", "public_key": new_key}
    vorke_poll.join(timeout=10)
    # the peer hears of the new key through its long-poll
    assert vorke_poll.response.status_code == 200
    assert vorke_poll.response.json["config"]["peers"][0]["public_key"] == new_key

    db.session.expire_all()
    node = get_node("epsilon")
    assert node.public_key == new_key
    assert node.private_key_encrypted is None  # the app never knew the new private key
    assert node.key_rotation_nonce is None
    shown = api("GET", "/api/v1/nodes/epsilon")
    assert shown.json["public_key"] == new_key and shown.json["key_rotation"] is None
    for text in (shown.text, api("GET", "/api/v1/nodes").text, config_get(client, agents["vorke"]).text):
        assert old_public not in text and old_private not in text
    assert config_get(client, agents["epsilon"]).json["config"]["key_rotation"] is None
    # a retry of the same answer (the reply was lost) is accepted and changes nothing
    again = post_key(client, agents["epsilon"], {"public_key": new_key, "nonce": nonce})
    assert again.status_code == 200
    # with nothing pending, another key is refused
    late = post_key(client, agents["epsilon"], {"public_key": new_public_key(), "nonce": nonce})
    assert late.status_code == 409 and late.json["field"] == "nonce"


def test_enrolling_a_node_whose_key_the_host_made_gives_it_a_fresh_pair(api, client, agents, db):
    assert api("POST", "/api/v1/nodes/epsilon/rotate-key").status_code == 202
    nonce = config_get(client, agents["epsilon"]).json["config"]["key_rotation"]
    host_key = new_public_key()
    assert post_key(client, agents["epsilon"], {"public_key": host_key, "nonce": nonce}).status_code == 200
    url = api("POST", "/api/v1/nodes/epsilon/enrollment").json["url"]
    # issuing the link changes nothing yet: the host keeps its tunnels until the script runs
    db.session.expire_all()
    assert get_node("epsilon").public_key == host_key
    script = client.get(url.removeprefix(TestingConfig.PRIVNET_URL))
    assert script.status_code == 200
    db.session.expire_all()
    node = get_node("epsilon")
    assert node.public_key != host_key and node.private_key_encrypted is not None
    private = keys.decrypt_private_key(node.private_key_encrypted, TestingConfig.SECRET_KEY)
    assert keys.public_key_of(private) == node.public_key
    assert private in script.text
    assert config_get(client, agents["vorke"]).json["config"]["peers"][0]["public_key"] == node.public_key


KEY = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopA="  # canonical: the last digit's low bits are zero
NONCE = "0" * 32


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ("not an object", "body", 400),
        ({"nonce": NONCE}, "public_key", 400),
        ({"public_key": KEY}, "nonce", 400),
        ({"public_key": KEY, "nonce": NONCE, "extra": 1}, "extra", 400),
        ({"public_key": "short", "nonce": NONCE}, "public_key", 400),
        ({"public_key": 12, "nonce": NONCE}, "public_key", 400),
        ({"public_key": base64.b64encode(bytes(32)).decode(), "nonce": NONCE}, "public_key", 400),
        ({"public_key": KEY[:-2] + "B=", "nonce": NONCE}, "public_key", 400),  # non-canonical base64
        ({"public_key": KEY, "nonce": NONCE[:-1]}, "nonce", 400),
        ({"public_key": KEY, "nonce": "G" * 32}, "nonce", 400),
        ({"public_key": KEY, "nonce": None}, "nonce", 400),
        ({"public_key": KEY, "nonce": NONCE}, "nonce", 409),  # nothing pending
    ],
)
def test_malformed_public_key_answers_are_refused(client, agents, db, body, field, status):
    before = get_node("epsilon").public_key
    response = post_key(client, agents["epsilon"], body)
    assert response.status_code == status, response.text
    assert response.json["field"] == field
    db.session.expire_all()
    assert get_node("epsilon").public_key == before


def test_rotate_key_needs_an_admin_and_a_node(client, api, agents):
    assert client.post("/api/v1/nodes/epsilon/rotate-key").status_code == 401
    agent = client.post("/api/v1/nodes/epsilon/rotate-key", headers={"Authorization": f"Bearer {agents['epsilon']}"})
    assert agent.status_code == 401
    missing = api("POST", "/api/v1/nodes/nobody/rotate-key")
    assert missing.status_code == 404 and missing.json["field"] == "name"


def test_rotate_key_button_on_the_node_page(auth, agents, db):
    page = auth.get("/nodes/epsilon")
    assert b"Rotate key" in page.data and b"/nodes/epsilon/rotate-key" in page.data
    response = auth.post("/nodes/epsilon/rotate-key")
    assert response.status_code == 302
    db.session.expire_all()
    assert get_node("epsilon").key_rotation_nonce is not None
    assert b"waiting for the host" in auth.get("/nodes/epsilon").data


def test_rotate_key_form_needs_its_csrf_token(app, auth, agents, db):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = auth.post("/nodes/epsilon/rotate-key")
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert response.status_code == 400
    db.session.expire_all()
    assert get_node("epsilon").key_rotation_nonce is None


# --- in sync / behind --------------------------------------------------------------------------


def report(client, token: str, name: str, version: str | None):
    payload = valid_report(name) | {"config_version": version}
    response = client.post("/api/v1/agent/report", json=payload, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202, response.text


def test_sync_state_follows_reports_and_changes(api, client, auth, agents, db):
    assert api("GET", "/api/v1/nodes/epsilon").json["sync"]["state"] == "unknown"
    version = config_get(client, agents["epsilon"]).json["config"]["version"]
    report(client, agents["epsilon"], "epsilon", version)
    sync = api("GET", "/api/v1/nodes/epsilon").json["sync"]
    assert sync == {"state": "in_sync", "since": None, "desired_version": version, "reported_version": version}

    api("PATCH", "/api/v1/links/epsilon/vorke", json={"cost": 42})
    db.session.expire_all()
    changed_at = get_node("epsilon").config_changed_at
    sync = api("GET", "/api/v1/nodes/epsilon").json["sync"]
    assert sync["state"] == "behind"
    assert sync["since"] == changed_at.isoformat()
    assert sync["reported_version"] == version != sync["desired_version"]
    listed = {node["name"]: node["sync"] for node in api("GET", "/api/v1/nodes").json["nodes"]}
    assert listed["epsilon"] == sync and listed["bob"]["state"] == "unknown"
    assert b"behind since" in auth.get("/nodes/epsilon").data
    assert b"behind since" in auth.get("/nodes/").data

    report(client, agents["epsilon"], "epsilon", sync["desired_version"])
    assert api("GET", "/api/v1/nodes/epsilon").json["sync"]["state"] == "in_sync"
    assert b"in sync" in auth.get("/nodes/").data
    report(client, agents["vorke"], "vorke", None)  # an agent that does not know its version
    assert api("GET", "/api/v1/nodes/vorke").json["sync"]["state"] == "behind"


def test_judge_sync_is_plain_logic():
    changed = datetime(2026, 1, 1, tzinfo=UTC)
    assert liveconfig.judge_sync("a", reported=False, reported_version=None, changed_at=changed).state == "unknown"
    assert liveconfig.judge_sync("a", reported=True, reported_version="a", changed_at=changed).state == "in_sync"
    behind = liveconfig.judge_sync("a", reported=True, reported_version="b", changed_at=changed)
    assert (behind.state, behind.since) == ("behind", changed)


def test_nodes_list_sync_uses_a_constant_number_of_queries(api, agents, db):
    from sqlalchemy import event

    def count_queries() -> int:
        statements = []

        def record(*args):
            statements.append(args)

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            assert api("GET", "/api/v1/nodes").status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        return len(statements)

    small = count_queries()
    for index in range(6):
        make_node(db, name=f"extra{index}", endpoint=f"extra{index}.example:1")
        make_link(db, f"extra{index}", "epsilon")
    db.session.expire_all()
    assert count_queries() <= small + 1


def test_a_stopping_notifier_ends_the_wait_at_once(agents):
    """What a worker does on SIGTERM (gunicorn.conf.py): waiting long-polls answer 304 now."""
    node = get_node("epsilon")
    version = expected_config("epsilon").version
    notifier = changes.TickingNotifier(interval=60)
    notifier.stop()
    started = time.monotonic()
    answer = liveconfig.wait_for_config(
        node.id, lambda: get_node("epsilon"), version, app_url=TestingConfig.PRIVNET_URL, timeout=30, notifier=notifier
    )
    assert answer is None
    assert time.monotonic() - started < 1
