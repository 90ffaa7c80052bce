"""Small helpers shared by the page forms: reading text fields, showing domain refusals."""

from __future__ import annotations

from flask import flash
from flask_wtf import FlaskForm

from .errors import DomainError


def show_domain_error(form: FlaskForm, error: DomainError) -> None:
    """Attach ``error`` to the field it names, or flash it when the form has no such field."""
    field = getattr(form, error.field, None) if error.field else None
    if field is not None and hasattr(field, "errors"):
        # WTForms keeps errors as a tuple until validate() ran with a failure; make it a list.
        field.errors = [*field.errors, error.message]
    else:
        flash(error.message, "error")


def form_values(form: FlaskForm, fields: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The named text fields, stripped; a field missing from the POST reads as empty."""
    return {field: (form[field].data or "").strip() for field in fields}
