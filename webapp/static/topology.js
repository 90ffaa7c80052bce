// The topology map: draws GET /api/v1/topology with Cytoscape.js and redraws it every few seconds.
// Progressive enhancement: without JavaScript the page's server-rendered tables say the same.
(function () {
  "use strict";

  const container = document.getElementById("topology-map");
  if (!container || typeof window.cytoscape !== "function") return;

  const api = container.dataset.api;
  const nodeUrl = (name) => container.dataset.nodeUrl.replace("NAME", encodeURIComponent(name));
  const refreshMs = Number(container.dataset.refreshMs) || 5000;
  const panel = document.getElementById("topology-panel");
  const status = document.getElementById("topology-status");
  const COLORS = {
    node: "#2456c7", stale: "#b8bec9", ring: "#d4a017", ink: "#1d2433", muted: "#5b6478",
    forwarding: "#2e7d32", blocking: "#c56a00", down: "#c62828", unknown: "#9aa1ad",
  };

  const MAX_FIT_ZOOM = 1.5;

  container.hidden = false;
  document.getElementById("topology-legend").hidden = false;
  const staticShowstp = document.getElementById("topology-showstp");
  if (staticShowstp) staticShowstp.hidden = true; // the side panel shows it, kept up to date

  const cy = window.cytoscape({
    container: document.getElementById("topology-graph"),
    boxSelectionEnabled: false,
    minZoom: 0.3,
    maxZoom: 2.5,
    style: [
      { selector: "node", style: {
        "background-color": COLORS.node, width: 34, height: 34, label: "data(label)",
        "text-valign": "bottom", "text-margin-y": 6, "text-wrap": "wrap", "font-size": 13,
        "font-family": "system-ui, sans-serif", color: COLORS.ink, "text-background-color": "#fff",
        "text-background-opacity": 0.85, "text-background-padding": 2,
      } },
      { selector: "node.root", style: {
        "border-width": 7, "border-style": "double", "border-color": COLORS.ring, "font-weight": "bold",
      } },
      { selector: "node.stale", style: { "background-color": COLORS.stale, color: COLORS.muted } },
      { selector: "node:selected", style: {
        "overlay-color": COLORS.node, "overlay-opacity": 0.15, "overlay-padding": 9, "overlay-shape": "ellipse",
      } },
      { selector: "edge", style: {
        width: 3, "curve-style": "bezier", label: "data(label)", "font-size": 11, color: COLORS.muted,
        "text-rotation": "autorotate", "text-margin-y": -9, "text-background-color": "#fff",
        "text-background-opacity": 0.85, "text-background-padding": 2, "arrow-scale": 1.6,
        "source-text-offset": 36, "target-text-offset": 36, "source-text-margin-y": 13, "target-text-margin-y": 13,
        "font-family": "system-ui, sans-serif",
      } },
      { selector: "edge.forwarding", style: { "line-color": COLORS.forwarding } },
      { selector: "edge.blocking", style: {
        "line-color": COLORS.blocking, "line-style": "dashed", "line-dash-pattern": [8, 5], color: COLORS.blocking,
      } },
      { selector: "edge.blocked-at-source", style: {
        "source-arrow-shape": "tee", "source-arrow-color": COLORS.blocking, "source-label": "blocked",
      } },
      { selector: "edge.blocked-at-target", style: {
        "target-arrow-shape": "tee", "target-arrow-color": COLORS.blocking, "target-label": "blocked",
      } },
      { selector: "edge.down", style: { "line-color": COLORS.down, color: COLORS.down } },
      { selector: "edge.unknown", style: { "line-color": COLORS.unknown, "line-style": "dotted" } },
      { selector: "edge:selected", style: { width: 5 } },
    ],
  });
  window.cy = cy; // for the browser tests and for poking at the graph from the console

  let latest = null;
  let selected = null; // {kind: "node" | "link", id}
  let layoutKey = null;

  const edgeId = (link) => `${link.a} ${link.b}`; // a space never occurs in a node name

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    Object.entries(attrs || {}).forEach(([key, value]) => node.setAttribute(key, value));
    return node;
  }

  function hex4(value) {
    return value.toString(16).padStart(4, "0");
  }

  function linkLabel(link) {
    return `cost ${link.cost} · VNI ${link.vni}`;
  }

  function draw(data) {
    const nodes = [...data.nodes].sort((x, y) => x.name.localeCompare(y.name));
    const wanted = new Set([...nodes.map((n) => n.name), ...data.links.map(edgeId)]);
    cy.batch(() => {
      cy.elements().filter((element) => !wanted.has(element.id())).remove();
      for (const node of nodes) {
        const label = [node.name, node.root ? "root" : null, node.stale ? "stale" : null].filter(Boolean).join("\n");
        const classes = [node.root ? "root" : "", node.stale ? "stale" : "fresh"].join(" ").trim();
        let element = cy.getElementById(node.name);
        if (element.empty()) element = cy.add({ group: "nodes", data: { id: node.name } });
        element.data("label", label);
        element.classes(classes);
      }
      for (const link of data.links) {
        const id = edgeId(link);
        let element = cy.getElementById(id);
        if (element.empty()) element = cy.add({ group: "edges", data: { id, source: link.a, target: link.b } });
        element.data("label", linkLabel(link));
        const classes = [link.state];
        if (link.state === "blocking" && link.blocked_at) {
          classes.push(link.blocked_at === link.a ? "blocked-at-source" : "blocked-at-target");
        }
        element.classes(classes.join(" "));
      }
    });
    // Lay out again only when the nodes or the root change: a refresh keeps every position.
    const key = `${nodes.map((n) => n.name).join(",")}|${data.root || ""}`;
    if (key !== layoutKey) {
      layoutKey = key;
      layout(data.root);
    }
  }

  // A circle, root at the top, the others clockwise by name: deterministic (stable screenshots),
  // and no link can run through a node, as happens when nodes stand in a row. Positions are
  // computed here because Cytoscape's own "circle" layout ignores its sort option (3.34.4).
  function layout(rootName) {
    const names = cy.nodes().map((node) => node.id()).sort((x, y) => x.localeCompare(y));
    const order = rootName && names.includes(rootName) ? [rootName, ...names.filter((n) => n !== rootName)] : names;
    const radius = order.length > 1 ? Math.max(150, order.length * 40) : 0;
    const positions = {};
    order.forEach((name, index) => {
      const angle = -Math.PI / 2 + (2 * Math.PI * index) / order.length;
      positions[name] = { x: Math.round(radius * Math.cos(angle)), y: Math.round(radius * Math.sin(angle)) };
    });
    cy.layout({ name: "preset", positions, animate: false, fit: true, padding: 56 }).run();
    if (cy.zoom() > MAX_FIT_ZOOM) { // a small network stays life-sized rather than blown up
      cy.zoom(MAX_FIT_ZOOM);
      cy.center();
    }
  }

  function fillTable(id, rows) {
    const table = document.getElementById(id);
    if (!table) return;
    const body = table.tBodies[0];
    body.replaceChildren(...rows);
  }

  function tables(data) {
    const linkRows = data.links.map((link) => {
      const row = el("tr");
      row.append(el("td", `${link.a} – ${link.b}`), el("td", link.vni), el("td", link.cost),
        el("td", link.state, { class: `state-${link.state}` }), el("td", link.blocked_at || ""),
        el("td", link.reason || ""));
      return row;
    });
    fillTable("topology-links", linkRows.length ? linkRows : [emptyRow("No links yet.")]);
    const nodeRows = data.nodes.map((node) => {
      const row = el("tr");
      const name = el("td");
      name.append(el("a", node.name, { href: nodeUrl(node.name) }));
      row.append(name, el("td", `${node.root ? "root, " : ""}${node.stale ? "stale" : "fresh"}`,
        node.stale ? { class: "node-stale" } : {}), el("td", when(node.last_report_at)));
      const bridge = node.bridge;
      const bridgeId = el("td");
      bridgeId.append(el("code", bridge ? bridge.bridge_id : "—"));
      const designated = el("td");
      designated.append(el("code", bridge ? bridge.designated_root : "—"));
      row.append(bridgeId, designated, el("td", bridge ? bridge.root_path_cost : "—"));
      return row;
    });
    fillTable("topology-nodes", nodeRows.length ? nodeRows : [emptyRow("No nodes yet.")]);
  }

  function emptyRow(text) {
    const row = el("tr");
    row.append(el("td", text, { colspan: "6" }));
    return row;
  }

  function when(iso) {
    if (!iso) return "never";
    const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return `${iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", " UTC")} (${seconds} s ago)`;
  }

  function summary(data) {
    document.getElementById("topology-root").textContent = data.root || (data.root_bridge_id ? "unknown bridge" : "unknown");
    document.getElementById("topology-root-id").textContent = data.root_bridge_id || "";
    document.getElementById("topology-stale").textContent = data.stale.length ? data.stale.join(", ") : "none";
    const partition = document.getElementById("topology-partition");
    const text = data.disagreements.length
      ? "Partition: nodes see different roots: " + data.disagreements
        .map((group) => `${group.nodes.join(", ")} → ${group.root || group.designated_root}`).join("; ")
      : "";
    partition.hidden = !text;
    if (partition.textContent.trim() !== text) partition.textContent = text; // an alert: announce changes only
  }

  function factsTable(rows) {
    const table = el("table");
    const body = el("tbody");
    for (const [label, value] of rows) {
      const row = el("tr");
      row.append(el("th", label, { scope: "row" }), el("td", value));
      body.append(row);
    }
    table.append(body);
    return table;
  }

  function heading(text, href) {
    const h2 = el("h2");
    const title = href ? el("a", text, { href }) : el("span", text);
    const close = el("button", "×", { type: "button", class: "link", "aria-label": "Close" });
    close.addEventListener("click", () => { selected = null; cy.elements().unselect(); showPanel(); });
    h2.append(title, close);
    return h2;
  }

  function nodePanel(node) {
    const parts = [heading(node.name, nodeUrl(node.name))];
    const state = [node.root ? "root bridge" : null, node.stale ? "stale" : "fresh"].filter(Boolean).join(", ");
    parts.push(el("p", `${state}; last report ${when(node.last_report_at)}`, { class: "hint" }));
    const bridge = node.bridge;
    if (!bridge) {
      parts.push(el("p", node.last_report_at ? "The host reports no bridge." : "No report yet."));
      return parts;
    }
    const rootPort = node.ports.find((port) => port.port_no === bridge.root_port);
    const flags = [bridge.topology_change ? "TOPOLOGY_CHANGE" : null,
      bridge.topology_change_detected ? "TOPOLOGY_CHANGE_DETECTED" : null].filter(Boolean).join(" ");
    parts.push(el("h3", `${bridge.name} (bridge)`), factsTable([
      ["bridge id", bridge.bridge_id],
      ["designated root", bridge.designated_root],
      ["root port", bridge.root_port + (rootPort ? ` (${rootPort.name})` : "")],
      ["path cost", bridge.root_path_cost],
      ["max age", bridge.max_age.toFixed(2)],
      ["hello time", bridge.hello_time.toFixed(2)],
      ["forward delay", bridge.forward_delay.toFixed(2)],
      ["stp", { 0: "off", 1: "kernel", 2: "user space" }[bridge.stp_state] || "?"],
      ["topology changes", bridge.topology_change_count],
      ["flags", flags || "—"],
    ]));
    for (const port of node.ports) {
      const table = factsTable([
        ["port id", hex4(port.port_id)],
        ["state", port.state],
        ["path cost", port.path_cost],
        ["priority", port.priority],
        ["designated root", port.designated_root],
        ["designated bridge", port.designated_bridge],
        ["designated port", hex4(port.designated_port)],
        ["designated cost", port.designated_cost],
      ]);
      table.rows[1].cells[1].className = `state-${port.state === "forwarding" ? "forwarding"
        : port.state === "disabled" ? "down" : "blocking"}`;
      parts.push(el("h3", `${port.name} (${port.port_no})`), table);
    }
    if (!node.ports.length) parts.push(el("p", "No ports."));
    return parts;
  }

  function linkPanel(link) {
    return [
      heading(`${link.a} – ${link.b}`),
      factsTable([
        ["state", link.state],
        ["blocked at", link.blocked_at || "—"],
        ["why", link.reason || "—"],
        ["VNI", link.vni],
        ["path cost", link.cost],
      ]),
    ];
  }

  function showPanel() {
    const hint = el("p", "Click a node for its bridge and ports (as brctl showstp shows them), or a link for its state.",
      { class: "hint" });
    let parts = [hint];
    if (selected && latest) {
      if (selected.kind === "node") {
        const node = latest.nodes.find((n) => n.name === selected.id);
        if (node) parts = nodePanel(node);
      } else {
        const link = latest.links.find((l) => edgeId(l) === selected.id);
        if (link) parts = linkPanel(link);
      }
    }
    const scrolled = panel.scrollTop;
    panel.replaceChildren(...parts);
    panel.scrollTop = scrolled;
    panel.dataset.showing = selected ? `${selected.kind}:${selected.id}` : "";
  }

  cy.on("tap", "node", (event) => { selected = { kind: "node", id: event.target.id() }; showPanel(); });
  cy.on("tap", "edge", (event) => { selected = { kind: "link", id: event.target.id() }; showPanel(); });
  cy.on("tap", (event) => { if (event.target === cy) { selected = null; showPanel(); } });

  async function refresh() {
    if (document.hidden && latest) return;
    try {
      const response = await fetch(api, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        status.textContent = "Your session ended: reload the page to log in again.";
        return;
      }
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      latest = await response.json();
      draw(latest);
      tables(latest);
      summary(latest);
      showPanel();
      status.textContent = `updated ${new Date().toLocaleTimeString()}, every ${refreshMs / 1000} s`;
      container.dataset.updated = String(Date.now());
    } catch (error) {
      status.textContent = `Could not refresh (${error.message}); retrying.`;
    }
  }

  async function loop() {
    await refresh();
    setTimeout(loop, refreshMs);
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  loop();
}());
