"""Agent-facing API, with the node's agent token: reports in, desired config out, rotated keys in."""

from __future__ import annotations

import re
from functools import wraps

from flask import current_app, g, request

from .. import changes, inventory, liveconfig, monitoring, tokens
from ..errors import UnauthorizedError, ValidationError
from ..models import Node
from . import bp
from .auth import bearer_token
from .routes import json_object

# A report of a full bridge (1,024 ports) and 4,096 peers stays well under this.
MAX_REPORT_BYTES = 1024 * 1024


def agent_required(view):
    """Let the view run for a live agent token; ``g.node`` is the node it belongs to."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        token = tokens.find_valid_token(bearer_token(), "agent")
        if token is None or token.node is None:
            return {"error": "a valid agent token is required", "field": "Authorization"}, 401
        g.node = token.node
        return view(*args, **kwargs)

    return wrapped


@bp.post("/agent/report")
@agent_required
def agent_report():
    if request.content_length is not None and request.content_length > MAX_REPORT_BYTES:
        return {"error": f"a report must be at most {MAX_REPORT_BYTES} bytes", "field": "body"}, 413
    body = request.get_json(silent=True)
    if body is None:
        raise ValidationError("body", "the report must be a JSON object (Content-Type: application/json)")
    events = monitoring.record_report(g.node, body)
    return {"accepted": True, "changes": [event.to_dict() for event in events]}, 202


# One entity tag as our ETag header gives it (a weak one, as some proxies rewrite it, is accepted).
ENTITY_TAG = re.compile(r'(?:W/)?"([0-9a-f]{1,64})"')


def _known_version() -> str | None:
    header = request.headers.get("If-None-Match")
    if header is None:
        return None
    match = ENTITY_TAG.fullmatch(header.strip())
    if match is None:
        raise ValidationError(
            "If-None-Match", 'If-None-Match must be one entity tag, "<config version>", as the ETag header gave it'
        )
    return match.group(1)


@bp.get("/agent/config")
@agent_required
def agent_config():
    """The host's HostConfig; with ``If-None-Match`` of the current version, wait for a new one."""
    wait = liveconfig.validate_wait(request.args.get("wait"))
    known = _known_version()
    secret = bearer_token()

    def load_node() -> Node:
        token = tokens.find_valid_token(secret, "agent")
        if token is None or token.node is None:
            raise UnauthorizedError("Authorization", "a valid agent token is required")
        return token.node

    app_url = current_app.config["PRIVNET_URL"]
    config = liveconfig.wait_for_config(
        g.node.id, load_node, known, app_url=app_url, timeout=wait, notifier=changes.notifier()
    )
    if config is None:
        return "", 304, {"ETag": f'"{known}"', "Cache-Control": "no-store"}
    return {"config": config.to_dict()}, 200, {"ETag": f'"{config.version}"', "Cache-Control": "no-store"}


@bp.post("/agent/public-key")
@agent_required
def agent_public_key():
    """The public half of the key pair the host made for the pending rotation."""
    body = json_object(frozenset({"public_key", "nonce"}))
    for field in ("public_key", "nonce"):
        if field not in body:
            raise ValidationError(field, f"{field} is required")
    node = inventory.accept_rotated_key(g.node, public_key=body["public_key"], nonce=body["nonce"])
    return {"name": node.name, "public_key": node.public_key}
