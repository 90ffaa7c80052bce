"""Host-facing enrollment: the setup script and its QR code, behind an enrollment token."""

from flask import Blueprint

bp = Blueprint("enroll", __name__, url_prefix="/enroll")

from . import routes  # noqa: E402,F401
