"""The network's inventory: create, change and delete nodes and links (the service layer).

Views call one function here per action. Every function validates first and raises a typed
``DomainError`` before anything is written, commits on success, and rolls back on failure, so a
refusal leaves the database as it was. Allocation is race-free: the database's unique constraints
decide, and a create that lost a race retries with the next free value.

Every write that can change a host's desired state (its HostConfig) starts its transaction with
``changes.bump_generation()`` and stamps the nodes whose HostConfig it changes with that generation
and the time; once it commits, the long-polls of exactly those nodes' agents wake up.

A write that changes the graph, a pin or the tree mode also replans in its transaction
(``planning.PlannedChange``): the planner's costs and priorities may move on other links and
nodes too, and those hosts are stamped as well. A given link cost or bridge priority *pins* it (the
planner leaves it alone); unpinning returns it to the default (100, 32768), which is what mode
"seed" uses for unpinned links and nodes.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from . import addressing, changes, keys, planning, tokens, validation
from .errors import ConflictError, NotFoundError, ValidationError
from .extensions import db
from .models import Link, Network, Node, utcnow

ALLOCATION_ATTEMPTS = 30
DEFAULT_COST = 100
DEFAULT_PRIORITY = 32768

T = TypeVar("T")


@dataclass(frozen=True)
class Enrollment:
    """A freshly issued enrollment link; ``secret`` is shown once and stored only hashed."""

    secret: str
    url: str
    command: str
    expires_at: datetime


def get_network() -> Network:
    """The installation's network, created with the seed's defaults on first use."""
    network = db.session.get(Network, 1)
    if network is None:
        network = Network(id=1)
        db.session.add(network)
        try:
            db.session.commit()
        except IntegrityError:  # another request created it first
            db.session.rollback()
            network = db.session.get(Network, 1)
    return network


def get_node(name: str) -> Node:
    """The node called ``name``, or ``NotFoundError``."""
    if "\x00" in name:  # PostgreSQL refuses NUL in text; no node can be called that anyway
        raise NotFoundError("name", "no node is called that")
    node = db.session.execute(select(Node).where(Node.name == name)).scalar_one_or_none()
    if node is None:
        raise NotFoundError("name", f"no node is called '{name}'")
    return node


def list_nodes() -> list[Node]:
    return list(db.session.execute(select(Node).order_by(Node.name)).scalars())


def list_links() -> list[Link]:
    return list(db.session.execute(select(Link).order_by(Link.vni)).scalars())


def links_of(node: Node) -> list[Link]:
    """Every link with ``node`` at either end."""
    query = select(Link).where(or_(Link.node_a_id == node.id, Link.node_b_id == node.id)).order_by(Link.vni)
    return list(db.session.execute(query).scalars())


def peers_of(node: Node) -> list[Node]:
    """The nodes ``node`` has a link to (enabled or not)."""
    return [link.peer_of(node) for link in links_of(node)]


def _begin_change() -> int:
    """Open a desired-state change: the write's first statement (see ``changes.bump_generation``)."""
    return changes.bump_generation()


def _touch(nodes: Iterable[Node], generation: int) -> None:
    """Record that these nodes' desired state changes now, in ``generation`` (committed with the write)."""
    now = utcnow()
    for node in nodes:
        node.config_changed_at = now
        node.config_generation = generation


def _with_allocation_retry(attempt: Callable[[], T]) -> T:
    """Run ``attempt`` (which adds and commits) until no unique constraint refuses it.

    Two concurrent creates may compute the same lowest free address or VNI; the database lets one
    commit and refuses the other, which then recomputes. A conflict that is not a race (a taken
    name) is raised by ``attempt`` itself as a ``ConflictError`` before it writes.
    """
    for attempt_number in range(ALLOCATION_ATTEMPTS):
        try:
            return attempt()
        except IntegrityError:
            db.session.rollback()
            # Jittered backoff: losers of one race should not collide again in lockstep.
            time.sleep(random.uniform(0, 0.002 * (attempt_number + 1)))  # noqa: S311 (not a secret)
    raise ConflictError("name", "the database stayed busy with concurrent changes; try again")


