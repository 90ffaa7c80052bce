"""The topology as plain text for terminals: ``flask topology show`` and the page's no-JS view.

Per node it prints the bridge and its ports laid out like ``brctl showstp`` (port ids in hex, as
``brctl`` and ``ip -d link`` print them), so it can be read side by side with the host's own output.
"""

from __future__ import annotations

from datetime import datetime

from ..topology import LinkView, NodeView, Topology

_STP_STATES = {0: "off", 1: "kernel", 2: "user space"}
_LABEL = 20
_VALUE = 18
_LABEL2 = 14
_VALUE2 = 12


def render_topology_text(topology: Topology, now: datetime | None = None) -> str:
    """Root, links with their state, stale nodes, disagreements, then every node's showstp table."""
    lines = [f"root: {_root_line(topology)}", "", f"links ({len(topology.links)}):"]
    width = max((len(_pair(link)) for link in topology.links), default=0)
    lines += [f"  {_pair(link).ljust(width)}  {_link_facts(link)}" for link in topology.links] or ["  none"]
    lines += ["", f"stale nodes: {_stale_line(topology, now)}", f"disagreements: {_disagreement_line(topology)}"]
    for node in topology.nodes:
        lines += ["", *render_node_text(node, now).splitlines()]
    return "\n".join(lines) + "\n"


def render_node_text(node: NodeView, now: datetime | None = None) -> str:
    """One node: a heading, then its bridge and ports as ``brctl showstp`` lays them out."""
    status = ["root"] if node.is_root else []
    status.append("stale" if node.stale else "fresh")
    status.append(f"last report {_when(node.last_report_at, now)}" if node.last_report_at else "never reported")
    lines = [f"== {node.name} ({', '.join(status)})"]
    if node.last_report_at is None:
        return "\n".join(lines)
    bridge = node.bridge
    if bridge is None:
        lines.append("no bridge: the host reports none")
        return "\n".join(lines)
    root_port = str(bridge.root_port)
    root_port_name = next((port.name for port in node.ports if port.port_no == bridge.root_port), None)
    if root_port_name:
        root_port += f" ({root_port_name})"
    flags = [
        flag
        for flag, on in (
            ("TOPOLOGY_CHANGE", bridge.topology_change),
            ("TOPOLOGY_CHANGE_DETECTED", bridge.topology_change_detected),
        )
        if on
    ]
    lines += [
        bridge.name,
        _row("bridge id", bridge.bridge_id),
        _row("designated root", bridge.designated_root),
        _row("root port", root_port, "path cost", bridge.root_path_cost),
        _row("max age", f"{bridge.max_age:.2f}", "hello time", f"{bridge.hello_time:.2f}"),
        _row("forward delay", f"{bridge.forward_delay:.2f}", "stp", _STP_STATES.get(bridge.stp_state, "?")),
        _row("topology changes", bridge.topology_change_count, "flags", " ".join(flags)),
    ]
    for port in node.ports:
        lines += [
            "",
            f"{port.name} ({port.port_no})",
            _row("port id", f"{port.port_id:04x}", "state", port.state),
            _row("designated root", port.designated_root, "path cost", port.path_cost),
            _row("designated bridge", port.designated_bridge, "priority", port.priority),
            _row("designated port", f"{port.designated_port:04x}"),
            _row("designated cost", port.designated_cost),
        ]
    if not node.ports:
        lines += ["", "(no ports)"]
    return "\n".join(lines)


def _row(label: str, value: object, label2: str | None = None, value2: object = None) -> str:
    left = f" {label.ljust(_LABEL)}{str(value).rjust(_VALUE)}"
    if label2 is None:
        return left
    return f"{left}    {label2.ljust(_LABEL2)}{str(value2).rjust(_VALUE2)}".rstrip()


def _pair(link: LinkView) -> str:
    return f"{link.a} - {link.b}"


def _link_facts(link: LinkView) -> str:
    state = f"blocking at {link.blocked_at}" if link.state == "blocking" else link.state
    reason = f" ({link.reason})" if link.reason else ""
    return f"vni {link.vni:<8} cost {link.cost:<5}  {state}{reason}"


def _root_line(topology: Topology) -> str:
    if topology.root_bridge_id is None:
        return "unknown (no fresh report names one)"
    return f"{topology.root or 'a bridge privnet does not know'} (bridge id {topology.root_bridge_id})"


def _stale_line(topology: Topology, now: datetime | None) -> str:
    if not topology.stale:
        return "none"
    nodes = {node.name: node for node in topology.nodes}
    parts = []
    for name in topology.stale:
        seen = nodes[name].last_report_at if name in nodes else None
        parts.append(f"{name} (last report {_when(seen, now)})" if seen else f"{name} (never reported)")
    return ", ".join(parts)


def _disagreement_line(topology: Topology) -> str:
    if not topology.disagreements:
        return "none"
    groups = [
        f"{', '.join(group.nodes)} see root {group.root or 'unknown'} ({group.designated_root})"
        for group in topology.disagreements
    ]
    return "partition: " + "; ".join(groups)


def _when(moment: datetime | None, now: datetime | None) -> str:
    if moment is None:
        return "never"
    text = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    if now is not None:
        text += f", {max(0, round((now - moment).total_seconds()))} s ago"
    return text
