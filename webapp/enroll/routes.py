"""``GET /enroll/<token>`` (the setup script) and ``/enroll/<token>/qr.svg``; 404 for bad tokens."""

from __future__ import annotations

from flask import Response, abort, current_app

from .. import enrollment
from ..errors import NotFoundError
from . import bp

NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@bp.get("/<token>")
def setup_script(token: str):
    try:
        script = enrollment.setup_script_for(
            token, app_url=current_app.config["PRIVNET_URL"], secret_key=current_app.config["SECRET_KEY"]
        )
    except NotFoundError:
        abort(404)
    return Response(script, mimetype="text/x-shellscript", headers=NO_STORE)


@bp.get("/<token>/qr.svg")
def qr_code(token: str):
    try:
        svg = enrollment.enrollment_qr_svg(token, app_url=current_app.config["PRIVNET_URL"])
    except NotFoundError:
        abort(404)
    return Response(svg, mimetype="image/svg+xml", headers=NO_STORE)