def _address_for(field: str, network: ipaddress.IPv4Network, requested: object) -> str:
    """The lowest free address of ``network`` for ``field``, or the requested one if it is free."""
    if requested in (None, ""):
        return addressing.lowest_free_address(db.session, Node.__table__.c[field.replace("_ip", "_int")], network,
                                              field=field)  # fmt: skip
    address = addressing.check_requested_address(network, requested, field=field)
    if db.session.execute(select(Node.id).where(getattr(Node, field) == address)).first():
        raise addressing.address_taken_error(field, address)
    return address


def _endpoint_fields(endpoint: object) -> tuple[str | None, int | None]:
    if endpoint is None or endpoint == "":
        return None, None
    parsed = validation.parse_endpoint(endpoint)
    return parsed.host, parsed.port


def issue_enrollment(node: Node, *, app_url: str, ttl_seconds: int) -> Enrollment:
    """A new enrollment link for ``node``; every older one stops working. Commits."""
    tokens.revoke_tokens("enrollment", node=node)
    secret, token = tokens.issue_token("enrollment", node=node, ttl=timedelta(seconds=ttl_seconds))
    db.session.commit()
    url = f"{app_url}/enroll/{secret}"
    return Enrollment(secret=secret, url=url, command=f"curl -fsSL {url} | sudo sh", expires_at=token.expires_at)


def create_node(
    *,
    name: object,
    endpoint: object = None,
    listen_port: object = None,
    location: object = None,
    bridge_priority: object = None,
    underlay_ip: object = None,
    overlay_ip: object = None,
    secret_key: str,
) -> Node:
    """A new node with a fresh key pair and the lowest free addresses (or the requested ones)."""
    network = get_network()
    name = validation.validate_node_name(name, bridge_name=network.bridge_name)
    endpoint_host, endpoint_port = _endpoint_fields(endpoint)
    port = (
        network.listen_port if listen_port in (None, "") else validation.validate_port(listen_port, field="listen_port")
    )
    location = validation.validate_location(location)
    pinned = bridge_priority not in (None, "")
    priority = validation.validate_priority(bridge_priority) if pinned else DEFAULT_PRIORITY
    underlay = ipaddress.IPv4Network(network.underlay_cidr)
    overlay = ipaddress.IPv4Network(network.overlay_cidr)
    pair = keys.generate_keypair()
    sealed = keys.encrypt_private_key(pair.private_key, secret_key)

    def attempt() -> Node:
        generation = _begin_change()
        change = planning.PlannedChange(generation)
        if db.session.execute(select(Node.id).where(Node.name == name)).first():
            raise ConflictError("name", f"a node called '{name}' already exists")
        node = Node(
            name=name,
            location=location,
            endpoint_host=endpoint_host,
            endpoint_port=endpoint_port,
            listen_port=port,
            underlay_ip=_address_for("underlay_ip", underlay, underlay_ip),
            overlay_ip=_address_for("overlay_ip", overlay, overlay_ip),
            public_key=pair.public_key,
            private_key_encrypted=sealed,
            bridge_priority=priority,
            priority_pinned=pinned,
            config_changed_at=utcnow(),
            config_generation=generation,
        )
        db.session.add(node)
        change.finish()
        db.session.commit()
        return node

    try:
        return _with_allocation_retry(attempt)
    except Exception:
        db.session.rollback()
        raise


