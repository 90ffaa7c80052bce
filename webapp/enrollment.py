"""Enrollment: a valid enrollment token buys the node's setup script, once per fetch.

Each fetch issues the host a new agent token (revoking older ones, since the script overwrites
``/etc/privnet/agent.token``) and marks the node enrolled. Unknown, revoked or expired tokens
yield nothing, so the view can answer a bare 404.
"""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg

from . import inventory, keys, planning, tokens
from .errors import NotFoundError
from .extensions import db
from .hostconfig import build_host_config
from .models import Node, utcnow
from .rendering import render_setup_script


def node_of_enrollment(secret: str) -> Node:
    """The node a live enrollment token belongs to, or ``NotFoundError``."""
    token = tokens.find_valid_token(secret, "enrollment")
    if token is None or token.node is None:
        raise NotFoundError("token", "unknown, revoked or expired enrollment token")
    return token.node


def setup_script_for(secret: str, *, app_url: str, secret_key: str) -> str:
    """The setup script of the token's node, with its private key and a fresh agent token.

    A node whose host made its own key pair (key rotation) has no private key here: it gets a
    fresh pair now, in the same transaction, and its peers follow through their agents.
    """
    node = node_of_enrollment(secret)
    if node.private_key_encrypted is None:
        private_key = inventory.install_fresh_key_pair(node, secret_key=secret_key)
    else:
        private_key = keys.decrypt_private_key(node.private_key_encrypted, secret_key)
    network = inventory.get_network()
    config = build_host_config(node, network, inventory.links_of(node), app_url, plan=planning.stored_plan(network))
    tokens.revoke_tokens("agent", node=node)
    agent_token, _ = tokens.issue_token("agent", node=node)
    script = render_setup_script(config, private_key=private_key, agent_token=agent_token)
    node.enrolled_at = utcnow()
    db.session.commit()
    return script


def enrollment_qr_svg(secret: str, *, app_url: str) -> str:
    """An SVG QR code of the ``curl … | sudo sh`` command for a live enrollment token."""
    node_of_enrollment(secret)
    command = f"curl -fsSL {app_url}/enroll/{secret} | sudo sh"
    image = qrcode.make(command, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()
