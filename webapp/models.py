"""Database models: the network, its nodes and links, users and tokens."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db


class UTCDateTime(db.TypeDecorator):
    """A timezone-aware datetime; SQLite drops the zone, so it is put back as UTC on load."""

    impl = db.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime stored; use webapp.models.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    """Timezone-aware now; stored as UTC on every backend."""
    return datetime.now(UTC)


TREE_MODES = ("latency", "seed")


class Network(db.Model):
    """The one network an installation manages (row id 1)."""

    __tablename__ = "network"
    __table_args__ = (CheckConstraint("tree_mode IN ('latency', 'seed')", name="tree_mode_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(db.String(64), default="privnet")
    underlay_cidr: Mapped[str] = mapped_column(db.String(43), default="10.88.88.0/24")
    overlay_cidr: Mapped[str] = mapped_column(db.String(43), default="10.99.99.0/24")
    bridge_name: Mapped[str] = mapped_column(db.String(15), default="internet")
    vxlan_port: Mapped[int] = mapped_column(default=4789)
    listen_port: Mapped[int] = mapped_column(default=56560)
    # STP timers in seconds. Kernel floors: hello 1, max age 6, forward delay 2.
    stp_hello_time: Mapped[int] = mapped_column(default=1)
    stp_forward_delay: Mapped[int] = mapped_column(default=2)
    stp_max_age: Mapped[int] = mapped_column(default=6)
    report_interval: Mapped[int] = mapped_column(default=10)
    # Desired-state changes so far: bumped (under this row's lock) by every inventory write that can
    # change a host's HostConfig, in that write's transaction; see webapp.changes.
    generation: Mapped[int] = mapped_column(default=0, server_default="0")
    # How the spanning tree is chosen: "latency" (privnet's planner sets the costs and priorities of
    # what the admin did not pin, from the agents' RTTs) or "seed" (each link's and node's own values).
    tree_mode: Mapped[str] = mapped_column(db.String(16), default="latency", server_default="latency")
    # The agents take a silent peer's port out of the bridge within about a second (and keep a new
    # link's port out until its peer answers); off, a dead tunnel is left to STP's max age.
    fast_failover: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # The latest plan (JSON of TreePlan.to_dict()), kept so hysteresis works across requests and
    # workers, and the measurements it was planned from (JSON), so a report can tell whether its
    # measurements moved. Deferred: large, and most pages need neither.
    plan: Mapped[str | None] = mapped_column(db.Text, deferred=True)
    plan_inputs: Mapped[str | None] = mapped_column(db.Text, deferred=True)
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Node(db.Model):
    """A host of the network."""

    __tablename__ = "node"
    __table_args__ = (
        CheckConstraint("bridge_priority >= 0 AND bridge_priority <= 61440", name="bridge_priority_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(db.String(15), unique=True)
    location: Mapped[str] = mapped_column(db.String(120), default="")
    endpoint_host: Mapped[str | None] = mapped_column(db.String(253))
    endpoint_port: Mapped[int | None]
    listen_port: Mapped[int]
    underlay_ip: Mapped[str] = mapped_column(db.String(39), unique=True)
    overlay_ip: Mapped[str] = mapped_column(db.String(39), unique=True)
    # The same addresses as integers, kept in step by ``_address_as_int``: indexed, so the
    # database finds the lowest free address without loading every used one.
    # (Nullable in the schema only so SQLite could add them without copying the node table.)
    underlay_int: Mapped[int | None] = mapped_column(db.BigInteger, index=True, unique=True)
    overlay_int: Mapped[int | None] = mapped_column(db.BigInteger, index=True, unique=True)
    public_key: Mapped[str] = mapped_column(db.String(44), unique=True)
    # None once the host made its own key pair (key rotation): the app then knows only the public half.
    private_key_encrypted: Mapped[bytes | None] = mapped_column(db.LargeBinary)
    bridge_priority: Mapped[int] = mapped_column(default=32768)
    # The admin set bridge_priority: used as is in both tree modes (else the planner's, in "latency").
    priority_pinned: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When, and in which network generation, this node's desired state (its HostConfig) last
    # changed: "behind since" on the pages; whose long-polls a change wakes (webapp.changes).
    config_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    config_generation: Mapped[int] = mapped_column(default=0, server_default="0", index=True)
    # A pending key rotation: the nonce the host's agent must send back with its new public key.
    key_rotation_nonce: Mapped[str | None] = mapped_column(db.String(32))
    key_rotation_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tokens: Mapped[list[Token]] = relationship(back_populates="node", cascade="all, delete-orphan")

    @property
    def endpoint(self) -> str | None:
        """``host:port`` as WireGuard wants it (IPv6 hosts bracketed), or None."""
        if not self.endpoint_host:
            return None
        host = f"[{self.endpoint_host}]" if ":" in self.endpoint_host else self.endpoint_host
        return f"{host}:{self.endpoint_port}"

    @validates("underlay_ip", "overlay_ip")
    def _address_as_int(self, key: str, address: str) -> str:
        setattr(self, key.replace("_ip", "_int"), int(ipaddress.IPv4Address(address)))
        return address

    def __repr__(self) -> str:
        return f"<Node {self.name}>"


class Link(db.Model):
    """A virtual wire between two nodes; stored with ``node_a_id < node_b_id``."""

    __tablename__ = "link"
    __table_args__ = (
        UniqueConstraint("node_a_id", "node_b_id", name="uq_link_pair"),
        CheckConstraint("node_a_id < node_b_id", name="ordered_pair"),
        CheckConstraint("vni >= 1 AND vni <= 16777215", name="vni_range"),
        CheckConstraint("cost >= 1 AND cost <= 65535", name="cost_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    node_a_id: Mapped[int] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"), index=True)
    node_b_id: Mapped[int] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"), index=True)
    vni: Mapped[int] = mapped_column(unique=True)
    cost: Mapped[int] = mapped_column(default=100)
    # The admin set cost: used as is in both tree modes (else the planner's, in "latency").
    cost_pinned: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    node_a: Mapped[Node] = relationship(foreign_keys=[node_a_id])
    node_b: Mapped[Node] = relationship(foreign_keys=[node_b_id])

    def peer_of(self, node: Node) -> Node:
        """The other end of this link, seen from ``node``."""
        return self.node_b if node.id == self.node_a_id else self.node_a

    def __repr__(self) -> str:
        return f"<Link {self.node_a.name}-{self.node_b.name} vni={self.vni}>"


class User(UserMixin, db.Model):
    """An administrator."""

    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(db.String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(db.String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def set_password(self, password: str, method: str = "scrypt") -> None:
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class Token(db.Model):
    """A bearer secret, stored only as its SHA-256 hash.

    ``kind`` is ``admin`` (API, belongs to a user), ``enrollment`` (fetches one node's setup
    script, expires) or ``agent`` (a host's agent reports and fetches its config).
    """

    __tablename__ = "token"
    __table_args__ = (CheckConstraint("kind IN ('admin', 'enrollment', 'agent')", name="kind_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(db.String(16))
    token_hash: Mapped[str] = mapped_column(db.String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[int | None] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    node: Mapped[Node | None] = relationship(back_populates="tokens")
    user: Mapped[User | None] = relationship()


class NodeReport(db.Model):
    """The latest report each node's agent posted, as validated JSON, with when it arrived."""

    __tablename__ = "node_report"

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"), unique=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[str] = mapped_column(db.Text)
    # The HostConfig version the host said it runs (the payload's config_version), for sync status.
    config_version: Mapped[str | None] = mapped_column(db.String(64))

    node: Mapped[Node] = relationship()


class TopologyChange(db.Model):
    """One change a node saw between two reports (root, root port, a port's state): the timeline."""

    __tablename__ = "topology_change"

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    kind: Mapped[str] = mapped_column(db.String(32))
    port: Mapped[str | None] = mapped_column(db.String(15))
    old: Mapped[str | None] = mapped_column(db.String(32))
    new: Mapped[str | None] = mapped_column(db.String(32))

    node: Mapped[Node] = relationship()
