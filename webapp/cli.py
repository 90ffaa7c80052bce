"""``flask --app wsgi admin …``: create administrators and API tokens from the shell."""

from __future__ import annotations

import click
from flask import Blueprint

from . import accounts
from .errors import DomainError

bp = Blueprint("admin", __name__, cli_group="admin")


# The password is read by click from PRIVNET_ADMIN_PASSWORD, or asked for (never an argument
# on the command line, where other users could read it in the process list).
PASSWORD_ENV = "PRIVNET_ADMIN_PASSWORD"  # noqa: S105 (a variable name, not a password)


@bp.cli.command("create")
@click.argument("name")
@click.password_option("--password", envvar=PASSWORD_ENV, hidden=True)
def create_admin_command(name: str, password: str) -> None:
    """Create admin NAME; the password comes from PRIVNET_ADMIN_PASSWORD or a prompt."""
    try:
        accounts.create_admin(name, password)
    except DomainError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"admin '{name}' created")


@bp.cli.command("token")
@click.argument("name")
def token_command(name: str) -> None:
    """Print a new API token for admin NAME (shown once, stored hashed)."""
    try:
        click.echo(accounts.issue_admin_token(name))
    except DomainError as error:
        raise click.ClickException(error.message) from None


@bp.cli.command("ensure")
@click.argument("name")
@click.option("--password", envvar=PASSWORD_ENV, default=None, hidden=True)
def ensure_admin_command(name: str, password: str | None) -> None:
    """Create admin NAME with a random password if there is no admin at all; print how to log in."""
    if accounts.admin_count():
        click.echo("an admin exists already: log in with your password")
        return
    password = password or accounts.random_password()
    accounts.create_admin(name, password)
    click.echo(f"created admin '{name}' with password: {password}")
    click.echo("log in at /login and change it with: flask --app wsgi admin password " + name)


@bp.cli.command("password")
@click.argument("name")
@click.password_option("--password", envvar=PASSWORD_ENV, hidden=True, prompt="New password")
def password_command(name: str, password: str) -> None:
    """Set a new password for admin NAME (from PRIVNET_ADMIN_PASSWORD or a prompt)."""
    try:
        accounts.set_admin_password(name, password)
    except DomainError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"password of '{name}' changed")