UPDATABLE_NODE_FIELDS = frozenset(
    {"endpoint", "listen_port", "location", "bridge_priority", "priority_pinned", "underlay_ip", "overlay_ip"}
)
# Node attributes that appear in the node's own HostConfig, and those that also appear in its peers'.
HOST_CONFIG_NODE_ATTRIBUTES = frozenset(
    {"endpoint_host", "endpoint_port", "listen_port", "bridge_priority", "priority_pinned", "underlay_ip",
     "overlay_ip"}
)  # fmt: skip
# What the planner is given of a node.
PLANNED_NODE_ATTRIBUTES = frozenset({"bridge_priority", "priority_pinned"})
PEER_VISIBLE_NODE_ATTRIBUTES = frozenset({"endpoint_host", "endpoint_port", "underlay_ip"})


def update_node(node: Node, changes: dict) -> Node:
    """Apply ``changes`` (a subset of ``UPDATABLE_NODE_FIELDS``) all or nothing. Commits."""
    unknown = sorted(set(changes) - UPDATABLE_NODE_FIELDS)
    if unknown:
        field = unknown[0]
        rule = (
            "the name cannot be changed (it is an interface name on every peer)"
            if field == "name"
            else (f"unknown field; a node's changeable fields are {', '.join(sorted(UPDATABLE_NODE_FIELDS))}")
        )
        raise ValidationError(field, f"{field}: {rule}")
    network = get_network()
    values: dict = {}
    if "endpoint" in changes:
        values["endpoint_host"], values["endpoint_port"] = _endpoint_fields(changes["endpoint"])
        if values["endpoint_host"] is None:
            stranded = [link.peer_of(node).name for link in links_of(node) if not link.peer_of(node).endpoint]
            if stranded:
                raise ValidationError(
                    "endpoint",
                    f"endpoint cannot be removed: {', '.join(stranded)} also lack(s) one, so the link(s) "
                    "could not be reached from either end; delete those links first",
                )
    if "listen_port" in changes:
        values["listen_port"] = validation.validate_port(changes["listen_port"], field="listen_port")
    if "location" in changes:
        values["location"] = validation.validate_location(changes["location"])
    values.update(_priority_values(node, network, changes))
    for field, cidr in (("underlay_ip", network.underlay_cidr), ("overlay_ip", network.overlay_cidr)):
        if field in changes and changes[field] != getattr(node, field):
            values[field] = _address_for(field, ipaddress.IPv4Network(cidr), changes[field])
    changed = {attribute for attribute, value in values.items() if getattr(node, attribute) != value}
    change = None
    if changed & HOST_CONFIG_NODE_ATTRIBUTES:
        generation = _begin_change()
        if changed & PLANNED_NODE_ATTRIBUTES:
            change = planning.PlannedChange(generation)
        _touch([node, *(peers_of(node) if changed & PEER_VISIBLE_NODE_ATTRIBUTES else [])], generation)
    for attribute, value in values.items():
        setattr(node, attribute, value)
    try:
        if change is not None:
            change.finish()
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ConflictError(next(iter(values), "name"), "another change took that address first; try again") from None
    return node


def _priority_values(node: Node, network: Network, changes: dict) -> dict:
    """``bridge_priority`` pins the given priority; ``priority_pinned`` false unpins (back to the default),
    true pins the priority in effect now."""
    if "bridge_priority" in changes:
        if changes.get("priority_pinned", True) is not True:
            raise ValidationError("priority_pinned", "priority_pinned cannot be false with a bridge_priority: "
                                  "a given priority is pinned")  # fmt: skip
        return {"bridge_priority": validation.validate_priority(changes["bridge_priority"]), "priority_pinned": True}
    if "priority_pinned" not in changes:
        return {}
    if validation.validate_flag(changes["priority_pinned"], field="priority_pinned"):
        return {
            "bridge_priority": planning.effective_priority(node, network, planning.stored_plan(network)),
            "priority_pinned": True,
        }
    return {"bridge_priority": DEFAULT_PRIORITY, "priority_pinned": False}


def delete_node(node: Node) -> None:
    """Delete ``node``, its links and tokens; its addresses and VNIs become free. Commits."""
    generation = _begin_change()
    change = planning.PlannedChange(generation)
    _touch(peers_of(node), generation)
    for link in links_of(node):
        db.session.delete(link)
    db.session.delete(node)
    change.finish()
    db.session.commit()


