"""Agent-facing API: reports in (and, later, desired config out), with the node's agent token."""

from __future__ import annotations

from functools import wraps

from flask import g, request

from .. import monitoring, tokens
from ..errors import ValidationError
from . import bp
from .auth import bearer_token

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
