"""Fixtures shared by the lab tests: a triangle whose agents report every REPORT_INTERVAL seconds.

Module-scoped, so each test module that asks for it gets a lab of its own.
"""

from __future__ import annotations

import pytest

from lab.core import Lab
from lab.testing import lab_fixture

REPORT_INTERVAL = 2  # seconds; the smallest the app takes is 1

bare_triangle = lab_fixture("triangle", enroll=False, name="bare_triangle")


def enroll_with(lab: Lab, **settings: object) -> Lab:
    """Enroll ``lab``'s hosts once the network has ``settings`` (and a report every REPORT_INTERVAL s)."""
    settings = {"report_interval": REPORT_INTERVAL, **settings}
    network = lab.api().call("PATCH", "/api/v1/network", settings)
    assert all(network[key] == value for key, value in settings.items()), network
    lab.enroll()
    lab.wait_for_overlay()
    return lab


@pytest.fixture(scope="module")
def triangle(bare_triangle: Lab) -> Lab:
    """The triangle, enrolled after its report interval was set to REPORT_INTERVAL (privnet's defaults otherwise)."""
    return enroll_with(bare_triangle)