def _ordered_pair(a: Node, b: Node) -> tuple[Node, Node]:
    return (a, b) if a.id < b.id else (b, a)


def find_link(a_name: str, b_name: str) -> Link:
    """The link between two named nodes, in either order, or ``NotFoundError``."""
    a, b = _ordered_pair(get_node(a_name), get_node(b_name))
    link = db.session.execute(select(Link).where(Link.node_a_id == a.id, Link.node_b_id == b.id)).scalar_one_or_none()
    if link is None:
        raise NotFoundError("b", f"there is no link between {a_name} and {b_name}")
    return link


def create_link(*, a: object, b: object, cost: object = None) -> Link:
    """A link between two existing nodes with the lowest free VNI. Commits."""
    network = get_network()
    a_name = validation.validate_node_name(a, field="a", bridge_name=network.bridge_name)
    b_name = validation.validate_node_name(b, field="b", bridge_name=network.bridge_name)
    if a_name == b_name:
        raise ValidationError("b", "b must be a different node from a: a link joins two nodes")
    pinned = cost not in (None, "")
    link_cost = validation.validate_cost(cost) if pinned else DEFAULT_COST
    try:
        node_a = get_node(a_name)
    except NotFoundError:
        raise NotFoundError("a", f"a: no node is called '{a_name}'") from None
    try:
        node_b = get_node(b_name)
    except NotFoundError:
        raise NotFoundError("b", f"b: no node is called '{b_name}'") from None
    if not node_a.endpoint and not node_b.endpoint:
        raise ValidationError(
            "b",
            f"neither {a_name} nor {b_name} has an endpoint, so neither can reach the other: "
            "give one of them an endpoint first",
        )
    first, second = _ordered_pair(node_a, node_b)

    def attempt() -> Link:
        generation = _begin_change()
        change = planning.PlannedChange(generation)
        exists = select(Link.id).where(Link.node_a_id == first.id, Link.node_b_id == second.id)
        if db.session.execute(exists).first():
            raise ConflictError("b", f"{a_name} and {b_name} are already linked")
        link = Link(
            node_a_id=first.id,
            node_b_id=second.id,
            vni=addressing.lowest_free_vni(db.session, Link.__table__.c.vni),
            cost=link_cost,
            cost_pinned=pinned,
        )
        db.session.add(link)
        _touch([first, second], generation)
        change.finish()
        db.session.commit()
        return link

    try:
        return _with_allocation_retry(attempt)
    except Exception:
        db.session.rollback()
        raise


LINK_FIELDS = ("cost", "cost_pinned", "enabled")


def update_link(link: Link, changes: dict) -> Link:
    """Change a link's ``cost`` (pins it), ``cost_pinned`` (false: back to derived) or ``enabled``. Commits.

    ``cost_pinned`` true without a cost pins the cost in effect now.
    """
    unknown = sorted(set(changes) - set(LINK_FIELDS))
    if unknown:
        raise ValidationError(
            unknown[0], f"{unknown[0]}: unknown field; a link's changeable fields are {', '.join(LINK_FIELDS)}"
        )
    cost, pinned = link.cost, link.cost_pinned
    if "cost" in changes:
        if changes.get("cost_pinned", True) is not True:
            raise ValidationError("cost_pinned", "cost_pinned cannot be false with a cost: a given cost is pinned")
        cost, pinned = validation.validate_cost(changes["cost"]), True
    elif "cost_pinned" in changes:
        pinned = validation.validate_flag(changes["cost_pinned"], field="cost_pinned")
        if pinned and not link.cost_pinned:
            network = get_network()
            cost = planning.effective_cost(link, network, planning.stored_plan(network))
        elif not pinned:
            cost = DEFAULT_COST
    enabled = changes.get("enabled", link.enabled)
    if not isinstance(enabled, bool):
        raise ValidationError("enabled", "enabled must be true or false")
    if (cost, pinned, enabled) != (link.cost, link.cost_pinned, link.enabled):
        generation = _begin_change()
        change = planning.PlannedChange(generation)
        _touch([link.node_a, link.node_b], generation)
        link.cost, link.cost_pinned, link.enabled = cost, pinned, enabled
        change.finish()
    db.session.commit()
    return link


