"""A stand-in for privnet's app, just enough of design.md §4 for the lab's own tests.

Serves `wsgi:app` like the real one: `flask --app wsgi db upgrade | admin create NAME | admin
token NAME`, the admin API calls the lab makes, and `/enroll/<token>` with a setup script that
records what it was given in /etc/privnet and leaves a stand-in agent (`sleep`) running. State is a
JSON file next to the SQLite path of DATABASE_URL (gunicorn runs several workers).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shlex
from pathlib import Path

import click
from flask import Flask, Response, abort, jsonify, request

app = Flask(__name__)
STORE = Path(os.environ["DATABASE_URL"].removeprefix("sqlite:///") + ".json")
APP_URL = os.environ["PRIVNET_URL"]


@contextlib.contextmanager
def store():
    """The whole database, locked for the duration of the block and saved after it."""
    with open(STORE.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(STORE.read_text())
        yield data
        STORE.write_text(json.dumps(data))


def error(status: int, message: str, field: str):
    return jsonify(error=message, field=field), status


def require_admin() -> None:
    header = request.headers.get("Authorization", "")
    with store() as data:
        if header.removeprefix("Bearer ") not in data["tokens"]:
            abort(401)


def new_enrollment(data: dict, name: str) -> dict:
    token = secrets.token_urlsafe(16)
    data["enrollments"] = {key: value for key, value in data["enrollments"].items() if value != name}
    data["enrollments"][token] = name
    url = f"{APP_URL}/enroll/{token}"
    return {"url": url, "command": f"curl -fsSL {url} | sudo sh", "expires_at": "2099-01-01T00:00:00Z"}


@app.cli.group("db")
def db_group() -> None:
    """Database commands."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    empty = {"admins": {}, "tokens": [], "nodes": {}, "links": [], "network": {}, "enrollments": {}}
    STORE.write_text(json.dumps(empty))


@app.cli.group("admin")
def admin_group() -> None:
    """Admin commands."""


@admin_group.command("create")
@click.argument("name")
def admin_create(name: str) -> None:
    with store() as data:
        data["admins"][name] = os.environ["PRIVNET_ADMIN_PASSWORD"]
    click.echo(f"admin '{name}' created")


@admin_group.command("token")
@click.argument("name")
def admin_token(name: str) -> None:
    token = secrets.token_urlsafe(24)
    with store() as data:
        if name not in data["admins"]:
            raise click.ClickException("no such admin")
        data["tokens"].append(token)
    click.echo(token)


@app.get("/login")
def login():
    return "login page"


@app.patch("/api/v1/network")
def patch_network():
    require_admin()
    with store() as data:
        data["network"].update(request.get_json())
        return jsonify(data["network"])


@app.post("/api/v1/nodes")
def create_node():
    require_admin()
    body = request.get_json()
    with store() as data:
        if body["name"] in data["nodes"]:
            return error(409, "a node with this name exists", "name")
        number = len(data["nodes"]) + 1
        node = {
            "name": body["name"],
            "underlay_ip": f"10.88.88.{number}",
            "overlay_ip": f"10.99.99.{number}",
            "public_key": "fake",
            "listen_port": body.get("listen_port", 56560),
            "endpoint": body.get("endpoint"),
            "location": body.get("location"),
        }
        data["nodes"][node["name"]] = node
        return jsonify(node | {"enroll": new_enrollment(data, node["name"])}), 201


@app.post("/api/v1/nodes/<name>/enrollment")
def reenroll(name: str):
    require_admin()
    with store() as data:
        if name not in data["nodes"]:
            return error(404, "no such node", "name")
        return jsonify(new_enrollment(data, name)), 201


@app.post("/api/v1/links")
def create_link():
    require_admin()
    body = request.get_json()
    with store() as data:
        link = {"a": body["a"], "b": body["b"], "vni": len(data["links"]) + 1, "cost": body.get("cost", 100)}
        data["links"].append(link)
        return jsonify(link), 201


@app.get("/api/v1/nodes")
def list_nodes():
    require_admin()
    with store() as data:
        return jsonify(list(data["nodes"].values()))


@app.get("/enroll/<token>")
def enroll(token: str):
    with store() as data:
        name = data["enrollments"].get(token)
        if name is None:
            abort(404)
        config = {
            "node": data["nodes"][name],
            "links": [link for link in data["links"] if name in (link["a"], link["b"])],
            "network": data["network"],
        }
    script = f"""#!/bin/sh
set -eu
[ "$(id -u)" = 0 ] || {{ echo "run me as root" >&2; exit 1; }}
mkdir -p /etc/privnet
printf '%s\\n' {shlex.quote(json.dumps(config))} > /etc/privnet/config.json
if [ -d /run/systemd/system ]; then echo systemd; else echo none; fi > /etc/privnet/init
runs=$(cat /etc/privnet/runs 2>/dev/null || echo 0)
echo $((runs + 1)) > /etc/privnet/runs
nohup sleep 600 >/dev/null 2>&1 &
echo "enrolled {name}"
"""
    return Response(script, mimetype="text/x-shellscript")
