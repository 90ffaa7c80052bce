"""Who may call the API: an admin's bearer token, or a logged-in browser session with CSRF."""

from __future__ import annotations

from functools import wraps

from flask import g, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms.validators import ValidationError as CSRFValidationError

from .. import accounts

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    return secret.strip() if scheme.lower() == "bearer" and secret.strip() else None


def _refuse(message: str, status: int = 401):
    return {"error": message, "field": "Authorization"}, status, {"WWW-Authenticate": "Bearer"}


def admin_required(view):
    """Let the view run for a live admin token, or for a session that passed the CSRF check."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        secret = bearer_token()
        if secret is not None:
            user = accounts.user_of_api_token(secret)
            if user is None:
                return _refuse("the bearer token is unknown or revoked")
            g.api_user = user
            return view(*args, **kwargs)
        if not current_user.is_authenticated:
            return _refuse("authentication required: send Authorization: Bearer <admin token>")
        if request.method in UNSAFE_METHODS:
            # A session rides along on cross-site requests, so writes need the page's CSRF token.
            try:
                validate_csrf(request.headers.get("X-CSRFToken"))
            except (CSRFError, CSRFValidationError):
                return {
                    "error": "a session-authenticated write needs the X-CSRFToken header",
                    "field": "X-CSRFToken",
                }, 400
        g.api_user = current_user
        return view(*args, **kwargs)

    return wrapped