def delete_link(link: Link) -> None:
    """Delete ``link``; its VNI becomes free. Commits."""
    generation = _begin_change()
    change = planning.PlannedChange(generation)
    _touch([link.node_a, link.node_b], generation)
    db.session.delete(link)
    change.finish()
    db.session.commit()


NETWORK_FIELDS = (
    "name",
    "underlay_cidr",
    "overlay_cidr",
    "bridge_name",
    "vxlan_port",
    "listen_port",
    "stp_hello_time",
    "stp_forward_delay",
    "stp_max_age",
    "report_interval",
    "tree_mode",
    "fast_failover",
)


def update_network(changes: dict) -> Network:
    """Change network settings all or nothing; a CIDR must still hold every node's address."""
    unknown = sorted(set(changes) - set(NETWORK_FIELDS))
    if unknown:
        raise ValidationError(
            unknown[0], f"{unknown[0]}: unknown field; the network's fields are {', '.join(NETWORK_FIELDS)}"
        )
    network = get_network()
    merged = {field: changes.get(field, getattr(network, field)) for field in NETWORK_FIELDS}
    values = {"name": validation.validate_network_name(merged["name"])}
    nodes = list_nodes()
    for field, attribute in (("underlay_cidr", "underlay_ip"), ("overlay_cidr", "overlay_ip")):
        cidr = validation.validate_cidr(merged[field], field=field)
        hosts = (int(cidr.network_address) + 1, int(cidr.broadcast_address) - 1)
        outside = [
            node.name
            for node in nodes
            if not hosts[0] <= int(ipaddress.IPv4Address(getattr(node, attribute))) <= hosts[1]
        ]
        if outside:
            raise ValidationError(
                field, f"{field} {cidr} has no host address for {', '.join(outside[:5])}; move them first"
            )
        values[field] = str(cidr)
    if ipaddress.IPv4Network(values["underlay_cidr"]).overlaps(ipaddress.IPv4Network(values["overlay_cidr"])):
        raise ValidationError("overlay_cidr", "overlay_cidr must not overlap underlay_cidr")
    values["bridge_name"] = validation.validate_interface_name(merged["bridge_name"], field="bridge_name")
    if any(node.name == values["bridge_name"] for node in nodes):
        raise ValidationError("bridge_name", f"bridge_name '{values['bridge_name']}' is already a node's name")
    values["vxlan_port"] = validation.validate_port(merged["vxlan_port"], field="vxlan_port")
    values["listen_port"] = validation.validate_port(merged["listen_port"], field="listen_port")
    (values["stp_hello_time"], values["stp_forward_delay"], values["stp_max_age"]) = validation.validate_stp_timers(
        merged["stp_hello_time"], merged["stp_forward_delay"], merged["stp_max_age"]
    )
    values["report_interval"] = validation.validate_int_range(
        merged["report_interval"], field="report_interval", low=2, high=3600, unit="seconds"
    )
    values["tree_mode"] = validation.validate_tree_mode(merged["tree_mode"])
    values["fast_failover"] = validation.validate_flag(merged["fast_failover"], field="fast_failover")
    if any(getattr(network, attribute) != value for attribute, value in values.items()):
        generation = _begin_change()
        change = planning.PlannedChange(generation) if values["tree_mode"] != network.tree_mode else None
        db.session.execute(db.update(Node).values(config_changed_at=utcnow(), config_generation=generation))
        for attribute, value in values.items():
            setattr(network, attribute, value)
        if change is not None:
            change.finish()
    db.session.commit()
    return network


