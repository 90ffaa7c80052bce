"""API v1 views: parse JSON, call one inventory (or planning) function, answer JSON."""

from __future__ import annotations

from flask import current_app, request

from .. import inventory, liveconfig, monitoring, planning
from ..errors import DomainError, ValidationError
from ..models import Link, Node
from . import bp
from .auth import admin_required
from .serializers import enrollment_to_json, link_to_json, network_to_json, node_to_json, plan_to_json

NODE_CREATE_FIELDS = frozenset(
    {"name", "endpoint", "listen_port", "location", "bridge_priority", "underlay_ip", "overlay_ip"}
)
LINK_CREATE_FIELDS = frozenset({"a", "b", "cost"})


@bp.errorhandler(DomainError)
def domain_error(error: DomainError):
    return error.as_dict(), error.status


def json_object(allowed: frozenset[str] | None = None) -> dict:
    """The request body as a JSON object, refusing other shapes and (if given) unknown fields."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("body", "the request body must be a JSON object (Content-Type: application/json)")
    if allowed is not None:
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ValidationError(unknown[0], f"{unknown[0]}: unknown field; allowed: {', '.join(sorted(allowed))}")
    return body


def _node_json(node: Node) -> dict:
    network = inventory.get_network()
    facts = planning.node_facts(node, network, planning.stored_plan(network))
    return node_to_json(node, liveconfig.sync_status(node, current_app.config["PRIVNET_URL"]), facts)


def _links_json(links: list[Link]) -> list[dict]:
    network = inventory.get_network()
    plan = planning.stored_plan(network)
    return [link_to_json(link, planning.link_facts(link, network, plan)) for link in links]


def _link_json(link: Link) -> dict:
    return _links_json([link])[0]


def _enroll(node) -> dict:
    enrollment = inventory.issue_enrollment(
        node, app_url=current_app.config["PRIVNET_URL"], ttl_seconds=current_app.config["PRIVNET_ENROLLMENT_TTL"]
    )
    return enrollment_to_json(enrollment)


@bp.get("/nodes")
@admin_required
def list_nodes():
    statuses = liveconfig.sync_statuses(current_app.config["PRIVNET_URL"])
    network = inventory.get_network()
    plan = planning.stored_plan(network)
    return {
        "nodes": [
            node_to_json(node, statuses[node.name], planning.node_facts(node, network, plan))
            for node in inventory.list_nodes()
        ]
    }


@bp.post("/nodes")
@admin_required
def create_node():
    body = json_object(NODE_CREATE_FIELDS)
    node = inventory.create_node(name=body.pop("name", None), **body, secret_key=current_app.config["SECRET_KEY"])
    return {**_node_json(node), "enroll": _enroll(node)}, 201


@bp.get("/nodes/<name>")
@admin_required
def show_node(name: str):
    return _node_json(inventory.get_node(name))


@bp.patch("/nodes/<name>")
@admin_required
def update_node(name: str):
    node = inventory.get_node(name)
    return _node_json(inventory.update_node(node, json_object()))


@bp.delete("/nodes/<name>")
@admin_required
def delete_node(name: str):
    inventory.delete_node(inventory.get_node(name))
    return "", 204


@bp.post("/nodes/<name>/enrollment")
@admin_required
def issue_enrollment(name: str):
    return _enroll(inventory.get_node(name)), 201


@bp.post("/nodes/<name>/rotate-key")
@admin_required
def rotate_key(name: str):
    """Ask the node's agent for a new key pair; 202: the host does the rest."""
    return _node_json(inventory.request_key_rotation(inventory.get_node(name))), 202


@bp.get("/links")
@admin_required
def list_links():
    return {"links": _links_json(inventory.list_links())}


@bp.post("/links")
@admin_required
def create_link():
    body = json_object(LINK_CREATE_FIELDS)
    if "a" not in body or "b" not in body:
        missing = "a" if "a" not in body else "b"
        raise ValidationError(missing, f"{missing} is required: a link joins nodes a and b")
    return _link_json(inventory.create_link(**body)), 201


@bp.get("/links/<a>/<b>")
@admin_required
def show_link(a: str, b: str):
    return _link_json(inventory.find_link(a, b))


@bp.patch("/links/<a>/<b>")
@admin_required
def update_link(a: str, b: str):
    link = inventory.find_link(a, b)
    return _link_json(inventory.update_link(link, json_object()))


@bp.delete("/links/<a>/<b>")
@admin_required
def delete_link(a: str, b: str):
    inventory.delete_link(inventory.find_link(a, b))
    return "", 204


@bp.get("/network")
@admin_required
def show_network():
    return network_to_json(inventory.get_network())


@bp.patch("/network")
@admin_required
def update_network():
    return network_to_json(inventory.update_network(json_object()))


@bp.get("/topology")
@admin_required
def show_topology():
    return monitoring.current_topology().to_dict()


@bp.get("/plan")
@admin_required
def show_plan():
    """The tree mode, the plan in effect and the measurements the agents report now."""
    return plan_to_json(planning.plan_status(inventory.get_network()))


@bp.post("/plan")
@admin_required
def force_replan():
    """Replan now (in mode "latency"), whatever the throttle says; answers like GET."""
    json_body = request.get_json(silent=True)
    if json_body not in (None, {}):
        raise ValidationError("body", "POST /api/v1/plan takes no fields")
    planning.replan()
    return plan_to_json(planning.plan_status(inventory.get_network()))
