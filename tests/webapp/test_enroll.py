"""Enrollment links: the script for a live token, a bare 404 for anything else."""

from datetime import timedelta

from webapp import keys
from webapp.models import Node, Token, utcnow


def enroll_secret(enroll: dict) -> str:
    return enroll["url"].rsplit("/", 1)[1]


def test_live_token_gets_the_nodes_script(api, client, db, app):
    enroll = api("POST", "/api/v1/nodes", {"name": "rho", "endpoint": "203.0.113.1:56560"}).json["enroll"]
    response = client.get(f"/enroll/{enroll_secret(enroll)}")
    assert response.status_code == 200
    assert response.mimetype == "text/x-shellscript"
    assert response.headers["Cache-Control"] == "no-store"
    node = db.session.execute(db.select(Node)).scalar_one()
    private = keys.decrypt_private_key(node.private_key_encrypted, app.config["SECRET_KEY"])
    assert private in response.text
    assert node.enrolled_at is not None
    assert response.text.startswith("#!/bin/sh")


def test_each_fetch_replaces_the_agent_token(api, client, db):
    secret = enroll_secret(api("POST", "/api/v1/nodes", {"name": "rho"}).json["enroll"])
    client.get(f"/enroll/{secret}")
    client.get(f"/enroll/{secret}")
    agent_tokens = db.session.execute(db.select(Token).where(Token.kind == "agent")).scalars().all()
    assert len(agent_tokens) == 2
    assert sum(token.revoked_at is None for token in agent_tokens) == 1


def test_unknown_revoked_and_expired_tokens_get_a_bare_404(api, client, db):
    first = enroll_secret(api("POST", "/api/v1/nodes", {"name": "rho"}).json["enroll"])
    second = enroll_secret(api("POST", "/api/v1/nodes/rho/enrollment").json)
    assert client.get(f"/enroll/{second}").status_code == 200
    token = db.session.execute(
        db.select(Token).where(Token.revoked_at.is_(None), Token.kind == "enrollment")
    ).scalar_one()
    token.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    for secret in (first, second, "x" * 43, "short", "../../etc/passwd"):
        for suffix in ("", "/qr.svg"):
            response = client.get(f"/enroll/{secret}{suffix}")
            assert response.status_code == 404
            assert response.data == b""


def test_qr_code_is_an_svg_of_the_command(api, client):
    secret = enroll_secret(api("POST", "/api/v1/nodes", {"name": "pi0"}).json["enroll"])
    response = client.get(f"/enroll/{secret}/qr.svg")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert response.text.lstrip().startswith("<?xml") and "<svg" in response.text and "<path" in response.text
