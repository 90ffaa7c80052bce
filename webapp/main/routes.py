"""Home page and error handlers (HTML for pages, JSON for the API)."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_login import login_required
from werkzeug.exceptions import HTTPException

from . import bp


@bp.route("/")
@login_required
def index():
    return redirect(url_for("nodes.list_nodes"))


def _wants_json() -> bool:
    return request.path.startswith("/api/")


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    """Every HTTP error as a page, or as ``{"error", "field"}`` under /api/."""
    if _wants_json():
        return {"error": error.description, "field": ""}, error.code
    if request.path.startswith("/enroll/"):
        # Hosts get nothing but the status for unknown tokens: no page, no hint.
        return "", error.code
    return render_template("main/error.html", error=error), error.code