# --- key rotation ------------------------------------------------------------------------------
# The host makes its new key pair itself (a private key leaves the app only in a setup script):
# the admin requests a rotation, the node's HostConfig carries a nonce, its agent answers with the
# new public key and that nonce, and from then on the app knows only the public half.

ROTATION_NONCE_BYTES = 16


def request_key_rotation(node: Node) -> Node:
    """Ask ``node``'s agent for a new key pair; a rotation already pending stays as it is. Commits."""
    generation = _begin_change()
    db.session.refresh(node)  # under the change lock: see a rotation another request just asked for
    if node.key_rotation_nonce is not None:
        db.session.rollback()
        return node
    node.key_rotation_nonce = secrets.token_hex(ROTATION_NONCE_BYTES)
    node.key_rotation_requested_at = utcnow()
    _touch([node], generation)
    db.session.commit()
    return node


def validate_new_public_key(value: object, *, field: str = "public_key") -> str:
    """A WireGuard public key in ``wg``'s canonical base64, not the all-zero key."""
    key = keys.validate_public_key(value, field=field)
    raw = base64.b64decode(key)  # checked just above
    if base64.b64encode(raw).decode() != key:
        raise ValidationError(field, f"{field} must be canonical base64 (as `wg pubkey` prints it)")
    if raw == bytes(32):
        raise ValidationError(field, f"{field} must not be the all-zero key")
    return key


def _validate_nonce(value: object) -> str:
    width = 2 * ROTATION_NONCE_BYTES
    if not isinstance(value, str) or len(value) != width or any(c not in "0123456789abcdef" for c in value):
        raise ValidationError("nonce", f"nonce must be the {width} lower-case hex digits of the config's key_rotation")
    return value


def accept_rotated_key(node: Node, *, public_key: object, nonce: object) -> Node:
    """Store the public key ``node``'s agent made for the pending rotation ``nonce``. Commits.

    The app forgets the node's old private key (it never learns the new one), the rotation is no
    longer pending, and the node's peers get the new key in their HostConfig. Sending the node's
    current key again after the rotation completed is accepted and changes nothing (a retry).
    """
    key = validate_new_public_key(public_key)
    nonce = _validate_nonce(nonce)
    try:
        generation = _begin_change()
        db.session.refresh(node)
        pending = node.key_rotation_nonce
        if pending is None:
            if node.public_key == key:
                db.session.rollback()
                return node
            raise ConflictError("nonce", "no key rotation is pending for this node")
        if not secrets.compare_digest(nonce, pending):
            raise ConflictError("nonce", "nonce does not match the pending key rotation; fetch the config again")
        if key == node.public_key:
            raise ConflictError("public_key", "public_key must be a new key, not the node's current one")
        if db.session.execute(select(Node.id).where(Node.public_key == key, Node.id != node.id)).first():
            raise ConflictError("public_key", "public_key is already another node's key")
        node.public_key = key
        node.private_key_encrypted = None
        node.key_rotation_nonce = None
        node.key_rotation_requested_at = None
        _touch([node, *peers_of(node)], generation)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ConflictError("public_key", "public_key is already another node's key") from None
    except Exception:
        db.session.rollback()
        raise
    return node


def install_fresh_key_pair(node: Node, *, secret_key: str) -> str:
    """Give ``node`` a new key pair made here (enrollment of a node whose private key the app lost).

    Returns the private key for the setup script. Does not commit: the enrollment commits it with
    the agent token it issues. A pending rotation is dropped (the host gets a new key anyway).
    """
    generation = _begin_change()
    pair = keys.generate_keypair()
    node.public_key = pair.public_key
    node.private_key_encrypted = keys.encrypt_private_key(pair.private_key, secret_key)
    node.key_rotation_nonce = None
    node.key_rotation_requested_at = None
    _touch([node, *peers_of(node)], generation)
    return pair.private_key
