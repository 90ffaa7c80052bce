"""A private key never leaves the app in a page, a JSON answer or a log line."""

import logging

from webapp import keys
from webapp.models import Node


def test_private_key_never_in_pages_json_or_logs(app, api, auth, db, caplog):
    caplog.set_level(logging.DEBUG)
    app.logger.setLevel(logging.DEBUG)
    app.config["SQLALCHEMY_ECHO"] = True
    created = api("POST", "/api/v1/nodes", {"name": "rho", "endpoint": "203.0.113.1:56560"})
    api("POST", "/api/v1/nodes", {"name": "pi0"})
    api("POST", "/api/v1/links", {"a": "rho", "b": "pi0"})
    node = db.session.execute(db.select(Node).where(Node.name == "rho")).scalar_one()
    private = keys.decrypt_private_key(node.private_key_encrypted, app.config["SECRET_KEY"])
    answers = [created.text]
    for path in ("/api/v1/nodes", "/api/v1/nodes/rho", "/api/v1/links", "/api/v1/network"):
        answers.append(api("GET", path).text)
    for path in ("/nodes/", "/nodes/rho", "/nodes/rho/edit", "/links/", "/network/"):
        answers.append(auth.get(path).text)
    answers.append(auth.post("/nodes/rho/enrollment").text)
    for text in [*answers, caplog.text]:
        assert private not in text
    # the check can fail: the key really is in the database, just sealed
    assert keys.public_key_of(private) == node.public_key


def test_tokens_are_stored_hashed(api, api_token, db):
    from webapp.models import Token

    secret_url = api("POST", "/api/v1/nodes", {"name": "rho"}).json["enroll"]["url"]
    secret = secret_url.rsplit("/", 1)[1]
    stored = [token.token_hash for token in db.session.execute(db.select(Token)).scalars()]
    assert len(stored) == 2
    assert secret not in stored and api_token not in stored
    assert all(len(value) == 64 for value in stored)
