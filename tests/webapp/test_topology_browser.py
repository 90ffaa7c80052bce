"""The topology map in headless Chromium, against a real server on 127.0.0.1.

Debian's ``chromium`` driven by Playwright (never ``playwright install``). The database is filled
through the service layer (``triangle``: alpha root, bravo blocks towards charlie, charlie stale).
The screenshot lands in ``test-artifacts/topology.png``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import ADMIN_PASSWORD, require
from tests.webapp.test_topology_page import NAMES, bridge_id, report_payload, triangle

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "test-artifacts" / "topology.png"
GREY = "rgb(184,190,201)"
RED = "rgb(198,40,40)"


@pytest.fixture
def nodes(db, admin):
    return triangle(db)


@pytest.fixture
def live_server(app, nodes) -> Iterator[str]:
    """The app on a free port of 127.0.0.1, served by werkzeug in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="topology-live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture
def page(live_server: str):
    """A logged-in Chromium page; fails the test on any JavaScript error."""
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright Python package is missing: pip install -r requirements-dev.txt")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.route("**/favicon.ico", lambda route: route.fulfill(status=204))
            page.goto(f"{live_server}/login")
            page.fill("#name", "admin")
            page.fill("#password", ADMIN_PASSWORD)
            with page.expect_navigation():
                page.click("button[type=submit]")
            page.goto(f"{live_server}/topology/")
            page.wait_for_function("() => document.getElementById('topology-map').dataset.updated", timeout=15_000)
            yield page
            assert errors == []
        finally:
            browser.close()


def style(page, selector_id: str, name: str) -> str:
    return page.evaluate("([id, name]) => window.cy.getElementById(id).style(name)", [selector_id, name])


def test_the_map_draws_the_network(page, db, nodes):
    graph = page.evaluate(
        """() => ({
            nodes: cy.nodes().map((n) => n.id()).sort(),
            edges: cy.edges().map((e) => [e.source().id(), e.target().id()]).sort(),
            labels: Object.fromEntries(cy.elements().map((e) => [e.id(), e.data('label')])),
        })"""
    )
    assert graph["nodes"] == sorted(NAMES)
    assert graph["edges"] == [["alpha", "bravo"], ["alpha", "charlie"], ["bravo", "charlie"]]
    assert graph["labels"]["alpha"] == "alpha\nroot"
    assert graph["labels"]["charlie"] == "charlie\nstale"
    assert graph["labels"]["bravo charlie"] == "cost 100 · VNI 3"

    # The blocked link is dashed, with a bar and "blocked" at bravo's end; the others are not.
    assert style(page, "bravo charlie", "line-style") == "dashed"
    assert style(page, "bravo charlie", "source-arrow-shape") == "tee"
    assert style(page, "bravo charlie", "source-label") == "blocked"
    assert style(page, "bravo charlie", "target-arrow-shape") == "none"
    assert style(page, "alpha bravo", "line-style") == "solid"
    assert style(page, "alpha charlie", "line-style") == "dotted"  # unknown: charlie is stale
    # The root is ringed; the stale node is grey, the fresh ones are not.
    assert style(page, "alpha", "border-style") == "double"
    assert float(style(page, "alpha", "border-width").removesuffix("px")) > 0
    assert style(page, "charlie", "background-color") == GREY
    assert style(page, "bravo", "background-color") != GREY
    assert page.text_content("#topology-root").strip() == "alpha"

    # Clicking a node opens its showstp table in the side panel.
    box = page.locator("#topology-graph").bounding_box()
    x, y = page.evaluate("() => { const p = cy.getElementById('bravo').renderedPosition(); return [p.x, p.y]; }")
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function("() => document.getElementById('topology-panel').dataset.showing === 'node:bravo'")
    panel = page.inner_text("#topology-panel")
    assert "bridge id\t" + bridge_id("bravo") in panel
    assert "root port\t1 (alpha)" in panel
    assert "charlie (2)" in panel and "state\tblocking" in panel
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # A refresh redraws in place: alpha-bravo is disabled (down: red), charlie reports again (fresh)
    # and keeps the place it was dragged to.
    page.evaluate("() => { cy.getElementById('charlie').position({x: 123, y: 45}); }")
    from webapp import inventory, monitoring
    from webapp.models import utcnow

    inventory.update_link(inventory.find_link("alpha", "bravo"), {"enabled": False})
    ports = {"alpha": "forwarding", "bravo": "forwarding"}
    keys = {peer: nodes[peer].public_key for peer in ports}
    monitoring.record_report(
        nodes["charlie"], report_payload(nodes["charlie"], "alpha", ports, keys, utcnow().timestamp())
    )
    page.wait_for_function("() => !cy.getElementById('charlie').hasClass('stale')", timeout=15_000)
    assert page.evaluate("() => cy.getElementById('charlie').position()") == {"x": 123, "y": 45}
    assert style(page, "alpha charlie", "line-style") == "solid"
    assert style(page, "alpha bravo", "line-color") == RED
    assert page.evaluate("() => [cy.nodes().length, cy.edges().length]") == [3, 3]
    assert page.text_content("#topology-stale").strip() == "none"
    # The open panel follows the data too.
    assert page.evaluate("() => document.getElementById('topology-panel').dataset.showing") == "node:bravo"
