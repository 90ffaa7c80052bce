"""Typed errors raised by the domain modules; views turn them into messages."""

from __future__ import annotations


class DomainError(Exception):
    """A refusal that names the offending field and the rule it broke."""

    status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"error": self.message, "field": self.field}


class ValidationError(DomainError):
    """The value breaks a syntactic or range rule."""

    status = 400


class ConflictError(DomainError):
    """The value is valid but clashes with what is stored (taken address, duplicate link)."""

    status = 409


class NotFoundError(DomainError):
    """The named node, link or token does not exist."""

    status = 404


class AllocationExhaustedError(DomainError):
    """No free address or VNI is left."""

    status = 409


class UnauthorizedError(DomainError):
    """The credentials are missing, unknown or no longer valid."""

    status = 401
